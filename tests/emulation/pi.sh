#!/usr/bin/env bash
# `make test-pi`: the device side on an emulated Raspberry Pi (Debian bookworm arm64 = Raspberry Pi OS 12,
# Python 3.11, only the device extras), under qemu-user-static. Runs, once per emulated CPU:
#   1. the device tests (the Makefile's DEVICE_TESTS, -m "not slow", SPINAL_DEVICE_ONLY=1),
#   2. `spinal verify` on every bundle in models/,
#   3. the demo (firmware/demo.py: the daemon on a simulated MPU-6050 with the imu-activity bundle).
# Exits 1 if any of them fails, 2 if the emulated Pi could not be set up.
#
# The root filesystem is cached outside the clone, in two layers, each built in a *.partial directory and
# renamed when complete (a half-built one is never used):
#   $SPINAL_PI_CACHE/base-<hash of the recipe>/   debootstrap + python3, python3-venv, mosquitto (~7 min cold)
#   $SPINAL_PI_CACHE/venv-<hash of base + pyproject.toml>/   the venv, mounted at /opt/spinal-venv
# The project is copied (the tracked and unignored files) into a scratch directory mounted at /spinal;
# the cached root is mounted read-only, so a run never changes the cache.
#
# Emulator traps (qemu 7.2, Debian bookworm; not Pi problems, see DESIGN.md): a Raspberry Pi's
# /proc/cpuinfo is bind-mounted over the chroot's (qemu passes the host's x86 one through, and onnxruntime
# and LiteRT then crash), QEMU_CPU names the Pi's core (qemu's default "max" gives wrong LiteRT int8 results).
# qemu 7.2 answers the I2C ioctls with ENOSYS where a Linux kernel says ENOTTY: the one test that checks what
# a non-I2C file answers is deselected here (PI_DESELECT), and the summary says so.
#
# Settings (environment): SPINAL_PI_CPUS    emulated CPUs, space-separated (default "cortex-a72" = Pi 4;
#                                           "cortex-a76" = Pi 5)
#                         SPINAL_PI_CACHE   cache directory (default ${XDG_CACHE_HOME:-~/.cache}/spinal/pi-bookworm-arm64)
#                         SPINAL_PI_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#                         DEVICE_TESTS      the test paths (the Makefile passes its list)
#                         DEMO_SECONDS      how long the demo runs (default 30)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
export LOG_TAG=pi

if [ "$(id -u)" != 0 ]; then
    exec sudo --preserve-env=SPINAL_PI_CPUS,SPINAL_PI_CACHE,SPINAL_PI_MIRROR,DEVICE_TESTS,DEMO_SECONDS,PI_DESELECT,STEP_TIMEOUT,XDG_CACHE_HOME \
        "$0" "$@"
fi

SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates,mosquitto
PIP_INSTALL=(-e "/spinal[device,onnx-runtime,mqtt]" "pytest>=8" "pytest-timeout>=2.3" "hypothesis>=6.100")
RECIPE=1 # bump when the way the base is built changes
MIRROR=${SPINAL_PI_MIRROR:-http://deb.debian.org/debian}
CPUS=${SPINAL_PI_CPUS:-cortex-a72}
CACHE=${SPINAL_PI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spinal/pi-bookworm-arm64}
DEVICE_TESTS=${DEVICE_TESTS:-tests/runtime}
DEMO_SECONDS=${DEMO_SECONDS:-30}
LOGS=$ROOT/out/emulation
# Tests that check the kernel's answer to an ioctl qemu-user does not emulate (see above).
PI_DESELECT=${PI_DESELECT-tests/sensors/test_bus.py::test_real_smbus2_on_a_file_that_is_no_i2c_adapter}
STEP_TIMEOUT=${STEP_TIMEOUT:-2400}

BASE_KEY=$(printf '%s\n' "$RECIPE" "$SUITE" arm64 "$PACKAGES" | sha256sum | cut -c1-16)
VENV_KEY=$( { printf '%s\n' "$BASE_KEY" "${PIP_INSTALL[@]}"; cat "$ROOT/pyproject.toml"; } | sha256sum | cut -c1-16)
BASE=$CACHE/base-$BASE_KEY
VENV=$CACHE/venv-$VENV_KEY

need_packages qemu-aarch64-static:qemu-user-static debootstrap:debootstrap update-binfmts:binfmt-support \
    flock:util-linux

# binfmt_misc: the kernel must hand aarch64 binaries to qemu-aarch64-static.
enable_binfmt() {
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc"
    fi
    if ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
        update-binfmts --enable qemu-aarch64 || die "update-binfmts --enable qemu-aarch64 failed"
    fi
}

RUN=$(mktemp -d "${TMPDIR:-/tmp}/spinal-pi.XXXXXX")
R=$RUN/root
kill_chroot_procs() { # whatever still runs inside $R (a broker a test left behind)
    local p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$R" ] && kill -9 "${p#/proc/}" 2>/dev/null
    done
    return 0
}
PARTIAL= # the layer this run is building, if any
cleanup() {
    kill_chroot_procs
    for d in "$RUN" "$PARTIAL"; do
        if [ -z "$d" ] || [ ! -e "$d" ]; then continue; fi
        unmount_all "$d" || log "warning: mounts left under $d"
    done
    remove_tree "$RUN" || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# enter_root ROOTFS VENVDIR VENV_MODE CPUINFO: mounts a run root at $R: ROOTFS read-only, the kernel file
# systems, tmpfs /tmp and /run, the project copy at /spinal, VENVDIR at /opt/spinal-venv (ro or rw).
enter_root() {
    local rootfs=$1 venv=$2 mode=$3 cpuinfo=$4
    mkdir -p "$R"
    mount --bind "$rootfs" "$R"
    mount -o remount,bind,ro "$R"
    mount -t proc proc "$R/proc"
    mount --bind "$cpuinfo" "$R/proc/cpuinfo"
    mount -t sysfs -o ro sysfs "$R/sys"
    mount --bind /dev "$R/dev"
    mount --bind /dev/pts "$R/dev/pts"
    mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
    mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
    mount -t tmpfs tmpfs "$R/run"
    mount --bind "$RUN/spinal" "$R/spinal"
    mount --bind "$venv" "$R/opt/spinal-venv"
    [ "$mode" = rw ] || mount -o remount,bind,ro "$R/opt/spinal-venv"
    mount --bind /etc/resolv.conf "$R/etc/resolv.conf"
}
leave_root() { kill_chroot_procs; unmount_all "$R" || die "could not unmount $R"; }

ROOT_ENV=() # more VAR=value for in_root (pip's network settings while the venv is built)
# in_root CPU CMD...: runs CMD in /spinal in the chroot, with a clean environment and the emulated CPU.
in_root() {
    local cpu=$1; shift
    # shellcheck disable=SC2016 # $HOME and $@ are the chroot shell's
    QEMU_CPU=$cpu timeout --kill-after=30 "$STEP_TIMEOUT" chroot "$R" /usr/bin/env -i \
        PATH=/opt/spinal-venv/bin:/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin HOME=/tmp/home LANG=C.UTF-8 COLUMNS=200 \
        TMPDIR=/tmp QEMU_CPU="$cpu" SPINAL_DEVICE_ONLY=1 PYTHONDONTWRITEBYTECODE=1 "${ROOT_ENV[@]}" \
        /bin/sh -c 'mkdir -p "$HOME" && cd /spinal && exec "$@"' sh "$@"
}

# The project as a clone has it: tracked and unignored files (no venvs, no out/, no caches).
copy_project() {
    mkdir -p "$RUN/spinal"
    if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -C "$ROOT" ls-files -z -co --exclude-standard \
            | while IFS= read -r -d '' f; do [ -e "$ROOT/$f" ] && printf '%s\0' "$f"; done \
            | tar -C "$ROOT" --null -T - -cf - | tar -C "$RUN/spinal" -xf -
    else
        tar -C "$ROOT" --exclude='./.venv*' --exclude=./out --exclude=./.git --exclude='__pycache__' -cf - . \
            | tar -C "$RUN/spinal" -xf -
    fi
}

build_base() {
    [ -d "$BASE" ] && return 0
    local tmp=$BASE.partial t0=$SECONDS
    PARTIAL=$tmp
    remove_tree "$tmp"
    log "building the root filesystem: debootstrap $SUITE arm64 ($PACKAGES) into $tmp"
    debootstrap --arch=arm64 --foreign --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp" "$MIRROR" \
        >"$LOGS/debootstrap.log" 2>&1 || die "debootstrap (first stage) failed; see $LOGS/debootstrap.log"
    install -m 0755 "$(command -v qemu-aarch64-static)" "$tmp/usr/bin/" # for a binfmt entry without the F flag
    log "debootstrap --second-stage (in the chroot, emulated)"
    QEMU_CPU=cortex-a72 chroot "$tmp" /debootstrap/debootstrap --second-stage >>"$LOGS/debootstrap.log" 2>&1 \
        || die "debootstrap --second-stage failed; see $LOGS/debootstrap.log (and $tmp/debootstrap/debootstrap.log)"
    unmount_all "$tmp" || die "could not unmount $tmp"
    chroot "$tmp" apt-get clean
    mkdir -p "$tmp/spinal" "$tmp/opt/spinal-venv"
    mv -T "$tmp" "$BASE"
    log "root filesystem ready in $((SECONDS - t0)) s: $BASE"
}

build_venv() {
    [ -d "$VENV" ] && return 0
    local tmp=$VENV.partial t0=$SECONDS
    PARTIAL=$tmp
    remove_tree "$tmp"
    mkdir -p "$tmp"
    log "building the venv (pip install ${PIP_INSTALL[*]}) into $tmp"
    enter_root "$BASE" "$tmp" rw "$HERE/cpuinfo-pi4.txt"
    # pip goes out as the host does: its proxy settings, index, and CA bundle (a TLS-inspecting proxy's CA).
    local var ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
    for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY PIP_INDEX_URL PIP_TRUSTED_HOST \
        PIP_DEFAULT_TIMEOUT; do
        if [ -n "${!var:-}" ]; then ROOT_ENV+=("$var=${!var}"); fi
    done
    if [ -f "$ca" ]; then
        mount --bind "$ca" "$R/etc/ssl/certs/ca-certificates.crt"
        ROOT_ENV+=(PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt)
    fi
    {
        in_root cortex-a72 python3 -m venv /opt/spinal-venv &&
        in_root cortex-a72 /opt/spinal-venv/bin/pip install -q --no-cache-dir --upgrade pip &&
        in_root cortex-a72 /opt/spinal-venv/bin/pip install -q --no-cache-dir --only-binary=:all: \
            --no-binary=spinal "${PIP_INSTALL[@]}" &&
        in_root cortex-a72 /opt/spinal-venv/bin/pip check
    } >"$LOGS/venv.log" 2>&1 || { leave_root; die "the venv did not install; see $LOGS/venv.log"; }
    leave_root
    ROOT_ENV=()
    mv -T "$tmp" "$VENV"
    log "venv ready in $((SECONDS - t0)) s: $VENV"
}

# Other layers (older recipes, other pyproject.toml files) are removed once the current ones exist.
prune_cache() {
    local d
    for d in "$CACHE"/base-* "$CACHE"/venv-*; do
        if [ ! -d "$d" ] || [ "$d" = "$BASE" ] || [ "$d" = "$VENV" ]; then continue; fi
        log "removing the outdated layer $d"
        remove_tree "$d" || true
    done
}

SUMMARY=()
FAILED=0
# step CPU NAME LOGFILE CMD...: runs CMD in the chroot, logs its output, records PASS/FAIL and the reason.
step() {
    local cpu=$1 name=$2 logfile=$3 t0=$SECONDS rc=0
    shift 3
    log "$name"
    in_root "$cpu" "$@" 2>&1 | tee "$logfile" || rc=$? # pipefail: in_root's status
    step_result "$name" "$logfile" "$rc" "$t0"
}

cpuinfo_for() {
    case $1 in
        cortex-a72) echo "$HERE/cpuinfo-pi4.txt" ;;
        cortex-a76) echo "$HERE/cpuinfo-pi5.txt" ;;
        *) die "no Raspberry Pi /proc/cpuinfo for QEMU_CPU=$1 (cortex-a72 = Pi 4, cortex-a76 = Pi 5)" ;;
    esac
}

