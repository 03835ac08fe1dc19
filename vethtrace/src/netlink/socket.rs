//! A blocking rtnetlink socket bound to one netns, with request/dump helpers.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use netlink_packet_core::{
    DecodeError, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN,
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// `SO_NETNS_COOKIE` from `<asm-generic/socket.h>`, Linux 5.14+.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// Receive buffer size. A dump message is at most one page plus headers on
/// current kernels, so 64 KiB holds several per `recv`.
const RECV_BUFFER_SIZE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("failed to create a netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("failed to enter netns {inode} with setns: {source}")]
    Setns {
        inode: u64,
        #[source]
        source: nix::Error,
    },
    #[error("failed to return to the original netns with setns: {0}")]
    SetnsBack(#[source] nix::Error),
    #[error("failed to open /proc/thread-self/ns/net: {0}")]
    OwnNetns(#[source] std::io::Error),
    #[error("netlink {request} failed: {source}")]
    Io {
        request: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink {request} returned an error: {source}")]
    Kernel {
        request: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to decode a netlink {request} reply: {message}")]
    Decode { request: &'static str, message: String },
    #[error("the thread that opens netlink sockets panicked")]
    ThreadPanicked,
}

/// A NETLINK_ROUTE socket created inside one netns.
pub struct RouteSocket {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl RouteSocket {
    /// Creates a socket in the calling thread's current netns.
    pub fn new() -> Result<Self, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        socket.bind_auto().map_err(NetlinkError::Socket)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(NetlinkError::Socket)?;
        // Let the kernel filter dumps by the header fields we send; best
        // effort because kernels before 4.20 lack the option.
        let _ = socket.set_netlink_get_strict_chk(true);
        Ok(Self {
            socket,
            sequence: 0,
            buffer: vec![0; RECV_BUFFER_SIZE],
        })
    }

    /// Returns the netns cookie of the socket's netns, or `None` on kernels
    /// before 5.14, which lack `SO_NETNS_COOKIE`.
    pub fn netns_cookie(&self) -> Option<u64> {
        let mut cookie: u64 = 0;
        let mut length = std::mem::size_of::<u64>() as libc::socklen_t;
        // SAFETY: the fd is a valid socket for the lifetime of `self`, and
        // `cookie`/`length` point to writable memory of the stated size.
        let result = unsafe {
            libc::getsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_NETNS_COOKIE,
                (&raw mut cookie).cast(),
                &raw mut length,
            )
        };
        (result == 0).then_some(cookie)
    }

    /// Sends `message` as a dump request and collects every reply message.
    pub fn dump(
        &mut self,
        request: &'static str,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.exchange(request, message, NLM_F_REQUEST | NLM_F_DUMP)
    }

    /// Sends `message` as a single request and returns its replies (one
    /// message for a successful `GET`, none when only an ACK comes back).
    pub fn request(
        &mut self,
        request: &'static str,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.exchange(request, message, NLM_F_REQUEST | NLM_F_ACK)
    }

    /// Sends `message` as a dump request and calls `visit` with the type
    /// and payload of each reply message, undecoded, so the caller can
    /// decode only what it needs. Decoding every attribute of a large dump
    /// costs more than the request itself.
    pub fn dump_raw(
        &mut self,
        request: &'static str,
        message: RouteNetlinkMessage,
        mut visit: impl FnMut(u16, &[u8]) -> Result<(), NetlinkError>,
    ) -> Result<(), NetlinkError> {
        self.exchange_raw(request, message, NLM_F_REQUEST | NLM_F_DUMP, |bytes| {
            let reply = NetlinkBuffer::new_checked(bytes).map_err(|error| decode_error(request, &error))?;
            visit(reply.message_type(), reply.payload())
        })
    }

    fn exchange(
        &mut self,
        request: &'static str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let mut replies = Vec::new();
        self.exchange_raw(request, message, flags, |bytes| {
            let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
                .map_err(|error| decode_error(request, &error))?;
            // A GET with NLM_F_ACK gets its reply, then an ACK.
            if let NetlinkPayload::InnerMessage(inner) = reply.payload {
                replies.push(inner);
            }
            Ok(())
        })?;
        Ok(replies)
    }

    /// Sends `message` and calls `visit` with the bytes of each reply message
    /// to it, header included, until NLMSG_DONE or an NLMSG_ERROR (an ACK or
    /// an error) ends the exchange.
    fn exchange_raw(
        &mut self,
        request: &'static str,
        message: RouteNetlinkMessage,
        flags: u16,
        mut visit: impl FnMut(&[u8]) -> Result<(), NetlinkError>,
    ) -> Result<(), NetlinkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket
            .send(&bytes, 0)
            .map_err(|source| NetlinkError::Io { request, source })?;

        loop {
            let length = self
                .socket
                .recv(&mut &mut self.buffer[..], 0)
                .map_err(|source| NetlinkError::Io { request, source })?;
            let mut offset = 0;
            while offset < length {
                // new_checked rejects a length field below the header size
                // or past the end of the data received.
                let reply = NetlinkBuffer::new_checked(&self.buffer[offset..length])
                    .map_err(|error| decode_error(request, &error))?;
                let size = reply.length() as usize;
                let reply_bytes = &self.buffer[offset..offset + size];
                offset += (size + 3) & !3;
                if reply.sequence_number() != sequence {
                    // A late reply to an earlier request on this socket.
                    continue;
                }
                match reply.message_type() {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(reply_bytes)
                            .map_err(|error| decode_error(request, &error))?;
                        let NetlinkPayload::Error(error) = reply.payload else {
                            return Err(NetlinkError::Decode {
                                request,
                                message: "an NLMSG_ERROR message without an error payload".into(),
                            });
                        };
                        return match error.code {
                            None => Ok(()),
                            Some(code) => Err(NetlinkError::Kernel {
                                request,
                                source: std::io::Error::from_raw_os_error(-code.get()),
                            }),
                        };
                    }
                    NLMSG_NOOP | NLMSG_OVERRUN => {}
                    _ => visit(reply_bytes)?,
                }
            }
        }
    }
}

fn decode_error(request: &'static str, error: &DecodeError) -> NetlinkError {
    NetlinkError::Decode {
        request,
        message: error.to_string(),
    }
}

impl AsFd for RouteSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the raw fd belongs to `self.socket`, which outlives the
        // returned borrow because the borrow is tied to `&self`.
        unsafe { BorrowedFd::borrow_raw(self.socket.as_raw_fd()) }
    }
}

