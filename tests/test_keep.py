"""Keeping the best model (checkpoint.keep, model_best.safetensors) and stopping early
(early_stop.patience, min_delta): on scripted metrics, and end to end through a Ctrl-C and a resume."""

import json
import math

import pandas as pd
import pytest
import torch
from safetensors import safe_open
from torch import nn

from expt.callbacks import CheckpointCB
from expt.callbacks.checkpoint import best_epoch, improves
from expt.callbacks.metrics import MetricsCB
from expt.callbacks.training import EarlyStopCB, stale_epochs
from expt.checkpoint import read_checkpoint
from expt.learner import Callback, Learner

from conftest import assert_one_line, ctrl_c_after_epoch


def rows(values, metric="val/acc"):
    return [{"epoch": i + 1, **({} if v is None else {metric: v})} for i, v in enumerate(values)]


def test_improves_and_best_epoch_follow_the_direction_and_min_delta():
    assert improves(0.5, None, True) and improves(0.6, 0.5, True) and not improves(0.5, 0.5, True)
    assert improves(0.4, 0.5, False) and not improves(0.6, 0.5, False)
    assert not improves(0.55, 0.5, True, min_delta=0.1) and improves(0.61, 0.5, True, min_delta=0.1)
    assert not improves(math.nan, None, True) and not improves(None, None, True)
    assert best_epoch(rows([0.5, 0.7, 0.7, 0.6]), "val/acc", True) == (2, 0.7)  # the first of equal values
    assert best_epoch(rows([30.0, 20.0, 25.0]), "val/fid", False, ) == (None, None)  # no such metric
    assert best_epoch(rows([30.0, 20.0, 25.0], "val/fid"), "val/fid", False) == (2, 20.0)
    assert best_epoch(rows([None, 0.3, None]), "val/acc", True) == (2, 0.3)


@pytest.mark.parametrize("values, higher, min_delta, stale", [
    ([0.5, 0.6, 0.6, 0.55], True, 0.0, 2),
    ([0.5, 0.6, 0.7], True, 0.0, 0),
    ([0.5, 0.52, 0.54, 0.549], True, 0.05, 3),  # steps under min_delta never add up
    ([0.5, 0.52, 0.56], True, 0.05, 0),  # 0.56 beats 0.5 by more than 0.05
    ([3.0, 2.0, 2.5, 2.1], False, 0.0, 2),
    ([], True, 0.0, 0),
])
def test_stale_epochs_counts_from_the_last_improvement(values, higher, min_delta, stale):
    assert stale_epochs(rows(values), "val/acc", higher, min_delta) == (stale if values else 0)


class Scripted(Callback):
    """The row MetricsCB would build, from a script of val/acc values."""

    order = MetricsCB.order

    def __init__(self, script):
        self.script = script

    def after_epoch(self, learn):
        learn.row = {"epoch": learn.epoch + 1, "val/acc": self.script[learn.epoch]}
        learn.history.append(learn.row)


META = {"config": {}, "mean": [0.5], "std": [0.5], "versions": {}}
SCRIPT = [0.50, 0.60, 0.60, 0.55, 0.58, 0.90, 0.95, 0.99]


def header(path):
    """A safetensors file's metadata, each value read as JSON."""
    with safe_open(str(path), framework="pt") as f:
        return {k: json.loads(v) for k, v in f.metadata().items() if k != "format"}


def scripted_fit(tmp_path, history=(), start_epoch=0, patience=2, keep="both"):
    model = nn.Linear(2, 2)
    cbs = [Scripted(SCRIPT), CheckpointCB(tmp_path, model, META, {}, keep=keep, metric="val/acc"),
           EarlyStopCB("val/acc", True, patience)]
    learn = Learner(model, [], [], nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.1), cbs,
                    history=[dict(r) for r in history])
    learn.fit(len(SCRIPT), start_epoch=start_epoch)
    return learn, cbs[-1]


def test_early_stop_stops_at_the_right_epoch_and_a_resumed_fit_keeps_the_count(tmp_path):
    learn, early = scripted_fit(tmp_path / "full")
    assert early.stopped == 4 and learn.stop_status == "early_stopped"
    assert [r["epoch"] for r in learn.history] == [1, 2, 3, 4] and "not improved for 2 epochs" in learn.stop_reason
    # stopped (killed) after epoch 3: the restored history carries the count on
    resumed, early = scripted_fit(tmp_path / "resumed", history=learn.history[:3], start_epoch=3)
    assert early.stopped == 4 and len(resumed.history) == 4
    meta = header(tmp_path / "full" / "model_best.safetensors")
    assert meta["epoch"] == 2 and meta["best"] == {"val/acc": 0.6}  # epoch 3's equal value is no improvement
    assert header(tmp_path / "full" / "model.safetensors")["epoch"] == 4
    # never stopped on the last epoch; without patience the fit runs to the end
    learn, early = scripted_fit(tmp_path / "patient", patience=100)
    assert early.stopped is None and learn.stop_status is None and len(learn.history) == len(SCRIPT)
    assert header(tmp_path / "patient" / "model_best.safetensors")["epoch"] == len(SCRIPT)


