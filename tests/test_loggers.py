"""The logger group: what TensorBoard, MLflow and W&B hold of a run, read back with each tool's own
reader and compared with metrics.csv; a resumed run goes on in the same MLflow run and one
TensorBoard curve; a sweep is one MLflow experiment; a missing library is one line."""

import json

import pandas as pd
import pytest

from conftest import assert_one_line, ctrl_c_after_epoch, in_process

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

SMALL = ["debug=fast", "data.train_subset=64", "data.valid_subset=32", "bs=32"]
COLUMNS = ("train/loss", "val/loss", "val/acc", "train/acc", "lr")


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """TensorBoard's own reader: every scalar tag's (step, value) pairs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0}).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def mlflow_runs(uri, experiment):
    from mlflow import MlflowClient
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([found.experiment_id]) if found else [])


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    """One MLflow store for the module's tests (each its own experiment): making one takes seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def logged(tmp_path_factory, fmnist_dir, uri):
    """One run logged by all four loggers: (folder, MLflow tracking URI)."""
    tmp = tmp_path_factory.mktemp("logged")
    with pytest.MonkeyPatch.context() as mp:
        expt = in_process(mp, tmp)
        result = expt(["train", *SMALL, f"data.root={fmnist_dir}", "epochs=3", "logger=[csv,tensorboard,mlflow,wandb]",
                       f"logger.mlflow.tracking_uri={uri}", f"hydra.run.dir={tmp / 'run'}"])
    assert result.returncode == 0, result.stderr
    return tmp / "run", uri


def test_tensorboard_holds_every_epoch_of_metrics_csv(logged):
    run, _ = logged
    metrics = pd.read_csv(run / "metrics.csv")
    logged_scalars = scalars(run / "tensorboard")
    for column in COLUMNS:
        assert logged_scalars[column] == [(e, pytest.approx(v, rel=1e-6)) for e, v in zip(metrics["epoch"], metrics[column])]


def test_mlflow_holds_params_metrics_tags_and_artifacts(logged):
    run, uri = logged
    client, runs = mlflow_runs(uri, "expt")
    assert len(runs) == 1
    found = runs[0]
    metrics = pd.read_csv(run / "metrics.csv")
    for column in COLUMNS:
        history = sorted((m.step, m.value) for m in client.get_metric_history(found.info.run_id, column))
        assert history == [(e, pytest.approx(v, rel=1e-6)) for e, v in zip(metrics["epoch"], metrics[column])]
    params = found.data.params
    assert params["epochs"] == "3" and params["bs"] == "32" and params["arch"] == "resnet_k5"
    assert float(params["optimizer.lr"]) == pytest.approx(json.loads((run / "summary.json").read_text())["lr"])
    assert found.data.tags["expt.command"] == "train" and len(found.data.tags["expt.recipe"]) == 12
    assert found.info.status == "FINISHED" and found.info.run_name == run.name
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"model.safetensors", "model_best.safetensors", "metrics.csv", "metrics.png"} <= artifacts


def test_wandb_offline_writes_its_run_folder(logged):
    run, _ = logged
    pytest.importorskip("wandb")
    files = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1 and files[0].stat().st_size > 0


def test_a_resumed_run_goes_on_in_its_mlflow_run_and_tensorboard_curve(tmp_path, fmnist_dir, expt_in, monkeypatch,
                                                                        uri):
    undo = ctrl_c_after_epoch(monkeypatch, 2)
    loggers = ["logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={uri}", "logger.mlflow.artifacts=false",
               "logger.mlflow.experiment=resumed"]
    cut, resumed = tmp_path / "cut", tmp_path / "resumed"
    assert_one_line(expt_in(["train", *SMALL, f"data.root={fmnist_dir}", "epochs=4", *loggers, f"hydra.run.dir={cut}"]),
                    130, "interrupted")
    undo()
    result = expt_in(["train", f"resume={cut}", f"hydra.run.dir={resumed}"])
    assert result.returncode == 0, result.stderr

    client, runs = mlflow_runs(uri, "resumed")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # one run, continued
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "val/acc")]
    assert sorted(steps) == [1, 2, 3, 4]
    metrics = pd.read_csv(resumed / "metrics.csv")
    assert [s for s, _ in scalars(resumed / "tensorboard")["val/acc"]] == [1, 2, 3, 4]
    assert [v for _, v in scalars(resumed / "tensorboard")["val/acc"]] == pytest.approx(metrics["val/acc"].tolist())


def test_a_sweep_is_one_mlflow_experiment_and_one_tensorboard_folder_per_job(tmp_path, fmnist_dir, expt_in, uri):
    sweep = tmp_path / "sw"
    result = expt_in(["sweep", *SMALL, f"data.root={fmnist_dir}", "epochs=1", "seed=1,2", "logger=[tensorboard,mlflow]",
                      f"logger.mlflow.tracking_uri={uri}", "logger.mlflow.artifacts=false", f"hydra.sweep.dir={sweep}"])
    assert result.returncode == 0, result.stderr
    _, runs = mlflow_runs(uri, f"sweep {sweep}")
    assert sorted(r.data.params["seed"] for r in runs) == ["1", "2"]
    assert {r.data.tags["expt.job"] for r in runs} == {r.info.run_name for r in runs} == {"seed=1", "seed=2"}
    assert len(list(sweep.glob("*/tensorboard/events.out.tfevents.*"))) == 2


def test_a_missing_logger_library_is_one_line(tmp_path, fmnist_dir, expt_in, monkeypatch):
    import expt.callbacks.loggers as loggers
    real = loggers.find_spec
    monkeypatch.setattr(loggers, "find_spec", lambda name: None if name == "wandb" else real(name))
    result = expt_in(["train", *SMALL, f"data.root={fmnist_dir}", "logger=[tensorboard,wandb]",
                      f"hydra.run.dir={tmp_path / 'run'}"])
    assert_one_line(result, 2, "logger=wandb needs the wandb package", "pip install 'expt[wandb]'")
    assert not (tmp_path / "run").exists()
    result = expt_in(["train", *SMALL, f"data.root={fmnist_dir}", "logger=[nothing]", f"hydra.run.dir={tmp_path / 'r'}"])
    assert result.returncode == 2 and "nothing" in result.stderr
