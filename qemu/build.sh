#!/bin/bash
# shellcheck source-path=SCRIPTDIR
# Build the balenaOS reference image for qemux86-64 (GRUB, EFI) or qemuarm64 (u-boot).
#
#   bash qemu/build.sh OUT_DIR [MACHINE]   (as root; OUT_DIR exists and is empty;
#                                           MACHINE: qemux86-64, the default, or qemuarm64)
#
# Writes OUT_DIR/image.img (OS 1.0.0), OUT_DIR/hostapp-1.0.1.tar (the update
# payload: the OS as a hostapp image in `balena-engine save` format, and its
# no-health variant), OUT_DIR/vmlinuz (for the harness's KVM probe) and
# OUT_DIR/build.json. Everything else happens in a temp dir removed on exit;
# downloaded .debs are kept in ${HARNESS_CACHE:-$HOME/.cache/harness}/debs (not
# part of any cache key). BALENA_BIN_DIR (optional): a folder with balenaEngine
# (balena-engine or balena-engine.xz; balena-engine-arm64[.xz] for qemuarm64); without it
# the engine is Debian's docker.io. Machine-specific bits: lib/arch.sh, lib/boot-*.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
. "$HERE/lib/common.sh"
# shellcheck source=lib/arch.sh
. "$HERE/lib/arch.sh"
# shellcheck source=lib/rootfs.sh
. "$HERE/lib/rootfs.sh"
# shellcheck source=lib/kernel.sh
. "$HERE/lib/kernel.sh"
# shellcheck source=lib/bootpart.sh
. "$HERE/lib/bootpart.sh"
# shellcheck source=lib/boot-grub.sh
. "$HERE/lib/boot-grub.sh"
# shellcheck source=lib/boot-uboot.sh
. "$HERE/lib/boot-uboot.sh"
# shellcheck source=lib/disk.sh
. "$HERE/lib/disk.sh"
# shellcheck source=lib/check.sh
. "$HERE/lib/check.sh"
# shellcheck source=lib/engine.sh
. "$HERE/lib/engine.sh"

VERSION=1.0.0
UPDATE_VERSION=1.0.1
BOOT_MIB=40
STATE_MIB=64
DATA_MIB=1024
BUSYBOX=/bin/busybox

OUT=${1:-}
[ -n "$OUT" ] || die "usage: bash qemu/build.sh OUT_DIR [qemux86-64|qemuarm64]"
arch_select "${2:-qemux86-64}"
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and chroot need it)"
require_tools debootstrap:debootstrap mkfs.ext4:e2fsprogs mkfs.vfat:dosfstools mcopy:mtools \
	sfdisk:fdisk zstd:zstd jq:jq cpio:cpio \
	dpkg-deb:dpkg apt-get:apt apt-cache:apt truncate:coreutils \
	xz:xz-utils e2fsck:e2fsprogs fsck.fat:dosfstools strip:binutils
arch_require_tools
[ -d "$OUT" ] || die "output directory $OUT does not exist"
OUT=$(cd "$OUT" && pwd)
CACHE=${HARNESS_CACHE:-${HOME:-/root}/.cache/harness}/$DEB_CACHE_NAME
arch_host_setup

