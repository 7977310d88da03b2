"""`expt export`: ONNX, TorchScript and torch.export files that predict what torch does (read back
with onnxruntime and torch's loaders, within 1e-4 on the same batch, any batch size), for a
classifier, two heads, several labels and a U-Net; their metadata; what cannot be exported, and an
export that disagrees, as one line and no file."""

import io
import json

import pytest
import torch

from conftest import assert_one_line, in_process, make_paddy

onnxruntime = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

SMALL = ["debug=fast", "data.train_subset=64", "data.valid_subset=32", "bs=32", "epochs=1"]
FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "torch_export": "model.pt2"}


def runner(path, fmt):
    """The exported file run by its own runtime: images -> outputs."""
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    module = torch.jit.load(str(path)) if fmt == "torchscript" else torch.export.load(str(path)).module()
    return lambda x: module(x).detach()


def extra_json(path, fmt) -> dict:
    if fmt == "onnx":
        return {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    files = {"expt.json": ""}
    if fmt == "torchscript":
        torch.jit.load(str(path), _extra_files=files)
    else:
        torch.export.load(io.BytesIO(path.read_bytes()), extra_files=files)
    return json.loads(files["expt.json"])


def check_exports(expt, ckpt, meta_keys=("classes",), formats=tuple(FORMATS)):
    """Each format exported with its check, then each file against torch on the same batches."""
    from expt.rebuild import model_from_checkpoint
    model, meta = model_from_checkpoint(ckpt)
    shape, printed = meta["input_shape"], []
    for fmt in formats:
        name = FORMATS[fmt]
        result = expt(["export", f"ckpt={ckpt}", f"format={fmt}"])
        assert result.returncode == 0, result.stderr
        assert "largest difference" in result.stdout
        printed.append(result.stdout)
        path = ckpt.parent / name.replace("model", ckpt.stem)
        exported = runner(path, fmt)
        for batch in (1, 3):  # the batch dimension is dynamic
            x = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(batch))
            with torch.no_grad():
                ours = model(x)
                assert ((exported(x) - ours).abs() / ours.abs().clamp_min(1)).max().item() <= 1e-4
        info = extra_json(path, fmt)
        assert json.loads(info["input_shape"]) == shape and info["task"] == meta.get("task", "classify")
        for key in meta_keys:
            assert json.loads(info[key]) == meta[key]
    return "".join(printed)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, fmnist_dir):
    tmp = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        expt = in_process(mp, tmp)
        result = expt(["train", *SMALL, f"data.root={fmnist_dir}", f"hydra.run.dir={tmp / 'run'}"])
        assert result.returncode == 0, result.stderr
        yield expt, tmp / "run"


def test_a_classifier_exports_to_every_format_and_predicts_what_torch_does(classifier):
    expt, run = classifier
    check_exports(expt, run / "model_best.safetensors")
    assert {p.name for p in run.glob("model_best.*")} == {"model_best.safetensors", *(
        n.replace("model", "model_best") for n in FORMATS.values())}


def test_an_export_that_disagrees_is_an_error_and_no_file(classifier, monkeypatch):
    from expt.commands import export
    expt, run = classifier
    real = export.load
    monkeypatch.setattr(export, "load", lambda path, fmt: (lambda x, f=real(path, fmt): f(x) + 1e-3))
    result = expt(["export", f"ckpt={run / 'model.safetensors'}", "format=torch_export"])
    assert_one_line(result, 2, "differs from torch by 1.00e-03", "no file written")
    assert not (run / "model.pt2").exists() and not list(run.glob(".model.pt2*"))


def test_what_cannot_be_exported_is_one_line(classifier, monkeypatch):
    from expt.commands import export
    expt, run = classifier
    result = expt(["export", f"ckpt={run / 'model.safetensors'}", "format=tflite"])
    assert_one_line(result, 2, "format='tflite' is not one of onnx, torchscript, torch_export")

    def unsupported(*args, **kwargs):
        raise RuntimeError("Unsupported operator aten::fancy_op\nmore lines")
    monkeypatch.setattr(torch.onnx, "export", unsupported)
    result = expt(["export", f"ckpt={run / 'model.safetensors'}", "format=onnx"])
    assert_one_line(result, 2, "cannot be exported to onnx: Unsupported operator aten::fancy_op")
    assert not (run / "model.onnx").exists()

    from expt import builders
    model, meta = builders.model_from_checkpoint(run / "model.safetensors")
    for task, phrase in (("critic", "is a GAN critic"), ("generate", "is a generator from noise")):
        monkeypatch.setattr(export, "model_from_checkpoint", lambda path, task=task: (model, meta | {"task": task}))
        assert_one_line(expt(["export", f"ckpt={run / 'model.safetensors'}"]), 2, phrase)


def test_two_heads_and_several_labels_export(tmp_path, expt_in, monkeypatch):
    from test_multilabel import make_tagged
    monkeypatch.setenv("EXPT_CACHE", str(tmp_path / "cache"))
    paddy = make_paddy(tmp_path / "paddy", n=12)
    common = ["data.size=16", "data.workers=1", "device=cpu", "bs=8", "epochs=1"]
    assert expt_in(["train", "data=paddy", f"data.root={paddy}", *common,
                    f"hydra.run.dir={tmp_path / 'paddy_run'}"]).returncode == 0
    check_exports(expt_in, tmp_path / "paddy_run" / "model.safetensors", meta_keys=("heads",), formats=["onnx"])
    tags = make_tagged(tmp_path / "tags", 40)
    result = expt_in(["train", "data=csv", f"data.root={tags}", "data.csv=tags.csv", "data.label_col=tags",
                      "data.label_delim=' '", *common, f"hydra.run.dir={tmp_path / 'tags_run'}"])
    assert result.returncode == 0, result.stderr
    check_exports(expt_in, tmp_path / "tags_run" / "model.safetensors", meta_keys=("classes", "threshold"),
                  formats=["onnx"])


def test_a_unet_exports_its_images(tmp_path, expt_in, monkeypatch):
    from test_restore import make_pets
    monkeypatch.setenv("EXPT_CACHE", str(tmp_path / "cache"))
    pets = make_pets(tmp_path / "pets")
    run = tmp_path / "unet"
    result = expt_in(["train", "data=pets", f"data.root={pets}", "data.size=32", "data.workers=1", "arch=unet",
                      "arch.residual=true", "loss=l1", "device=cpu", "bs=4", "epochs=1", f"hydra.run.dir={run}"])
    assert result.returncode == 0, result.stderr
    printed = check_exports(expt_in, run / "model.safetensors", meta_keys=("channels",), formats=["onnx", "torchscript"])
    assert printed.count("PSNR torch") == 2
