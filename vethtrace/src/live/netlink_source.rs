//! The netlink fallback: link notifications instead of kernel hooks.
//!
//! One NETLINK_ROUTE socket in the caller's netns joins RTNLGRP_LINK with
//! NETLINK_LISTEN_ALL_NSID, so it also receives the notifications of every
//! netns that has an nsid there, tagged with that nsid. Opening a socket in
//! each netns instead would see more, but a socket keeps its netns alive, so
//! a watcher would change what it watches: a container's netns would outlive
//! the container, and its veth with it. What this mode cannot see: the
//! actor of a change, namespaces that have no nsid in the caller's netns,
//! and the far end of a move whose target netns has none.

use std::os::fd::{AsRawFd, RawFd};

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::netlink::Link;

/// RTMGRP_LINK: the multicast group bit of RTNLGRP_LINK.
const RTMGRP_LINK: u32 = 1;
/// Receive buffer size requested for the socket. Bursts of thousands of
/// link changes overflow the default (about 200 KiB), which the kernel
/// reports as ENOBUFS and vethtrace as lost events.
const SOCKET_BUFFER_SIZE: usize = 8 * 1024 * 1024;
const READ_BUFFER_SIZE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("failed to open the netlink monitor socket: {0}")]
    Open(#[source] std::io::Error),
    #[error("failed to register the netlink monitor socket with tokio: {0}")]
    Register(#[source] std::io::Error),
    #[error("failed to read from the netlink monitor socket: {0}")]
    Read(#[source] std::io::Error),
}

/// One link notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkNotice {
    /// The nsid of the netns it came from, in the caller's netns; `None`
    /// for the caller's own netns.
    pub source_nsid: Option<i32>,
    /// RTM_DELLINK rather than RTM_NEWLINK.
    pub deleted: bool,
    pub link: Link,
    /// `IFLA_NEW_NETNSID` of an RTM_DELLINK: the link moves to that netns
    /// (an nsid local to the source netns) instead of being deleted.
    pub moved_to_nsid: Option<i32>,
}

/// What one read of the socket returned.
#[derive(Debug)]
pub enum Batch {
    Notices(Vec<LinkNotice>),
    /// The kernel dropped notifications (ENOBUFS): the caller must resync.
    Overrun,
}

/// The monitor socket, registered with tokio.
pub struct NetlinkMonitor {
    socket: AsyncFd<Socket>,
    buffer: Vec<u8>,
}

impl NetlinkMonitor {
    /// Opens the socket in the calling thread's netns. Call it before the
    /// snapshot that seeds the live map, so no change falls between them.
    pub fn open() -> Result<Self, MonitorError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(MonitorError::Open)?;
        socket.bind(&SocketAddr::new(0, RTMGRP_LINK)).map_err(MonitorError::Open)?;
        socket.set_listen_all_namespaces(true).map_err(MonitorError::Open)?;
        if let Err(error) = socket.set_rx_buf_sz(SOCKET_BUFFER_SIZE) {
            log::debug!("failed to set the monitor's receive buffer to {SOCKET_BUFFER_SIZE} bytes: {error}");
        }
        socket.set_non_blocking(true).map_err(MonitorError::Open)?;
        // SAFETY: the socket owns its fd and is moved into the AsyncFd, which
        // deregisters before dropping it, so the fd stays open while registered.
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
            .map_err(|error| MonitorError::Register(error.into()))?;
        Ok(Self {
            socket,
            buffer: vec![0; READ_BUFFER_SIZE],
        })
    }

    /// Waits for notifications and returns every one that is queued.
    pub async fn next_batch(&mut self) -> Result<Batch, MonitorError> {
        let mut notices = Vec::new();
        loop {
            let mut guard = self.socket.readable().await.map_err(MonitorError::Read)?;
            loop {
                let fd = guard.get_inner().as_raw_fd();
                match receive(fd, &mut self.buffer) {
                    Ok((length, nsid)) => parse_into(&self.buffer[..length], nsid, &mut notices),
                    Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => return Ok(Batch::Overrun),
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                        guard.clear_ready();
                        break;
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(MonitorError::Read(error)),
                }
            }
            if !notices.is_empty() {
                return Ok(Batch::Notices(notices));
            }
        }
    }
}

/// One recvmsg(2): the datagram's length and the source nsid from the
/// NETLINK_LISTEN_ALL_NSID control message, if any.
fn receive(fd: RawFd, buffer: &mut [u8]) -> std::io::Result<(usize, Option<i32>)> {
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &raw mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: every pointer in `header` points to live buffers of the stated
    // sizes for the duration of the call.
    let length = unsafe { libc::recvmsg(fd, &raw mut header, libc::MSG_DONTWAIT) };
    if length < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut nsid = None;
    // SAFETY: the CMSG macros walk the control buffer the kernel filled, within
    // msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_NETLINK && (*cmsg).cmsg_type == libc::NETLINK_LISTEN_ALL_NSID {
                let data = libc::CMSG_DATA(cmsg).cast::<i32>();
                nsid = Some(data.read_unaligned());
            }
            cmsg = libc::CMSG_NXTHDR(&raw const header, cmsg);
        }
    }
    Ok((length as usize, nsid.filter(|nsid| *nsid >= 0)))
}

/// Parses every link message in one datagram; others are ignored.
fn parse_into(mut bytes: &[u8], source_nsid: Option<i32>, notices: &mut Vec<LinkNotice>) {
    while !bytes.is_empty() {
        let message = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) {
            Ok(message) => message,
            Err(error) => {
                log::warn!("skipped an undecodable netlink notification: {error}");
                return;
            }
        };
        let size = (message.header.length as usize + 3) & !3;
        if size == 0 || size > bytes.len() {
            bytes = &[];
        } else {
            bytes = &bytes[size..];
        }
        let (deleted, link_message) = match message.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => (false, link),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => (true, link),
            _ => continue,
        };
        notices.push(notice_of(source_nsid, deleted, link_message));
    }
}

fn notice_of(source_nsid: Option<i32>, deleted: bool, message: LinkMessage) -> LinkNotice {
    let moved_to_nsid = message.attributes.iter().find_map(|attribute| match attribute {
        LinkAttribute::NewNetnsId(nsid) => Some(*nsid),
        _ => None,
    });
    LinkNotice {
        source_nsid,
        deleted,
        link: Link::from_message(message),
        moved_to_nsid: if deleted { moved_to_nsid } else { None },
    }
}
