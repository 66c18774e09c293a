# shellcheck shell=bash
# Helpers shared by hostapp-update, rollback-health, rollback-altboot and
# config-json: slots, the bootloader's A/B environment, atomic writes on the FAT.

# The A/B environment on resin-boot: GRUB's grubenv (qemux86-64) or u-boot's
# resinOS_uEnv.txt + bootcount.env (qemuarm64); bootenv_get/bootenv_set pick the one
# that exists, as balenaOS's hooks pick theirs per board.
GRUBENV=/mnt/boot/EFI/BOOT/grubenv
UENV=/mnt/boot/resinOS_uEnv.txt
BOOTCOUNT_ENV=/mnt/boot/bootcount.env
STATE=/mnt/state
# shellcheck disable=SC2034 # used by the scripts that source this file
HEALTH_CRUMB=$STATE/rollback-health-breadcrumb
# shellcheck disable=SC2034
ALTBOOT_CRUMB=$STATE/rollback-altboot-breadcrumb

log() { echo "${0##*/}: $*" >&2; }

# Phase/status marker: stdout and the kernel log (hence the serial console).
marker() {
	echo "${0##*/}: $*"
	echo "<5>${0##*/}: $*" >/dev/kmsg 2>/dev/null || true
}

# The running slot's block device and partition number (2 = A, 3 = B).
active_dev() { findmnt -nfo SOURCE /mnt/sysroot/active; }
part_num() { cat "/sys/class/block/${1##*/}/partition"; }
active_part() { part_num "$(active_dev)"; }
other_part() { if [ "$1" = 2 ]; then echo 3; else echo 2; fi; }
slot_label() { if [ "$1" = 2 ]; then echo resin-rootA; else echo resin-rootB; fi; }

# slot_dev N: partition N of the disk the running slot is on.
slot_dev() {
	local a disk p
	a=$(active_dev)
	a=${a##*/}
	disk=$(basename "$(dirname "$(readlink -f "/sys/class/block/$a")")")
	for p in /sys/class/block/"$disk"/"$disk"*; do
		if [ "$(cat "$p/partition" 2>/dev/null)" = "$1" ]; then
			echo "/dev/${p##*/}"
			return 0
		fi
	done
	return 1
}

# Replace $2 with the content of stdin: temp file + fsync + rename + sync,
# so a power cut leaves either the old or the new file (also on the FAT).
write_atomic() {
	local dst=$1 tmp
	tmp="$(dirname "$dst")/.$(basename "$dst").tmp"
	cat >"$tmp" && sync "$tmp" && mv -f "$tmp" "$dst" && sync -f "$dst"
}

# umount_tree DIR: unmounts DIR and every mount under it (deepest first).
umount_tree() {
	local m
	findmnt -rn -o TARGET -R "$1" 2>/dev/null | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
}

grubenv_get() { sed -n "s/^$1=//p" "$GRUBENV" 2>/dev/null | head -n1; }

# grubenv_set KEY=VALUE...: rewrite the 1024-byte GRUB environment block.
grubenv_set() {
	local kv body keys='' pad
	for kv in "$@"; do keys="$keys|${kv%%=*}"; done
	body="# GRUB Environment Block"$'\n'
	body+=$(grep -v '^#' "$GRUBENV" 2>/dev/null | grep '=' | grep -Ev "^(${keys#|})=" || true)
	[ "${body: -1}" = $'\n' ] || body+=$'\n'
	for kv in "$@"; do body+="$kv"$'\n'; done
	body=$(printf '%s' "$body" | sed '/^$/d')$'\n'
	pad=$((1024 - ${#body}))
	[ "$pad" -ge 0 ] || { log "grubenv too large"; return 1; }
	{ printf '%s' "$body"; head -c "$pad" /dev/zero | tr '\0' '#'; } | write_atomic "$GRUBENV"
}

# bootloader: grub or uboot, by the environment file resin-boot holds.
bootloader() {
	if [ -e "$UENV" ]; then
		echo uboot
	elif [ -e "$GRUBENV" ]; then
		echo grub
	else
		log "no bootloader environment on /mnt/boot (neither $UENV nor $GRUBENV)"
		return 1
	fi
}

# bootenv_get KEY: resin_root_part, upgrade_available or bootcount, from either bootloader.
bootenv_get() {
	case "$(bootloader)" in
	grub) grubenv_get "$1" ;;
	uboot) uenv_get "$1" ;;
	esac
}

# bootenv_set KEY=VALUE...: the same keys, written the bootloader's way.
bootenv_set() {
	local b
	b=$(bootloader) || return 1
	case "$b" in
	grub) grubenv_set "$@" ;;
	uboot) uenv_set "$@" ;;
	esac
}

# u-boot: bootcount lives in bootcount.env (u-boot's script rewrites it at each counted
# boot), everything else in resinOS_uEnv.txt; both "key=value" lines (env import -t).
uenv_file() { if [ "$1" = bootcount ]; then echo "$BOOTCOUNT_ENV"; else echo "$UENV"; fi; }

uenv_get() { tr -d '\r\0' 2>/dev/null <"$(uenv_file "$1")" | sed -n "s/^$1=//p" | head -n1; }

# uenv_set KEY=VALUE...: each file rewritten once, atomically, keys kept in order.
uenv_set() {
	local kv file sets
	for file in "$UENV" "$BOOTCOUNT_ENV"; do
		sets=()
		for kv in "$@"; do
			[ "$(uenv_file "${kv%%=*}")" != "$file" ] || sets+=("$kv")
		done
		[ "${#sets[@]}" -gt 0 ] || continue
		envfile_set "$file" "${sets[@]}" || return 1
	done
}

# envfile_set FILE KEY=VALUE...: FILE's other lines kept, these keys replaced or added.
envfile_set() {
	local file=$1 kv keys=''
	shift
	for kv in "$@"; do keys="$keys|${kv%%=*}"; done
	{
		{ tr -d '\r\0' 2>/dev/null <"$file" || true; } | grep -Ev "^(${keys#|})=" | grep '=' || true
		printf '%s\n' "$@"
	} | write_atomic "$file"
}
