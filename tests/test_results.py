"""Looking at a run's results: train/acc beside val/acc, and metrics.png drawn as the run goes."""

import pytest
import torch
from PIL import Image

from expt.callbacks import CheckpointCB, MetricsCB
from expt.callbacks.curves import CurvesCB, smoothed
from expt.learner import Callback
from expt.tasks import Classify
from test_learner import learner


def test_train_acc_is_the_accuracy_on_the_training_batches():
    """With lr=0 the model does not change, so train/acc is its accuracy on the training batches it
    was shown (2 batches of 16 of the 40 images: the last partial batch is dropped)."""
    class Batches(Callback):
        def __init__(self):
            self.seen = []

        def after_loss(self, learn):
            if learn.training:
                self.seen.append((learn.xb.clone(), learn.yb.clone()))
    batches = Batches()
    learn = learner([MetricsCB(Classify.of(2)), batches], lr=0.0)
    learn.fit(1)
    x, y = learn.train_dl.x.float() / 255, learn.train_dl.y
    correct = sum((learn.model(xb).argmax(1) == yb).sum().item() for xb, yb in batches.seen)
    assert learn.history[0]["train/acc"] == pytest.approx(correct / sum(len(yb) for _, yb in batches.seen))
    assert learn.history[0]["val/acc"] == pytest.approx((learn.model(x).argmax(1) == y).float().mean().item())


class Draws(Callback):
    """Counts metrics.png's writes (its modification), after CurvesCB."""

    order = CurvesCB.order + 1

    def __init__(self, path):
        self.path, self.stamps = path, []

    def after_epoch(self, learn):
        self.stamps.append(self.path.stat().st_mtime_ns if self.path.exists() else None)


@pytest.mark.parametrize("every, drawn_after", [(0.0, [1, 2, 3]), (1e9, [3])])
def test_metrics_png_is_drawn_as_the_run_goes(tmp_path, every, drawn_after):
    path = tmp_path / "metrics.png"
    curves, draws = CurvesCB(path, "val/acc", every=every), Draws(path)
    learner([MetricsCB(Classify.of(2)), curves, draws]).fit(3)
    changed = [i + 1 for i, (a, b) in enumerate(zip([None, *draws.stamps], draws.stamps)) if b is not None and b != a]
    assert changed == drawn_after  # every epoch, or (rate-limited) the last one
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (1100, 400)
    assert len(curves.batches["loss"]) == 3 * 2 and curves.batches["loss"][-1][0] == 3.0  # (epoch, loss) per batch


def test_an_epoch_the_checkpoint_drops_is_not_drawn(tmp_path):
    """CurvesCB follows CheckpointCB: a non-finite epoch stops the fit before it is drawn."""
    class Poison(Callback):
        def after_validate(self, learn):
            if learn.epoch == 1:
                learn.model[1].weight.data.fill_(float("nan"))
    meta = {"config": {}, "classes": ["a", "b"], "mean": [0.5], "std": [0.5], "versions": {}}
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    checkpoint = CheckpointCB(tmp_path, model, meta, {}, write=False)
    curves = CurvesCB(tmp_path / "metrics.png", "val/acc", every=0.0)
    learn = learner([MetricsCB(Classify.of(2)), checkpoint, curves, Poison()], model=model)
    learn.fit(3)
    assert [row["epoch"] for row in learn.history] == [1] and "non-finite" in learn.stop_reason
    assert (tmp_path / "metrics.png").is_file()


def test_smoothing_keeps_a_constant_and_follows_a_step():
    assert smoothed([2.0] * 5) == pytest.approx([2.0] * 5)
    out = smoothed([0.0] * 50 + [1.0] * 200)
    assert out[49] == pytest.approx(0.0) and 0.9 < out[-1] <= 1.0


def test_show_draws_the_first_augmented_training_batch_with_its_labels(tmp_path, expt_in, fmnist_dir):
    from expt.tasks import Classify, MultiLabel
    run = tmp_path / "show"
    result = expt_in(["show", f"data.root={fmnist_dir}", "augment=crop_flip", "bs=16", "n=12", "device=cpu",
                      f"hydra.run.dir={run}"])
    assert result.returncode == 0, result.stderr
    assert "12 of 16 images" in result.stdout and "augment on" in result.stdout
    with Image.open(run / "batch.png") as im:
        assert im.format == "PNG" and im.size == (1280, 360)  # 8 a row, 2 rows
    two_heads = Classify({"label": ["a", "b"], "variety": ["x", "y", "z"]})
    assert two_heads.names(torch.tensor([[1, 2], [0, 0]])) == ["b / z", "a / x"]
    assert MultiLabel(["cloudy", "road", "water"]).names(torch.tensor([[1.0, 0, 1], [0, 0, 0]])) == ["cloudy water", ""]


def test_show_labels_mixed_images_with_their_two_shares(tmp_path, expt_in, fmnist_dir, monkeypatch):
    """augment=mixup_cutmix: batch.png shows the mixed images, each captioned with its two largest
    classes and their shares (a line each)."""
    from expt.commands import show
    captions = []
    monkeypatch.setattr(show, "labelled_images", lambda out, x, names: captions.extend(names))
    result = expt_in(["show", f"data.root={fmnist_dir}", "augment=mixup_cutmix", "bs=16", "n=12", "device=cpu",
                      f"hydra.run.dir={tmp_path / 'show'}"])
    assert result.returncode == 0, result.stderr
    assert len(captions) == 12 and "augment on" in result.stdout
    for caption in captions:
        shares = [float(line.rsplit(" ", 1)[1]) for line in caption.splitlines()]
        assert 1 <= len(shares) <= 2 and sum(shares) == pytest.approx(1.0, abs=0.011), caption
    assert sum(len(c.splitlines()) == 2 for c in captions) >= 6  # most images have a partner of another class
