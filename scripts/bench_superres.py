"""Compare U-Net encoders and losses on pets super-resolution in one table: every (encoder, loss)
pair is `expt train experiment=pets_superres_cpu` with the encoder and loss swapped in, one
process each, for each seed; the table reads their summary.json files.

    python scripts/bench_superres.py --resnet18 outputs/enc/imagenette_resnet18/model.safetensors \\
        --epochs 15 --seeds 1 -- data.root=../shared/data/pets

Encoders: EfficientNet-Lite0 with ImageNet weights (expt[lite0]), a resnet18 trained on Imagenette
by expt (--resnet18: its model.safetensors), and the same resnet18 from scratch. The pretrained
encoders are fine-tuned: frozen for the first --freeze epochs, then at 1/10 of the lr. Losses: l1
and the feature loss over Lite0 (loss=feature_lite0). `--reuse` keeps runs that have a summary.json;
`--encoders`/`--losses` pick rows; `--table` trains nothing and tabulates the runs there are.
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from rich.table import Table

from expt.commands.runner import output_console
from expt.leaderboard import fmt_stat


def encoders(resnet18: str | None, freeze: int) -> dict[str, list[str]]:
    finetune = [f"finetune.freeze_epochs={freeze}", "finetune.body_lr_mult=0.1"]
    found = {"lite0 ImageNet": ["arch.encoder=tf_efficientnet_lite0", "arch.weights=efficientnet-lite0", *finetune]}
    if resnet18:
        found["resnet18 Imagenette"] = ["arch.encoder=resnet18", f"arch.weights={resnet18}", *finetune]
    return found | {"resnet18 scratch": ["arch.encoder=resnet18"]}


LOSSES = {"l1": ["loss=l1"], "feature (Lite0)": ["loss=feature_lite0"]}


def stat(values: list[float]) -> str:
    return fmt_stat(statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resnet18", help="model.safetensors of an expt run of timm's resnet18 (e.g. on Imagenette)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--freeze", type=int, default=3, help="epochs with a pretrained encoder frozen")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--out", default="outputs/bench_superres")
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--encoders", nargs="+", help="only these encoders (names as in the table)")
    parser.add_argument("--losses", nargs="+", help="only these losses (names as in the table)")
    parser.add_argument("--table", action="store_true", help="train nothing: tabulate the runs there are")
    parser.add_argument("overrides", nargs="*", help="expt train overrides for every run (after --)")
    args = parser.parse_args()
    rows = []
    for enc, enc_args in encoders(args.resnet18, args.freeze).items():
        for loss, loss_args in LOSSES.items():
            if (args.encoders and enc not in args.encoders) or (args.losses and loss not in args.losses):
                continue
            summaries = []
            for seed in args.seeds:
                run_dir = Path(args.out) / f"{enc}_{loss}_seed{seed}".replace(" ", "_").replace("(", "").replace(")", "")
                if args.table and not (run_dir / "summary.json").exists():
                    continue
                if not args.table and not (args.reuse and (run_dir / "summary.json").exists()):
                    cmd = [sys.executable, "-m", "expt.cli", "train", "experiment=pets_superres_cpu",
                           f"epochs={args.epochs}", f"seed={seed}", *enc_args, *loss_args, *args.overrides,
                           f"hydra.run.dir={run_dir}"]
                    print(" ".join(cmd[3:]), flush=True)
                    subprocess.run(cmd, check=True)
                summaries.append(json.loads((run_dir / "summary.json").read_text()))
            if summaries:
                rows.append((enc, loss, summaries))

    first = rows[0][2][0]
    table = Table(title=f"pets super-resolution, {args.epochs} epochs, {first['device']}; "
                        f"bicubic {first['baseline/psnr']:.2f} dB / SSIM {first['baseline/ssim']:.3f}")
    for col in ("encoder", "loss", "seeds", "val/psnr dB", "gain dB", "val/ssim", "s/epoch"):
        table.add_column(col, justify="left" if col in ("encoder", "loss") else "right")
    for enc, loss, runs in sorted(rows, key=lambda r: -statistics.mean(s["val/psnr"] for s in r[2])):
        table.add_row(enc, loss, str(len(runs)), stat([s["val/psnr"] for s in runs]),
                      stat([s["val/psnr"] - s["baseline/psnr"] for s in runs]), stat([s["val/ssim"] for s in runs]),
                      f"{min(s['seconds_per_epoch'] for s in runs):.1f}")  # the least disturbed run
    output_console().print(table)


if __name__ == "__main__":
    main()
