#!/usr/bin/env bash
# qemuarm64 (aarch64 under TCG, booted by u-boot) timed where CI does not run it: suite/hup in
# full and suite/os, one run each, then each run's wall time, its tests' durations and their
# boot figures (boot_seconds: power on to logged in over SSH).
#   scripts/bench-arm.sh [OUT_DIR]      (SUITES="os" runs only those of hup, os)
# Runs on the cached qemuarm64 reference image (`harness image build --machine qemuarm64`,
# built by scripts/setup); EXTRA="--image PATH --var ..." runs another image. HARNESS=path uses
# that binary instead of building the release one. Other QEMUs on the host slow every figure:
# look at the load line. Takes long (hours on 2 cores): every fresh device boots for real, as
# aarch64 virt has no vmgenid for snapshots.
set -euo pipefail
cd "$(dirname "$0")/.."
harness=${HARNESS:-target/release/harness}
[ -n "${HARNESS:-}" ] || cargo build --release --quiet
out=${1:-$(mktemp -d)}
mkdir -p "$out"
[ -n "${EXTRA:-}" ] || $harness image build --machine qemuarm64 >/dev/null
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg), QEMUs running: $(pgrep -c qemu-system || true)"

# report RUN_DIR: each test's status, duration and boot figures.
report() {
	python3 - "$1/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for t in s["tests"]:
    figs = " ".join("%s=%s" % (k, v) for k, v in t["properties"] if k.endswith("_seconds"))
    outcome = t["outcome"] if isinstance(t["outcome"], str) else json.dumps(t["outcome"])
    print("  %-28s %-8s %7.1fs  %s" % (t["suite"] + "/" + t["name"], outcome, t["duration"], figs))
c = s["counts"]
print("  counts: " + ", ".join("%s %s" % (k, v) for k, v in c.items()))
PY
}

status=0
for suite in ${SUITES:-hup os}; do
	started=$(date +%s)
	# shellcheck disable=SC2086 # EXTRA is words
	if $harness run --machine qemuarm64 --keep-going ${EXTRA:-} --out "$out/$suite" "suite/$suite" \
		>"$out/$suite.log" 2>&1; then rc=0; else rc=$?; fi
	took=$(($(date +%s) - started))
	echo "suite/$suite on qemuarm64: ${took}s, exit $rc"
	if [ -f "$out/$suite/summary.json" ]; then report "$out/$suite"; else tail -n 5 "$out/$suite.log"; fi
	[ "$rc" = 0 ] || status=$rc
done
echo "runs and logs: $out"
exit "$status"
