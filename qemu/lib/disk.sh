# shellcheck shell=bash
# Filesystems are made from directories (mkfs.ext4 -d, mkfs.vfat + mcopy)
# and written into the disk image at their partition offsets: no loop
# devices, no mounting.

# mkext4 FILE SIZE_MIB LABEL [DIR]
mkext4() {
	local file=$1 size=$2 label=$3 dir=${4:-}
	rm -f "$file"
	truncate -s "${size}M" "$file"
	quiet mkfs.ext4 -q -F -b 4096 -T default -m 0 -L "$label" \
		-E root_owner=0:0 ${dir:+-d "$dir"} "$file"
}

# mkvfat FILE SIZE_MIB LABEL DIR
mkvfat() {
	local file=$1 size=$2 label=$3 dir=$4
	rm -f "$file"
	quiet mkfs.vfat -C -n "$label" "$file" $((size * 1024))
	quiet mcopy -s -p -Q -i "$file" "$dir"/* ::/
}

# disk_assemble IMAGE BOOT ROOTA ROOTB STATE DATA: msdos table as balenaOS
# x86: p1 boot, p2 rootA, p3 rootB, p4 extended with p5 state, p6 data.
disk_assemble() {
	local img=$1 boot=$2 roota=$3 rootb=$4 state=$5 data=$6
	local mib=$((1024 * 1024)) total f i start
	mib_of() { echo $(($(stat -c %s "$1") / mib)); }
	# 4 MiB before p1 (as balenaOS), 1 MiB per logical partition for its
	# EBR and alignment, 1 MiB spare at the end.
	total=$((4 + $(mib_of "$boot") + $(mib_of "$roota") + $(mib_of "$rootb") + 2 + $(mib_of "$state") + 1 + $(mib_of "$data") + 1))
	rm -f "$img"
	truncate -s "${total}M" "$img"
	quiet sfdisk --quiet "$img" <<-EOS
		label: dos
		unit: sectors
		start=8192, size=$(($(mib_of "$boot") * 2048)), type=c, bootable
		size=$(($(mib_of "$roota") * 2048)), type=83
		size=$(($(mib_of "$rootb") * 2048)), type=83
		type=5
		size=$(($(mib_of "$state") * 2048)), type=83
		size=$(($(mib_of "$data") * 2048)), type=83
	EOS
	i=0
	for f in "$boot" "$roota" "$rootb" "" "$state" "$data"; do
		i=$((i + 1))
		[ -n "$f" ] || continue
		start=$(sfdisk -J "$img" | jq ".partitiontable.partitions[] | select(.node == \"${img}${i}\") | .start")
		[ -n "$start" ] || die "partition $i missing in $img"
		dd if="$f" of="$img" bs=4M conv=notrunc,sparse oflag=seek_bytes seek=$((start * 512)) status=none
	done
}
