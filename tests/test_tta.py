import json

import pytest
import torch
from torch import nn

from conftest import in_process, make_fashion_mnist
from expt.rebuild import build_eval, model_from_checkpoint
from expt.checkpoint import read_checkpoint, save_model
from expt.errors import ExptError
from expt.tasks import Classify
from expt.tta import make_view, predict, views
from test_config import composed


def test_views():
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).reshape(2, 1, 3, 4) + 1
    assert torch.equal(make_view("identity")(x), x) and torch.equal(make_view("hflip")(x), x.flip(3))
    right = make_view("shift:1:0")(x)
    assert torch.equal(right[..., 1:], x[..., :-1]) and (right[..., 0] == 0).all()
    down = make_view("shift:0:-1")(x)  # dy=-1 moves content up
    assert torch.equal(down[..., :-1, :], x[..., 1:, :]) and (down[..., -1, :] == 0).all()
    flipped_right = make_view("hflip+shift:1:0")(x)  # joined views apply left to right
    assert torch.equal(flipped_right, make_view("shift:1:0")(x.flip(3)))
    assert not torch.equal(flipped_right, make_view("shift:1:0+hflip")(x))
    with pytest.raises(ExptError, match="joined by"):
        make_view("hflip+vflip")


def test_flip_x_shift_preset_is_every_shift_with_and_without_the_flip():
    names = composed(["tta=flip_x_shift"]).tta.names
    shifts = ["shift:1:0", "shift:-1:0", "shift:0:1", "shift:0:-1"]
    assert sorted(names) == sorted(["identity", "hflip", *shifts, *(f"hflip+{s}" for s in shifts)])
    x = torch.rand(2, 1, 5, 5)
    outputs = [view(x) for view in views(names).views]
    assert all(not torch.equal(a, b) for i, a in enumerate(outputs) for b in outputs[i + 1:])  # ten different views
    for name, out in zip(names, outputs):
        source = x.flip(3) if name.startswith("hflip") else x
        assert torch.equal(out, make_view(name.removeprefix("hflip+").replace("hflip", "identity"))(source))


class FlipInvariant(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(16, 3)

    def forward(self, x):
        return self.linear((x + x.flip(3)).flatten(1))


def test_tta_of_a_flip_invariant_model_equals_the_plain_prediction():
    torch.manual_seed(0)
    x, y = torch.rand(10, 1, 4, 4), torch.zeros(10, dtype=torch.long)
    plain, averaged = predict(FlipInvariant(), [(x, y)], views(["identity", "hflip"]),
                              torch.autocast("cpu", enabled=False), Classify.of(3))
    assert torch.allclose(plain, averaged, atol=1e-6) and plain.shape == (10, 3)
    assert torch.allclose(plain.sum(1), torch.ones(10))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two checkpoints of the fixture data (seeds 1 and 2), trained by `expt train`."""
    root = tmp_path_factory.mktemp("tta")
    data = make_fashion_mnist(root / "fm")
    ckpts = []
    with pytest.MonkeyPatch.context() as mp:
        expt = in_process(mp, root)
        for seed in (1, 2):
            result = expt(["train", "debug=fast", "epochs=2", f"seed={seed}", f"data.root={data}",
                           f"hydra.run.dir={root / f'seed{seed}'}"])
            assert result.returncode == 0, result.stderr
            ckpts.append(root / f"seed{seed}" / "model.safetensors")
    return root, data, ckpts


def test_tta_command_single_checkpoint(trained, expt_in):
    root, data, (ckpt, _) = trained
    result = expt_in(["tta", f"ckpt={ckpt}", f"data.root={data}", "tta=flip_shift", f"hydra.run.dir={root / 'tta1'}"])
    assert result.returncode == 0, result.stderr
    out = json.loads((ckpt.parent / "tta.json").read_text())
    assert out["views"][:2] == ["identity", "hflip"] and len(out["views"]) == 6 and out["images"] == 128
    assert 0 <= out["acc"] <= 1 and 0 <= out["tta_acc"] <= 1 and len(out["per_class"]) == 10
    summary = json.loads((ckpt.parent / "summary.json").read_text())
    assert out["acc"] == pytest.approx(summary["val/acc"], abs=1 / 128)  # same model, same images
    assert "Ankle boot" in result.stdout and "tta" in result.stdout
    assert "shift:-1:0" in result.stdout  # printed as typed, not as rich's :-1: emoji
    assert f"outputs: {ckpt.parent}" in result.stdout
    assert not (root / "tta1").exists()  # everything went next to the checkpoint: no empty run folder


def test_tta_command_ensemble(trained, expt_in):
    root, data, ckpts = trained
    result = expt_in(["tta", f"ckpt=[{ckpts[0]},{ckpts[1]}]", f"data.root={data}", f"hydra.run.dir={root / 'ens'}"])
    assert result.returncode == 0, result.stderr
    out = json.loads((root / "ens" / "tta.json").read_text())
    assert [m["ckpt"] for m in out["models"]] == [str(c) for c in ckpts] and "ensemble" in result.stdout
    assert (root / "ens" / "config.yaml").exists() and f"outputs: {root / 'ens'}" in result.stdout


def error_line(result):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_tta_errors(trained, expt_in, tmp_path):
    root, data, (ckpt, _) = trained
    model, meta = model_from_checkpoint(ckpt)
    other = save_model(tmp_path / "other.safetensors", model, {**meta, "classes": [f"c{i}" for i in range(10)]})
    weights, _ = read_checkpoint(ckpt)
    broken = nn.Module()
    for k, v in list(weights.items())[:3]:
        broken.register_buffer(k.replace(".", "_"), v)
    mismatched = save_model(tmp_path / "mismatched.safetensors", broken, meta)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)

    def tta(*args):
        return expt_in(["tta", f"data.root={data}", f"hydra.run.dir={tmp_path / 'run'}", *args])
    assert "needs ckpt=" in error_line(tta())
    assert "not a readable safetensors" in error_line(tta(f"ckpt={junk}"))

    def build(*overrides):
        with pytest.raises(ExptError) as info:
            build_eval(composed([f"data.root={data}", *overrides]), explicit_data=False)
        return str(info.value)
    assert "does not exist" in build(f"ckpt={tmp_path / 'missing.safetensors'}")
    assert "unknown tta view 'vflip'" in build(f"ckpt={ckpt}", "tta.names=[identity,vflip]")
    assert "weights do not fit" in build(f"ckpt={mismatched}")
    assert "does not fit this data" in build(f"ckpt={other}")
    assert "trained on other data" in build(f"ckpt=[{ckpt},{other}]")
