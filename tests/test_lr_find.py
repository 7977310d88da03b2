import json
import math

import pytest
import torch
from torch import nn

from conftest import assert_one_line
from expt.build import build_run, callbacks_for
from expt.callbacks.lr_find import LRFinderCB
from expt.learner import Learner
from expt.lr_find import find_lr, steep, suggest, valley
from test_config import composed
from test_learner import loaders


def tiny_learner(callbacks, lr=1e-3):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    train_dl, valid_dl = loaders(n=64, bs=8)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    return Learner(model, train_dl, valid_dl, nn.CrossEntropyLoss(), opt, callbacks), train_dl


def test_lr_rises_exponentially_from_start_to_end():
    finder = LRFinderCB(start=1e-6, end=1e-2, steps=12)
    learn, _ = tiny_learner([finder])
    learn.fit(3)  # 8 batches per epoch: the finder crosses an epoch boundary and skips validation
    assert len(finder.lrs) == 12 == len(finder.losses)
    assert finder.lrs[0] == pytest.approx(1e-6) and finder.lrs[-1] == pytest.approx(1e-2)
    ratios = [b / a for a, b in zip(finder.lrs, finder.lrs[1:])]
    assert max(ratios) == pytest.approx(min(ratios))


def test_param_groups_keep_their_lr_share():
    """Fine-tuning's body group (lr_mult 0.1) gets a tenth of the head's lr at every finder step."""
    class Record(LRFinderCB):
        def after_step(self, learn):
            self.seen.append([g["lr"] for g in learn.opt.param_groups])
            super().after_step(learn)

    finder = Record(start=1e-5, end=1e-1, steps=6)
    finder.seen = []
    learn, _ = tiny_learner([finder])
    params = list(learn.model.parameters())
    learn.opt = torch.optim.AdamW([{"params": params[:2], "lr_mult": 0.1}, {"params": params[2:], "lr_mult": 1.0}])
    learn.fit(1)
    assert len(finder.seen) == 6
    for lr, (body, head) in zip(finder.lrs, finder.seen):
        assert head == pytest.approx(lr) and body == pytest.approx(lr / 10)


def test_model_optimizer_loader_and_rng_are_restored_exactly():
    finder = LRFinderCB(start=1e-4, end=1.0, steps=10)
    learn, train_dl = tiny_learner([])
    learn.fit(1)  # give the optimizer some state first
    finder.stateful = (train_dl,)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt_before = learn.opt.state_dict()
    exp_avg = [s["exp_avg"].clone() for s in learn.opt.state.values()]
    gen_before, rng_before = train_dl.state_dict()["generator"].clone(), torch.get_rng_state()
    learn.callbacks = [finder]
    learn.fit(2)
    assert all(torch.equal(before[k], v) for k, v in learn.model.state_dict().items())
    assert learn.opt.state_dict()["param_groups"] == opt_before["param_groups"]
    assert all(torch.equal(a, s["exp_avg"]) for a, s in zip(exp_avg, learn.opt.state.values()))
    assert torch.equal(train_dl.state_dict()["generator"], gen_before)
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_divergence_stops_the_test_early():
    finder = LRFinderCB(start=1e-3, end=1e8, steps=100)
    learn, _ = tiny_learner([finder])
    learn.opt = torch.optim.SGD(learn.model.parameters(), lr=1e-3)
    learn.fit(20)
    assert len(finder.losses) < 100 and "diverged" in finder.stop_reason
    assert not math.isfinite(finder.losses[-1]) or finder.losses[-1] > 4 * min(finder.losses)


def synthetic_curve():
    """Flat at 3 for 20 points, down to 1 over 40 (steepest at points 50-51), then up again."""
    lrs = [1e-6 * 10 ** (i / 10) for i in range(80)]
    losses = [3.0] * 20 + [3.0 - 2.0 * (i / 40) ** 2 for i in range(1, 41)] + [1.0 + 0.2 * i for i in range(1, 21)]
    return lrs, losses


def test_suggestions_on_a_known_curve():
    lrs, losses = synthetic_curve()
    assert losses.index(min(losses)) == 59
    # the steep descent starts where the loss last stood within 10% of the drop (3 - 0.2): point 19 + 12
    assert valley(losses) == (31 + 59) // 2
    assert 50 <= steep(lrs, losses) <= 59  # the curve is steepest near its end
    s = suggest(lrs, losses)
    assert s["minimum/10"] == pytest.approx(lrs[59] / 10) and s["valley"] == lrs[45]


def test_valley_ignores_a_noisy_plateau_and_bumps_on_the_way_down():
    plateau = [2.4, 2.43, 2.41, 2.42, 2.40, 2.41] * 4
    descent = [2.4 - 0.02 * i for i in range(30)]
    descent[10] += 0.03  # a bump part-way down
    losses = plateau + descent + [2.0, 2.2]
    end = losses.index(min(losses))
    start = max(i for i in range(end) if losses[i] >= 2.43 - 0.1 * (2.43 - losses[end]))
    assert start >= len(plateau) - 1 and valley(losses) == (start + end) // 2


def test_finder_leaves_no_trace_on_the_run_that_follows(fmnist_dir):
    """Training after the finder gives the same weights as training without it."""
    overrides = ["debug=fast", f"data.root={fmnist_dir}", "data.train_subset=128", "lr_find.steps=6"]
    weights = []
    for use_finder in (True, False):
        run = build_run(composed(overrides))
        if use_finder:
            find_lr(run, 1e-5, 1.0, 6)
        run.start_schedule(3e-3)
        Learner(run.net, run.train_dl, run.valid_dl, run.loss, run.opt, callbacks_for(run)).fit(1)
        weights.append(run.model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_lr_find_command(tmp_path, fmnist_dir, expt_in):
    result = expt_in(["lr_find", "debug=fast", f"data.root={fmnist_dir}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode == 0, result.stderr
    table = result.stdout[result.stdout.index("suggestion"):]
    assert table.index("valley (recommended)") < table.index("steep") < table.index("minimum/10")
    found = json.loads((tmp_path / "run" / "lr_find.json").read_text())
    assert len(found["lrs"]) == len(found["losses"]) == 16 and found["recommended"] == "valley"
    assert found["lr"] == found["suggestions"]["valley"] and set(found["suggestions"]) == {"valley", "steep",
                                                                                             "minimum/10"}
    assert (tmp_path / "run" / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_train_with_lr_auto(tmp_path, fmnist_dir, expt_in):
    result = expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", "optimizer.lr=auto",
                      "lr_find.suggestion=minimum/10", f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode == 0, result.stderr
    found = json.loads((tmp_path / "run" / "lr_find.json").read_text())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["lr_auto"] is True and summary["lr"] == found["suggestions"]["minimum/10"]
    assert summary["status"] == "ok" and summary["epochs"] == 1


def test_bad_lr_find_settings_are_one_line(tmp_path, fmnist_dir, expt_in):
    result = expt_in(["lr_find", "debug=fast", f"data.root={fmnist_dir}", "lr_find.suggestion=best",
                      f"hydra.run.dir={tmp_path / 'run'}"])
    assert_one_line(result, 2, "lr_find.suggestion='best'")
    assert not (tmp_path / "run").exists()
