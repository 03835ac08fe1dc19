//! Reads the guest's console output: the marker lines of `/init` and the
//! job, and the Rust test harness's per-test lines, into one report per
//! kernel.
//!
//! The tests run with `--nocapture` so that their output reaches the serial
//! log in order. libtest then prints `test NAME ... ` before a test runs and
//! the result after it, so a test's output can split that line in two:
//! `test NAME ... first output line`, more output, then `ok` alone on a line.
//! The counts come from libtest's own `test result:` lines, so a result
//! line lost in such output still counts.

use std::time::Duration;

/// The prefix of every line that `/init` and the job print for the host.
pub const MARKER: &str = "vethtrace-vm-";
/// The line the tests print to name the tracing mode they ran with.
const MODE: &str = "vethtrace-mode: ";
/// Failed tests keep at most this many of their output lines for the
/// terminal; the log keeps all.
const MAX_OUTPUT_LINES: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    Skipped,
}

impl Outcome {
    fn parse(word: &str) -> Option<Self> {
        match word {
            "ok" => Some(Self::Passed),
            "FAILED" => Some(Self::Failed),
            _ if word == "ignored" || word.starts_with("ignored, ") => Some(Self::Skipped),
            _ => None,
        }
    }
}

/// The meaning of a console line to the caller.
pub enum Event {
    /// A marker or other line of no interest to the terminal.
    None,
    /// A test finished; `output` has its lines when it failed.
    Test {
        name: String,
        outcome: Outcome,
        output: Vec<String>,
    },
    /// A line worth showing, such as a kernel module that did not load or
    /// the harness's list of failures.
    Show(String),
}

#[derive(Default)]
pub struct Report {
    /// The kernel release that the guest's `uname -r` printed.
    pub release: Option<String>,
    /// Modules the guest tried to load, and whether they loaded.
    pub modules: Vec<(String, bool)>,
    /// Distinct `vethtrace-mode:` values, in order of appearance.
    pub modes: Vec<String>,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// The job's verdict from `vethtrace-vm-result: pass|fail`.
    pub result: Option<bool>,
    /// The job's exit status from `vethtrace-vm-exit: N`.
    pub exit_code: Option<i32>,
    /// Time from QEMU's start to the first line from `/init`.
    pub boot_time: Option<Duration>,
    running: Option<(String, Vec<String>)>,
    in_failures: bool,
}

impl Report {
    /// Reads one console line, seen `elapsed` after QEMU started.
    pub fn read_line(&mut self, line: &str, elapsed: Duration) -> Event {
        if let Some(position) = line.find(MODE) {
            let mode = line[position + MODE.len()..].trim().to_owned();
            if !mode.is_empty() && !self.modes.contains(&mode) {
                self.modes.push(mode);
            }
        }
        if let Some(position) = line.find(MARKER) {
            self.read_marker(&line[position + MARKER.len()..], elapsed);
            let marker = &line[position..];
            if let Some(text) = marker.strip_prefix("vethtrace-vm-module: ")
                && let Some(name) = text.strip_suffix(" failed")
            {
                return Event::Show(format!("kernel module {name} failed to load"));
            }
            if let Some(text) = marker.strip_prefix("vethtrace-vm-warning: ") {
                return Event::Show(format!("guest warning: {text}"));
            }
            return Event::None;
        }

        if let Some(summary) = line.strip_prefix("test result: ") {
            self.running = None;
            self.in_failures = false;
            self.read_summary(summary);
            return Event::Show(line.to_owned());
        }
        if let Some(rest) = line.strip_prefix("test ")
            && let Some((name, after)) = rest.split_once(" ... ")
            && !name.contains(' ')
        {
            return match Outcome::parse(after.trim_end()) {
                Some(outcome) => Event::Test {
                    name: name.to_owned(),
                    outcome,
                    output: Vec::new(),
                },
                None => {
                    self.running = Some((name.to_owned(), vec![after.to_owned()]));
                    Event::None
                }
            };
        }
        if let Some((name, output)) = self.running.as_mut() {
            if let Some(outcome) = Outcome::parse(line.trim_end()) {
                let name = std::mem::take(name);
                let output = std::mem::take(output);
                self.running = None;
                let output = if outcome == Outcome::Failed { output } else { Vec::new() };
                return Event::Test { name, outcome, output };
            }
            if output.len() < MAX_OUTPUT_LINES {
                output.push(line.to_owned());
            }
            return Event::None;
        }

        if line == "failures:" {
            self.in_failures = true;
        }
        if self.in_failures {
            return Event::Show(line.to_owned());
        }
        Event::None
    }

