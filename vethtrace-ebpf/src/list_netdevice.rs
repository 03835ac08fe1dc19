//! `list_netdevice`: a device enters a netns, either when it is registered or
//! in the second half of a netns move. Emits [`EventKind::Listed`] with the
//! device's ifindex, name and netns in its new netns, which are final by
//! then.
//!
//! Traced: `static void list_netdevice(struct net_device *dev)` in
//! net/core/dev.c; the BTF of Debian's 5.10.262, 6.1.192 and 6.12.118 and of
//! 6.18.44 lists this signature. Events checked in QEMU on Debian 5.10.223,
//! 6.1.176 and 6.12.117, with both the fentry and the kprobe variant.

use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use vethtrace_common::EventKind;

use crate::{
    device::{HelperError, is_veth, offsets, read_device},
    event::emit,
};

#[fentry(function = "list_netdevice")]
pub fn list_netdevice_fentry(ctx: FEntryContext) -> i32 {
    let _ = try_list_netdevice(ctx.arg(0));
    0
}

#[kprobe(function = "list_netdevice")]
pub fn list_netdevice_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(dev) = ctx.arg(0) {
        let _ = try_list_netdevice(dev);
    }
    0
}

fn try_list_netdevice(dev: u64) -> Result<(), HelperError> {
    let off = offsets();
    emit(EventKind::Listed, |event| {
        read_device(dev, &off, &mut event.dev)?;
        event.is_veth = u32::from(is_veth(dev, &off));
        Ok(())
    })
}
