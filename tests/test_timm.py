"""arch=timm, automatic normalisation, fine-tuning, and `expt summary`."""

import pytest
import timm
import torch
from omegaconf import OmegaConf
from rich.console import Console
from safetensors.torch import save_file
from torch import nn

from expt.build import build_model, build_run
from expt.rebuild import model_from_checkpoint
from expt.checkpoint import save_model
from expt.errors import ConfigError
from expt.learner import Learner
from expt.model_table import summarize_model
from test_config import composed


def timm_arch(name: str, **kw):
    return OmegaConf.create({"_target_": "expt.models.timm.timm_model", "_partial_": True, "name": name, **kw})


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("name", ["resnet18d", "convnext_atto", "vit_tiny_patch16_224"])
@pytest.mark.parametrize("channels", [1, 3])
def test_timm_models_train_on_small_images(name, channels):
    torch.manual_seed(0)
    model = build_model(timm_arch(name), (0.3,) * channels, (0.3,) * channels, 10, (channels, 28, 28))
    assert first_conv(model).in_channels == channels  # a gray image stays one channel
    out = model(torch.rand(2, channels, 28, 28))  # convnext and the ViT resize to 224 on the device
    out.square().mean().backward()
    assert out.shape == (2, 10) and all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert summarize_model(model, torch.rand(2, channels, 28, 28)).params == sum(p.numel() for p in model.parameters())


def test_summary_totals_by_hand():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    s = summarize_model(model, torch.rand(3, 1, 8, 8))
    conv_macs, linear_macs = 4 * 8 * 8 * (1 * 3 * 3), 5 * 256  # per image
    assert s.mflops == pytest.approx((conv_macs + linear_macs) / 1e6)
    assert s.params == (4 * 9 + 4) + (256 * 5 + 5) and [r.kind for r in s.rows] == ["Conv2d", "ReLU", "Flatten", "Linear"]
    assert s.rows[0].input_shape == (3, 1, 8, 8) and s.rows[3].output_shape == (3, 5)


def test_vit_parameters_outside_leaf_modules_are_counted_once():
    model = build_model(timm_arch("vit_tiny_patch16_224"), (0.3,), (0.3,), 10, (1, 224, 224))
    s = summarize_model(model, torch.rand(1, 1, 224, 224))
    assert s.params == sum(p.numel() for p in model.parameters()) == sum(r.params for r in s.rows)
    assert s.rows[-1].name.startswith("(parameters of non-leaf")  # pos_embed, cls_token


@pytest.mark.parametrize("channels", [1, 3])
def test_local_pretrained_weights_bring_their_normalisation(tmp_path, channels):
    source = timm.create_model("resnet18d", num_classes=10)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    model = build_model(timm_arch("resnet18d", weights=str(tmp_path / "w.safetensors")), (0.3,) * channels,
                        (0.3,) * channels, 10, (channels, 28, 28))
    cfg = source.pretrained_cfg
    expected_mean = cfg["mean"] if channels == 3 else (sum(cfg["mean"]) / 3,)
    assert model.norm.mean.flatten().tolist() == pytest.approx(list(expected_mean))
    assert model.norm.std.flatten().tolist() == pytest.approx(
        list(cfg["std"] if channels == 3 else (sum(cfg["std"]) / 3,)))
    body, src = model.body.state_dict(), source.state_dict()
    assert torch.equal(body["layer1.0.conv1.weight"], src["layer1.0.conv1.weight"])  # the file was loaded
    scratch = build_model(timm_arch("resnet18d"), (0.3,), (0.2,), 10, (1, 28, 28))
    assert scratch.norm.mean.flatten().tolist() == pytest.approx([0.3])  # from scratch: the data's


