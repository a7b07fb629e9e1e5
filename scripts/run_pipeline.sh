#!/usr/bin/env bash
# Execute notebooks 01..04 headless with papermill, in order, into runs/<timestamp>/.
#
#   scripts/run_pipeline.sh quick [outdir]   CPU, minutes: the notebooks' default parameters
#   scripts/run_pipeline.sh full  [outdir]   GPU: the full configs (DIV2K, full-size models)
#
# Each notebook runs with notebooks/ as its working directory, so the relative paths in its
# parameters work. The executed copies (with outputs and the cell log) land in the output
# folder; figures and tables in results/. The first failing notebook stops the pipeline and is
# named; its executed copy shows the cell that failed. Papermill comes from .venv when there is
# one, else from the active Python environment.
set -euo pipefail

usage() {
    echo "usage: $0 quick|full [outdir]" >&2
    exit 2
}

[[ $# -ge 1 && $# -le 2 ]] || usage
mode=$1
[[ $mode == quick || $mode == full ]] || usage

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
outdir=${2:-$root/runs/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

if [[ -x $root/.venv/bin/python ]]; then
    python=$root/.venv/bin/python
else
    python=$(command -v python3 || command -v python) || {
        echo "no python found: run 'make setup' or activate an environment with papermill" >&2
        exit 1
    }
fi
if ! "$python" -c "import papermill" 2>/dev/null; then
    echo "papermill is not installed for $python: pip install -e '.[notebooks]'" >&2
    exit 1
fi

notebooks=(01_data_preparation 02_train_msrresnet 03_train_srgan 04_compare_results)

echo "srlib pipeline ($mode): executed notebooks go to $outdir"
total_start=$SECONDS
for nb in "${notebooks[@]}"; do
    params=()  # quick: none, the notebooks' defaults are the quick path
    if [[ $mode == full ]]; then
        case $nb in
            01_data_preparation)
                params=(-p config ../configs/msrresnet_x4.json -p prepare_full True) ;;
            02_train_msrresnet)
                params=(-p config ../configs/msrresnet_x4.json) ;;
            03_train_srgan)
                params=(-p config ../configs/srgan_x4.json) ;;
            04_compare_results)
                params=(-p msrresnet_config ../configs/msrresnet_x4.json
                        -p srresnet_config ../configs/srresnet_x4.json
                        -p srgan_config ../configs/srgan_x4.json
                        -p run_label "this repo: full-size model") ;;
        esac
    fi
    echo "=== $nb ${params[*]:-}"
    start=$SECONDS
    if ! "$python" -m papermill "$root/notebooks/$nb.ipynb" "$outdir/$nb.ipynb" \
            --cwd "$root/notebooks" --kernel python3 --log-output --no-progress-bar \
            ${params[@]+"${params[@]}"}; then
        echo "pipeline stopped: notebook $nb failed after $((SECONDS - start)) s;" \
             "see the failing cell in $outdir/$nb.ipynb" >&2
        exit 1
    fi
    echo "=== $nb done in $((SECONDS - start)) s"
done

echo
echo "pipeline ($mode) finished in $((SECONDS - total_start)) s"
echo "executed notebooks: $outdir/"
echo "results figure:     $root/results/results_grid.png"
echo "tables and figures: $root/results/"
