# shellcheck shell=bash
# u-boot on resin-boot (qemuarm64), balenaOS's u-boot contract: boot.scr (mkimage of the
# plain-text uboot/boot.cmd, run by u-boot's distro boot from the partition with the boot
# flag), resinOS_uEnv.txt (resin_root_part in hex, upgrade_available) and bootcount.env.

# bootloader_uboot DIR UBOOTDIR
bootloader_uboot() {
	local dir=$1 ubootdir=$2
	quiet mkimage -A arm64 -O linux -T script -C none -n "balenaOS A/B boot" \
		-d "$ubootdir/boot.cmd" "$dir/boot.scr"
	printf 'resin_root_part=2\nupgrade_available=0\n' >"$dir/resinOS_uEnv.txt"
	printf 'bootcount=0\n' >"$dir/bootcount.env"
}
