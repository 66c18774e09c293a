#!/usr/bin/env bash
# A fresh device, side by side in one run, medians over RUNS (default 3):
#   - a bare QEMU boot of the image to the SSH-2.0 banner (scripts/boot-bare.sh: the harness's
#     QEMU arguments, no harness);
#   - a fresh device by a harness boot (power on to logged in over SSH: boot_seconds);
#   - a fresh device by a snapshot restore (to logged in and the clock set: restore_seconds);
#   - a `reboot` step (the command to SSH answering again: reboot_seconds) vs a fresh boot.
#   scripts/bench-fresh.sh [RUNS]
# Runs on the cached reference image, QEMU user networking (as the bare boot), TCG, and a
# snapshot cache of its own (removed at the end). HARNESS=path uses that binary instead of
# building the release one. Other QEMUs on the host slow every figure: look at the load line.
set -euo pipefail
cd "$(dirname "$0")/.."
harness=${HARNESS:-target/release/harness}
[ -n "${HARNESS:-}" ] || cargo build --release --quiet
runs=${1:-3}
image=$($harness image build --machine qemux86-64)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HARNESS_NETWORK=user HARNESS_SNAPSHOTS="$work/snapshots"

mkdir -p "$work/fresh"
cat >"$work/fresh/suite.yaml" <<'EOF'
description: a fresh device, then a fresh device that reboots (bench-fresh)
config: {developmentMode: true}
tests: [up, reboot]
EOF
printf 'description: up\nsteps:\n  - ssh: {run: "true"}\n' >"$work/fresh/up.yaml"
printf 'description: reboot\nfresh: true\nsteps:\n  - reboot: {}\n' >"$work/fresh/reboot.yaml"

# figure RUN_DIR TEST NAME: a recorded figure of a test of a run.
figure() {
	python3 - "$1/summary.json" "$2" "$3" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for t in s["tests"]:
    if t["name"] == sys.argv[2]:
        for k, v in t["properties"]:
            if k == sys.argv[3]:
                print(v)
                sys.exit(0)
sys.exit("no figure %s for %s in %s" % (sys.argv[3], sys.argv[2], sys.argv[1]))
PY
}

harness_run() { # OUT ARGS...
	local out=$1
	shift
	$harness run --machine qemux86-64 --accel tcg --out "$out" "$@" >"$out.log" 2>&1 ||
		{ tail -n 20 "$out.log" >&2; exit 1; }
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg), QEMUs running: $(pgrep -c qemu-system || true)"
# The snapshot is made once, before the timed runs.
harness_run "$work/first" "$work/fresh" --filter fresh/up
: >"$work/figures"
for i in $(seq "$runs"); do
	bare=$(scripts/boot-bare.sh "$image" | sed -n 's/^ssh banner after \([0-9.]*\) s$/\1/p')
	echo "bare $bare" >>"$work/figures"
	harness_run "$work/boot$i" "$work/fresh" --filter fresh/up --no-snapshot
	echo "boot $(figure "$work/boot$i" up boot_seconds)" >>"$work/figures"
	harness_run "$work/snap$i" "$work/fresh"
	echo "restore $(figure "$work/snap$i" up restore_seconds)" >>"$work/figures"
	echo "restore $(figure "$work/snap$i" reboot restore_seconds)" >>"$work/figures"
	echo "reboot $(figure "$work/snap$i" reboot reboot_seconds)" >>"$work/figures"
	echo "run $i of $runs: $(tr '\n' ' ' <"$work/figures" | tail -c 200)" >&2
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$work/figures" "$runs" <<'PY'
import statistics, sys
figs = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    figs.setdefault(k, []).append(float(v))
m = {k: statistics.median(v) for k, v in figs.items()}
rows = [
    ("bare QEMU boot to the SSH-2.0 banner", "bare"),
    ("fresh device: harness boot (logged in)", "boot"),
    ("fresh device: snapshot restore (logged in, clock set)", "restore"),
    ("reboot step (command to SSH again)", "reboot"),
]
print(f"\nmedians over {sys.argv[2]} runs (restore: two per run), TCG, user networking")
print(f"| {'measure':<55} | {'median':>7} | {'n':>2} | {'vs bare':>7} | {'vs harness boot':>15} |")
print(f"|{'-' * 57}|{'-' * 9}|{'-' * 4}|{'-' * 9}|{'-' * 17}|")
for label, k in rows:
    print(f"| {label:<55} | {m[k]:>6.1f}s | {len(figs[k]):>2} | {m[k] / m['bare']:>6.2f}x | {m[k] / m['boot']:>14.2f}x |")
print(f"\nboot / restore: {m['boot'] / m['restore']:.1f}x faster by snapshot; "
      f"reboot / boot: {m['reboot'] / m['boot']:.2f}")
PY
