"""expt predict input=DIR_OR_FILE with a classifier: predictions.csv equal to what expt tta computes
for the same images, gray images for a Fashion-MNIST model, several labels, bad inputs."""

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from conftest import assert_one_line
from test_folder import make_tree
from test_multilabel import make_tagged


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPT_CACHE", str(tmp_path / "cache"))


def test_predictions_on_a_folder_equal_tta_plain_predictions(tmp_path, cache_dir, expt_in):
    from expt.rebuild import build_eval
    from expt.tta import predict
    root = tmp_path / "pics"
    make_tree(root / "train", {"cat": 10, "dog": 10, "emu": 10})
    make_tree(root / "valid", {"cat": 3, "dog": 3, "emu": 3})
    (root / "valid" / "cat" / "broken.jpg").write_bytes(b"not an image")  # skipped by both, and counted
    run = tmp_path / "run"
    result = expt_in(["train", "data=folder", f"data.root={root}", "data.size=16", "data.resize=squish",
                      "data.workers=1", "device=cpu", "bs=8", "epochs=1", f"hydra.run.dir={run}"])
    assert result.returncode == 0, result.stderr
    result = expt_in(["predict", f"ckpt={run / 'model.safetensors'}", f"input={root / 'valid'}", "topk=2",
                      f"hydra.run.dir={tmp_path / 'p'}"])
    assert result.returncode == 0, result.stderr
    assert "9 images" in result.stdout and "1 unreadable, skipped" in result.stdout
    ours = pd.read_csv(run / "predictions.csv")
    assert list(ours.columns) == ["file", "label", "probability", "label_1", "probability_1", "label_2",
                                  "probability_2"]

    cfg = OmegaConf.create({"ckpt": str(run / "model.safetensors"), "tta": {"_target_": "expt.tta.views",
                            "names": ["identity"]}, "device": "cpu", "precision": "fp32", "channels_last": False,
                            "bs": 4, "data": {"_target_": "expt.data.folder.load", "root": None}})
    ev = build_eval(cfg, explicit_data=False)
    plain, _ = predict(ev.models[0], ev.valid_dl, ev.tta, ev.runtime.autocast(), ev.task)
    theirs = {file.removeprefix("valid/"): p for file, p in zip(ev.data.valid_files, plain)}
    assert sorted(theirs) == sorted(ours["file"])
    for row in ours.itertuples():
        p = theirs[row.file]
        assert row.label == ev.task.heads["label"][p.argmax()] and row.probability == pytest.approx(p.max().item(), abs=1e-5)
        assert row.label_1 == row.label and row.probability_2 <= row.probability_1

    result = expt_in(["predict", f"ckpt={run / 'model.safetensors'}", f"input={root / 'valid' / 'dog' / 'dog_1.jpg'}",
                      f"hydra.run.dir={tmp_path / 'p2'}"])
    assert result.returncode == 0, result.stderr
    one = pd.read_csv(run / "predictions.csv")
    assert one["file"].tolist() == ["dog_1.jpg"] and one["probability"][0] == pytest.approx(
        theirs["dog/dog_1.jpg"].max().item(), abs=1e-5)


def test_a_gray_model_reads_images_as_its_data_did(tmp_path, expt_in, fmnist_dir):
    from PIL import Image
    from expt.data.fashion_mnist import load
    from expt.rebuild import model_from_checkpoint
    run = tmp_path / "run"
    assert expt_in(["train", f"data.root={fmnist_dir}", "epochs=1", "bs=64", "device=cpu",
                    f"hydra.run.dir={run}"]).returncode == 0
    data = load(root=str(fmnist_dir))
    for i in range(6):  # the validation images as PNG files, one in RGB
        image = Image.fromarray(data.valid_x[i, 0].numpy())
        (tmp_path / "new").mkdir(exist_ok=True)
        (image.convert("RGB") if i == 0 else image).save(tmp_path / "new" / f"item{i}.png")
    result = expt_in(["predict", f"ckpt={run / 'model.safetensors'}", f"input={tmp_path / 'new'}", "device=cpu",
                      f"hydra.run.dir={tmp_path / 'p'}"])
    assert result.returncode == 0, result.stderr
    ours = pd.read_csv(run / "predictions.csv")
    model, _ = model_from_checkpoint(run / "model.safetensors")
    with torch.no_grad():
        probs = model(data.valid_x[:6].float() / 255).softmax(1)
    assert ours["file"].tolist() == [f"item{i}.png" for i in range(6)]
    assert ours["label"].tolist() == [data.classes[i] for i in probs.argmax(1).tolist()]
    assert ours["probability"].tolist() == pytest.approx(probs.max(1).values.tolist(), abs=1e-5)


def test_several_labels_are_every_label_above_the_threshold(tmp_path, cache_dir, expt_in):
    root = make_tagged(tmp_path / "tags", 60)
    run = tmp_path / "run"
    assert expt_in(["train", "data=csv", f"data.root={root}", "data.csv=tags.csv", "data.label_col=tags",
                    "data.label_delim=' '", "data.size=16", "data.workers=1", "device=cpu", "bs=8", "epochs=1",
                    f"hydra.run.dir={run}"]).returncode == 0
    result = expt_in(["predict", f"ckpt={run / 'model.safetensors'}", f"input={root / 'img'}",
                      f"hydra.run.dir={tmp_path / 'p'}"])
    assert result.returncode == 0, result.stderr
    ours = pd.read_csv(run / "predictions.csv", keep_default_na=False)
    assert list(ours.columns) == ["file", "labels", "blue", "green", "red"] and len(ours) == 60
    for row in ours.itertuples():
        assert row.labels.split() == [c for c in ("blue", "green", "red") if getattr(row, c) > 0.5]


def test_bad_inputs_are_one_line(tmp_path, expt_in, fmnist_dir):
    run = tmp_path / "run"
    assert expt_in(["train", f"data.root={fmnist_dir}", "epochs=1", "bs=256", "device=cpu",
                    f"hydra.run.dir={run}"]).returncode == 0
    ckpt = f"ckpt={run / 'model.safetensors'}"
    assert_one_line(expt_in(["predict", ckpt, f"input={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'a'}"]),
                    2, "does not exist")
    (tmp_path / "empty").mkdir()
    assert_one_line(expt_in(["predict", ckpt, f"input={tmp_path / 'empty'}", f"hydra.run.dir={tmp_path / 'b'}"]),
                    2, "holds no images")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"nope")
    assert_one_line(expt_in(["predict", ckpt, f"input={tmp_path / 'bad'}", f"hydra.run.dir={tmp_path / 'c'}"]),
                    2, "none of the 1 images")
    assert_one_line(expt_in(["predict", ckpt, f"input={tmp_path / 'bad'}", "topk=0", f"hydra.run.dir={tmp_path / 'd'}"]),
                    2, "topk=0")
