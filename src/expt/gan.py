"""GAN training in turns (lesson 7's super-resolution GAN): a generator (the run's model) and a
critic, each with its own optimizer, trained batch by batch as a switcher says.

The `gan` group's builder (`gan`) checks the options; build.py makes the critic and its optimizer
and `GanStep`, which the learner calls for each training batch instead of its own step. A switcher
is told each training step's loss and says which model trains next. Its state is two numbers,
saved in last.pt with the critic and its optimizer, so that a resumed GAN continues in the same
turn.
"""

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .callbacks.metrics import MetricsCB
from .checkpoint import read_meta
from .errors import CheckpointError, ConfigError
from .learner import Callback, TrainStep


@dataclass
class AdaptiveSwitcher:
    """fastai's AdaptiveGANSwitcher: train the critic until its loss falls below critic_threshold
    (0.65 in the lesson), then the generator until its loss falls below generator_threshold (None:
    for one step), then the critic again."""

    critic_threshold: float | None = 0.65
    generator_threshold: float | None = None
    generator_turn: bool = False
    steps: int = 0  # steps taken in the current turn

    def after_step(self, loss: float) -> bool:
        """Record one training step of the model whose turn it is; True when the turn changed."""
        self.steps += 1
        threshold = self.generator_threshold if self.generator_turn else self.critic_threshold
        if threshold is None or loss < threshold:
            self.generator_turn, self.steps = not self.generator_turn, 0
            return True
        return False

    def state_dict(self) -> dict:
        return {"generator_turn": self.generator_turn, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.generator_turn, self.steps = bool(state["generator_turn"]), int(state["steps"])


@dataclass
class FixedSwitcher:
    """n_critic critic steps, then n_generator generator steps, whatever the losses (WGAN: 5 and 1)."""

    n_critic: int = 1
    n_generator: int = 1
    generator_turn: bool = False
    steps: int = 0

    def __post_init__(self):
        if self.n_critic < 1 or self.n_generator < 1:
            raise ConfigError(f"gan.switcher=fixed needs n_critic and n_generator of at least 1 "
                              f"(got {self.n_critic} and {self.n_generator})")

    def after_step(self, loss: float) -> bool:
        self.steps += 1
        if self.steps >= (self.n_generator if self.generator_turn else self.n_critic):
            self.generator_turn, self.steps = not self.generator_turn, 0
            return True
        return False

    state_dict = AdaptiveSwitcher.state_dict
    load_state_dict = AdaptiveSwitcher.load_state_dict


SWITCHERS = ("adaptive", "fixed")
GAN_LOSSES = ("bce", "hinge")


def critic_loss(real: torch.Tensor, fake: torch.Tensor, kind: str) -> torch.Tensor:
    """The critic's loss on patch logits of real and generated images: binary cross-entropy (the
    lesson's, mean of the real and the fake part, so ln 2 = 0.693 when it cannot tell them apart)
    or the hinge loss (SAGAN, BigGAN)."""
    real, fake = real.float(), fake.float()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))) / 2


