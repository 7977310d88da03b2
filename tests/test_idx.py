import gzip

import pytest
import torch

from conftest import FILES, idx_bytes, make_fashion_mnist, write_idx
from expt.data import channel_stats
from expt.data.fashion_mnist import load
from expt.data.idx import read_idx
from expt.errors import DataError


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, gz):
    images = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    path = write_idx(tmp_path / "images", images, gz=gz)
    assert torch.equal(read_idx(path), images)
    labels = torch.arange(7, dtype=torch.uint8)
    assert torch.equal(read_idx(write_idx(tmp_path / "labels", labels, gz=gz)), labels)


def test_truncated_file_is_a_clear_error(tmp_path):
    data = idx_bytes(torch.zeros(5, 28, 28, dtype=torch.uint8))
    path = tmp_path / "short"
    path.write_bytes(data[:-10])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_truncated_gzip_is_a_clear_error(tmp_path):
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(idx_bytes(torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8)))[:1000])
    with pytest.raises(DataError, match="cannot read"):
        read_idx(path)


def test_wrong_magic_number_is_a_clear_error(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(100))
    with pytest.raises(DataError, match="magic number"):
        read_idx(path)


@pytest.mark.parametrize("gz", [True, False])
def test_load_reads_split_shapes_and_stats(tmp_path, gz):
    folder = make_fashion_mnist(tmp_path / "fm", n_train=64, n_valid=32, gz=gz)
    data = load(root=str(folder), download=False)
    assert data.train_x.shape == (64, 1, 28, 28) and data.train_x.dtype == torch.uint8
    assert data.valid_x.shape == (32, 1, 28, 28) and data.valid_y.dtype == torch.int64
    assert data.n_classes == 10 and data.classes[0] == "T-shirt/top"
    pixels = data.train_x.double() / 255
    assert data.mean[0] == pytest.approx(pixels.mean().item(), rel=1e-9)
    assert data.std[0] == pytest.approx(pixels.std(unbiased=False).item(), rel=1e-9)


def test_subsets_take_the_first_images(tmp_path):
    folder = make_fashion_mnist(tmp_path / "fm", n_train=64, n_valid=32)
    full = load(root=str(folder), download=False)
    part = load(root=str(folder), train_subset=10, valid_subset=5, download=False)
    assert torch.equal(part.train_x, full.train_x[:10]) and torch.equal(part.valid_y, full.valid_y[:5])
    assert part.mean == full.mean  # statistics come from the whole training split


def test_search_order_env_then_cache(tmp_path, monkeypatch):
    make_fashion_mnist(tmp_path / "env" / "fashion_mnist", n_train=8, n_valid=4)
    make_fashion_mnist(tmp_path / "home" / ".cache" / "expt" / "fashion_mnist", n_train=16, n_valid=4)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EXPT_DATA", str(tmp_path / "env"))
    assert len(load(download=False).train_x) == 8
    monkeypatch.setenv("EXPT_DATA", str(tmp_path / "nothing"))
    assert len(load(download=False).train_x) == 16


def test_missing_data_names_places_and_remedies(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EXPT_DATA", str(tmp_path / "env"))
    with pytest.raises(DataError) as info:
        load(download=False)
    message = str(info.value)
    assert str(tmp_path / "env" / "fashion_mnist") in message and str(tmp_path / "home") in message
    assert "apt install dataset-fashion-mnist" in message and "data.root" in message


def test_an_explicit_root_is_used_or_refused_never_replaced(tmp_path, monkeypatch):
    make_fashion_mnist(tmp_path / "env" / "fashion_mnist", n_train=8, n_valid=4)  # another copy that must not be used
    monkeypatch.setenv("EXPT_DATA", str(tmp_path / "env"))
    folder = make_fashion_mnist(tmp_path / "fm", n_train=16, n_valid=4)
    assert load(root=str(folder), download=False).root == str(folder)
    (folder / (FILES[3] + ".gz")).unlink()
    with pytest.raises(DataError, match=f"data.root={folder} lacks t10k-labels-idx1-ubyte;"):
        load(root=str(folder), download=False)
    with pytest.raises(DataError, match="does not exist"):
        load(root=str(tmp_path / "missing"), download=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="lacks train-images-idx3-ubyte, train-labels"):
        load(root=str(tmp_path / "empty"), download=False)


def test_system_copy_is_searched_last(tmp_path, monkeypatch):
    make_fashion_mnist(tmp_path / "system" / "fashion-mnist", n_train=12, n_valid=4)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EXPT_DATA", raising=False)
    monkeypatch.setenv("EXPT_SYSTEM_DATA", str(tmp_path / "system"))
    data = load(download=False)
    assert len(data.train_x) == 12 and data.root == str(tmp_path / "system" / "fashion-mnist")


def test_channel_stats_per_channel():
    x = torch.stack([torch.full((2, 4, 4), 0), torch.full((2, 4, 4), 255)], dim=1).to(torch.uint8)
    mean, std = channel_stats(x, chunk=1)
    assert mean == pytest.approx((0.0, 1.0)) and std == pytest.approx((0.0, 0.0), abs=1e-6)


def test_labels_out_of_range_are_a_clear_error(tmp_path):
    folder = make_fashion_mnist(tmp_path / "fm", n_train=8, n_valid=4)
    write_idx(folder / FILES[1], torch.full((8,), 12, dtype=torch.uint8))
    with pytest.raises(DataError, match="label 12"):
        load(root=str(folder), download=False)
