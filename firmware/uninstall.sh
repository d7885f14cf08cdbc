#!/bin/sh
# Spinal uninstaller: the reverse of install.sh, idempotent.
#
#   sudo firmware/uninstall.sh            stop and disable the service, remove the unit, udev rule,
#                                         modules-load file, the venv and the boot-config block
#                                         (after a backup); keep /etc/spinal and /var/lib/spinal
#   sudo firmware/uninstall.sh --purge    also remove /etc/spinal, /var/lib/spinal and user spinal
#   firmware/uninstall.sh --dry-run       print every step, change nothing
#   firmware/uninstall.sh --root DIR      operate on an image tree
set -eu

ROOT=/
DRY=0
PURGE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --purge) PURGE=1 ;;
        --root) ROOT=${2:?--root needs a directory}; shift ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "uninstall.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
ROOT=${ROOT%/}
R() { printf '%s%s' "$ROOT" "$1"; }
[ "$ROOT" = "" ] && ON_HOST=1 || ON_HOST=0
if [ "$DRY" = 0 ] && [ "$ON_HOST" = 1 ] && [ "$(id -u)" != 0 ]; then
    echo "uninstall.sh: run as root (sudo), or try --dry-run" >&2
    exit 2
fi

run() {
    if [ "$DRY" = 1 ]; then echo "would run: $*"; else echo "+ $*"; "$@"; fi
}

remove() {
    for p in "$@"; do
        if [ -e "$(R "$p")" ] || [ -L "$(R "$p")" ]; then
            run rm -rf "$(R "$p")"
        else
            echo "ok: $p is not there"
        fi
    done
}

if [ "$ON_HOST" = 1 ] && command -v systemctl >/dev/null 2>&1; then
    if systemctl list-unit-files spinal.service >/dev/null 2>&1 && [ -f /etc/systemd/system/spinal.service ]; then
        run systemctl disable --now spinal.service || true
    else
        echo "ok: spinal.service is not installed"
    fi
fi

remove /etc/systemd/system/spinal.service /etc/udev/rules.d/99-spinal-i2c.rules \
    /etc/modules-load.d/spinal-i2c.conf /opt/spinal

for cfg in /boot/firmware/config.txt /boot/config.txt; do
    path=$(R "$cfg")
    [ -f "$path" ] || continue
    if ! grep -q '^# >>> spinal >>>' "$path"; then
        echo "ok: $cfg has no spinal block"
        continue
    fi
    if [ "$DRY" = 1 ]; then
        echo "would back up $cfg and remove its spinal block"
        continue
    fi
    backup="$path.spinal-backup-$(date +%Y%m%d%H%M%S)"
    n=1
    while [ -e "$backup" ]; do backup="$path.spinal-backup-$(date +%Y%m%d%H%M%S).$n"; n=$((n + 1)); done
    cp -p "$path" "$backup"
    tmp=$(mktemp)
    awk -v b="# >>> spinal >>>" -v e="# <<< spinal <<<" '
        index($0, b) == 1 { skip = 1; next }
        skip && $0 == e { skip = 0; next }
        !skip { print }' "$path" > "$tmp"
    cat "$tmp" > "$path"
    rm -f "$tmp"
    echo "updated: $cfg (spinal block removed; backup: ${backup#"$ROOT"}); I2C stays as it was before spinal"
done

if [ "$PURGE" = 1 ]; then
    remove /etc/spinal /var/lib/spinal
    if [ "$ON_HOST" = 1 ] && id spinal >/dev/null 2>&1; then
        run userdel spinal
    fi
else
    echo "kept: /etc/spinal and /var/lib/spinal (use --purge to remove them and user spinal)"
fi
if [ "$ON_HOST" = 1 ] && command -v systemctl >/dev/null 2>&1; then
    run systemctl daemon-reload
fi
[ "$DRY" = 1 ] && echo "dry run: nothing was changed"
exit 0
