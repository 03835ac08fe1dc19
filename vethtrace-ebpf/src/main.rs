//! vethtrace's eBPF programs. Each hook lives in its own module, named for the
//! kernel function it traces.
#![no_std]
#![no_main]

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

/// Placeholder until the device hooks land: proves that the build, the
/// embedding and the loader work on every kernel.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn vethtrace_probe(_ctx: RawTracePointContext) -> i32 {
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
