"""Several processes through torchrun (gloo on the CPU): sharded loaders, all-reduced metrics, one run
folder, the same parameters as one process with the same global batch, and a rank killed mid-run."""

import json
import os
import signal
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import assert_one_line, run_expt
from expt import distributed
from expt.data.loaders import DeviceLoader, StreamLoader

# A model without BatchNorm (GroupNorm), so that DDP's per-rank batches compute what one process does
NO_BN = ["arch=timm", "arch.name=test_efficientnet_gn", "augment=none", "bs=64", "epochs=2", "optimizer.lr=1e-3"]


def torchrun(args: list[str], cwd: Path, env: dict, nproc: int = 2) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "expt", "train", *args]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cpu_env(isolated_env: dict) -> dict:
    # one thread per rank: two ranks share the CI's two cores without oversubscribing them
    return {**isolated_env, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


@pytest.mark.parametrize("kind", ["device", "stream"])
def test_ranks_share_each_global_batch(kind):
    """Two ranks with the same seed split every global batch into two halves that together are the
    batch one process gets, in the same number of batches."""
    x = torch.arange(10 * 2 * 2, dtype=torch.uint8).view(10, 1, 2, 2)
    y = torch.arange(10)

    def batches(rank, world):
        if kind == "device":
            loader = DeviceLoader(x, y, 4, shuffle=True, drop_last=True, device="cpu", seed=3, rank=rank, world=world)
        else:
            loader = StreamLoader(_Images(x), y, 4, shuffle=True, drop_last=True, device="cpu", seed=3,
                                  workers=0, rank=rank, world=world)
        return [yb for _, yb in loader]

    whole, first, second = batches(0, 1), batches(0, 2), batches(1, 2)
    assert len(whole) == len(first) == len(second) == 2
    for w, a, b in zip(whole, first, second):
        assert len(a) == len(b) == 2
        assert torch.equal(torch.cat([a, b]), w)


class _Images(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def test_a_sharded_loader_refuses_a_batch_the_ranks_cannot_split():
    x, y = torch.zeros(8, 1, 2, 2, dtype=torch.uint8), torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError):
        DeviceLoader(x, y, 3, shuffle=True, drop_last=True, device="cpu", rank=0, world=2)


def test_validation_shares_cover_every_image_once(monkeypatch):
    for world in (1, 2, 3, 7):
        covered = []
        for rank in range(world):
            monkeypatch.setattr(distributed, "rank", lambda r=rank: r)
            monkeypatch.setattr(distributed, "world", lambda w=world: w)
            share = distributed.shard(10)
            covered += list(range(10))[share]
        assert covered == list(range(10))


def test_the_global_batch_must_split_evenly(monkeypatch):
    from expt.errors import ConfigError
    monkeypatch.setattr(distributed, "world", lambda: 3)
    assert distributed.local_batch(96) == 32
    with pytest.raises(ConfigError, match="bs=64 is the global batch, and 3 processes"):
        distributed.local_batch(64)


def test_sync_bn_is_for_cuda_with_several_processes(monkeypatch):
    from expt.errors import ConfigError
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert distributed.convert_sync_bn(model, "auto", cuda) is model  # one process: nothing to sync
    monkeypatch.setattr(distributed, "world", lambda: 2)
    assert distributed.convert_sync_bn(model, "auto", cpu) is model
    assert distributed.convert_sync_bn(model, False, cuda) is model
    synced = distributed.convert_sync_bn(model, "auto", cuda)
    assert isinstance(synced[1], torch.nn.SyncBatchNorm)
    with pytest.raises(ConfigError, match="dist.sync_bn=true needs CUDA"):
        distributed.convert_sync_bn(model, True, cpu)


def test_one_process_is_left_alone(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.launched()
    assert distributed.setup(torch.device("cpu")) == torch.device("cpu")
    sums, count = distributed.all_reduce_sums({"loss": torch.tensor(3.0)}, 4)
    assert sums["loss"].item() == 3.0 and count == 4


@pytest.mark.parametrize("case", ["plain", "finetune", "tricks"])
def test_two_processes_train_what_one_does(tmp_path, fmnist_dir, isolated_env, case):
    """`expt train dist.nproc=2` (torchrun underneath): one run folder, one metrics.csv, parameters
    within 1e-5 of one process's with the same global batch, and the same validation metrics; also
    when fine-tuning freezes the body for an epoch, then trains it (the DDP wrapper is rebuilt), and
    with gradient accumulation (no all-reduce on the inner batches), clipping and the weights'
    average (validated and saved as the model)."""
    env = cpu_env(isolated_env)
    common = ["debug=fast", f"data.root={fmnist_dir}", *NO_BN]
    if case == "tricks":
        common += ["accumulate=2", "ema.decay=0.9", "clip_grad=0.5"]
    if case == "finetune":
        base = run_expt(["train", *common, "epochs=1", f"hydra.run.dir={tmp_path / 'base'}"], tmp_path, env)
        assert base.returncode == 0, base.stderr
        common += [f"arch.weights={tmp_path / 'base' / 'model.safetensors'}", "finetune.freeze_epochs=1"]
    one = run_expt(["train", *common, f"hydra.run.dir={tmp_path / 'one'}"], tmp_path, env)
    assert one.returncode == 0, one.stderr
    logger = ["logger=tensorboard"] if find_spec("tensorboard") else []
    two = subprocess.run([sys.executable, "-m", "expt", "train", *common, "dist.nproc=2", *logger], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    folders = [p for p in (tmp_path / "outputs" / "runs").glob("*/*") if p.is_dir()]
    assert len(folders) == 1, folders  # every rank wrote into rank 0's folder
    run = folders[0]
    if logger:  # rank 0 alone logs
        assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert two.stdout.count("expt train") == 1 and "2 processes" in two.stdout  # rank 0 alone prints
    rows_one = (tmp_path / "one" / "metrics.csv").read_text().splitlines()
    rows_two = (run / "metrics.csv").read_text().splitlines()
    assert len(rows_two) == len(rows_one) == 3
    s1 = json.loads((tmp_path / "one" / "summary.json").read_text())
    s2 = json.loads((run / "summary.json").read_text())
    assert s2["status"] == "ok" and s2["val/acc"] == s1["val/acc"]
    assert s2["val/loss"] == pytest.approx(s1["val/loss"], rel=1e-5)
    assert s2["train/loss"] == pytest.approx(s1["train/loss"], rel=1e-5)
    w1, w2 = load_file(tmp_path / "one" / "model.safetensors"), load_file(run / "model.safetensors")
    assert w1.keys() == w2.keys()
    worst = max((w1[k].float() - w2[k].float()).abs().max().item() for k in w1)
    assert worst < 1e-5, worst


def test_lr_auto_is_found_once_and_shared(tmp_path, fmnist_dir, isolated_env):
    """optimizer.lr=auto under two processes: rank 0 runs the finder (lr_find.json, its table printed
    once) and both ranks train with its lr (the run ends: a rank with another lr would not matter to
    DDP, but one without any would hang)."""
    run = tmp_path / "auto"
    result = subprocess.run([sys.executable, "-m", "expt", "train", "debug=fast", f"data.root={fmnist_dir}", *NO_BN,
                             "epochs=1", "optimizer.lr=auto", "dist.nproc=2", f"hydra.run.dir={run}"], cwd=tmp_path,
                            env=cpu_env(isolated_env), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads((run / "lr_find.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["lr_auto"] is True and summary["lr"] == found["lr"]
    assert result.stdout.count("lr finder:") == 1


def test_a_global_batch_the_processes_cannot_share_is_one_line(tmp_path, fmnist_dir, isolated_env):
    proc = torchrun(["debug=fast", f"data.root={fmnist_dir}", *NO_BN, "bs=63", f"hydra.run.dir={tmp_path / 'r'}"],
                    tmp_path, cpu_env(isolated_env))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    mine = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert mine == ["error: bs=63 is the global batch, and 2 processes cannot share it evenly; use a multiple of 2 "
                    "(e.g. bs=62)"], err[-3000:]


def test_a_gan_refuses_several_processes(tmp_path, fmnist_dir, expt_in):
    result = expt_in(["train", "experiment=fmnist_gan", "debug=fast", f"data.root={fmnist_dir}", "dist.nproc=2"])
    assert_one_line(result, 2, "GAN", "dist.nproc=1")  # before any process is started


def rank_pid(launcher: subprocess.Popen, rank: int) -> int | None:
    """The pid of the worker torchrun started as `rank`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == launcher.pid and f"RANK={rank}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except (OSError, IndexError, ValueError):
            continue
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds torchrun's workers through /proc")
def test_a_killed_rank_ends_the_run_and_it_resumes(tmp_path, fmnist_dir, isolated_env):
    """SIGKILL one rank of `expt train dist.nproc=2` after the first checkpoint: the other ends
    (torchrun stops it) with a message instead of hanging, the launcher names the killed rank and
    exits 137 (not -9 as 247), and the run resumes to the end from last.pt under torchrun."""
    env = cpu_env(isolated_env)
    run = tmp_path / "run"
    args = ["train", "dist.nproc=2", "debug=fast", f"data.root={fmnist_dir}", *NO_BN, "epochs=30", f"hydra.run.dir={run}"]
    launcher = subprocess.Popen([sys.executable, "-m", "expt.cli", *args], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (run / "last.pt").exists() and launcher.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    victim = rank_pid(launcher, 1)
    assert victim is not None and launcher.poll() is None
    os.kill(victim, signal.SIGKILL)
    out, err = launcher.communicate(timeout=180)
    assert launcher.returncode == 137, err[-3000:]
    said = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert said[-1].startswith("error: rank 1 of 2 was killed by SIGKILL"), err[-3000:]
    assert all("another process of this run stopped" in ln or "SIGTERM from the launcher" in ln or "rank 1 of 2" in ln
               for ln in said), said  # rank 0's own line blames no user
    done = len((run / "metrics.csv").read_text().splitlines()) - 1
    assert 1 <= done < 30

    resumed = torchrun([f"resume={run}", "epochs=30", f"hydra.run.dir={tmp_path / 'resumed'}"], tmp_path, env)
    out, err = resumed.communicate(timeout=400)
    assert resumed.returncode == 0, err[-3000:]
    summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["epochs"] == 30


def test_a_sweep_runs_each_job_under_torchrun(tmp_path, fmnist_dir, expt_in, capfd):
    """`expt sweep -m seed=1,2 dist.nproc=2`: each job trains with two processes in its own folder
    (whose name holds '=' and ','); running the sweep again skips the finished jobs and trains the
    unfinished one again in its folder."""
    args = ["sweep", "-m", "seed=1,2", "debug=fast", f"data.root={fmnist_dir}", *NO_BN, "epochs=1", "dist.nproc=2",
            f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    result = expt_in(args, OMP_NUM_THREADS=1, CUDA_VISIBLE_DEVICES="")  # the sweep here, each job under torchrun
    assert result.returncode == 0, result.stderr[-3000:]
    jobs_printed = capfd.readouterr().out  # what the jobs' processes printed to this process's stdout
    assert jobs_printed.count("2 processes") == 2 and "2 of 2 jobs ok" in result.stdout
    jobs = sorted((tmp_path / "sweep").glob("job_*"))
    assert len(jobs) == 2 and all(json.loads((j / "summary.json").read_text())["status"] == "ok" for j in jobs)
    # a job that did not finish (here: its summary says failed) is trained again; the finished one is skipped
    (jobs[0] / "summary.json").write_text(json.dumps({"status": "failed", "error": "a test"}))
    again = expt_in(args, OMP_NUM_THREADS=1, CUDA_VISIBLE_DEVICES="")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already finished") == 1 and "2 of 2 jobs ok" in again.stdout, again.stdout[-2000:]
