"""The second hardening pass (issue 23): a run folder is data, paths stay inside their roots,
nothing the user owns is lost. Each test reproduces one finding; the controls show that the
attack is live without expt's check, so the tests can fail."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from conftest import assert_one_line, strict_json
from test_faults import readonly_dir  # noqa: F401 (a fixture)
from test_faults import bait  # noqa: F401 (a fixture)
from expt.errors import ConfigError
from expt.overrides import check, check_hydra_node

# ---------------------------------------------------------------- a run folder never runs code


@pytest.fixture
def evil_yaml(tmp_path):
    """A YAML anywhere on the disk that sets a Hydra callback which truncates the victim file."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious bytes")
    evil = tmp_path / "evil" / "experiment" / "payload.yaml"  # also a config dir with an experiment group
    evil.parent.mkdir(parents=True)
    evil.write_text("# @package _global_\nhydra:\n  callbacks:\n    x:\n      _target_: builtins.open\n"
                    f"      file: {victim}\n      mode: w\n")
    return evil, victim


def composed(overrides: list[str]):
    """conf/ composed as Hydra composes it, with its hydra node (no expt check in between)."""
    from expt.schema import register_schema
    register_schema()
    with initialize_config_module("expt.conf", version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def relative_to_conf(path: Path) -> str:
    """The group option that reaches `path` from conf/experiment/ (Hydra accepts `..`)."""
    import expt.conf
    conf = Path(expt.conf.__file__).parent / "experiment"
    return "../" * len(conf.parts[1:]) + str(path.with_suffix("")).lstrip("/")


def test_the_callback_payload_is_live(evil_yaml):
    """The control: composed as Hydra composes it, the path option reaches the YAML and Hydra's own
    callback machinery runs its payload (so the refusals below can fail)."""
    from hydra._internal.callbacks import Callbacks
    evil, victim = evil_yaml
    cfg = composed([f"experiment={relative_to_conf(evil)}"])
    Callbacks(cfg)
    assert victim.read_text() == ""
    with pytest.raises(ConfigError, match="sets hydra.callbacks"):  # what expt checks after composing
        check_hydra_node(OmegaConf.to_container(cfg.hydra, resolve=False))


def test_resuming_a_tampered_run_folder_runs_nothing(tmp_path, fmnist_dir, expt_in, evil_yaml):
    evil, victim = evil_yaml
    run = tmp_path / "run"  # a killed run's folder as Hydra and expt write it, with one line appended
    (run / ".hydra").mkdir(parents=True)
    stored = run / ".hydra" / "overrides.yaml"
    stored.write_text(yaml.safe_dump(["debug=fast", f"data.root={fmnist_dir}", f"experiment={relative_to_conf(evil)}"]))
    (run / "last.pt").write_bytes(b"")
    result = expt_in(["train", f"resume={run}", f"hydra.run.dir={tmp_path / 'resumed'}"])
    assert_one_line(result, 2, str(stored), "never a path")
    assert victim.read_text() == "precious bytes"
    assert not (tmp_path / "resumed").exists()


def test_a_run_folder_whose_overrides_are_not_a_list_is_refused(tmp_path, expt_in):
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    (tmp_path / "run" / ".hydra" / "overrides.yaml").write_text("hydra: {callbacks: {}}\n")
    assert_one_line(expt_in(["train", f"resume={tmp_path / 'run'}"]), 2, "is not a list of overrides")


CALLBACK = ["+hydra.callbacks.x._target_=builtins.open", "+hydra.callbacks.x.file={victim}", "+hydra.callbacks.x.mode=w"]


@pytest.mark.parametrize("overrides", [
    CALLBACK,
    ["+hydra.job_logging.handlers.x.class=builtins.open", "+hydra.job_logging.handlers.x.file={victim}",
     "+hydra.job_logging.handlers.x.mode=w"],
    ["hydra.searchpath=[file://{evil_dir}]", "experiment=payload"],
    ["hydra.launcher._target_=builtins.open"],
    ["+hydra.sweeper.sampler={{_target_:builtins.open}}"],
    ["experiment={relative}"],
    ["+experiment={evil}"],
    ["hydra/launcher=../../{evil}"],
    ["+experiment@_global_=fmnist_5ep"],
    ["--config-dir={evil_dir}", "experiment=payload"],
    ["--experimental-rerun={evil_dir}/config.pickle"],
])
def test_the_command_line_reaches_no_hydra_code(tmp_path, expt_in, evil_yaml, overrides):
    evil, victim = evil_yaml
    values = {"victim": victim, "evil_dir": evil.parent.parent, "evil": evil.with_suffix(""), "relative": relative_to_conf(evil)}
    result = expt_in(["train", "debug=fast", *[o.format(**values) for o in overrides], f"hydra.run.dir={tmp_path / 'r'}"])
    assert_one_line(result, 2)
    assert victim.read_text() == "precious bytes"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("node, phrase", [
    ({"callbacks": {"x": {"_target_": "builtins.open"}}}, "sets hydra.callbacks"),
    ({"searchpath": ["file:///tmp"]}, "hydra.searchpath"),
    ({"launcher": {"_target_": "builtins.open"}}, "not one of Hydra's plugins"),
    ({"sweeper": {"_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper",
                  "sampler": {"_target_": "builtins.exec"}}}, "'builtins.exec'"),
    ({"job_logging": {"handlers": {"x": {"class": "builtins.open"}}}}, "would make logging call code"),
    ({"job_logging": {"formatters": {"x": {"()": "builtins.open"}}}}, "would make logging call code"),
    ({"hydra_logging": {"handlers": {"x": {"class": "logging.StreamHandler", "stream": "ext://os.system"}}}},
     "would make logging call code"),
])
def test_the_composed_hydra_node_names_only_plugins(node, phrase):
    with pytest.raises(ConfigError, match=phrase):
        check_hydra_node(node)


@pytest.mark.parametrize("overrides", [[], ["hparams_search=fmnist_optuna"], ["hydra/launcher=joblib"],
                                       ["hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]])
def test_conf_and_the_plugins_own_choices_pass(overrides):
    check([*overrides, "hydra.sweeper.n_trials=2", "hydra.launcher.n_jobs=2", "hydra.run.dir=out", "--cfg", "job"])
    cfg = composed(overrides)
    check_hydra_node(OmegaConf.to_container(cfg.hydra, resolve=False))


# ---------------------------------------------------------------- paths stay inside their roots


@pytest.mark.parametrize("image_id", ["../../../outside.jpg", "{outside}", "../normal/100001.jpg"])
def test_paddy_csv_paths_stay_inside_the_root(tmp_path, monkeypatch, image_id):
    from conftest import make_paddy, write_jpeg
    from expt.data import paddy
    from expt.errors import DataError
    monkeypatch.setenv("EXPT_CACHE", str(tmp_path / "cache"))
    root = make_paddy(tmp_path / "paddy", n=6)
    outside = write_jpeg(tmp_path / "outside.jpg", seed=7)  # a real image the CSV must not reach
    image_id = image_id.format(outside=outside)
    (root / "train.csv").write_text((root / "train.csv").read_text() + f"{image_id},blast,ADT45,50\n")
    with pytest.raises(DataError, match=r"train.csv row 8's image_id is .*leads outside"):
        paddy.load(root=str(root), size=16)
    assert not (tmp_path / "cache").exists()  # nothing decoded, nothing copied into the cache


def test_paddy_csv_with_an_empty_cell_is_one_line(tmp_path):
    from conftest import make_paddy
    from expt.data import paddy
    from expt.errors import DataError
    root = make_paddy(tmp_path / "paddy", n=6)
    (root / "train.csv").write_text((root / "train.csv").read_text() + ",blast,ADT45,50\n")
    with pytest.raises(DataError, match="row 8 has an empty image_id"):
        paddy.load(root=str(root), size=16)


# ---------------------------------------------------------------- a command deletes only what it created


def test_a_failed_command_keeps_the_folders_the_user_made(tmp_path, expt_in):
    """Missing data fails the command: the folders it made go, the ones that were there stay."""
    mine = tmp_path / "mine"
    mine.mkdir()
    result = expt_in(["train", "debug=fast", "data=imagenette", f"hydra.run.dir={mine / 'a' / 'b' / 'c'}"])
    assert_one_line(result, 2, "Imagenette not found")
    assert mine.is_dir() and not any(mine.iterdir())
    (tmp_path / "empty").mkdir()
    result = expt_in(["train", "debug=fast", "data=imagenette", f"hydra.run.dir={tmp_path / 'empty'}"])
    assert_one_line(result, 2, "Imagenette not found")
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())  # emptied of ours, kept
    (tmp_path / "outputs" / "runs").mkdir(parents=True)  # the default place, made by the user before
    assert_one_line(expt_in(["train", "debug=fast", "data=imagenette"]), 2, "Imagenette not found")
    assert (tmp_path / "outputs" / "runs").is_dir() and not any((tmp_path / "outputs" / "runs").iterdir())


def test_a_failed_command_into_an_empty_mount_point_says_why(tmp_path, expt_in):
    from test_faults import mount_tmpfs, unmount
    mount = tmp_path / "mnt"
    if not mount_tmpfs(mount, "size=1m"):
        pytest.skip("no tmpfs can be mounted here (needs root)")
    try:
        result = expt_in(["train", "debug=fast", "data=imagenette", f"hydra.run.dir={mount / 'run'}"])
        assert_one_line(result, 2, "Imagenette not found")  # not "Device or resource busy"
        assert mount.is_mount() and not any(mount.iterdir())
    finally:
        unmount(mount)


def test_an_existing_read_only_run_folder_is_one_line(tmp_path, expt_in, readonly_dir):
    result = expt_in(["train", "debug=fast", f"hydra.run.dir={readonly_dir}"])
    assert_one_line(result, 1, f"cannot write {readonly_dir}", "pass hydra.run.dir=DIR")


# ---------------------------------------------------------------- the image cache


def test_a_killed_cache_writes_temporary_file_is_cleared(tmp_path, monkeypatch):
    from conftest import make_imagenette
    from expt.data.images import cached_images
    monkeypatch.setenv("EXPT_CACHE", str(tmp_path / "cache"))
    files = sorted((make_imagenette(tmp_path / "inet", per_class=(1, 1)) / "train").rglob("*.JPEG"))
    (tmp_path / "cache").mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "cache" / f".t-16-0123.safetensors.{dead.stdout.strip()}.140000.tmp"
    stale.write_bytes(b"\0" * 1024)  # what a SIGKILL during atomic_write leaves
    live = tmp_path / "cache" / f".t-16-4567.safetensors.{os.getpid()}.140000.tmp"  # a live writer's: kept
    live.write_bytes(b"\0")
    cached_images(files, 16, "crop", "t", workers=1)
    assert not stale.exists() and live.exists()


def test_an_empty_expt_cache_is_the_default_not_the_working_directory(tmp_path, monkeypatch):
    from expt.data.images import cache_root
    monkeypatch.setenv("EXPT_CACHE", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_root() == tmp_path / ".cache" / "expt" / "images"


SLOW_BUILD = """
import sys, time
from pathlib import Path
from expt.data.images import cached_images

class Slow:
    key = "slow"
    def __call__(self, path, size):
        time.sleep(0.5)
        return bytes(size * size * 3)

files = sorted(Path(sys.argv[1]).rglob("*.JPEG"))
cached_images(files, 8, label="slow", workers=2, decoder=Slow())
"""


def children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_decode_workers_die_with_a_killed_build(tmp_path, isolated_env):
    """SIGKILL during the cache build: its decode workers (each with a 32 s chunk in hand) end with
    it, instead of decoding on for minutes."""
    import signal
    import time
    from conftest import make_imagenette
    root = make_imagenette(tmp_path / "inet", per_class=(64, 1), wnids=("n01440764", "n02102040"))
    env = {**isolated_env, "EXPT_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_BUILD, str(root / "train")], env=env)
    deadline = time.time() + 60
    workers: set[int] = set()
    while len(workers) < 2 and time.time() < deadline:  # the two decoders (and the pool's helpers)
        workers = children(proc.pid)
        time.sleep(0.05)
    assert len(workers) >= 2, "the build never started its workers"
    time.sleep(1)  # both are decoding their first chunk
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15
    while any(running(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    alive = [w for w in workers if running(w)]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive


# ---------------------------------------------------------------- missing values are null, and said


def test_write_json_turns_nan_and_infinity_into_null(tmp_path):
    from expt.checkpoint import write_json
    write_json(tmp_path / "a.json", {"x": float("nan"), "y": [1.0, float("inf")], "z": {"w": -float("inf")}, "ok": 2})
    assert strict_json(tmp_path / "a.json") == {"x": None, "y": [1.0, None], "z": {"w": None}, "ok": 2}


# ---------------------------------------------------------------- damaged checkpoints


def saved(path: Path, arch: dict, n_out: int, shape: list[int], task: dict, **meta) -> Path:
    """A real model of `arch` saved as expt saves it, then its metadata changed by `meta`."""
    from omegaconf import OmegaConf as OC
    from expt.build import build_model
    from expt.checkpoint import save_model
    channels = shape[0]
    model = build_model(OC.create(arch), (0.5,) * channels, (0.25,) * channels, n_out, shape)
    data = {"_target_": "expt.data.fashion_mnist.load", "root": None}
    header = {"config": {"arch": arch, "data": data, "epochs": 1}, "mean": [0.5] * channels,
              "std": [0.25] * channels, "input_shape": shape, "versions": {}, **task}
    return save_model(path, model, header | meta)


UNET = {"_target_": "expt.models.unet.unet", "_partial_": True, "encoder": "resnet_k5"}
DCGAN = {"_target_": "expt.models.dcgan.dcgan", "_partial_": True, "nz": 8, "nf": 8, "upsample": "nearest"}
RESNET = {"_target_": "expt.models.resnet.resnet", "_partial_": True, "nfs": [8, 16, 32, 64, 128, 256]}
TINY = {"_target_": "expt.models.resnet.resnet_k5", "_partial_": True, "nfs": [8, 16], "zero_init_residual": False}
RESTORE, GENERATE = {"task": "restore", "channels": 3}, {"task": "generate", "channels": 1}
CLASSIFY = {"classes": [str(i) for i in range(10)]}


@pytest.mark.parametrize("arch, n_out, shape, task, change, phrase", [
    (UNET, 3, [3, 32, 32], RESTORE, {"input_shape": [3, 60000, 60000]}, "larger than 8192 pixels"),
    (DCGAN, 1, [1, 28, 28], GENERATE, {"input_shape": [1, 8000, 8000]}, "where its metadata builds"),
    (TINY, 10, [1, 28, 28], CLASSIFY, {"config": {"arch": {**TINY, "nfs": [8, 10 ** 6]}}}, "where its metadata builds"),
    (RESNET, 10, [1, 28, 28], CLASSIFY, {"input_shape": [1, 64, 64]}, "cannot be built for its metadata"),
])
def test_metadata_sizes_are_bounded_by_the_weights(tmp_path, arch, n_out, shape, task, change, phrase):
    """Each of these once asked for 5 GB to 3.3 TB before failing with a traceback."""
    import resource
    from expt.errors import CheckpointError
    from expt.rebuild import model_from_checkpoint
    path = saved(tmp_path / "model.safetensors", arch, n_out, shape, task)
    model_from_checkpoint(path)  # the control: as saved, it loads
    if "config" in change:
        change = {"config": {"arch": change["config"]["arch"], "data": {"_target_": "expt.data.fashion_mnist.load",
                                                                       "root": None}, "epochs": 1}}
    damaged = saved(tmp_path / "damaged.safetensors", arch, n_out, shape, task, **change)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match=f"checkpoint {damaged} .*{phrase}"):
        model_from_checkpoint(damaged)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB: nothing big was asked for


def relabel(path: Path, dtype: str) -> str:
    """Change the first weight's dtype in the safetensors header, leaving its bytes (what a damaged or
    hostile file does: F32 read as I32 is garbage); returns its name."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = raw[8:8 + n].decode()
    key = next(k for k in json.loads(header) if k.endswith(".weight"))
    at = header.index(f'"{key}"')
    assert header[at:].index('"F32"') < 40
    header = header[:at] + header[at:].replace('"F32"', f'"{dtype}"', 1)
    path.write_bytes(raw[:8] + header.encode() + raw[8 + n:])
    return key


def test_weights_relabelled_to_another_dtype_are_a_damaged_file(tmp_path, fmnist_dir, expt_in):
    from expt.errors import CheckpointError
    from expt.rebuild import model_from_checkpoint
    path = saved(tmp_path / "run" / "model.safetensors", TINY, 10, [1, 28, 28], CLASSIFY)
    key = relabel(path, "I32")
    with pytest.raises(CheckpointError, match=f"is damaged: {key} is stored as torch.int32, where the model holds "
                                              "torch.float32"):
        model_from_checkpoint(path)
    result = expt_in(["tta", f"ckpt={path}", f"data.root={fmnist_dir}", "device=cpu"])
    assert_one_line(result, 2, "is damaged")
    assert not (tmp_path / "run" / "tta.json").exists()


def test_non_finite_weights_are_a_damaged_file(tmp_path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open
    from expt.errors import CheckpointError
    from expt.rebuild import model_from_checkpoint
    path = saved(tmp_path / "model.safetensors", TINY, 10, [1, 28, 28], CLASSIFY)
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    weights = load_file(str(path))
    key = next(k for k in weights if weights[k].is_floating_point())
    weights[key][0] = float("nan")
    save_file(weights, str(path), metadata=header)
    with pytest.raises(CheckpointError, match=f"{key} holds NaN"):
        model_from_checkpoint(path)


def test_refusals_blame_the_right_thing(tmp_path, expt_in, bait):
    """A folder that exists is not "missing"; a pickle is refused without torch's advice to unpickle it."""
    from expt.checkpoint import load_state
    from expt.errors import CheckpointError
    from expt.rebuild import model_from_checkpoint
    run = tmp_path / "run"
    saved(run / "model.safetensors", TINY, 10, [1, 28, 28], CLASSIFY)
    with pytest.raises(CheckpointError, match=r"is a folder; pass the model.safetensors inside it \(it has one\)"):
        model_from_checkpoint(run)
    _, _, pkl, _ = bait
    (run / "last.pt").write_bytes(pkl.read_bytes())
    with pytest.raises(CheckpointError) as refused:
        load_state(run)
    assert "never unpickles code" in str(refused.value)
    assert "weights_only" not in str(refused.value) and "arbitrary code" not in str(refused.value)


# ---------------------------------------------------------------- what a new user hit first


def test_predict_on_a_unet_without_input_says_to_pass_input(tmp_path, expt_in):
    run = tmp_path / "run"
    pets = {"_target_": "expt.data.pets.load", "root": None}
    path = saved(run / "model.safetensors", UNET, 3, [3, 32, 32], RESTORE, config={
        "arch": UNET, "data": pets, "epochs": 1})
    line = assert_one_line(expt_in(["predict", f"ckpt={path}"]), 2, "restores images: pass input=DIR")
    assert "hydra" not in line.lower()
    assert not (tmp_path / "outputs").exists()  # a failed command leaves no run folder
    classifier = saved(tmp_path / "clf" / "model.safetensors", TINY, 10, [1, 28, 28], CLASSIFY)
    result = expt_in(["predict", f"ckpt={classifier}"])
    assert_one_line(result, 2, "has no test split to predict")
    assert "Error getting object" not in result.stdout + result.stderr and not (tmp_path / "outputs").exists()


def test_a_commands_own_run_folder_is_named_after_the_command(tmp_path, expt_in):
    result = expt_in(["tta", "--cfg", "job", f"ckpt=[{tmp_path / 'a.safetensors'},{tmp_path / 'b.safetensors'}]"])
    assert result.returncode == 0 and "\nname: tta\n" in result.stdout, result.stdout


@pytest.mark.parametrize("args, phrase", [(["train", "dist.nproc=0"], "dist.nproc=0 must be at least 1"),
                                          (["train", "dist.nproc=-1"], "dist.nproc=-1 must be at least 1")])
def test_settings_that_name_no_processes_are_refused(tmp_path, expt_in, args, phrase):
    assert_one_line(expt_in([*args, "debug=fast"]), 2, phrase)


def test_sample_bounds_n(tmp_path, expt_in):
    path = saved(tmp_path / "g" / "model.safetensors", DCGAN, 1, [1, 28, 28], GENERATE)
    assert_one_line(expt_in(["sample", f"ckpt={path}", "n=3000000"]), 2, "n=3000000 must be from 1 to 1,024")


@pytest.mark.parametrize("data, arch, phrase", [
    ("fmnist", "arch=unet", "arch=unet outputs images, and this data's targets are classes"),
    ("fmnist", "arch=dcgan", "arch=dcgan outputs images, and this data's targets are classes"),
    ("pets", "arch=resnet_k5", "arch=resnet_k5 outputs class scores, and this data's targets are images"),
])
def test_an_arch_whose_output_the_targets_cannot_take_is_one_line(tmp_path, fmnist_dir, expt_in, monkeypatch,
                                                                   data, arch, phrase):
    from test_restore import make_pets
    monkeypatch.setenv("EXPT_CACHE", str(tmp_path / "cache"))
    where = ([f"data.root={fmnist_dir}"] if data == "fmnist" else
             ["data=pets", f"data.root={make_pets(tmp_path / 'pets')}", "data.size=24", "loss=l1", "bs=4"])
    result = expt_in(["train", "debug=fast", *where, arch, f"hydra.run.dir={tmp_path / 'r'}"])
    assert_one_line(result, 2, phrase)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("sweep, phrase", [
    (["optimizer.lr=1e-3,-1"], "the job debug=fast optimizer.lr=-1 would fail: optimizer.lr=-1 must not be negative"),
    (["arch=timm", "arch.name=resnet18,no_such_model"], "arch.name='no_such_model' is not a timm model"),
    (["epochs=1,0"], "epochs=0 must be at least 1"),
])
def test_a_sweep_checks_every_combination_before_the_first_job(tmp_path, expt_in, sweep, phrase):
    result = expt_in(["sweep", "debug=fast", *sweep, f"hydra.sweep.dir={tmp_path / 'sw'}"])
    assert_one_line(result, 2, phrase)
    assert not (tmp_path / "sw").exists()  # not one job ran


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    """Every `expt ...` command of the README (code blocks and prose) and of `expt --help`, as written (notation
    such as [overrides], ... and the `expt COMMAND` pattern left out)."""
    import re
    text = README.read_text()
    blocks = re.findall(r"```\n(.*?)```", text, flags=re.S)
    lines = [re.split(r"\s#\s", ln)[0].strip() for b in blocks for ln in b.splitlines()]
    lines = [ln.removeprefix("scripts/install.sh && .venv/bin/") for ln in lines]
    inline = re.findall(r"`(expt [^`]*)`", text)
    import contextlib
    import io
    from expt.cli import print_usage
    with contextlib.redirect_stdout(io.StringIO()) as usage:  # `expt --help`'s examples too
        print_usage()
    lines += [re.split(r"\s#\s", ln)[0].strip() for ln in usage.getvalue().splitlines()]
    return sorted({c for c in [*lines, *inline] if c.startswith("expt ") and not re.search(
        r"\[\w|\.\.\.|<|COMMAND|a=x|--aggregate|expt data", c)})


@pytest.mark.parametrize("command", readme_commands())
def test_the_readmes_commands_compose_and_parse_as_written(command):
    """Each README command gets past expt's checks and Hydra's argument parser as typed (the sweep
    example once failed in argparse; no test typed it as the README does)."""
    import importlib.util
    import shlex
    from hydra._internal.utils import get_args_parser
    from expt.cli import check_overrides
    from expt.commands.sweep import sweep_args, sweep_jobs
    from expt.overrides import with_override
    from expt.schema import register_schema
    words = shlex.split(command)[1:]
    name, args = words[0], words[1:]
    if "hydra/launcher=submitit_slurm" in args and importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
        pytest.skip("needs hydra-submitit-launcher (expt[sweep])")
    if name == "train" and any(a in ("-m", "--multirun") for a in args):
        name = "sweep"
    register_schema()
    check(args)
    if name == "sweep":
        get_args_parser().parse_args(sweep_args(args))
        for job in sweep_jobs(sweep_args(args)):
            check_overrides(job, name)
    elif not any(a.startswith("-") for a in args):
        get_args_parser().parse_args(with_override(args, "hydra.run.dir=out"))
        check_overrides(args, name)
    else:
        get_args_parser().parse_args(args)


def test_the_readmes_pets_command_trains(tmp_path, expt_in, monkeypatch):
    """`expt train data=pets arch=unet arch.residual=true loss=l1 bs=16` as the README writes it (it
    once stopped: 296 training images, fewer than one batch of the default bs=1024)."""
    from test_restore import make_pets
    monkeypatch.setenv("EXPT_CACHE", str(tmp_path / "cache"))
    command = next(c for c in readme_commands() if c.startswith("expt train data=pets arch=unet"))
    pets = make_pets(tmp_path / "pets")  # 20 photos: 16 train, one batch of 16
    result = expt_in([*command.split()[1:], f"data.root={pets}", "data.size=24", "epochs=1", "device=cpu",
                      f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode == 0, result.stderr
