//! `vethtrace watch`: the current pairs, then one line per change.

use std::io::Write;

use crate::cli::WatchArgs;
use crate::error::Error;
use crate::live::{self, WatchOptions, WriteSink};
use crate::output;

pub fn run(args: &WatchArgs, out: &mut dyn Write) -> Result<(), Error> {
    super::require_privileges("vethtrace watch")?;
    let options = WatchOptions {
        netlink: args.netlink,
        ring_size: args.ring_size,
    };
    let mut sink = WriteSink {
        out,
        json: args.json,
        color: !args.json && output::color_enabled(),
    };
    // One thread is enough: the work is a loop over one fd, and a snapshot
    // taken during a batch blocks it on purpose, so changes stay in order.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(live::watch(&options, &mut sink))
}
