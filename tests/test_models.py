import pytest
import torch
from torch import nn

from expt.models.layers import GeneralRelu, Normalize, ResBlock
from expt.models.resnet import cnn, resnet, resnet_k5


@pytest.mark.parametrize("builder", [cnn, resnet, resnet_k5])
@pytest.mark.parametrize("n_in", [1, 3])
def test_forward_backward(builder, n_in):
    torch.manual_seed(0)
    model = builder(n_in=n_in, n_out=7)
    x = torch.randn(8, n_in, 28, 28)
    out = model(x)
    assert out.shape == (8, 7) and torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_resnet_k5_shape():
    model = resnet_k5(n_in=1, n_out=10)
    first = model[0].convs[0][0]
    assert first.kernel_size == (5, 5) and first.out_channels == 16
    assert [m.convs[1][0].out_channels for m in model if isinstance(m, ResBlock)] == [16, 32, 64, 128, 256]
    assert isinstance(model[-1], nn.BatchNorm1d) and isinstance(model[-4], nn.AdaptiveAvgPool2d)
    assert resnet_k5(n_in=1, n_out=10)(torch.randn(2, 1, 64, 64)).shape == (2, 10)  # any input size


def test_the_lessons_cnn_is_its_stride_1_conv_four_stride_2_blocks_and_a_conv_to_the_classes():
    """arch=cnn (lesson 18's baseline): 8 -> 128 channels, the classes from a 1x1 grid at 28 px, so
    it takes 17 to 32 pixels a side; its last conv is normalised and has no activation."""
    from expt.builders import check_input_size
    from expt.errors import ConfigError
    model = cnn(n_in=1, n_out=10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32, 64, 128, 10]
    assert [c.stride for c in convs] == [(1, 1)] + [(2, 2)] * 5
    assert isinstance(model[-1], nn.Flatten) and not isinstance(model[-2][-1], GeneralRelu)
    assert model[:-1](torch.randn(2, 1, 28, 28)).shape == (2, 10, 1, 1)
    check_input_size(model, (1, 28, 28))
    with pytest.raises(ConfigError, match="17 to 32 pixels a side"):
        check_input_size(model, (1, 64, 64))


def test_resnet_reaches_a_1x1_grid_from_28px():
    body = resnet(n_in=1, n_out=10)[:-3]
    assert body(torch.randn(2, 1, 28, 28)).shape == (2, 256, 1, 1)


@pytest.mark.parametrize("builder", [resnet, resnet_k5])
def test_residual_branches_open_at_init_unless_asked(builder):
    """The course's init (every BN weight 1); zero_init_residual=True starts blocks as identity paths."""
    blocks = [m for m in builder(1, 10).modules() if isinstance(m, ResBlock)]
    assert all(torch.equal(b.convs[-1][1].weight, torch.ones_like(b.convs[-1][1].weight)) for b in blocks)
    assert all(isinstance(b.convs[-1][-1], nn.BatchNorm2d) for b in blocks)  # no activation before the sum
    zeroed = [m for m in builder(1, 10, zero_init_residual=True).modules() if isinstance(m, ResBlock)]
    assert all(torch.count_nonzero(b.convs[-1][1].weight) == 0 for b in zeroed)
    block = zeroed[1].eval()
    x = torch.randn(2, block.convs[0][0].in_channels, 8, 8)
    assert torch.allclose(block(x), block.act(block.idconv(block.pool(x))))  # the identity path alone


def test_identity_path_pools_and_projects_when_shape_changes():
    block = ResBlock(16, 32, stride=2)
    assert isinstance(block.pool, nn.AvgPool2d) and isinstance(block.idconv[0], nn.Conv2d)
    assert block(torch.randn(2, 16, 7, 7)).shape == (2, 32, 4, 4)  # ceil mode: 7 -> 4 on both paths
    same = ResBlock(16, 16)
    assert isinstance(same.pool, nn.Identity) and isinstance(same.idconv, nn.Identity)


def test_general_relu():
    act = GeneralRelu(leak=0.1, sub=0.4, maxv=1.0)
    x = torch.tensor([-2.0, 0.0, 1.0, 5.0])
    assert torch.allclose(act(x), torch.tensor([-0.6, -0.4, 0.6, 1.0]))


def test_normalize_per_channel_and_saved_in_state():
    norm = Normalize((0.5, 0.2), (0.25, 0.1))
    x = torch.ones(1, 2, 2, 2)
    assert torch.allclose(norm(x)[0, :, 0, 0], torch.tensor([2.0, 8.0]))
    assert set(norm.state_dict()) == {"mean", "std"}
