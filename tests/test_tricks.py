"""Issue 27's training tricks: mixup and CutMix, the weights' moving average, gradient
accumulation, LSUV init and val/top5; each on its own, then together through a killed and resumed
run (DDP: tests/test_distributed.py)."""

import copy
import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from conftest import assert_one_line, ctrl_c_after_epoch
from expt.augment import Mix, compose, crop_flip, cutmix, mixup, mixup_cutmix, split_mix
from expt.callbacks import ScheduleCB
from expt.callbacks.training import MixCB
from expt.ema import WeightAverage
from expt.errors import ConfigError
from expt.init import lsuv
from expt.learner import Learner
from expt.tasks import Classify

MIXES = {"mixup": mixup(), "cutmix": cutmix(), "mixup_cutmix": mixup_cutmix()}


def constant_images(n: int = 32, size: int = 8):
    """Image i is the constant i + 1 (two channels), its target the one-hot of class i."""
    x = (torch.arange(n).float() + 1)[:, None, None, None].expand(n, 2, size, size).contiguous()
    return x, nn.functional.one_hot(torch.arange(n), n).float()


@pytest.mark.parametrize("name", list(MIXES))
def test_mixed_targets_are_convex_combinations_with_the_images_weights(name):
    """Each mixed image is w x_i + (1 - w) x_j pixel by pixel, and its target lam y_i + (1 - lam) y_j
    with lam the mean of w: so the image's mean value is the target's mean class value. CutMix
    pixels are one image's or the other's, and lam is the share of the own image's pixels."""
    torch.manual_seed(0)
    x, y = constant_images()
    xm, ym = MIXES[name](x, y)
    assert torch.allclose(ym.sum(1), torch.ones(len(y)))
    assert ((ym > 0).sum(1) <= 2).all() and (ym >= 0).all()
    values = torch.arange(len(y)).float() + 1
    assert torch.allclose(xm.mean((1, 2, 3)), (ym * values).sum(1), atol=1e-5)
    own = ym[torch.arange(len(y)), torch.arange(len(y))]
    mixed = own < 1
    assert mixed.float().mean() > 0.8  # prob=1: nearly every image has a partner other than itself
    if name == "cutmix":
        partner = (ym * values).sum(1) - own * values  # (1 - lam) x_j
        for i in range(len(x)):
            pixels = xm[i, 0].flatten()
            mine = pixels == values[i]
            assert (mine | (pixels == (partner[i] / (1 - own[i]) if own[i] < 1 else values[i]))).all()
            assert mine.float().mean().item() == pytest.approx(own[i].item())
    if name == "mixup":  # blends: the whole image at one weight
        assert (xm.flatten(1).std(1) < 1e-4).all()


def test_no_mixing_without_prob_after_off_epoch_or_outside_training():
    x, y = constant_images()
    xm, ym = mixup(prob=0.0)(x, y)
    assert torch.equal(xm, x) and torch.equal(ym, y)

    class Learn:
        training, epoch, xb = True, 0, x
        yb = torch.arange(len(x))
    cb, learn = MixCB(mixup(off_epoch=2), Classify.of(len(x)).mix_targets), Learn()
    cb.before_batch(learn)
    assert learn.yb.shape == (len(x), len(x)) and not torch.equal(learn.xb, x)
    for epoch, training in ((2, True), (0, False)):
        learn.epoch, learn.training, learn.xb, learn.yb = epoch, training, x, torch.arange(len(x))
        cb.before_batch(learn)
        assert torch.equal(learn.xb, x) and learn.yb.dtype == torch.int64


def test_mixing_is_split_from_the_images_own_augmentation_and_comes_last():
    aug, mix = split_mix(compose([crop_flip(), mixup()]))
    assert isinstance(mix, Mix) and isinstance(aug, nn.Sequential) and not any(isinstance(m, Mix) for m in aug)
    assert split_mix(cutmix())[0] is None and split_mix(crop_flip())[1] is None
    with pytest.raises(ConfigError, match="last in compose"):
        split_mix(compose([mixup(), crop_flip()]))


def test_mixing_is_refused_for_image_targets_and_several_heads():
    from expt.build import check_mix
    from expt.losses import MultiTask
    from expt.tasks import Restore
    with pytest.raises(ConfigError, match="targets are images"):
        check_mix(mixup(), Restore(), nn.L1Loss())
    task = Classify({"disease": ["a", "b"], "variety": ["c", "d"]})
    with pytest.raises(ConfigError, match="several"):
        check_mix(mixup(), task, MultiTask(task.sizes))
    check_mix(mixup(), Classify.of(3), nn.CrossEntropyLoss(label_smoothing=0.1))


