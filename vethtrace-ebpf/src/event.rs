//! Reserves, fills and submits one [`Event`] in the `EVENTS` ring buffer.
//!
//! The record is filled in place: every helper writes straight into the
//! reserved ring buffer memory, so no event-sized copy lives on the 512-byte
//! BPF stack and the compiler has no reason to call `memset` or `memcpy`.

use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    bpf_get_smp_processor_id, bpf_ktime_get_boot_ns, generated::bpf_get_current_comm,
};
use vethtrace_common::{COMM_LEN, EVENT_SIZE, Event, EventKind};

use crate::{DROPPED, EVENTS, device::HelperError};

/// Returned when the ring buffer has no room; the loss is already counted.
const ENOSPC: HelperError = -28;

/// Emits one event of `kind`: reserves a record, zeroes it, writes the actor
/// header, lets `fill` write the device fields, then submits. When `fill`
/// fails the record is discarded and counted in `DROPPED`, so a half-read
/// device never reaches user space.
#[inline(always)]
pub(crate) fn emit(
    kind: EventKind,
    fill: impl FnOnce(&mut Event) -> Result<(), HelperError>,
) -> Result<(), HelperError> {
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        count_dropped();
        return Err(ENOSPC);
    };
    let event = entry.as_mut_ptr();
    let words = event.cast::<u64>();
    for i in 0..EVENT_SIZE / 8 {
        // SAFETY: the reservation is EVENT_SIZE bytes, 8-aligned (the ring
        // buffer aligns every record to 8), so each word is in bounds.
        unsafe { words.add(i).write_volatile(0) };
    }
    // SAFETY: the record is now all zeroes, a valid Event (integers only).
    let event = unsafe { &mut *event };
    write_actor(event, kind);
    match fill(event) {
        Ok(()) => {
            entry.submit(0);
            Ok(())
        }
        Err(error) => {
            entry.discard(0);
            count_dropped();
            Err(error)
        }
    }
}

/// Writes the header of an event of `kind` caused by the current task.
#[inline(always)]
fn write_actor(event: &mut Event, kind: EventKind) {
    let header = &mut event.header;
    let pid_tgid = bpf_get_current_pid_tgid();
    header.kind = kind as u32;
    header.tgid = (pid_tgid >> 32) as u32;
    header.tid = pid_tgid as u32;
    header.uid = bpf_get_current_uid_gid() as u32;
    // SAFETY: these helpers take no pointers and are allowed in kprobe and
    // tracing programs (cgroup id since 4.18, boot time since 5.8).
    unsafe {
        header.cpu = bpf_get_smp_processor_id();
        header.boot_ns = bpf_ktime_get_boot_ns();
        header.cgroup_id = bpf_get_current_cgroup_id();
    }
    // SAFETY: the helper writes at most COMM_LEN bytes, NUL-terminated, into
    // the comm array; on failure it zeroes them, which is what they were.
    unsafe { bpf_get_current_comm(header.comm.as_mut_ptr().cast(), COMM_LEN as u32) };
}

/// Adds one to this CPU's slot of `DROPPED`.
#[inline(always)]
fn count_dropped() {
    if let Some(counter) = DROPPED.get_ptr_mut(0) {
        // SAFETY: the pointer is to this CPU's value of a per-CPU array, valid
        // for the whole program run. Two programs that preempt each other on
        // one CPU may lose an increment, which only undercounts.
        unsafe { *counter += 1 };
    }
}
