"""The parts of a feature loss (pixel, feature, gram) on pets validation pairs, bicubic input
against target: how the loss options weigh them before any training (loss=feature_lite0's weights
were chosen from this).

    python scripts/feature_loss_parts.py --root ../shared/data/pets -- loss=feature_lite0
    python scripts/feature_loss_parts.py --root ../shared/data/pets -- loss=feature_lite0 "loss.layer_weights=[1,1,1]" loss.gram_weight=1
"""

import argparse

import torch
from hydra import compose, initialize_config_module

from expt.build import build_loss, make
from expt.schema import register_schema
from expt.tasks import task_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="../shared/data/pets")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("overrides", nargs="*", help="config overrides (after --), e.g. loss=feature_lite0")
    args = parser.parse_args()
    register_schema()
    with initialize_config_module("expt.conf", version_base="1.3"):
        cfg = compose("config", overrides=["data=pets", f"data.root={args.root}", *args.overrides])
    data = make("data", cfg.data)
    loss = build_loss(cfg.loss, task_for(data))
    x, y = (t[:args.images].float() / 255 for t in (data.valid_x, data.valid_y))
    with torch.no_grad():
        total = loss(x, y).item()
    parts = ", ".join(f"{k} {v.item():.4f}" for k, v in getattr(loss, "components", {}).items())
    print(f"{len(x)} validation pairs at {cfg.data.size} px, {' '.join(args.overrides)}: total {total:.4f} ({parts})")


if __name__ == "__main__":
    main()
