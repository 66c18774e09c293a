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
	local root=$1 cache=$2 pkgs all=("${ROOTFS_PACKAGES[@]}" "${ARCH_PACKAGES[@]}")
	pkgs=$(IFS=,; echo "${all[*]}")
	mkdir -p "$cache"
	quiet debootstrap --arch="$DEB_ARCH" --variant=minbase --cache-dir="$cache" \
		--include="$pkgs" bookworm "$root" "$DEBIAN_MIRROR"
}

# rootfs_configure DIR OVERLAY: services, users and balenaOS files.
rootfs_configure() {
	local root=$1 overlay=$2
	# Overlay files (units, scripts, configs), owned by root.
	tar -C "$overlay" --owner=0 --group=0 -cf - . | tar -C "$root" -xpf -
	ln -sf balena-engine "$root/usr/bin/balena"
	ln -sf balena-engine "$root/usr/bin/balena-engine-daemon"

	# Mount points made by the initramfs, and of the resin-state bind mounts
	# (boot-setup); ssh host keys live on resin-state.
	mkdir -p "$root"/mnt/{boot,state,data,sysroot/active,sysroot/inactive} \
		"$root/etc/ssh/hostkeys" "$root/home/root/.ssh" "$root/var/lib/chrony" \
		"$root/etc/NetworkManager/system-connections" "$root/etc/NetworkManager/dispatcher.d"
	chmod 0700 "$root/home/root/.ssh"
	rm -f "$root"/etc/ssh/ssh_host_*

	# Per-device identity is made at first boot, never baked in.
	: >"$root/etc/machine-id"
	echo balena >"$root/etc/hostname"
	rm -rf "$root/var/log/journal"
	# os-release: /usr/lib/os-release of the slot (rootfs_set_version), nothing added at boot.
	ln -sf ../usr/lib/os-release "$root/etc/os-release"

	# Empty root password: development mode logs in without one (getty,
	# sshd with PermitEmptyPasswords); production allows keys only.
	chroot "$root" passwd -q -d root

	# Our units replace Debian's ssh/docker ones; the getty generator
	# would add a serial getty in production mode too.
	chroot "$root" systemctl -q disable ssh.service ssh.socket getty@tty1.service 2>/dev/null || true
	chroot "$root" systemctl -q mask ssh.service ssh.socket docker.service docker.socket \
		containerd.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
		e2scrub_all.timer e2scrub_reap.service fstrim.timer NetworkManager-wait-online.service
	# Boot work a VM never needs, each a program start at every boot: debug, tracing,
	# hugepage and fuse filesystems, drivers for GPUs, device-mapper and pstore (none in
	# the image), and the per-user service manager, whose start every first login after a
	# boot waits for (logind replies to pam_systemd only once user@UID.service is up).
	chroot "$root" systemctl -q mask dev-hugepages.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
		sys-fs-fuse-connections.mount modprobe@drm.service modprobe@dm_mod.service modprobe@efi_pstore.service \
		modprobe@fuse.service systemd-pstore.service user@.service
	mkdir -p "$root/etc/systemd/system-generators"
	ln -sf /dev/null "$root/etc/systemd/system-generators/systemd-getty-generator"
	# Generators run before systemd starts anything, at every boot and daemon-reload, and
	# each costs a program start (seconds together under emulation). These find nothing
	# here: no GPT auto-mounts, SysV scripts (every service has a unit), rc.local,
	# encrypted/verity/integrity volumes, hibernation, offline updates or systemd.run=.
	local g
	for g in gpt-auto sysv rc-local cryptsetup veritysetup integritysetup hibernate-resume \
		system-update run bless-boot; do
		ln -sf /dev/null "$root/etc/systemd/system-generators/systemd-$g-generator"
	done
	chroot "$root" systemctl -q enable "${ROOTFS_UNITS[@]}"
}

# Units enabled in the image: config.json (config-json.path -> config-json.service ->
# /var/volatile/<unit>.json -> <unit>-conf.path -> <unit>.service), boot set-up, services.
ROOTFS_CONF_UNITS=(balena-hostname development-features balena-net-config balena-ntp-config
	os-networkmanager os-sshkeys os-udevrules)
