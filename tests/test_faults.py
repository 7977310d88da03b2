"""The adverse cases of the hardening pass, as a matrix: each asserts its exit code, its one-line
message, and that nothing was run or lost.

1. A checkpoint (or the command line) never runs code.   3. Faults: keep working, lose nothing.
2. Data: what the user named is what is used.            4. `expt data` gets the default dataset.
"""

import errno
import json
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import (FILES, assert_one_line, make_fashion_mnist, make_imagenette, signal_after_first_epoch,
                      start_expt, write_idx)
from expt.build import build_model
from expt.rebuild import model_from_checkpoint
from expt.checkpoint import FORMAT, save_model
from expt.errors import CheckpointError
from expt.runfolder import RunFolder, lock_holder, os_error_line

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
TINY_ARCH = {"_target_": "expt.models.resnet.resnet_k5", "_partial_": True, "nfs": [8, 16], "zero_init_residual": False}


# ---------------------------------------------------------------- 1. a checkpoint never runs code

class Payload:
    """A pickle that, when unpickled, creates the file at `path` (stands for any code)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def bait(tmp_path):
    """A pickle with code, a victim file, and the four calls a stored config could name to run code."""
    marker, victim, pkl = tmp_path / "MARKER", tmp_path / "victim.txt", tmp_path / "evil.pkl"
    victim.write_text("precious bytes")
    pkl.write_bytes(pickle.dumps(Payload(str(marker))))
    targets = {
        "torch.load": {"_target_": "torch.load", "f": str(pkl), "weights_only": False},
        "pandas.read_pickle": {"_target_": "pandas.read_pickle", "filepath_or_buffer": str(pkl)},
        "numpy.load": {"_target_": "numpy.load", "file": str(pkl), "allow_pickle": True},
        "builtins.open": {"_target_": "builtins.open", "file": str(victim), "mode": "w"},
    }
    return marker, victim, pkl, targets


def untouched(marker: Path, victim: Path) -> bool:
    return not marker.exists() and victim.read_text() == "precious bytes"


def data_node(root) -> dict:
    return {"_target_": "expt.data.fashion_mnist.load", "root": str(root), "train_subset": None,
            "valid_subset": None, "download": False}


def write_checkpoint(path: Path, arch: dict, data: dict, **meta) -> Path:
    """A checkpoint in expt's format whose stored config is `arch` and `data` (weights of a legit tiny model)."""
    model = build_model(OmegaConf.create(TINY_ARCH), (0.3,), (0.35,), 10, (1, 28, 28))
    meta = {"config": {"arch": arch, "data": data, "epochs": 1}, "classes": CLASSES, "mean": [0.3], "std": [0.35],
            "input_shape": [1, 28, 28], "versions": {}} | meta
    return save_model(path, model, meta)


@pytest.mark.parametrize("name", ["torch.load", "pandas.read_pickle", "numpy.load", "builtins.open"])
def test_the_payloads_are_live(bait, name):
    """The control: instantiated as Hydra would, each payload really does run (so the tests below can fail)."""
    marker, victim, _, targets = bait
    try:
        result = instantiate(targets[name])
        if hasattr(result, "close"):
            result.close()
    except Exception:
        pass
    assert not untouched(marker, victim)


@pytest.mark.parametrize("via", ["tta", "predict", "api"])
@pytest.mark.parametrize("node", ["arch", "data"])
@pytest.mark.parametrize("name", ["torch.load", "pandas.read_pickle", "numpy.load", "builtins.open"])
def test_a_checkpoint_never_runs_code(tmp_path, fmnist_dir, expt_in, bait, name, node, via):
    marker, victim, _, targets = bait
    arch, data = (targets[name], data_node(fmnist_dir)) if node == "arch" else (TINY_ARCH, targets[name])
    ckpt = write_checkpoint(tmp_path / "run" / "model.safetensors", arch, data)
    if via == "api":
        with pytest.raises(CheckpointError, match=f"stored {node}: _target_ '{name}' is not one of expt's builders"):
            model_from_checkpoint(ckpt)
    else:
        result = expt_in([via, f"ckpt={ckpt}", "device=cpu"])
        assert_one_line(result, 2, f"checkpoint {ckpt} is refused", f"_target_ '{name}' is not one of expt's builders")
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["model.safetensors"]  # nothing written
    assert untouched(marker, victim)
    assert not (tmp_path / "outputs").exists()  # a refused command leaves no run folder


