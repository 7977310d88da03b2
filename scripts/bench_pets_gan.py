"""Lesson 7's three stages on the CPU, for several seeds: a super-resolution U-Net (pixel loss), a
critic pretrained on its outputs against the real images, then the two trained in turns as a GAN.
For each seed, the generator before and after the GAN stage is scored on the validation images:
PSNR, SSIM, and sharpness, the variance of the Laplacian of the outputs over that of the targets
(1 is as sharp as the real photos; blur lowers it). Then the wall time of each stage.

    python scripts/bench_pets_gan.py --root ../shared/data/pets --seeds 1 2 3
    python scripts/bench_pets_gan.py --root ../shared/data/pets --seeds 1 -- gan.critic_lr_mult=2 epochs=5

Overrides after -- apply to the GAN stage; --critic-args to the critic's. A stage whose folder
already holds summary.json is not trained again (--out keeps them).
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from expt.build import make
from expt.metrics import laplacian_variance, mean_scores
from expt.rebuild import model_from_checkpoint, stored_data


def stage(run_dir: Path, args: list[str]) -> float:
    """Train one stage unless its folder is finished; its fit seconds."""
    if not (run_dir / "summary.json").exists():
        subprocess.run([sys.executable, "-m", "expt.cli", "train", *args, f"hydra.run.dir={run_dir}"], check=True)
    return json.loads((run_dir / "summary.json").read_text())["seconds"]


@torch.no_grad()
def score(ckpt: Path, root: str, bs: int = 16) -> dict[str, float]:
    from omegaconf import OmegaConf
    model, meta = model_from_checkpoint(ckpt)
    data = make("data", stored_data(meta, OmegaConf.create({"data": {"root": root}})))
    x, y = data.valid_x.float() / 255, data.valid_y.float() / 255
    out = torch.cat([model(x[i: i + bs]).float().clamp(0, 1) for i in range(0, len(x), bs)])
    sharp = (laplacian_variance(out).mean() / laplacian_variance(y).mean()).item()
    bicubic = (laplacian_variance(x).mean() / laplacian_variance(y).mean()).item()
    return mean_scores(out, data.valid_y) | {"sharpness": sharp, "bicubic_sharpness": bicubic}


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {std:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="the pets folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", default="outputs/bench_pets_gan")
    parser.add_argument("--critic-args", nargs="*", default=[], help="overrides of the critic stage")
    parser.add_argument("overrides", nargs="*", help="overrides of the GAN stage (after --)")
    args = parser.parse_args()
    out, rows = Path(args.out), []
    common = ["device=cpu", f"data.root={args.root}"]
    for seed in args.seeds:
        gen, crit, gan = out / f"generator_seed{seed}", out / f"critic_seed{seed}", out / f"gan_seed{seed}"
        times = [stage(gen, ["experiment=pets_superres_cpu", f"seed={seed}", *common])]
        times.append(stage(crit, ["experiment=pets_critic", f"data.generator={gen / 'model.safetensors'}", f"seed={seed}",
                                  "device=cpu", *args.critic_args]))
        times.append(stage(gan, ["experiment=pets_gan", f"gan.generator={gen / 'model.safetensors'}",
                                 f"gan.critic={crit / 'model.safetensors'}", f"seed={seed}", *common, *args.overrides]))
        before, after = score(gen / "model.safetensors", args.root), score(gan / "model.safetensors", args.root)
        critic_acc = json.loads((crit / "summary.json").read_text())["val/acc"]
        rows.append({"seed": seed, "before": before, "after": after, "times": times, "critic_acc": critic_acc})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| | PSNR (dB) | SSIM | sharpness (1 = targets') |\n| --- | --- | --- | --- |")
    print(f"| bicubic input | | | {mean_std([r['before']['bicubic_sharpness'] for r in rows])} |")
    for when, name in (("before", "pretrained generator"), ("after", "after the GAN stage")):
        print(f"| {name} | {mean_std([r[when]['psnr'] for r in rows])} | {mean_std([r[when]['ssim'] for r in rows])} | "
              f"{mean_std([r[when]['sharpness'] for r in rows])} |")
    print(f"\ncritic val/acc {mean_std([r['critic_acc'] for r in rows])}; stage seconds (generator, critic, GAN): "
          + ", ".join(mean_std([r['times'][i] for r in rows]) for i in range(3))
          + f"; all three: {mean_std([sum(r['times']) for r in rows])}")


if __name__ == "__main__":
    main()
