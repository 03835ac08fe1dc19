//! `unlist_netdevice`: a device leaves a netns, either when it is
//! unregistered or in the first half of a netns move. Emits
//! [`EventKind::Unlisted`] with the device as the netns it leaves saw it.
//!
//! Traced: `static void unlist_netdevice(struct net_device *dev)` in
//! net/core/dev.c, as in the BTF of Debian's 5.10.262 and 6.12.118 and of
//! 6.18.44. Debian's 6.1.192 has a second argument, `bool lock`, which this
//! hook does not read. Events checked in QEMU on Debian 5.10.223, 6.1.176 and
//! 6.12.117, with both the fentry and the kprobe variant.

use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use vethtrace_common::EventKind;

use crate::{
    device::{HelperError, is_veth, offsets, read_device},
    event::emit,
};

#[fentry(function = "unlist_netdevice")]
pub fn unlist_netdevice_fentry(ctx: FEntryContext) -> i32 {
    let _ = try_unlist_netdevice(ctx.arg(0));
    0
}

#[kprobe(function = "unlist_netdevice")]
pub fn unlist_netdevice_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(dev) = ctx.arg(0) {
        let _ = try_unlist_netdevice(dev);
    }
    0
}

fn try_unlist_netdevice(dev: u64) -> Result<(), HelperError> {
    let off = offsets();
    emit(EventKind::Unlisted, |event| {
        read_device(dev, &off, &mut event.dev)?;
        event.is_veth = u32::from(is_veth(dev, &off));
        Ok(())
    })
}