def test_an_expt_checkpoint_as_weights_is_loaded_or_refused_with_counts(tmp_path):
    """An expt classifier checkpoint passed to arch.weights (its tensors under `body.`) is loaded,
    with the checkpoint's own normalisation; a file of another model is one line with the counts."""
    from expt.checkpoint import save_model
    from expt.errors import ConfigError
    source = build_model(timm_arch("resnet10t"), (0.25,), (0.35,), 10, (1, 28, 28))
    meta = {"config": {"arch": {"_target_": "expt.models.timm.timm_model"}, "data": {"_target_": "x"}},
            "classes": [str(i) for i in range(10)], "mean": [0.25], "std": [0.35], "versions": {}}
    ckpt = save_model(tmp_path / "model.safetensors", source, meta)
    again = build_model(timm_arch("resnet10t", weights=str(ckpt)), (0.5,), (0.1,), 4, (1, 28, 28))
    assert torch.equal(again.body.conv1[0].weight, source.body.conv1[0].weight)  # not silently ignored
    assert again.body.fc.weight.shape == (4, 512)  # another number of classes: a fresh head
    assert again.norm.mean.flatten().tolist() == pytest.approx([0.25])  # the checkpoint's normalisation
    with pytest.raises(ConfigError, match=r"does not fit: \d+ of the model's \d+ tensors are not in it"):
        build_model(timm_arch("resnet18", weights=str(ckpt)), (0.5,), (0.1,), 10, (1, 28, 28))


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path, fmnist_dir):
    cfg = composed(["debug=fast", f"data.root={fmnist_dir}", "arch=timm", "arch.name=convnext_atto"])
    run = build_run(cfg)
    meta = {"config": {"arch": OmegaConf.to_container(cfg.arch), "data": OmegaConf.to_container(cfg.data)}, "classes": run.data.classes,
            "mean": run.model.norm.mean.flatten().tolist(), "std": run.model.norm.std.flatten().tolist(),
            "input_shape": list(run.input_shape), "versions": {}}
    path = save_model(tmp_path / "model.safetensors", run.model, meta)
    again, _ = model_from_checkpoint(path)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(run.model.eval()(x), again(x))


def test_unknown_name_and_fixed_size_are_one_line_errors(tmp_path, fmnist_dir, expt_in):
    result = expt_in(["summary", "debug=fast", f"data.root={fmnist_dir}", "arch=timm", "arch.name=resnet18x",
                      f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode == 2 and "close matches: resnet18" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(ConfigError, match="takes only 224x224 images and the data is 28x28"):
        build_model(timm_arch("vit_tiny_patch16_224", input_size=None), (0.3,), (0.3,), 10, (1, 28, 28))
    with pytest.raises(ConfigError, match="cannot take 28x28 images"):
        build_model(timm_arch("convnext_atto", input_size=None), (0.3,), (0.3,), 10, (1, 28, 28))
    with pytest.raises(ConfigError, match="is not a file"):
        build_model(timm_arch("resnet18d", weights=str(tmp_path / "none.pth")), (0.3,), (0.3,), 10, (1, 28, 28))


def test_finetune_trains_the_head_first(fmnist_dir, tmp_path):
    run = build_run(composed(["debug=fast", f"data.root={fmnist_dir}", "arch=timm", "finetune.freeze_epochs=1",
                              "finetune.body_lr_mult=0.1", "epochs=2", "optimizer.lr=1e-3"]))
    head = {id(p) for p in run.model.body.get_classifier().parameters()}
    snapshot = lambda: {n: p.detach().clone() for n, p in run.model.named_parameters()}  # noqa: E731
    body_lr, head_lr = (g["lr"] for g in run.opt.param_groups)
    assert body_lr == pytest.approx(0.1 * head_lr)
    before = snapshot()
    from expt.build import FitRecord, callbacks_for
    fit = FitRecord(tmp_path, Console(quiet=True), meta={}, extra={}, primary=False)  # trains, writes nothing
    learn = Learner(run.net, run.train_dl, run.valid_dl, run.loss, run.opt, callbacks_for(run, fit))
    learn.fit(1)
    after_one = snapshot()
    changed = {n for n, p in run.model.named_parameters() if not torch.equal(before[n], after_one[n])}
    heads = {n for n, p in run.model.named_parameters() if id(p) in head}
    assert changed == heads  # epoch 1: only the classifier head moved
    learn.fit(2, start_epoch=1)
    assert any(not torch.equal(after_one[n], p) for n, p in run.model.named_parameters() if n not in heads)


def test_finetune_needs_a_classifier_head(fmnist_dir):
    with pytest.raises(ConfigError, match="classifier head"):
        build_run(composed(["debug=fast", f"data.root={fmnist_dir}", "finetune.freeze_epochs=1"]))


def test_summary_command_and_train_totals(tmp_path, fmnist_dir, expt_in):
    result = expt_in(["summary", "debug=fast", f"data.root={fmnist_dir}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode == 0, result.stderr
    md = (tmp_path / "run" / "summary.md").read_text()
    assert "| **total** | | | | **1,230,436** |" in md and "body.0.convs.0.0" in md and "Conv2d" in md
