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


def test_a_critic_pretrains_on_real_against_generated(tmp_path, expt_in, monkeypatch):
    import json

    from conftest import assert_one_line
    from test_restore import make_pets
    monkeypatch.setenv("EXPT_CACHE", str(tmp_path / "cache"))
    pets_root = make_pets(tmp_path / "pets")
    gen = tmp_path / "gen"
    assert expt_in(["train", "data=pets", f"data.root={pets_root}", "data.size=32", "data.workers=1", "arch=unet",
                    "arch.residual=true", "loss=l1", "device=cpu", "bs=4", "epochs=1",
                    f"hydra.run.dir={gen}"]).returncode == 0
    common = ["train", "experiment=pets_critic", f"data.generator={gen / 'model.safetensors'}", "arch.nf=8",
              "device=cpu", "bs=4"]
    run = tmp_path / "critic"
    result = expt_in([*common, "arch.n_blocks=1", "epochs=2", f"hydra.run.dir={run}"])
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["headline"] == "val/acc" and 0 <= summary["val/acc"] <= 1
    assert "32 train / 8 valid images" in result.stdout  # 16 + 16 real and generated, 4 + 4
    cached = list((tmp_path / "cache").glob("critic-*.safetensors"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    tta = expt_in(["tta", f"ckpt={run / 'model.safetensors'}"])
    assert tta.returncode == 0, tta.stderr
    assert "generated" in tta.stdout and "real" in tta.stdout
    assert json.loads((run / "tta.json").read_text())["acc"] == pytest.approx(summary["val/acc"], abs=1e-6)
    assert cached[0].stat().st_mtime_ns == stamp  # the generated images came from the cache
    from expt.rebuild import model_from_checkpoint
    model, meta = model_from_checkpoint(run / "model.safetensors")
    assert meta["task"] == "critic" and model(torch.rand(2, 3, 32, 32)).shape == (2, 25)
    # bad inputs, one line each
    assert_one_line(expt_in([*common, f"hydra.run.dir={tmp_path / 'r1'}"]), 2,
                    "arch=critic with n_blocks=3 needs images of at least 64 px a side, and these are 32x32; use "
                    "arch.n_blocks=2")
    assert_one_line(expt_in([*common[:2], "arch.nf=8", f"hydra.run.dir={tmp_path / 'r2'}"]), 2,
                    "data=critic needs data.generator=RUN/model.safetensors")
    assert_one_line(expt_in([*common[:2], f"data.generator={run / 'model.safetensors'}", "arch.n_blocks=1",
                             f"hydra.run.dir={tmp_path / 'r3'}"]), 2, "is a critic checkpoint, not a generator")
    assert_one_line(expt_in([*common, "arch.n_blocks=1", "loss=cross_entropy", f"hydra.run.dir={tmp_path / 'r4'}"]),
                    2, "does not fit a critic", "loss=patch_bce")
