#!/bin/bash
# Find each container's host-side veth the way docker-veth.sh does.
#
# Baseline for `cargo xtask bench snapshot`. docker-veth.sh loops over the
# containers, reads eth0's peer ifindex inside each one, and looks that
# ifindex up among the host's links. This script does the same with nsenter
# and `ip link` in place of `docker exec`. It reads the host's links once,
# into a table, instead of grepping them again for every container as
# docker-veth.sh does, so it is the faster form of that loop.
#
# Usage: docker-veth-loop.sh PIDS_FILE
#
# PIDS_FILE lists one process id a line; each process's netns is a container
# with an eth0. Prints `PID HOST_IFNAME` per container. Like docker-veth.sh,
# it trusts that the peer is in the host's netns and does not check it.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 PIDS_FILE" >&2
    exit 2
fi

# `ip -o link` prints `IFINDEX: NAME@PEER: <FLAGS> ...`, one link a line.
declare -A host_name_by_ifindex
while IFS=': ' read -r ifindex name _; do
    host_name_by_ifindex[$ifindex]=${name%%@*}
done < <(ip -o link show)

while read -r pid; do
    [ -n "$pid" ] || continue
    line=$(nsenter -t "$pid" -n ip -o link show eth0)
    # `2: eth0@if7: <...>`: the peer's ifindex follows `@if`.
    peer=${line#*@if}
    peer=${peer%%:*}
    host=${host_name_by_ifindex[$peer]:-}
    if [ -z "$host" ]; then
        echo "pid $pid: no host link has ifindex $peer (eth0 line: $line)" >&2
        exit 1
    fi
    echo "$pid $host"
done < "$1"
