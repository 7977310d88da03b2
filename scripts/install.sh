#!/usr/bin/env bash
# Create .venv (if missing) and install expt with its test tools into it.
#   scripts/install.sh       a regular install (what CI tests: conf/ must ship inside the package)
#   scripts/install.sh -e    an editable install, for working on expt itself
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
# Some machines' pip config (find-links) offers a local CPU-only torch wheel that no torchvision
# release accepts; install from the package index alone, ignoring pip's config files.
unset PIP_FIND_LINKS
export PIP_CONFIG_FILE=/dev/null
if [ "${1:-}" = "-e" ]; then
  .venv/bin/python -m pip install -q -e ".[test]"
else
  .venv/bin/python -m pip install -q ".[test]"
fi
# The default recipe's data: a copy where expt looks, else Debian's dataset-fashion-mnist (apt, as
# root or through sudo), else the official files with checksums. Without any, `expt train` says how.
.venv/bin/expt data fashion_mnist || echo "install.sh: no Fashion-MNIST yet (see above); expt train will say how to get it" >&2
