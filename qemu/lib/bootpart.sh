# shellcheck shell=bash
# resin-boot contents: the bootloader's files (lib/boot-$BOOTLOADER.sh), the default
# config.json, os-release, an empty system-connections/.

# bootpart_tree DIR SRCDIR OSRELEASE: SRCDIR is qemu/ (its grub/ or uboot/ folder is used).
bootpart_tree() {
	local dir=$1 src=$2 osrel=$3
	mkdir -p "$dir/system-connections" "$dir/splash"
	"bootloader_$BOOTLOADER" "$dir" "$src/$BOOTLOADER"
	# Like a fresh balenaOS download: the device type, no uuid (the device makes one).
	printf '{"deviceType":"%s","developmentMode":true,"persistentLogging":false}\n' "$MACHINE" >"$dir/config.json"
	cp "$osrel" "$dir/os-release"
}
