"""JPEG datasets: the image cache, Imagenette, Paddy (two heads), predict, random resized crop."""

import json

import pandas as pd
import pytest
import torch

from conftest import SHARED_DATA, make_imagenette, make_paddy, run_expt
from expt.augment import RandomResizedCrop
from expt.data import imagenette, images, paddy
from expt.data.images import cached_images, load_image
from expt.errors import DataError
from expt.tasks import task_for


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("method", ["crop", "squish"])
def test_cache_pixels_equal_a_direct_decode(tmp_path, cache, method):
    root = make_imagenette(tmp_path / "inet", per_class=(2, 1))
    files = sorted((root / "train").rglob("*.JPEG"))
    x, kept, bad = cached_images(files, 16, method, "t", workers=2)
    assert kept == list(range(len(files))) and not bad and x.shape == (len(files), 3, 16, 16)
    for i, f in enumerate(files):
        assert torch.equal(x[i], load_image(f, 16, method))
    assert len(list(cache.glob("t-16-*.safetensors"))) == 1


def test_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path, cache, monkeypatch):
    root = make_imagenette(tmp_path / "inet", per_class=(2, 1))
    files = sorted((root / "train").rglob("*.JPEG"))
    first, _, _ = cached_images(files, 12, "crop", "t", workers=1)
    decoded = []
    real = images.decode_all
    monkeypatch.setattr(images, "decode_all", lambda *a, **k: decoded.append(1) or real(*a, **k))
    again, _, _ = cached_images(files, 12, "crop", "t", workers=1)
    assert torch.equal(first, again) and not decoded  # the cache answered
    from conftest import write_jpeg
    write_jpeg(files[0], seed=999, color=(0, 0, 0))
    changed, _, _ = cached_images(files, 12, "crop", "t", workers=1)
    assert decoded == [1] and not torch.equal(changed[0], first[0]) and torch.equal(changed[1:], first[1:])
    cached_images(files, 10, "crop", "t", workers=1)  # another size: another cache
    assert decoded == [1, 1] and len(list(cache.glob("t-*.safetensors"))) == 2


def test_corrupt_image_is_skipped_and_counted(tmp_path, cache):
    root = make_imagenette(tmp_path / "inet", per_class=(3, 2))
    bad = root / "train" / "n01440764" / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    data = imagenette.load(root=str(root), size=16, workers=1)
    assert list(data.skipped) == [str(bad)] and len(data.train_x) == 9 and len(data.valid_x) == 6
    with pytest.raises(DataError, match="unreadable image .*broken.JPEG"):
        imagenette.load(root=str(root), size=16, strict=True, workers=1)


def test_imagenette_load(tmp_path, cache):
    data = imagenette.load(root=str(make_imagenette(tmp_path / "inet")), size=20, workers=1)
    assert data.classes == ["tench", "English springer", "cassette player"]
    assert data.train_x.shape == (24, 3, 20, 20) and data.valid_x.shape == (9, 3, 20, 20)
    assert data.train_y.tolist() == [0] * 8 + [1] * 8 + [2] * 8 and len(data.mean) == 3
    part = imagenette.load(root=str(tmp_path / "inet"), size=20, train_subset=6, workers=1)
    assert len(part.train_x) == 6 and len(set(part.train_y.tolist())) > 1  # a sample across classes


def test_paddy_two_targets_and_split(tmp_path, cache):
    data = paddy.load(root=str(make_paddy(tmp_path / "paddy")), size=16, workers=1)
    assert data.heads == {"label": ["blast", "normal", "tungro"], "variety": ["ADT45", "Ponni"]}
    assert data.train_y.shape == (19, 2) and data.valid_y.shape == (5, 2) and task_for(data).n_outputs == 5
    again = paddy.load(root=str(tmp_path / "paddy"), size=16, workers=1)
    assert torch.equal(data.valid_y, again.valid_y)  # the split is seeded
    one = paddy.load(root=str(tmp_path / "paddy"), size=16, targets=["label"], workers=1)
    assert one.train_y.shape == (19,) and list(one.heads) == ["label"]


