"""expt interpret: the confusion matrix, the report (against scikit-learn), the top losses (against
the per-image loss recomputed from the model) and their file names, per label for several labels."""

import csv
import json

import pytest
import torch
import torch.nn.functional as F

from conftest import assert_one_line
from expt.interpret import class_report, confusion_matrix, label_counts, most_confused, report_rows
from test_folder import make_tree
from test_multilabel import make_tagged


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPT_CACHE", str(tmp_path / "cache"))


def read(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_report_equals_scikit_learns_classification_report():
    metrics = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    actual = torch.randint(0, 5, (300,), generator=g)
    predicted = torch.where(torch.rand(300, generator=g) < 0.6, actual, torch.randint(0, 5, (300,), generator=g))
    predicted[predicted == 4] = 3  # class 4 is never predicted: its precision is 0, as scikit-learn's zero_division=0
    names = list("abcde")
    ours = {row["class"]: row for row in class_report(confusion_matrix(actual, predicted, 5), names)}
    theirs = metrics.classification_report(actual.numpy(), predicted.numpy(), labels=range(5), target_names=names,
                                           output_dict=True, zero_division=0)
    for name in [*names, "macro avg", "weighted avg"]:
        for key, their_key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score"),
                               ("support", "support")):
            assert ours[name][key] == pytest.approx(theirs[name][their_key], abs=1e-9), (name, key)
    assert torch.equal(confusion_matrix(actual, predicted, 5), torch.tensor(metrics.confusion_matrix(actual, predicted)))


def test_multilabel_report_equals_scikit_learns():
    metrics = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(1)
    actual, predicted = torch.rand(100, 4, generator=g) < 0.4, torch.rand(100, 4, generator=g) < 0.5
    counts = label_counts(predicted, actual)
    ours = {row["class"]: row for row in report_rows(list("wxyz"), counts[:, 0], counts[:, 1], counts[:, 2], micro=True)}
    theirs = metrics.classification_report(actual.numpy(), predicted.numpy(), target_names=list("wxyz"),
                                           output_dict=True, zero_division=0)
    for name in [*"wxyz", "micro avg", "macro avg", "weighted avg"]:
        assert ours[name]["f1"] == pytest.approx(theirs[name]["f1-score"], abs=1e-9), name
        assert ours[name]["precision"] == pytest.approx(theirs[name]["precision"], abs=1e-9), name
    matrices = metrics.multilabel_confusion_matrix(actual.numpy(), predicted.numpy())  # per label [[tn, fp], [fn, tp]]
    assert counts.tolist() == [[m[1][1], m[0][1], m[1][0], m[0][0]] for m in matrices.tolist()]


def test_most_confused_pairs_are_the_largest_off_diagonal_counts():
    confusion = torch.tensor([[5, 3, 0], [1, 7, 4], [0, 0, 9]])
    assert most_confused(confusion, ["a", "b", "c"], 2) == [("b", "c", 4), ("a", "b", 3)]