def adversarial_loss(fake: torch.Tensor, kind: str) -> torch.Tensor:
    """The generator's adversarial term: how far the critic is from calling its images real."""
    fake = fake.float()
    if kind == "hinge":
        return -fake.mean()
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def says_real(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Per image, whether the critic calls it real (BCE: mean patch probability above 1/2; hinge:
    mean logit above 0)."""
    logits = logits.float()
    return (torch.sigmoid(logits).mean(-1) > 0.5) if kind == "bce" else (logits.mean(-1) > 0)


def set_trainable(model: nn.Module, trainable: bool, switch_eval: bool = True) -> None:
    """The active model trains; the idle one is frozen (no gradients) and, with switch_eval, in eval
    mode, so its weights, BatchNorm statistics and spectral-norm vectors stay bitwise as they are.
    Without switch_eval the idle model stays in training mode (its weights are still frozen): a
    generator trained from scratch then shows the critic the batch-statistics images it is trained
    on, not what its still-settling running statistics make (DCGAN's way; fastai's wgan)."""
    model.train(trainable or not switch_eval)
    for p in model.parameters():
        p.requires_grad_(trainable)


@dataclass
class GanSpec:
    """A GAN run's options, checked (build.build_gan_step makes the critic and the step from them)."""

    critic: str | None
    generator: str | None
    critic_arch: dict
    loss: str
    switcher: AdaptiveSwitcher | FixedSwitcher
    adv_weight: float
    pixel_weight: float
    critic_lr_mult: float
    from_noise: bool = False          # the generator makes images from noise (experiment=fmnist_gan)
    fid_features: str | None = None   # a classifier checkpoint whose features score val/fid
    switch_eval: bool = True          # the idle model in eval mode (set_trainable)


def gan(critic: str | None = None, generator: str | None = None, critic_arch: dict | None = None,
        loss: str = "bce", switcher: str = "adaptive", critic_threshold: float = 0.65,
        n_critic: int = 1, n_generator: int = 1, adv_weight: float = 1.0, pixel_weight: float = 50.0,
        critic_lr_mult: float = 5.0, from_noise: bool = False, fid_features: str | None = None,
        switch_eval: bool = True) -> GanSpec:
    """The gan group's builder: a generator (the run's model) and a critic trained in turns.

    critic: a pretrained critic, RUN/model.safetensors of experiment=pets_critic (null: a new one
    of critic_arch, arch=critic's options); generator: the generator run to start from (the
    experiment passes it on as arch.weights; checked here to be a generator); loss: bce (the
    lesson) or hinge; switcher: adaptive (critic steps until its loss < critic_threshold, then one
    generator step) or fixed (n_critic critic steps, then n_generator generator steps);
    adv_weight, pixel_weight: the generator's loss, adversarial term and pixel loss (the run's
    loss group); critic_lr_mult: the critic's lr over the generator's; from_noise: the generator
    (arch=dcgan) makes images from noise, and the data's images are the real ones (loss=none,
    pixel_weight=0); fid_features: an expt classifier of the same data (RUN/model.safetensors),
    whose features score the generated images by Frechet distance (val/fid) after every epoch;
    switch_eval: the idle model in eval mode (true), or left in training mode (set_trainable)."""
    if loss not in GAN_LOSSES:
        raise ConfigError(f"gan.loss={loss!r} is not one of {', '.join(GAN_LOSSES)}")
    if switcher not in SWITCHERS:
        raise ConfigError(f"gan.switcher={switcher!r} is not one of {', '.join(SWITCHERS)}")
    if switcher == "adaptive" and loss != "bce":
        raise ConfigError("gan.switcher=adaptive compares the critic's BCE loss with critic_threshold; "
                          "with gan.loss=hinge use gan.switcher=fixed")
    if adv_weight < 0 or pixel_weight < 0 or adv_weight + pixel_weight == 0 or critic_lr_mult <= 0:
        raise ConfigError("gan needs adv_weight >= 0, pixel_weight >= 0 (not both 0) and critic_lr_mult > 0")
    if from_noise and pixel_weight:
        raise ConfigError("a generator from noise has no target image to compare with: set gan.pixel_weight=0")
    checks = (("generator", generator, "generate" if from_noise else "restore"), ("critic", critic, "critic"),
              ("fid_features", fid_features, "classify"))
    for name, path, task in checks:
        if path is not None:
            check_checkpoint_task(name, path, task)
    switch = (AdaptiveSwitcher(critic_threshold) if switcher == "adaptive"
              else FixedSwitcher(n_critic, n_generator))
    return GanSpec(critic, generator, dict(critic_arch or {}), loss, switch, adv_weight, pixel_weight,
                   critic_lr_mult, from_noise, fid_features, bool(switch_eval))


def none() -> None:
    """No GAN: one model, one optimizer (every run but experiment=pets_gan and fmnist_gan)."""
    return None


def check_checkpoint_task(name: str, path: str, task: str) -> None:
    found = read_meta(Path(path).expanduser()).get("task", "classify")
    if found != task:
        what = {"restore": "a restoration run's (experiment=pets_superres_cpu)",
                "generate": "an earlier run's of this experiment",
                "critic": "a critic run's (experiment=pets_critic)",
                "classify": "a classifier's of the same data (expt train)"}[task]
        kind = {"fid_features": "classifier"}.get(name, name)
        raise CheckpointError(f"gan.{name}={path} is a {found} checkpoint, not a {kind}; pass {what} model.safetensors")


class GanStep(TrainStep):
    """The learner's training step for a GAN: one batch trains the generator or the critic, as the
    switcher says; the other model is idle (frozen, eval mode). Each turn's forward pass gives the
    learner its loss parts (the generator's: `loss`, so train/loss is the generator's, and
    `adv_loss`; the critic's: PARTS), which MetricsCB sums on the device with every run's; the
    update is the learner's optimizer step, with the critic's own optimizer and scaler on its turns.
    Validation is the learner's own step on the generator (the run's model)."""

    PARTS = ("critic_loss", "critic_real_acc", "critic_fake_acc", "adv_loss")  # train/<part> columns, in order

    def __init__(self, generator: nn.Module, critic: nn.Module, critic_opt: torch.optim.Optimizer,
                 spec: GanSpec, precision: str, device: torch.device, critic_arch: dict | None = None):
        self.generator, self.critic, self.critic_opt, self.spec = generator, critic, critic_opt, spec
        self.critic_arch = critic_arch  # the critic's arch node, saved with the state: a resume needs no file
        self.switcher = spec.switcher
        fp16 = precision == "fp16"  # one gradient scaler per optimizer (the generator's is the learner's)
        self.critic_scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        self.counts = {"generator": 0, "critic": 0}  # steps of each model this epoch (GanLogCB resets them)

    def forward(self, learn) -> None:
        if self.switcher.generator_turn:
            self.generator_forward(learn)
        else:
            self.critic_forward(learn)

    def update(self, learn) -> None:
        generator = self.switcher.generator_turn
        if generator:
            learn.optimizer_step(learn.loss)
        else:
            lr = learn.opt.param_groups[-1]["lr"] * self.spec.critic_lr_mult  # follows the generator's schedule
            for group in self.critic_opt.param_groups:
                group["lr"] = lr
            learn.optimizer_step(learn.loss, self.critic_opt, self.critic_scaler)
        self.counts["generator" if generator else "critic"] += 1
        self.switcher.after_step(learn.loss.item() if isinstance(self.switcher, AdaptiveSwitcher) else 0.0)

    def generator_forward(self, learn) -> None:
        set_trainable(self.critic, False, self.spec.switch_eval)
        set_trainable(self.generator, True)
        with learn.autocast:
            fake = self.generator(learn.xb)
            adv = adversarial_loss(self.critic(fake), self.spec.loss)
            pixel = learn.loss_func(fake, learn.yb) if self.spec.pixel_weight else adv.new_zeros(())
            loss = self.spec.adv_weight * adv + self.spec.pixel_weight * pixel.float()
        learn.preds, learn.loss = fake, loss
        learn.loss_parts = {"loss": loss, "adv_loss": adv}

    def critic_forward(self, learn) -> None:
        set_trainable(self.generator, False, self.spec.switch_eval)
        set_trainable(self.critic, True)
        with torch.no_grad(), learn.autocast:
            fake = self.generator(learn.xb)
        with learn.autocast:
            real_logits, fake_logits = self.critic(learn.yb), self.critic(fake)
            loss = critic_loss(real_logits, fake_logits, self.spec.loss)
        learn.preds, learn.loss = fake, loss
        learn.loss_parts = {"critic_loss": loss,
                            "critic_real_acc": says_real(real_logits, self.spec.loss).float().mean(),
                            "critic_fake_acc": (~says_real(fake_logits, self.spec.loss)).float().mean()}

    def release(self) -> None:
        """After the fit: both models trainable again (the generator as the learner left it)."""
        for p in [*self.generator.parameters(), *self.critic.parameters()]:
            p.requires_grad_(True)

    def state_dict(self) -> dict:
        return {"critic": self.critic.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "switcher": self.switcher.state_dict(), "critic_scaler": self.critic_scaler.state_dict(),
                "critic_arch": self.critic_arch}

    def load_state_dict(self, state: dict) -> None:
        self.critic.load_state_dict(state["critic"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.switcher.load_state_dict(state["switcher"])
        self.critic_scaler.load_state_dict(state["critic_scaler"])


class GanLogCB(Callback):
    """The GAN's own checks and column: stops the fit when the critic's loss is not finite, warns
    about an epoch that trained only the critic, and adds train/generator_share (the share of steps
    that trained the generator) to the row, after MetricsCB's train/<part> columns."""

    order = MetricsCB.order + 1

    def __init__(self, step: GanStep, metrics: MetricsCB):
        self.step, self.metrics = step, metrics

    def before_train(self, learn) -> None:
        self.step.counts = {"generator": 0, "critic": 0}

    def after_train(self, learn) -> None:
        value, counts = self.metrics.train_steps["train/critic_loss"], self.step.counts
        if learn.stop_reason is None and counts["critic"] and not math.isfinite(value):
            learn.stop(f"the critic's loss became {value} in epoch {learn.epoch + 1}")
        if counts["critic"] and not counts["generator"]:
            threshold = getattr(self.step.switcher, "critic_threshold", None)
            logging.getLogger(__name__).warning(
                "epoch %d trained only the critic: its loss (%.3f) never fell below gan.critic_threshold (%s), so the "
                "generator got no step and train/loss is empty; train more epochs, or pass a higher "
                "gan.critic_threshold or gan.switcher=fixed", learn.epoch + 1, value, threshold)

    def after_epoch(self, learn) -> None:
        gen, crit = self.step.counts["generator"], self.step.counts["critic"]
        learn.row["train/generator_share"] = gen / max(gen + crit, 1.0)

    def after_fit(self, learn) -> None:
        self.step.release()
