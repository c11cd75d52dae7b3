#!/usr/bin/env bash
# The reader's ladder, every rung with the same `rmtqa eval` the model card quotes:
#   R0 direct (facts and question in one segment, no memory), R1 facts only through memory,
#   R2 qa1 through the held-out book's text at 1k/4k/32k (+ 128k and 1M with fewer samples),
#   document facts (needles): direct, facts only, and at 4k/32k; the other bAbI tasks (qa2-qa5)
#   at 4k/32k, trained on or not (the issue's R3 asks for every task at both lengths).
# Questions from the held-out 5% of the bAbI qa1 stories (the trainer's split), noise from
# Frankenstein, which training never read. One JSON report per rung in OUT.
#
#   scripts/evaluate_reader.sh MODEL_DIR OUT_DIR [SAMPLES] [LONG_SAMPLES] [RUNGS]
#   RUNGS: any of r0 r1 r2 long million n0 n1 needle qa2 qa3 qa4 qa5 (default: all); 1M reads LONG_SAMPLES / 4 samples
#   (at least 2): each is a million tokens.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?model directory}
out=${2:?output directory}
samples=${3:-200}
long_samples=${4:-20}
rungs=${5:-r0 r1 r2 long million n0 n1 needle qa2 qa3 qa4 qa5}
rmtqa=${RMTQA:-.venv/bin/rmtqa}
babi_dir=${BABI_DIR:-../shared/data/babi}
books=${BOOKS:-../shared/data/books}
mkdir -p "$out/ladder"
common=(--model "$model" --noise "$books" --noise-include frankenstein --threads "${THREADS:-1}" --json)
qa1=(--babi "$(echo "$babi_dir"/qa1_*train.txt)" --split val)

# R0 and R1 go one folder down: the web UI's model summary quotes the reports in OUT, by length, and
# these two have no length (the facts alone).
declare -A file=([r0]=ladder/qa1_direct [r1]=ladder/qa1_facts [r2]=qa1 [long]=qa1_128k [million]=qa1_1M
                 [n0]=ladder/needle_direct [n1]=ladder/needle_facts [needle]=needle
                 [qa2]=qa2 [qa3]=qa3 [qa4]=qa4 [qa5]=qa5)
for rung in $rungs; do
    report="$out/${file[$rung]:?unknown rung $rung (expected r0 r1 r2 long million n0 n1 needle qa2 qa3 qa4 qa5)}.json"
    case $rung in
        r0) "$rmtqa" eval "${common[@]}" "${qa1[@]}" --direct --samples "$samples" > "$report" ;;
        r1) "$rmtqa" eval "${common[@]}" "${qa1[@]}" --lengths 0 --samples "$samples" --depth-buckets 1 > "$report" ;;
        r2) "$rmtqa" eval "${common[@]}" "${qa1[@]}" --lengths 1k,4k,32k --samples "$(( samples / 2 ))" --batch-size 25 \
                --heatmap "$out/qa1_heatmap.png" > "$report" ;;
        long) "$rmtqa" eval "${common[@]}" "${qa1[@]}" --lengths 128k --samples "$long_samples" --depth-buckets 1 \
                --batch-size "$long_samples" > "$report" ;;
        million) million=$(( long_samples / 4 > 2 ? long_samples / 4 : 2 ))
                "$rmtqa" eval "${common[@]}" "${qa1[@]}" --lengths 1M --samples "$million" --depth-buckets 1 --batch-size "$million" > "$report" ;;
        n0) "$rmtqa" eval "${common[@]}" --task needle --direct --samples "$samples" > "$report" ;;
        n1) "$rmtqa" eval "${common[@]}" --task needle --lengths 0 --samples "$samples" --depth-buckets 1 > "$report" ;;
        needle) "$rmtqa" eval "${common[@]}" --task needle --lengths 4k,32k --samples "$(( samples / 2 ))" --batch-size 25 > "$report" ;;
        qa[2-5]) "$rmtqa" eval "${common[@]}" --babi "$(echo "$babi_dir/${rung}"_*train.txt)" --split val --lengths 4k,32k \
                --samples "$(( samples / 2 ))" --batch-size 25 > "$report" ;;
    esac
    python3 - "$rung" "$report" <<'PY'
import json, sys
results = json.load(open(sys.argv[2]))["results"]
print(sys.argv[1] + ": " + ", ".join(f"{r['length']}: {r['accuracy']:.3f} (n={r['n']})" for r in results))
PY
done
