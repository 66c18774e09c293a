# balenaOS reference image (qemuarm64): u-boot A/B boot with altboot fallback.
# mkimage makes boot.scr of it (lib/boot-uboot.sh); u-boot's distro boot runs it from
# resin-boot, the partition with the boot flag (${devtype} ${devnum}:${distro_bootpart}).
#
# balenaOS's u-boot contract, files on resin-boot:
#   resinOS_uEnv.txt  resin_root_part (hex: 2 = resin-rootA, 3 = resin-rootB) and
#                     upgrade_available (1 after hostapp-update, until the new OS confirms)
#   bootcount.env     bootcount: boots while upgrade_available=1
# Above 3 such boots the new slot has failed to confirm: boot the other one (not saved;
# the old OS sees the altboot breadcrumb and repairs resinOS_uEnv.txt itself).
# Each slot carries its own kernel (an uncompressed arm64 Image) and initramfs in /boot.

setenv resin_root_part 2
setenv upgrade_available 0
setenv bootcount 0
setenv bootpart ${devtype} ${devnum}:${distro_bootpart}
if load ${bootpart} ${scriptaddr} resinOS_uEnv.txt; then env import -t ${scriptaddr} ${filesize}; fi
if load ${bootpart} ${scriptaddr} bootcount.env; then env import -t ${scriptaddr} ${filesize}; fi
if test "${resin_root_part}" != "2" -a "${resin_root_part}" != "3"; then setenv resin_root_part 2; fi

if test "${upgrade_available}" = "1"; then
	# Counted up to 9 only: setexpr counts in hex, test compares in decimal.
	if test ${bootcount} -lt 9; then setexpr bootcount ${bootcount} + 1; fi
	# "bootcount=N\n" and a NUL: the NUL is not written.
	env export -t ${scriptaddr} bootcount
	setexpr bcsize ${filesize} - 1
	fatwrite ${bootpart} ${scriptaddr} bootcount.env ${bcsize}
	if test ${bootcount} -gt 3; then
		echo "altboot: slot ${resin_root_part} failed to confirm after 3 boots, booting the other slot"
		if test "${resin_root_part}" = "2"; then setenv resin_root_part 3; else setenv resin_root_part 2; fi
	fi
fi

echo "Booting resin_root_part=${resin_root_part} (upgrade_available=${upgrade_available} bootcount=${bootcount})"
# apparmor=0: Debian's kernel enables AppArmor, the engine would then need apparmor_parser.
setenv bootargs "resin_root_part=${resin_root_part} ro rootwait panic=10 net.ifnames=0 apparmor=0 console=ttyAMA0,115200"
load ${devtype} ${devnum}:${resin_root_part} ${kernel_addr_r} /boot/Image
load ${devtype} ${devnum}:${resin_root_part} ${ramdisk_addr_r} /boot/initrd.img
booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdt_addr}
echo "booting slot ${resin_root_part} failed; resetting"
reset
