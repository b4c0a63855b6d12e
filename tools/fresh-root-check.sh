#!/bin/sh
# Prove the README's two commands on a fresh machine: build a clean Debian 12
# root (debootstrap, minbase), add only git, make, gcc, libc6-dev and
# ca-certificates, clone this branch into it and run `make test` then
# `make demo` there with chroot.  Run by hand, as root (not by make test):
#
#     sudo sh tools/fresh-root-check.sh [ROOT]        # ROOT defaults to /work/fresh-root
#
# ROOT must be outside the git tree; it is deleted and rebuilt on every run.
# FRESH_BASE_TAR=FILE keeps the pristine root (after the five packages, before
# any project step) in FILE and reuses it on the next run, saving debootstrap's
# minutes while iterating; leave it unset for the real check.  STEPS limits
# what runs in the root (default "test demo"; "deps" runs just tools/deps.sh).
# The clone is of the committed HEAD: commit before you check.
# Every step's wall time is printed at the end.
set -eu
ROOT=${1:-/work/fresh-root}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
STEPS=${STEPS-test demo}
REPO=$(cd "$(dirname "$0")/.." && pwd)
BRANCH=$(git -C "$REPO" rev-parse --abbrev-ref HEAD)

[ "$(id -u)" = 0 ] || { echo "fresh-root-check: run as root (debootstrap, mount, chroot)"; exit 2; }
case "$ROOT/" in "$REPO"/*) echo "fresh-root-check: $ROOT is inside the git tree"; exit 2 ;; esac
case "$ROOT" in /|"") echo "fresh-root-check: refusing ROOT=$ROOT"; exit 2 ;; esac

times=""
step() {   # step NAME COMMAND...: run, time, remember
    name=$1; shift
    echo "=== fresh-root-check: $name"
    t0=$(date +%s)
    "$@"
    t1=$(date +%s)
    times="$times
  $name: $((t1 - t0)) s"
}

mounted=""
mount_all() {
    mount -t proc proc "$ROOT/proc"; mounted="$ROOT/proc $mounted"
    mount -t sysfs sysfs "$ROOT/sys"; mounted="$ROOT/sys $mounted"
    mount --bind /dev "$ROOT/dev"; mounted="$ROOT/dev $mounted"
    mount --bind /dev/pts "$ROOT/dev/pts"; mounted="$ROOT/dev/pts $mounted"
    mount -t tmpfs tmpfs "$ROOT/dev/shm"; mounted="$ROOT/dev/shm $mounted"
}
cleanup() {
    status=$?
    # Stop whatever is still running inside the root (by pid: only processes
    # whose root directory is ROOT, i.e. ones this script started there).
    for d in /proc/[0-9]*; do
        [ "$(readlink "$d/root" 2>/dev/null)" = "$ROOT" ] && kill -KILL "${d#/proc/}" 2>/dev/null
    done
    for m in $mounted; do umount "$m" 2>/dev/null || umount -l "$m"; done
    mounted=""
    [ -n "$times" ] && echo "fresh-root-check: step times (ROOT=$ROOT, branch $BRANCH):$times"
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_root() {   # in_root COMMAND: a login-like clean environment in the root
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 TERM=dumb chroot "$ROOT" /bin/sh -c "$1"
}

bootstrap() {
    debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR"
}
base_packages() {
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    # debootstrap writes no /etc/hosts (no package owns it: the installer and
    # cloud images write it), so "localhost" would not resolve; every
    # installed Debian has these two lines.
    printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$ROOT/etc/hosts"
    # No daemon starts inside a chroot on package install (tinyproxy's would
    # bind the host's port 8888): the standard Debian policy-rc.d for chroots.
    printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
    chmod 755 "$ROOT/usr/sbin/policy-rc.d"
    in_root "export DEBIAN_FRONTEND=noninteractive; apt-get update -q &&
             apt-get install -y -q --no-install-recommends git make gcc libc6-dev ca-certificates"
}
clone() {
    git clone -q --no-hardlinks --branch "$BRANCH" "$REPO" "$ROOT/root/stream_ws"
    git -C "$ROOT/root/stream_ws" log --oneline -1
}

if [ -d "$ROOT" ]; then
    for d in /proc/[0-9]*; do [ "$(readlink "$d/root" 2>/dev/null)" = "$ROOT" ] && { echo "fresh-root-check: a process still runs in $ROOT (${d#/proc/})"; exit 1; }; done
    grep -q " $ROOT/" /proc/mounts && { echo "fresh-root-check: something is still mounted under $ROOT"; exit 1; }
    rm -rf "$ROOT"
fi
if [ -n "${FRESH_BASE_TAR:-}" ] && [ -f "$FRESH_BASE_TAR" ]; then
    mkdir -p "$ROOT"
    step "restore base root from $FRESH_BASE_TAR" tar -C "$ROOT" -xpf "$FRESH_BASE_TAR"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
else
    step "debootstrap --variant=minbase $SUITE" bootstrap
    mount_all
    step "apt-get install git make gcc libc6-dev ca-certificates" base_packages
    for m in $mounted; do umount "$m"; done; mounted=""
    if [ -n "${FRESH_BASE_TAR:-}" ]; then
        step "save base root to $FRESH_BASE_TAR" tar -C "$ROOT" -cpf "$FRESH_BASE_TAR" .
    fi
fi
step "git clone $REPO ($BRANCH)" clone
mount_all
for s in $STEPS; do
    case "$s" in
    deps) step "sh tools/deps.sh" in_root "cd /root/stream_ws && sh tools/deps.sh" ;;
    *)    step "make $s" in_root "cd /root/stream_ws && make $s" ;;
    esac
done
echo "fresh-root-check: $STEPS passed in a fresh $SUITE root"
