"""Validation images through several restoration checkpoints of the same data, side by side:
each row input | checkpoint 1 | checkpoint 2 | ... | target (e.g. a generator before and after
its GAN stage), written as one PNG.

    python scripts/compare_restorers.py RUN_G/model.safetensors RUN_GAN/model.safetensors --n 4 \\
        --root ../shared/data/pets --out docs/img/pets_gan.png
"""

import argparse

import torch
from omegaconf import OmegaConf

from expt.build import make
from expt.callbacks.samples import image_grid, save_png
from expt.rebuild import model_from_checkpoint, stored_data


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpts", nargs="+")
    parser.add_argument("--n", type=int, default=4, help="validation images (the first n)")
    parser.add_argument("--root", default=None, help="where the data lives now")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    models = [model_from_checkpoint(c) for c in args.ckpts]
    cfg = OmegaConf.create({"data": {"root": args.root}})
    data = make("data", stored_data(models[0][1], cfg))
    x, y = data.valid_x[: args.n].float() / 255, data.valid_y[: args.n].float() / 255
    save_png(args.out, image_grid([x, *(m(x).float() for m, _ in models), y]))
    print(f"wrote {args.out}: input | {' | '.join(args.ckpts)} | target")


if __name__ == "__main__":
    main()