run_suite() {
    local cpu=$1 dir=$LOGS/pi-$1 pyver b t0=$SECONDS
    mkdir -p "$dir"
    enter_root "$BASE" "$VENV" ro "$(cpuinfo_for "$cpu")"
    pyver=$(in_root "$cpu" python -c 'import platform; print(platform.python_version(), platform.machine())') \
        || die "python does not start in the emulated Pi (QEMU_CPU=$cpu)"
    SUMMARY+=("== emulated Raspberry Pi, QEMU_CPU=$cpu: Debian $SUITE, Python $pyver")
    local deselect=() t
    for t in $PI_DESELECT; do
        deselect+=(--deselect "$t")
        SUMMARY+=("note  deselected (qemu answers I2C ioctls with ENOSYS, a kernel ENOTTY): $t")
    done
    # shellcheck disable=SC2086 # DEVICE_TESTS is a list of paths
    step "$cpu" "device tests" "$dir/device-tests.log" \
        python -m pytest -p no:cacheprovider -m "not slow" "${deselect[@]}" $DEVICE_TESTS
    for b in models/*/*.spinal; do
        step "$cpu" "spinal verify $b" "$dir/verify-$(basename "$b" .spinal).log" spinal verify "$b"
    done
    step "$cpu" "parity spread (benchmarks/bench_parity.py)" "$dir/parity.log" python benchmarks/bench_parity.py \
        --threads 1,2 --label "aarch64 $cpu (qemu)" --json "out/parity-$cpu.json"
    cp "$RUN/spinal/out/parity-$cpu.json" "$dir/parity.json" 2>/dev/null || true
    step "$cpu" "demo (firmware/demo.py --duration $DEMO_SECONDS)" "$dir/demo.log" \
        python firmware/demo.py --duration "$DEMO_SECONDS"
    leave_root
    SUMMARY+=("   ($((SECONDS - t0)) s on QEMU_CPU=$cpu)")
}

mkdir -p "$LOGS" "$CACHE"
enable_binfmt
copy_project
cd "$ROOT"
exec 9>"$CACHE/.lock"
flock -x 9 # one build at a time; runs share the (read-only) layers
t_build=$SECONDS
build_base
build_venv
prune_cache
flock -s 9
log "layers ready ($((SECONDS - t_build)) s): $BASE + $VENV"
for cpu in $CPUS; do
    run_suite "$cpu"
done
{
    echo
    echo "== make test-pi: summary (logs in ${LOGS#"$ROOT"/}/)"
    printf '%s\n' "${SUMMARY[@]}"
} >&2
if [ "$FAILED" != 0 ]; then
    log "FAILED on the emulated Raspberry Pi"
    exit 1
fi
log "all passed on the emulated Raspberry Pi"