def test_mixed_targets_train_the_loss_and_count_the_larger_share_as_the_class():
    """Cross entropy (label smoothing too) takes the mixed targets as class probabilities: the loss
    of lam y_a + (1 - lam) y_b is lam L(a) + (1 - lam) L(b); train/acc counts the larger share."""
    torch.manual_seed(0)
    logits, a, b = torch.randn(6, 4), torch.randint(0, 4, (6,)), torch.randint(0, 4, (6,))
    task, lam = Classify.of(4), 0.7
    soft = lam * task.mix_targets(a) + (1 - lam) * task.mix_targets(b)
    for loss in (nn.CrossEntropyLoss(), nn.CrossEntropyLoss(label_smoothing=0.1)):
        assert loss(logits, soft).item() == pytest.approx((lam * loss(logits, a) + (1 - lam) * loss(logits, b)).item())
    sums = task.batch_sums(logits, soft, nn.CrossEntropyLoss(), training=True)
    assert sums["correct"].item() == (logits.argmax(1) == a).sum().item()


def test_ema_equals_the_closed_form_after_k_steps():
    """Without warm-up: ema_k = d^k w_0 + (1 - d) sum_t d^(k - t) w_t, BatchNorm's running mean too;
    with it, the first update copies the weights and step k decays by min(d, 1 - k^(-2/3))."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    d, k = 0.9, 5
    average = WeightAverage(model, d, warmup=False)
    w0 = model[0].weight.detach().clone()
    history = []
    for _ in range(k):
        with torch.no_grad():
            model[0].weight.add_(torch.randn(2, 3))
            model[1].running_mean.add_(1.0)
        history.append((model[0].weight.detach().clone(), model[1].running_mean.clone()))
        average.update(model)
    expected = d ** k * w0 + (1 - d) * sum(d ** (k - t) * w for t, (w, _) in enumerate(history, 1))
    assert torch.allclose(average.module[0].weight, expected, atol=1e-6)
    mean = (1 - d) * sum(d ** (k - t) * m for t, (_, m) in enumerate(history, 1))  # running_mean starts at 0
    assert torch.allclose(average.module[1].running_mean, mean, atol=1e-6)

    warm = WeightAverage(model, 0.999, warmup=True)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    warm.update(model)
    assert torch.equal(warm.module[0].weight, model[0].weight)  # step 1: a copy
    before = warm.module[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    warm.update(model)
    d2 = 1 - 2 ** (-2 / 3)
    assert torch.allclose(warm.module[0].weight, d2 * before + (1 - d2) * model[0].weight, atol=1e-6)
    state = warm.state_dict()
    again = WeightAverage(model, 0.999)
    again.load_state_dict(state)
    assert again.steps == 2 and torch.equal(again.module[0].weight, warm.module[0].weight)


class Count(ScheduleCB):
    def __init__(self):
        self.first, self.steps = True, 0
        self.scheduler = self

    def step(self):
        self.steps += 1


def test_accumulating_2_batches_of_32_equals_one_step_of_64():
    """On a model without BatchNorm, two accumulated batches of 32 move the weights as one batch of
    64 does; the schedule steps once per optimizer step; an epoch's odd batch steps alone."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    weights = []
    for batches, accumulate in (([(x, y)], 1), ([(x[:32], y[:32]), (x[32:], y[32:])], 2)):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
        count = Count()
        learn = Learner(model, batches, [], nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.5,
                                                                                      momentum=0.9),
                        [count], accumulate=accumulate)
        learn.fit(2)
        weights.append([p.detach().clone() for p in model.parameters()])
        assert count.steps == 2  # one optimizer step an epoch
    for a, b in zip(*weights):
        assert torch.allclose(a, b, atol=1e-6)
    model = nn.Linear(5, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    count = Count()
    Learner(model, [(x[:20], y[:20]), (x[20:40], y[20:40]), (x[40:], y[40:])], [], nn.CrossEntropyLoss(), opt,
            [count], accumulate=2).fit(1)
    assert count.steps == 2 and opt.state == {}  # steps after batches 2 and 3; plain SGD keeps no state


def test_lsuv_brings_each_layer_to_unit_std_on_the_batch():
    """After init=lsuv each conv and linear layer's output on the batch has std within 1e-3 of 1
    (and, with a bias, mean within 1e-3 of 0); BatchNorm's running statistics are as they were."""
    torch.manual_seed(0)
    from expt.models.resnet import cnn
    xb = torch.rand(64, 1, 28, 28)
    for model in (cnn(1, 10), nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
                                            nn.Flatten(), nn.Linear(8 * 12 * 12, 10))):
        buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
        report = lsuv(model, xb)
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in buffers.items())
        layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert [r["layer"] for r in report] == [n for n, m in model.named_modules() if m in layers]
        outputs = []
        hooks = [m.register_forward_hook(lambda m, a, out: outputs.append((m, out))) for m in layers]
        model.train()
        with torch.no_grad():
            model(xb)
        for h in hooks:
            h.remove()
        for (layer, out), row in zip(outputs, report):
            assert row["rounds"] < 10
            assert abs(out.std().item() - 1) < 1e-3, row
            if layer.bias is not None:
                assert abs(out.mean().item()) < 1e-3, row
    assert any(abs(r["std_before"] - 1) > 0.1 for r in report)  # there was something to fix


