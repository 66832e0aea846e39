#!/usr/bin/env bash
# Runs the three benchmarks in turn (about 15-20 minutes on a 2-core
# machine) and keeps their output in bench/results/<UTC date-time>/ (not
# committed). Knobs are passed through the environment to each benchmark;
# see bench/README.md. Run from anywhere inside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results/$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$out"
for b in ${BENCHES:-trigger apply latency}; do
  echo "== go run ./bench/$b  (progress in $out/$b.log)" >&2
  go run "./bench/$b" > "$out/$b.txt" 2> "$out/$b.log"
  cat "$out/$b.txt"
done
echo "results: $out" >&2
