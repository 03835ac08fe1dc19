//! Human output of `watch`: one aligned line per event.

use std::io::Write;

use crate::live::Labels;
use crate::live::event::{EndRef, WatchEvent};

/// Column widths; streamed lines cannot be measured in advance, so these fit
/// typical values (a 10-digit inode with a short label, 15-byte names).
const EVENT_WIDTH: usize = 12;
const NETNS_WIDTH: usize = 26;
const IFINDEX_WIDTH: usize = 7;
const NAME_WIDTH: usize = 15;

/// Writes one event. Notices and lost-event reports are sentences.
pub fn write_event(out: &mut dyn Write, event: &WatchEvent, labels: &Labels, color: bool) -> std::io::Result<()> {
    let time = event.time.get(11..26).unwrap_or(&event.time);
    if event.event == "notice" || event.event == "lost" {
        let message = event.message.as_deref().unwrap_or("");
        let (start, end) = if color { ("\x1b[33m", "\x1b[0m") } else { ("", "") };
        return writeln!(out, "{time}  {start}{:<EVENT_WIDTH$}{end}  {message}", event.event);
    }
    let netns = event.netns.map(|inode| netns_text(inode, labels)).unwrap_or_default();
    let ifindex = event.ifindex.map(|ifindex| ifindex.to_string()).unwrap_or_default();
    let name = event.name.as_deref().unwrap_or("?");
    let peer = event.peer.as_ref().map(|peer| end_text(peer, labels)).unwrap_or_else(|| "peer ?".into());
    let mut details = Vec::new();
    if let Some(from) = &event.from {
        details.push(format!("from {}", end_text(from, labels)));
    }
    if let Some(old_name) = &event.old_name {
        details.push(format!("was {old_name}"));
    }
    if let Some(actor) = &event.actor {
        details.push(format!("by pid {} ({}) uid {}", actor.pid, actor.comm, actor.uid));
    }
    let (start, end) = match (color, event.event.as_str()) {
        (false, _) => ("", ""),
        (true, "deleted") => ("\x1b[31m", "\x1b[0m"),
        (true, "pair-created") => ("\x1b[32m", "\x1b[0m"),
        (true, _) => ("\x1b[1m", "\x1b[0m"),
    };
    let line = format!(
        "{time}  {start}{:<EVENT_WIDTH$}{end}  {netns:<NETNS_WIDTH$}  {ifindex:>IFINDEX_WIDTH$}  {name:<NAME_WIDTH$}  <-> {peer}  {}",
        event.event,
        details.join(", ")
    );
    writeln!(out, "{}", line.trim_end())
}

/// The longest netns label printed whole; longer ones are cut so that the
/// columns stay aligned.
const MAX_LABEL_CHARS: usize = 12;

fn netns_text(inode: u64, labels: &Labels) -> String {
    match labels.get(inode) {
        Some(label) if label.chars().count() > MAX_LABEL_CHARS => {
            let cut: String = label.chars().take(MAX_LABEL_CHARS - 1).collect();
            format!("{inode} ({cut}…)")
        }
        Some(label) => format!("{inode} ({label})"),
        None => inode.to_string(),
    }
}

fn end_text(end: &EndRef, labels: &Labels) -> String {
    let netns = end.netns.map(|inode| netns_text(inode, labels)).unwrap_or_else(|| "?".into());
    let ifindex = end.ifindex.map(|ifindex| ifindex.to_string()).unwrap_or_else(|| "?".into());
    match &end.name {
        Some(name) => format!("{name} #{ifindex} in {netns}"),
        None => format!("#{ifindex} in {netns}"),
    }
}
