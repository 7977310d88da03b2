"""GAN training in turns (issue 16): which of the two models trains the next batch.

A switcher is told each training step's loss and says which model trains next. Its state is two
numbers, saved in last.pt with the rest of a run, so that a resumed GAN continues in the same turn.
"""

from dataclasses import dataclass

from .errors import ConfigError


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
