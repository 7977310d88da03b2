from collections import OrderedDict

import pytest
import torch
from torch import nn

from expt.callbacks import MetricsCB, PrecisionCB, ScheduleCB
from expt.data.loaders import DeviceLoader
from expt.learner import Callback, CancelBatchException, CancelEpochException, CancelFitException, Learner
from expt.tasks import Classify


def loaders(n=40, bs=16):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8)
    y = (x.float().mean((1, 2, 3)) > 127).long()
    kw = dict(device=torch.device("cpu"), seed=0)
    return (DeviceLoader(x, y, bs, shuffle=True, drop_last=True, **kw),
            DeviceLoader(x, y, bs, shuffle=False, drop_last=False, **kw))


def learner(callbacks=(), lr=0.1, model=None):
    torch.manual_seed(0)
    model = model or nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    train_dl, valid_dl = loaders()
    return Learner(model, train_dl, valid_dl, nn.CrossEntropyLoss(),
                   torch.optim.SGD(model.parameters(), lr=lr), callbacks)


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def __getattr__(self, name):
        if name.startswith(("before_", "after_")):
            return lambda learn: self.events.append(name)
        raise AttributeError(name)


def test_event_order_for_one_epoch():
    rec = Recorder()
    learner([rec]).fit(1)
    train_batch = ["before_batch", "after_loss", "before_step", "after_step", "after_batch"]
    valid_batch = ["before_batch", "after_loss", "after_batch"]
    assert rec.events == (["before_fit", "before_epoch", "before_train"] + train_batch * 2 + ["after_train",
                          "before_validate"] + valid_batch * 3 + ["after_validate", "after_epoch", "after_fit"])


def test_cancel_fit_skips_the_rest_but_runs_after_fit():
    class StopAtSecondBatch(Callback):
        def after_batch(self, learn):
            if learn.iter == 1:
                raise CancelFitException()
    rec = Recorder()
    learner([StopAtSecondBatch(), rec]).fit(3)
    assert rec.events.count("before_batch") == 2 and "after_epoch" not in rec.events
    assert rec.events[-1] == "after_fit"


def test_cancel_epoch_and_batch():
    class SkipTraining(Callback):
        def before_train(self, learn):
            raise CancelEpochException()

    class SkipValidBatches(Callback):
        def before_batch(self, learn):
            if not learn.training:
                raise CancelBatchException()
    rec = Recorder()
    learner([SkipTraining(), SkipValidBatches(), rec]).fit(2)
    assert rec.events.count("after_train") == 2 and rec.events.count("after_step") == 0
    assert rec.events.count("after_batch") == 6 and rec.events.count("after_loss") == 0


def test_metrics_accumulate_on_device_and_learning_happens():
    metrics = MetricsCB(Classify.of(2))
    learn = learner([metrics], lr=0.5)
    learn.fit(5)
    assert [row["epoch"] for row in learn.history] == [1, 2, 3, 4, 5]
    first, last = learn.history[0], learn.history[-1]
    assert last["train/loss"] < first["train/loss"] and 0 <= last["val/acc"] <= 1
    preds = learn.model(learn.valid_dl.x.float() / 255).argmax(1)
    assert last["val/acc"] == pytest.approx((preds == learn.valid_dl.y).float().mean().item())


def test_nan_loss_stops_the_fit_before_checkpointing():
    saved = []

    class Saver(Callback):
        order = 20

        def after_epoch(self, learn):
            saved.append(learn.epoch)

    class Poison(Callback):
        def after_step(self, learn):
            if learn.epoch == 1:
                with torch.no_grad():
                    learn.model[1].weight.fill_(float("nan"))
    learn = learner([MetricsCB(Classify.of(2)), Saver(), Poison()])
    learn.fit(4)
    assert saved == [0] and "epoch 2" in learn.stop_reason


def test_schedule_steps_once_per_training_batch():
    learn = learner()
    sched = torch.optim.lr_scheduler.LinearLR(learn.opt, start_factor=1.0, end_factor=0.0, total_iters=4)
    learn.callbacks.append(ScheduleCB(sched))
    learn.fit(2)  # 2 batches per epoch
    assert sched.last_epoch == 4 and learn.opt.param_groups[0]["lr"] == 0


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains(precision):
    metrics = MetricsCB(Classify.of(2))
    learn = learner([metrics, PrecisionCB(precision, "cpu")], lr=0.5)
    learn.fit(3)
    assert learn.scaler.is_enabled() == (precision == "fp16")
    assert learn.history[-1]["train/loss"] < learn.history[0]["train/loss"]


def test_device_loader_batches():
    train_dl, valid_dl = loaders(n=40, bs=16)
    assert len(train_dl) == 2 and len(valid_dl) == 3  # partial batch dropped in training, kept for validation
    xb, yb = next(iter(valid_dl))
    assert xb.dtype == torch.float32 and 0 <= xb.min() and xb.max() <= 1 and yb.dtype == torch.int64
    assert torch.equal(xb, valid_dl.x[:16].float() / 255)
    assert sum(len(b[1]) for b in valid_dl) == 40
    orders = [torch.cat([b[0].flatten(1)[:, 0] for b in train_dl]) for _ in range(2)]
    assert len(orders[0]) == 32 and not torch.equal(orders[0], orders[1])  # a fresh permutation each epoch


