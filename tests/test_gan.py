"""GANs (issue 16): the critic, the switchers, the GAN step and GAN runs."""

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


def test_a_whole_image_critic_without_attention_scores_each_image_once():
    """DCGAN's discriminator shape (fmnist_gan): the last conv covers the whole remaining map."""
    model = critic(1, nf=8, n_blocks=1, spectral=False, attention=False, head="image", input_shape=(1, 28, 28))
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 1)
    assert not any(isinstance(m, SelfAttention) for m in model.modules())
    with pytest.raises(ConfigError, match="needs square images"):
        critic(1, head="image", n_blocks=1, input_shape=(1, 28, 32))
    with pytest.raises(ConfigError, match="patch .* or image"):
        critic(1, head="global", n_blocks=1, input_shape=(1, 28, 28))


@pytest.mark.parametrize("upsample", ["nearest", "transpose"])
def test_the_dcgan_generator_makes_images_either_way(upsample):
    from expt.models.dcgan import dcgan
    model = dcgan(1, 1, nz=8, nf=8, upsample=upsample, input_shape=(1, 28, 28))
    out = model(torch.randn(2, 8, 1, 1))
    assert out.shape == (2, 1, 28, 28) and 0 <= out.min() and out.max() <= 1
    has_transpose = sum(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules())
    assert has_transpose == (3 if upsample == "transpose" else 1)  # the first layer always (1x1 -> 7x7)
    with pytest.raises(ConfigError, match="arch.upsample is transpose or nearest"):
        dcgan(1, 1, upsample="bilinear", input_shape=(1, 28, 28))


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


def toy_gan(switcher, switch_eval: bool = True):
    """A tiny generator (conv + BatchNorm, so it has statistics that must not move while idle), a
    critic for 32 px, their optimizers, and a learner in training mode on one batch, whose
    `one_batch()` takes one step; its callbacks: the metric sums, the GAN's column, an event log."""
    from expt.callbacks import MetricsCB
    from expt.gan import GanLogCB, GanSpec, GanStep
    from expt.learner import Callback, Learner
    from expt.tasks import Restore
    torch.manual_seed(0)
    generator = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                    torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3, padding=1), torch.nn.Sigmoid())
    judge = critic(3, nf=8, n_blocks=1, input_shape=(3, 32, 32))
    gen_opt = torch.optim.Adam(generator.parameters(), 1e-3, betas=(0.0, 0.99))
    critic_opt = torch.optim.Adam(judge.parameters(), 5e-3, betas=(0.0, 0.99))
    spec = GanSpec(None, None, {}, "bce", switcher, 1.0, 50.0, 5.0, switch_eval=switch_eval)
    step = GanStep(generator, judge, critic_opt, spec, "fp32", torch.device("cpu"))
    events = []

    class Events(Callback):
        def after_loss(self, learn):
            events.append("after_loss")

        def after_step(self, learn):
            events.append("after_step")
    metrics = MetricsCB(Restore(), GanStep.PARTS)
    learn = Learner(generator, [], [], torch.nn.L1Loss(), gen_opt, [metrics, GanLogCB(step, metrics), Events()], step=step)
    learn.xb, learn.yb, learn.training, learn.iter = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32), True, 0
    learn.callback("before_train")
    return step, learn, events


