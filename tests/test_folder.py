"""data=folder: a user's own images as an ImageFolder tree, one tree split by valid_pct (stratified,
seeded), or a flat folder labelled by file names (label_re)."""

import json

import pytest
import torch

from conftest import COLORS, SHARED_DATA, assert_one_line, write_jpeg
from expt.data import folder
from expt.errors import DataError


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPT_CACHE", str(tmp_path / "cache"))


def make_tree(root, counts: dict[str, int], gray: str | None = None):
    """root/<class>/<class>_<i>.jpg, `counts[class]` images each, tinted by class (`gray`: that class's
    images are 1-channel JPEGs)."""
    from PIL import Image
    for c, (name, n) in enumerate(counts.items()):
        for i in range(n):
            path = write_jpeg(root / name / f"{name}_{i}.jpg", seed=c * 100 + i, color=COLORS[c % 3])
            if name == gray:
                Image.open(path).convert("L").save(path)
    return root


def test_one_tree_is_split_stratified_and_seeded(tmp_path, cache_dir):
    root = make_tree(tmp_path / "pics", {"cat": 10, "dog": 5, "emu": 2}, gray="emu")
    data = folder.load(root=str(root), size=16, workers=1)
    assert data.classes == ["cat", "dog", "emu"] and data.train_x.shape[1:] == (3, 16, 16)  # gray made RGB
    train_counts = torch.bincount(data.train_y, minlength=3).tolist()
    valid_counts = torch.bincount(data.valid_y, minlength=3).tolist()
    assert valid_counts == [2, 1, 1] and train_counts == [8, 4, 1]  # 20% of each class, each in both splits
    train, valid = folder.trees(root, 0.2, 42, None)
    again, _ = folder.trees(root, 0.2, 42, None)
    other, _ = folder.trees(root, 0.2, 7, None)
    assert train == again and train != other  # the seed decides the split
    assert all(not set(train[c]) & set(valid[c]) for c in train)


def test_train_and_valid_folders_are_used_as_given(tmp_path, cache_dir):
    root = tmp_path / "pics"
    make_tree(root / "train", {"a": 4, "b": 3})
    make_tree(root / "val", {"a": 2, "b": 1})
    data = folder.load(root=str(root), size=16, workers=1)
    assert data.classes == ["a", "b"] and data.valid_y.tolist() == [0, 0, 1] and len(data.train_y) == 7


def test_labels_from_file_names(tmp_path, cache_dir):
    root = tmp_path / "images"
    for i, name in enumerate(["Abyssinian_1", "Abyssinian_2", "great_pyrenees_3", "great_pyrenees_14", "Abyssinian_9"]):
        write_jpeg(root / f"{name}.jpg", seed=i)
    data = folder.load(root=str(root), size=16, label_re=r"^(.+)_\d+\.jpg$", workers=1)
    assert data.classes == ["Abyssinian", "great_pyrenees"]
    assert sorted((data.train_y.tolist() + data.valid_y.tolist())) == [0, 0, 0, 1, 1]


@pytest.mark.parametrize("layout, options, phrase", [
    ("missing", {}, "does not exist"),
    ("none", {}, "needs data.root=DIR"),
    ("empty_class", {}, "holds no images"),
    ("single", {}, "needs at least 2"),
    ("no_valid", {}, "no valid/"),
    ("unknown_valid", {}, "which train/ does not"),
    ("tree", {"valid_pct": 1.0}, "between 0 and 1"),
    ("flat", {"label_re": "^x"}, "has no group"),
    ("flat", {"label_re": r"^(dog)_\d"}, "does not match"),
    ("flat", {"label_re": "(["}, "not a regular expression"),
])
def test_bad_folders_are_one_clear_error(tmp_path, cache_dir, layout, options, phrase):
    root = tmp_path / "pics"
    if layout in ("tree", "empty_class", "single"):
        make_tree(root, {"a": 3, "b": 1 if layout == "single" else 3})
        if layout == "empty_class":
            (root / "c").mkdir()
    elif layout == "no_valid":
        make_tree(root / "train", {"a": 2, "b": 2})
    elif layout == "unknown_valid":
        make_tree(root / "train", {"a": 2, "b": 2})
        make_tree(root / "valid", {"a": 1, "z": 1})
    elif layout == "flat":
        write_jpeg(root / "cat_1.jpg", seed=0)
    with pytest.raises(DataError, match=phrase.replace("(", r"\(").replace("[", r"\[")):
        folder.load(root=None if layout == "none" else str(root), size=16, workers=1, **options)


def test_train_a_folder_end_to_end_and_keep_its_class_names(tmp_path, cache_dir, expt_in):
    from expt.rebuild import model_from_checkpoint
    root = make_tree(tmp_path / "pics", {"cat": 12, "dog": 12, "emu": 12})
    run = tmp_path / "run"
    result = expt_in(["train", "data=folder", f"data.root={root}", "data.size=16", "data.workers=1", "device=cpu",
                      "bs=8", "epochs=2", f"hydra.run.dir={run}"])
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["epochs"] == 2 and summary["data/root"] == str(root)
    _, meta = model_from_checkpoint(run / "model.safetensors")
    assert meta["classes"] == ["cat", "dog", "emu"]
    assert_one_line(expt_in(["train", "data=folder", f"hydra.run.dir={tmp_path / 'r2'}"]), 2, "data.root=DIR")


