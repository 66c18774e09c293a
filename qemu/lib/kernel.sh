# shellcheck shell=bash
# Kernel: Debian's $KERNEL_META (linux-image-amd64 or -arm64), downloaded and
# unpacked (never installed on the host). Each root slot carries the kernel, its modules
# and the initramfs in /boot, so a slot is a complete OS.

# Modules the initramfs needs to reach the root: disk, filesystems, overlays.
INITRAMFS_MODULES=(virtio_pci virtio_blk crc32c_generic ext4 vfat nls_cp437 nls_ascii nls_utf8 overlay)

# Module trees copied into the rootfs: enough for virtio hardware, every
# filesystem, netfilter/bridge/overlay for the engine; not GPUs, sound,
# wireless or vendor NIC drivers.
MODULE_DIRS=(kernel/arch kernel/block kernel/crypto kernel/fs kernel/lib kernel/mm kernel/net kernel/virt
	kernel/drivers/virtio kernel/drivers/block kernel/drivers/char kernel/drivers/nvme kernel/drivers/md
	kernel/drivers/net/ipvlan kernel/drivers/net/vxlan kernel/drivers/net/bonding kernel/drivers/net/team
	kernel/drivers/net/wireguard)
# ...minus what a VM never uses (cluster/network/flash filesystems, radios, RAID and
# device-mapper, KVM inside the guest, the kernel's self-tests): each update payload
# carries the modules, and under emulation every MiB of it costs load time.
MODULE_EXCLUDES=(kernel/fs/{ocfs2,gfs2,nfsd,nfs,ceph,smb,xfs,btrfs,f2fs,jfs,reiserfs,nilfs2,ubifs,dlm,orangefs,coda,afs}
	kernel/fs/{jffs2,ecryptfs,udf,hfs,hfsplus,affs,ufs,hpfs,sysv,minix,9p,cachefiles,fscache,netfs,lockd,zonefs,vboxsf}
	kernel/net/{bluetooth,mac80211,wireless,sunrpc,ceph,rxrpc,nfc,ieee802154,mac802154,6lowpan,can,rds,tipc,sctp}
	kernel/net/{batman-adv,smc,atm,dccp,l2tp,9p,openvswitch,ax25,netrom,rose,phonet,appletalk,qrtr,kcm}
	kernel/arch/x86/kvm kernel/drivers/md kernel/lib/raid6
	kernel/drivers/block/{drbd,aoe,rbd,mtip32xx,xen-blkback})

