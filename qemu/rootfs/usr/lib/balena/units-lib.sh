# shellcheck shell=bash
# Helpers for the config.json units (os-config-json, apply-conf, boot-setup).

VOLATILE=/var/volatile
log() { echo "${0##*/}: $*" >&2; }

# put_file DST MODE: replace DST with stdin when the content differs (temp file
# + rename, so readers never see half a file); returns 0 when it changed.
put_file() {
	local dst=$1 mode=${2:-0644} tmp
	tmp="$(dirname "$dst")/.$(basename "$dst").$$"
	cat >"$tmp" || { rm -f "$tmp"; return 1; }
	if [ -e "$dst" ] && cmp -s "$tmp" "$dst"; then
		rm -f "$tmp"
		return 1
	fi
	chmod "$mode" "$tmp"
	mv -f "$tmp" "$dst"
}

# put_file_inplace DST: as put_file but rewrites DST in place (a bind-mounted
# file cannot be renamed over).
put_file_inplace() {
	local dst=$1 new
	new=$(cat)
	[ -e "$dst" ] && [ "$(cat "$dst")" = "$new" ] && return 1
	printf '%s\n' "$new" >"$dst"
}
