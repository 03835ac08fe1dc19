//! `dev_change_name` and `netif_change_name`: a device is renamed. The entry
//! saves the old name in [`RENAMES`], keyed by the thread; the return emits
//! [`EventKind::Renamed`] with the device as it is now in `dev`, the old name
//! in `other.name` and the return code in `value`.
//!
//! Traced: `int dev_change_name(struct net_device *dev, const char *newname)`
//! in net/core/dev.c, as in the BTF of Debian's 5.10.262, 6.1.192 and
//! 6.12.118. 6.18.44 also has `int netif_change_name(struct net_device *dev,
//! const char *newname)`, which `dev_change_name` wraps, so user space
//! attaches to `netif_change_name` where it exists and each rename is seen
//! once. Events checked in QEMU on Debian 5.10.223, 6.1.176 and 6.12.117, with
//! both variants.
//!
//! NOTE: on 6.18, `dev_change_name` calling `netif_change_name` (and not
//! the reverse) is inferred from the names and the BTF, not traced, because
//! the 6.18 hosts reject fentry and have no kprobes.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, fexit, kprobe, kretprobe, map},
    maps::HashMap,
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use vethtrace_common::{EventKind, IFNAME_LEN};

use crate::{
    device::{HelperError, is_veth, name, offsets, read_device},
    event::emit,
};

/// A rename in progress: the device and its name before the call.
#[repr(C)]
#[derive(Clone, Copy)]
struct PendingRename {
    dev: u64,
    old_name: [u8; IFNAME_LEN],
}

/// Renames in progress, keyed by `pid_tgid`, from the entry to the return.
/// Renames run under the RTNL lock, so few are ever pending.
#[map]
static RENAMES: HashMap<u64, PendingRename> = HashMap::with_max_entries(256, 0);

#[fentry(function = "dev_change_name")]
pub fn dev_change_name_fentry(ctx: FEntryContext) -> i32 {
    let _ = try_rename_entry(ctx.arg(0));
    0
}

#[fexit(function = "dev_change_name")]
pub fn dev_change_name_fexit(ctx: FExitContext) -> i32 {
    let _ = try_rename_return(ctx.arg(2));
    0
}

#[kprobe(function = "dev_change_name")]
pub fn dev_change_name_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(dev) = ctx.arg(0) {
        let _ = try_rename_entry(dev);
    }
    0
}

#[kretprobe(function = "dev_change_name")]
pub fn dev_change_name_kretprobe(ctx: RetProbeContext) -> u32 {
    let _ = try_rename_return(ctx.ret());
    0
}

fn try_rename_entry(dev: u64) -> Result<(), HelperError> {
    let pending = PendingRename {
        dev,
        old_name: name(dev, &offsets())?,
    };
    RENAMES.insert(bpf_get_current_pid_tgid(), pending, 0)
}

fn try_rename_return(ret: i32) -> Result<(), HelperError> {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out at once; only this thread's entry
    // program writes this key, and it cannot run while this thread is here.
    let pending = unsafe { RENAMES.get(key) }.copied();
    let _ = RENAMES.remove(key);
    let Some(pending) = pending else {
        return Ok(());
    };
    let off = offsets();
    emit(EventKind::Renamed, |event| {
        read_device(pending.dev, &off, &mut event.dev)?;
        event.other.name = pending.old_name;
        event.value = i64::from(ret);
        event.is_veth = u32::from(is_veth(pending.dev, &off));
        Ok(())
    })
}
