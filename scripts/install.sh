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