def snapshot(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_idle_model_does_not_move_bitwise():
    """Critic steps leave every generator tensor (weights, BatchNorm statistics) as it was, and
    generator steps every critic tensor (spectral norm's vectors too); the active one moves."""
    from expt.gan import FixedSwitcher
    step, learn, events = toy_gan(FixedSwitcher(n_critic=1, n_generator=1))
    for turn in ("critic", "generator", "critic", "generator"):
        gen, crit = snapshot(step.generator), snapshot(step.critic)
        learn.one_batch()
        assert same(gen, snapshot(step.generator)) == (turn == "critic"), turn
        assert same(crit, snapshot(step.critic)) == (turn == "generator"), turn
    assert events == ["after_loss", "after_step"] * 4  # the learner's events, for every step of either model
    learn.callback("after_train")  # MetricsCB's means of the steps' loss parts; GanLogCB's checks
    metrics, gan_log = learn.callbacks[:2]
    learn.row = {}
    gan_log.after_epoch(learn)
    means = metrics.train_steps | learn.row
    assert means["train/generator_share"] == 0.5
    assert 0 <= means["train/critic_real_acc"] <= 1 and 0 <= means["train/critic_fake_acc"] <= 1
    assert means["train/critic_loss"] > 0 and means["train/adv_loss"] > 0
    learn.callback("before_train")
    assert step.counts == {"generator": 0, "critic": 0}  # the counts start again each epoch


def test_without_switch_eval_the_idle_generator_shows_batch_statistics_but_keeps_its_weights():
    """gan.switch_eval=false (fmnist_gan): in critic steps the generator stays in training mode, so
    the critic judges the images the generator is trained to make (batch statistics); its weights
    still do not move."""
    from expt.gan import FixedSwitcher
    step, learn, _ = toy_gan(FixedSwitcher(n_critic=1, n_generator=1), switch_eval=False)
    seen = []
    hook = step.generator[1].register_forward_hook(lambda m, i, o: seen.append(m.training))
    weights = {k: v.clone() for k, v in step.generator.named_parameters()}
    learn.one_batch()  # a critic step
    assert seen == [True]
    assert all(torch.equal(weights[k], v) for k, v in step.generator.named_parameters())
    assert all(p.grad is None for p in step.generator.parameters())  # frozen: no gradients either
    hook.remove()
    critic_weights = {k: v.clone() for k, v in step.critic.named_parameters()}
    learn.one_batch()  # a generator step: the idle critic stays in training mode too, and does not move
    assert step.critic.training and step.generator.training
    assert all(torch.equal(critic_weights[k], v) for k, v in step.critic.named_parameters())


def test_the_gan_step_follows_its_switcher_and_saves_its_turn():
    from expt.gan import AdaptiveSwitcher
    step, learn, events = toy_gan(AdaptiveSwitcher(critic_threshold=10.0))  # every critic loss is below it
    turns = []
    for _ in range(4):
        turns.append("g" if step.switcher.generator_turn else "c")
        learn.one_batch()
    assert "".join(turns) == "cgcg"
    state = step.state_dict()
    again, _, _ = toy_gan(AdaptiveSwitcher(critic_threshold=10.0))
    again.switcher.after_step(0.0)  # another turn, put back by load_state_dict
    again.load_state_dict(state)
    assert again.switcher.generator_turn == step.switcher.generator_turn
    assert same(snapshot(again.critic), snapshot(step.critic))
    assert again.critic_opt.state_dict()["state"].keys() == step.critic_opt.state_dict()["state"].keys()


def test_gan_losses():
    from expt.gan import adversarial_loss, critic_loss, says_real
    confident = torch.full((2, 4), 20.0)
    assert critic_loss(torch.zeros(2, 4), torch.zeros(2, 4), "bce").item() == pytest.approx(0.6931, abs=1e-4)
    assert critic_loss(confident, -confident, "bce").item() < 1e-6
    assert critic_loss(confident, -confident, "hinge").item() == 0
    assert adversarial_loss(confident, "bce").item() < 1e-6 and adversarial_loss(confident, "hinge").item() == -20
    assert says_real(torch.tensor([[3.0, -1.0], [-3.0, 1.0]]), "bce").tolist() == [True, False]


@pytest.fixture(scope="module")
def gan_parts(tmp_path_factory):
    """Generated pets, a 32 px generator (1 epoch) and a critic pretrained on its outputs (1 epoch)."""
    import os

    from conftest import in_process
    from test_restore import make_pets
    root = tmp_path_factory.mktemp("gan")
    env = {**os.environ, "EXPT_CACHE": str(root / "cache"), "EXPT_DATA": str(root / "none")}
    pets = make_pets(root / "pets")
    gen, crit = root / "gen", root / "critic"
    data = [f"data.root={pets}", "data.size=32", "data.workers=1", "device=cpu", "bs=4"]
    with pytest.MonkeyPatch.context() as mp:
        expt = in_process(mp, root)
        mp.setenv("EXPT_CACHE", env["EXPT_CACHE"])
        mp.setenv("EXPT_DATA", env["EXPT_DATA"])
        result = expt(["train", "experiment=pets_superres_cpu", *data, "epochs=1", f"hydra.run.dir={gen}"])
        assert result.returncode == 0, result.stderr
        result = expt(["train", "experiment=pets_critic", f"data.generator={gen / 'model.safetensors'}", "arch.nf=8",
                       "arch.n_blocks=1", "device=cpu", "bs=4", "epochs=1", f"hydra.run.dir={crit}"])
        assert result.returncode == 0, result.stderr
    gan = ["train", "experiment=pets_gan", *data, f"gan.generator={gen / 'model.safetensors'}",
           f"gan.critic={crit / 'model.safetensors'}"]
    return {"env": env, "gen": gen, "critic": crit, "pets": pets, "gan": gan}


def test_a_gan_run_trains_both_models_and_logs_them(tmp_path, gan_parts, expt_in, monkeypatch):
    import json

    import pandas as pd

    from safetensors.torch import load_file
    monkeypatch.setenv("EXPT_CACHE", gan_parts["env"]["EXPT_CACHE"])
    run = tmp_path / "gan"
    result = expt_in([*gan_parts["gan"], "gan.switcher=fixed", "epochs=2", f"hydra.run.dir={run}"])
    assert result.returncode == 0, result.stderr
    rows = pd.read_csv(run / "metrics.csv")
    assert rows["train/generator_share"].tolist() == [0.5, 0.5]  # fixed 1:1, 4 batches an epoch
    for column in ("train/critic_loss", "train/critic_real_acc", "train/critic_fake_acc", "train/adv_loss",
                   "train/loss", "val/psnr", "val/ssim"):
        assert rows[column].notna().all(), column
    assert (run / "samples.png").stat().st_size > 0
    # the generator started from gan.generator; model.safetensors holds the generator alone
    start = load_file(str(gan_parts["gen"] / "model.safetensors"))
    end = load_file(str(run / "model.safetensors"))
    assert start.keys() == end.keys() and any(not torch.equal(start[k], end[k]) for k in start)
    assert json.loads((run / "summary.json").read_text())["headline"] == "val/psnr"
    state = torch.load(run / "last.pt", weights_only=True)
    assert set(state["gan"]) == {"critic", "critic_opt", "switcher", "critic_scaler", "critic_arch"}
    assert state["gan"]["critic_arch"]["_target_"] == "expt.models.critic.critic"  # a resume needs no gan.critic file
    tta = expt_in(["tta", f"ckpt={run / 'model.safetensors'}", f"data.root={gan_parts['pets']}"])
    assert tta.returncode == 0, tta.stderr  # tta (and predict) use the generator alone
    sample = expt_in(["sample", f"ckpt={run / 'model.safetensors'}", "n=3", f"data.root={gan_parts['pets']}"])
    assert sample.returncode == 0, sample.stderr
    from PIL import Image
    with Image.open(run / "samples_n3_seed42.png") as im:  # 3 validation images: input | output | target
        assert im.size == (3 * 34 + 2, 3 * 34 + 2)


@pytest.mark.slow
def test_a_killed_gan_run_resumes_exactly(tmp_path, gan_parts, isolated_env, expt_in):
    import signal

    import pandas as pd

    from conftest import signal_after_first_epoch
    env = isolated_env | {"EXPT_CACHE": gan_parts["env"]["EXPT_CACHE"]}
    common = [*gan_parts["gan"], "epochs=4", "gan.critic_threshold=0.69"]  # the adaptive switcher, both turns
    cut = tmp_path / "cut"
    code, err = signal_after_first_epoch(common, cut, tmp_path, env, signal.SIGKILL)
    assert code == -signal.SIGKILL, err
    moved = {gan_parts[k]: gan_parts[k].with_name(gan_parts[k].name + "_moved") for k in ("gen", "critic")}
    for before, after in moved.items():  # the starting checkpoints moved away: last.pt has every weight
        before.rename(after)
    try:
        resumed = expt_in([*common, f"resume={cut}", f"hydra.run.dir={tmp_path / 'resumed'}"], EXPT_CACHE=env["EXPT_CACHE"])
    finally:
        for before, after in moved.items():
            after.rename(before)
    assert resumed.returncode == 0, resumed.stderr
    full = expt_in([*common, f"hydra.run.dir={tmp_path / 'full'}"], EXPT_CACHE=env["EXPT_CACHE"])
    assert full.returncode == 0, full.stderr
    a, b = (pd.read_csv(tmp_path / run / "metrics.csv") for run in ("full", "resumed"))
    assert list(b["epoch"]) == [1, 2, 3, 4]
    for column in ("val/loss", "train/critic_loss", "train/generator_share"):
        assert b[column].tolist() == pytest.approx(a[column].tolist(), rel=1e-5, nan_ok=True), column


def test_gan_refusals_are_one_line(tmp_path, gan_parts, expt_in, monkeypatch, fmnist_dir):
    from conftest import assert_one_line
    monkeypatch.setenv("EXPT_CACHE", gan_parts["env"]["EXPT_CACHE"])
    gan, crit = gan_parts["gan"], gan_parts["critic"] / "model.safetensors"
    cases = [
        ([*gan[:-2], f"gan.generator={crit}"], ["is a critic checkpoint, not a generator"]),
        ([*gan[:-1], f"gan.critic={gan_parts['gen'] / 'model.safetensors'}"], ["is a restore checkpoint, not a critic"]),
        ([*gan, "data.size=64"], ["gan.critic=", "judges images of [3, 32, 32]", "this run's are [3, 64, 64]"]),
        ([*gan, "gan.loss=hinge"], ["with gan.loss=hinge use gan.switcher=fixed"]),
        ([*gan, "gan.loss=wasserstein"], ["gan.loss='wasserstein' is not one of bce, hinge"]),
        ([*gan, "optimizer.lr=auto"], ["a GAN run needs optimizer.lr set"]),
        (["train", "gan=superres", f"data.root={fmnist_dir}", "debug=fast"], ["needs data whose targets are images"]),
    ]
    for i, (args, phrases) in enumerate(cases):
        assert_one_line(expt_in([*args, f"hydra.run.dir={tmp_path / str(i)}"]), 2, *phrases)


def test_frechet_distance_against_closed_forms_and_samples():
    from expt.fid import frechet_distance, gaussian_stats
    torch.manual_seed(0)
    d = 8
    mu1, mu2 = torch.randn(d, dtype=torch.float64), torch.randn(d, dtype=torch.float64)
    a, b = torch.rand(d, dtype=torch.float64) + 0.5, torch.rand(d, dtype=torch.float64) + 0.5
    # diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    exact = ((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(exact.item(), rel=1e-9)
    # from samples of those Gaussians: the estimate comes close to the exact value
    x = mu1 + a.sqrt() * torch.randn(200_000, d, dtype=torch.float64)
    y = mu2 + b.sqrt() * torch.randn(200_000, d, dtype=torch.float64)
    assert frechet_distance(*gaussian_stats(x), *gaussian_stats(y)) == pytest.approx(exact.item(), abs=0.02)
    assert abs(frechet_distance(*gaussian_stats(x), *gaussian_stats(x))) < 1e-8
    # full covariances against scipy's matrix square root, where scipy is installed
    linalg = pytest.importorskip("scipy.linalg")
    m1, m2 = torch.randn(d, d, dtype=torch.float64), torch.randn(d, d, dtype=torch.float64)
    c1, c2 = m1 @ m1.T + 0.1 * torch.eye(d), m2 @ m2.T + 0.1 * torch.eye(d)
    root = linalg.sqrtm((c1 @ c2).numpy()).real
    reference = ((mu1 - mu2) ** 2).sum().item() + (c1.trace() + c2.trace()).item() - 2 * float(root.trace())
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(reference, rel=1e-7)


def test_fid_features_are_a_classifiers_penultimate_layer():
    from expt.fid import Features
    from expt.models.resnet import resnet_k5
    torch.manual_seed(0)
    features = Features(resnet_k5(1, 10))
    assert features(torch.rand(3, 1, 28, 28)).shape == (3, 256)


def test_a_gan_from_noise_trains_scores_fid_and_samples(tmp_path, fmnist_dir, expt_in):
    import json

    import pandas as pd
    from PIL import Image

    from conftest import assert_one_line
    clf = tmp_path / "clf"
    assert expt_in(["train", "debug=fast", f"data.root={fmnist_dir}", f"hydra.run.dir={clf}"]).returncode == 0
    common = ["train", "experiment=fmnist_gan", f"data.root={fmnist_dir}", "device=cpu", "bs=64",
              "gan.critic_arch.nf=16", "arch.nf=16"]
    run = tmp_path / "gan"
    result = expt_in([*common, "epochs=2", f"gan.fid_features={clf / 'model.safetensors'}", f"hydra.run.dir={run}"])
    assert result.returncode == 0, result.stderr
    rows = pd.read_csv(run / "metrics.csv")
    assert rows["train/generator_share"].tolist() == [0.5, 0.5]
    assert rows["val/fid"].notna().all() and (rows["val/fid"] > 0).all()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["headline"] == "val/fid" and summary["higher_is_better"] is False
    assert summary["best/val/fid"] == rows["val/fid"].min()
    with Image.open(run / "samples.png") as im:
        assert im.size == (8 * 30 + 2, 8 * 30 + 2)  # 8x8 images of 28 px, 2 px apart
    sample = expt_in(["sample", f"ckpt={run / 'model.safetensors'}", "n=10", "seed=3"])
    assert sample.returncode == 0, sample.stderr
    with Image.open(run / "samples_n10_seed3.png") as im:
        assert im.size == (4 * 30 + 2, 3 * 30 + 2)  # 10 images in rows of 4
        first = im.tobytes()
    expt_in(["sample", f"ckpt={run / 'model.safetensors'}", "n=10", "seed=3"])
    with Image.open(run / "samples_n10_seed3.png") as im:
        assert im.tobytes() == first  # the same seed draws the same images
    # bad inputs, one line each
    cases = [
        ([*common, f"gan.fid_features={run / 'model.safetensors'}"], ["is a generate checkpoint, not a classifier"]),
        ([*common, "augment=crop_flip"], ["use augment=none"]),
        ([*common[:-1], "arch=resnet_k5"], ["needs a generator from noise: arch=dcgan"]),
        ([*common, "gan.pixel_weight=1"], ["set gan.pixel_weight=0"]),
        ([*common, "loss=l1"], ["use loss=none"]),
        (["sample", f"ckpt={clf / 'model.safetensors'}"], ["is a classify checkpoint; expt sample needs a generator's"]),
        (["tta", f"ckpt={run / 'model.safetensors'}"], ["is a generator from noise", "expt sample"]),
    ]
    for i, (args, phrases) in enumerate(cases):
        assert_one_line(expt_in([*args, f"hydra.run.dir={tmp_path / str(i)}"]), 2, *phrases)


def test_laplacian_variance_falls_with_blur_and_the_critic_can_drop_spectral_norm():
    from torchvision.transforms.functional import gaussian_blur

    from expt.metrics import laplacian_variance
    torch.manual_seed(0)
    sharp = torch.rand(2, 3, 32, 32)
    blurred = gaussian_blur(sharp, kernel_size=5, sigma=1.5)
    assert (laplacian_variance(blurred) < laplacian_variance(sharp) / 4).all()
    assert laplacian_variance(torch.full((1, 3, 16, 16), 0.5)).item() == 0
    plain = critic(3, nf=8, n_blocks=1, spectral=False, input_shape=(3, 32, 32))
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())
    assert plain(torch.rand(2, 3, 32, 32)).shape == (2, 25)


def test_a_gan_epoch_that_trains_only_the_critic_says_so_and_writes_json(tmp_path, gan_parts, expt_in, monkeypatch):
    monkeypatch.setenv("EXPT_CACHE", gan_parts["env"]["EXPT_CACHE"])
    run = tmp_path / "gan"
    result = expt_in([*gan_parts["gan"], "epochs=1", "gan.critic_threshold=0.0", f"hydra.run.dir={run}"])
    assert result.returncode == 0, result.stderr
    from conftest import strict_json
    summary = strict_json(run / "summary.json")
    assert summary["train/loss"] is None and summary["train/generator_share"] == 0.0
    assert "epoch 1 trained only the critic" in (run / "expt.log").read_text()
