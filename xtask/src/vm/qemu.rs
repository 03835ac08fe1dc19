//! Boots a kernel and initramfs under QEMU and hands the guest's serial
//! console to the caller line by line, with a timeout.
//!
//! QEMU always runs with TCG (software emulation): on the development
//! machines KVM is either missing or, nested inside another VM, hangs the
//! guest. QEMU exits with 0 whether the
//! guest powered off, rebooted or panicked, so callers judge the run by the
//! marker lines the guest printed, never by QEMU's exit status.

use std::fs::File;
use std::io::{BufRead as _, BufReader, BufWriter, Read, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::cmd;

/// One line of output, without its line ending.
pub enum Line {
    /// From the guest's serial console.
    Guest(String),
    /// From QEMU's own standard error.
    Qemu(String),
}

pub struct Boot<'a> {
    pub vmlinuz: &'a Path,
    pub initrd: &'a Path,
    /// File for the whole serial output, QEMU's messages included.
    pub log: &'a Path,
    pub timeout: Duration,
}

pub struct Finished {
    /// The guest was still running when the timeout ran out, and QEMU was
    /// killed.
    pub timed_out: bool,
    pub elapsed: Duration,
}

/// Boots the guest, calls `on_line` for each line it prints and returns when
/// QEMU exits or the timeout runs out.
pub fn boot(boot: &Boot, mut on_line: impl FnMut(&Line)) -> anyhow::Result<Finished> {
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args(["-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "2"])
        .args(["-nographic", "-no-reboot"])
        // Without a network device: QEMU's default user-mode network would
        // let the guest reach the host's networks.
        .args(["-nic", "none"])
        .arg("-kernel")
        .arg(boot.vmlinuz)
        .arg("-initrd")
        .arg(boot.initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let description = cmd::display(&command);
    // Written under a name of this process and renamed at the end, so that
    // two runs that share the target directory do not mix their logs.
    let partial_log = boot.log.with_extension(format!("log.{}.partial", std::process::id()));
    let mut log = BufWriter::new(
        File::create(&partial_log).with_context(|| format!("failed to create {}", partial_log.display()))?,
    );
    writeln!(log, "+ {description}")?;

    let start = Instant::now();
    let mut child =
        KillOnDrop(command.spawn().with_context(|| {
            format!("failed to start {description}; install qemu-system-x86 with cargo xtask setup")
        })?);
    let (sender, receiver) = mpsc::channel();
    let stdout = child.0.stdout.take().context("QEMU has no stdout pipe")?;
    let stderr = child.0.stderr.take().context("QEMU has no stderr pipe")?;
    let guest_sender = sender.clone();
    std::thread::spawn(move || forward_lines(stdout, &guest_sender, Line::Guest));
    std::thread::spawn(move || forward_lines(stderr, &sender, Line::Qemu));

    let mut timed_out = false;
    let mut deadline = boot.timeout;
    loop {
        let remaining = deadline.saturating_sub(start.elapsed());
        match receiver.recv_timeout(remaining) {
            Ok(line) => {
                match &line {
                    Line::Guest(text) => writeln!(log, "{text}")?,
                    Line::Qemu(text) => writeln!(log, "qemu: {text}")?,
                }
                on_line(&line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) if !timed_out => {
                timed_out = true;
                writeln!(log, "timed out after {} s; killing QEMU", boot.timeout.as_secs())?;
                // Killing is only needed when the guest still runs, and an
                // error here means QEMU already exited.
                let _ = child.0.kill();
                // The loop goes on until the pipes close, to pass on the
                // last partial line, such as the `test NAME ... ` of a hung
                // test.
                deadline += Duration::from_secs(5);
            }
            // The pipes stayed open after the kill because a child of QEMU
            // still has them, so give up on the rest.
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            // Both pipes closed, so QEMU has exited.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child
        .0
        .wait()
        .with_context(|| format!("failed to wait for {description}"))?;
    writeln!(log, "QEMU exited: {status}")?;
    log.flush()
        .with_context(|| format!("failed to write {}", partial_log.display()))?;
    std::fs::rename(&partial_log, boot.log)
        .with_context(|| format!("failed to rename {} to {}", partial_log.display(), boot.log.display()))?;
    Ok(Finished {
        timed_out,
        elapsed: start.elapsed(),
    })
}

/// QEMU's process, killed when this value is dropped, so that no guest
/// outlives a `boot` that returned early with an error.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // After a normal return QEMU has exited and been waited for, and
        // both calls do nothing.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends each line read from `stream` until it closes, with bytes that are
/// not UTF-8 replaced.
fn forward_lines(stream: impl Read, sender: &mpsc::Sender<Line>, wrap: fn(String) -> Line) {
    let mut reader = BufReader::new(stream);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = strip_terminal_controls(&String::from_utf8_lossy(&buffer));
                if sender.send(wrap(text)).is_err() {
                    return;
                }
            }
        }
    }
}

/// Removes carriage returns and ANSI escape sequences, such as the screen
/// reset that SeaBIOS sends to the serial console before the kernel starts.
fn strip_terminal_controls(line: &str) -> String {
    let mut text = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(character) = chars.next() {
        match character {
            '\u{1b}' => {
                // A CSI sequence (ESC [ parameters final-byte) or a
                // two-character sequence such as ESC c.
                if chars.next_if_eq(&'[').is_some() {
                    while chars.next().is_some_and(|next| !('\u{40}'..='\u{7e}').contains(&next)) {}
                } else {
                    chars.next();
                }
            }
            '\r' | '\n' => {}
            _ => text.push(character),
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seabios_screen_reset_is_removed() {
        assert_eq!(
            strip_terminal_controls("\u{1b}c\u{1b}[?7l\u{1b}[2J\u{1b}[0mSeaBIOS (version 1.16)\r\n"),
            "SeaBIOS (version 1.16)"
        );
    }

    #[test]
    fn plain_line_is_kept() {
        assert_eq!(strip_terminal_controls("test a ... ok\r\n"), "test a ... ok");
    }
}
