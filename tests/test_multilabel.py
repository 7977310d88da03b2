"""Several labels per image (data=csv data.label_delim): the split, the metrics against
scikit-learn's, a run that learns, its TTA, and the loss each task picks when none is named."""

import json
import random

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from conftest import assert_one_line
from expt.data import table
from expt.errors import DataError
from expt.tasks.multilabel import MultiLabel, fbeta_per_sample

COLOURS = ["red", "green", "blue"]


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPT_CACHE", str(tmp_path / "cache"))


def make_tagged(root, n: int, seed: int = 0, header: str = "file,tags", extra: list[str] = ()):
    """root/img/<i>.png, each bright in the colour channels of its tags (a random subset of red,
    green, blue; some images have none), listed in root/tags.csv as space-separated tags."""
    from PIL import Image
    rng, g = random.Random(seed), torch.Generator().manual_seed(seed)
    rows = [header]
    for i in range(n):
        on = [c for c in range(3) if rng.random() < 0.5]
        pixels = torch.randint(0, 60, (20, 20, 3), generator=g)
        pixels[..., on] += 170
        (root / "img").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.to(torch.uint8).numpy()).save(root / "img" / f"{i}.png")
        rows.append(f"img/{i}.png,{' '.join(COLOURS[c] for c in on)}")
    (root / "tags.csv").write_text("\n".join([*rows, *extra]) + "\n")
    return root


def test_f_scores_and_accuracy_equal_scikit_learns():
    sklearn = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    actual = torch.rand(200, 5, generator=g) < 0.3
    predicted = torch.rand(200, 5, generator=g) < 0.4
    predicted[:3], actual[:3] = False, False  # images with no label, predicted none: 1 (zero_division=1)
    for beta in (1.0, 2.0):
        want = sklearn.fbeta_score(actual.numpy(), predicted.numpy(), beta=beta, average="samples", zero_division=1)
        assert fbeta_per_sample(predicted, actual, beta).mean().item() == pytest.approx(want, abs=1e-6)
    task = MultiLabel(["a", "b", "c", "d", "e"], threshold=0.5)
    logits = torch.where(predicted, 2.0, -2.0)
    sums = task.batch_sums(logits, actual.float(), None, training=False)
    assert sums["acc_multi"].item() / 200 == pytest.approx((predicted == actual).float().mean().item())
    assert sums["f1"].item() / 200 == pytest.approx(sklearn.f1_score(actual.numpy(), predicted.numpy(),
                                                                     average="samples", zero_division=1), abs=1e-6)


def test_the_split_is_seeded_and_keeps_every_label_in_training(tmp_path, cache_dir):
    root = make_tagged(tmp_path / "tags", 40, extra=["img/rare.png,red purple"])
    from PIL import Image
    Image.new("RGB", (20, 20)).save(root / "img" / "rare.png")
    data = table.load(root=str(root), csv="tags.csv", label_col="tags", label_delim=" ", size=16, workers=1)
    again = table.load(root=str(root), csv="tags.csv", label_col="tags", label_delim=" ", size=16, workers=1)
    other = table.load(root=str(root), csv="tags.csv", label_col="tags", label_delim=" ", size=16, workers=1,
                       split_seed=7)
    assert data.task == "multilabel" and data.classes == ["blue", "green", "purple", "red"]
    assert data.train_y.shape == (33, 4) and data.valid_y.shape == (8, 4)  # 20% of 41 validates
    assert data.train_y[:, data.classes.index("purple")].sum() == 1  # the one purple image trains
    assert torch.equal(data.valid_y, again.valid_y) and data.valid_files == again.valid_files
    assert data.valid_files != other.valid_files
    assert all(f.startswith("img/") for f in data.valid_files) and len(set(data.valid_files)) == 8


@pytest.mark.parametrize("options, phrase", [
    ({"label_delim": ""}, "non-empty delimiter"),
    ({"label_delim": " ", "threshold": 1.5}, "between 0 and 1"),
])
def test_bad_multilabel_options_are_one_clear_error(tmp_path, cache_dir, options, phrase):
    root = make_tagged(tmp_path / "tags", 6)
    with pytest.raises(DataError, match=phrase):
        table.load(root=str(root), csv="tags.csv", label_col="tags", size=16, workers=1, **options)


def test_a_multilabel_run_learns_and_tta_averages_probabilities(tmp_path, cache_dir, expt_in):
    root = make_tagged(tmp_path / "tags", 160)
    data = [f"data.root={root}", "data=csv", "data.csv=tags.csv", "data.label_col=tags", "data.label_delim=' '",
            "data.size=16", "data.workers=1"]
    result = expt_in(["train", *data, "device=cpu", "bs=16", "epochs=3", f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["headline"] == "val/f1" and summary["val/f1"] > 0.9, summary
    assert {"val/f2", "val/acc_multi", "train/acc_multi"} <= summary.keys()
    result = expt_in(["tta", f"ckpt={tmp_path / 'run' / 'model.safetensors'}", f"hydra.run.dir={tmp_path / 'tta'}"])
    assert result.returncode == 0, result.stderr
    out = json.loads((tmp_path / "run" / "tta.json").read_text())
    assert out["f1"] == pytest.approx(summary["val/f1"], abs=1e-6) and set(out["per_label"]) == set(COLOURS)
    assert "red f1" in result.stdout
    assert_one_line(expt_in(["train", *data, "loss=cross_entropy", "device=cpu", "bs=16",
                             f"hydra.run.dir={tmp_path / 'r2'}"]), 2, "use loss=auto")


def test_loss_auto_is_the_tasks_own():
    from expt.build import build_loss
    from expt.losses import MultiLabelBCE, MultiTask, NoPixelLoss, PatchBCE
    from expt.tasks import Classify, Critique, Generate, Restore
    auto = OmegaConf.create({"_target_": "expt.losses.auto", "_partial_": True})
    expected = [(Classify.of(3), nn.CrossEntropyLoss), (Classify({"a": ["x", "y"], "b": ["u", "v"]}), MultiTask),
                (MultiLabel(["x", "y"]), MultiLabelBCE), (Restore(), nn.L1Loss), (Critique(), PatchBCE),
                (Generate(), NoPixelLoss)]
    for task, kind in expected:
        assert type(build_loss(auto, task)) is kind
    from expt.errors import ConfigError
    for task in (Classify.of(3), Restore()):
        with pytest.raises(ConfigError, match="loss=bce|MultiLabelBCE"):
            build_loss(OmegaConf.create({"_target_": "expt.losses.bce"}), task)
