import pytest
import torch
import torch.nn.functional as F

from expt.augment import Flip, PadCrop, RandomCopy, RandomErase, compose, crop_flip
from expt.callbacks import AugmentCB
from test_learner import learner


def batch(n=64, c=1, h=12, w=12, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def gen(seed=1):
    return torch.Generator().manual_seed(seed)


def test_flip_is_an_exact_mirror_per_image():
    x = batch()
    assert torch.equal(Flip(p=1.0)(x), x.flip(3)) and torch.equal(Flip(p=0.0)(x), x)
    out = Flip(p=0.5, generator=gen())(x)
    flipped = torch.tensor([torch.equal(o, xi.flip(2)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert (flipped ^ kept).all() and 10 < flipped.sum() < 54  # each image decides for itself


def shifted(img, dy, dx, pad):
    """img moved by (dy, dx) with zeros coming in: a crop of the zero-padded image."""
    h, w = img.shape[-2:]
    return F.pad(img, (pad,) * 4)[..., pad + dy: pad + dy + h, pad + dx: pad + dx + w]


@pytest.mark.parametrize("pad", [1, 3])
def test_crop_keeps_shape_and_moves_content_by_at_most_pad(pad):
    x = batch(n=32, c=2)
    out = PadCrop(pad, generator=gen())(x)
    assert out.shape == x.shape
    shifts = []
    for o, xi in zip(out, x):
        match = [(dy, dx) for dy in range(-pad, pad + 1) for dx in range(-pad, pad + 1)
                 if torch.equal(o, shifted(xi, dy, dx, pad))]
        assert match, "every output is the input moved by at most pad pixels"
        shifts.append(match[0])
    assert len(set(shifts)) > 3  # offsets differ between images


def test_erase_keeps_range_and_roughly_the_statistics():
    x = batch(n=256, h=28, w=28)
    out = RandomErase(pct=0.2, max_num=4, generator=gen())(x)
    assert out.min() >= x.min() and out.max() <= x.max()
    assert out.mean() == pytest.approx(x.mean().item(), abs=0.02)
    assert out.std() == pytest.approx(x.std().item(), rel=0.1)
    changed = (out != x).flatten(1)
    frac = changed.float().mean(1)
    assert (frac > 0).all() and (frac <= 4 * 0.2 * 0.2 + 1e-6).all()  # 1..4 patches of at most 20%x20%
    assert len({tuple(c.nonzero().flatten().tolist()) for c in changed[:16]}) == 16  # patches differ per image


def test_copy_moves_only_pixels_of_the_same_image():
    x = batch(n=32, c=1, h=16, w=16)  # random floats: every value identifies its image
    out = RandomCopy(pct=0.25, max_num=3, generator=gen())(x)
    assert out.shape == x.shape
    for o, xi in zip(out, x):
        assert set(o.flatten().tolist()) <= set(xi.flatten().tolist())
    assert (out != x).flatten(1).any(1).float().mean() > 0.8


def test_compose_applies_in_order_and_crop_flip_is_a_shift_then_a_flip():
    assert compose([]) is None and compose([None]) is None

    class Add(torch.nn.Module):
        def forward(self, x):
            return x + 1

    class Double(torch.nn.Module):
        def forward(self, x):
            return x * 2
    x = batch()
    assert torch.equal(compose([Add(), None, Double()])(x), (x + 1) * 2)  # in order, None left out
    torch.manual_seed(0)
    out = crop_flip(pad=1, p_flip=0.5)(x)
    kinds = []
    for o, xi in zip(out, x):
        moves = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        plain = any(torch.equal(o, shifted(xi, dy, dx, 1)) for dy, dx in moves)
        flipped = any(torch.equal(o, shifted(xi, dy, dx, 1).flip(2)) for dy, dx in moves)
        assert plain or flipped, "every image is its input moved by at most 1 pixel, maybe mirrored"
        kinds.append(flipped and not plain)
    assert 10 < sum(kinds) < 54  # about half of them flipped


def test_augmentation_runs_only_on_training_batches():
    seen = []

    def record(xb):
        seen.append(len(xb))
        return xb
    learn = learner([AugmentCB(record)])
    learn.fit(2)
    assert len(seen) == 2 * len(learn.train_dl)  # never on the validation batches
