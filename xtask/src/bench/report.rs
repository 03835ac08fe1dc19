//! Results of the snapshot benchmark and their Markdown table.
//!
//! The sandboxed run prints a [`SizeResult`] as JSON and the outer command
//! parses it, so these types are the contract between the two.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The targets at [`TARGET_SIZE`] containers.
pub const TARGET_SIZE: usize = 1000;
pub const TARGET_SPEEDUP: f64 = 30.0;
pub const TARGET_SECONDS: f64 = 0.2;
/// 50 MB in bytes; 47.7 MiB.
pub const TARGET_RSS_BYTES: f64 = 50e6;

/// Everything measured at one number of containers.
#[derive(Serialize, Deserialize)]
pub struct SizeResult {
    pub size: usize,
    /// Time to build the topology, which no tool's time includes.
    pub setup_seconds: f64,
    pub tools: Vec<ToolResult>,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tool {
    Vethtrace,
    ShellLoop,
    AllPairs,
}

impl Tool {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Vethtrace => "vethtrace snapshot --json",
            Self::ShellLoop => "shell loop (nsenter + ip link per container)",
            Self::AllPairs => "all-pairs RTM_GETNSID (pyroute2)",
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct ToolResult {
    pub tool: Tool,
    /// Timed runs whose output matched the wiring.
    pub runs: Vec<Run>,
    pub status: Status,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct Run {
    /// Wall time.
    pub seconds: f64,
    /// User plus system CPU time.
    pub cpu_seconds: f64,
    pub max_rss_kib: u64,
}

/// The outcome of a tool's runs. The first run that is not [`Status::Ok`]
/// stops that tool's runs.
#[derive(Serialize, Deserialize)]
pub enum Status {
    Ok,
    TimedOut { limit_seconds: u64 },
    /// Non-zero exit status, with the end of its standard error.
    Failed { message: String },
    /// The tool exited with 0 but its output did not match the wiring.
    WrongResult { message: String },
}

impl ToolResult {
    /// Returns the median wall time, or `None` unless every run was correct.
    pub fn median_seconds(&self) -> Option<f64> {
        self.median_of(|run| run.seconds)
    }

    pub fn median_cpu_seconds(&self) -> Option<f64> {
        self.median_of(|run| run.cpu_seconds)
    }

    fn median_of(&self, value: impl Fn(&Run) -> f64) -> Option<f64> {
        if !matches!(self.status, Status::Ok) || self.runs.is_empty() {
            return None;
        }
        median(self.runs.iter().map(value).collect())
    }

    /// Returns the largest peak RSS of any run, in MiB.
    pub fn max_rss_mib(&self) -> Option<f64> {
        self.runs.iter().map(|run| run.max_rss_kib).max().map(|kib| kib as f64 / 1024.0)
    }

    fn range_seconds(&self) -> Option<(f64, f64)> {
        let min = self.runs.iter().map(|run| run.seconds).min_by(f64::total_cmp)?;
        let max = self.runs.iter().map(|run| run.seconds).max_by(f64::total_cmp)?;
        Some((min, max))
    }
}

/// Renders every result as one Markdown table.
pub fn table(results: &[SizeResult]) -> String {
    let mut text = String::new();
    text.push_str("| N | tool | runs | median time | min – max | speedup vs shell loop | median CPU time | peak RSS |\n");
    text.push_str("|---:|---|---:|---:|---:|---:|---:|---:|\n");
    for result in results {
        let shell = result
            .tools
            .iter()
            .find(|tool| tool.tool == Tool::ShellLoop)
            .and_then(ToolResult::median_seconds);
        for tool in &result.tools {
            let median = match (&tool.status, tool.median_seconds()) {
                (Status::Ok, Some(median)) => format_seconds(median),
                (Status::TimedOut { limit_seconds }, _) => format!("timed out (> {limit_seconds} s)"),
                (Status::Failed { .. }, _) => "failed".into(),
                (Status::WrongResult { .. }, _) => "wrong result".into(),
                (Status::Ok, None) => "no run".into(),
            };
            let range = match (&tool.status, tool.range_seconds()) {
                (Status::Ok, Some((min, max))) => format!("{} – {}", format_seconds(min), format_seconds(max)),
                _ => "–".into(),
            };
            let speedup = match (shell, tool.median_seconds()) {
                (Some(shell), Some(median)) if median > 0.0 => format_speedup(shell / median),
                _ => "–".into(),
            };
            let cpu = tool.median_cpu_seconds().map_or_else(|| "–".into(), format_seconds);
            let rss = tool
                .max_rss_mib()
                .map_or_else(|| "–".into(), |mib| format!("{mib:.1} MiB"));
            let _ = writeln!(
                text,
                "| {} | {} | {} | {median} | {range} | {speedup} | {cpu} | {rss} |",
                result.size,
                tool.tool.describe(),
                tool.runs.len(),
            );
        }
    }
    text
}

/// Lists how vethtrace did against the targets at [`TARGET_SIZE`]
/// containers, or nothing when that size was not measured.
pub fn targets(results: &[SizeResult]) -> Option<String> {
    let result = results.iter().find(|result| result.size == TARGET_SIZE)?;
    let find = |wanted: Tool| result.tools.iter().find(|tool| tool.tool == wanted);
    let vethtrace = find(Tool::Vethtrace)?;
    let median = vethtrace.median_seconds();
    let shell = find(Tool::ShellLoop).and_then(ToolResult::median_seconds);
    let verdict = |met: Option<bool>| match met {
        Some(true) => "met",
        Some(false) => "missed",
        None => "not measured",
    };

    let mut text = format!("Targets at N = {TARGET_SIZE}:\n");
    let speedup = shell.zip(median).map(|(shell, median)| shell / median);
    let _ = writeln!(
        text,
        "- at least {TARGET_SPEEDUP}× faster than the shell loop: {} ({})",
        verdict(speedup.map(|speedup| speedup >= TARGET_SPEEDUP)),
        speedup.map_or_else(|| "no shell loop time".into(), format_speedup),
    );
    let _ = writeln!(
        text,
        "- under {TARGET_SECONDS} s: {} ({})",
        verdict(median.map(|median| median < TARGET_SECONDS)),
        median.map_or_else(|| "no time".into(), format_seconds),
    );
    let rss = vethtrace.max_rss_mib();
    let _ = writeln!(
        text,
        "- under {} MB peak RSS: {} ({})",
        TARGET_RSS_BYTES / 1e6,
        verdict(rss.map(|mib| mib * 1024.0 * 1024.0 < TARGET_RSS_BYTES)),
        rss.map_or_else(|| "no run".into(), |mib| format!("{mib:.1} MiB")),
    );
    Some(text)
}

/// Formats a speedup with one decimal, or two below 1 so a slower tool
/// does not show as 0.0×.
fn format_speedup(speedup: f64) -> String {
    if speedup < 1.0 {
        format!("{speedup:.2}×")
    } else {
        format!("{speedup:.1}×")
    }
}

/// Formats seconds to the millisecond below 1 s, coarser above.
pub fn format_seconds(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{seconds:.3} s")
    } else if seconds < 100.0 {
        format!("{seconds:.2} s")
    } else {
        format!("{seconds:.0} s")
    }
}

/// Returns the median of `values`, or `None` when there are none.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    })
}