WORK=$(mktemp -d "${TMPDIR:-/tmp}/harness-image.XXXXXX")
ROOT=$WORK/rootfs
cleanup() {
	engine_stop
	# debootstrap mounts proc/sys in the target; never follow them.
	local m
	for m in proc sys dev/pts dev run; do
		umount -l "$ROOT/$m" 2>/dev/null || true
	done
	if [ -n "${HARNESS_KEEP_WORK:-}" ]; then
		echo "work dir kept: $WORK" >&2
	else
		rm -rf --one-file-system "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

STEPS=8 # read by step() in lib/common.sh
export STEPS
step "bootstrapping Debian bookworm $DEB_ARCH for $MACHINE (debootstrap minbase, debs cached in $CACHE)"
rootfs_bootstrap "$ROOT" "$CACHE"

step "configuring the rootfs (balenaOS services and files)"
rootfs_configure "$ROOT" "$HERE/rootfs"

step "installing the engine"
ENGINE_DESC=$(engine_install "$ROOT" "${BALENA_BIN_DIR:-}")
echo "    engine: $ENGINE_DESC"
# The engine this host runs to make the hostapps (the image's own, unless foreign).
engine_build_root "$ROOT" "${BALENA_BIN_DIR:-}"
# The hostapp's boot/init: how the initramfs (and hostapp-update) mount this OS.
install -m 0755 "$HERE/hostapp/init" "$ROOT/boot/init"

step "installing the kernel and building the initramfs"
KDEB=$(kernel_fetch "$CACHE")
KVER=$(kernel_install "$KDEB" "$ROOT" "$WORK")
initramfs_build "$ROOT" "$KVER" "$HERE/initramfs/init" "$ROOT/boot/initrd.img" "$(busybox_fetch "$CACHE" "$WORK")"
# The harness boots this kernel once under KVM to learn whether KVM really works here.
cp "$ROOT/boot/$KERNEL_IMAGE" "$OUT/vmlinuz"
rootfs_trim "$ROOT"
# A unit that names a missing program or file would fail at every boot: fail here instead.
check_units "$ROOT"

step "making hostapp $VERSION in resin-rootA and the update payloads hostapp-$UPDATE_VERSION.tar (and its no-health variant)"
rootfs_set_version "$ROOT" "$VERSION"
cp "$ROOT/usr/lib/os-release" "$WORK/os-release"
hostapp_slot "$ROOT" "$WORK/slotA" "balena-os/reference:$VERSION"
rootfs_set_version "$ROOT" "$UPDATE_VERSION"
hostapp_save "$ROOT" "balena-os/reference:$UPDATE_VERSION" "$OUT/hostapp-$UPDATE_VERSION.tar"
# A broken variant for the negative check of the health rollback: the same OS with
# rollback-health masked, so nothing ever rolls it back.
mask="$ROOT/etc/systemd/system/rollback-health.service"
ln -s /dev/null "$mask"
hostapp_save "$ROOT" "balena-os/reference:$UPDATE_VERSION" "$OUT/hostapp-$UPDATE_VERSION-no-health.tar"
rm -f "$mask"

# Root slots: a hostapp plus ~25% headroom (ext4 metadata and journal included) for
# the next one, in 4 MiB steps; rootB starts empty, as on balenaOS.
ROOT_MIB=$(round_up $(($(dir_mib "$WORK/slotA") * 5 / 4 + 16)) 4)
echo "    root slots: ${ROOT_MIB} MiB each"
mkext4 "$WORK/rootA.ext4" "$ROOT_MIB" resin-rootA "$WORK/slotA"
mkext4 "$WORK/rootB.ext4" "$ROOT_MIB" resin-rootB
rm -rf "$WORK/slotA"

step "making resin-boot ($BOOTLOADER, its A/B environment, config.json)"
bootpart_tree "$WORK/boot" "$HERE" "$WORK/os-release"
mkvfat "$WORK/boot.vfat" "$BOOT_MIB" resin-boot "$WORK/boot"

step "making resin-state and resin-data"
mkdir -p "$WORK/state/root-overlay/etc/ssh/hostkeys" "$WORK/state/root-overlay/var/log/journal" "$WORK/data"
# The state bind mounts' sources, seeded as boot-setup would on first boot.
state_seed "$ROOT" "$WORK/state/root-overlay"
# The reset markers ship with the image: a missing one asks for a reset at the next boot.
touch "$WORK/state/remove_me_to_reset" "$WORK/data/remove_me_to_reset"
mkext4 "$WORK/state.ext4" "$STATE_MIB" resin-state "$WORK/state"
mkext4 "$WORK/data.ext4" "$DATA_MIB" resin-data "$WORK/data"

step "assembling image.img (msdos: boot, rootA, rootB, extended: state, data)"
disk_assemble "$OUT/image.img" "$WORK/boot.vfat" "$WORK/rootA.ext4" "$WORK/rootB.ext4" \
	"$WORK/state.ext4" "$WORK/data.ext4"
jq -n --arg m "$MACHINE" --arg v "$VERSION" --arg uf "hostapp-$UPDATE_VERSION.tar" --arg uv "$UPDATE_VERSION" \
	--arg nh "hostapp-$UPDATE_VERSION-no-health.tar" --arg e "$ENGINE_DESC" \
	'{machine: $m, image: "image.img", version: $v, engine: $e, update: {file: $uf, version: $uv, no_health: $nh}}' >"$OUT/build.json"
echo "==> time per step: $(step_times)"
echo "==> done: $OUT/image.img ($(du -h --apparent-size "$OUT/image.img" | cut -f1) sparse, $(du -h "$OUT/image.img" | cut -f1) used)"
