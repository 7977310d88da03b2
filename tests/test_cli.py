"""`expt` end to end in fresh processes, on generated IDX fixtures."""

import json
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch
from safetensors import safe_open

from conftest import (FILES, SHARED_DATA, assert_one_line, has_cuda, make_fashion_mnist, run_expt,
                      signal_after_first_epoch)
from expt.rebuild import model_from_checkpoint
from expt.errors import CheckpointError

SUMMARY_KEYS = {"val/acc", "val/loss", "train/loss", "epochs", "seconds", "seconds_per_epoch", "peak_mem_mb",
                "params", "mflops", "device", "versions/torch", "versions/expt", "status", "lr", "best/val/acc",
                "data/root"}


def train(tmp_path, fmnist_dir, env, *overrides, run="run"):
    args = ["train", "debug=fast", f"data.root={fmnist_dir}", f"hydra.run.dir={tmp_path / run}", *overrides]
    return run_expt(args, cwd=tmp_path, env=env)


def test_help_is_light_and_lists_commands():
    code = ("import sys; from expt.cli import main; main(['--help']); "
            "assert 'torch' not in sys.modules and 'hydra' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "usage: expt" in result.stdout


def test_train_help_lists_groups_and_options(tmp_path):
    result = run_expt(["train", "--help"], cwd=tmp_path)
    assert result.returncode == 0
    for line in ("arch: cnn, critic, dcgan, resnet, resnet_k5, timm, unet", "optimizer: adamw, lamb, lookahead_radam, sgd",
                 "logger: csv, mlflow, tensorboard, wandb",
                 "schedule: constant, cosine, flat_cos, one_cycle", "gan: dcgan, none, superres",
                 "loss: auto, bce, cross_entropy, feature, feature_lite0, l1, label_smoothing, mse, multi_task, none, patch_bce",
                 "data: critic, csv, fashion_mnist, folder, imagenette, paddy, pets", "debug: fast", "tta: flip, flip_shift",
                 "augment: crop_flip, crop_flip_copy, crop_flip_erase, cutmix, mixup, mixup_cutmix, none, random_copy, random_erase",
                 "experiment: fmnist_20ep_aug, fmnist_25ep_copy, fmnist_50ep_erase, fmnist_5ep"):
        assert line in result.stdout


def test_cfg_job_shows_overrides(tmp_path):
    result = run_expt(["train", "--cfg", "job", "epochs=20", "optimizer.lr=2e-2"], cwd=tmp_path)
    assert result.returncode == 0 and "epochs: 20" in result.stdout and "lr: 0.02" in result.stdout


def test_train_end_to_end(tmp_path, fmnist_dir, isolated_env):
    result = train(tmp_path, fmnist_dir, isolated_env, "epochs=2")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    assert f"outputs: {run}" in result.stdout and "val/acc" in result.stdout
    assert {"config.yaml", "metrics.csv", "summary.json", "model.safetensors", "last.pt"} <= {
        p.name for p in run.iterdir()}
    assert "epochs: 2" in (run / "config.yaml").read_text() and "${" not in (run / "config.yaml").read_text()

    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2] and (metrics["seconds"] > 0).all()
    assert {"train/loss", "val/loss", "val/acc"} <= set(metrics.columns)
    summary = json.loads((run / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary) and summary["status"] == "ok" and summary["epochs"] == 2
    assert (summary["headline"], summary["higher_is_better"]) == ("val/acc", True)  # the task's, for sweeps
    assert summary["best/val/acc"] == metrics["val/acc"].max()
    assert summary["val/acc"] == pytest.approx(metrics["val/acc"].iloc[-1])
    assert summary["device"] == "cpu" and summary["params"] == 1_230_436 and summary["mflops"] > 1
    assert metrics["train/loss"].iloc[-1] < metrics["train/loss"].iloc[0] < 3  # it learns

    with safe_open(str(run / "model.safetensors"), framework="pt") as f:
        header = f.metadata()
    assert json.loads(header["classes"])[9] == "Ankle boot" and len(json.loads(header["mean"])) == 1
    model, meta = model_from_checkpoint(run / "model.safetensors")
    assert meta["config"]["epochs"] == 2
    x = torch.rand(4, 1, 28, 28)
    again, _ = model_from_checkpoint(run / "model.safetensors")
    assert torch.equal(model(x), again(x)) and model(x).shape == (4, 10)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        model_from_checkpoint(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        model_from_checkpoint(tmp_path / "junk.safetensors")


@pytest.mark.parametrize("override,phrases", [
    ("arch=nope", ["unknown option 'arch/nope'", "resnet_k5"]),
    ("optimizer=adam", ["unknown option 'optimizer/adam'", "adamw"]),
    ("epochs=abc", ["epochs=abc", "Integer"]),
    ("epocs=3", ["unknown key 'epocs'"]),
    ("optimizer.lr=fast", ["optimizer.lr='fast'", "float"]),
    ("precision=fp8", ["precision='fp8'"]),
    ("epochs=0", ["epochs=0 must be at least 1"]),
])
def test_bad_config_is_one_line_exit_2(tmp_path, fmnist_dir, expt_in, override, phrases):
    result = expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", f"hydra.run.dir={tmp_path / 'run'}", override])
    assert_one_line(result, 2, *phrases)
    assert not (tmp_path / "run").exists()


def test_missing_data_is_one_line_exit_2(tmp_path, expt_in):
    result = expt_in(["train", "debug=fast", "data.download=false", f"hydra.run.dir={tmp_path / 'run'}"],
                     EXPT_DATA=tmp_path / "no_data")
    assert_one_line(result, 2, "Fashion-MNIST not found", str(tmp_path / "no_data"), "expt data fashion_mnist")
    assert not (tmp_path / "run").exists()  # a refused command leaves no run folder


def test_malformed_data_is_one_line_exit_2(tmp_path, expt_in):
    folder = make_fashion_mnist(tmp_path / "fm", n_train=64, n_valid=32)
    images = folder / (FILES[0] + ".gz")
    images.write_bytes(images.read_bytes()[:-500])
    result = expt_in(["train", "debug=fast", f"data.root={folder}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert_one_line(result, 2, str(images))


def test_divergence_stops_with_message(tmp_path, fmnist_dir, isolated_env):
    result = train(tmp_path, fmnist_dir, isolated_env, "optimizer=sgd", "optimizer.lr=1e30", "epochs=2")
    assert result.returncode == 1 and "diverged" in result.stderr and "Traceback" not in result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged" and not (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.slow
def test_interrupt_then_resume_matches_an_uninterrupted_run(tmp_path, fmnist_dir, isolated_env, expt_in):
    common = ["train", "debug=fast", f"data.root={fmnist_dir}", "epochs=4", "data.train_subset=512"]
    full = expt_in([*common, f"hydra.run.dir={tmp_path / 'full'}"])
    assert full.returncode == 0, full.stderr

    cut = tmp_path / "cut"
    code, err = signal_after_first_epoch(common, cut, tmp_path, isolated_env, signal.SIGINT)
    assert code == 130, err
    assert "resume" in err and json.loads((cut / "summary.json").read_text())["status"] == "interrupted"
    assert (cut / "model.safetensors").exists()

    resumed = expt_in([*common, f"resume={cut}", f"hydra.run.dir={tmp_path / 'resumed'}"])
    assert resumed.returncode == 0, resumed.stderr
    a = pd.read_csv(tmp_path / "full" / "metrics.csv")
    b = pd.read_csv(tmp_path / "resumed" / "metrics.csv")
    assert list(b["epoch"]) == list(range(1, 5))
    assert b["val/loss"].tolist() == pytest.approx(a["val/loss"].tolist(), rel=1e-5)


def test_resume_refuses_another_recipe(tmp_path, fmnist_dir, expt_in, monkeypatch):
    from expt.callbacks import CheckpointCB
    save = CheckpointCB.after_epoch

    def ctrl_c_after_epoch_1(self, learn):  # what Ctrl-C during epoch 2 does, in this process
        save(self, learn)
        raise KeyboardInterrupt
    monkeypatch.setattr(CheckpointCB, "after_epoch", ctrl_c_after_epoch_1)
    small = ["debug=fast", f"data.root={fmnist_dir}", "data.train_subset=64", "data.valid_subset=32", "bs=32",
             "epochs=2"]
    first = tmp_path / "first"
    assert_one_line(expt_in(["train", *small, f"hydra.run.dir={first}"]), 130, "interrupted", f"resume={first}")
    monkeypatch.setattr(CheckpointCB, "after_epoch", save)

    result = expt_in(["train", "arch=resnet", f"resume={first}", f"hydra.run.dir={tmp_path / 'r'}"])
    assert_one_line(result, 2, "cannot resume", "other arch")
    result = expt_in(["train", f"resume={tmp_path}", f"hydra.run.dir={tmp_path / 'r'}"])
    assert_one_line(result, 2, "nothing to resume")
    assert not (tmp_path / "r").exists()
    result = expt_in(["train", f"resume={first}", "device=cpu", f"hydra.run.dir={tmp_path / 'r'}"])  # not a recipe key
    assert result.returncode == 0, result.stderr
    assert list(pd.read_csv(tmp_path / "r" / "metrics.csv")["epoch"]) == [1, 2]


@pytest.mark.skipif(not has_cuda(), reason="needs a CUDA GPU")
@pytest.mark.gpu
def test_train_on_gpu_uses_bf16(tmp_path, fmnist_dir, isolated_env):
    result = train(tmp_path, fmnist_dir, isolated_env, "device=cuda", "epochs=2")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["precision"] == "bf16" and summary["peak_mem_mb"] > 0 and summary["status"] == "ok"


@pytest.mark.skipif(not (SHARED_DATA / "fashion_mnist").is_dir(), reason="needs ../shared/data/fashion_mnist")
@pytest.mark.realdata
def test_real_fashion_mnist_subset_learns(tmp_path, isolated_env):
    env = {**isolated_env, "EXPT_DATA": str(SHARED_DATA)}
    result = run_expt(["train", "device=cpu", "epochs=2", "bs=128", "data.train_subset=4096",
                       "data.valid_subset=1000", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["val/acc"] > 0.6  # chance is 0.1


def test_remove_unused_run_folder_only_when_it_holds_nothing_else(tmp_path):
    from expt.runfolder import remove_if_unused
    fresh, used, logged = tmp_path / "fresh", tmp_path / "used", tmp_path / "logged"
    for run in (fresh, used, logged):
        (run / ".hydra").mkdir(parents=True)
        (run / "config.yaml").write_text("a: 1\n")
        (run / "expt.log").write_text("")
    (used / "model.safetensors").write_bytes(b"weights")
    (logged / "expt.log").write_text("WARNING skipping unreadable image x.jpg\n")
    for run in (fresh, used, logged):
        remove_if_unused(run)
    assert not fresh.exists() and logged.exists()
    assert sorted(p.name for p in used.iterdir()) == [".hydra", "config.yaml", "expt.log", "model.safetensors"]


def test_a_run_from_before_loss_auto_resumes_with_it():
    """A run folder written when cross entropy was the default loss compares equal to loss=auto."""
    from expt.commands.train import recipe
    old = {"loss": {"_target_": "torch.nn.CrossEntropyLoss"}, "epochs": 5}
    assert recipe(old) == recipe({"loss": {"_target_": "expt.losses.auto", "_partial_": True}, "epochs": 5})
    assert recipe(old) != recipe({"loss": {"_target_": "torch.nn.L1Loss"}, "epochs": 5})
