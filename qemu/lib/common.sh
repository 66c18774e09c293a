# shellcheck shell=bash
# Shared helpers for qemu/build.sh and its steps. Sourced, never run.

# Progress line in the format the harness parses: "==> [N/M] what".
STEP=0
STEPS=${STEPS:-1}
STEP_TIMES=''
STEP_START=$SECONDS
step() {
	[ "$STEP" = 0 ] || STEP_TIMES+=" $STEP:$((SECONDS - STEP_START))s"
	STEP_START=$SECONDS
	STEP=$((STEP + 1))
	printf '==> [%d/%d] %s\n' "$STEP" "$STEPS" "$*"
}
# Seconds spent per step, for the final summary line.
step_times() { echo "${STEP_TIMES# } $STEP:$((SECONDS - STEP_START))s"; }

# One-line error on stderr, non-zero exit.
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# Quiet a noisy command, but show its output if it fails.
quiet() {
	local log
	log=$(mktemp)
	if ! "$@" >"$log" 2>&1; then
		tail -n 30 "$log" >&2
		rm -f "$log"
		die "command failed: $*"
	fi
	rm -f "$log"
}

# require_tools "cmd:debian-package" ... : every missing tool is named at once.
require_tools() {
	local spec cmd pkg missing=()
	for spec in "$@"; do
		cmd=${spec%%:*}
		pkg=${spec#*:}
		if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -e "$cmd" ]; then
			missing+=("$cmd (apt-get install $pkg)")
		fi
	done
	if [ "${#missing[@]}" -gt 0 ]; then
		local list
		list=$(printf '%s, ' "${missing[@]}")
		die "missing host tools: ${list%, }"
	fi
}

# Size of a directory tree in MiB (disk usage, rounded up).
dir_mib() {
	du -s --block-size=1M "$1" | cut -f1
}

# Round $1 up to a multiple of $2.
round_up() {
	echo $(( ($1 + $2 - 1) / $2 * $2 ))
}
