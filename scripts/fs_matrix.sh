#!/usr/bin/env bash
# `tidelog bench` on ext4 and XFS loop images (and the directory given, if
# any), one after the other: what docs/benchmarks.md's per-filesystem tables
# and Auto's rule come from. Needs root, losetup, mkfs.ext4 and mkfs.xfs.
#
#   scripts/fs_matrix.sh BIN OUT [HOST_DIR] -- BENCH ARGS...
#
# Each image is 4 GiB (IMAGE_MIB to change it), zero-filled on the host first (so the host
# filesystem allocates nothing during the run) and attached with direct I/O
# (so the loop device does not add a second page cache). OUT gets one JSON
# and one text file per filesystem.
set -eu
bin=$1 out=$2
shift 2
host=""
if [ "${1:-}" != "--" ]; then host=$1; shift; fi
[ "${1:-}" = "--" ] && shift
mkdir -p "$out"
work=$(mktemp -d /var/tmp/tidelog-fs.XXXXXX)
cleanup() {
    for m in "$work"/mnt-*; do umount "$m" 2>/dev/null || true; done
    for d in $(losetup -j "$work/ext4.img" -O NAME -n; losetup -j "$work/xfs.img" -O NAME -n); do losetup -d "$d" || true; done
    rm -rf "$work"
}
trap cleanup EXIT
for fs in ext4 xfs; do
    img=$work/$fs.img
    dd if=/dev/zero of="$img" bs=1M count="${IMAGE_MIB:-4096}" status=none conv=fsync
    dev=$(losetup --direct-io=on --show -f "$img")
    if [ "$fs" = ext4 ]; then mkfs.ext4 -q -F "$dev"; else mkfs.xfs -q -f "$dev"; fi
    mkdir -p "$work/mnt-$fs"
    mount "$dev" "$work/mnt-$fs"
    echo "== $fs (loop image $dev)"
    "$bin" bench --dir "$work/mnt-$fs/bench" --json "$out/$fs.json" "$@" >"$out/$fs.txt" 2>&1 \
        || { cat "$out/$fs.txt"; exit 1; }
    umount "$work/mnt-$fs"
    losetup -d "$dev"
    rm -f "$img"
done
if [ -n "$host" ]; then
    echo "== host ($host)"
    "$bin" bench --dir "$host/bench" --json "$out/host.json" "$@" >"$out/host.txt" 2>&1 || { cat "$out/host.txt"; exit 1; }
fi
