# shellcheck shell=bash
# Helpers shared by the emulation scripts (sourced, not run): logging, Debian packages, mounts.

log() { printf '%s [%s] %s\n' "$(date -u +%H:%M:%S)" "${LOG_TAG:-emulation}" "$*" >&2; }
die() { log "error: $*"; exit 2; }

# need_packages CMD:PACKAGE... installs PACKAGE with apt-get when CMD is missing (as `make system-deps` does).
need_packages() {
    local spec missing=()
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null 2>&1 || [ -x "${spec%%:*}" ] || missing+=("${spec#*:}")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    log "installing ${missing[*]} with apt-get"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# mounts_under DIR: the mount points at or below DIR, deepest first.
mounts_under() {
    local dir
    dir=$(realpath -m "$1")
    awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# unmount_all DIR: unmounts everything at or below DIR (lazily when busy); fails if anything is left.
unmount_all() {
    local m
    for m in $(mounts_under "$1"); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: could not unmount $m"
    done
    [ -z "$(mounts_under "$1")" ]
}

# remove_tree DIR: rm -rf that refuses to descend into anything still mounted (a bound /dev or /proc).
remove_tree() {
    [ -e "$1" ] || return 0
    unmount_all "$1" || die "$1 still has mounts; not removing it"
    rm -rf --one-file-system "$1"
}

# step_result NAME LOGFILE RC T0: records a step's PASS/FAIL line (pytest's counts, the failing lines) in
# SUMMARY and sets FAILED=1 on a failure; both scripts' `step` run their command, then call this.
step_result() {
    local name=$1 logfile=$2 rc=$3 t0=$4 detail counts
    counts=$(grep -E '^=+ .*(passed|failed|error).* in [0-9.]+s' "$logfile" | tail -n 1 | tr -d '=' | xargs || true)
    if [ "$rc" = 0 ]; then
        SUMMARY+=("PASS  $name  ($((SECONDS - t0)) s${counts:+; $counts})")
        return 0
    fi
    # shellcheck disable=SC2034 # FAILED is read by the script that sources this file
    FAILED=1
    SUMMARY+=("FAIL  $name  (exit $rc, $((SECONDS - t0)) s${counts:+; $counts}; log: ${logfile#"$ROOT"/})")
    detail=$(grep -E '^(FAILED|ERROR) |^FAIL |^error:|^Error:|Segmentation|Illegal instruction' "$logfile" | head -40 || true)
    [ -n "$detail" ] || detail=$(tail -n 3 "$logfile")
    while IFS= read -r line; do SUMMARY+=("        $line"); done <<<"$detail"
}
