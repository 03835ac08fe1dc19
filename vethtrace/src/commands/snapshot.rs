//! `vethtrace snapshot`: every netns and every veth end with its peer.

use std::io::Write;

use crate::cli::SnapshotArgs;
use crate::error::Error;
use crate::netns::DiscoverOptions;
use crate::output;
use crate::snapshot::{self, SnapshotOptions};

pub fn run(args: &SnapshotArgs, out: &mut dyn Write) -> Result<(), Error> {
    super::require_privileges("vethtrace snapshot")?;
    let options = SnapshotOptions {
        discover: DiscoverOptions {
            sockets: !args.no_sockets,
            ..DiscoverOptions::default()
        },
        ..SnapshotOptions::default()
    };
    let snapshot = snapshot::take(&options)?;
    if args.json {
        output::write_json_pretty(out, &snapshot).map_err(Error::Output)
    } else {
        output::snapshot::write_snapshot(out, &snapshot, output::color_enabled()).map_err(Error::Output)
    }
}
