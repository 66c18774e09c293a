# shellcheck shell=bash disable=SC2034 # the variables are read by the other lib/*.sh and build.sh
# What differs per machine: Debian architecture, kernel package, bootloader, the host
# tools the build needs. arch_select MACHINE sets the variables below; everything
# else in the recipe is the same for every machine.
#
#   DEB_ARCH        Debian architecture (debootstrap --arch, kernel and busybox .debs)
#   LIBDIR          the multiarch library folder (/usr/lib/$LIBDIR)
#   KERNEL_META     Debian's kernel meta package
#   KERNEL_IMAGE    the kernel's name in a slot's /boot
#   BOOTLOADER      grub | uboot: which lib/boot-*.sh makes resin-boot
#   DEB_CACHE_NAME  the folder under the cache for this architecture's .debs
#   STRIP           binutils' strip for this architecture's binaries
#   ARCH_PACKAGES   Debian packages this machine's rootfs adds (the initramfs takes its
#                   fsck.fat from a foreign rootfs, as it takes the host's on x86)

arch_select() {
	case "$1" in
	qemux86-64)
		DEB_ARCH=amd64 LIBDIR=x86_64-linux-gnu KERNEL_META=linux-image-amd64 KERNEL_IMAGE=vmlinuz
		BOOTLOADER=grub DEB_CACHE_NAME=debs STRIP=strip
		ARCH_PACKAGES=()
		;;
	qemuarm64)
		DEB_ARCH=arm64 LIBDIR=aarch64-linux-gnu KERNEL_META=linux-image-arm64 KERNEL_IMAGE=Image
		BOOTLOADER=uboot DEB_CACHE_NAME=debs-arm64 STRIP=aarch64-linux-gnu-strip
		ARCH_PACKAGES=(dosfstools)
		;;
	*) die "unknown machine $1 (qemux86-64 or qemuarm64)" ;;
	esac
	MACHINE=$1
}

# arch_foreign: is DEB_ARCH not this host's? (Then chroot runs through qemu-user.)
arch_foreign() {
	[ "$DEB_ARCH" != "$(dpkg --print-architecture)" ]
}

# binfmt_arm64: registers qemu-aarch64 with binfmt_misc (idempotent), so chroot into an
# arm64 tree runs its programs under qemu-user. systemd-binfmt would do it at boot; with
# another PID 1 nothing does. The F flag opens the interpreter now: it works in a chroot.
binfmt_arm64() {
	local dir=/proc/sys/fs/binfmt_misc conf=/usr/lib/binfmt.d/qemu-aarch64.conf
	[ -e "$dir/register" ] || mount -t binfmt_misc binfmt_misc "$dir" ||
		die "cannot mount binfmt_misc on $dir"
	[ -e "$dir/qemu-aarch64" ] && return 0
	[ -f "$conf" ] || die "$conf missing (apt-get install qemu-user-static)"
	grep -v '^#' "$conf" | head -n1 >"$dir/register" || die "cannot register qemu-aarch64 with binfmt_misc"
}

# arch_host_setup: what a foreign architecture needs before debootstrap.
arch_host_setup() {
	case "$DEB_ARCH" in
	arm64) binfmt_arm64 ;;
	esac
}

# arch_require_tools: the host tools of this machine's bootloader and architecture.
arch_require_tools() {
	case "$BOOTLOADER" in
	grub)
		require_tools grub-mkstandalone:grub-common grub-editenv:grub-common \
			/usr/lib/grub/x86_64-efi/linux.mod:grub-efi-amd64-bin "$BUSYBOX:busybox-static"
		if grep -q '/lib64/ld-linux-x86-64.so' "$BUSYBOX"; then
			die "$BUSYBOX is dynamically linked (apt-get install busybox-static)"
		fi
		;;
	uboot)
		require_tools mkimage:u-boot-tools aarch64-linux-gnu-strip:binutils-aarch64-linux-gnu /usr/libexec/qemu-binfmt/aarch64-binfmt-P:qemu-user-static \
			/usr/lib/binfmt.d/qemu-aarch64.conf:qemu-user-static
		# The kernel and busybox-static .debs are fetched with apt-get download.
		dpkg --print-foreign-architectures | grep -qx "$DEB_ARCH" ||
			die "apt knows no $DEB_ARCH packages (dpkg --add-architecture $DEB_ARCH && apt-get update)"
		;;
	esac
}