# kernel_fetch CACHE: download linux-image-<abi>-$DEB_ARCH into CACHE; prints the .deb path.
kernel_fetch() {
	local cache=$1 pkg
	pkg=$(apt-cache depends "$(apt_name "$KERNEL_META")" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
	[ -n "$pkg" ] || die "cannot resolve $KERNEL_META (run apt-get update on the host)"
	deb_fetch "${pkg%:*}" "$cache"
}

# apt_name PKG: PKG as apt names it for DEB_ARCH (PKG:arm64 on a foreign architecture).
apt_name() {
	if arch_foreign; then echo "$1:$DEB_ARCH"; else echo "$1"; fi
}

# deb_fetch PKG CACHE: PKG's .deb for DEB_ARCH, downloaded into CACHE once; prints its path.
deb_fetch() {
	local pkg=$1 cache=$2 deb
	mkdir -p "$cache"
	deb=$(find "$cache" -maxdepth 1 -name "${pkg}_*_$DEB_ARCH.deb" | sort | tail -n1)
	if [ -z "$deb" ]; then
		(cd "$cache" && quiet apt-get download -q "$(apt_name "$pkg")")
		deb=$(find "$cache" -maxdepth 1 -name "${pkg}_*_$DEB_ARCH.deb" | sort | tail -n1)
	fi
	[ -n "$deb" ] || die "download of $pkg ($DEB_ARCH) failed"
	echo "$deb"
}

# busybox_fetch CACHE WORK: a static busybox for DEB_ARCH: the host's (BUSYBOX) when it is
# this host's architecture, else busybox-static's, unpacked into WORK; prints its path.
busybox_fetch() {
	local cache=$1 work=$2
	if ! arch_foreign; then
		echo "$BUSYBOX"
		return
	fi
	rm -rf "$work/busybox"
	dpkg-deb -x "$(deb_fetch busybox-static "$cache")" "$work/busybox"
	echo "$work/busybox/bin/busybox"
}

# kernel_image VMLINUZ OUT: the kernel as the bootloader loads it: GRUB takes vmlinuz;
# u-boot's booti an uncompressed Image (Debian 12's arm64 vmlinuz already is one; a gzip'd
# one is inflated here, u-boot would spend seconds on it under TCG at every boot).
kernel_image() {
	if [ "$KERNEL_IMAGE" = Image ] && gzip -t "$1" 2>/dev/null; then
		gzip -dc "$1" >"$2"
		chmod 0644 "$2"
	else
		install -m 0644 "$1" "$2"
	fi
}

# kernel_install DEB ROOT WORK: kernel to ROOT/boot/vmlinuz, module subset to
# ROOT/usr/lib/modules; prints the kernel version.
kernel_install() {
	local deb=$1 root=$2 work=$3 kver d
	rm -rf "$work/kernel"
	dpkg-deb -x "$deb" "$work/kernel"
	kver=$(basename "$(find "$work/kernel/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n1)")
	kernel_image "$work/kernel/boot/vmlinuz-$kver" "$root/boot/$KERNEL_IMAGE"
	mkdir -p "$root/usr/lib/modules/$kver"
	cp "$work/kernel/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$root/usr/lib/modules/$kver/"
	for d in "${MODULE_DIRS[@]}"; do
		[ -d "$work/kernel/lib/modules/$kver/$d" ] || continue
		mkdir -p "$root/usr/lib/modules/$kver/$(dirname "$d")"
		cp -a "$work/kernel/lib/modules/$kver/$d" "$root/usr/lib/modules/$kver/$d"
	done
	# drivers/net top level: virtio_net, tun, veth, macvlan, dummy...
	mkdir -p "$root/usr/lib/modules/$kver/kernel/drivers/net"
	cp "$work/kernel/lib/modules/$kver/kernel/drivers/net/"*.ko "$root/usr/lib/modules/$kver/kernel/drivers/net/"
	for d in "${MODULE_EXCLUDES[@]}"; do
		rm -rf "${root:?}/usr/lib/modules/$kver/$d"
	done
	find "$root/usr/lib/modules/$kver/kernel/lib" -name 'test_*.ko*' -delete
	chroot "$root" depmod -a "$kver"
	rm -rf "$work/kernel"
	echo "$kver"
}

# initramfs_build ROOT KVER INIT OUT BUSYBOX: a static busybox + modules + our init.
initramfs_build() {
	local root=$1 kver=$2 init=$3 out=$4 busybox=$5 dir m applet
	dir=$(mktemp -d "${WORK:?}/initramfs.XXXXXX")
	mkdir -p "$dir"/{bin,dev,etc,lib/modules,newroot,proc,sys}
	cp "$busybox" "$dir/bin/busybox"
	for applet in $("$busybox" --list); do
		[ -e "$dir/bin/$applet" ] || ln -s busybox "$dir/bin/$applet"
	done
	# fsck at boot, as balenaOS's initramfs: e2fsck and fsck.fat with the libraries
	# they link: this host's (Debian 12, as the image) or, for a foreign
	# architecture, the rootfs's own (ldd run in it, under qemu-user).
	local tool lib src=/
	if arch_foreign; then src=$root; fi
	for tool in /sbin/e2fsck /sbin/fsck.fat; do
		cp "$(resolve_in "${src%/}" "$tool")" "$dir/bin/${tool##*/}"
		for lib in $(chroot "$src" ldd "$tool" | grep -o '/[^ ]*'); do
			mkdir -p "$dir$(dirname "$lib")"
			cp -L "$(resolve_in "${src%/}" "$lib")" "$dir$lib"
		done
	done
	mknod -m 600 "$dir/dev/console" c 5 1
	install -m 0755 "$init" "$dir/init"
	# Dependency order from the rootfs's own modprobe; paths relative to
	# /lib/modules in the initramfs.
	: >"$dir/etc/modules.order"
	for m in "${INITRAMFS_MODULES[@]}"; do
		chroot "$root" modprobe -S "$kver" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" {print $2}'
	done | awk '!seen[$0]++' | while read -r m; do
		rel=${m#/lib/modules/"$kver"/}
		rel=${rel#/usr/lib/modules/"$kver"/}
		mkdir -p "$dir/lib/modules/$(dirname "$rel")"
		cp "$root/usr/lib/modules/$kver/$rel" "$dir/lib/modules/$rel"
		echo "$rel" >>"$dir/etc/modules.order"
	done
	# Uncompressed: a few MiB, and nothing to inflate under TCG.
	(cd "$dir" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$out"
	rm -rf "$dir"
}
