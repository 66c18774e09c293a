# shellcheck shell=bash
# GRUB on resin-boot (qemux86-64): the EFI binary (grub-mkstandalone), the plain-text
# grub.cfg and grubenv.

GRUB_MODULES="part_msdos part_gpt fat ext2 normal configfile linux loadenv test regexp serial terminal echo search search_label sleep reboot halt cat ls efi_gop all_video"

# bootloader_grub DIR GRUBDIR
bootloader_grub() {
	local dir=$1 grubdir=$2
	mkdir -p "$dir/EFI/BOOT"
	# grub-mkstandalone embeds early.cfg, which chains to EFI/BOOT/grub.cfg.
	quiet grub-mkstandalone -O x86_64-efi -o "$dir/EFI/BOOT/BOOTX64.EFI" \
		--modules="$GRUB_MODULES" --install-modules="$GRUB_MODULES" \
		--locales= --fonts= --themes= \
		"boot/grub/grub.cfg=$grubdir/early.cfg"
	cp "$grubdir/grub.cfg" "$dir/EFI/BOOT/grub.cfg"
	grub-editenv "$dir/EFI/BOOT/grubenv" create
	grub-editenv "$dir/EFI/BOOT/grubenv" set resin_root_part=2 upgrade_available=0 bootcount=0
}
