//! Errors that reach the user, and the exit status each one maps to.

use crate::netns_ref::NetnsRefError;
use crate::snapshot::SnapshotError;

/// Exit status for runtime errors: not found, not a veth, privileges, or a
/// failed kernel call.
pub const EXIT_RUNTIME: i32 = 1;
/// Exit status for usage errors: an unknown option or a malformed value.
/// clap uses the same value for the errors it detects.
pub const EXIT_USAGE: i32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    NetnsRef(NetnsRefError),
    #[error("netns {reference:?} (inode {inode}) is not among the namespaces found; run `vethtrace snapshot` to list them")]
    NetnsNotFound { reference: String, inode: u64 },
    #[error("interface {name:?} not found in netns {netns}; `ip -n NETNS link` or `vethtrace snapshot` lists the interfaces")]
    InterfaceNotFound { name: String, netns: String },
    #[error("interface {name:?} in netns {netns} is a {kind}, not a veth, so it has no peer")]
    NotVeth { name: String, netns: String, kind: String },
    #[error("{command} needs {capabilities}; run it as root, for example with sudo")]
    Privileges {
        command: &'static str,
        capabilities: String,
    },
    #[error("failed to write output: {0}")]
    Output(#[source] std::io::Error),
    #[error("failed to install a signal handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error("failed to start the tokio runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("reading eBPF events failed: {0}")]
    Tracer(#[source] crate::ebpf::TracerError),
    #[error(transparent)]
    Monitor(#[from] crate::live::netlink_source::MonitorError),
}

impl Error {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::NetnsRef(NetnsRefError::Invalid(_)) => EXIT_USAGE,
            _ => EXIT_RUNTIME,
        }
    }
}

impl From<NetnsRefError> for Error {
    fn from(error: NetnsRefError) -> Self {
        Self::NetnsRef(error)
    }
}

/// Formats `error` and its sources, joined by ": ", leaving out a source
/// whose message the text already contains (several aya errors repeat
/// their cause).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(source) = current {
        let message = source.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        current = source.source();
    }
    text
}