def test_interpret_a_classifier(tmp_path, expt_in, fmnist_dir):
    from expt.rebuild import model_from_checkpoint
    run = tmp_path / "run"
    result = expt_in(["train", f"data.root={fmnist_dir}", "epochs=1", "bs=64", "device=cpu", f"hydra.run.dir={run}"])
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "summary.json").read_text())
    result = expt_in(["interpret", f"ckpt={run / 'model.safetensors'}", f"data.root={fmnist_dir}", "n=8",
                      "device=cpu", f"hydra.run.dir={tmp_path / 'interpret'}"])
    assert result.returncode == 0, result.stderr
    assert "views identity," in result.stdout and "most confused" in result.stdout and "weighted avg" in result.stdout

    confusion = read(run / "confusion.csv")
    classes = [row["actual \\ predicted"] for row in confusion]
    counts = torch.tensor([[int(row[c]) for c in classes] for row in confusion])
    assert classes[0] == "T-shirt/top" and counts.sum() == 256  # every validation image, rows actual
    assert counts.diag().sum().item() / 256 == pytest.approx(summary["val/acc"], abs=1e-9)

    top = read(run / "top_losses.csv")
    losses = [float(row["loss"]) for row in top]
    assert len(top) == 256 and losses == sorted(losses, reverse=True)
    model, _ = model_from_checkpoint(run / "model.safetensors")
    from expt.data.fashion_mnist import load
    data = load(root=str(fmnist_dir))
    with torch.no_grad():
        logits = model(data.valid_x.float() / 255)
    recomputed = F.cross_entropy(logits, data.valid_y, reduction="none")
    for row in top[:20]:
        i = int(row["file"])  # Fashion-MNIST has no files: the index
        assert float(row["loss"]) == pytest.approx(recomputed[i].item(), rel=1e-4, abs=1e-5)
        assert row["actual"] == classes[data.valid_y[i]] and row["predicted"] == classes[logits[i].argmax()]
        assert float(row["probability"]) == pytest.approx(logits[i].softmax(0).max().item(), abs=1e-5)
    report = {row["class"]: row for row in read(run / "report.csv")}
    assert int(report["weighted avg"]["support"]) == 256 and set(classes) < set(report)
    for name in ("confusion.png", "top_losses.png"):
        assert (run / name).stat().st_size > 1000

    result = expt_in(["interpret", f"ckpt={run / 'model.safetensors'}", f"data.root={fmnist_dir}", "tta=flip",
                      "device=cpu", f"hydra.run.dir={tmp_path / 'interpret2'}"])
    assert result.returncode == 0 and "views identity, hflip" in result.stdout


def test_interpret_names_the_files_of_a_folder(tmp_path, cache_dir, expt_in):
    root = make_tree(tmp_path / "pics", {"cat": 12, "dog": 12, "emu": 12})
    run = tmp_path / "run"
    result = expt_in(["train", "data=folder", f"data.root={root}", "data.size=16", "data.workers=1", "device=cpu",
                      "bs=8", "epochs=1", f"hydra.run.dir={run}"])
    assert result.returncode == 0, result.stderr
    result = expt_in(["interpret", f"ckpt={run / 'model.safetensors'}", "n=4", f"hydra.run.dir={tmp_path / 'i'}"])
    assert result.returncode == 0, result.stderr
    top = read(run / "top_losses.csv")
    assert len(top) == 6 and all((root / row["file"]).is_file() for row in top)
    assert all(row["file"].split("/")[0] == row["actual"] for row in top)  # cat/cat_3.jpg is a cat


def test_interpret_several_labels(tmp_path, cache_dir, expt_in):
    root = make_tagged(tmp_path / "tags", 60)
    run = tmp_path / "run"
    result = expt_in(["train", "data=csv", f"data.root={root}", "data.csv=tags.csv", "data.label_col=tags",
                      "data.label_delim=' '", "data.size=16", "data.workers=1", "device=cpu", "bs=8", "epochs=1",
                      f"hydra.run.dir={run}"])
    assert result.returncode == 0, result.stderr
    result = expt_in(["interpret", f"ckpt={run / 'model.safetensors'}", f"hydra.run.dir={tmp_path / 'i'}"])
    assert result.returncode == 0, result.stderr
    counts = read(run / "confusion.csv")
    assert [row["label"] for row in counts] == ["blue", "green", "red"]
    assert all(sum(int(row[k]) for k in ("tp", "fp", "fn", "tn")) == 12 for row in counts)
    assert {"micro avg", "macro avg", "weighted avg"} < {row["class"] for row in read(run / "report.csv")}
    top = read(run / "top_losses.csv")
    assert [float(r["loss"]) for r in top] == sorted((float(r["loss"]) for r in top), reverse=True)


def test_interpret_refusals_are_one_line(tmp_path, expt_in):
    assert_one_line(expt_in(["interpret", f"hydra.run.dir={tmp_path / 'a'}"]), 2, "ckpt=")
    assert_one_line(expt_in(["interpret", "ckpt=[a.safetensors,b.safetensors]", f"hydra.run.dir={tmp_path / 'b'}"]),
                    2, "one checkpoint")