ROOTFS_UNITS=(balena-boot-setup.service config-json.service config-json.path
	"${ROOTFS_CONF_UNITS[@]/%/.service}" "${ROOTFS_CONF_UNITS[@]/%/-conf.path}"
	balena-persistent-logs.service zram-swap.service sshd.socket recover-sshd-socket.timer
	dnsmasq.service balena.service rollback-altboot.service rollback-health.service expand-data.service
	NetworkManager.service avahi-daemon.service chrony.service)

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
	# Every MiB here is a MiB the device reads, hashes and writes in each host OS update
	# (hostapp-update loads this tree as one layer, minutes per load under emulation):
	# - udev's hardware database (names and keymaps for real hardware; a VM needs none,
	#   and without hwdb.d systemd-hwdb-update has nothing to rebuild);
	# - glibc's iconv modules (UTF-8 and the other built-in charsets stay);
	# - perl (only dpkg's and debconf's maintainer scripts use it; the device runs none).
	rm -rf "$root"/usr/lib/udev/hwdb.d "$root"/usr/lib/udev/hwdb.bin "$root"/etc/udev/hwdb.bin \
		"$root"/usr/lib/"$LIBDIR"/gconv \
		"$root"/usr/bin/perl "$root"/usr/bin/perl5.* "$root"/usr/lib/"$LIBDIR"/perl-base \
		"$root"/usr/lib/"$LIBDIR"/perl "$root"/usr/share/perl "$root"/usr/share/perl5
	cat >"$root/etc/dpkg/dpkg.cfg.d/01-balena-nodoc" <<-'EOC'
		path-exclude=/usr/share/doc/*
		path-exclude=/usr/share/man/*
		path-exclude=/usr/share/locale/*
		path-exclude=/usr/share/info/*
	EOC
}

# os_release_value VALUE: VALUE as balenaOS writes it: double-quoted (every value that is
# not purely alphanumeric must be; NAME="balenaOS" is too).
os_release_value() {
	printf '"%s"' "$1"
}

# rootfs_set_version DIR VERSION: os-release, /etc/issue and /etc/issue.net of
# the slot, then the fingerprint (the rootfs is final by then).
rootfs_set_version() {
	local root=$1 version=$2 k v
	while IFS='=' read -r k v; do
		printf '%s=%s\n' "$k" "$(os_release_value "$v")"
	done >"$root/usr/lib/os-release" <<-EOC
		ID=balena-os
		NAME=balenaOS
		VERSION=$version
		VERSION_ID=$version
		PRETTY_NAME=balenaOS $version
		MACHINE=$MACHINE
		META_BALENA_VERSION=$version
		SLUG=$MACHINE
		BALENA_BOARD_REV=reference
	EOC
	ln -sf ../usr/lib/os-release "$root/etc/os-release"
	rootfs_mark_updated "$root"
	printf 'balenaOS %s \\n \\l\n\n' "$version" >"$root/etc/issue"
	printf 'balenaOS %s\n' "$version" >"$root/etc/issue.net"
	rootfs_fingerprint "$root"
}

# rootfs_mark_updated DIR: /etc/.updated and /var/.updated as systemd-update-done writes
# them (Debian ships no such program): /etc and /var are up to date with /usr, so units with
# ConditionNeedsUpdate (systemd-sysusers) do not run at every boot, which they would: those
# folders are fresh overlays at each boot. Call it once /usr's own entries are final.
rootfs_mark_updated() {
	local root=$1 d t
	t=$(stat -c %.9Y "$root/usr")
	for d in etc var; do
		printf 'TIMESTAMP_NSEC=%s\n' "${t/./}" >"$root/$d/.updated"
		touch -r "$root/usr" "$root/$d/.updated"
	done
}

# rootfs_fingerprint DIR: /balenaos.fingerprint, "md5  /path" for every file of
# the read-only OS (itself excluded), as balenaOS ships. /etc, /var, /home and /root
# are left out: the device writes them (overlays, state bind mounts, logs), so their
# files may differ from the build. Call it last, once the rootfs is final
# (rootfs_set_version does).
rootfs_fingerprint() {
	local root=$1
	(
		cd "$root" &&
			find . \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./run -o -path ./tmp -o -path ./etc \
				-o -path ./var -o -path ./home -o -path ./root -o -path ./mnt \) -prune -o \
				-type f ! -path ./balenaos.fingerprint ! -path ./.balenaos.fingerprint.tmp -print0 | LC_ALL=C sort -z | xargs -0 -r md5sum
	) | sed 's#^\(\\\?[0-9a-f]\{32\}  \)\./#\1/#' >"$root/.balenaos.fingerprint.tmp"
	mv -f "$root/.balenaos.fingerprint.tmp" "$root/balenaos.fingerprint"
}

# state_seed ROOT OVERLAY: OVERLAY/<path> for each path of ROOT's state bind mounts
# (/usr/lib/balena/state-binds), a copy of ROOT's, as boot-setup makes them when they are
# missing: the device's first boot then copies nothing.
state_seed() {
	local root=$1 overlay=$2 p
	while read -r p; do
		case "$p" in '' | '#'*) continue ;; esac
		mkdir -p "$overlay$(dirname "$p")"
		if [ -d "$root$p" ]; then
			mkdir -p "$overlay$p"
			cp -a "$root$p/." "$overlay$p/"
		elif [ -e "$root$p" ]; then
			cp -a "$root$p" "$overlay$p"
		fi
	done <"$root/usr/lib/balena/state-binds"
}
