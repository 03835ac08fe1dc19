//! Human and JSON output.

pub mod snapshot;
pub mod table;
pub mod watch;

use std::io::{IsTerminal, Write};

/// Whether human output may use colour: only on a terminal, and never when
/// NO_COLOR is set to a non-empty value.
pub fn color_enabled() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    !no_color && std::io::stdout().is_terminal()
}

/// Writes `value` as one line of JSON.
pub fn write_json<T: serde::Serialize>(out: &mut dyn Write, value: &T) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)
}

/// Writes `value` as indented JSON.
pub fn write_json_pretty<T: serde::Serialize>(out: &mut dyn Write, value: &T) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}
