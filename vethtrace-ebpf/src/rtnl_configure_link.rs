//! `rtnl_configure_link`: a newly created link is configured. For a veth this
//! is where both ends are known: `veth_newlink` configures the peer first,
//! while `veth_priv.peer` is still NULL on both ends, then ties the two ends
//! together, and then its caller configures the device itself. So the second
//! call, the one that finds a peer, emits [`EventKind::VethPair`] with `dev`
//! and its peer in `other`, each in its own netns. Other devices and the
//! first call emit nothing.
//!
//! Traced: `int rtnl_configure_link(struct net_device *dev, const struct
//! ifinfomsg *ifm)` in net/core/rtnetlink.c on Debian's 5.10.262, and
//! `(dev, ifm, portid, nlh)` in the BTF of Debian's 6.1.192 and 6.12.118 and
//! of 6.18.44. Only `dev` is read. Events checked in QEMU on Debian 5.10.223,
//! 6.1.176 and 6.12.117, with both the fentry and the kprobe variant.

use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use vethtrace_common::EventKind;

use crate::{
    device::{HelperError, is_veth, offsets, read_device, veth_peer},
    event::emit,
};

#[fentry(function = "rtnl_configure_link")]
pub fn rtnl_configure_link_fentry(ctx: FEntryContext) -> i32 {
    let _ = try_rtnl_configure_link(ctx.arg(0));
    0
}

#[kprobe(function = "rtnl_configure_link")]
pub fn rtnl_configure_link_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(dev) = ctx.arg(0) {
        let _ = try_rtnl_configure_link(dev);
    }
    0
}

fn try_rtnl_configure_link(dev: u64) -> Result<(), HelperError> {
    let off = offsets();
    if !is_veth(dev, &off) {
        return Ok(());
    }
    let peer = veth_peer(dev, &off)?;
    if peer == 0 {
        return Ok(());
    }
    emit(EventKind::VethPair, |event| {
        read_device(dev, &off, &mut event.dev)?;
        read_device(peer, &off, &mut event.other)?;
        event.is_veth = 1;
        Ok(())
    })
}