@pytest.mark.skipif(not (SHARED_DATA / "pets" / "images").is_dir(), reason="needs ../shared/data/pets")
def test_real_pets_breeds_from_file_names(tmp_path, cache_dir):
    """The pets sample as a breed classifier, labels from the file names (fastai's from_name_re)."""
    data = folder.load(root=str(SHARED_DATA / "pets" / "images"), size=32, label_re=r"^(.+)_\d+\.jpg$")
    assert len(data.classes) == 37 and "Abyssinian" in data.classes and "yorkshire_terrier" in data.classes
    assert set(data.valid_y.tolist()) == set(range(37)) == set(data.train_y.tolist())


def make_table(tmp_path, rows: list[str], header: str = "file,label,is_valid"):
    """root/img/<i>.jpg for each row (tinted by its label) and root/labels.csv with `rows` under `header`."""
    root = tmp_path / "table"
    for i, row in enumerate(rows):
        name, label = row.split(",")[:2]
        if not name.startswith(("/", "..")) and name:
            write_jpeg(root / name, seed=i, color=COLORS[sum(map(ord, label)) % 3])
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


def test_a_csv_table_with_its_validation_column(tmp_path, cache_dir):
    from expt.data import table
    rows = [f"img/{i}.jpg,{'cat' if i % 2 else 'dog'},{str(i >= 6).lower()}" for i in range(8)]
    data = table.load(root=str(make_table(tmp_path, rows)), size=16, workers=1)
    assert data.classes == ["cat", "dog"] and data.train_y.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.valid_y.tolist() == [0, 1]  # rows 6 (dog) and 7 (cat), by the is_valid column


def test_a_csv_table_without_one_is_split_stratified_and_named_columns_work(tmp_path, cache_dir):
    from expt.data import table
    rows = [f"img/{i}.jpg,{'cat' if i < 10 else 'dog'}" for i in range(15)]
    root = make_table(tmp_path, rows, header="path,breed")
    data = table.load(root=str(root), file_col="path", label_col="breed", size=16, workers=1)
    assert torch.bincount(data.valid_y).tolist() == [2, 1] and torch.bincount(data.train_y).tolist() == [8, 4]


def test_a_listed_file_that_is_missing_is_skipped_and_counted(tmp_path, cache_dir):
    from expt.data import table
    rows = [f"img/{i}.jpg,{'cat' if i % 2 else 'dog'}" for i in range(8)]
    root = make_table(tmp_path, rows, header="file,label")
    (root / "img" / "0.jpg").unlink()
    data = table.load(root=str(root), size=16, workers=1)
    assert len(data.skipped) == 1 and len(data.train_y) + len(data.valid_y) == 7
    with pytest.raises(DataError, match="0.jpg"):
        table.load(root=str(root), size=16, workers=1, strict=True)


@pytest.mark.parametrize("rows, header, phrase", [
    (["img/0.jpg,cat", "../outside.jpg,dog"], "file,label", "leads outside"),
    (["img/0.jpg,cat", "/etc/hostname,dog"], "file,label", "leads outside"),
    (["img/0.jpg,cat", "img/1.jpg,"], "file,label", "row 3 has an empty 'label' cell"),
    (["img/0.jpg,cat"], "path,label", "has no column 'file'"),
    (["img/0.jpg,cat,maybe"], "file,label,is_valid", "is_valid='maybe'"),
    (["img/0.jpg,cat,false", "img/1.jpg,dog,true"], "file,label,is_valid", "only in validation rows"),
    (["img/0.jpg,cat,false", "img/1.jpg,cat,false"], "file,label,is_valid", "valid split of"),
])
def test_bad_tables_are_one_clear_error(tmp_path, cache_dir, rows, header, phrase):
    from expt.data import table
    root = make_table(tmp_path, rows, header)
    with pytest.raises(DataError, match=phrase.replace("(", r"\(")):
        table.load(root=str(root), size=16, workers=1)


def test_train_from_a_csv_end_to_end(tmp_path, cache_dir, expt_in):
    rows = [f"img/{i}.jpg,{['cat', 'dog', 'emu'][i % 3]}" for i in range(30)]
    root = make_table(tmp_path, rows, header="file,label")
    result = expt_in(["train", "data=csv", f"data.root={root}", "data.size=16", "data.workers=1", "device=cpu", "bs=8",
                      "epochs=1", f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "ok"
    bad = make_table(tmp_path / "bad", ["img/0.jpg,cat", "../../x.jpg,dog"], header="file,label")
    assert_one_line(expt_in(["train", "data=csv", f"data.root={bad}", f"hydra.run.dir={tmp_path / 'r2'}"]), 2,
                    "leads outside")


@pytest.mark.skipif(not (SHARED_DATA / "imagenette" / "noisy_imagenette.csv").is_file(), reason="needs ../shared/data/imagenette")
def test_real_imagenette_through_its_csv_equals_data_imagenette(cache_dir):
    """fastai's noisy_imagenette.csv (path, noisy_labels_0, is_valid) read by data=csv gives the same
    images, labels and split as data=imagenette on the same folder."""
    from expt.data import imagenette, table
    root, options = SHARED_DATA / "imagenette", dict(size=16, train_subset=60, valid_subset=20)
    by_csv = table.load(root=str(root), csv="noisy_imagenette.csv", file_col="path", label_col="noisy_labels_0",
                        **options)
    by_folder = imagenette.load(root=str(root), **options)
    assert by_csv.classes == sorted(p.name for p in (root / "train").iterdir())
    assert torch.equal(by_csv.train_x, by_folder.train_x) and torch.equal(by_csv.valid_x, by_folder.valid_x)
    assert torch.equal(by_csv.train_y, by_folder.train_y) and torch.equal(by_csv.valid_y, by_folder.valid_y)