def test_device_loader_keeps_a_lone_partial_batch():
    x, y = torch.zeros(5, 1, 2, 2, dtype=torch.uint8), torch.zeros(5, dtype=torch.long)
    dl = DeviceLoader(x, y, 8, shuffle=True, drop_last=True, device=torch.device("cpu"))
    assert len(dl) == 1 and len(next(iter(dl))[1]) == 5


def test_device_loader_state_round_trip():
    train_dl, _ = loaders()
    state = train_dl.state_dict()
    a = torch.cat([b[1] for b in train_dl])
    train_dl.load_state_dict(state)
    assert torch.equal(a, torch.cat([b[1] for b in train_dl]))


class SetScaler(Callback):
    """fp16's loss scaling on the CPU: the gradients arrive 1024 times too large."""

    def before_fit(self, learn):
        learn.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)


@pytest.mark.parametrize("mode", ["norm", "value"])
def test_clip_grad_bounds_the_gradients_after_unscaling(mode):
    """One SGD step of lr 1 moves the weights by the clipped gradient: of norm (or largest element)
    exactly clip_grad when the gradient was larger, in true units whatever the loss scale."""
    from expt.callbacks.training import GradClipCB
    torch.manual_seed(0)
    model = nn.Linear(4, 3, bias=False)
    x, y = torch.randn(8, 4) * 100, torch.randint(0, 3, (8,))
    before = model.weight.detach().clone()
    raw = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), model.weight)[0]
    assert raw.norm() > 1 and raw.abs().max() > 0.5
    limit = 1.0 if mode == "norm" else 0.5
    learn = Learner(model, [(x, y)], [], nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=1.0),
                    [SetScaler(), GradClipCB(limit, mode)])
    learn.fit(1)
    step = before - model.weight.detach()
    size = step.norm() if mode == "norm" else step.abs().max()
    assert size.item() == pytest.approx(limit, rel=1e-5)
    if mode == "norm":  # the direction is the gradient's
        assert torch.allclose(step / step.norm(), raw / raw.norm(), atol=1e-5)


def test_clip_grad_trains_and_its_settings_are_checked(tmp_path, fmnist_dir, expt_in):
    from conftest import assert_one_line
    small = ["train", "debug=fast", f"data.root={fmnist_dir}", "data.train_subset=64", "data.valid_subset=32", "bs=32"]
    result = expt_in([*small, "clip_grad=0.5", "clip_grad_mode=value", f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode == 0, result.stderr
    for override, phrase in (("clip_grad=0", "clip_grad=0.0 must be above 0"),
                             ("clip_grad_mode=l2", "clip_grad_mode='l2' is not one of norm, value")):
        assert_one_line(expt_in([*small, override, f"hydra.run.dir={tmp_path / 'x'}"]), 2, phrase)
    # clipping is part of the recipe: a resume with another clip_grad is refused
    result = expt_in(["train", f"resume={tmp_path / 'run'}", "epochs=2", "clip_grad=1.0",
                      f"hydra.run.dir={tmp_path / 'r'}"])
    assert_one_line(result, 2, "cannot resume", "clip_grad")


def test_decay_norm_bias_false_leaves_norm_weights_and_biases_without_decay(fmnist_dir):
    """optimizer.decay_norm_bias=false: every parameter of one dimension (BatchNorm's weight and
    bias, every bias) sits in a group of weight decay 0, every other one keeps the optimizer's; each
    parameter is in exactly one group; fine-tuning's groups are split the same way."""
    from hydra import compose, initialize_config_module

    from expt.build import build_run, param_groups
    from expt.schema import register_schema
    register_schema()
    with initialize_config_module("expt.conf", version_base="1.3"):
        cfg = compose("config", overrides=["debug=fast", f"data.root={fmnist_dir}", "optimizer.decay_norm_bias=false",
                                           "optimizer.weight_decay=0.05"])
    run = build_run(cfg)
    seen = [id(p) for group in run.opt.param_groups for p in group["params"]]
    assert sorted(seen) == sorted(id(p) for p in run.model.parameters())  # each once
    for group in run.opt.param_groups:
        assert all(p.ndim <= 1 for p in group["params"]) == (group["weight_decay"] == 0.0)
        assert group["weight_decay"] in (0.0, 0.05)
    assert any(g["weight_decay"] == 0.0 for g in run.opt.param_groups)
    groups, _ = param_groups(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), 0, 1.0)
    assert len(groups) == 1 and "weight_decay" not in groups[0]  # the default decays everything

    class Body(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.head = nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Linear(3, 2)

        def get_classifier(self):
            return self.head
    model = nn.Sequential(OrderedDict(body=Body()))
    groups, frozen = param_groups(model, 1, 0.1, decay_norm_bias=False)
    shapes = [(g["lr_mult"], g.get("weight_decay"), [tuple(p.shape) for p in g["params"]]) for g in groups]
    assert shapes == [(0.1, None, [(3, 3)]), (0.1, 0.0, [(3,), (3,), (3,)]), (1.0, None, [(2, 3)]), (1.0, 0.0, [(2,)])]
    assert len(frozen) == 4  # the body, whatever its decay
