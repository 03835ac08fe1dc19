//! RTM_GETLINK: the links of one netns, with the attributes pairing needs.

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage, Prop};

use super::{NetlinkError, RouteSocket};

/// One link as RTM_GETLINK reported it, read inside a given netns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    /// Alternative names (`ip link property add ... altname`), Linux 5.5+.
    pub altnames: Vec<String>,
    /// `IFLA_INFO_KIND`, such as "veth" or "bridge"; `None` for devices
    /// without rtnl_link_ops (loopback, physical NICs).
    pub kind: Option<String>,
    /// The peer's ifindex for a veth (`IFLA_LINK`). The kernel omits the
    /// attribute when it equals the link's own ifindex, which happens when
    /// both ends of a pair have the same index in different namespaces.
    pub peer_ifindex: Option<u32>,
    /// `IFLA_LINK_NETNSID`: the peer's netns as an nsid local to the netns
    /// this was read in. Absent means "same netns", never nsid 0.
    pub link_netnsid: Option<i32>,
    /// `IFLA_MASTER`: the bridge or bond this link is enslaved to.
    pub master: Option<u32>,
    /// `IFLA_OPERSTATE` as `ip` prints it: UP, DOWN, LOWERLAYERDOWN, ...
    pub operstate: String,
    /// `IFLA_ADDRESS` formatted as aa:bb:cc:dd:ee:ff.
    pub mac: Option<String>,
}

impl Link {
    /// Whether `name` is this link's name or one of its alternative names.
    pub fn has_name(&self, name: &str) -> bool {
        self.name == name || self.altnames.iter().any(|altname| altname == name)
    }

    pub fn is_veth(&self) -> bool {
        self.kind.as_deref() == Some("veth")
    }

    /// The ifindex of a veth's peer inside the peer's netns: `IFLA_LINK`, or
    /// the link's own ifindex where the kernel omitted the attribute. `None`
    /// when the peer is gone (the kernel reports 0 while a pair is torn down).
    pub fn veth_peer_ifindex(&self) -> Option<u32> {
        match self.peer_ifindex {
            Some(0) => None,
            Some(ifindex) => Some(ifindex),
            None => Some(self.ifindex),
        }
    }

    /// Reads the attributes pairing needs from one RTM_NEWLINK message.
    pub fn from_message(message: LinkMessage) -> Self {
        let mut link = Link {
            ifindex: message.header.index,
            name: String::new(),
            altnames: Vec::new(),
            kind: None,
            peer_ifindex: None,
            link_netnsid: None,
            master: None,
            operstate: "UNKNOWN".into(),
            mac: None,
        };
        for attribute in message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name = name,
                LinkAttribute::PropList(props) => {
                    for prop in props {
                        if let Prop::AltIfName(name) = prop {
                            link.altnames.push(name);
                        }
                    }
                }
                LinkAttribute::Link(ifindex) => link.peer_ifindex = Some(ifindex),
                LinkAttribute::LinkNetNsId(nsid) => link.link_netnsid = Some(nsid),
                LinkAttribute::Controller(master) => link.master = Some(master),
                LinkAttribute::OperState(state) => link.operstate = state.to_string().to_uppercase(),
                LinkAttribute::Address(bytes) => link.mac = Some(format_mac(&bytes)),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            link.kind = Some(kind_name(&kind));
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

fn kind_name(kind: &InfoKind) -> String {
    kind.to_string()
}

fn format_mac(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 3);
    for (index, byte) in bytes.iter().enumerate() {
        if index > 0 {
            text.push(':');
        }
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// Dumps every link of the socket's netns, like `ip -d link show`.
pub fn dump_links(socket: &mut RouteSocket) -> Result<Vec<Link>, NetlinkError> {
    let replies = socket.dump("RTM_GETLINK dump", RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
    Ok(links_of(replies))
}

/// Reads link `ifindex` of the netns that has nsid `nsid` in the socket's
/// netns, through `IFLA_TARGET_NETNSID` (Linux 4.20+). This works even when
/// that netns cannot be opened, which is how an unverified peer gets a name.
/// Returns `None` when the kernel has no such link.
pub fn get_link_in_nsid(socket: &mut RouteSocket, nsid: i32, ifindex: u32) -> Result<Option<Link>, NetlinkError> {
    let mut message = LinkMessage::default();
    message.header.index = ifindex;
    message.attributes.push(LinkAttribute::IfNetnsId(nsid));
    match socket.request("RTM_GETLINK with IFLA_TARGET_NETNSID", RouteNetlinkMessage::GetLink(message)) {
        Ok(replies) => Ok(links_of(replies).into_iter().next()),
        Err(NetlinkError::Kernel { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(error) => Err(error),
    }
}

fn links_of(replies: Vec<RouteNetlinkMessage>) -> Vec<Link> {
    replies
        .into_iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(message) => Some(Link::from_message(message)),
            _ => None,
        })
        .collect()
}
