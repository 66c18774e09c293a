# shellcheck shell=bash
# Kernel: Debian's linux-image-*-amd64, downloaded and unpacked (never
# installed on the host). Each root slot carries the kernel, its modules
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

# kernel_fetch CACHE: download linux-image-<abi>-amd64 into CACHE; prints the .deb path.
kernel_fetch() {
	local cache=$1 pkg deb
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
	[ -n "$pkg" ] || die "cannot resolve linux-image-amd64 (run apt-get update on the host)"
	mkdir -p "$cache"
	deb=$(find "$cache" -maxdepth 1 -name "${pkg}_*_amd64.deb" | sort | tail -n1)
	if [ -z "$deb" ]; then
		(cd "$cache" && quiet apt-get download -q "$pkg")
		deb=$(find "$cache" -maxdepth 1 -name "${pkg}_*_amd64.deb" | sort | tail -n1)
	fi
	[ -n "$deb" ] || die "download of $pkg failed"
	echo "$deb"
}

# kernel_install DEB ROOT WORK: kernel to ROOT/boot/vmlinuz, module subset to
# ROOT/usr/lib/modules; prints the kernel version.
kernel_install() {
	local deb=$1 root=$2 work=$3 kver d
	rm -rf "$work/kernel"
	dpkg-deb -x "$deb" "$work/kernel"
	kver=$(basename "$(find "$work/kernel/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n1)")
	install -m 0644 "$work/kernel/boot/vmlinuz-$kver" "$root/boot/vmlinuz"
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

# initramfs_build ROOT KVER INIT OUT: busybox-static + modules + our init.
initramfs_build() {
	local root=$1 kver=$2 init=$3 out=$4 dir m applet
	dir=$(mktemp -d "${WORK:?}/initramfs.XXXXXX")
	mkdir -p "$dir"/{bin,dev,etc,lib/modules,newroot,proc,sys}
	cp "$BUSYBOX" "$dir/bin/busybox"
	for applet in $("$BUSYBOX" --list); do
		[ -e "$dir/bin/$applet" ] || ln -s busybox "$dir/bin/$applet"
	done
	# fsck at boot, as balenaOS's initramfs: this host's e2fsck and fsck.fat
	# (Debian 12, as the image) with the libraries they link.
	local tool lib
	for tool in /sbin/e2fsck /sbin/fsck.fat; do
		cp "$(readlink -f "$tool")" "$dir/bin/${tool##*/}"
		for lib in $(ldd "$tool" | grep -o '/[^ ]*'); do
			mkdir -p "$dir$(dirname "$lib")"
			cp -L "$lib" "$dir$lib"
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
