# Guest script for checking the eBPF tracer in a VM: runs the ebpf_events
# example around the sequence "add a veth pair, move one end to a netns,
# rename the other end, delete it", then prints what the example printed.
# Arguments go to the example (such as --only kprobe). From the repository:
#
#   cargo build --release -p vethtrace --example ebpf_events
#   cargo xtask vm-run --kernel 6.1 --script vethtrace/examples/ebpf_events_vm.sh \
#       --vethtrace-binary target/release/examples/ebpf_events -- --only fentry
#
# vm-run installs the given binary as `vethtrace`, which is why the example
# runs under that name here. The guest prints the inodes of both netns, and
# `ip link` shows the ifindexes, to compare with the events.
ip netns add vtebpfns || exit 1
vethtrace "$@" > /tmp/vtebpf-events.log 2>&1 &
pid=$!
tries=0
while ! grep -q '^ready$' /tmp/vtebpf-events.log; do
    kill -0 $pid 2>/dev/null || break
    tries=$((tries + 1))
    [ $tries -gt 600 ] && break
    sleep 0.2
done
echo "init netns inode: $(stat -L -c %i /proc/self/ns/net)"
echo "vtebpfns inode: $(stat -L -c %i /run/netns/vtebpfns)"
ip link add vtebpf0 type veth peer name vtebpf1
ip -o link show vtebpf0
ip -o link show vtebpf1
ip link set vtebpf1 netns vtebpfns
ip netns exec vtebpfns ip -o link show vtebpf1
ip link set vtebpf0 name vtebpf2
ip -o link show vtebpf2
ip link del vtebpf2
sleep 1
kill -INT $pid 2>/dev/null
wait $pid
echo "tracer exit: $?"
cat /tmp/vtebpf-events.log
ip netns del vtebpfns
