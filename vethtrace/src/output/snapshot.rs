//! Human output of a snapshot: a netns table, then a veth table.

use std::io::Write;

use super::table::{Style, Table};
use crate::snapshot::model::{LinkEntry, NetnsEntry, Snapshot, container_label};

/// How many holding processes the netns table names before "+N more".
const MAX_NAMED_PROCESSES: usize = 3;

/// Writes the netns table and the veth table.
pub fn write_snapshot(out: &mut dyn Write, snapshot: &Snapshot, color: bool) -> std::io::Result<()> {
    let mut namespaces = Table::new(vec!["NETNS", "COOKIE", "NAME", "HOLDERS"]);
    for netns in &snapshot.netns {
        namespaces.push(vec![
            (netns.inode.to_string(), Style::Plain),
            (optional(netns.cookie), Style::Plain),
            (netns_name(netns), Style::Plain),
            (holders(netns), Style::Plain),
        ]);
    }
    namespaces.write(out, color)?;
    writeln!(out)?;
    write_links(out, snapshot, &snapshot.links, color)?;

    let skipped = &snapshot.skipped;
    let total = skipped.processes + skipped.threads + skipped.fds + skipped.mount_namespaces + skipped.netns;
    if total > 0 {
        writeln!(
            out,
            "\nskipped unreadable /proc entries: {} processes, {} threads, {} fds, {} mount namespaces, {} netns",
            skipped.processes, skipped.threads, skipped.fds, skipped.mount_namespaces, skipped.netns
        )?;
    }
    Ok(())
}

/// Writes the veth table for `links`.
pub fn write_links(out: &mut dyn Write, snapshot: &Snapshot, links: &[LinkEntry], color: bool) -> std::io::Result<()> {
    if links.is_empty() {
        return writeln!(out, "no veth interfaces found");
    }
    let mut table = Table::new(vec![
        "NETNS",
        "IFINDEX",
        "INTERFACE",
        "PEER NETNS",
        "PEER IFINDEX",
        "PEER INTERFACE",
        "VERIFIED",
    ]);
    for link in links {
        let peer = &link.peer;
        let peer_netns = match peer.netns {
            Some(inode) => netns_cell(snapshot, inode),
            None => match link.link_netnsid {
                Some(nsid) => format!("nsid {nsid} (not found)"),
                None => "?".into(),
            },
        };
        let verified = if peer.verified {
            ("yes".to_string(), Style::Plain)
        } else {
            (format!("no: {}", peer.reason.as_deref().unwrap_or("unknown")), Style::Yellow)
        };
        table.push(vec![
            (netns_cell(snapshot, link.netns), Style::Plain),
            (link.ifindex.to_string(), Style::Plain),
            (link.name.clone(), Style::Bold),
            (peer_netns, Style::Plain),
            (optional(peer.ifindex), Style::Plain),
            (peer.name.clone().unwrap_or_else(|| "?".into()), Style::Bold),
            verified,
        ]);
    }
    table.write(out, color)
}

fn netns_cell(snapshot: &Snapshot, inode: u64) -> String {
    match snapshot.netns(inode) {
        Some(netns) => format!("{inode} ({})", netns_name(netns)),
        None => inode.to_string(),
    }
}

fn netns_name(netns: &NetnsEntry) -> String {
    netns.label()
}

fn holders(netns: &NetnsEntry) -> String {
    let mut parts: Vec<String> = Vec::new();
    if netns.current {
        parts.push("current".into());
    }
    for path in &netns.paths {
        let own = netns.mounts.iter().any(|mount| &mount.path == path && mount.own_mount_ns);
        if own {
            parts.push(path.clone());
        } else {
            let mount_ns = netns.mounts.iter().find(|mount| &mount.path == path).map_or(0, |mount| mount.mount_ns);
            parts.push(format!("{path} (in mnt:[{mount_ns}])"));
        }
    }
    for container in &netns.containers {
        parts.push(container_label(container));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut named = 0;
    for process in &netns.processes {
        if !seen.insert(process.pid) {
            continue;
        }
        if named < MAX_NAMED_PROCESSES {
            let via = match process.via.as_str() {
                "process" => String::new(),
                other => format!(" via {other}"),
            };
            parts.push(format!("pid {} ({}){via}", process.pid, process.comm));
            named += 1;
        }
    }
    let more = netns.pids.len().saturating_sub(named);
    if more > 0 {
        parts.push(format!("+{more} more processes"));
    }
    if let Some(error) = &netns.error {
        parts.push(format!("error: {error}"));
    }
    if parts.is_empty() {
        return "-".into();
    }
    parts.join(", ")
}

fn optional<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".into(), |value| value.to_string())
}