/// Maximum number of threads that open sockets.
/// NOTE: an estimate, like the discovery walker's limit. It could only be
/// tried on 2 cores.
const MAX_OPENERS: usize = 4;

/// Minimum number of namespaces per opening thread, below which a thread's
/// start costs about as much as it saves.
const NAMESPACES_PER_OPENER: usize = 64;

/// Creates one [`RouteSocket`] inside each netns in `namespaces` (an nsfs file
/// and its inode for messages), on dedicated threads so that the caller's
/// threads never change netns. Results keep the order of `namespaces`.
pub fn open_sockets(
    namespaces: &[(BorrowedFd<'_>, u64)],
) -> Result<Vec<Result<RouteSocket, NetlinkError>>, NetlinkError> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = cores.min(MAX_OPENERS).min(namespaces.len() / NAMESPACES_PER_OPENER).max(1);
    // Each socket costs about the same, so equal contiguous parts balance.
    let part = namespaces.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let openers: Vec<_> = namespaces
            .chunks(part)
            .map(|namespaces| scope.spawn(|| open_in_each(namespaces)))
            .collect();
        let mut sockets = Vec::with_capacity(namespaces.len());
        for opener in openers {
            sockets.extend(opener.join().map_err(|_| NetlinkError::ThreadPanicked)??);
        }
        Ok(sockets)
    })
}

/// Enters each netns in turn on the calling thread, creates a socket there,
/// and returns to the thread's own netns.
fn open_in_each(
    namespaces: &[(BorrowedFd<'_>, u64)],
) -> Result<Vec<Result<RouteSocket, NetlinkError>>, NetlinkError> {
    let own = std::fs::File::open("/proc/thread-self/ns/net").map_err(NetlinkError::OwnNetns)?;
    let mut sockets = Vec::with_capacity(namespaces.len());
    for (file, inode) in namespaces {
        let socket = nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|source| NetlinkError::Setns { inode: *inode, source })
            .and_then(|()| RouteSocket::new());
        sockets.push(socket);
    }
    nix::sched::setns(&own, nix::sched::CloneFlags::CLONE_NEWNET).map_err(NetlinkError::SetnsBack)?;
    Ok(sockets)
}
