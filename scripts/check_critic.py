"""Can a critic tell a generator's outputs from real images at all? Plain Adam on the cached
images of `data=critic` (real targets against the generator's outputs), with or without spectral
norm and dropout; prints loss, mean |logit| and accuracy on the same images every 40 steps.

    python scripts/check_critic.py --generator RUN/model.safetensors --root ../shared/data/pets --lr 1e-3
    python scripts/check_critic.py ... --no-spectral-norm --p 0 --steps 200
"""

import argparse

import torch

from expt.data.critic import load
from expt.losses import PatchBCE
from expt.models.critic import critic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", required=True)
    parser.add_argument("--root", default=None)
    parser.add_argument("--images", type=int, default=128, help="real and as many generated")
    parser.add_argument("--nf", type=int, default=32)
    parser.add_argument("--p", type=float, default=0.15)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--no-spectral-norm", action="store_true")
    args = parser.parse_args()
    data = load(args.generator, args.root)
    n = len(data.train_x) // 2
    pick = torch.cat([torch.arange(args.images), n + torch.arange(args.images)])  # real first, then generated
    x, y = data.train_x[pick].float() / 255, data.train_y[pick]
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (data.mean, data.std))
    x = (x - mean) / std
    torch.manual_seed(0)
    model = critic(3, nf=args.nf, p=args.p, spectral=not args.no_spectral_norm, input_shape=tuple(x.shape[1:]))
    opt = torch.optim.Adam(model.parameters(), args.lr, betas=(0.9, 0.99))
    loss_fn = PatchBCE()
    for step in range(args.steps):
        idx = torch.randperm(len(x))[:32]
        loss = loss_fn(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 40 == 39:
            with torch.no_grad():
                out = model.eval()(x)
                model.train()
            acc = ((torch.sigmoid(out).mean(1) > 0.5).long() == y).float().mean().item()
            print(f"step {step + 1}: loss {loss.item():.4f}, mean |logit| {out.abs().mean().item():.4f}, acc {acc:.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
