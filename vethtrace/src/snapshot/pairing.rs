//! Exact pairing of veth ends across namespaces.
//!
//! Each end reports its peer as (link-netnsid, peer ifindex), both local to
//! the netns the end was read in. Pairing turns that into a netns identity:
//! it lists the candidate ends that could be the peer (the right ifindex,
//! pointing back at this end's ifindex), asks the kernel which nsid each
//! candidate's netns has in this netns, and accepts a pair only when both
//! ends point at each other. Candidates are few in practice, so the number
//! of nsid queries grows with the number of links, not with the square of
//! the number of namespaces. Answers are cached per (netns, nsid).

use std::collections::HashMap;

use crate::netlink::Link;

/// The nsid lookups pairing needs; the live implementation sends
/// RTM_GETNSID with NETNSA_FD, tests use a table.
pub trait NsidOracle {
    /// Returns the nsid that namespace `target` has inside namespace
    /// `observer` (indexes into the namespace list), or `None`.
    fn nsid_of(&mut self, observer: usize, target: usize) -> Option<i32>;
}

/// Where one veth end's peer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Both ends point at each other: `netns` indexes the namespace list and
    /// `link` indexes that namespace's links.
    Verified { netns: usize, link: usize },
    /// The kernel's own words could not be tied to a found netns, or the
    /// other end does not point back. `nsid` and `ifindex` are the raw values.
    Unverified {
        nsid: Option<i32>,
        ifindex: Option<u32>,
        /// The netns the peer was resolved to, where it was.
        netns: Option<usize>,
        reason: UnverifiedReason,
    },
}

/// The reason a peer is not verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnverifiedReason {
    /// The kernel reported no peer: the pair is being torn down.
    NoPeer,
    /// The peer's netns has an nsid that matches none of the namespaces
    /// found, so it is held by something discovery cannot open.
    NetnsNotFound,
    /// The kernel reported an unassigned nsid (-1), which happens while the
    /// peer's netns is being destroyed.
    NsidNotAssigned,
    /// A link with that ifindex exists where the peer should be, but it is
    /// not a veth pointing back at this end.
    PeerDoesNotPointBack,
}

impl UnverifiedReason {
    /// Returns a short explanation for humans and JSON.
    pub fn describe(self) -> &'static str {
        match self {
            Self::NoPeer => "the kernel reports no peer (the pair is being deleted)",
            Self::NetnsNotFound => "the peer's netns is not among the namespaces found (no readable holder)",
            Self::NsidNotAssigned => "the peer's netns has no nsid here (it is being destroyed)",
            Self::PeerDoesNotPointBack => "the link at the peer's ifindex does not point back at this end",
        }
    }
}

/// Resolves the peer of every veth end. `links[n]` holds the links of
/// namespace `n`; the result has one entry per veth end, keyed by
/// (namespace index, link index).
pub fn pair(links: &[Vec<Link>], oracle: &mut dyn NsidOracle) -> HashMap<(usize, usize), Peer> {
    let mut resolver = Resolver {
        links,
        oracle,
        nsids: HashMap::new(),
        by_ends: HashMap::new(),
    };
    for (netns, netns_links) in links.iter().enumerate() {
        for (index, link) in netns_links.iter().enumerate() {
            if !link.is_veth() {
                continue;
            }
            // An end whose peer is gone is no other end's candidate.
            let Some(peer_ifindex) = link.veth_peer_ifindex() else { continue };
            resolver.by_ends.entry((link.ifindex, peer_ifindex)).or_default().push((netns, index));
        }
    }

    let mut peers = HashMap::new();
    for (netns, netns_links) in links.iter().enumerate() {
        for (index, link) in netns_links.iter().enumerate() {
            if link.is_veth() {
                peers.insert((netns, index), resolver.resolve(netns, link));
            }
        }
    }
    peers
}

struct Resolver<'a> {
    links: &'a [Vec<Link>],
    oracle: &'a mut dyn NsidOracle,
    /// (observer netns, nsid) → netns, learned from oracle answers.
    nsids: HashMap<(usize, i32), usize>,
    /// (ifindex, peer ifindex) → veth ends with those, in any netns. Keyed
    /// by both because every container's eth0 often has the same ifindex,
    /// and a key of the ifindex alone made each lookup scan all of them.
    by_ends: HashMap<(u32, u32), Vec<(usize, usize)>>,
}

