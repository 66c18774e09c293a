# shellcheck shell=bash
# Helpers for the config.json units (os-config-json, apply-conf, boot-setup).
# They run at every boot, where each program started costs tens of milliseconds
# under emulation: files are read and compared by the shell itself.

VOLATILE=/var/volatile
log() { echo "${0##*/}: $*" >&2; }

# put_file DST MODE: replace DST with stdin when the content differs (temp file
# + rename, so readers never see half a file); returns 0 when it changed. A DST
# that does not exist yet (at boot, /run and /var/volatile are empty) is written
# directly: whoever reads it is ordered after its writer, or re-reads it once its
# .path unit fires again. (What goes through it is text: no NUL bytes.)
put_file() {
	local dst=$1 mode=${2:-0644} tmp new='' old='' mask
	IFS= read -r -d '' new || :
	printf -v mask '%03o' $((0777 & ~8#${mode#0}))
	if [ ! -e "$dst" ]; then
		# Created with its mode (umask in a subshell): no chmod to run.
		(umask "$mask" && printf '%s' "$new" >"$dst")
		return
	fi
	IFS= read -r -d '' old <"$dst" || :
	[ "$old" != "$new" ] || return 1
	tmp="${dst%/*}/.${dst##*/}.$$"
	(umask "$mask" && printf '%s' "$new" >"$tmp") || {
		rm -f "$tmp"
		return 1
	}
	mv -f "$tmp" "$dst"
}

# put_file_inplace DST: as put_file but rewrites DST in place (a bind-mounted
# file cannot be renamed over); trailing newlines of stdin are dropped, one is written.
put_file_inplace() {
	local dst=$1 new='' old=''
	IFS= read -r -d '' new || :
	while [ "${new%$'\n'}" != "$new" ]; do new=${new%$'\n'}; done
	if [ -e "$dst" ]; then
		IFS= read -r -d '' old <"$dst" || :
		while [ "${old%$'\n'}" != "$old" ]; do old=${old%$'\n'}; done
		[ "$old" != "$new" ] || return 1
	fi
	printf '%s\n' "$new" >"$dst"
}
