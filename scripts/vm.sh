#!/usr/bin/env bash
# Run cellbox's tests (or any command) in a virtual machine booted on
# Debian 12's own kernel (linux-image-amd64, 6.1) with the unified cgroup v2
# hierarchy and every controller: what most users' hosts run, and not what
# our build hosts do (a newer kernel, cgroup v1). QEMU with KVM where
# /dev/kvm boots an ordinary guest, else TCG (software CPU, ~10x slower;
# CB_VM_ACCEL=kvm|tcg forces either), the host's root file system and this
# checkout (at the same path) shared read-only over 9p, a fresh ext4 disk
# as the guest's /tmp, 8 GiB of RAM allocated as the guest uses it.
#
#   scripts/vm.sh unit            the C unit tests; ends "N passed, M failed, K skipped"
#   scripts/vm.sh run CMD [ARG]   CMD in this checkout inside the guest; its exit code
#
# Needs root, apt (qemu-system-x86, busybox-static, cpio are installed when
# missing) and Debian's package mirror for the kernel (downloaded once into
# $CB_VM_DIR, default $BUILD/vm). Prints "unavailable: <why>" and exits 3
# when the guest cannot be set up here. CB_VM_TIMEOUT (s, default 1800),
# CB_VM_MEM (default 8G).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
VM=${CB_VM_DIR:-$PWD/$BUILD/vm}
unavailable() { echo "unavailable: $*"; exit 3; }

[ "$(id -u)" = 0 ] || unavailable "needs root"
mode=${1:-unit}
case "$mode" in
  unit) ;;
  run) shift; [ $# -gt 0 ] || { echo "usage: scripts/vm.sh run CMD [ARG...]" >&2; exit 2; } ;;
  *) echo "usage: scripts/vm.sh unit | run CMD [ARG...]" >&2; exit 2 ;;
esac