@pytest.mark.parametrize("override", ["arch._target_=builtins.open", "+arch.transforms.0._target_=builtins.exec",
                                      "data._target_=pandas.read_pickle", "+loss.weight._target_=torch.load"])
def test_the_command_line_names_no_code_either(tmp_path, fmnist_dir, expt_in, override):
    result = expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", override, f"hydra.run.dir={tmp_path / 'r'}"])
    assert_one_line(result, 2, "is not one of expt's builders")
    assert not (tmp_path / "r").exists()


def test_a_nested_target_anywhere_is_refused(tmp_path, fmnist_dir, bait):
    marker, victim, _, targets = bait
    arch = {**TINY_ARCH, "nfs": [8, {"deep": [targets["builtins.open"]]}]}
    ckpt = write_checkpoint(tmp_path / "model.safetensors", arch, data_node(fmnist_dir))
    with pytest.raises(CheckpointError, match="'builtins.open' is not one of expt's builders"):
        model_from_checkpoint(ckpt)
    assert untouched(marker, victim)


def test_pickled_code_is_refused_wherever_expt_reads_weights(tmp_path, fmnist_dir, expt_in, bait):
    marker, victim, pkl, _ = bait
    # last.pt with code: resume refuses it (torch.load(weights_only=True))
    run = tmp_path / "old"
    run.mkdir()
    shutil.copy(pkl, run / "last.pt")
    result = expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", f"resume={run}", f"hydra.run.dir={tmp_path / 'r'}"])
    assert_one_line(result, 2, f"cannot resume from {run}", "not an expt training state")
    # a pickle named .safetensors: tta refuses it
    shutil.copy(pkl, tmp_path / "model.safetensors")
    result = expt_in(["tta", f"ckpt={tmp_path / 'model.safetensors'}"])
    assert_one_line(result, 2, "is not a readable safetensors file")
    # a pickle named .pt or .pth as timm weights: refused
    for suffix in (".pt", ".pth"):
        shutil.copy(pkl, tmp_path / f"weights{suffix}")
        result = expt_in(["summary", "debug=fast", f"data.root={fmnist_dir}", "arch=timm", "arch.name=resnet10t",
                          f"arch.weights={tmp_path / f'weights{suffix}'}", f"hydra.run.dir={tmp_path / 's'}"])
        assert_one_line(result, 2, f"weights file {tmp_path / f'weights{suffix}'} cannot be read as tensors")
    assert untouched(marker, victim)
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