impl Resolver<'_> {
    fn resolve(&mut self, netns: usize, link: &Link) -> Peer {
        let Some(peer_ifindex) = link.veth_peer_ifindex() else {
            return unverified(link, None, UnverifiedReason::NoPeer);
        };

        let Some(nsid) = link.link_netnsid else {
            return self.resolve_same_netns(netns, link, peer_ifindex);
        };

        // The candidates: veth ends with the peer's ifindex in another netns
        // whose own peer is this end's ifindex. Try the cached answer first.
        let cached = self.nsids.get(&(netns, nsid)).copied();
        let candidates: Vec<(usize, usize)> = self
            .by_ends
            .get(&(peer_ifindex, link.ifindex))
            .into_iter()
            .flatten()
            .copied()
            .filter(|&(other_netns, other_link)| {
                let other = &self.links[other_netns][other_link];
                other_netns != netns
                    && other.link_netnsid.is_some()
                    && cached.is_none_or(|cached| cached == other_netns)
            })
            .collect();

        let mut resolved_netns = cached;
        for (other_netns, other_link) in candidates {
            let matches = if nsid < 0 {
                // No nsid to compare: accept the candidate if it points back.
                true
            } else if cached == Some(other_netns) {
                true
            } else {
                self.lookup(netns, other_netns) == Some(nsid)
            };
            if !matches {
                continue;
            }
            resolved_netns = Some(other_netns);
            if self.points_back(other_netns, other_link, netns) {
                return Peer::Verified {
                    netns: other_netns,
                    link: other_link,
                };
            }
        }

        let reason = match resolved_netns {
            Some(_) => UnverifiedReason::PeerDoesNotPointBack,
            None if nsid < 0 => UnverifiedReason::NsidNotAssigned,
            None => UnverifiedReason::NetnsNotFound,
        };
        let mut peer = unverified(link, resolved_netns, reason);
        if let Peer::Unverified { nsid: raw, .. } = &mut peer {
            *raw = Some(nsid);
        }
        peer
    }

    fn resolve_same_netns(&mut self, netns: usize, link: &Link, peer_ifindex: u32) -> Peer {
        let found = self.links[netns]
            .iter()
            .position(|other| other.ifindex == peer_ifindex);
        match found {
            Some(index) => {
                let other = &self.links[netns][index];
                if other.is_veth() && other.link_netnsid.is_none() && other.veth_peer_ifindex() == Some(link.ifindex) {
                    Peer::Verified { netns, link: index }
                } else {
                    unverified(link, Some(netns), UnverifiedReason::PeerDoesNotPointBack)
                }
            }
            None => unverified(link, Some(netns), UnverifiedReason::PeerDoesNotPointBack),
        }
    }

    /// Checks whether end `other_link` in `other_netns` names `netns`
    /// through its own link-netnsid.
    fn points_back(&mut self, other_netns: usize, other_link: usize, netns: usize) -> bool {
        let Some(other_nsid) = self.links[other_netns][other_link].link_netnsid else {
            return false;
        };
        if other_nsid < 0 {
            return false;
        }
        if let Some(&known) = self.nsids.get(&(other_netns, other_nsid)) {
            return known == netns;
        }
        self.lookup(other_netns, netns) == Some(other_nsid)
    }

    /// Asks the oracle for `target`'s nsid in `observer` and caches it.
    fn lookup(&mut self, observer: usize, target: usize) -> Option<i32> {
        let nsid = self.oracle.nsid_of(observer, target);
        if let Some(nsid) = nsid {
            self.nsids.insert((observer, nsid), target);
        }
        nsid
    }
}

