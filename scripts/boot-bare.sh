#!/bin/bash
# boot-bare.sh IMAGE [--keep]
#
# Bare baseline for the harness: boot IMAGE (raw) under QEMU TCG exactly as
# the harness does (qcow2 overlay, per-run OVMF vars copy, user networking
# with SSH 22222 and engine 2375 forwarded) and print the seconds until the
# SSH-2.0 banner arrives on the forwarded port.
# Without --keep QEMU is stopped afterwards; with --keep it keeps running and
# the ports, pid and run dir are printed (stop it with: kill <pid>).
# Env: SSHPORT, ENGPORT (default: free ports), TIMEOUT (default 300 s), MACHINE (default:
# build.json's next to IMAGE, else qemux86-64; qemuarm64 boots qemu-system-aarch64 -M virt
# with u-boot, CPU from ARM_CPU, default cortex-a72; X86_CPU sets an x86 -cpu, default QEMU's).
set -euo pipefail

IMAGE=${1:?usage: boot-bare.sh IMAGE [--keep]}
KEEP=${2:-}
IMAGE=$(readlink -f "$IMAGE")
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
TIMEOUT=${TIMEOUT:-300}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SSHPORT=${SSHPORT:-$(free_port)}
ENGPORT=${ENGPORT:-$(free_port)}

RUN=$(mktemp -d "${TMPDIR:-/tmp}/boot-bare.XXXXXX")
qemu-img create -q -f qcow2 -F raw -b "$IMAGE" "$RUN/ov.qcow2" 8G
cp "$OVMF_VARS" "$RUN/vars.fd"

MACHINE=${MACHINE:-$(jq -r '.machine // empty' "$(dirname "$IMAGE")/build.json" 2>/dev/null || true)}
# shellcheck disable=SC2054 # commas inside QEMU options
NET=(-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$SSHPORT-:22222,hostfwd=tcp:127.0.0.1:$ENGPORT-:2375"
	-device virtio-net-pci,netdev=n0 -device virtio-rng-pci)
start=$(date +%s.%N)
if [ "${MACHINE:-qemux86-64}" = qemuarm64 ]; then
	qemu-system-aarch64 -machine virt -cpu "${ARM_CPU:-cortex-a72}" -accel tcg -m 2048 -smp 2 -nographic -nodefaults \
		-bios /usr/lib/u-boot/qemu_arm64/u-boot.bin \
		-drive if=none,id=d0,format=qcow2,file="$RUN/ov.qcow2" -device virtio-blk-pci,drive=d0 \
		"${NET[@]}" -serial stdio </dev/null >"$RUN/serial.log" 2>&1 &
else
	qemu-system-x86_64 -machine q35 -accel tcg ${X86_CPU:+-cpu "$X86_CPU"} -m 2048 -smp 2 -nographic -nodefaults \
		-drive if=pflash,format=raw,readonly=on,file="$OVMF_CODE" \
		-drive if=pflash,format=raw,file="$RUN/vars.fd" \
		-drive if=virtio,format=qcow2,file="$RUN/ov.qcow2" \
		"${NET[@]}" -device vmgenid -serial stdio </dev/null >"$RUN/serial.log" 2>&1 &
fi
QPID=$!
echo "$QPID" >"$RUN/qemu.pid"
stop() { kill "$QPID" 2>/dev/null || true; wait "$QPID" 2>/dev/null || true; }
[ "$KEEP" = --keep ] || trap 'stop; rm -rf "$RUN"' EXIT

# A bare TCP connect is not enough (QEMU's slirp accepts before the guest
# listens): wait for the banner bytes.
if python3 - "$SSHPORT" "$TIMEOUT" "$QPID" <<'PY'; then
import os, socket, sys, time
port, timeout, pid = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
end = time.time() + timeout
while time.time() < end:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(2)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(3)
            if s.recv(64).startswith(b"SSH-2.0"):
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit(1)
PY
	end=$(date +%s.%N)
	printf 'ssh banner after %.1f s\n' "$(echo "$end - $start" | bc -l 2>/dev/null || python3 -c "print($end - $start)")"
else
	echo "error: no SSH banner within ${TIMEOUT}s (serial log: $RUN/serial.log)" >&2
	tail -n 30 "$RUN/serial.log" >&2
	exit 1
fi
if [ "$KEEP" = --keep ]; then
	echo "qemu pid $QPID, ssh port $SSHPORT, engine port $ENGPORT, run dir $RUN"
fi