def test_every_branch_of_the_checkpoint_reader(tmp_path, fmnist_dir):
    from safetensors.torch import save_file
    good = write_checkpoint(tmp_path / "good.safetensors", TINY_ARCH, data_node(fmnist_dir))
    model, meta = model_from_checkpoint(good)
    assert meta["classes"] == CLASSES and model(torch.rand(2, 1, 28, 28)).shape == (2, 10)

    with pytest.raises(CheckpointError, match="does not exist"):
        model_from_checkpoint(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        model_from_checkpoint(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="was not written by expt"):
        model_from_checkpoint(tmp_path / "foreign.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "bad_json.safetensors"),
              metadata={"format": FORMAT, "config": "{not json", "classes": "[]", "mean": "[]", "std": "[]",
                        "versions": "{}"})
    with pytest.raises(CheckpointError, match="damaged metadata"):
        model_from_checkpoint(tmp_path / "bad_json.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "no_classes.safetensors"), metadata={"format": FORMAT})
    with pytest.raises(CheckpointError, match="damaged metadata.*'config'"):
        model_from_checkpoint(tmp_path / "no_classes.safetensors")
    wrong = {"classes": ("a string", "classes is not a list"), "mean": ([0.3, "x"], "mean and std"),
             "input_shape": ([1, 28], "input_shape"), "heads": ({"label": []}, "heads")}
    for key, (value, phrase) in wrong.items():
        path = write_checkpoint(tmp_path / f"{key}.safetensors", TINY_ARCH, data_node(fmnist_dir), **{key: value})
        with pytest.raises(CheckpointError, match=f"damaged metadata \\({phrase}"):
            model_from_checkpoint(path)
    for config, phrase in (({"arch": TINY_ARCH}, "lacks the arch and data"),
                           ({"arch": {**TINY_ARCH, "nfs": "${oc.env:HOME}"}, "data": data_node(fmnist_dir)},
                            "interpolation")):
        path = write_checkpoint(tmp_path / "cfg.safetensors", TINY_ARCH, {}, config=config)
        with pytest.raises(CheckpointError, match=phrase):
            model_from_checkpoint(path)
    other = write_checkpoint(tmp_path / "other.safetensors", {**TINY_ARCH, "nfs": [8, 32]}, data_node(fmnist_dir))
    with pytest.raises(CheckpointError, match="weights do not fit its stored arch"):
        model_from_checkpoint(other)


# ---------------------------------------------------------------- 2. data: what the user named is used

@pytest.fixture
def two_copies(tmp_path):
    """A good copy where EXPT_DATA points (which must never stand in for a named root), and a root to break."""
    env_copy = make_fashion_mnist(tmp_path / "env" / "fashion_mnist", n_train=128, n_valid=64)
    named = make_fashion_mnist(tmp_path / "named", n_train=256, n_valid=64)
    return env_copy, named


@pytest.mark.parametrize("breakage,phrase", [
    ("missing", "does not exist"), ("empty", "lacks train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                                             "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"),
    ("incomplete", "lacks t10k-labels-idx1-ubyte"), ("a file", "is not a folder"),
])
def test_an_explicit_root_is_used_or_refused(tmp_path, expt_in, two_copies, breakage, phrase):
    _, named = two_copies
    if breakage == "missing":
        shutil.rmtree(named)
    elif breakage == "empty":
        for f in named.iterdir():
            f.unlink()
    elif breakage == "incomplete":
        (named / (FILES[3] + ".gz")).unlink()
    else:
        shutil.rmtree(named)
        named.write_text("not a folder")
    result = expt_in(["train", "debug=fast", f"data.root={named}", f"hydra.run.dir={tmp_path / 'r'}"],
                     EXPT_DATA=tmp_path / "env")
    assert_one_line(result, 2, f"data.root={named} {phrase}")
    assert not (tmp_path / "r").exists()


def test_summary_records_the_folder_read_and_tta_uses_the_named_root(tmp_path, expt_in, two_copies):
    env_copy, named = two_copies
    assert expt_in(["train", "debug=fast", f"data.root={named}", f"hydra.run.dir={tmp_path / 'r'}"]).returncode == 0
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["data/root"] == str(named)
    ckpt = tmp_path / "r" / "model.safetensors"
    (tmp_path / "empty").mkdir()
    result = expt_in(["tta", f"ckpt={ckpt}", f"data.root={tmp_path / 'empty'}"], EXPT_DATA=tmp_path / "env")
    assert_one_line(result, 2, f"data.root={tmp_path / 'empty'} lacks")
    assert not (tmp_path / "r" / "tta.json").exists()  # not evaluated on the other copy either
    result = expt_in(["tta", f"ckpt={ckpt}", f"data.root={env_copy}"])
    assert result.returncode == 0 and json.loads((tmp_path / "r" / "tta.json").read_text())["images"] == 64


def single_class_copy(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, array in zip(FILES, (torch.randint(0, 255, (128, 28, 28)), torch.zeros(128),
                                   torch.randint(0, 255, (64, 28, 28)), torch.zeros(64))):
        write_idx(folder / name, array)
    return folder


@pytest.mark.parametrize("overrides,phrase", [
    (["data.train_subset=-5"], "data.train_subset=-5 must be at least 1"),
    (["data.train_subset=0"], "data.train_subset=0 must be at least 1"),
    (["data.valid_subset=0"], "data.valid_subset=0 must be at least 1"),
    (["data.train_subset=10"], "the data has 10 training images, fewer than one batch (bs=64)"),
    (["bs=1000"], "fewer than one batch (bs=1000)"),
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1 must not be negative"),
    (["optimizer.weight_decay=-1e-4"], "optimizer.weight_decay=-0.0001 must not be negative"),
    (["+foo=1"], "unknown setting 'foo'"),
    (["+lr_find.foo=1"], "unknown setting 'lr_find.foo'"),
    (["arch=resnet", "arch.nfs=[8,16,32,64,128,256,512]"], "the arch takes images of 33 to 64 pixels a side, "
                                                           "and the data's are 28x28"),
])
def test_settings_that_cannot_train_are_refused(tmp_path, fmnist_dir, expt_in, overrides, phrase):
    result = expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", *overrides, f"hydra.run.dir={tmp_path / 'r'}"])
    assert_one_line(result, 2, phrase)
    assert not (tmp_path / "r").exists()


def test_a_single_class_dataset_is_refused(tmp_path, expt_in):
    root = single_class_copy(tmp_path / "one")
    result = expt_in(["train", "debug=fast", f"data.root={root}", f"hydra.run.dir={tmp_path / 'r'}"])
    assert_one_line(result, 2, "the training images all have one class (T-shirt/top)")


@pytest.mark.parametrize("size,phrase", [(0, "data.size=0 is too small"), (1, "data.size=1 is too small"),
                                         (12, "the arch takes images of 17 to 32 pixels a side, and the data's are 12x12")])
def test_image_sizes_the_arch_cannot_take_are_refused(tmp_path, expt_in, size, phrase):
    root = make_imagenette(tmp_path / "inet")
    result = expt_in(["train", "data=imagenette", f"data.root={root}", f"data.size={size}", "data.workers=1",
                      "arch=resnet", "device=cpu", "bs=8", "epochs=1", f"hydra.run.dir={tmp_path / 'r'}"],
                     EXPT_CACHE=tmp_path / "cache")
    assert_one_line(result, 2, phrase)
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- 3. faults: keep working, lose nothing

def test_a_file_in_place_of_the_run_folder(tmp_path, fmnist_dir, expt_in):
    (tmp_path / "taken").write_text("keep me")
    result = expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", f"hydra.run.dir={tmp_path / 'taken'}"])
    assert_one_line(result, 1, f"cannot create the folder {tmp_path / 'taken'}: a file is in the way")
    assert (tmp_path / "taken").read_text() == "keep me"
    result = expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", f"hydra.run.dir={tmp_path / 'taken' / 'run'}"])
    assert_one_line(result, 1, "a file is in the way")


def unmount(folder: Path) -> None:
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(folder)])  # still busy: detach it now, free it when closed


def mount_tmpfs(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                                                 capture_output=True).returncode == 0


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder nobody can write into: a read-only tmpfs as root (permissions do not bind root), else chmod."""
    folder = tmp_path / "ro"
    if os.geteuid() != 0:
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
    elif mount_tmpfs(folder, "ro,size=1m"):
        yield folder
        unmount(folder)
    else:
        pytest.skip("running as root where no read-only tmpfs can be mounted")


def test_a_read_only_output_folder(tmp_path, fmnist_dir, expt_in, readonly_dir):
    result = expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", f"hydra.run.dir={readonly_dir / 'run'}"])
    assert_one_line(result, 1, f"cannot write {readonly_dir / 'run'}", "pass hydra.run.dir=DIR to a folder you can write")


@pytest.fixture
def small_disk(tmp_path):
    """A 30 MB tmpfs: room for one epoch's checkpoint (model 4.9 MB + training state 14.8 MB), not for
    writing the next one beside it."""
    folder = tmp_path / "disk"
    if not mount_tmpfs(folder, "size=30m"):
        pytest.skip("no tmpfs can be mounted here (needs root); test_disk_full_injected covers the logic")
    yield folder
    unmount(folder)


def test_disk_full_stops_the_run_at_the_next_epoch_boundary(tmp_path, fmnist_dir, expt_in, small_disk):
    run = small_disk / "run"
    result = expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", "epochs=6", f"hydra.run.dir={run}"])
    assert_one_line(result, 1, "no space left on the disk while writing", str(run))
    metrics = pd.read_csv(run / "metrics.csv")  # the last good write, whole
    assert list(metrics["epoch"]) == [1]
    assert "     4 " not in result.stdout  # the write of epoch 2 failed during epoch 3: stopped there, not after 6
    assert not list(run.glob(".*.tmp"))


def test_disk_full_injected(tmp_path, fmnist_dir, expt_in, monkeypatch):
    """The same fault, injected: the second epoch's write of the training state fails with ENOSPC."""
    import expt.callbacks.checkpoint as ckpt_cb
    calls = []

    def failing_save_state(path, state):
        calls.append(state["epochs_done"])
        if state["epochs_done"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, state)
    real = ckpt_cb.save_state
    monkeypatch.setattr(ckpt_cb, "save_state", failing_save_state)
    run = tmp_path / "run"
    result = expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", "epochs=6", f"hydra.run.dir={run}"])
    assert_one_line(result, 1, f"no space left on the disk while writing {run / 'last.pt'}")
    assert calls == [1, 2] and list(pd.read_csv(run / "metrics.csv")["epoch"]) == [1]


def test_os_errors_become_one_line():
    for code, phrase in ((errno.ENOSPC, "no space left"), (errno.EROFS, "cannot write /x"), (errno.EACCES, "cannot write"),
                         (errno.ENOTDIR, "a file is in the way"), (errno.EIO, "Input/output error")):
        line = os_error_line(OSError(code, os.strerror(code), "/x"))
        assert phrase in line and "\n" not in line


def test_a_second_run_into_a_busy_folder_refuses_at_once(tmp_path, fmnist_dir, expt_in):
    run = tmp_path / "run"
    with RunFolder(run):  # held as a training process holds it (flock: a second holder is refused)
        (run / "config.yaml").write_text("the first run's\n")
        result = expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", f"hydra.run.dir={run}"])
        assert_one_line(result, 2, f"{run} is in use by another expt process (pid {os.getpid()})")
        assert (run / "config.yaml").read_text() == "the first run's\n" and not (run / ".hydra").exists()
    assert lock_holder(run) is None and not (run / ".expt.lock").exists()


def test_a_finished_run_is_not_overwritten(tmp_path, fmnist_dir, expt_in):
    run = tmp_path / "run"
    assert expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", f"hydra.run.dir={run}"]).returncode == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    hydra_record = (run / ".hydra" / "overrides.yaml").read_text()
    result = expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", "seed=3", f"hydra.run.dir={run}"])
    assert_one_line(result, 2, f"{run} already holds a run", f"resume={run}")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert (run / ".hydra" / "overrides.yaml").read_text() == hydra_record


def test_nan_in_the_first_epoch_says_there_is_no_checkpoint(tmp_path, fmnist_dir, expt_in):
    result = expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", "optimizer=sgd", "optimizer.lr=1e30",
                      f"hydra.run.dir={tmp_path / 'run'}"])
    assert_one_line(result, 1, "training diverged (training loss became nan in epoch 1)", "no checkpoint was saved")
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_a_checkpoint_is_only_kept_with_finite_parameters_and_statistics(tmp_path):
    """BatchNorm's running variance turns infinite in epoch 2 while the loss stays finite: the epoch-1
    checkpoint stays, the run stops as diverged."""
    from expt.callbacks import CheckpointCB, MetricsCB
    from expt.learner import Callback, Learner
    from expt.data.loaders import DeviceLoader
    from expt.tasks import Classify
    torch.manual_seed(0)
    x, y = torch.randint(0, 255, (32, 1, 8, 8), dtype=torch.uint8), torch.randint(0, 2, (32,))
    dl = DeviceLoader(x, y, 16, shuffle=False, drop_last=False, device=torch.device("cpu"))
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.LazyLinear(2))
    model(x[:2].float())

    class Poison(Callback):
        def after_validate(self, learn):
            if learn.epoch == 1:
                model[1].running_var.fill_(float("inf"))
    metrics = MetricsCB(Classify.of(2))
    ckpt = CheckpointCB(tmp_path, model, {"config": {}, "classes": ["a", "b"], "mean": [0.5], "std": [0.5],
                                          "versions": {}}, {})
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    learn = Learner(model, dl, dl, torch.nn.CrossEntropyLoss(), opt, [metrics, ckpt, Poison()]).fit(4)
    assert learn.stop_reason == "parameters or statistics became non-finite in epoch 2"
    from safetensors.torch import load_file
    saved = load_file(str(tmp_path / "model.safetensors"))
    assert all(t.isfinite().all() for t in saved.values())
    assert list(pd.read_csv(tmp_path / "metrics.csv")["epoch"]) == [1] and len(learn.history) == 1


