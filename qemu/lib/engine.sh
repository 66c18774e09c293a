# shellcheck shell=bash
# The container engine of the image and the hostapps made with it.
#
# balenaEngine (a static multi-call binary) comes from BALENA_BIN_DIR when the
# build is given one (balena-engine or balena-engine.xz there); otherwise the
# image keeps Debian's docker.io behind the `balena-engine` wrapper. Either way
# the build runs the image's own engine on this host to make the hostapps: each
# root slot is an engine data root (balena/) holding the OS as a container
# image and a created container, as hostapp-update leaves it on balenaOS.

# Names balenaEngine answers to (a symlink each; the binary looks at argv[0]).
BALENA_NAMES=(balena balenad balena-engine-daemon balena-engine-containerd
	balena-containerd-shim-runc-v2 balena-engine-runc balena-engine-proxy)

# engine_install ROOT BINDIR: puts balenaEngine from BINDIR into ROOT, or keeps
# the docker.io wrapper when BINDIR is empty; prints what the image runs.
engine_install() {
	local root=$1 bindir=$2 n
	if [ -z "$bindir" ]; then
		for n in balena balenad balena-engine-daemon; do ln -sf balena-engine "$root/usr/bin/$n"; done
		echo "Debian docker.io $(chroot "$root" dpkg-query -W -f '${Version}' docker.io) (no balenaEngine given: no delta API)"
		return
	fi
	engine_unpack "$bindir" "$(engine_bin_name "$DEB_ARCH")" "$root" "$STRIP"
	# docker.io brought the engine's dependencies; its own binaries are not used.
	rm -f "$root"/usr/sbin/dockerd "$root"/usr/bin/{docker,docker-proxy,containerd,containerd-shim-runc-v2,runc} \
		"$root"/usr/sbin/runc "$root"/usr/libexec/docker/docker-init
	echo "balenaEngine $("$root/usr/bin/balenad" --version | sed -n 's/.*version \([^,]*\), build \(.*\)/\1 (build \2)/p') from $bindir"
}

# engine_bin_name ARCH: balenaEngine's file name in BALENA_BIN_DIR for Debian architecture
# ARCH (balena-engine for amd64, balena-engine-arm64 for arm64; each maybe .xz).
engine_bin_name() {
	if [ "$1" = amd64 ]; then echo balena-engine; else echo "balena-engine-$1"; fi
}

# engine_unpack BINDIR NAME ROOT [STRIP]: BINDIR/NAME (or NAME.xz) as
# ROOT/usr/bin/balena-engine, stripped with STRIP (if given), with the names it answers to.
engine_unpack() {
	local bindir=$1 name=$2 root=$3 strip=${4:-} n
	mkdir -p "$root/usr/bin"
	if [ -f "$bindir/$name" ]; then
		install -m 0755 "$bindir/$name" "$root/usr/bin/balena-engine"
	elif [ -f "$bindir/$name.xz" ]; then
		xz -dc "$bindir/$name.xz" >"$root/usr/bin/balena-engine"
		chmod 0755 "$root/usr/bin/balena-engine"
	else
		die "$bindir has neither $name nor $name.xz"
	fi
	# Its debug symbols are an eighth of it, and every update payload carries the binary.
	[ -z "$strip" ] || "$strip" "$root/usr/bin/balena-engine"
	for n in "${BALENA_NAMES[@]}"; do ln -sf balena-engine "$root/usr/bin/$n"; done
}

# engine_build_root ROOT BINDIR: sets ENGINE_ROOT, the tree whose engine the build runs on
# this host to make the hostapps: ROOT itself when it is this host's architecture; else
# this host's balenaEngine from BINDIR unpacked into WORK/host-engine (hostapp_import then
# labels the images with ROOT's architecture), or without one ROOT's own, under qemu-user.
# CREATE_PLATFORM: what `create` is told the image is for, when that is not this host.
ENGINE_ROOT=''
CREATE_PLATFORM=''
engine_build_root() {
	local root=$1 bindir=$2 host
	host=$(engine_bin_name "$(dpkg --print-architecture)")
	ENGINE_ROOT=$root
	arch_foreign || return 0
	CREATE_PLATFORM=linux/$DEB_ARCH
	if [ -n "$bindir" ] && { [ -f "$bindir/$host" ] || [ -f "$bindir/$host.xz" ]; }; then
		engine_unpack "$bindir" "$host" "$WORK/host-engine"
		ENGINE_ROOT=$WORK/host-engine
	fi
}

# engine_start ROOT DATAROOT: runs ROOT's engine on this host with its data in
# DATAROOT (no networking: it only imports, creates and saves).
ENGINE_PID=''
ENGINE_SOCK=''
engine_start() {
	local root=$1 dataroot=$2 daemon path i
	engine_stop
	ENGINE_SOCK=$WORK/engine.sock
	if [ -x "$root/usr/bin/balenad" ] && [ ! -e "$root/usr/sbin/dockerd" ]; then
		daemon=$root/usr/bin/balenad
	else
		daemon=$root/usr/sbin/dockerd
	fi
	path=$root/usr/bin:$root/usr/sbin:$PATH
	mkdir -p "$dataroot"
	echo '{}' >"$WORK/engine.json"
	PATH=$path "$daemon" --config-file "$WORK/engine.json" --data-root "$dataroot" --exec-root "$WORK/engine-exec" \
		-H "unix://$ENGINE_SOCK" --pidfile "$WORK/engine.pid" --storage-driver overlay2 \
		--bridge=none --iptables=false --ip-masq=false >"$WORK/engine.log" 2>&1 &
	ENGINE_PID=$!
	for i in $(seq 300); do
		engine version >/dev/null 2>&1 && return 0
		kill -0 "$ENGINE_PID" 2>/dev/null || break
		sleep 0.2
	done
	tail -n 20 "$WORK/engine.log" >&2
	die "the engine ($daemon) did not start on this host (log above)"
}

