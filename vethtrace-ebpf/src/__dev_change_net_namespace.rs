//! `__dev_change_net_namespace`: a device moves to another netns. The entry
//! emits [`EventKind::MoveStart`] with the device in its old netns, the target
//! netns in `other` and the requested ifindex in `value`; the return emits
//! [`EventKind::MoveEnd`] with the device in its new netns (or still in the
//! old one when the move failed) and the return code in `value`.
//!
//! Traced, by kernel BTF:
//! - Debian 5.10.262: `int dev_change_net_namespace(struct net_device *dev,
//!   struct net *net, const char *pat)`. It has no requested ifindex, so
//!   `value` is 0.
//! - Debian 6.1.192: `int __dev_change_net_namespace(struct net_device *dev,
//!   struct net *net, const char *pat, int new_ifindex)`.
//! - Debian 6.12.118 and 6.18.44: the same plus `struct netlink_ext_ack
//!   *extack`.
//!
//! User space picks the function and, because a tracing program may only
//! read the context slots its target has, the fentry and fexit program built
//! for that number of arguments. The kprobe programs read registers, which
//! have no such limit, but the 3-argument function leaves `new_ifindex`'s
//! register undefined, hence two kprobe programs as well. The kretprobe finds
//! its device in [`MOVES`], keyed by the thread. Events checked in QEMU on
//! Debian 5.10.223, 6.1.176 and 6.12.117, with both variants.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, fexit, kprobe, kretprobe, map},
    maps::HashMap,
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use vethtrace_common::EventKind;

use crate::{
    device::{HelperError, is_veth, offsets, read_device, read_netns},
    event::emit,
};

/// The device of each move in progress, keyed by `pid_tgid`, from the kprobe
/// to the kretprobe. Moves run under the RTNL lock, so few are ever pending.
#[map]
static MOVES: HashMap<u64, u64> = HashMap::with_max_entries(256, 0);

#[fentry(function = "__dev_change_net_namespace")]
pub fn dev_change_net_namespace_fentry3(ctx: FEntryContext) -> i32 {
    let _ = try_move_start(ctx.arg(0), ctx.arg(1), 0);
    0
}

#[fentry(function = "__dev_change_net_namespace")]
pub fn dev_change_net_namespace_fentry4(ctx: FEntryContext) -> i32 {
    let _ = try_move_start(ctx.arg(0), ctx.arg(1), ctx.arg(3));
    0
}

#[fexit(function = "__dev_change_net_namespace")]
pub fn dev_change_net_namespace_fexit3(ctx: FExitContext) -> i32 {
    let _ = try_move_end(ctx.arg(0), ctx.arg(3));
    0
}

#[fexit(function = "__dev_change_net_namespace")]
pub fn dev_change_net_namespace_fexit4(ctx: FExitContext) -> i32 {
    let _ = try_move_end(ctx.arg(0), ctx.arg(4));
    0
}

#[fexit(function = "__dev_change_net_namespace")]
pub fn dev_change_net_namespace_fexit5(ctx: FExitContext) -> i32 {
    let _ = try_move_end(ctx.arg(0), ctx.arg(5));
    0
}

#[kprobe(function = "__dev_change_net_namespace")]
pub fn dev_change_net_namespace_kprobe3(ctx: ProbeContext) -> u32 {
    if let (Some(dev), Some(net)) = (ctx.arg(0), ctx.arg(1)) {
        remember(dev);
        let _ = try_move_start(dev, net, 0);
    }
    0
}

#[kprobe(function = "__dev_change_net_namespace")]
pub fn dev_change_net_namespace_kprobe4(ctx: ProbeContext) -> u32 {
    if let (Some(dev), Some(net), Some(new_ifindex)) = (ctx.arg(0), ctx.arg(1), ctx.arg(3)) {
        remember(dev);
        let _ = try_move_start(dev, net, new_ifindex);
    }
    0
}

#[kretprobe(function = "__dev_change_net_namespace")]
pub fn dev_change_net_namespace_kretprobe(ctx: RetProbeContext) -> u32 {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out at once; only this thread's kprobe
    // writes this key, and it cannot run while this thread is here.
    let dev = unsafe { MOVES.get(key) }.copied();
    let _ = MOVES.remove(key);
    if let Some(dev) = dev {
        let _ = try_move_end(dev, ctx.ret());
    }
    0
}

/// Saves `dev` for the kretprobe. A full map only costs that move's
/// [`EventKind::MoveEnd`].
fn remember(dev: u64) {
    let _ = MOVES.insert(bpf_get_current_pid_tgid(), dev, 0);
}

fn try_move_start(dev: u64, net: u64, new_ifindex: i32) -> Result<(), HelperError> {
    let off = offsets();
    emit(EventKind::MoveStart, |event| {
        read_device(dev, &off, &mut event.dev)?;
        read_netns(net, &off, &mut event.other)?;
        event.value = i64::from(new_ifindex);
        event.is_veth = u32::from(is_veth(dev, &off));
        Ok(())
    })
}

fn try_move_end(dev: u64, ret: i32) -> Result<(), HelperError> {
    let off = offsets();
    emit(EventKind::MoveEnd, |event| {
        read_device(dev, &off, &mut event.dev)?;
        event.value = i64::from(ret);
        event.is_veth = u32::from(is_veth(dev, &off));
        Ok(())
    })
}
