# shellcheck shell=bash
# resin-boot contents: GRUB EFI binary + plain-text grub.cfg + grubenv,
# the default config.json, os-release, an empty system-connections/.

GRUB_MODULES="part_msdos part_gpt fat ext2 normal configfile linux loadenv test regexp serial terminal echo search search_label sleep reboot halt cat ls efi_gop all_video"

# bootpart_tree DIR GRUBDIR OSRELEASE
bootpart_tree() {
	local dir=$1 grubdir=$2 osrel=$3
	mkdir -p "$dir/EFI/BOOT" "$dir/system-connections" "$dir/splash"
	# grub-mkstandalone embeds early.cfg, which chains to EFI/BOOT/grub.cfg.
	quiet grub-mkstandalone -O x86_64-efi -o "$dir/EFI/BOOT/BOOTX64.EFI" \
		--modules="$GRUB_MODULES" --install-modules="$GRUB_MODULES" \
		--locales= --fonts= --themes= \
		"boot/grub/grub.cfg=$grubdir/early.cfg"
	cp "$grubdir/grub.cfg" "$dir/EFI/BOOT/grub.cfg"
	grub-editenv "$dir/EFI/BOOT/grubenv" create
	grub-editenv "$dir/EFI/BOOT/grubenv" set resin_root_part=2 upgrade_available=0 bootcount=0
	# Like a fresh balenaOS download: the device type, no uuid (the device makes one).
	printf '{"deviceType":"%s","developmentMode":true,"persistentLogging":false}\n' "$MACHINE" >"$dir/config.json"
	cp "$osrel" "$dir/os-release"
}