# engine ARGS: the CLI of the engine engine_start started (ENGINE_ROOT's, else ROOT's).
engine() {
	local root=${ENGINE_ROOT:-${ROOT:?}}
	if [ -x "$root/usr/bin/docker" ]; then
		DOCKER_HOST=unix://$ENGINE_SOCK "$root/usr/bin/docker" "$@"
	else
		DOCKER_HOST=unix://$ENGINE_SOCK "$root/usr/bin/balena-engine" "$@"
	fi
}

# engine_stop: stops it (bounded: SIGKILL after 30 s) and leaves no mount behind.
engine_stop() {
	local i
	[ -n "$ENGINE_PID" ] || return 0
	kill "$ENGINE_PID" 2>/dev/null || true
	for i in $(seq 150); do
		kill -0 "$ENGINE_PID" 2>/dev/null || break
		sleep 0.2
	done
	kill -9 "$ENGINE_PID" 2>/dev/null || true
	wait "$ENGINE_PID" 2>/dev/null || true
	ENGINE_PID=''
	{ grep -o " $WORK/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

# hostapp_import ROOT TAG: the root filesystem ROOT as the single-layer image TAG
# (labelled a hostapp, as balenaOS's are), in the running engine, for DEB_ARCH.
hostapp_import() {
	local root=$1 tag=$2
	tar --numeric-owner -C "$root" -cf - . |
		engine import --change 'LABEL io.balena.features.hostapp=true' --change 'CMD ["/bin/sh"]' - "$tag" >/dev/null
	hostapp_relabel "$tag"
}

# hostapp_relabel TAG: an engine labels what it imports with its own architecture
# (import --platform sets only the OS); when that is not DEB_ARCH, TAG is saved, its
# config's architecture set to DEB_ARCH and loaded back (the layer is the same: only
# the config, hence the image ID, changes), and the mislabelled image removed.
hostapp_relabel() {
	local tag=$1 old dir cfg sum
	old=$(engine image inspect -f '{{.Id}} {{.Architecture}}' "$tag")
	[ "${old#* }" != "$DEB_ARCH" ] || return 0
	dir=$(mktemp -d "$WORK/relabel.XXXXXX")
	engine save -o "$dir/image.tar" "$tag"
	tar -xf "$dir/image.tar" -C "$dir" manifest.json
	cfg=$(jq -r '.[0].Config' "$dir/manifest.json")
	tar -xf "$dir/image.tar" -C "$dir" "$cfg"
	jq -c --arg a "$DEB_ARCH" '.architecture = $a' "$dir/$cfg" >"$dir/config.json"
	sum=$(sha256sum "$dir/config.json" | cut -d' ' -f1)
	mv "$dir/config.json" "$dir/$sum.json"
	jq -c --arg c "$sum.json" '.[0].Config = $c' "$dir/manifest.json" >"$dir/manifest.new"
	mv "$dir/manifest.new" "$dir/manifest.json"
	tar --delete -f "$dir/image.tar" manifest.json "$cfg"
	tar -rf "$dir/image.tar" -C "$dir" --owner=0 --group=0 --numeric-owner "$sum.json" manifest.json
	engine load -q -i "$dir/image.tar" >/dev/null
	engine rmi "${old%% *}" >/dev/null
	rm -rf "$dir"
}

# hostapp_slot ROOT SLOTDIR TAG: a root slot's tree in SLOTDIR holding ROOT as
# hostapp TAG: balena/ (the engine data root), hostapps/<id>/boot, current,
# sbin/init -> ../current/boot/init, boot -> current/boot, counter.
hostapp_slot() {
	local root=$1 slot=$2 tag=$3 cid d
	for d in dev etc balena hostapps mnt/state proc run sbin sys tmp; do mkdir -p "$slot/$d"; done
	: >"$slot/etc/machine-id"
	ln -sfn ../current/boot/init "$slot/sbin/init"
	ln -sfn current/boot "$slot/boot"
	engine_start "${ENGINE_ROOT:-$root}" "$slot/balena"
	hostapp_import "$root" "$tag"
	cid=$(engine create ${CREATE_PLATFORM:+--platform "$CREATE_PLATFORM"} --volume=/boot "$tag" /bin/sh)
	engine_stop
	rm -rf "$slot/balena/tmp" "$slot/balena/runtimes"
	bash "$root/usr/lib/balena/hostapp-entry" "$slot" "$cid"
	echo 1 >"$slot/counter"
}

# hostapp_save ROOT TAG OUT: ROOT as hostapp TAG in `balena-engine save` format,
# uncompressed (the device would spend a minute under emulation on gunzip): the
# update payload hostapp-update -f takes.
hostapp_save() {
	local root=$1 tag=$2 out=$3
	rm -rf "$WORK/save-engine"
	engine_start "${ENGINE_ROOT:-$root}" "$WORK/save-engine"
	hostapp_import "$root" "$tag"
	engine save -o "$out" "$tag"
	engine_stop
	rm -rf "$WORK/save-engine"
}
