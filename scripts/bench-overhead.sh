#!/usr/bin/env bash
# Harness overhead: wall time of `harness run` against a bare QEMU boot of the same image to the
# SSH banner (scripts/boot-bare.sh), side by side, under TCG and user networking both.
#   scripts/bench-overhead.sh [IMAGE] [RUNS]
# IMAGE defaults to the cached reference image; RUNS to 3. Needs hyperfine (Debian package).
# HARNESS=path uses that binary instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
harness=${HARNESS:-target/release/harness}
[ -n "${HARNESS:-}" ] || cargo build --release --quiet
image=${1:-$($harness image build --machine qemux86-64)}
runs=${2:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The least a run can do: boot, log in over SSH with the run's key, run one command.
mkdir -p "$work/boot"
printf 'description: boot and one SSH command\n' >"$work/boot/suite.yaml"
printf 'description: one command\nsteps:\n  - ssh: {run: "true"}\n' >"$work/boot/ssh.yaml"

export HARNESS_NETWORK=user
hyperfine --runs "$runs" --style basic --export-json "$work/times.json" \
  -n bare-qemu-to-ssh-banner "scripts/boot-bare.sh $image" \
  -n harness-boot-and-one-ssh "$harness run --machine qemux86-64 --accel tcg --image $image --out $work/r1 $work/boot" \
  -n harness-suite-smoke "$harness run --machine qemux86-64 --accel tcg --image $image --out $work/r2 suite/smoke"

python3 - "$work/times.json" <<'PY'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
bare = r["bare-qemu-to-ssh-banner"]
for name in ("harness-boot-and-one-ssh", "harness-suite-smoke"):
    t = r[name]
    print(f"{name}: {t:.1f}s vs bare {bare:.1f}s: ratio {t / bare:.3f}, +{t - bare:.1f}s")
PY
