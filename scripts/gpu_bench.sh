#!/usr/bin/env bash
# Every GPU measurement the issues ask for, for a lent GPU machine (see scripts/prepare_device.sh;
# carry .whl and .devdata). Stages run in the order given; each appends its log under $OUT.
#   bash scripts/gpu_bench.sh loop recipe5            # about a minute or two
#   bash scripts/gpu_bench.sh aug20 erase50 copy25    # the course table (issue 4)
#   bash scripts/gpu_bench.sh tune20                  # lr x loss sweep of the 20-epoch recipe (reruns resume)
#   bash scripts/gpu_bench.sh timm imagenette         # issues 5 and 6 (imagenette: prepare --imagenette)
#   bash scripts/gpu_bench.sh superres                # issue 15 on the pets sample (prepare --pets)
#   bash scripts/gpu_bench.sh superres gan            # issue 16: then a critic and the GAN stage at 256 px
#   BUDGET=520 bash scripts/gpu_bench.sh smoke recipe5 loop aug20 copy25   # one call, in priority order
#   bash scripts/gpu_bench.sh prog5 tricks20 tricks50 lb5   # issue 27: the lesson-18 table, each trick alone at 20 and
#                                                            # 50 epochs (reruns skip finished jobs), imagenette_5ep_lb
# smoke: one CUDA epoch of the default recipe, to see the GPU path work before the long stages.
# BUDGET (seconds, default 3000): every command gets only what is left of it (SIGTERM, which expt
# handles like Ctrl-C), so a device call ends with its logs in $OUT before the call's own limit.
# At the end, each run's summary.json and metrics.csv are copied under $OUT/runs.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import hydra" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD/src" EXPT_DATA=$PWD/.devdata PYTHONUNBUFFERED=1
OUT=${OUT:-outputs/gpu}
mkdir -p "$OUT"
nvidia-smi -L | tee -a "$OUT/device.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/device.txt"
END=$((SECONDS + ${BUDGET:-3000}))
PY=$(type -P python3)
python3() {  # every Python command runs within what is left of BUDGET
  local left=$((END - SECONDS))
  if [ "$left" -le 5 ]; then echo "BUDGET spent: skipped python3 $*" >&2; return 124; fi
  timeout --kill-after=10 "$left" "$PY" "$@"
}
collect() {
  for f in outputs/gpu/*/summary.json outputs/gpu/*/*/summary.json outputs/gpu/*/metrics.csv outputs/gpu/*/*/metrics.csv \
           outputs/gpu/*/*/tta_*.json outputs/gpu/*/sweep.csv outputs/gpu/*/*/sweep.csv; do
    [ -f "$f" ] && mkdir -p "$OUT/runs" && cp "$f" "$OUT/runs/$(echo "${f#outputs/gpu/}" | tr / _)"  # flat: the device tool drops deep folders
  done
}
trap collect EXIT
recipe() {  # name, then bench_recipe.py options and -- overrides
  local name=$1; shift
  python3 scripts/bench_recipe.py --seeds 1 2 3 --out "outputs/gpu/$name" "$@" 2>&1 | tee -a "$OUT/$name.txt"
}
for stage in "$@"; do
  echo "== $stage at ${SECONDS}s" | tee -a "$OUT/stages.txt"
  case $stage in
    smoke) python3 -m expt.cli train epochs=1 device=cuda hydra.run.dir=outputs/gpu/smoke 2>&1 | tail -15 | tee -a "$OUT/smoke.txt" ;;
    loop) python3 scripts/bench_loop.py 2>&1 | tee -a "$OUT/loop.txt"
          python3 scripts/bench_augment.py 2>&1 | tee -a "$OUT/loop.txt"
          python3 scripts/bench_checkpoint.py 2>&1 | tee -a "$OUT/loop.txt"
          python3 scripts/bench_layout.py --compile 2>&1 | tee -a "$OUT/loop.txt" ;;
    recipe5) recipe fmnist_5ep -- experiment=fmnist_5ep ;;
    aug20) recipe fmnist_20ep_aug --tta flip flip_shift flip_x_shift -- experiment=fmnist_20ep_aug
           python3 -m expt.cli tta tta=flip_x_shift hydra.run.dir=outputs/gpu/fmnist_20ep_aug/ensemble \
             "ckpt=[outputs/gpu/fmnist_20ep_aug/seed1/model.safetensors,outputs/gpu/fmnist_20ep_aug/seed2/model.safetensors,outputs/gpu/fmnist_20ep_aug/seed3/model.safetensors]" \
             2>&1 | tail -9 | tee -a "$OUT/fmnist_20ep_aug.txt" ;;
    erase50) recipe fmnist_50ep_erase --tta flip flip_shift flip_x_shift -- experiment=fmnist_50ep_erase ;;
    copy25) recipe fmnist_25ep_copy -- experiment=fmnist_25ep_copy
            python3 -m expt.cli tta "ckpt=[outputs/gpu/fmnist_25ep_copy/seed1/model.safetensors,outputs/gpu/fmnist_25ep_copy/seed2/model.safetensors]" \
              2>&1 | tail -6 | tee -a "$OUT/fmnist_25ep_copy.txt" ;;
    tune20) python3 -m expt.cli sweep experiment=fmnist_20ep_aug optimizer.lr=5e-3,1e-2,2e-2 \
              loss=cross_entropy,label_smoothing seed=1,2,3 hydra.sweep.dir=outputs/gpu/tune20 2>&1 \
              | tail -40 | tee -a "$OUT/tune20.txt" ;;
    timm) for m in resnet18d convnext_atto efficientnet_b0; do
            recipe "timm_$m" -- arch=timm "arch.name=$m"
            python3 -m expt.cli summary arch=timm "arch.name=$m" 2>&1 | tail -2 | tee -a "$OUT/timm_$m.txt"
          done ;;
    imagenette) python3 scripts/bench_cache.py --root .devdata/imagenette 2>&1 | tee -a "$OUT/imagenette.txt"
                recipe imagenette_5ep -- experiment=imagenette_5ep ;;
    superres) # the lesson-scale recipe, offline (Lite0 encoder and features), on the 370-image sample at 256 px
              python3 -m expt.cli train experiment=pets_superres arch.encoder=tf_efficientnet_lite0 \
                arch.pretrained=false arch.weights=efficientnet-lite0 loss=feature_lite0 \
                hydra.run.dir=outputs/gpu/pets_superres 2>&1 | tail -25 | tee -a "$OUT/superres.txt" ;;
    gan) # issue 16 at the lesson's scale, on the pets sample: a critic against the superres stage's generator, then the
         # GAN stage at 256 px with the generator's arch; time per epoch and the pictures
         G=outputs/gpu/pets_superres/model.safetensors
         python3 -m expt.cli train experiment=pets_critic data.generator=$G hydra.run.dir=outputs/gpu/pets_critic \
           2>&1 | tail -25 | tee -a "$OUT/gan.txt"
         python3 -m expt.cli train experiment=pets_gan gan.generator=$G gan.critic=outputs/gpu/pets_critic/model.safetensors \
           data.size=256 bs=32 arch.encoder=tf_efficientnet_lite0 arch.pretrained=false arch.blur=true \
           arch.self_attention=true arch.residual=false hydra.run.dir=outputs/gpu/pets_gan 2>&1 | tail -15 | tee -a "$OUT/gan.txt"
         python3 -m expt.cli sample ckpt=$G n=6 2>&1 | tail -1 | tee -a "$OUT/gan.txt"
         python3 -m expt.cli sample ckpt=outputs/gpu/pets_gan/model.safetensors n=6 2>&1 | tail -1 | tee -a "$OUT/gan.txt"
         cp outputs/gpu/pets_superres/samples_n6_seed42.png "$OUT/pets_superres_samples.png"
         cp outputs/gpu/pets_gan/samples_n6_seed42.png "$OUT/pets_gan_samples.png" ;;
    prog5) for a in "arch=cnn" "arch=resnet" "arch=timm arch.name=resnet18d" "arch=resnet_k5"; do  # lesson 18's table
             python3 -m expt.cli sweep experiment=fmnist_5ep $a seed=1,2,3 \
               "hydra.sweep.dir=outputs/gpu/prog5/$(echo "$a" | tr ' =' '__')" 2>&1 | tail -8 | tee -a "$OUT/prog5.txt"
           done
           python3 scripts/bench_mixup.py --device cuda 2>&1 | tee -a "$OUT/prog5.txt" ;;
    tricks20) python3 scripts/bench_tricks.py --out outputs/gpu/tricks20 -- experiment=fmnist_20ep_aug 2>&1 \
                | tail -16 | tee -a "$OUT/tricks20.txt" ;;
    tricks50) python3 scripts/bench_tricks.py --out outputs/gpu/tricks50 -- experiment=fmnist_50ep_erase 2>&1 \
                | tail -16 | tee -a "$OUT/tricks50.txt" ;;
    lb5) recipe imagenette_5ep_lb -- experiment=imagenette_5ep_lb ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
