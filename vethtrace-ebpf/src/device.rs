//! Reads `struct net_device` and `struct net` fields at the offsets user space
//! found in the running kernel's BTF.
//!
//! Every read goes through `bpf_probe_read_kernel` (Linux 5.5+), so a wrong
//! pointer or offset yields an error instead of a verifier rejection or a
//! fault. Pointers are plain addresses here: kprobe arguments are scalars
//! anyway, and fentry arguments are never dereferenced directly.

use aya_ebpf::helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_buf};
use vethtrace_common::{DeviceRef, IFNAME_LEN, Offsets};

use crate::OFFSETS;

/// Error from a BPF helper: its negative errno.
pub(crate) type HelperError = i32;

/// Returns the offsets user space wrote into [`OFFSETS`].
///
/// The volatile read keeps the compiler from folding in the zeroes that the
/// object file contains at build time.
#[inline(always)]
pub(crate) fn offsets() -> Offsets {
    // SAFETY: OFFSETS is a valid, aligned static; the read only copies it.
    unsafe { core::ptr::read_volatile(&raw const OFFSETS) }
}

/// Reads a `T` at `base + offset` in kernel memory, through the stack.
#[inline(always)]
fn read<T>(base: u64, offset: u32) -> Result<T, HelperError> {
    let src = base.wrapping_add(u64::from(offset)) as *const T;
    // SAFETY: bpf_probe_read_kernel checks the address and fails instead of
    // faulting; every bit pattern is a valid T for the integer types used here.
    unsafe { bpf_probe_read_kernel(src) }
}

/// Fills `out` with the ifindex, name and netns of the `struct net_device` at
/// `dev`.
#[inline(always)]
pub(crate) fn read_device(dev: u64, off: &Offsets, out: &mut DeviceRef) -> Result<(), HelperError> {
    out.ifindex = read::<i32>(dev, off.dev_ifindex)?;
    read_name(dev, off, &mut out.name)?;
    let net = read::<u64>(dev, off.dev_nd_net)?;
    read_netns(net, off, out)
}

/// Copies `net_device.name` (IFNAMSIZ bytes, NUL-padded by the kernel)
/// straight into `out`.
#[inline(always)]
pub(crate) fn read_name(
    dev: u64,
    off: &Offsets,
    out: &mut [u8; IFNAME_LEN],
) -> Result<(), HelperError> {
    let src = dev.wrapping_add(u64::from(off.dev_name)) as *const u8;
    // SAFETY: bpf_probe_read_kernel_buf checks the source address and writes
    // exactly out.len() bytes into out.
    unsafe { bpf_probe_read_kernel_buf(src, out) }
}

/// Returns `net_device.name`.
#[inline(always)]
pub(crate) fn name(dev: u64, off: &Offsets) -> Result<[u8; IFNAME_LEN], HelperError> {
    read(dev, off.dev_name)
}

/// Fills the netns cookie and inode of the `struct net` at `net`.
#[inline(always)]
pub(crate) fn read_netns(net: u64, off: &Offsets, out: &mut DeviceRef) -> Result<(), HelperError> {
    if off.net_cookie != u32::MAX {
        out.netns_cookie = read::<u64>(net, off.net_cookie)?;
    }
    out.netns_inode = read::<u32>(net, off.net_inum)?;
    Ok(())
}

/// Checks whether `dev` is a veth: its `rtnl_link_ops` is set and
/// `ops->kind` is "veth". A failed read counts as "not a veth".
#[inline(always)]
pub(crate) fn is_veth(dev: u64, off: &Offsets) -> bool {
    let Ok(ops) = read::<u64>(dev, off.dev_rtnl_link_ops) else {
        return false;
    };
    if ops == 0 {
        return false;
    }
    let Ok(kind) = read::<u64>(ops, off.link_ops_kind) else {
        return false;
    };
    if kind == 0 {
        return false;
    }
    let Ok(bytes) = read::<[u8; 5]>(kind, 0) else {
        return false;
    };
    // Byte by byte, so that the compiler inlines the comparison instead of
    // calling `bcmp`.
    bytes[0] == b'v' && bytes[1] == b'e' && bytes[2] == b't' && bytes[3] == b'h' && bytes[4] == 0
}

/// Returns `veth_priv.peer` of the veth `dev`, 0 while it has no peer yet.
/// The caller checks [`is_veth`] first, because on another device the
/// private area contains something else.
#[inline(always)]
pub(crate) fn veth_peer(dev: u64, off: &Offsets) -> Result<u64, HelperError> {
    let private = dev.wrapping_add(u64::from(off.dev_priv));
    read::<u64>(private, off.veth_peer)
}
