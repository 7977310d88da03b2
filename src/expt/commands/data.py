"""`expt data fashion_mnist`: make sure a copy of the dataset exists where `expt train` looks."""

from ..data.fashion_mnist import fetch
from ..errors import ConfigError


def run(args: list[str]) -> None:
    if args != ["fashion_mnist"]:
        raise ConfigError("usage: expt data fashion_mnist   (Imagenette and Paddy: see the README's Data section)")
    fetch()
