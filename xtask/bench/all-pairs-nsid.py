#!/usr/bin/python3
"""Pair veth ends by asking RTM_GETNSID for every pair of namespaces.

Baseline for `cargo xtask bench snapshot`: the straightforward exact method,
written with pyroute2. For each netns it creates an rtnetlink socket inside
it, dumps its links, and asks RTM_GETNSID with NETNSA_FD for every other
netns, so it learns each netns's whole nsid table with (N+1)*N queries for N
containers. It then pairs every veth end through those tables.

Usage: all-pairs-nsid.py PIDS_FILE

PIDS_FILE lists one process id a line; each process's netns is a container.
The script's own netns is the host. Prints one JSON document on standard
output: {"pairs": [[END, END], ...], "queries": COUNT}, where an END is
{"netns": INODE, "name": NAME, "ifindex": IFINDEX}. Needs root
(CAP_SYS_ADMIN for setns) and python3-pyroute2.
"""

import json
import os
import sys

from pyroute2 import IPRoute
from pyroute2.netns import setns


def veth_ends(ipr):
    """Return (ifindex, name, peer ifindex, link-netnsid) for each veth."""
    ends = []
    for link in ipr.get_links():
        info = link.get_attr('IFLA_LINKINFO')
        if info is None or info.get_attr('IFLA_INFO_KIND') != 'veth':
            continue
        ifindex = link['index']
        # The kernel omits IFLA_LINK when the peer has the same ifindex.
        peer = link.get_attr('IFLA_LINK')
        ends.append((
            ifindex,
            link.get_attr('IFLA_IFNAME'),
            ifindex if peer is None else peer,
            link.get_attr('IFLA_LINK_NETNSID'),
        ))
    return ends


def read_namespaces(fds):
    """Return each netns's veth ends and nsid table (nsid -> index in fds)."""
    ends = []
    tables = []
    queries = 0
    for observer, fd in enumerate(fds):
        setns(fd)
        with IPRoute() as ipr:
            ends.append(veth_ends(ipr))
            table = {}
            for target, target_fd in enumerate(fds):
                if target == observer:
                    continue
                reply = ipr.get_netnsid(fd=target_fd)
                queries += 1
                nsid = None if reply is None else reply['nsid']
                if nsid is not None and nsid >= 0:
                    table[nsid] = target
            tables.append(table)
    return ends, tables, queries


def pair(ends, tables, inodes):
    """Return each verified pair once, as two ends that point at each other."""
    by_ifindex = [{end[0]: end for end in netns_ends} for netns_ends in ends]
    pairs = []
    for netns, netns_ends in enumerate(ends):
        for ifindex, name, peer_ifindex, nsid in netns_ends:
            peer_netns = netns if nsid is None else tables[netns].get(nsid)
            if peer_netns is None:
                continue
            peer = by_ifindex[peer_netns].get(peer_ifindex)
            if peer is None or peer[2] != ifindex:
                continue
            back = peer_netns if peer[3] is None else tables[peer_netns].get(peer[3])
            if back != netns:
                continue
            if (netns, ifindex) > (peer_netns, peer_ifindex):
                continue
            pairs.append([
                {'netns': inodes[netns], 'name': name, 'ifindex': ifindex},
                {'netns': inodes[peer_netns], 'name': peer[1], 'ifindex': peer_ifindex},
            ])
    return pairs


def main():
    if len(sys.argv) != 2:
        sys.exit('usage: all-pairs-nsid.py PIDS_FILE')
    with open(sys.argv[1]) as pids_file:
        pids = [int(line) for line in pids_file if line.strip()]

    paths = ['/proc/self/ns/net'] + [f'/proc/{pid}/ns/net' for pid in pids]
    fds = []
    for path in paths:
        try:
            fds.append(os.open(path, os.O_RDONLY))
        except OSError as error:
            sys.exit(f'failed to open {path}: {error}')
    inodes = [os.fstat(fd).st_ino for fd in fds]

    ends, tables, queries = read_namespaces(fds)
    setns(fds[0])
    json.dump({'pairs': pair(ends, tables, inodes), 'queries': queries}, sys.stdout)
    print()


if __name__ == '__main__':
    main()
