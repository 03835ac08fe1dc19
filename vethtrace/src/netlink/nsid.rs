//! RTM_GETNSID: the kernel's table of nsids, local to each netns.
//!
//! An nsid is a small integer that names another netns, and it means
//! something only inside the netns it was read in. Asking "which nsid does
//! netns M have here?" with `NETNSA_FD` is the only exact way to map an nsid
//! to a netns identity, so pairing uses it as an oracle for the few
//! candidates each link has, never for all pairs of namespaces.

use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};

use super::{NetlinkError, RouteSocket};

/// The kernel's NETNSA_NSID_NOT_ASSIGNED.
const NSID_NOT_ASSIGNED: i32 = -1;

/// Dumps the nsids assigned in the socket's netns, like `ip netns list-id`.
pub fn dump_nsids(socket: &mut RouteSocket) -> Result<Vec<i32>, NetlinkError> {
    let replies = socket.dump("RTM_GETNSID dump", RouteNetlinkMessage::GetNsId(NsidMessage::default()))?;
    let mut nsids: Vec<i32> = replies.into_iter().filter_map(|reply| nsid_in(&reply)).collect();
    nsids.sort_unstable();
    Ok(nsids)
}

/// Returns the nsid that netns `target` has inside the socket's netns, or
/// `None` when none is assigned. The query never assigns one.
pub fn nsid_of(socket: &mut RouteSocket, target: BorrowedFd<'_>) -> Result<Option<i32>, NetlinkError> {
    let mut message = NsidMessage::default();
    let fd = u32::try_from(target.as_raw_fd()).expect("file descriptors are non-negative");
    message.attributes.push(NsidAttribute::Fd(fd));
    let replies = socket.request("RTM_GETNSID with NETNSA_FD", RouteNetlinkMessage::GetNsId(message))?;
    Ok(replies.iter().find_map(nsid_in))
}

fn nsid_in(reply: &RouteNetlinkMessage) -> Option<i32> {
    let RouteNetlinkMessage::NewNsId(message) = reply else {
        return None;
    };
    message.attributes.iter().find_map(|attribute| match attribute {
        NsidAttribute::Id(id) if *id != NSID_NOT_ASSIGNED => Some(*id),
        _ => None,
    })
}
