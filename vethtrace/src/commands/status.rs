//! `vethtrace status`: the kernel, the mode `watch` would use, and why.

use std::io::Write;

use serde::Serialize;

use crate::cli::StatusArgs;
use crate::ebpf::{Mode, Status, Tracer};
use crate::error::Error;
use crate::live::NETLINK_LIMITS;
use crate::output;

/// The document `status --json` prints.
#[derive(Serialize)]
struct Report<'a> {
    /// "ebpf" or "netlink": the mode `watch` would use.
    watch_mode: &'static str,
    /// The reason for netlink mode, when it is netlink.
    reason: Option<String>,
    #[serde(flatten)]
    tracer: &'a Status,
}

pub fn run(args: &StatusArgs, out: &mut dyn Write) -> Result<(), Error> {
    super::require_privileges("vethtrace status")?;
    let status = Tracer::probe_status();
    let (watch_mode, reason) = match &status.mode {
        Mode::Ebpf => ("ebpf", None),
        Mode::Unavailable(reason) => ("netlink", Some(reason.clone())),
    };
    if args.json {
        let report = Report {
            watch_mode,
            reason,
            tracer: &status,
        };
        return output::write_json_pretty(out, &report).map_err(Error::Output);
    }
    let mode_line = match reason {
        None => "ebpf: every change with its actor, in every netns".to_string(),
        Some(_) => format!("netlink fallback, because eBPF tracing is unavailable ({NETLINK_LIMITS})"),
    };
    let mut text = format!("kernel: {}\nwatch mode: {mode_line}\nhooks:\n", status.kernel_release);
    for hook in &status.hooks {
        text.push_str(&format!("  {hook}\n"));
    }
    if status.hooks.is_empty()
        && let Mode::Unavailable(reason) = &status.mode
    {
        text.push_str(&format!("  none chosen: {reason}\n"));
    }
    out.write_all(text.as_bytes()).map_err(Error::Output)
}
