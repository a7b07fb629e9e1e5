#!/usr/bin/env bash
# Execute notebooks 01..04 headless with papermill, in order, into runs/<timestamp>/.
#
#   scripts/run_pipeline.sh quick [outdir]   CPU, minutes: the notebooks' default parameters
#   scripts/run_pipeline.sh full  [outdir]   GPU: the full configs (DIV2K, full-size models)
#
# Everything a pipeline makes stays in its output folder, so no run replaces another: the
# executed notebooks, the training runs (outdir/msrresnet, ...) and the figures and tables
# (outdir/results). Run it again with the same outdir after a crash or a kill and it continues:
# finished notebooks are skipped and an interrupted training resumes from its last.pt.
# When a pipeline into a folder of runs/ finishes, runs/latest points at that folder (so
# `srlib eval --checkpoint runs/latest/msrresnet/best.pt --data data/Set5` works after
# `make demo`). It is set when the pipeline has finished, not when it starts, so that it
# only ever names a finished run: a pipeline still running, or one that failed, is in the
# folder it printed at its start.
# With outdir "notebooks" (make notebooks) it re-executes the committed notebooks in place,
# training afresh into a new folder runs/notebooks-<timestamp>/ (so no earlier run is
# replaced), and removes papermill's traces from them (scripts/strip_papermill.py: the
# injected-parameters cell, which carries the run_dir given here, and papermill's metadata),
# so that they hold outputs, not the pipeline's parameters or timestamps. Each notebook runs with notebooks/ as its
# working directory, so the relative paths in its parameters work. The first failing notebook
# stops the pipeline and is named. Papermill comes from .venv when there is one, else from the
# active Python environment.
set -euo pipefail

usage() {
    echo "usage: $0 quick|full [outdir]" >&2
    exit 2
}

[[ $# -ge 1 && $# -le 2 ]] || usage
mode=$1
[[ $mode == quick || $mode == full ]] || usage

# Physical paths (pwd -P): outdir may be given as runs/latest, the link to a run's folder.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
outdir=${2:-$root/runs/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd -P)
if [[ $outdir == "$root/notebooks" ]]; then  # in place: a new run folder, trained afresh
    fresh=$root/runs/notebooks-$(date +%Y%m%d-%H%M%S)
    mkdir -p "$fresh"
    train_params=(-p run_dir "$fresh")
    where=(-p run_dir "$fresh")
    results=$root/results
else
    train_params=(-p run_dir "$outdir")
    where=(-p run_dir "$outdir" -p results_dir "$outdir/results")
    results=$outdir/results
fi

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

# runs/latest -> <outdir's name>, relative (it survives a moved checkout), replaced atomically:
# a new link under a temporary name, renamed over the old one (mv -T with GNU coreutils, mv -h
# on macOS/BSD). Only for a folder directly in runs/; anything else keeps runs/latest as it is.
link_latest() {
    local runs=$root/runs name tmp
    name=$(basename "$outdir")
    [[ $(dirname "$outdir") == "$runs" && $name != latest ]] || return 1
    tmp=$runs/.latest.$$
    rm -f "$tmp"
    ln -s "$name" "$tmp"
    if ! mv -T "$tmp" "$runs/latest" 2>/dev/null && ! mv -h "$tmp" "$runs/latest" 2>/dev/null
    then
        rm -f "$tmp"
        echo "warning: could not point runs/latest at $name (is runs/latest a folder?)" >&2
        return 1
    fi
}

echo "srlib pipeline ($mode): executed notebooks go to $outdir"
total_start=$SECONDS
for nb in "${notebooks[@]}"; do
    params=()  # quick: none, the notebooks' defaults are the quick path
    if [[ $mode == full ]]; then
        case $nb in
            01_data_preparation)
                params=(-p config ../configs/msrresnet_x4.json -p prepare_full True) ;;
            02_train_msrresnet)
                params=(-p config ../configs/msrresnet_x4.json
                        -p srresnet_config ../configs/srresnet_x4.json) ;;
            03_train_srgan)  # its assertions on the quick run's numbers do not apply
                params=(-p config ../configs/srgan_x4.json -p check_claims False) ;;
            04_compare_results)
                params=(-p msrresnet_config ../configs/msrresnet_x4.json
                        -p srgan_config ../configs/srgan_x4.json -p check_claims False
                        -p run_label "this repo: full-size model") ;;
        esac
    fi
    case $nb in
        02_train_msrresnet|03_train_srgan) params+=("${train_params[@]}") ;;
        04_compare_results) params+=(${where[@]+"${where[@]}"}) ;;
    esac
    done_mark=$outdir/.$nb.done
    if [[ -e $done_mark ]]; then
        echo "=== $nb: finished in an earlier run of this pipeline, skipped"
        continue
    fi
    echo "=== $nb ${params[*]:-}"
    start=$SECONDS
    if ! "$python" -m papermill "$root/notebooks/$nb.ipynb" "$outdir/$nb.ipynb" \
            --cwd "$root/notebooks" --kernel python3 --log-output --no-progress-bar \
            ${params[@]+"${params[@]}"}; then
        echo "pipeline stopped: notebook $nb failed after $((SECONDS - start)) s;" \
             "see the failing cell in $outdir/$nb.ipynb; to continue: $0 $mode $outdir" >&2
        exit 1
    fi
    if [[ $outdir == "$root/notebooks" ]]; then  # committed copies: no papermill traces
        "$python" "$root/scripts/strip_papermill.py" "$outdir/$nb.ipynb"
    else
        touch "$done_mark"
    fi
    echo "=== $nb done in $((SECONDS - start)) s"
done

echo
echo "pipeline ($mode) finished in $((SECONDS - total_start)) s"
echo "executed notebooks: $outdir/"
echo "results figure:     $results/results_grid.png"
echo "tables and figures: $results/"
if link_latest; then
    echo "latest run:         $root/runs/latest -> $(basename "$outdir")"
    for best in "$outdir"/msrresnet*/best.pt; do  # msrresnet (quick), msrresnet_x4 (full)
        [[ -e $best ]] && echo "  e.g. srlib eval --checkpoint runs/latest/${best#"$outdir"/}" \
                               "--data data/Set5"
        break
    done
fi