def test_paddy_bad_layouts(tmp_path, cache):
    root = make_paddy(tmp_path / "paddy", n=6)
    csv = (root / "train.csv").read_text()
    (root / "train.csv").write_text(csv.replace("variety", "kind"))
    with pytest.raises(DataError, match="lacks column.*variety"):
        paddy.load(root=str(root), size=16)
    (root / "train.csv").write_text(csv + "999.jpg,hispa,ADT45,50\n")
    with pytest.raises(DataError, match="labels in train.csv with no folder .*: hispa"):
        paddy.load(root=str(root), size=16)
    (root / "train.csv").write_text(csv + "999.jpg,blast,ADT45,50\n")
    with pytest.raises(DataError, match="1 image.* missing, e.g. .*999.jpg"):
        paddy.load(root=str(root), size=16)
    with pytest.raises(DataError, match="data.root=.*nowhere does not exist"):
        paddy.load(root=str(tmp_path / "nowhere"))


def test_random_resized_crop():
    x = torch.rand(16, 3, 24, 24)
    assert torch.allclose(RandomResizedCrop((1, 1), (1, 1), p_flip=0)(x), x, atol=1e-5)
    assert torch.allclose(RandomResizedCrop((1, 1), (1, 1), p_flip=1)(x), x.flip(3), atol=1e-5)
    out = RandomResizedCrop(generator=torch.Generator().manual_seed(0))(x.clone())
    same = x[:1].expand(16, -1, -1, -1)
    crops = RandomResizedCrop(generator=torch.Generator().manual_seed(0))(same.contiguous())
    assert out.shape == x.shape and len({round(c.sum().item(), 3) for c in crops}) == 16  # one crop per image


