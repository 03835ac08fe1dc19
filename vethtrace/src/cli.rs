//! Command-line arguments as the user typed them.
//!
//! Values that need syscalls to resolve (netns references) stay strings here
//! and are resolved by the command that uses them.

use clap::{Parser, Subcommand};

const AFTER_HELP: &str = "\
Exit status:
  0  success
  1  runtime error: an interface or netns not found, not a veth, missing
     privileges, or a kernel call that failed
  2  usage error: an unknown option or a malformed value

vethtrace reads every network namespace on the host, so it needs root
(CAP_SYS_ADMIN to enter namespaces, CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH to
read other processes' /proc entries, CAP_NET_ADMIN for nsid queries).

Environment:
  NO_COLOR   disables colour in human output
  RUST_LOG   overrides -v (for example RUST_LOG=vethtrace=debug)";

/// Find where the other end of every veth is.
///
/// `ip link` shows `veth1@if15 ... link-netnsid 0`, but the ifindex and the
/// nsid are only meaningful inside the netns they were read in. vethtrace
/// finds every network namespace (held by processes, threads, open files,
/// bind mounts in any mount namespace, or sockets), reads each one's links
/// over rtnetlink, and pairs each veth end with its peer, verified from both
/// ends.
#[derive(Debug, Parser)]
#[command(name = "vethtrace", version, after_long_help = AFTER_HELP)]
pub struct Cli {
    /// Log more about what vethtrace does (repeat for more detail), on
    /// standard error.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// What to do; without a command, vethtrace runs `watch`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every network namespace and every veth end with its peer.
    ///
    /// Each pair appears twice, once from each end. A peer is "verified"
    /// when both ends were read and point at each other; otherwise the
    /// reason is shown with what the kernel reported (nsid and ifindex).
    Snapshot(SnapshotArgs),

    /// Show the peer of one interface.
    ///
    /// Example: `vethtrace peer eth0 --netns pid:4242` shows where the
    /// container's eth0 is wired to.
    Peer(PeerArgs),

    /// Print the current veth pairs, then one line per change, until
    /// interrupted.
    ///
    /// With eBPF (Linux 5.8+ with BTF, and fentry or kprobes allowed), every
    /// change comes with the process that made it. Where the kernel refuses
    /// eBPF tracing, vethtrace says why and watches netlink notifications
    /// instead, which cannot name the actor and see only namespaces that
    /// have an nsid in the current netns.
    ///
    /// Events: present (initial state), pair-created, moved, renamed,
    /// deleted (one per end), lost (events dropped; a fresh snapshot
    /// follows) and notice (the mode in use).
    Watch(WatchArgs),

    /// Show the kernel, whether eBPF tracing works, and the attach point
    /// chosen for each hook.
    Status(StatusArgs),
}

#[derive(Debug, Default, clap::Args)]
pub struct WatchArgs {
    /// Print one JSON object per line, each with a stable "event" field.
    #[arg(long)]
    pub json: bool,

    /// Use the netlink monitor even where eBPF tracing works.
    #[arg(long)]
    pub netlink: bool,

    /// Size of the eBPF ring buffer in bytes: a power of two, at least 4096.
    /// Each event takes 144 bytes. Default: 262144.
    #[arg(long, value_name = "BYTES", value_parser = parse_ring_size)]
    pub ring_size: Option<u32>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_ring_size(text: &str) -> Result<u32, String> {
    let size: u32 = text
        .parse()
        .map_err(|_| format!("invalid ring size {text:?}: expected a number of bytes such as 262144"))?;
    if size < 4096 || !size.is_power_of_two() {
        return Err(format!("invalid ring size {size}: use a power of two of at least 4096, such as 262144"));
    }
    Ok(size)
}

#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    /// Print JSON instead of tables: {"netns": [...], "links": [...],
    /// "skipped": {...}}.
    #[arg(long)]
    pub json: bool,

    /// Do not look for namespaces held only by sockets (skips one ioctl per
    /// socket in every process).
    #[arg(long)]
    pub no_sockets: bool,
}

#[derive(Debug, clap::Args)]
pub struct PeerArgs {
    /// The interface name, as `ip link` shows it before the `@`.
    pub interface: String,

    /// The netns the interface is in: a name under /run/netns, a path to an
    /// nsfs file (such as /proc/PID/ns/net or a Docker netns file),
    /// `pid:PID`, `net:[INODE]`, or a bare inode number. Defaults to the
    /// netns vethtrace runs in.
    #[arg(long, short = 'n', value_name = "REF")]
    pub netns: Option<String>,

    /// Print the interface's entry of `snapshot --json`'s "links" array.
    #[arg(long)]
    pub json: bool,
}