def test_top5_is_reported_for_more_than_10_classes():
    torch.manual_seed(0)
    logits, y = torch.randn(50, 12), torch.randint(0, 12, (50,))
    task = Classify.of(12)
    sums = task.batch_sums(logits, y, nn.CrossEntropyLoss(), training=False)
    expected = sum(int(y[i]) in logits[i].topk(5).indices.tolist() for i in range(50))
    assert sums["top5"].item() == expected
    row = task.epoch_metrics({"correct": 0.5}, {"correct": 0.4, "top5": expected / 50})
    assert row["val/top5"] == expected / 50
    assert "top5" not in Classify.of(10).batch_sums(logits[:, :10], y % 10, nn.CrossEntropyLoss(), training=False)


def test_the_tricks_together_resume_where_a_killed_run_left_off(tmp_path, fmnist_dir, expt_in, monkeypatch):
    """mixup and CutMix, the average, accumulation, clipping and LSUV in one run: a run stopped by
    Ctrl-C after epoch 1 and resumed ends with the uninterrupted run's metrics and weights; the
    model files hold the average, last.pt both the trained weights and the average."""
    tricks = ["train", "debug=fast", f"data.root={fmnist_dir}", "bs=32", "data.train_subset=96", "epochs=2",
              "augment=mixup_cutmix", "ema.decay=0.9", "accumulate=2", "clip_grad=1.0", "init=lsuv",
              "loss=label_smoothing"]
    full = expt_in([*tricks, f"hydra.run.dir={tmp_path / 'full'}"])
    assert full.returncode == 0, full.stderr
    assert "init=lsuv" in full.stdout and "std after" in full.stdout
    undo = ctrl_c_after_epoch(monkeypatch, 1)
    cut = expt_in([*tricks, f"hydra.run.dir={tmp_path / 'cut'}"])
    assert cut.returncode == 130, cut.stderr
    undo()
    resumed = expt_in(["train", f"resume={tmp_path / 'cut'}", f"hydra.run.dir={tmp_path / 'resumed'}"])
    assert resumed.returncode == 0, resumed.stderr
    assert "init=lsuv" not in resumed.stdout  # the weights come from the training state
    a, b = pd.read_csv(tmp_path / "full" / "metrics.csv"), pd.read_csv(tmp_path / "resumed" / "metrics.csv")
    assert list(b["epoch"]) == [1, 2]
    for column in ("train/loss", "val/loss", "val/acc", "train/acc"):
        assert b[column].tolist() == pytest.approx(a[column].tolist(), rel=1e-6), column
    saved = load_file(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in load_file(tmp_path / "full" / "model.safetensors").items())
    state = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in state["ema"]["weights"].items())
    assert any(not torch.equal(saved[k], v) for k, v in state["model"].items() if v.is_floating_point())
    assert state["ema"]["steps"] == 2 * 2  # 3 batches of 32 an epoch: steps after batches 2 and 3
    summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert summary["status"] == "ok"
    # what the average and accumulation are is part of the recipe
    for override in ("ema.decay=0.5", "accumulate=1"):
        refused = expt_in(["train", f"resume={tmp_path / 'cut'}", override, f"hydra.run.dir={tmp_path / 'r'}"])
        assert_one_line(refused, 2, "cannot resume", override.split(".")[0].split("=")[0])


@pytest.mark.parametrize("override, phrase", [
    ("accumulate=0", "accumulate=0 must be at least 1"),
    ("ema.decay=1.5", "ema.decay=1.5 must be between 0 and 1"),
    ("init=xavier", "init='xavier' is not one of default, lsuv"),
    ("experiment=fmnist_gan", "a GAN run trains two in turns"),
])
def test_the_tricks_settings_are_checked(tmp_path, fmnist_dir, expt_in, override, phrase):
    extra = ["ema.decay=0.9"] if override.startswith("experiment") else []
    result = expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", override, *extra,
                      f"hydra.run.dir={tmp_path / 'run'}"])
    assert_one_line(result, 2, phrase)


def test_flat_cos_holds_the_peak_then_anneals_to_zero():
    from expt.schedules import flat_cos
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    sched = flat_cos(opt, total_steps=100, pct_start=0.72)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:72] == [0.5] * 72
    assert all(a > b for a, b in zip(lrs[72:], lrs[73:])) and lrs[-1] < 0.005