    fn read_marker(&mut self, marker: &str, elapsed: Duration) {
        let Some((key, value)) = marker.split_once(": ") else {
            return;
        };
        let value = value.trim();
        match key {
            "kernel" => {
                self.release = Some(value.to_owned());
                self.boot_time.get_or_insert(elapsed);
            }
            "module" => {
                if let Some((name, state)) = value.split_once(' ') {
                    self.modules.push((name.to_owned(), state == "loaded"));
                }
            }
            "result" => self.result = Some(value == "pass"),
            "exit" => self.exit_code = value.parse().ok(),
            _ => {}
        }
    }

    /// Adds the counts of `ok. 3 passed; 1 failed; 2 ignored; 0 measured; ...`.
    fn read_summary(&mut self, summary: &str) {
        for part in summary.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(label), Some(count)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<usize>() else { continue };
            match label {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                "ignored" => self.skipped += count,
                _ => {}
            }
        }
    }

    /// Returns the test that started but printed no result, such as one
    /// still running when the guest timed out.
    pub fn running_test(&self) -> Option<&str> {
        self.running.as_ref().map(|(name, _)| name.as_str())
    }

    /// Describes the kernel modules in a few words, such as
    /// `modules veth llc stp bridge loaded`.
    pub fn modules_summary(&self) -> String {
        let names = |loaded: bool| -> Vec<&str> {
            self.modules
                .iter()
                .filter(|(_, state)| *state == loaded)
                .map(|(name, _)| name.as_str())
                .collect()
        };
        let failed = names(false);
        if !failed.is_empty() {
            return format!("modules {} FAILED to load", failed.join(" "));
        }
        let loaded = names(true);
        if loaded.is_empty() {
            return "no modules loaded".to_owned();
        }
        format!("modules {} loaded", loaded.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(report: &mut Report, text: &str) -> Vec<Event> {
        text.lines()
            .map(|line| report.read_line(line, Duration::ZERO))
            .collect()
    }

    fn tests(events: &[Event]) -> Vec<(String, Outcome, usize)> {
        events
            .iter()
            .filter_map(|event| match event {
                Event::Test { name, outcome, output } => Some((name.clone(), *outcome, output.len())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn captured_test_lines() {
        let mut report = Report::default();
        let events = read_all(
            &mut report,
            "running 3 tests\ntest a::one ... ok\ntest a::two ... FAILED\ntest a::three ... ignored, needs root\n\
             test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n",
        );
        assert_eq!(
            tests(&events),
            [
                ("a::one".to_owned(), Outcome::Passed, 0),
                ("a::two".to_owned(), Outcome::Failed, 0),
                ("a::three".to_owned(), Outcome::Skipped, 0)
            ]
        );
        assert_eq!((report.passed, report.failed, report.skipped), (1, 1, 1));
    }

    #[test]
    fn output_splits_test_line() {
        let mut report = Report::default();
        let events = read_all(
            &mut report,
            "test a::one ... vethtrace-mode: fentry\nmore\nok\ntest a::two ... oops\nthread panicked\nFAILED\n",
        );
        assert_eq!(
            tests(&events),
            [
                ("a::one".to_owned(), Outcome::Passed, 0),
                ("a::two".to_owned(), Outcome::Failed, 2)
            ]
        );
        assert_eq!(report.modes, ["fentry"]);
    }

    #[test]
    fn markers() {
        let mut report = Report::default();
        let events = read_all(
            &mut report,
            "vethtrace-vm-kernel: 6.1.0-50-cloud-amd64\nvethtrace-vm-module: veth loaded\n\
             vethtrace-vm-module: bridge failed\nvethtrace-vm-result: pass\nvethtrace-vm-exit: 3\n",
        );
        assert_eq!(report.release.as_deref(), Some("6.1.0-50-cloud-amd64"));
        assert_eq!(
            report.modules,
            [("veth".to_owned(), true), ("bridge".to_owned(), false)]
        );
        assert_eq!(report.result, Some(true));
        assert_eq!(report.exit_code, Some(3));
        assert!(matches!(&events[2], Event::Show(text) if text.contains("bridge")));
    }

    #[test]
    fn marker_after_kernel_message() {
        let mut report = Report::default();
        read_all(&mut report, "[    9.1] random: crng initvethtrace-vm-result: fail\n");
        assert_eq!(report.result, Some(false));
    }
}