need=()
for p in qemu-system-x86 busybox-static cpio; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if ((${#need[@]})); then
  echo "vm: installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
    > /dev/null 2>&1 || unavailable "apt-get install ${need[*]} failed"
fi

# The kernel: Debian's current bookworm package, unpacked once.
mkdir -p "$VM" || unavailable "cannot make $VM"
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || unavailable "apt knows no linux-image-amd64"
kdir="$VM/$kpkg"
if [ ! -d "$kdir/boot" ]; then
  echo "vm: downloading $kpkg"
  rm -rf "$kdir" "$VM"/*.deb
  (cd "$VM" && apt-get download -q "$kpkg" > /dev/null 2>&1) || unavailable "apt-get download $kpkg failed"
  dpkg-deb -x "$VM"/"$kpkg"_*.deb "$kdir.tmp" && rm -f "$VM"/*.deb && mv "$kdir.tmp" "$kdir" ||
    unavailable "cannot unpack $kpkg"
fi
vmlinuz=$(ls "$kdir"/boot/vmlinuz-* 2>/dev/null | head -1)
moddir=$(ls -d "$kdir"/lib/modules/* 2>/dev/null | head -1)
[ -n "$vmlinuz" ] && [ -n "$moddir" ] || unavailable "$kpkg has no kernel or modules"

# KVM when it can run this kernel: the probe boots it without a root file
# system, which under working KVM prints its banner and panics within a
# second or two (QEMU exits: -no-reboot). Some hosts have a /dev/kvm that
# serves only special guests (PVM): QEMU aborts there, or the guest never
# prints; then TCG.
accel=${CB_VM_ACCEL:-auto}
why="CB_VM_ACCEL=$accel"
if [ "$accel" = auto ]; then
  accel=tcg why="no /dev/kvm"
  if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    if timeout 20 qemu-system-x86_64 -accel kvm -cpu host -m 256M -kernel "$vmlinuz" \
         -append "console=ttyS0 panic=-1" -nographic -no-reboot -nic none 2>&1 |
       grep -q -m1 "Linux version"; then
      accel=kvm why="/dev/kvm boots a guest"
    else
      why="/dev/kvm does not boot an ordinary guest here"
    fi
  fi
fi
case "$accel" in
  kvm) qaccel=(-accel kvm -cpu host) ;;
  tcg) qaccel=(-accel tcg,thread=multi -cpu max) ;;
  *) echo "vm: CB_VM_ACCEL must be auto, kvm or tcg" >&2; exit 2 ;;
esac
echo "vm: $accel ($why)"

# The initramfs: busybox, the modules the guest needs (with what they
# depend on, from each module's own "depends=" record: no depmod needed),
# and /init, which mounts the host's root and the guest's disk, then runs
# the job with the host's root as its root.
ird="$VM/initrd"
rm -rf "$ird" && mkdir -p "$ird"/{bin,proc,sys,dev,host,mods} || unavailable "cannot build the initramfs"
cp /bin/busybox "$ird/bin/busybox"
/usr/bin/python3 - "$moddir" "$ird" <<'EOF' || unavailable "module dependencies"
import os, re, shutil, sys
moddir, ird = sys.argv[1], sys.argv[2]
# the disk, the 9p share, overlayfs, loop and XFS (disk limits), veth
want = ["crc32c_generic", "virtio_pci", "virtio_blk", "9pnet_virtio", "9p", "overlay",
        "loop", "ext4", "xfs", "veth"]
mods = {}
for d, _, files in os.walk(moddir + "/kernel"):
    for f in files:
        if f.endswith(".ko"):
            data = open(os.path.join(d, f), "rb").read()
            m = re.search(rb"(?:^|\0)depends=([^\0]*)", data)
            deps = [x.decode() for x in m.group(1).split(b",") if x] if m else []
            mods[f[:-3].replace("-", "_")] = (os.path.join(d, f), deps)
order, seen = [], set()
def visit(name):
    name = name.replace("-", "_")
    if name in seen or name not in mods:
        return
    seen.add(name)
    for dep in mods[name][1]:
        visit(dep)
    order.append(mods[name][0])
for w in want:
    visit(w)
with open(ird + "/modules", "w") as out:
    for path in order:
        shutil.copy(path, ird + "/mods/")
        out.write(os.path.basename(path) + "\n")
EOF
cat > "$ird/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules); do insmod /mods/$m 2>/dev/null; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /host ||
  { echo "vm: cannot mount the host's root"; poweroff -f; }
mount -t ext4 /dev/vda /host/tmp || { echo "vm: cannot mount the disk"; poweroff -f; }
chmod 1777 /host/tmp; mkdir -p /host/tmp/io
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 io /host/tmp/io
# the checkout, at its own path (one under /tmp would be hidden by the disk)
src=$(cat /host/tmp/io/src_path); mkdir -p "/host$src" 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose src "/host$src" ||
  { echo "vm: cannot mount the checkout"; poweroff -f; }
mount --move /proc /host/proc; mount --move /sys /host/sys; mount --move /dev /host/dev
mount -t cgroup2 cgroup2 /host/sys/fs/cgroup
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /host/dev/pts; mount -t tmpfs shm /host/dev/shm
# what a host has writable besides /tmp, and its loopback (no other network)
for d in run var/tmp root; do mount -t tmpfs -o mode=0755 "$d" "/host/$d"; done
chmod 1777 /host/var/tmp; ip link set lo up
exec switch_root /host /bin/sh /tmp/io/job.sh
EOF
chmod 755 "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1 > "$VM/initrd.gz") || unavailable "cpio"

# The job, written where the guest finds it (/tmp/io); its output comes
# back through the same share.
io="$VM/io"
rm -rf "$io" && mkdir -p "$io"
echo "$PWD" > "$io/src_path"
{
  echo "cd '$PWD' || exit 1"
  echo "export CB_BUILD='$PWD/$BUILD' PATH='$PATH' HOME=/root"
  # a host's service limits, not the kernel's 1024/4096 for its first process
  echo 'ulimit -n 1048576'
  # every controller for the sandboxes' parent (the root cgroup is exempt
  # from the no-internal-processes rule, so the job may stay there)
  echo 'echo "+cpu +memory +pids +io" > /sys/fs/cgroup/cgroup.subtree_control'
  echo 'echo "vm: $(uname -r), cgroup $(stat -fc %T /sys/fs/cgroup), controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"'
  if [ "$mode" = unit ]; then
    cat <<'EOF'
p=0; f=0; s=0
for t in "$CB_BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  echo "== vm unit: $(basename "$t")"
  out=$("$t" 2>&1); rc=$?
  echo "$out" | grep -v '^ok '
  line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
  if [ -z "$line" ]; then f=$((f+1)); continue; fi
  set -- $(echo "$line" | tr -d ,)
  p=$((p+$1)); f=$((f+$3)); s=$((s+${5:-0}))
  [ "$rc" -eq 0 ] || [ "$3" -gt 0 ] || f=$((f+1))
done
echo "$p passed, $f failed, $s skipped"
[ "$f" -eq 0 ]
EOF
  else
    printf '%q ' "$@"; echo
  fi
} > "$io/job.body"
cat > "$io/job.sh" <<'EOF'
sh /tmp/io/job.body > /tmp/io/log 2>&1
echo $? > /tmp/io/rc
sync
/bin/busybox poweroff -f
EOF

disk="$VM/disk.img"
rm -f "$disk" && truncate -s 64G "$disk" && mkfs.ext4 -q -F "$disk" || unavailable "cannot make the guest's disk"
cpus=$(nproc); [ "$cpus" -gt 4 ] && cpus=4
timeout "${CB_VM_TIMEOUT:-1800}" qemu-system-x86_64 "${qaccel[@]}" -smp "$cpus" \
  -m "${CB_VM_MEM:-8G}" -kernel "$vmlinuz" -initrd "$VM/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1" -nographic -no-reboot -nic none \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs local,path="$io",mount_tag=io,security_model=none \
  -virtfs local,path="$PWD",mount_tag=src,security_model=none,readonly=on \
  -drive file="$disk",if=virtio,format=raw,cache=unsafe > "$VM/console.log" 2>&1
qrc=$?
rm -f "$disk"
cat "$io/log" 2>/dev/null
if [ ! -f "$io/rc" ]; then
  echo "vm: the guest did not finish (qemu rc=$qrc); its console:"
  tail -20 "$VM/console.log"
  [ "$mode" = unit ] && echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi
exit "$(cat "$io/rc")"
