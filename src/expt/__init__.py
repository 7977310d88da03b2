"""expt: config-driven experiments for image deep learning."""

__version__ = "0.1.0"