@pytest.mark.parametrize("keep, files", [("last", {"model.safetensors"}), ("best", {"model_best.safetensors"}),
                                         ("both", {"model.safetensors", "model_best.safetensors"})])
def test_checkpoint_keep_writes_the_models_it_names(tmp_path, keep, files):
    scripted_fit(tmp_path, patience=100, keep=keep)
    assert {p.name for p in tmp_path.glob("model*.safetensors")} == files and (tmp_path / "last.pt").is_file()


SMALL = ["debug=fast", "data.train_subset=64", "data.valid_subset=32", "bs=32"]


def test_best_model_early_stop_and_resume_end_to_end(tmp_path, fmnist_dir, expt_in, monkeypatch):
    """min_delta=1 never counts an improvement after the first epoch: patience=3 stops after epoch
    4, whatever the metrics are. A Ctrl-C after epoch 2 and a resume stop there too; resuming that
    run again is refused; model_best's metric is summary.json's best, and evaluating it gives it."""
    undo = ctrl_c_after_epoch(monkeypatch, 2)
    common = [*SMALL, f"data.root={fmnist_dir}", "epochs=6", "early_stop.patience=3", "early_stop.min_delta=1.0"]
    cut, resumed = tmp_path / "cut", tmp_path / "resumed"
    assert_one_line(expt_in(["train", *common, f"hydra.run.dir={cut}"]), 130, "interrupted")
    undo()

    result = expt_in(["train", f"resume={cut}", f"hydra.run.dir={resumed}"])
    assert result.returncode == 0, result.stderr
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["status"] == "early_stopped" and summary["stopped_epoch"] == 4 and summary["epochs"] == 4
    assert "stopped early after epoch 4: val/acc has not improved for 3 epochs" in result.stdout
    assert list(pd.read_csv(resumed / "metrics.csv")["epoch"]) == [1, 2, 3, 4]

    metrics = pd.read_csv(resumed / "metrics.csv")
    best = int(metrics["val/acc"].idxmax())  # the first epoch of the highest value
    assert summary["best/epoch"] == best + 1 and summary["best/val/acc"] == metrics["val/acc"][best]
    assert f"best: epoch {best + 1}, val/acc {summary['best/val/acc']:.4f} (model_best.safetensors)" in result.stdout
    _, meta = read_checkpoint(resumed / "model_best.safetensors")  # carried from cut/ when the best came before
    assert meta["epoch"] == best + 1 and meta["best"]["val/acc"] == summary["best/val/acc"]
    tta = expt_in(["tta", f"ckpt={resumed / 'model_best.safetensors'}", "tta.names=[identity]"])
    assert tta.returncode == 0, tta.stderr
    assert json.loads((resumed / "tta.json").read_text())["acc"] == pytest.approx(summary["best/val/acc"], abs=1e-6)

    again = expt_in(["train", f"resume={resumed}", f"hydra.run.dir={tmp_path / 'again'}"])
    assert_one_line(again, 2, "stopped early after epoch 4", "early_stop.patience")
    more = expt_in(["train", f"resume={resumed}", "early_stop.patience=null", f"hydra.run.dir={tmp_path / 'more'}"])
    assert more.returncode == 0, more.stderr
    assert json.loads((tmp_path / "more" / "summary.json").read_text())["epochs"] == 6


def test_keep_best_alone_and_the_settings_checked(tmp_path, fmnist_dir, expt_in):
    run = tmp_path / "best"
    result = expt_in(["train", *SMALL, f"data.root={fmnist_dir}", "epochs=2", "checkpoint.keep=best",
                      f"hydra.run.dir={run}"])
    assert result.returncode == 0, result.stderr
    assert (run / "model_best.safetensors").is_file() and not (run / "model.safetensors").exists()
    predict = expt_in(["interpret", f"ckpt={run / 'model_best.safetensors'}"])
    assert predict.returncode == 0, predict.stderr
    assert (run / "confusion.png").is_file()
    for override, phrase in (("checkpoint.keep=all", "checkpoint.keep='all' is not one of last, best, both"),
                             ("early_stop.patience=0", "early_stop.patience=0 must be at least 1"),
                             ("early_stop.min_delta=-1", "early_stop.min_delta=-1.0 must be 0 or more")):
        result = expt_in(["train", *SMALL, f"data.root={fmnist_dir}", override, f"hydra.run.dir={tmp_path / 'x'}"])
        assert_one_line(result, 2, phrase)
    assert not (tmp_path / "x").exists()
