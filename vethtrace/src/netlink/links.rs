//! RTM_GETLINK: the links of one netns, with the attributes pairing needs.

use netlink_packet_core::{DecodeError, Emitable as _, NlasIterator, ParseableParametrized as _};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkHeader, LinkInfo, LinkMessage, Prop};

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
    /// Checks whether `name` is this link's name or one of its alternative names.
    pub fn has_name(&self, name: &str) -> bool {
        self.name == name || self.altnames.iter().any(|altname| altname == name)
    }

    pub fn is_veth(&self) -> bool {
        self.kind.as_deref() == Some("veth")
    }

    /// Returns the ifindex of a veth's peer inside the peer's netns: `IFLA_LINK`, or
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
    /// [`dump_links`] decodes only [`READ_ATTRIBUTES`], so an attribute read
    /// here must be listed there too.
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
    const REQUEST: &str = "RTM_GETLINK dump";
    let mut links = Vec::new();
    let message = RouteNetlinkMessage::GetLink(LinkMessage::default());
    socket.dump_raw(REQUEST, message, |message_type, payload| {
        if message_type == RTM_NEWLINK {
            let message = parse_read_attributes(payload).map_err(|error| NetlinkError::Decode {
                request: REQUEST,
                message: error.to_string(),
            })?;
            links.push(Link::from_message(message));
        }
        Ok(())
    })?;
    Ok(links)
}

/// `RTM_NEWLINK` from `<linux/rtnetlink.h>`.
const RTM_NEWLINK: u16 = 16;

/// The `IFLA_*` attributes that [`Link::from_message`] reads, from
/// `<linux/if_link.h>`: ADDRESS, IFNAME, LINK, MASTER, OPERSTATE, LINKINFO,
/// LINK_NETNSID and PROP_LIST.
const READ_ATTRIBUTES: [u16; 8] = [1, 3, 5, 10, 16, 18, 37, 52];

/// Decodes an RTM_NEWLINK payload with only the attributes in
/// [`READ_ATTRIBUTES`]. Decoding all of them (statistics, per-family and
/// driver data) took about a fifth of the CPU time of `vethtrace snapshot`
/// on 1000 namespaces (`cargo xtask bench snapshot`, 2 cores).
fn parse_read_attributes(payload: &[u8]) -> Result<LinkMessage, DecodeError> {
    let header = LinkHeader::parse(payload)?;
    let attributes = payload.get(header.buffer_len()..).unwrap_or_default();
    let mut message = LinkMessage::default();
    for attribute in NlasIterator::new(attributes) {
        let attribute = attribute?;
        if READ_ATTRIBUTES.contains(&attribute.kind()) {
            let attribute = LinkAttribute::parse_with_param(&attribute, header.interface_family)?;
            message.attributes.push(attribute);
        }
    }
    message.header = header;
    Ok(message)
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

#[cfg(test)]
mod tests {
    use netlink_packet_core::Parseable as _;
    use netlink_packet_route::link::{State, Stats64};

    use super::*;

    /// Emits `message` as the payload of an RTM_NEWLINK.
    fn payload(message: &LinkMessage) -> Vec<u8> {
        let mut bytes = vec![0; message.buffer_len()];
        message.emit(&mut bytes);
        bytes
    }

    #[test]
    fn read_attributes_match_full_decode() {
        let mut message = LinkMessage::default();
        message.header.index = 7;
        message.attributes = vec![
            LinkAttribute::IfName("vtb1".into()),
            LinkAttribute::Mtu(1500),
            LinkAttribute::Address(vec![0x02, 0, 0, 0, 0, 0x01]),
            LinkAttribute::Link(2),
            LinkAttribute::Controller(3),
            LinkAttribute::OperState(State::Up),
            LinkAttribute::Stats64(Stats64::default()),
            LinkAttribute::LinkNetNsId(5),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
            LinkAttribute::PropList(vec![Prop::AltIfName("vtb1-alt".into())]),
            LinkAttribute::TxQueueLen(1000),
        ];
        let bytes = payload(&message);

        let full = Link::from_message(LinkMessage::parse(&bytes).expect("full decode"));
        let read = Link::from_message(parse_read_attributes(&bytes).expect("partial decode"));
        assert_eq!(read, full);
        assert_eq!(read.ifindex, 7);
        assert_eq!(read.name, "vtb1");
        assert_eq!(read.altnames, ["vtb1-alt"]);
        assert_eq!(read.kind.as_deref(), Some("veth"));
        assert_eq!(read.peer_ifindex, Some(2));
        assert_eq!(read.link_netnsid, Some(5));
        assert_eq!(read.master, Some(3));
        assert_eq!(read.operstate, "UP");
        assert_eq!(read.mac.as_deref(), Some("02:00:00:00:00:01"));
    }

    #[test]
    fn read_attributes_skip_the_rest() {
        let mut message = LinkMessage::default();
        message.attributes = vec![
            LinkAttribute::IfName("lo".into()),
            LinkAttribute::Stats64(Stats64::default()),
        ];
        let read = parse_read_attributes(&payload(&message)).expect("partial decode");
        assert_eq!(read.attributes, [LinkAttribute::IfName("lo".into())]);
    }

    #[test]
    fn read_attributes_reject_truncated_payload() {
        let mut message = LinkMessage::default();
        message.attributes = vec![LinkAttribute::IfName("vtb1".into())];
        let bytes = payload(&message);
        assert!(parse_read_attributes(&bytes[..8]).is_err(), "header cut short");
        // The 16-byte header, then 6 of the 9 bytes of IFLA_IFNAME "vtb1\0".
        assert!(parse_read_attributes(&bytes[..22]).is_err(), "attribute cut short");
    }
}
