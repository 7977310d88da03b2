"""Which test-time views and which average pay off: every view's logits once per checkpoint, then
each view set scored from them (the tta group's presets, read from conf/tta, and two ablations:
identity alone, shifts without the flip), with probabilities averaged (`prob`, expt's default) and
with logits averaged (`logit`). The validation set doubles as the test set here (as in the course), so
treat a gain of a few images as noise; a view set is worth having when it gains on every seed.

    EXPT_DATA=../shared/data python scripts/bench_tta_views.py outputs/cpu/aug20_init/seed*/model.safetensors device=cpu
"""

import argparse
import sys

import torch

from expt.rebuild import build_eval
from expt.tta import accuracy, make_view

PRESETS = ["flip", "flip_shift", "flip_x_shift"]  # the tta group's options, read from conf/tta
ABLATIONS = {"identity": ["identity"], "shift": ["identity", "shift:1:0", "shift:-1:0", "shift:0:1", "shift:0:-1"]}


@torch.no_grad()
def view_logits(ev, names: list[str]) -> dict[str, torch.Tensor]:
    model, autocast = ev.models[0], ev.runtime.autocast()
    out, fns = {n: [] for n in names}, {n: make_view(n) for n in names}
    for xb, *_ in ev.valid_dl:
        for n in names:
            with autocast:
                out[n].append(model(fns[n](xb)).float())
    return {n: torch.cat(v) for n, v in out.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("args", nargs="+", help="model.safetensors files (one per seed), then overrides, e.g. device=cpu")
    args = p.parse_args(argv)
    args.ckpts = [a for a in args.args if "=" not in a]
    extra = [a for a in args.args if "=" in a]
    from hydra import compose, initialize_config_module
    from rich.table import Table

    from expt.commands.runner import output_console
    from expt.schema import register_schema
    register_schema()
    with initialize_config_module("expt.conf", version_base="1.3"):
        sets = {**ABLATIONS, **{p: list(compose("config", overrides=[f"tta={p}"]).tta.names) for p in PRESETS}}
        cfgs = [compose("config", overrides=[f"ckpt={ckpt}", *extra]) for ckpt in args.ckpts]
    names = list(dict.fromkeys(n for members in sets.values() for n in members))  # each view runs once
    rows = {(s, avg): [] for s in sets for avg in ("prob", "logit")}
    for ckpt, cfg in zip(args.ckpts, cfgs):
        ev = build_eval(cfg, explicit_data=False)
        head = next(iter(ev.task.sizes.values()))  # the headline target's logits come first
        logits = {n: v[:, :head] for n, v in view_logits(ev, names).items()}
        y = ev.valid_dl.y.view(len(ev.valid_dl.y), -1)[:, 0]
        for s, members in sets.items():
            stacked = torch.stack([logits[n] for n in members])
            rows[s, "prob"].append(accuracy(stacked.softmax(-1).mean(0), y))
            rows[s, "logit"].append(accuracy(stacked.mean(0), y))
        print(f"{ckpt}: done", file=sys.stderr)

    t = Table(title=f"TTA views on {len(args.ckpts)} checkpoint(s): validation accuracy")
    t.add_column("views")
    t.add_column("n", justify="right")
    t.add_column("average")
    for i in range(len(args.ckpts)):
        t.add_column(f"ckpt {i + 1}", justify="right")
    t.add_column("mean", justify="right")
    for (s, avg), accs in rows.items():
        t.add_row(s, str(len(sets[s])), avg, *(f"{a:.4f}" for a in accs), f"{sum(accs) / len(accs):.4f}")
    output_console().print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
