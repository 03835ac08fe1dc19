//! vethtrace's eBPF programs. Each hook lives in its own module, named for the
//! kernel function it traces. It offers an fentry (and fexit) variant for
//! kernels that allow BPF trampolines and a kprobe (and kretprobe) variant for
//! kernels that do not. User space loads one variant per hook (see
//! `vethtrace::ebpf::attach`).
//!
//! aya-ebpf emits no CO-RE relocations, so the programs read kernel structs
//! through the byte offsets in [`OFFSETS`], which user space fills in from the
//! running kernel's BTF before loading.
#![no_std]
#![no_main]

mod device;
mod event;

mod __dev_change_net_namespace;
mod dev_change_name;
mod list_netdevice;
mod rtnl_configure_link;
mod unlist_netdevice;

use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use vethtrace_common::Offsets;

/// Default size of [`EVENTS`] in bytes; user space may change it before
/// loading. 256 KiB hold about 1800 events of 144 bytes (136 plus the 8-byte record header).
const EVENTS_DEFAULT_SIZE: u32 = 256 * 1024;

/// Every event, as one `vethtrace_common::Event` per record.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_DEFAULT_SIZE, 0);

/// Events lost, per CPU, in slot 0: a full [`EVENTS`], or a kernel read that
/// failed after the record was reserved.
#[map]
static DROPPED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Struct layout of the running kernel. User space overwrites this value in
/// the object before loading; read it only through [`device::offsets`].
#[unsafe(no_mangle)]
static OFFSETS: Offsets = Offsets {
    dev_ifindex: 0,
    dev_name: 0,
    dev_nd_net: 0,
    dev_rtnl_link_ops: 0,
    link_ops_kind: 0,
    net_cookie: 0,
    net_inum: 0,
    veth_peer: 0,
    dev_priv: 0,
    _pad: 0,
};

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
