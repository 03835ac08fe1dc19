#!/bin/sh
# /init of the VM image, run by dash as PID 1.
#
# It sets the guest up like a minimal booted system, loads the kernel modules
# listed in /etc/vethtrace-vm/modules, runs /job/run, prints the job's exit
# status and powers off. cargo xtask reads the lines starting with
# "vethtrace-vm-" from the serial console; everything else is the guest's own
# output. If this script exits, the kernel panics, and panic=-1 with QEMU's
# -no-reboot turns that into a QEMU exit without a result line.

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
export TMPDIR=/tmp
export RUST_BACKTRACE=1
# The integration tests run this binary.
export VETHTRACE_BIN=/usr/bin/vethtrace

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || echo "vethtrace-vm-warning: devtmpfs not mounted on /dev"
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp

# These file systems are optional: a kernel without one still runs the job,
# and whatever needs it fails there with its own message.
for spec in debugfs:/sys/kernel/debug tracefs:/sys/kernel/tracing cgroup2:/sys/fs/cgroup bpf:/sys/fs/bpf; do
    type=${spec%%:*}
    dir=${spec#*:}
    mount -t "$type" "$type" "$dir" 2>/dev/null || echo "vethtrace-vm-warning: $type not mounted on $dir"
done

# devtmpfs has no /dev/fd links, which process substitution and programs
# that open /dev/stdin by name need.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr

# Variables of this run, such as VETHTRACE_VM_KERNEL.
if [ -f /job/env ]; then
    . /job/env
fi

echo "vethtrace-vm-kernel: $(uname -r)"
while read -r module; do
    name=${module##*/}
    name=${name%.ko}
    if insmod "$module"; then
        echo "vethtrace-vm-module: $name loaded"
    else
        echo "vethtrace-vm-module: $name failed"
    fi
done </etc/vethtrace-vm/modules
ip link set lo up
hostname -F /etc/hostname

cd /tmp || exit 1
/bin/sh /job/run </dev/null
echo "vethtrace-vm-exit: $?"
sync
poweroff -f
