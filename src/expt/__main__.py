"""`python -m expt`: the expt command (what torchrun runs: torchrun ... -m expt train ...)."""

from .cli import main

main()