@pytest.mark.parametrize("cache_images", [True, False])
def test_train_imagenette_end_to_end(tmp_path, expt_in, cache_images):
    root = make_imagenette(tmp_path / "inet")
    result = expt_in(["train", "data=imagenette", f"data.root={root}", "data.size=32", "device=cpu", "epochs=2",
                      f"data.cache={str(cache_images).lower()}",
                      "bs=8", "augment=random_resized_crop", f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["skipped_images"] == 0 and summary["epochs"] == 2


def test_paddy_two_heads_train_predict_and_tta(tmp_path, expt_in):
    root = make_paddy(tmp_path / "paddy")
    common = [f"data.root={root}", "data.size=32", "device=cpu"]
    result = expt_in(["train", "data=paddy", *common, "loss=multi_task", "loss.weights={label: 1.0, variety: 0.5}",
                      "epochs=2", "bs=8", f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode == 0, result.stderr
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    for column in ("val/label_acc", "val/variety_acc", "train/label_loss", "val/variety_loss", "val/error_rate"):
        assert column in metrics.columns
    assert metrics["val/acc"].tolist() == metrics["val/label_acc"].tolist()
    assert metrics["train/loss"].iloc[0] == pytest.approx(metrics["train/label_loss"].iloc[0]
                                                          + 0.5 * metrics["train/variety_loss"].iloc[0], rel=1e-4)
    assert "val/variety_acc" in result.stdout and "train/label_loss" in result.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["val/error_rate"] == pytest.approx(1 - summary["val/acc"])

    ckpt = tmp_path / "run" / "model.safetensors"
    result = expt_in(["predict", f"ckpt={ckpt}", f"data.root={root}", f"hydra.run.dir={tmp_path / 'pred'}"])
    assert result.returncode == 0, result.stderr
    sub = pd.read_csv(tmp_path / "run" / "submission.csv")
    assert list(sub.columns) == ["image_id", "label"] and len(sub) == 5
    assert sub["image_id"].tolist() == pd.read_csv(root / "sample_submission.csv")["image_id"].tolist()
    assert set(sub["label"]) <= {"blast", "normal", "tungro"}
    assert f"outputs: {tmp_path / 'run'}" in result.stdout and not (tmp_path / "pred").exists()

    result = expt_in(["tta", f"ckpt={ckpt}", f"data.root={root}", f"hydra.run.dir={tmp_path / 'tta'}"])
    assert result.returncode == 0, result.stderr
    out = json.loads((tmp_path / "run" / "tta.json").read_text())
    assert set(out["heads"]) == {"label", "variety"} and out["acc"] == out["heads"]["label"]["acc"]

    result = expt_in(["interpret", f"ckpt={ckpt}", f"data.root={root}", "n=4", f"hydra.run.dir={tmp_path / 'i'}"])
    assert result.returncode == 0, result.stderr
    for head, classes in (("", ["blast", "normal", "tungro"]), ("_variety", ["ADT45", "Ponni"])):  # a file set per head
        confusion = pd.read_csv(tmp_path / "run" / f"confusion{head}.csv", index_col=0)
        assert list(confusion.columns) == classes and confusion.to_numpy().sum() == 5  # 20% of 24 validate
        top = pd.read_csv(tmp_path / "run" / f"top_losses{head}.csv")
        assert all((root / f).is_file() for f in top["file"]) and (tmp_path / "run" / f"report{head}.csv").is_file()


def test_two_targets_need_multi_task(tmp_path, expt_in):
    """loss=auto (the default) picks multi_task for two heads; one cross entropy is refused."""
    root = make_paddy(tmp_path / "paddy", n=6)
    result = expt_in(["train", "data=paddy", f"data.root={root}", "data.size=16", "device=cpu", "bs=2",
                      "loss=cross_entropy", f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode == 2 and "use loss=multi_task" in result.stderr and "Traceback" not in result.stderr


def test_streaming_loader_gives_the_cache_batches(tmp_path, cache):
    from expt.data.loaders import DeviceLoader, StreamLoader
    root = make_imagenette(tmp_path / "inet", per_class=(3, 1))
    streamed = imagenette.load(root=str(root), size=16, workers=1, cache=False)
    assert not cache.exists() or not list(cache.iterdir())  # nothing was cached
    cached = imagenette.load(root=str(root), size=16, workers=1)
    assert streamed.train_x.shape == cached.train_x.shape and torch.equal(streamed.train_y, cached.train_y)
    assert streamed.mean == pytest.approx(cached.mean)
    kw = dict(shuffle=False, drop_last=False, device=torch.device("cpu"))
    a = list(DeviceLoader(cached.train_x, cached.train_y, 4, **kw))
    b = list(StreamLoader(streamed.train_x, streamed.train_y, 4, workers=2, **kw))
    assert len(a) == len(b) == 3
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    shuffled = StreamLoader(streamed.train_x, streamed.train_y, 4, shuffle=True, drop_last=True,
                            device=torch.device("cpu"), workers=0)
    pairs = [(x, y) for xb, yb in shuffled for x, y in zip(xb, yb)]
    assert len(pairs) == 8
    for x, y in pairs:  # each label still belongs to its image
        match = [i for i in range(len(cached.train_x)) if torch.equal(cached.train_x[i].float() / 255, x)]
        assert cached.train_y[match[0]] == y


def test_streaming_survives_a_corrupt_image(tmp_path, cache):
    root = make_imagenette(tmp_path / "inet", per_class=(2, 1))
    (root / "train" / "n01440764" / "broken.JPEG").write_bytes(b"garbage")
    data = imagenette.load(root=str(root), size=8, workers=1, cache=False)
    blacks = [i for i in range(len(data.train_x)) if data.train_x[i].sum() == 0]
    assert len(blacks) == 1


@pytest.mark.skipif(not (SHARED_DATA / "imagenette" / "train").is_dir(), reason="needs ../shared/data/imagenette")
@pytest.mark.realdata
def test_real_imagenette_subset(tmp_path, isolated_env):
    result = run_expt(["train", "data=imagenette", f"data.root={SHARED_DATA / 'imagenette'}", "data.size=32",
                       "data.train_subset=400", "data.valid_subset=200", "device=cpu", "epochs=1", "bs=50",
                       f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, env=isolated_env)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["skipped_images"] == 0
    assert "400 train / 200 valid images" in result.stdout
