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
