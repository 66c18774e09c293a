#!/usr/bin/env bash
# The farm's speed-up on one host: suite/os on one QEMU machine, twice in sequence, against
# --parallel 2 (the tests shared out over two machines) and --parallel 2 --each (both machines
# run the whole suite, i.e. the same work as twice in sequence). TCG is CPU-bound, so the
# best two machines can do on N cores is about min(2, N / (one machine's CPU use)).
#   scripts/bench-parallel.sh [SUITE]
# SUITE defaults to suite/os. HARNESS=path uses that binary instead of the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
harness=${HARNESS:-target/release/harness}
[ -n "${HARNESS:-}" ] || cargo build --release --quiet
suite=${1:-suite/os}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() { # NAME ARGS...: wall seconds of one harness run, which must pass
  local name=$1 start end
  shift
  start=$(date +%s.%N)
  if ! "$harness" run --machine qemux86-64 --keep-going --out "$work/$name" "$@" "$suite" \
      >"$work/$name.log" 2>&1; then
    echo "$name failed:" >&2
    tail -20 "$work/$name.log" >&2
    exit 1
  fi
  end=$(date +%s.%N)
  echo "$name $(echo "$end - $start" | bc)"
}

{
  run sequential-1
  run sequential-2
  run parallel-2
  run parallel-2-each --parallel 2 --each --keep
} | tee "$work/times"

python3 - "$work/times" "$suite" "$(nproc)" <<'PY'
import sys
t = dict((l.split()[0], float(l.split()[1])) for l in open(sys.argv[1]))
seq = t["sequential-1"] + t["sequential-2"]
print(f"\n{sys.argv[2]} on {sys.argv[3]} cores:")
print(f"  one machine                 {t['sequential-1']:7.1f} s, {t['sequential-2']:.1f} s")
print(f"  twice in sequence           {seq:7.1f} s")
print(f"  --parallel 2 --each         {t['parallel-2-each']:7.1f} s   speed-up x{seq / t['parallel-2-each']:.2f} over twice in sequence")
print(f"  --parallel 2 (shared out)   {t['parallel-2']:7.1f} s   speed-up x{t['sequential-1'] / t['parallel-2']:.2f} over one machine")
PY

# Disk: each machine writes into its own copy-on-write overlay over the one base image.
image=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run"]["image"])' \
  "$work/parallel-2-each/summary.json")
echo "  disk: base image $(du -k --apparent-size "$image" | cut -f1) KiB apparent," \
  "$(du -k "$image" | cut -f1) KiB allocated; overlays after the whole suite:"
find "$work/parallel-2-each" -name overlay.qcow2 -exec du -k {} + |
  sed "s|$work/||; s|^|    |; s|\t| KiB  |"