def test_outputs_are_readable_like_every_other_file(tmp_path, fmnist_dir, expt_in):
    run = tmp_path / "run"
    assert expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", f"hydra.run.dir={run}"]).returncode == 0
    mode = stat.S_IMODE((run / "config.yaml").stat().st_mode)  # what the umask gives any file
    for name in ("model.safetensors", "last.pt", "metrics.csv", "summary.json"):
        assert stat.S_IMODE((run / name).stat().st_mode) == mode, name


def test_resuming_a_finished_run_says_so(tmp_path, fmnist_dir, expt_in):
    run = tmp_path / "run"
    assert expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", f"hydra.run.dir={run}"]).returncode == 0
    result = expt_in(["train", f"resume={run}", f"hydra.run.dir={tmp_path / 'again'}"])
    assert_one_line(result, 2, f"{run} finished all 1 epochs already; nothing to resume")
    assert not (tmp_path / "again").exists()


def wait_for(path_glob, proc: subprocess.Popen, folder: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not list(folder.glob(path_glob)) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()


@pytest.mark.slow
def test_sigkill_then_resume_alone_from_moved_data(tmp_path, isolated_env, expt_in):
    """Killed (SIGKILL) after its first checkpoint: the lock dies with it, a temp file it left is
    cleared, and `resume=RUN` with the data moved elsewhere finishes exactly the uninterrupted run."""
    data = make_fashion_mnist(tmp_path / "data", n_train=512, n_valid=128)
    common = ["train", "debug=fast", "epochs=5", "data.train_subset=512"]
    cut = tmp_path / "cut"
    proc = start_expt([*common, f"data.root={data}", f"hydra.run.dir={cut}"], tmp_path, isolated_env)
    wait_for("last.pt", proc, cut)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert lock_holder(cut) is None  # the kernel freed the lock
    stale = cut / f".last.pt.{proc.pid}.140000000000.tmp"  # what a kill inside a write leaves
    stale.write_bytes(b"")

    moved = data.rename(tmp_path / "moved")
    result = expt_in(["train", f"resume={cut}", f"data.root={moved}", f"hydra.run.dir={tmp_path / 'resumed'}"])
    assert result.returncode == 0, result.stderr
    assert not stale.exists()
    full = expt_in([*common, f"data.root={moved}", f"hydra.run.dir={tmp_path / 'full'}"])
    assert full.returncode == 0, full.stderr
    a, b = (pd.read_csv(tmp_path / run / "metrics.csv") for run in ("full", "resumed"))
    assert list(b["epoch"]) == list(range(1, 6))
    assert b["val/loss"].tolist() == pytest.approx(a["val/loss"].tolist(), rel=1e-5)
    # only overrides that change the recipe are refused
    result = expt_in(["train", f"resume={cut}", "epochs=3", f"data.root={moved}", f"hydra.run.dir={tmp_path / 'x'}"])
    assert_one_line(result, 2, "cannot resume", "other epochs")


@pytest.mark.slow
def test_ctrl_c_stops_a_sweep(tmp_path, isolated_env, fmnist_dir):
    sweep_dir = tmp_path / "sw"
    proc = start_expt(["sweep", "debug=fast", f"data.root={fmnist_dir}", "epochs=30", "seed=1,2,3",
                           f"hydra.sweep.dir={sweep_dir}"], tmp_path, isolated_env)
    deadline = time.time() + 120
    while not list(sweep_dir.glob("*/last.pt")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("error: interrupted") and "Traceback" not in err
    jobs = sorted(p.name for p in sweep_dir.glob("job_*"))
    assert len(jobs) == 1, jobs  # the next job never started
    table = pd.read_csv(sweep_dir / "sweep.csv")
    assert table["status"].tolist() == ["interrupted"]


def test_stale_temp_files_are_cleared_when_a_command_starts(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a process that has ended
    stale, live = folder / f".model.safetensors.{dead}.1.tmp", folder / f".last.pt.{os.getpid()}.1.tmp"
    stale.write_bytes(b"")
    live.write_bytes(b"being written")
    with RunFolder(folder):
        assert not stale.exists() and live.exists()  # a live writer's file stays


def test_a_lock_held_by_a_killed_process_is_free(tmp_path):
    folder = tmp_path / "run"
    code = f"from expt.runfolder import RunFolder; RunFolder({str(folder)!r}).__enter__(); print('held', flush=True); " \
           "import time; time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    assert lock_holder(folder) == str(proc.pid)
    proc.kill()
    proc.wait()
    assert lock_holder(folder) is None
    with RunFolder(folder):
        assert lock_holder(folder) == str(os.getpid())  # taken again, by whoever comes next


# ---------------------------------------------------------------- 4. `expt data fashion_mnist`

def test_expt_data_finds_a_copy(tmp_path, expt_in):
    make_fashion_mnist(tmp_path / "env" / "fashion_mnist", n_train=16, n_valid=4)
    result = expt_in(["data", "fashion_mnist"], EXPT_DATA=tmp_path / "env")
    assert result.returncode == 0 and f"Fashion-MNIST is in {tmp_path / 'env' / 'fashion_mnist'}" in result.stdout


def test_expt_data_installs_debians_package_when_apt_can(tmp_path, expt_in, monkeypatch):
    """apt-get and apt-cache stand-ins on PATH: the one that 'installs' writes the files where Debian's
    package puts them (EXPT_SYSTEM_DATA here)."""
    import expt.data.fashion_mnist as fm
    system, bin_dir = tmp_path / "system", tmp_path / "bin"
    bin_dir.mkdir()
    make_fashion_mnist(tmp_path / "pkg", n_train=16, n_valid=4)
    (bin_dir / "apt-get").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'apt.log'}\n"
                                     f"case \"$*\" in *install*) mkdir -p {system} && cp -r {tmp_path / 'pkg'} "
                                     f"{system / 'fashion-mnist'};; esac\n")
    (bin_dir / "apt-cache").write_text("#!/bin/sh\necho '  Candidate: 1.0'\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(fm, "apt_command", lambda: [str(bin_dir / "apt-get")])
    monkeypatch.setattr(fm, "download", lambda folder: pytest.fail("downloaded although apt could install"))
    result = expt_in(["data", "fashion_mnist"], EXPT_SYSTEM_DATA=system, EXPT_DATA=tmp_path / "none")
    assert result.returncode == 0, result.stderr
    assert f"Fashion-MNIST is in {system / 'fashion-mnist'}" in result.stdout
    assert "install -y --no-install-recommends dataset-fashion-mnist" in (tmp_path / "apt.log").read_text()


def test_expt_data_without_apt_or_network_is_one_line(tmp_path, expt_in, monkeypatch):
    import expt.data.fashion_mnist as fm
    monkeypatch.setattr(fm, "apt_command", lambda: None)

    def no_network(folder):
        raise OSError("no network")
    monkeypatch.setattr(fm, "download", no_network)
    result = expt_in(["data", "fashion_mnist"], EXPT_DATA=tmp_path / "none")
    assert_one_line(result, 2, "Fashion-MNIST not found", "download failed (OSError: no network)")


@pytest.mark.slow
def test_sigterm_saves_and_resumes_like_ctrl_c(tmp_path, isolated_env, fmnist_dir, expt_in):
    """A scheduler's stop (SIGTERM, e.g. SLURM at the time limit) keeps the weights; exit 143."""
    common = ["train", "debug=fast", f"data.root={fmnist_dir}", "epochs=5", "data.train_subset=512"]
    cut = tmp_path / "cut"
    code, err = signal_after_first_epoch(common, cut, tmp_path, isolated_env, signal.SIGTERM)
    assert code == 143, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: terminated (SIGTERM); weights saved, resume with") and "Traceback" not in err
    assert json.loads((cut / "summary.json").read_text())["status"] == "interrupted"
    assert (cut / "model.safetensors").exists()
    resumed = expt_in([*common, f"resume={cut}", f"hydra.run.dir={tmp_path / 'resumed'}"])
    assert resumed.returncode == 0, resumed.stderr
    assert pd.read_csv(tmp_path / "resumed" / "metrics.csv")["epoch"].tolist() == list(range(1, 6))
