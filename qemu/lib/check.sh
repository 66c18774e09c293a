# shellcheck shell=bash
# Checks of a built root filesystem, run before anything is packed: a unit that would fail at
# every boot fails the build instead, naming itself.

# resolve_in ROOT PATH: PATH with its symlinks followed inside ROOT (absolute links are taken
# as relative to ROOT, as they will be on the device); prints the resolved path under ROOT.
resolve_in() {
	local root=$1 path=$2 i target
	for i in 1 2 3 4 5 6 7 8; do
		[ -L "$root$path" ] || break
		target=$(readlink "$root$path")
		case "$target" in
		/*) path=$target ;;
		*) path=$(dirname "$path")/$target ;;
		esac
	done
	printf '%s\n' "$root$path"
}

# check_units ROOT: for every unit enabled in ROOT (a link in a *.wants or *.requires folder
# of /etc/systemd/system), the program of each Exec* line must exist and be executable, and
# each absolute path it names on the image's own tree (/etc, /usr, /bin, /sbin, /lib) must
# exist. Paths with systemd specifiers or variables, and runtime folders (/run, /dev, /mnt,
# /var, /tmp, /proc, /sys) are left out: they are made at boot.
check_units() {
	local root=$1 problems=() link unit file line cmd arg path
	while IFS= read -r link; do
		unit=$(basename "$link")
		file=''
		for d in /etc/systemd/system /usr/lib/systemd/system /lib/systemd/system; do
			if [ -e "$(resolve_in "$root" "$d/$unit")" ]; then
				file=$(resolve_in "$root" "$d/$unit")
				break
			fi
		done
		# An instance (sshd@.service) or a masked unit (-> /dev/null) has nothing to check here.
		[ -n "$file" ] && [ -s "$file" ] || continue
		# A path or timer unit must name a unit the image has.
		while IFS= read -r line; do
			line=${line#*=}
			[ -e "$root/etc/systemd/system/$line" ] || [ -e "$root/usr/lib/systemd/system/$line" ] ||
				[ -e "$root/lib/systemd/system/$line" ] || problems+=("$unit: triggers $line, which the image does not have")
		done < <(grep -E '^Unit=' "$file")
		while IFS= read -r line; do
			line=${line#*=}
			# Prefixes: - (failure ignored), @, :, +, ! and !!
			line=${line##[-@:+!]}
			line=${line##[-@:+!]}
			read -r -a words <<<"$line"
			[ "${#words[@]}" -gt 0 ] || continue
			cmd=${words[0]}
			case "$cmd" in
			*'$'* | *%*) continue ;;
			/*) ;;
			*) continue ;; # a bare name is looked up in PATH at run time
			esac
			path=$(resolve_in "$root" "$cmd")
			if [ ! -x "$path" ] || [ -d "$path" ]; then
				problems+=("$unit: $cmd is missing or not executable")
				continue
			fi
			for arg in "${words[@]:1}"; do
				arg=${arg#*=}
				arg=${arg%%,*}
				case "$arg" in
				*'$'* | *%* | *'*'*) continue ;;
				/etc/* | /usr/* | /bin/* | /sbin/* | /lib/*) ;;
				*) continue ;;
				esac
				[ -e "$(resolve_in "$root" "$arg")" ] ||
					problems+=("$unit: $cmd names $arg, which the image does not have")
			done
		done < <(grep -E '^Exec(Start|StartPre|StartPost|Reload|Stop|StopPost)=' "$file")
	done < <(find "$root/etc/systemd/system" -mindepth 2 -maxdepth 2 -path '*.wants/*' -o -mindepth 2 -maxdepth 2 -path '*.requires/*' | sort)
	if [ "${#problems[@]}" -gt 0 ]; then
		printf 'error: unit check: %s\n' "${problems[@]}" >&2
		die "the image would boot into failed units: ${problems[*]}"
	fi
}
