#!/usr/bin/env bash
# Flashing benchmark: `harness flash` against `dd bs=4M conv=fsync` and `bmaptool copy`,
# side by side in one run (hyperfine times each; plain `date` without it), each writing a
# fresh file on the same disk.
#
# The image: 2 GiB, sparse, with ~25% data (random, so nothing compresses) spread in
# 128 chunks of 1-7 MiB; `bmaptool create` writes its bmap. Verification is included for
# harness (read-back) and bmaptool (checksums while copying); dd does none.
#
# usage: scripts/bench-flash.sh [WORKDIR]   (default: target/bench-flash; needs ~5 GiB)
# env:   RUNS rounds (default 7), DROP_CACHES=1 to drop the page cache before every run (root)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$root/target/bench-flash}
runs=${RUNS:-7}
mkdir -p "$work"
img=$work/bench.img

for tool in bmaptool dd; do
  command -v "$tool" >/dev/null || { echo "bench-flash: $tool is not installed" >&2; exit 2; }
done

if [[ -x $root/target/release/harness ]] && "$root/target/release/harness" flash --help >/dev/null 2>&1; then
  flash="$root/target/release/harness flash"
  ours() { echo "$flash $img --to $1"; }
else
  (cd "$root" && cargo build --release --quiet --example flash)
  flash="$root/target/release/examples/flash"
  ours() { echo "$flash $img $1"; }
fi

if [[ ! -f $img || ! -f $img.bmap ]]; then
  echo "bench-flash: building a 2 GiB image with 512 MiB of random data in $img" >&2
  rm -f "$img" "$img.bmap"
  truncate -s 2G "$img"
  # 128 chunks, one per 16 MiB slot, sizes 1..7 MiB averaging 4 MiB: 512 MiB in all.
  for i in $(seq 0 127); do
    size=$(( (i * 5) % 7 + 1 ))
    [[ $((i % 2)) -eq 1 ]] && size=$(( 8 - size ))
    dd if=/dev/urandom of="$img" bs=1M count="$size" seek=$(( i * 16 + (i % 5) )) \
      conv=notrunc status=none
  done
  bmaptool -q create -o "$img.bmap" "$img"
fi
echo "bench-flash: image $(du -h --apparent-size "$img" | cut -f1) apparent, $(du -h "$img" | cut -f1) data" >&2

prepare="rm -f $work/out.*; sync; sleep 1"
if [[ ${DROP_CACHES:-0} == 1 ]]; then
  prepare="$prepare; echo 3 > /proc/sys/vm/drop_caches"
fi

declare -A cmd=(
  [dd]="dd if=$img of=$work/out.dd bs=4M conv=fsync status=none"
  [bmaptool]="bmaptool -q copy $img $work/out.bmaptool"
  [harness]="$(ours "$work/out.harness")"
)
names=(dd bmaptool harness)

# Rounds interleave the three tools (rotating who goes first), so that the disk's drift over
# time hits all three alike; the ratios are of the medians.
: > "$work/times.txt"
for round in $(seq 1 "$runs"); do
  order=("${names[@]:round%3}" "${names[@]:0:round%3}")
  for name in "${order[@]}"; do
    if command -v hyperfine >/dev/null; then
      hyperfine -N --runs 1 --prepare "bash -c '$prepare'" --export-json "$work/round.json" \
        --style none -n "$name" "${cmd[$name]}" >/dev/null
      t=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['results'][0]['mean'])" "$work/round.json")
    else
      bash -c "$prepare"
      s=$(date +%s.%N); ${cmd[$name]} 2>/dev/null; e=$(date +%s.%N)
      t=$(echo "$e - $s" | bc)
    fi
    echo "$name $t" >> "$work/times.txt"
    printf 'round %d  %-8s %6.2f s\n' "$round" "$name" "$t" >&2
  done
done

python3 - "$work/times.txt" <<'PY'
import statistics, sys
t = {}
for line in open(sys.argv[1]):
    name, secs = line.split()
    t.setdefault(name, []).append(float(secs))
med = {k: statistics.median(v) for k, v in t.items()}
for k in ("dd", "bmaptool", "harness"):
    print(f"{k:9} median {med[k]:6.2f} s   min {min(t[k]):6.2f} s   max {max(t[k]):6.2f} s   ({len(t[k])} runs)")
print(f"ratio dd / harness:       {med['dd'] / med['harness']:.1f}x  (target >= 3x)")
print(f"ratio bmaptool / harness: {med['bmaptool'] / med['harness']:.1f}x  (target > 1x)")
PY
# An independent check of what harness wrote.
bash -c "$prepare"
${cmd[harness]} 2>/dev/null
cmp "$img" "$work/out.harness" && echo "bench-flash: harness output matches the image (cmp)" >&2
rm -f "$work"/out.* "$work/round.json"
