//! `vethtrace peer IFNAME`: the peer of one interface.

use std::io::Write;

use crate::cli::PeerArgs;
use crate::error::Error;
use crate::netlink::{self, RouteSocket};
use crate::netns_ref::NetnsRef;
use crate::output;
use crate::snapshot::{self, SnapshotOptions};

pub fn run(args: &PeerArgs, out: &mut dyn Write) -> Result<(), Error> {
    // Parse before anything else, so a malformed value is a usage error even
    // without privileges.
    let reference = args.netns.as_deref().map(NetnsRef::parse).transpose()?;
    super::require_privileges("vethtrace peer")?;

    let snapshot = snapshot::take(&SnapshotOptions::default())?;
    let netns = match (&reference, args.netns.as_deref()) {
        (Some(reference), Some(text)) => {
            let inode = reference.inode(text)?;
            snapshot.netns(inode).ok_or_else(|| Error::NetnsNotFound {
                reference: text.to_string(),
                inode,
            })?
        }
        _ => snapshot.current().expect("the caller's netns is always in a snapshot"),
    };
    let netns_text = format!("{} ({})", netns.inode, netns.label());

    let Some(link) = snapshot
        .links
        .iter()
        .find(|link| link.netns == netns.inode && (link.name == args.interface || link.altnames.contains(&args.interface)))
    else {
        // Tell "not a veth" apart from "no such interface".
        let kind = interface_kind(netns.inode, &args.interface);
        return Err(match kind {
            Some(kind) => Error::NotVeth {
                name: args.interface.clone(),
                netns: netns_text,
                kind,
            },
            None => Error::InterfaceNotFound {
                name: args.interface.clone(),
                netns: netns_text,
            },
        });
    };

    if args.json {
        output::write_json_pretty(out, link).map_err(Error::Output)
    } else {
        output::snapshot::write_links(out, &snapshot, std::slice::from_ref(link), output::color_enabled())
            .map_err(Error::Output)
    }
}

/// Returns the kind of a non-veth interface ("bridge", or "device" for
/// devices without a kind), or `None` when no interface has that name.
fn interface_kind(netns_inode: u64, name: &str) -> Option<String> {
    let own = std::fs::metadata("/proc/thread-self/ns/net").ok()?;
    let mut socket = if std::os::unix::fs::MetadataExt::ino(&own) == netns_inode {
        RouteSocket::new().ok()?
    } else {
        let discovery = crate::netns::discover(&crate::netns::DiscoverOptions::default()).ok()?;
        let netns = discovery.namespaces.iter().find(|netns| netns.id.inode == netns_inode)?;
        let file = std::os::fd::AsFd::as_fd(&netns.file);
        netlink::open_sockets(&[(file, netns_inode)]).ok()?.pop()?.ok()?
    };
    let links = netlink::dump_links(&mut socket).ok()?;
    let link = links.into_iter().find(|link| link.has_name(name))?;
    Some(link.kind.unwrap_or_else(|| "device without a link kind".into()))
}