fn unverified(link: &Link, netns: Option<usize>, reason: UnverifiedReason) -> Peer {
    Peer::Unverified {
        nsid: link.link_netnsid,
        ifindex: link.veth_peer_ifindex(),
        netns,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An oracle backed by a table of (observer, target) → nsid, counting
    /// queries.
    struct TableOracle {
        table: HashMap<(usize, usize), i32>,
        queries: usize,
    }

    impl NsidOracle for TableOracle {
        fn nsid_of(&mut self, observer: usize, target: usize) -> Option<i32> {
            self.queries += 1;
            self.table.get(&(observer, target)).copied()
        }
    }

    fn veth(ifindex: u32, name: &str, peer: u32, nsid: Option<i32>) -> Link {
        Link {
            ifindex,
            name: name.into(),
            altnames: Vec::new(),
            kind: Some("veth".into()),
            // The kernel omits IFLA_LINK when it equals the link's ifindex.
            peer_ifindex: (peer != ifindex).then_some(peer),
            link_netnsid: nsid,
            master: None,
            operstate: "UP".into(),
            mac: None,
        }
    }

    fn bridge(ifindex: u32, name: &str) -> Link {
        Link {
            ifindex,
            name: name.into(),
            altnames: Vec::new(),
            kind: Some("bridge".into()),
            peer_ifindex: None,
            link_netnsid: None,
            master: None,
            operstate: "UP".into(),
            mac: None,
        }
    }

    fn verified(netns: usize, link: usize) -> Peer {
        Peer::Verified { netns, link }
    }

    #[test]
    fn same_ifindex_in_every_container() {
        // Namespace 0 is the host with h1(2), h2(3), h3(4); namespaces 1-3
        // each have eth0(2). The host sees c1..c3 as nsids 0..2, and each
        // container sees the host as nsid 0.
        let links = vec![
            vec![veth(2, "h1", 2, Some(0)), veth(3, "h2", 2, Some(1)), veth(4, "h3", 2, Some(2))],
            vec![veth(2, "eth0", 2, Some(0))],
            vec![veth(2, "eth0", 3, Some(0))],
            vec![veth(2, "eth0", 4, Some(0))],
        ];
        let mut oracle = TableOracle {
            table: HashMap::from([
                ((0, 1), 0),
                ((0, 2), 1),
                ((0, 3), 2),
                ((1, 0), 0),
                ((2, 0), 0),
                ((3, 0), 0),
            ]),
            queries: 0,
        };
        let peers = pair(&links, &mut oracle);
        assert_eq!(peers[&(0, 0)], verified(1, 0));
        assert_eq!(peers[&(0, 1)], verified(2, 0));
        assert_eq!(peers[&(0, 2)], verified(3, 0));
        assert_eq!(peers[&(1, 0)], verified(0, 0));
        assert_eq!(peers[&(2, 0)], verified(0, 1));
        assert_eq!(peers[&(3, 0)], verified(0, 2));
        assert!(oracle.queries <= 6, "{} nsid queries for 3 pairs", oracle.queries);
    }

    #[test]
    fn nsid_read_in_wrong_netns() {
        // Host(0), a(1), b(2). Host: hb(2)↔b:eth0, ha(3)↔a:eth0; a: ab(3)↔b:ba.
        // In a, nsid 0 is the host and nsid 1 is b; on the host, 0 is b and
        // 1 is a. Reading a's nsid 1 through the host's table would give a.
        let links = vec![
            vec![veth(2, "hb", 2, Some(0)), veth(3, "ha", 2, Some(1))],
            vec![veth(2, "eth0", 3, Some(0)), veth(3, "ab", 3, Some(1))],
            vec![veth(2, "eth0", 2, Some(0)), veth(3, "ba", 3, Some(1))],
        ];
        let mut oracle = TableOracle {
            table: HashMap::from([
                ((0, 2), 0),
                ((0, 1), 1),
                ((1, 0), 0),
                ((1, 2), 1),
                ((2, 0), 0),
                ((2, 1), 1),
            ]),
            queries: 0,
        };
        let peers = pair(&links, &mut oracle);
        assert_eq!(peers[&(1, 0)], verified(0, 1), "a:eth0 ↔ host:ha");
        assert_eq!(peers[&(1, 1)], verified(2, 1), "a:ab ↔ b:ba");
        assert_eq!(peers[&(2, 0)], verified(0, 0), "b:eth0 ↔ host:hb");
        assert_eq!(peers[&(0, 0)], verified(2, 0), "host:hb ↔ b:eth0");
    }

    #[test]
    fn absent_nsid_means_same_netns() {
        // a(0): ab(2)↔b:ba with nsid 0 = b, p1(3)↔p2(4) in a itself.
        // b(1): ba(2), bridges b3(3), b4(4). "Absent = 0" would pair p1 with b:b3.
        let links = vec![
            vec![veth(2, "ab", 2, Some(0)), veth(3, "p1", 4, None), veth(4, "p2", 3, None)],
            vec![veth(2, "ba", 2, Some(0)), bridge(3, "b3"), bridge(4, "b4")],
        ];
        let mut oracle = TableOracle {
            table: HashMap::from([((0, 1), 0), ((1, 0), 0)]),
            queries: 0,
        };
        let peers = pair(&links, &mut oracle);
        assert_eq!(peers[&(0, 0)], verified(1, 0));
        assert_eq!(peers[&(0, 1)], verified(0, 2));
        assert_eq!(peers[&(0, 2)], verified(0, 1));
        assert_eq!(peers[&(1, 0)], verified(0, 0));
    }

    #[test]
    fn peer_netns_not_found() {
        // The host's h1 points at nsid 5, which no found netns has.
        let links = vec![vec![veth(2, "h1", 2, Some(5))], vec![veth(2, "eth0", 2, Some(0))]];
        let mut oracle = TableOracle {
            table: HashMap::from([((0, 1), 3), ((1, 0), 0)]),
            queries: 0,
        };
        let peers = pair(&links, &mut oracle);
        assert_eq!(
            peers[&(0, 0)],
            Peer::Unverified {
                nsid: Some(5),
                ifindex: Some(2),
                netns: None,
                reason: UnverifiedReason::NetnsNotFound,
            }
        );
    }

    #[test]
    fn peer_gone_reports_no_peer() {
        let mut link = veth(5, "h1", 2, Some(0));
        link.peer_ifindex = Some(0);
        let peers = pair(&[vec![link]], &mut TableOracle { table: HashMap::new(), queries: 0 });
        assert!(matches!(
            peers[&(0, 0)],
            Peer::Unverified { reason: UnverifiedReason::NoPeer, .. }
        ));
    }
}
