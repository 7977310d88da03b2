"""`expt sweep`: multirun jobs, failures recorded, re-runs skip finished jobs, the aggregation."""

import json
import shutil

import pandas as pd
import pytest
import yaml
from rich.console import Console

from conftest import make_fashion_mnist, make_paddy, run_expt
from expt.leaderboard import aggregate, collect, leaderboard


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """$EXPT_DATA with both datasets, so one sweep can switch between them."""
    root = tmp_path_factory.mktemp("sweepdata")
    make_fashion_mnist(root / "fashion_mnist", n_train=128, n_valid=64)
    make_paddy(root / "paddy", n=24, n_test=2)
    return root


def sweep(tmp_path, expt_in, data_dir, *args):
    """`expt sweep` in the test's process (Hydra's multirun, the launcher's workers where it has them)."""
    return expt_in(["sweep", "debug=fast", "bs=16", *args, f"hydra.sweep.dir={tmp_path / 'sw'}"],
                   EXPT_DATA=data_dir, EXPT_CACHE=tmp_path / "cache")


def test_sweep_records_a_failing_job_and_goes_on(tmp_path, expt_in, data_dir):
    # cross_entropy cannot train paddy's two heads: exactly one of the four jobs fails
    result = sweep(tmp_path, expt_in, data_dir, "data=fashion_mnist,paddy", "loss=cross_entropy,multi_task")
    assert result.returncode == 1, result.stderr  # after writing its tables, a sweep with a failed job says so
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 of 4 jobs did not finish")
    table = pd.read_csv(tmp_path / "sw" / "sweep.csv")
    assert len(table) == 4 and sorted(table["status"]) == ["failed", "ok", "ok", "ok"]
    failed = table[table["status"] == "failed"].iloc[0]
    assert (failed["data"], failed["loss"]) == ("paddy", "cross_entropy") and "multi_task" in failed["error"]
    assert (tmp_path / "sw" / "leaderboard.md").read_text().count("| data=") == 4
    assert (tmp_path / "sw" / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "3 of 4 jobs ok" in result.stdout

    again = sweep(tmp_path, expt_in, data_dir, "data=fashion_mnist,paddy", "loss=cross_entropy,multi_task")
    assert again.returncode == 1 and again.stdout.count("skipping") == 3  # the failed job runs again
    assert pd.read_csv(tmp_path / "sw" / "sweep.csv")["val/acc"].tolist() == pytest.approx(
        table["val/acc"].tolist(), nan_ok=True)

    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "sw", copy)
    (copy / "sweep.csv").unlink()
    agg = run_expt(["sweep", "--aggregate", str(copy)], cwd=tmp_path)
    assert agg.returncode == 1 and "1 of 4 jobs did not finish" in agg.stderr
    pd.testing.assert_frame_equal(pd.read_csv(copy / "sweep.csv"), pd.read_csv(tmp_path / "sw" / "sweep.csv"))


def test_bad_combination_stops_before_any_job(tmp_path, expt_in, data_dir):
    result = sweep(tmp_path, expt_in, data_dir, "arch=resnet_k5,nope")
    assert result.returncode == 2 and "unknown option 'arch/nope'" in result.stderr
    assert not (tmp_path / "sw").exists()


def test_joblib_launcher_runs_two_workers(tmp_path, expt_in, data_dir):
    result = sweep(tmp_path, expt_in, data_dir, "seed=1,2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "sw" / "sweep.csv")
    assert sorted(table["seed"]) == [1, 2] and (table["status"] == "ok").all()


def fake_job(folder, overrides, summary):
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))


def test_leaderboard_groups_seeds(tmp_path):
    accs = {"resnet": [0.90, 0.92, 0.94], "resnet_k5": [0.93, 0.95]}
    for arch, values in accs.items():
        for seed, acc in enumerate(values):
            fake_job(tmp_path / f"job_{arch}_{seed}", [f"arch={arch}", f"seed={seed}", "epochs=5"],
                     {"status": "ok", "val/acc": acc, "seconds": 10.0 + seed, "peak_mem_mb": 100, "params": 7})
    fake_job(tmp_path / "job_resnet_k5_9", ["arch=resnet_k5", "seed=9", "epochs=5"],
             {"status": "failed", "error": "RuntimeError: out of memory"})
    fake_job(tmp_path / "job_resnet_k5_8", ["arch=resnet_k5", "seed=8", "epochs=5"], None)  # killed mid-run
    table = collect(tmp_path)
    assert len(table) == 7 and (table["status"] == "incomplete").sum() == 1
    board = leaderboard(table)
    assert board["group"].tolist() == ["arch=resnet_k5", "arch=resnet"]  # best first; epochs does not vary
    k5, plain = board.iloc[0], board.iloc[1]
    assert (k5["n"], k5["failed"]) == (2, 2) and k5["mean"] == pytest.approx(0.94)
    assert k5["std"] == pytest.approx(pd.Series([0.93, 0.95]).std())
    assert plain["n"] == 3 and plain["mean"] == pytest.approx(0.92) and plain["std"] == pytest.approx(0.02)
    aggregate(tmp_path, Console(quiet=True))
    assert "0.9400 ± 0.0141" in (tmp_path / "leaderboard.md").read_text()


