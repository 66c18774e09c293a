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
	local mib=$((1024 * 1024)) f i start b ra rb st da ext
	mib_of() { echo $(($(stat -c %s "$1") / mib)); }
	b=$(mib_of "$boot") ra=$(mib_of "$roota") rb=$(mib_of "$rootb") st=$(mib_of "$state") da=$(mib_of "$data")
	# 4 MiB before p1 (as balenaOS); every logical partition starts 1 MiB
	# into its own space (EBR + alignment). Starts are explicit: sfdisk
	# would otherwise put the extended partition in the gap before p1.
	ext=$((4 + b + ra + rb))
	rm -f "$img"
	truncate -s "$((ext + 1 + st + 1 + da + 1))M" "$img"
	quiet sfdisk --quiet "$img" <<-EOS
		label: dos
		unit: sectors
		start=$((4 * 2048)), size=$((b * 2048)), type=c, bootable
		start=$(((4 + b) * 2048)), size=$((ra * 2048)), type=83
		start=$(((4 + b + ra) * 2048)), size=$((rb * 2048)), type=83
		start=$((ext * 2048)), size=$(((1 + st + 1 + da) * 2048)), type=5
		start=$(((ext + 1) * 2048)), size=$((st * 2048)), type=83
		start=$(((ext + 1 + st + 1) * 2048)), size=$((da * 2048)), type=83
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
