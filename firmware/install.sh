#!/bin/sh
# Spinal installer for Raspberry Pi OS (and other systemd Linux boards).
#
#   sudo firmware/install.sh [--bundle FILE] [--start]       install or upgrade, idempotently
#   firmware/install.sh --dry-run                            print every step, change nothing
#   firmware/install.sh --root /tmp/img --no-venv            install into an image tree (no users, no systemctl)
#
# What it does (each step is skipped when already done):
#   1. group i2c and system user spinal (member of i2c), unless --root is not /
#   2. a venv in /opt/spinal/venv with spinal[device] (from this checkout, or --package SPEC)
#   3. /etc/systemd/system/spinal.service, /etc/udev/rules.d/99-spinal-i2c.rules,
#      /etc/modules-load.d/spinal-i2c.conf, /etc/spinal/spinal.toml (only if absent; the example
#      always goes to /etc/spinal/spinal.example.toml)
#   4. the I2C lines of firmware/boot-config.txt in /boot/firmware/config.txt (Bookworm and later)
#      or /boot/config.txt (older), inside a "# >>> spinal >>>" block, after a backup
#   5. --bundle FILE: copied to /var/lib/spinal/model.spinal (atomically: copy, then rename)
#   6. systemctl daemon-reload + enable (and start with --start); udev reload
# Undo with firmware/uninstall.sh.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/.." && pwd)
ROOT=/
DRY=0
VENV=1
START=0
BOOT=1
BUNDLE=
PACKAGE=
PYTHON=${PYTHON:-python3}
MARK_BEGIN="# >>> spinal >>> (managed by spinal's install.sh; uninstall.sh removes it)"
MARK_END="# <<< spinal <<<"

usage() {
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --root) ROOT=${2:?--root needs a directory}; shift ;;
        --no-venv) VENV=0 ;;
        --no-boot) BOOT=0 ;;
        --start) START=1 ;;
        --bundle) BUNDLE=${2:?--bundle needs a file}; shift ;;
        --package) PACKAGE=${2:?--package needs a pip requirement}; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

ROOT=${ROOT%/}
R() { printf '%s%s' "$ROOT" "$1"; }   # a path inside the target root

run() {
    if [ "$DRY" = 1 ]; then
        echo "would run: $*"
    else
        echo "+ $*"
        "$@"
    fi
}

# install_file SRC DEST MODE: copy when different (atomic rename), else say it is up to date.
install_file() {
    src=$1; dest=$(R "$2"); mode=$3
    if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
        echo "ok: $2 is up to date"
        return
    fi
    if [ "$DRY" = 1 ]; then
        echo "would install: $src -> $2 (mode $mode)"
        return
    fi
    mkdir -p "$(dirname "$dest")"
    cp "$src" "$dest.spinal-new"
    chmod "$mode" "$dest.spinal-new"
    mv -f "$dest.spinal-new" "$dest"
    echo "installed: $2"
}

if [ -n "$BUNDLE" ] && [ ! -f "$BUNDLE" ]; then
    echo "install.sh: --bundle $BUNDLE: no such file" >&2
    exit 2
