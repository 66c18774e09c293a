#!/usr/bin/env bash
# Flashing benchmark: `harness flash` against `dd bs=4M conv=fsync` and `bmaptool copy`,
# side by side in one hyperfine run, each writing a fresh file on the same disk.
#
# The image: 2 GiB, sparse, with ~25% data (random, so nothing compresses) spread in
# 128 chunks of 1-7 MiB; `bmaptool create` writes its bmap. Verification is included for
# harness (read-back) and bmaptool (checksums while copying); dd does none.
#
# usage: scripts/bench-flash.sh [WORKDIR]   (default: target/bench-flash; needs ~3 GiB)
# env:   RUNS (default 5), DROP_CACHES=1 to drop the page cache before every run (root)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$root/target/bench-flash}
runs=${RUNS:-5}
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

prepare="rm -f $work/out.*; sync"
if [[ ${DROP_CACHES:-0} == 1 ]]; then
  prepare="$prepare; echo 3 > /proc/sys/vm/drop_caches"
fi

json=$work/results.json
if command -v hyperfine >/dev/null; then
  hyperfine --runs "$runs" --prepare "$prepare" --export-json "$json" \
    -n dd "dd if=$img of=$work/out.dd bs=4M conv=fsync status=none" \
    -n bmaptool "bmaptool -q copy $img $work/out.bmaptool" \
    -n harness "$(ours "$work/out.harness")"
  python3 - "$json" <<'PY'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
h = r["harness"]
print(f"harness flash {h:.2f} s, bmaptool copy {r['bmaptool']:.2f} s, dd {r['dd']:.2f} s")
print(f"ratio dd/harness:       {r['dd'] / h:.1f}x  (target >= 3x)")
print(f"ratio bmaptool/harness: {r['bmaptool'] / h:.1f}x  (target > 1x)")
PY
else
  declare -A t
  for name in dd bmaptool harness; do
    bash -c "$prepare"
    case $name in
      dd) cmd="dd if=$img of=$work/out.dd bs=4M conv=fsync status=none" ;;
      bmaptool) cmd="bmaptool -q copy $img $work/out.bmaptool" ;;
      harness) cmd=$(ours "$work/out.harness") ;;
    esac
    s=$(date +%s.%N); $cmd; e=$(date +%s.%N)
    t[$name]=$(echo "$e - $s" | bc)
    echo "$name: ${t[$name]} s"
  done
  echo "ratio dd/harness: $(echo "scale=1; ${t[dd]} / ${t[harness]}" | bc)x"
  echo "ratio bmaptool/harness: $(echo "scale=1; ${t[bmaptool]} / ${t[harness]}" | bc)x"
fi
cmp "$img" "$work/out.harness" && echo "bench-flash: harness output matches the image" >&2
