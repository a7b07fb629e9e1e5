#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one run: the GPU tests, the CUDA benchmark section, and
# a short real training of the full MSRResNet on the shipped T91 (on-device data, bf16).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]      (default results/gpu_check)
#
# Uses whatever python3 holds a CUDA build of torch; srlib runs from this checkout.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${1:-results/gpu_check}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status=0
step() { echo; echo "=== $1 ($(date +%T))"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || status=1
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'gpu', torch.cuda.get_device_name(0))" || exit 1

step "GPU tests"
"$py" -m pytest -q -p no:cacheprovider tests/test_cuda_training.py tests/test_device_batches.py \
  tests/test_inference.py -k "cuda or option or gan_step" 2>&1 | tee "$out/pytest.log" || status=1

step "benchmark, CUDA section"
"$py" benchmarks/bench.py --section cuda --json "$out/bench_cuda.json" 2>&1 \
  | tee "$out/bench_cuda.log" || status=1

iters=${GPU_CHECK_ITERS:-6000}
step "full MSRResNet on T91, on-device data, bf16 + channels_last + CUDA graphs, $iters iterations"
"$py" -m srlib train --config configs/msrresnet_x4.json --no-progress \
  --set logdir="$out/msrresnet_t91" --set dataset.name=t91 --set dataset.root=data/T91 \
  --set dataset.on_device=true --set compile=reduce-overhead --set iterations="$iters" \
  --set validation.every=2000 --set save_every=2000 --set log_every=500 \
  --set scheduler.params.T_0="$iters" 2>&1 | tee "$out/train.log" || status=1

# Every other full config, briefly: 300 iterations each on T91, SRGANs from the SRResNet
# just trained (random VGG weights: nothing can be downloaded on a closed machine).
for name in srresnet_x4 srgan_paper_x4 srgan_x4; do
  step "full config $name, 300 iterations on T91"
  extra=()
  case $name in  # each SRGAN starts from the generator it names: SRResNet or MSRResNet
    srgan_paper_x4) extra=(--set generator_path="$out/srresnet_x4/last.pt") ;;
    srgan_x4) extra=(--set generator_path="$out/msrresnet_t91/last.pt") ;;
  esac
  [[ $name == srgan* ]] && extra+=(--set allow_random_vgg=true)
  "$py" -m srlib train --config "configs/$name.json" --no-progress \
    --set logdir="$out/$name" --set dataset.name=t91 --set dataset.root=data/T91 \
    --set iterations=300 --set validation.every=300 --set save_every=300 \
    --set log_every=100 "${extra[@]}" 2>&1 | tail -4 | tee "$out/$name.log" || status=1
done

step "where the host time goes (cProfile, CUDA graphs)"
"$py" benchmarks/profile_step.py --iterations 1000 --top 25 --set compile=reduce-overhead \
  2>&1 | tee "$out/profile.txt" || status=1

step "done (status $status)"
exit $status
