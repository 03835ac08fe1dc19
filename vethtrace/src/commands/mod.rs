//! One module per subcommand.

pub mod peer;
pub mod snapshot;
pub mod status;
pub mod watch;

use crate::error::Error;
use crate::privileges;

/// Fails with [`Error::Privileges`] unless the process has what a snapshot
/// needs.
pub fn require_privileges(command: &'static str) -> Result<(), Error> {
    let missing = privileges::missing_capabilities();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Privileges {
        command,
        capabilities: missing.join(", "),
    })
}
