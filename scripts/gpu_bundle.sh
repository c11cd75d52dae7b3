#!/usr/bin/env bash
# Pack what a bare, offline GPU machine lacks for scripts/gpu_train.sh into two folders for the
# device tool's `carry` (each call carries at most 64 MiB, the working tree included, and the
# 98 MB SmolLM2 GGUF does not compress):
#   .gpu1/  the GGUF's first 56 MiB
#   .gpu2/  the rest of it and its sha256; wheels: transformers (the image's is older than the
#           `cache=` forwards need), peft, gguf, rank-bm25, regex; the data (bAbI, books) as data.tgz
# Both folders are ignored through .git/info/exclude. Run here, where pip can reach PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
DATA="${DATA:-../shared/data}"
gguf="$("$PYTHON" -c 'from model.backbones import smollm2_gguf_path; print(smollm2_gguf_path())')"
rm -rf .gpu1 .gpu2
mkdir -p .gpu1 .gpu2/wheels
for folder in .gpu1 .gpu2; do
    grep -qx "/$folder/" .git/info/exclude 2>/dev/null || echo "/$folder/" >>.git/info/exclude
done
first=$(( 56 * 1024 * 1024 ))  # .gpu2 holds the rest beside ~18 MB of wheels and data
head -c "$first" "$gguf" >.gpu1/gguf.part0
tail -c +"$(( first + 1 ))" "$gguf" >.gpu2/gguf.part1
sha256sum "$gguf" | cut -d' ' -f1 >.gpu2/gguf.sha256
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu2/wheels transformers==5.24.0 peft==0.21.2 gguf==0.19.0 rank-bm25==0.2.2 regex==2026.11.19
tar -C "$DATA" -czf .gpu2/data.tgz babi $(cd "$DATA" && ls books/*.txt)
du -sh .gpu1 .gpu2
