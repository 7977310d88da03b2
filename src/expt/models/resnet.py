"""Lesson 18 of the fast.ai 2022 course (notebooks 13_resnet and 14_augment): its baseline CNN and
its ResNets."""

from collections.abc import Sequence

from torch import nn

from .layers import ResBlock, conv, init_weights


def head(nf: int, n_out: int) -> list[nn.Module]:
    return [nn.Flatten(), nn.Linear(nf, n_out, bias=False), nn.BatchNorm1d(n_out)]


def cnn(n_in: int, n_out: int, nfs: Sequence[int] = (8, 16, 32, 64, 128)) -> nn.Sequential:
    """The lesson's baseline before ResNets: a stride-1 conv, stride-2 conv / BatchNorm /
    GeneralRelu blocks, a last stride-2 conv to the classes (BatchNorm, no activation), flatten
    (28 px in: 28 -> 28 -> 14 -> 7 -> 4 -> 2 -> 1)."""
    layers = [conv(n_in, nfs[0], stride=1)]
    layers += [conv(a, b) for a, b in zip(nfs[:-1], nfs[1:])]
    model = init_weights(nn.Sequential(*layers, conv(nfs[-1], n_out, act=False), nn.Flatten()))
    model.input_sizes = input_sizes(len(nfs), reach_1x1=True)
    return model


def resnet(n_in: int, n_out: int, nfs: Sequence[int] = (8, 16, 32, 64, 128, 256),
           zero_init_residual: bool = False) -> nn.Sequential:
    """The first ResNet: a stride-1 block, then stride-2 blocks down to a 1x1 grid (28 px in:
    28 -> 14 -> 7 -> 4 -> 2 -> 1), flatten, linear, BatchNorm1d."""
    layers = [ResBlock(n_in, nfs[0], stride=1)]
    layers += [ResBlock(a, b, stride=2) for a, b in zip(nfs[:-1], nfs[1:])]
    model = init_weights(nn.Sequential(*layers, *head(nfs[-1], n_out)), zero_init_residual=zero_init_residual)
    model.input_sizes = input_sizes(len(nfs) - 1, reach_1x1=True)
    return model


def input_sizes(n_halvings: int, reach_1x1: bool) -> tuple[int, int | None]:
    """The image sizes (pixels a side) a stack of stride-2 stages takes: each stage must get at
    least 2 pixels to halve; a head that flattens needs the last one to come out at 1x1."""
    return 2 ** (n_halvings - 1) + 1, 2 ** n_halvings if reach_1x1 else None


def resnet_k5(n_in: int, n_out: int, nfs: Sequence[int] = (16, 32, 64, 128, 256),
              zero_init_residual: bool = False) -> nn.Sequential:
    """The lesson's best Fashion-MNIST model: a 5x5 first block, stride-2 stages, then global
    average pooling, linear, BatchNorm1d (works at any input size)."""
    layers = [ResBlock(n_in, nfs[0], stride=1, ks=5)]
    layers += [ResBlock(a, b, stride=2) for a, b in zip(nfs[:-1], nfs[1:])]
    model = init_weights(nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), *head(nfs[-1], n_out)),
                         zero_init_residual=zero_init_residual)
    model.input_sizes = input_sizes(len(nfs) - 1, reach_1x1=False)
    return model
