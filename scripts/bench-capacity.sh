#!/usr/bin/env bash
# How many QEMU targets a host holds: the same suite with --parallel 2, once with 2-vCPU guests
# (machines/qemux86-64.yaml as it is) and once with 1-vCPU guests, each run sampled by
# scripts/sample-qemu (cores, RSS and overlay per QEMU, host CPU busy), then the wall times
# side by side.
#   scripts/bench-capacity.sh [SUITE] [FILTER]
# SUITE defaults to suite/os (independent tests, so both targets get some; suite/engine is one
# chain, which one target runs alone). HARNESS=path uses that binary instead of the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
harness=${HARNESS:-target/release/harness}
[ -n "${HARNESS:-}" ] || cargo build --release --quiet
suite=${1:-suite/os}
filter=${2:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for cpus in 2 1; do
  sed -e "s/^name: .*/name: qemux86-64-${cpus}vcpu/" -e "s/^  cpus: .*/  cpus: $cpus/" \
    machines/qemux86-64.yaml >"$work/${cpus}vcpu.yaml"
  start=$(date +%s.%N)
  code=0
  scripts/sample-qemu --every 5 -- "$harness" run --machine "$work/${cpus}vcpu.yaml" \
    --parallel 2 --keep-going --out "$work/run-$cpus" ${filter:+--filter "$filter"} "$suite" \
    >"$work/log-$cpus" 2>&1 || code=$?
  end=$(date +%s.%N)
  echo "$cpus $(echo "$end - $start" | bc) $code" >>"$work/times"
  echo "== ${cpus}-vCPU guests, --parallel 2: exit $code"
  sed -n '/== sample-qemu/,$p' "$work/log-$cpus"
  python3 - "$work/run-$cpus/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print("tests:", ", ".join(f"{k} {v}" for k, v in s["counts"].items() if v))
PY
done

python3 - "$work/times" "$suite" "$(nproc)" <<'PY'
import sys
t = {l.split()[0]: (float(l.split()[1]), l.split()[2]) for l in open(sys.argv[1])}
two, one = t["2"][0], t["1"][0]
print(f"\n{sys.argv[2]} --parallel 2 on {sys.argv[3]} cores:")
print(f"  2-vCPU guests {two:7.1f} s (exit {t['2'][1]})")
print(f"  1-vCPU guests {one:7.1f} s (exit {t['1'][1]})   ratio 1-vCPU / 2-vCPU {one / two:.2f}")
PY