fi
if [ "$DRY" = 0 ] && [ "$ROOT" = "" ] && [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (sudo), or try --dry-run" >&2
    exit 2
fi
[ "$ROOT" = "" ] && ON_HOST=1 || ON_HOST=0

# 1. group and user -----------------------------------------------------------------------------
if [ "$ON_HOST" = 1 ]; then
    if getent group i2c >/dev/null 2>&1; then
        echo "ok: group i2c exists"
    else
        run groupadd --system i2c
    fi
    if id spinal >/dev/null 2>&1; then
        echo "ok: user spinal exists"
        if ! id -nG spinal | tr ' ' '\n' | grep -qx i2c; then
            run usermod -aG i2c spinal
        fi
    else
        run useradd --system --user-group --groups i2c --home-dir /var/lib/spinal --no-create-home \
            --shell /usr/sbin/nologin --comment "Spinal inference daemon" spinal
    fi
else
    echo "skip: users and groups (target root $ROOT is not this system; create user spinal in group i2c there)"
fi

# 2. the venv -------------------------------------------------------------------------------------
if [ "$VENV" = 1 ]; then
    venv=$(R /opt/spinal/venv)
    if [ -x "$venv/bin/python" ]; then
        echo "ok: venv /opt/spinal/venv exists"
    else
        run "$PYTHON" -m venv "$venv"
    fi
    run "$venv/bin/pip" install --quiet --upgrade pip
    run "$venv/bin/pip" install --quiet "${PACKAGE:-${SRC}[device]}"
else
    echo "skip: venv (--no-venv)"
fi

# 3. files ---------------------------------------------------------------------------------------
install_file "$HERE/spinal.service" /etc/systemd/system/spinal.service 0644
install_file "$HERE/99-spinal-i2c.rules" /etc/udev/rules.d/99-spinal-i2c.rules 0644
install_file "$HERE/modules-load-spinal.conf" /etc/modules-load.d/spinal-i2c.conf 0644
install_file "$HERE/spinal.example.toml" /etc/spinal/spinal.example.toml 0644
install_file "$SRC/README.md" /opt/spinal/share/README.md 0644
if [ -f "$(R /etc/spinal/spinal.toml)" ]; then
    echo "ok: /etc/spinal/spinal.toml exists (kept; compare with spinal.example.toml)"
else
    install_file "$HERE/spinal.example.toml" /etc/spinal/spinal.toml 0640
fi

# 4. boot config ---------------------------------------------------------------------------------
BOOT_CHANGED=0
if [ "$BOOT" = 1 ]; then
    cfg=
    for candidate in /boot/firmware/config.txt /boot/config.txt; do
        if [ -f "$(R "$candidate")" ]; then cfg=$candidate; break; fi
    done
    if [ -z "$cfg" ]; then
        echo "skip: no /boot/firmware/config.txt or /boot/config.txt (not a Raspberry Pi?); enable I2C yourself"
    else
        path=$(R "$cfg")
        tmp=$(mktemp)
        # Everything but an old spinal block, then the current block.
        awk -v b="# >>> spinal >>>" -v e="$MARK_END" '
            index($0, b) == 1 { skip = 1; next }
            skip && $0 == e { skip = 0; next }
            !skip { print }' "$path" > "$tmp"
        { echo "$MARK_BEGIN"; grep -v '^#' "$HERE/boot-config.txt" | grep -v '^$'; echo "$MARK_END"; } >> "$tmp"
        if cmp -s "$tmp" "$path"; then
            echo "ok: $cfg already enables I2C (spinal block up to date)"
        elif [ "$DRY" = 1 ]; then
            echo "would back up $cfg and write the spinal block:"
            diff "$path" "$tmp" | sed 's/^/    /' || true
        else
            backup="$path.spinal-backup-$(date +%Y%m%d%H%M%S)"
            n=1
            while [ -e "$backup" ]; do backup="$path.spinal-backup-$(date +%Y%m%d%H%M%S).$n"; n=$((n + 1)); done
            cp -p "$path" "$backup"
            cat "$tmp" > "$path"
            echo "updated: $cfg (backup: ${backup#"$ROOT"}); reboot for it to take effect"
            BOOT_CHANGED=1
        fi
        rm -f "$tmp"
    fi
else
    echo "skip: boot config (--no-boot)"
fi

# 5. the bundle ----------------------------------------------------------------------------------
if [ -n "$BUNDLE" ]; then
    install_file "$BUNDLE" /var/lib/spinal/model.spinal 0640
fi
if [ "$DRY" = 0 ] && [ "$ON_HOST" = 1 ]; then
    mkdir -p /var/lib/spinal
    chown spinal:spinal /var/lib/spinal
    [ -f /var/lib/spinal/model.spinal ] && chown spinal:spinal /var/lib/spinal/model.spinal
    chown root:spinal /etc/spinal /etc/spinal/spinal.toml
    chmod 0750 /etc/spinal
fi

# 6. systemd and udev ----------------------------------------------------------------------------
if [ "$ON_HOST" = 1 ]; then
    if command -v udevadm >/dev/null 2>&1; then
        run udevadm control --reload-rules
        run udevadm trigger --subsystem-match=i2c-dev
    fi
    run modprobe i2c-dev || true
    run systemctl daemon-reload
    run systemctl enable spinal.service
    if [ "$START" = 1 ]; then
        run systemctl restart spinal.service
    fi
    echo "next: edit /etc/spinal/spinal.toml, check it with:"
    echo "  sudo -u spinal /opt/spinal/venv/bin/spinal run --config /etc/spinal/spinal.toml --check"
    echo "then: sudo systemctl start spinal && systemctl status spinal"
else
    echo "skip: systemctl and udevadm (target root $ROOT); enable spinal.service on first boot"
fi
[ "$BOOT_CHANGED" = 1 ] && echo "note: the boot config changed; reboot to enable I2C"
[ "$DRY" = 1 ] && echo "dry run: nothing was changed"
exit 0