def test_lookahead_radam_resumes_its_slow_weights():
    """The slow weights live in the optimizer's state: a copy loaded from the state dict after 4
    steps takes the same next 8 steps (two Lookahead syncs at k=6) as the original."""
    from expt.optimizers import lookahead_radam
    torch.manual_seed(0)
    x, y = torch.randn(32, 4), torch.randn(32, 1)

    def steps(model, opt, n):
        for _ in range(n):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    model = nn.Linear(4, 1)
    opt = lookahead_radam([{"params": list(model.parameters()), "lr_mult": 1.0}], lr=0.1, k=6)
    steps(model, opt, 4)
    twin = nn.Linear(4, 1)
    twin.load_state_dict(model.state_dict())
    copy_opt = lookahead_radam([{"params": list(twin.parameters()), "lr_mult": 1.0}], lr=0.1, k=6)
    copy_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # as from last.pt: no tensor shared with `opt`
    steps(model, opt, 8)
    steps(twin, copy_opt, 8)
    assert torch.equal(model.weight, twin.weight) and torch.equal(model.bias, twin.bias)
    assert "lookahead_slow_buff" in opt.state_dict()["state"][0]


def test_timm_act_layer_replaces_the_activation_or_is_refused():
    from expt.models.timm import timm_model
    model = timm_model(3, 4, name="test_resnet", act_layer="mish", input_shape=(3, 32, 32))
    assert any(isinstance(m, nn.Mish) for m in model.modules())
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    with pytest.raises(ConfigError, match="arch.act_layer='os.system' is not one of timm's activations"):
        timm_model(3, 4, name="test_resnet", act_layer="os.system", input_shape=(3, 32, 32))


def test_progressive_resizing_trains_each_stage_at_its_size_and_resumes(tmp_path, expt_in, monkeypatch):
    """data.sizes=[16,32] data.size_epochs=[0,1]: epoch 1 trains at 16 px, epoch 2 at 32 px, each
    size from a cache of its own (16's built when first needed), validation at data.size; a run
    stopped after epoch 1 resumes at 32 px with the uninterrupted run's metrics."""
    from conftest import make_imagenette
    from expt.callbacks.training import ResizeCB
    monkeypatch.setenv("EXPT_CACHE", str(tmp_path / "cache"))
    root = make_imagenette(tmp_path / "inet")
    seen = []
    before_train = ResizeCB.before_train

    def recording(self, learn):
        before_train(self, learn)
        seen.append((learn.epoch, tuple(self.loader.x.shape[-2:])))
    monkeypatch.setattr(ResizeCB, "before_train", recording)
    common = ["train", "data=imagenette", f"data.root={root}", "data.size=32", "data.sizes=[16,32]",
              "data.size_epochs=[0,1]", "epochs=2", "bs=8", "device=cpu", "arch=resnet_k5", "arch.nfs=[8,16]"]
    full = expt_in([*common, f"hydra.run.dir={tmp_path / 'full'}"])
    assert full.returncode == 0, full.stderr
    assert seen == [(0, (16, 16)), (1, (32, 32))]
    caches = sorted(p.name.split("-")[-3:-1] for p in (tmp_path / "cache").rglob("*-train-*.safetensors"))
    assert [size for _, size in caches] == ["16", "32"], caches
    seen.clear()
    undo = ctrl_c_after_epoch(monkeypatch, 1)
    assert expt_in([*common, f"hydra.run.dir={tmp_path / 'cut'}"]).returncode == 130
    undo()
    resumed = expt_in(["train", f"resume={tmp_path / 'cut'}", f"hydra.run.dir={tmp_path / 'resumed'}"])
    assert resumed.returncode == 0, resumed.stderr
    assert seen == [(0, (16, 16)), (1, (32, 32))]  # the cut run's epoch 1, then the resumed epoch 2 at 32 px
    a, b = pd.read_csv(tmp_path / "full" / "metrics.csv"), pd.read_csv(tmp_path / "resumed" / "metrics.csv")
    assert b["val/loss"].tolist() == pytest.approx(a["val/loss"].tolist(), rel=1e-6)
    for override, phrase in (("data.size_epochs=[1,2]", "must start at 0 and rise"),
                             ("data.size_epochs=[0]", "of the same length"),
                             ("arch=cnn arch.nfs=[8,16,32,64,128]", "takes images of 17 to 32 pixels a side, and the "
                                                                   "data's are 16x16; change data.sizes")):
        assert_one_line(expt_in([*common, *override.split(), f"hydra.run.dir={tmp_path / 'x'}"]), 2, phrase)
    assert_one_line(expt_in(["train", "debug=fast", "data.sizes=[16,28]", f"hydra.run.dir={tmp_path / 'y'}"]), 2,
                    "sizes")
