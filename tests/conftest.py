"""Shared fixtures: tiny Fashion-MNIST look-alikes in the real IDX format, and a CLI runner."""

import gzip
import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):  # tests in parallel processes (pytest -n N): the cores shared out, so
    # that N workers (and the expt processes they start) do not each run as many threads as there are cores
    THREADS = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    torch.set_num_threads(THREADS)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def idx_bytes(array: torch.Tensor) -> bytes:
    """An IDX file of unsigned bytes: magic 0x00000803 (3 dims) etc., big-endian sizes, then data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.to(torch.uint8).contiguous().numpy().tobytes()


def write_idx(path: Path, array: torch.Tensor, gz: bool = True) -> Path:
    data = idx_bytes(array)
    path = Path(str(path) + ".gz") if gz else Path(path)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def fake_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """28x28 noise images whose label sets the row of a bright bar (learnable in a few steps)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randint(0, 60, (n, 28, 28), generator=g)
    for label in range(10):
        x[y == label, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
    return x.to(torch.uint8), y.to(torch.uint8)


def make_fashion_mnist(folder: Path, n_train: int = 512, n_valid: int = 256, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (train_x, train_y), (valid_x, valid_y) = fake_images(n_train, 0), fake_images(n_valid, 1)
    for name, array in zip(FILES, (train_x, train_y, valid_x, valid_y)):
        write_idx(folder / name, array, gz=gz)
    return folder


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory) -> Path:
    return make_fashion_mnist(tmp_path_factory.mktemp("fmnist"))


NO_SYSTEM_DATA = "/nonexistent/expt-tests/datasets"


@pytest.fixture(autouse=True)
def host_independent(monkeypatch):
    """No test may find the host's datasets: Debian's /usr/share/datasets, or the user's EXPT_DATA."""
    monkeypatch.setenv("EXPT_SYSTEM_DATA", NO_SYSTEM_DATA)
    monkeypatch.delenv("EXPT_DATA", raising=False)


@pytest.fixture
def isolated_env(tmp_path, monkeypatch) -> dict:
    """An environment where no real copy of the data can be found by accident."""
    env = {**os.environ, "HOME": str(tmp_path / "home"), "EXPT_DATA": str(tmp_path / "no_data"),
           "EXPT_SYSTEM_DATA": NO_SYSTEM_DATA, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_expt(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the `expt` command in a fresh process, as a user would."""
    return subprocess.run([sys.executable, "-m", "expt.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def close_log_files() -> None:
    """Close the run's expt.log that Hydra's logging setup left open (a process would exit here)."""
    import logging
    for logger in (logging.getLogger(), *logging.Logger.manager.loggerDict.values()):
        for handler in list(getattr(logger, "handlers", [])):
            if isinstance(handler, logging.FileHandler):
                logger.removeHandler(handler)
                handler.close()


def in_process(monkeypatch, cwd: Path):
    """A runner of `expt` inside this process, in `cwd` with HOME there (see expt_in); for fixtures
    of any scope, with a monkeypatch of theirs (`pytest.MonkeyPatch.context()`)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(cwd / "home"))
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")  # expt sets it; monkeypatch restores it
    monkeypatch.setattr(sys, "argv", list(sys.argv))

    def run(args: list, **env) -> Result:
        from expt.cli import main
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        out, err, code = io.StringIO(), io.StringIO(), 0
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main([str(a) for a in args])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            finally:
                close_log_files()
        return Result(code, out.getvalue(), err.getvalue())
    return run


@pytest.fixture
def expt_in(tmp_path, monkeypatch):
    """`expt` run inside the test's process, as a user would run it (argv in; exit code, stdout and
    stderr out), without paying for a fresh interpreter and torch import each time. Runs in
    tmp_path, with HOME there; `expt_in(args, **env)` sets extra environment variables."""
    return in_process(monkeypatch, tmp_path)


def ctrl_c_after_epoch(monkeypatch, epoch: int):
    """What Ctrl-C during epoch `epoch + 1` does, in this process: the checkpoint of `epoch` is
    saved, then KeyboardInterrupt. Returns the undo, for the runs after it."""
    from expt.callbacks import CheckpointCB
    save = CheckpointCB.after_epoch

    def interrupted(self, learn):
        save(self, learn)
        if learn.epoch + 1 == epoch:
            raise KeyboardInterrupt
    monkeypatch.setattr(CheckpointCB, "after_epoch", interrupted)
    return lambda: monkeypatch.setattr(CheckpointCB, "after_epoch", save)


def assert_one_line(result, code: int, *phrases: str) -> str:
    """The command failed with `code`, printing one line that starts with 'error:', holds every
    phrase, and no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr, result.stdout[-2000:])
    assert "Traceback" not in result.stderr + result.stdout
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


def strict_json(path: Path):
    """A JSON file read as strict JSON: a bare NaN or Infinity in it fails the test."""
    import json

    def refuse(constant):
        raise ValueError(f"{path} holds {constant}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def start_expt(args: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    """`expt` started in a fresh process that Ctrl-C reaches: a test runner started in the background
    by a shell has SIGINT ignored, and its children would inherit that."""
    import signal
    return subprocess.Popen([sys.executable, "-m", "expt.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def signal_after_first_epoch(args: list[str], run_dir: Path, cwd: Path, env: dict, sig) -> tuple[int, str]:
    """Start `expt` with hydra.run.dir=run_dir, send `sig` once the first epoch's last.pt is there,
    wait for it to end; returns (exit code, stderr)."""
    import time
    proc = start_expt([*args, f"hydra.run.dir={run_dir}"], cwd, env)
    deadline = time.time() + 120
    while not (run_dir / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def has_cuda() -> bool:
    return torch.cuda.is_available()


def write_jpeg(path: Path, seed: int, size=(40, 30), color=None) -> Path:
    """A small JPEG of noise (tinted by `color`), in a real file format for the loaders."""
    from PIL import Image
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=g, dtype=torch.uint8)
    if color is not None:
        pixels = (pixels // 4 + torch.tensor(color, dtype=torch.uint8) // 4 * 3).to(torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.numpy()).save(path, quality=90)
    return path


COLORS = [(250, 10, 10), (10, 250, 10), (10, 10, 250)]


def make_imagenette(root: Path, per_class=(8, 3), wnids=("n01440764", "n02102040", "n02979186")) -> Path:
    for split, n in zip(("train", "val"), per_class):
        for c, wnid in enumerate(wnids):
            for i in range(n):
                write_jpeg(root / split / wnid / f"{wnid}_{split}{i}.JPEG", seed=c * 1000 + i + 500 * (split == "val"),
                           color=COLORS[c % 3])
    return root


def make_paddy(root: Path, n=24, n_test=5) -> Path:
    """Kaggle's layout: train.csv, train_images/<label>/<image_id>, test_images/, sample_submission.csv."""
    labels, varieties = ["blast", "normal", "tungro"], ["ADT45", "Ponni"]
    rows = ["image_id,label,variety,age"]
    for i in range(n):
        label, variety = labels[i % 3], varieties[(i // 3) % 2]
        image_id = f"{100000 + i}.jpg"
        write_jpeg(root / "train_images" / label / image_id, seed=i, size=(30, 40), color=COLORS[i % 3])
        rows.append(f"{image_id},{label},{variety},{45 + i % 5}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    ids = [f"{200000 + i}.jpg" for i in range(n_test)]
    for i, image_id in enumerate(ids):
        write_jpeg(root / "test_images" / image_id, seed=1000 + i, size=(30, 40), color=COLORS[i % 3])
    (root / "sample_submission.csv").write_text("image_id,label\n" + "".join(f"{i},\n" for i in reversed(ids)))
    return root
