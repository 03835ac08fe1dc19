//! The eBPF tracer: reports veth wiring changes from inside the kernel as
//! they happen, with the process that made them, instead of inferring them
//! from netlink afterwards.
//!
//! [`btf`] reads the running kernel's struct layout and functions, [`attach`]
//! picks per hook between fentry/fexit and kprobe/kretprobe, and [`Tracer`]
//! loads the programs built from `vethtrace-ebpf`, attaches them and reads
//! their events (`vethtrace_common::Event`). When [`Tracer::start`] fails,
//! callers fall back to a netlink monitor; the error says which program,
//! which call and which errno stopped it.

pub mod attach;
pub mod btf;
mod loader;

pub use attach::{AttachKind, AttachPoint, Hook, HookStatus};
pub use loader::{Mode, Status, Tracer, TracerError, TracerOptions, decode_event};