def test_leaderboard_ranks_by_the_headline_its_jobs_name(tmp_path):
    """A task whose headline is lower-is-better (a distance) ranks the lowest first."""
    for arch, value in (("a", 0.30), ("b", 0.10), ("c", 0.20)):
        fake_job(tmp_path / f"job_{arch}", [f"arch={arch}"], {"status": "ok", "headline": "val/dist",
                                                               "higher_is_better": False, "val/dist": value})
    board = leaderboard(collect(tmp_path))
    assert board["group"].tolist() == ["arch=b", "arch=c", "arch=a"]
    aggregate(tmp_path, Console(quiet=True))
    assert "val/dist (mean ± std)" in (tmp_path / "leaderboard.md").read_text()


def test_aggregate_of_a_folder_without_jobs(tmp_path):
    result = run_expt(["sweep", "--aggregate", str(tmp_path)], cwd=tmp_path)
    assert result.returncode == 2 and "holds no sweep jobs" in result.stderr


def test_optuna_search(tmp_path, expt_in, data_dir):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    result = sweep(tmp_path, expt_in, data_dir, "hparams_search=fmnist_optuna", "hydra.sweeper.n_trials=2")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "sw" / "sweep.csv")
    assert len(table) == 2 and table["optimizer.lr"].between(1e-3, 1e-1).all()
    assert (tmp_path / "sw" / "optimization_results.yaml").is_file()


def test_train_multirun_is_a_sweep(tmp_path, expt_in, data_dir):
    result = expt_in(["train", "-m", "debug=fast", "seed=1,2", f"hydra.sweep.dir={tmp_path / 'sw'}"], EXPT_DATA=data_dir)
    assert result.returncode == 0, result.stderr
    assert len(pd.read_csv(tmp_path / "sw" / "sweep.csv")) == 2 and (tmp_path / "sw" / "leaderboard.md").is_file()


def test_only_a_finished_run_of_the_same_config_is_skipped(tmp_path):
    from expt.commands.sweep import finished
    (tmp_path / "config.yaml").write_text("epochs: 5\n")
    assert finished(tmp_path, "epochs: 5\n") is None  # no summary yet: it was interrupted
    (tmp_path / "summary.json").write_text(json.dumps({"status": "ok", "val/acc": 0.9}))
    assert finished(tmp_path, "epochs: 5\n")["val/acc"] == 0.9
    assert finished(tmp_path, "epochs: 6\n") is None  # same folder, another config: run again
    (tmp_path / "summary.json").write_text(json.dumps({"status": "failed"}))
    assert finished(tmp_path, "epochs: 5\n") is None


def test_a_key_that_only_some_jobs_set_is_a_factor(tmp_path):
    """Two sweeps into one folder, the second with another lr: two groups, not one pooled group."""
    for seed in (1, 2):
        fake_job(tmp_path / f"job_seed={seed}", [f"seed={seed}"], {"status": "ok", "val/acc": 0.9 + seed / 100})
        fake_job(tmp_path / f"job_lr_seed={seed}", [f"seed={seed}", "optimizer.lr=1e-4"],
                 {"status": "ok", "val/acc": 0.1 + seed / 100})
    board = leaderboard(collect(tmp_path))
    assert board["group"].tolist() == ["optimizer.lr=default", "optimizer.lr=1e-4"]
    assert board["n"].tolist() == [2, 2] and board["mean"].tolist() == pytest.approx([0.915, 0.115])


def test_the_sweep_title_stays_on_one_line_whatever_the_path(tmp_path):
    """rich wraps a table's title to the table's width; in a pipe the title is one line, so a
    sweep folder's long path cannot split '2 of 2 jobs ok' (a flaky test had that cause)."""
    deep = tmp_path / ("a_long_folder_name_" * 6) / ("another_long_one_" * 6) / "sweep"
    for seed in (1, 2):
        fake_job(deep / f"job_seed={seed}", [f"seed={seed}"], {"status": "ok", "val/acc": 0.9})
    result = run_expt(["sweep", "--aggregate", str(deep)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"sweep: 2 of 2 jobs ok ({deep})" in result.stdout.splitlines()


def test_the_readmes_sweep_without_dash_m_runs(tmp_path, expt_in, data_dir):
    """`expt sweep arch=... seed=1,2,3` as the README and `expt --help` write it: no -m, no
    hydra.sweep.dir (the folder argument once landed after the overrides, which argparse refused)."""
    result = expt_in(["sweep", "seed=1", "debug=fast", "bs=16", "data.train_subset=64"], EXPT_DATA=data_dir)
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "outputs" / "sweeps").glob("*/*/job_*/summary.json"))) == 1
    assert "1 of 1 jobs ok" in result.stdout


def test_a_sweep_over_the_training_tricks(tmp_path, expt_in, data_dir):
    """mixup and the weights' average swept together (accumulation on): two jobs, each trained with
    its own values (their configs), one leaderboard group each; a value out of range in any
    combination stops the sweep before its first job."""
    result = sweep(tmp_path, expt_in, data_dir, "augment=none,mixup_cutmix", "ema.decay=0.9", "accumulate=2")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "sw" / "sweep.csv")
    assert sorted(table["augment"]) == ["mixup_cutmix", "none"] and (table["status"] == "ok").all()
    for job, augment in zip(table["job"], table["augment"]):
        config = yaml.safe_load((tmp_path / "sw" / job / "config.yaml").read_text())
        assert config["accumulate"] == 2 and config["ema"]["decay"] == 0.9
        assert config["augment"]["_target_"] == f"expt.augment.{augment}"
    assert (tmp_path / "sw" / "leaderboard.md").read_text().count("| augment=") == 2
    bad = sweep(tmp_path / "bad", expt_in, data_dir, "ema.decay=0.9,2")
    assert bad.returncode == 2 and "ema.decay=2" in bad.stderr and not (tmp_path / "bad" / "sw").exists()
