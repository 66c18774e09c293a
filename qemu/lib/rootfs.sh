# shellcheck shell=bash
# Root filesystem: Debian bookworm minbase + the balenaOS behaviour overlay.

# Debian packages in the image, beyond minbase. debootstrap resolves plain
# Depends only, so virtual alternatives are named (libpam-systemd is the
# logind polkitd needs, which NetworkManager needs).
ROOTFS_PACKAGES=(
	systemd systemd-sysv libpam-systemd udev dbus kmod
	openssh-server avahi-daemon libnss-mdns
	network-manager dnsmasq-base chrony
	docker.io iptables
	jq iproute2 util-linux fdisk e2fsprogs zstd ca-certificates curl
)
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# rootfs_bootstrap DIR CACHE: debootstrap, reusing .debs from CACHE.
rootfs_bootstrap() {
	local root=$1 cache=$2 pkgs
	pkgs=$(IFS=,; echo "${ROOTFS_PACKAGES[*]}")
	mkdir -p "$cache"
	quiet debootstrap --variant=minbase --cache-dir="$cache" \
		--include="$pkgs" bookworm "$root" "$DEBIAN_MIRROR"
}

# rootfs_configure DIR OVERLAY: services, users and balenaOS files.
rootfs_configure() {
	local root=$1 overlay=$2
	# Overlay files (units, scripts, configs), owned by root.
	tar -C "$overlay" --owner=0 --group=0 -cf - . | tar -C "$root" -xpf -
	ln -sf balena-engine "$root/usr/bin/balena"
	ln -sf balena-engine "$root/usr/bin/balena-engine-daemon"

	# Every folder a unit names: packages no longer ship /etc/dnsmasq.d (dnsmasq-base), and
	# dnsmasq refuses to start without its conf-dir.
	mkdir -p "$root/etc/dnsmasq.d"

	# Mount points made by the initramfs; ssh host keys live on resin-state.
	mkdir -p "$root"/mnt/{boot,state,data,sysroot/active,sysroot/inactive}
	rm -f "$root"/etc/ssh/ssh_host_*
	ln -sfn /mnt/state/root-overlay/etc/ssh/hostkeys "$root/etc/ssh/hostkeys"

	# Per-device identity is made at first boot, never baked in.
	: >"$root/etc/machine-id"
	echo balena >"$root/etc/hostname"
	rm -rf "$root/var/log/journal"

	# Empty root password: development mode logs in without one (getty,
	# sshd with PermitEmptyPasswords); production allows keys only.
	chroot "$root" passwd -q -d root

	# Our units replace Debian's ssh/docker ones; the getty generator
	# would add a serial getty in production mode too.
	chroot "$root" systemctl -q disable ssh.service ssh.socket getty@tty1.service 2>/dev/null || true
	chroot "$root" systemctl -q mask ssh.service ssh.socket docker.service docker.socket \
		containerd.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
		e2scrub_all.timer e2scrub_reap.service fstrim.timer NetworkManager-wait-online.service
	# mDNS only on real NICs, not on the engine's bridge.
	sed -i 's/^#\?deny-interfaces=.*/deny-interfaces=docker0,balena0,supervisor0/' "$root/etc/avahi/avahi-daemon.conf"
	mkdir -p "$root/etc/systemd/system-generators"
	ln -sf /dev/null "$root/etc/systemd/system-generators/systemd-getty-generator"
	chroot "$root" systemctl -q enable sshd.socket config-json.service config-json.path \
		dnsmasq.service balena.service rollback-altboot.service rollback-health.service expand-data.service \
		NetworkManager.service avahi-daemon.service chrony.service
}

# rootfs_trim DIR: no docs, man pages, locales or package caches.
rootfs_trim() {
	local root=$1
	rm -rf "$root"/usr/share/{doc,man,info,locale,lintian,bug}/* \
		"$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
		"$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
		"$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/*
	# docker.io extras the engine does not run: libnetwork test tools, the
	# containerd CLI and the legacy v1 shims (dockerd uses runc.v2).
	rm -f "$root"/usr/bin/{dnet,ctr,containerd-shim,containerd-shim-runc-v1} "$root"/usr/sbin/ovrouter
	cat >"$root/etc/dpkg/dpkg.cfg.d/01-balena-nodoc" <<-'EOC'
		path-exclude=/usr/share/doc/*
		path-exclude=/usr/share/man/*
		path-exclude=/usr/share/locale/*
		path-exclude=/usr/share/info/*
	EOC
}

# rootfs_set_version DIR VERSION: os-release of the slot (VARIANT_ID is
# added at boot, from developmentMode).
rootfs_set_version() {
	local root=$1 version=$2
	cat >"$root/usr/lib/os-release" <<-EOC
		ID="balena-os"
		NAME="balenaOS"
		VERSION="$version"
		VERSION_ID="$version"
		PRETTY_NAME="balenaOS $version (reference image, Debian 12)"
		ID_LIKE="debian"
		MACHINE="qemux86-64"
		SLUG="qemux86-64"
		META_BALENA_VERSION="$version"
		BALENA_BOARD_REV="reference"
	EOC
}
