"""GAN parts (issue 16): the critic."""

import pytest
import torch

from expt.errors import ConfigError
from expt.models.critic import critic, expand_targets, score_map_side
from expt.models.unet import SelfAttention


@pytest.mark.parametrize("size,blocks,positions", [(64, 3, 1), (128, 3, 25), (28, 1, 16), (96, 2, 81)])
def test_the_critic_scores_every_patch(size, blocks, positions):
    torch.manual_seed(0)
    model = critic(3, input_shape=(3, size, size), nf=8, n_blocks=blocks)
    out = model(torch.rand(2, 3, size, size))
    assert out.shape == (2, positions) and score_map_side(size, blocks) ** 2 == positions
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(hasattr(c, "parametrizations") for c in convs)  # every conv spectral-normalised
    assert sum(isinstance(m, SelfAttention) for m in model.modules()) == (1 if blocks else 0)
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_critic_refusals_say_what_fits():
    with pytest.raises(ConfigError, match="needs images of at least 64 px a side, and these are 28x28; use arch.n_blocks=1"):
        critic(1, input_shape=(1, 28, 28))
    with pytest.raises(ConfigError, match="one output, not 2"):
        critic(3, n_out=2)
    with pytest.raises(ConfigError, match="use larger images"):
        critic(3, n_blocks=0, input_shape=(3, 4, 4))


def test_targets_expand_over_the_score_map():
    logits = torch.zeros(3, 25)
    target = expand_targets(logits, torch.tensor([1, 0, 1]))
    assert target.shape == (3, 25) and target.dtype == logits.dtype
    assert target[:, 0].tolist() == [1, 0, 1] and torch.equal(target[:, 0:1].expand(3, 25), target)


def turns(switcher, losses: list[float]) -> str:
    """Which model trained each step ('c' critic, 'g' generator), given the scripted losses."""
    out = ""
    for loss in losses:
        out += "g" if switcher.generator_turn else "c"
        switcher.after_step(loss)
    return out


def test_the_adaptive_switcher_trains_the_critic_until_it_is_good_enough():
    from expt.gan import AdaptiveSwitcher
    # critic losses 0.9, 0.8, 0.6 (< 0.65: switch), one generator step, critic 0.7, 0.5 (switch), generator
    assert turns(AdaptiveSwitcher(), [0.9, 0.8, 0.6, 3.0, 0.7, 0.5, 2.0, 0.64]) == "cccgccgc"
    # a generator threshold keeps the generator on until its loss is below it
    assert turns(AdaptiveSwitcher(generator_threshold=1.0), [0.1, 3.0, 2.0, 0.5, 0.1]) == "cgggc"
    assert turns(AdaptiveSwitcher(critic_threshold=None), [5.0, 5.0, 5.0, 5.0]) == "cgcg"


def test_the_fixed_switcher_counts_and_its_state_resumes():
    from expt.gan import FixedSwitcher
    switcher = FixedSwitcher(n_critic=5, n_generator=1)
    assert turns(switcher, [0.0] * 8) == "cccccgcc"
    resumed = FixedSwitcher(n_critic=5, n_generator=1)
    resumed.load_state_dict(switcher.state_dict())
    assert turns(resumed, [0.0] * 5) == turns(switcher, [0.0] * 5) == "cccgc"
    with pytest.raises(ConfigError, match="at least 1"):
        FixedSwitcher(n_critic=0)
