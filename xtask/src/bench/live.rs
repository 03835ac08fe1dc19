//! `cargo xtask bench live`: measures `vethtrace watch --json` in eBPF mode
//! during a burst of veth pair creations and deletions, inside QEMU guests,
//! and prints one Markdown table per kernel.
//!
//! The development hosts refuse eBPF tracing, so every figure comes from a
//! guest that `cargo xtask vm-run` boots under TCG, an emulated CPU. This
//! side builds vethtrace and the `watch_latency` example, appends the
//! example to the guest script `xtask/bench/live-guest.sh`, and reads the
//! `vtlb-*` lines that the script prints. The script's header describes
//! the measurements.
//!
//! Each kernel boots once per round, and each boot times one burst without
//! the tracer and one with it, after an untimed warm-up burst. The two run
//! in alternating order from round to round. The burst times of one boot
//! varied by up to 1.5× from those of another on a 2-core host that other
//! work shared, so a ratio of two bursts in the same boot is the one worth
//! reading. One burst of 2000 pairs took 1 to 2.5 minutes under TCG.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Deserialize;

use super::report::median;
use crate::cmd;

const GUEST_SCRIPT: &str = include_str!("../../bench/live-guest.sh");
/// The line after which the guest script finds the `watch_latency` binary.
const PAYLOAD_MARKER: &str = "__VTLB_READER__";
/// The overhead target: burst time with the tracer over burst time without.
const TARGET_RATIO: f64 = 1.05;
/// USER_HZ, the unit of the CPU times in /proc/PID/stat; 100 on x86-64.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

#[derive(clap::Args)]
pub struct Options {
    /// Kernel series to boot, comma-separated: 5.10, 6.1, 6.12.
    #[arg(long, value_delimiter = ',', default_value = "6.1,6.12", value_parser = ["5.10", "6.1", "6.12"])]
    pub kernels: Vec<String>,
    /// Veth pairs that one burst creates and then deletes.
    #[arg(long, default_value_t = 2000)]
    pub pairs: usize,
    /// Boots per kernel. Each boot times one burst without the tracer and
    /// one with it, after an untimed warm-up burst.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Seconds the tracer stays idle after its burst while its context
    /// switches are counted; 0 skips the count.
    #[arg(long, default_value_t = 30)]
    pub idle_seconds: u64,
    /// Seconds to wait, after a traced burst, for its last line before the
    /// run is reported as incomplete.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub drain_limit: u64,
    /// Ring buffer size for `vethtrace watch --ring-size`, in bytes; without
    /// it the tracer uses its default.
    #[arg(long, value_name = "BYTES")]
    pub ring_size: Option<u32>,
    /// Seconds one boot may take before QEMU is stopped.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub timeout: u64,
    /// The vethtrace binary to measure, instead of building
    /// target/release/vethtrace.
    #[arg(long, value_name = "PATH")]
    pub vethtrace: Option<PathBuf>,
}

pub fn bench(options: &Options) -> anyhow::Result<()> {
    if options.pairs == 0 || options.rounds == 0 {
        bail!("--pairs and --rounds must be at least 1");
    }
    let (vethtrace, reader) = build(options.vethtrace.as_deref())?;
    let files = RunFiles::create(&vethtrace, &reader)?;

    let mut results = Vec::new();
    for kernel in &options.kernels {
        let mut result = KernelResult::new(kernel);
        for round in 1..=options.rounds {
            run_guest(options, round, &files, &mut result)?;
        }
        results.push(result);
    }
    drop(files);

    println!();
    for result in &results {
        print!("{}", table(options, result));
        println!();
    }

    let failed: Vec<String> = results
        .iter()
        .filter_map(|result| result.failure(options).map(|reason| format!("{}: {reason}", result.series)))
        .collect();
    if !failed.is_empty() {
        bail!("the live benchmark failed, so its figures are incomplete:\n{}", failed.join("\n"));
    }
    Ok(())
}

/// Builds vethtrace (unless `prebuilt` is given) and the `watch_latency`
/// example, and returns their paths.
fn build(prebuilt: Option<&Path>) -> anyhow::Result<(PathBuf, PathBuf)> {
    let release = target_dir().join("release");
    let mut command = Command::new("cargo");
    command
        .args(["build", "--release", "--package", "vethtrace", "--example", "watch_latency"])
        .current_dir(cmd::workspace_root());
    if prebuilt.is_none() {
        command.args(["--bin", "vethtrace"]);
    }
    cmd::run(&mut command)?;
    let vethtrace = match prebuilt {
        Some(path) => std::fs::canonicalize(path).with_context(|| format!("the vethtrace binary {} is missing", path.display()))?,
        None => release.join("vethtrace"),
    };
    Ok((vethtrace, release.join("examples").join("watch_latency")))
}

/// Cargo's target directory: CARGO_TARGET_DIR, or `target` in the workspace.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => cmd::workspace_root().join(dir),
        None => cmd::workspace_root().join("target"),
    }
}

/// Private copies of the programs that every boot uses, in a temporary
/// folder that is deleted on drop. A run takes half an hour or more, and a
/// `cargo build` in the same workspace meanwhile would otherwise change the
/// vethtrace under test between boots, or delete the running xtask binary
/// that starts each vm-run.
struct RunFiles {
    dir: PathBuf,
    xtask: PathBuf,
    vethtrace: PathBuf,
    /// The guest script with the `watch_latency` binary appended.
    script: PathBuf,
}

impl RunFiles {
    fn create(vethtrace: &Path, reader: &Path) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("vtlb-live.{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
        let files = Self {
            xtask: dir.join("xtask"),
            vethtrace: dir.join("vethtrace"),
            script: dir.join("live-guest.sh"),
            dir,
        };
        // /proc/self/exe still opens the binary after a rebuild unlinked it.
        copy_with_mtime(Path::new("/proc/self/exe"), &files.xtask)?;
        // vm-run caches the guest's vethtrace layer by path, size and mtime,
        // so keeping the mtime lets later runs of the same binary reuse it.
        copy_with_mtime(vethtrace, &files.vethtrace)?;

        let binary = std::fs::read(reader).with_context(|| format!("failed to read {}", reader.display()))?;
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(&binary)?;
        let compressed = encoder.finish()?;
        let mut text = GUEST_SCRIPT.to_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(PAYLOAD_MARKER);
        text.push('\n');
        text.push_str(&base64_lines(&compressed));
        std::fs::write(&files.script, text).with_context(|| format!("failed to write {}", files.script.display()))?;
        Ok(files)
    }
}

impl Drop for RunFiles {
    fn drop(&mut self) {
        // A leftover folder in the temporary directory only costs space.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn copy_with_mtime(from: &Path, to: &Path) -> anyhow::Result<()> {
    let failed = || format!("failed to copy {} to {}", from.display(), to.display());
    let modified = std::fs::metadata(from).and_then(|metadata| metadata.modified()).with_context(failed)?;
    std::fs::copy(from, to).with_context(failed)?;
    let file = std::fs::File::options().write(true).open(to).with_context(failed)?;
    file.set_modified(modified).with_context(failed)?;
    Ok(())
}

/// Encodes `bytes` as base64 (RFC 4648, with padding) in lines of 76
/// characters, as busybox `base64 -d` reads it.
fn base64_lines(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len() * 4 / 3 + bytes.len() / 57 + 4);
    for line in bytes.chunks(57) {
        for chunk in line.chunks(3) {
            let value = chunk.iter().enumerate().fold(0u32, |value, (i, &byte)| value | u32::from(byte) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    text.push(ALPHABET[(value >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    text.push('=');
                }
            }
        }
        text.push('\n');
    }
    text
}

/// Boots `result`'s kernel for one round and adds what the guest printed
/// to `result`. Odd rounds time the burst without the tracer first, even
/// rounds the one with it.
fn run_guest(options: &Options, round: u32, files: &RunFiles, result: &mut KernelResult) -> anyhow::Result<()> {
    let series = result.series.clone();
    let order = if round % 2 == 1 { "bare,traced" } else { "traced,bare" };
    let mut command = Command::new(&files.xtask);
    command
        .args(["vm-run", "--kernel", &series, "--timeout", &options.timeout.to_string()])
        .arg("--script")
        .arg(&files.script)
        .arg("--vethtrace-binary")
        .arg(&files.vethtrace)
        .arg("--")
        .args([
            round.to_string(),
            order.to_owned(),
            options.pairs.to_string(),
            options.idle_seconds.to_string(),
            options.drain_limit.to_string(),
        ]);
    if let Some(size) = options.ring_size {
        command.args(["--ring-size", &size.to_string()]);
    }
    eprintln!("+ {}", cmd::display(&command));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("failed to start {}", cmd::display(&command)))?;

    let stdout = child.stdout.take().context("vm-run has no stdout pipe")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("failed to read vm-run's output")?;
        // The guest's output is the progress report, less the thousands of
        // latencies.
        match line.split_once(' ') {
            Some((key @ "vtlb-latencies-us", values)) => {
                eprintln!("  {series} round {round}| {key} ({} values)", values.split_whitespace().count());
            }
            _ => eprintln!("  {series} round {round}| {line}"),
        }
        result.read_line(&line);
    }
    let status = child.wait().context("failed to wait for vm-run")?;
    if !status.success() {
        result.errors.push(format!("vm-run of round {round} failed: {status}"));
    }
    Ok(())
}

/// The wall time of each phase of one burst, and the CPU time (user plus
/// system) of its `ip` process, in seconds.
#[derive(Clone, Copy, Default)]
struct Burst {
    add: f64,
    delete: f64,
    add_cpu: f64,
    delete_cpu: f64,
}

impl Burst {
    fn total(self) -> f64 {
        self.add + self.delete
    }

    fn total_cpu(self) -> f64 {
        self.add_cpu + self.delete_cpu
    }
}

/// The summary line of `watch_latency read` for one traced burst.
#[derive(Deserialize)]
struct ReaderSummary {
    mode: Option<String>,
    burst_lines: u64,
    expected_burst_lines: u64,
    missing: u64,
    extra: u64,
    lost_lines: u64,
    lost_count: u64,
    order_errors: u64,
    time_regressions: u64,
    unexpected_count: u64,
    unexpected: Vec<String>,
    malformed: u64,
}

/// Context switches summed over the tracer's threads.
#[derive(Clone, Copy)]
struct Switches {
    voluntary: u64,
    involuntary: u64,
    threads: u64,
}

/// The context switches of one idle period.
struct Idle {
    seconds: u64,
    before: Switches,
    after: Switches,
}

impl Idle {
    fn voluntary(&self) -> u64 {
        self.after.voluntary.saturating_sub(self.before.voluntary)
    }

    fn involuntary(&self) -> u64 {
        self.after.involuntary.saturating_sub(self.before.involuntary)
    }
}

/// Everything the guests of one kernel printed. The bursts are indexed by
/// round minus one.
struct KernelResult {
    series: String,
    release: Option<String>,
    cpus: Option<u64>,
    ring_sizes: Vec<u64>,
    bare: Vec<Option<Burst>>,
    traced: Vec<Option<Burst>>,
    /// CPU seconds (user plus system) of vethtrace and of the reader over
    /// each traced burst, its drain included.
    tracer_cpu_seconds: Vec<f64>,
    reader_cpu_seconds: Vec<f64>,
    /// Seconds spent in the BPF programs over each traced burst, and their
    /// number of runs, from kernel.bpf_stats_enabled.
    bpf_seconds: Vec<f64>,
    bpf_runs: Vec<u64>,
    idle: Vec<Idle>,
    readers: Vec<ReaderSummary>,
    /// Every latency of every traced burst, in microseconds.
    latencies_us: Vec<u64>,
    watch_exits: Vec<i32>,
    errors: Vec<String>,
}

impl KernelResult {
    fn new(series: &str) -> Self {
        Self {
            series: series.to_owned(),
            release: None,
            cpus: None,
            ring_sizes: Vec::new(),
            bare: Vec::new(),
            traced: Vec::new(),
            tracer_cpu_seconds: Vec::new(),
            reader_cpu_seconds: Vec::new(),
            bpf_seconds: Vec::new(),
            bpf_runs: Vec::new(),
            idle: Vec::new(),
            readers: Vec::new(),
            latencies_us: Vec::new(),
            watch_exits: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn read_line(&mut self, line: &str) {
        let Some((key, rest)) = line.split_once(' ') else { return };
        let rest = rest.trim();
        let words: Vec<&str> = rest.split_whitespace().collect();
        match key {
            "vtlb-kernel" => self.release = Some(rest.to_owned()),
            "vtlb-cpus" => self.cpus = rest.parse().ok(),
            "vtlb-ring-size" => self.ring_sizes.extend(rest.parse::<u64>().ok()),
            "vtlb-time" => self.read_time(&words),
            "vtlb-cpu" => {
                let ticks: Vec<f64> = words.iter().filter_map(|word| word.parse().ok()).collect();
                if let [tracer, reader] = ticks[..] {
                    self.tracer_cpu_seconds.push(tracer / CLOCK_TICKS_PER_SECOND);
                    self.reader_cpu_seconds.push(reader / CLOCK_TICKS_PER_SECOND);
                }
            }
            "vtlb-bpf-run-time" => {
                if let [Ok(nanoseconds), Ok(runs)] = words.iter().map(|word| word.parse::<u64>()).collect::<Vec<_>>()[..] {
                    self.bpf_seconds.push(nanoseconds as f64 / 1e9);
                    self.bpf_runs.push(runs);
                }
            }
            "vtlb-idle" => {
                let numbers: Vec<u64> = words.iter().filter_map(|word| word.parse().ok()).collect();
                if let [seconds, v0, n0, t0, v1, n1, t1] = numbers[..] {
                    self.idle.push(Idle {
                        seconds,
                        before: Switches { voluntary: v0, involuntary: n0, threads: t0 },
                        after: Switches { voluntary: v1, involuntary: n1, threads: t1 },
                    });
                }
            }
            "vtlb-reader" => match serde_json::from_str(rest) {
                Ok(summary) => self.readers.push(summary),
                Err(error) => self.errors.push(format!("unreadable reader summary: {error}")),
            },
            "vtlb-latencies-us" => self.latencies_us.extend(words.iter().filter_map(|word| word.parse::<u64>().ok())),
            "vtlb-watch-exit" => self.watch_exits.extend(rest.parse::<i32>().ok()),
            "vtlb-error" => self.errors.push(rest.to_owned()),
            _ => {}
        }
    }

    /// Reads `LABEL SECONDS EXIT-CODE CPU-SECONDS`, where LABEL is
    /// `bare-K-add`, `traced-K-del` or a warm-up phase, which is not kept.
    fn read_time(&mut self, words: &[&str]) {
        let [label, seconds, code, cpu] = words else { return };
        let (Ok(seconds), Ok(code), Ok(cpu)) = (seconds.parse::<f64>(), code.parse::<i32>(), cpu.parse::<f64>()) else {
            return;
        };
        if code != 0 {
            self.errors.push(format!("`ip -batch` of {label} exited with {code}"));
            return;
        }
        let mut parts = label.split('-');
        let (Some(kind), Some(round), Some(phase)) = (parts.next(), parts.next(), parts.next()) else { return };
        let Ok(round) = round.parse::<usize>() else { return };
        if round == 0 {
            return;
        }
        let bursts = match kind {
            "bare" => &mut self.bare,
            "traced" => &mut self.traced,
            _ => return,
        };
        if bursts.len() < round {
            bursts.resize(round, None);
        }
        let burst = bursts[round - 1].get_or_insert_default();
        match phase {
            "add" => (burst.add, burst.add_cpu) = (seconds, cpu),
            "del" => (burst.delete, burst.delete_cpu) = (seconds, cpu),
            _ => {}
        }
    }

    /// Returns the rounds with both bursts timed, as (without, with).
    fn paired_bursts(&self) -> Vec<(Burst, Burst)> {
        self.bare
            .iter()
            .zip(&self.traced)
            .filter_map(|(bare, traced)| Some(((*bare)?, (*traced)?)))
            .collect()
    }

    /// Adds up the reader summaries of all traced bursts.
    fn reader_total(&self) -> Option<ReaderSummary> {
        let first = self.readers.first()?;
        let mut total = ReaderSummary {
            mode: first.mode.clone(),
            burst_lines: 0,
            expected_burst_lines: 0,
            missing: 0,
            extra: 0,
            lost_lines: 0,
            lost_count: 0,
            order_errors: 0,
            time_regressions: 0,
            unexpected_count: 0,
            unexpected: Vec::new(),
            malformed: 0,
        };
        for reader in &self.readers {
            if reader.mode != total.mode {
                total.mode = Some("mixed".into());
            }
            total.burst_lines += reader.burst_lines;
            total.expected_burst_lines += reader.expected_burst_lines;
            total.missing += reader.missing;
            total.extra += reader.extra;
            total.lost_lines += reader.lost_lines;
            total.lost_count += reader.lost_count;
            total.order_errors += reader.order_errors;
            total.time_regressions += reader.time_regressions;
            total.unexpected_count += reader.unexpected_count;
            total.unexpected.extend(reader.unexpected.iter().cloned());
            total.malformed += reader.malformed;
        }
        Some(total)
    }

    /// Returns why the run's figures are incomplete or wrong, or `None`
    /// when they are complete.
    fn failure(&self, options: &Options) -> Option<String> {
        let mut reasons = self.errors.clone();
        let rounds = options.rounds as usize;
        if self.readers.len() != rounds {
            reasons.push(format!("{} of {rounds} traced bursts printed a reader summary", self.readers.len()));
        }
        if self.paired_bursts().len() != rounds {
            reasons.push(format!("{} of {rounds} rounds timed both bursts", self.paired_bursts().len()));
        }
        if let Some(reader) = self.reader_total() {
            if reader.mode.as_deref() != Some("ebpf") {
                reasons.push(format!("vethtrace ran in {} mode, not ebpf", reader.mode.as_deref().unwrap_or("an unknown")));
            }
            let wrong = reader.missing + reader.extra + reader.lost_lines + reader.order_errors + reader.malformed;
            if wrong + reader.unexpected_count > 0 {
                reasons.push(format!(
                    "wrong lines: {} missing, {} extra, {} lost, {} out of order, {} malformed, {} unexpected {:?}",
                    reader.missing,
                    reader.extra,
                    reader.lost_lines,
                    reader.order_errors,
                    reader.malformed,
                    reader.unexpected_count,
                    reader.unexpected
                ));
            }
        }
        if let Some(code) = self.watch_exits.iter().find(|&&code| code != 0) {
            reasons.push(format!("vethtrace watch exited with {code} on SIGTERM"));
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}


/// Returns the nearest-rank percentile of sorted `values`: the smallest
/// value with at least `fraction` of the values at or below it.
fn percentile(sorted: &[u64], fraction: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn format_bursts(bursts: &[Burst]) -> String {
    let field = |value: fn(Burst) -> f64| median(bursts.iter().copied().map(value).collect());
    let (Some(total), Some(add), Some(delete), Some(cpu)) =
        (field(Burst::total), field(|burst| burst.add), field(|burst| burst.delete), field(Burst::total_cpu))
    else {
        return "not measured".into();
    };
    let each: Vec<String> = bursts.iter().map(|burst| format!("{:.1}", burst.total())).collect();
    format!("{total:.1} s (add {add:.1} s, delete {delete:.1} s); runs {} s; `ip` CPU time {cpu:.1} s", each.join(", "))
}

fn format_ms(micros: Option<u64>) -> String {
    micros.map_or_else(|| "–".into(), |micros| format!("{:.1} ms", micros as f64 / 1e3))
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

/// Renders one kernel's figures as a Markdown table.
fn table(options: &Options, result: &KernelResult) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    let cpus = result.cpus.map_or_else(|| "?".into(), |cpus| cpus.to_string());
    rows.push((
        "kernel".into(),
        format!(
            "{} ({}); emulated CPU: QEMU TCG, {cpus} vCPUs",
            result.release.as_deref().unwrap_or("did not boot"),
            result.series
        ),
    ));
    let mut sizes = result.ring_sizes.clone();
    sizes.dedup();
    let ring = match (sizes.as_slice(), options.ring_size) {
        ([size], None) => format!("{size} bytes ({} KiB), the default", size / 1024),
        ([size], Some(_)) => format!("{size} bytes ({} KiB), set with --ring-size", size / 1024),
        ([], _) => "not read".into(),
        (sizes, _) => format!("differed between boots: {sizes:?}"),
    };
    rows.push(("ring buffer size".into(), ring));
    rows.push((
        "burst".into(),
        format!("{} veth pairs created by one `ip -batch`, then deleted by another", options.pairs),
    ));

    if let Some(reader) = result.reader_total() {
        rows.push((
            "lost events".into(),
            format!(
                "{} (`lost` lines: {}): {}",
                reader.lost_count,
                reader.lost_lines,
                verdict(reader.lost_lines == 0)
            ),
        ));
        rows.push((
            "lines of the traced bursts".into(),
            format!(
                "{} of {} expected, {} `pair-created` and {} `deleted` per burst; {} missing, {} extra, {} out of order, {} with a `time` earlier than the line before",
                reader.burst_lines,
                reader.expected_burst_lines,
                options.pairs,
                2 * options.pairs,
                reader.missing,
                reader.extra,
                reader.order_errors,
                reader.time_regressions
            ),
        ));
    }

    let pairs = result.paired_bursts();
    let bare: Vec<Burst> = pairs.iter().map(|(bare, _)| *bare).collect();
    let traced: Vec<Burst> = pairs.iter().map(|(_, traced)| *traced).collect();
    let count = pairs.len();
    rows.push((format!("burst time without tracer, median of {count}"), format_bursts(&bare)));
    rows.push((format!("burst time with tracer, median of {count}"), format_bursts(&traced)));
    let ratio = |part: fn(Burst) -> f64| -> Option<f64> {
        let bare = median(bare.iter().copied().map(part).collect())?;
        let traced = median(traced.iter().copied().map(part).collect())?;
        (bare > 0.0).then(|| traced / bare)
    };
    let ratio_text = match (ratio(Burst::total), ratio(|burst| burst.add), ratio(|burst| burst.delete)) {
        (Some(total), Some(add), Some(delete)) => {
            let each: Vec<String> = pairs
                .iter()
                .map(|(bare, traced)| format!("{:.2}", traced.total() / bare.total()))
                .collect();
            format!(
                "{total:.2} (add {add:.2}, delete {delete:.2}); per boot {}; target ≤ {TARGET_RATIO}: {}",
                each.join(", "),
                verdict(total <= TARGET_RATIO)
            )
        }
        _ => "not measured".into(),
    };
    rows.push(("ratio with / without tracer, wall time".into(), ratio_text));
    if let Some(cpu) = ratio(Burst::total_cpu) {
        rows.push(("ratio with / without tracer, `ip` CPU time".into(), format!("{cpu:.2}")));
    }
    if let (Some(tracer), Some(reader)) = (median(result.tracer_cpu_seconds.clone()), median(result.reader_cpu_seconds.clone())) {
        rows.push((
            "CPU time of the tracer's user space per traced burst, median".into(),
            format!("vethtrace {tracer:.1} s, latency reader {reader:.1} s (user + system)"),
        ));
    }
    if let (Some(seconds), Some(runs)) = (
        median(result.bpf_seconds.clone()),
        median(result.bpf_runs.iter().map(|&runs| runs as f64).collect()),
    ) {
        rows.push((
            "time in the BPF programs per traced burst, median".into(),
            format!(
                "{seconds:.2} s over {runs:.0} runs ({:.0} µs per run), from kernel.bpf_stats_enabled",
                seconds * 1e6 / runs.max(1.0)
            ),
        ));
    }

    let mut latencies = result.latencies_us.clone();
    latencies.sort_unstable();
    rows.push((
        "latency, kernel `time` to line read from the pipe".into(),
        format!(
            "p50 {}, p99 {}, max {} over {} lines",
            format_ms(percentile(&latencies, 0.50)),
            format_ms(percentile(&latencies, 0.99)),
            format_ms(percentile(&latencies, 1.0)),
            latencies.len()
        ),
    ));
    let idle = if result.idle.is_empty() {
        "not measured".into()
    } else {
        let voluntary: Vec<String> = result.idle.iter().map(|idle| idle.voluntary().to_string()).collect();
        let involuntary: Vec<String> = result.idle.iter().map(|idle| idle.involuntary().to_string()).collect();
        let threads = result.idle.iter().map(|idle| idle.after.threads.max(idle.before.threads)).max().unwrap_or(0);
        let seconds = result.idle[0].seconds;
        format!(
            "{} idle periods of {seconds} s: voluntary {}, involuntary {} ({threads} thread); zero voluntary: {}",
            result.idle.len(),
            voluntary.join(", "),
            involuntary.join(", "),
            verdict(result.idle.iter().all(|idle| idle.voluntary() == 0))
        )
    };
    rows.push(("context switches of vethtrace while idle".into(), idle));

    let mut text = format!("Kernel {} (every figure from an emulated CPU):\n\n", result.series);
    text.push_str("| measure | value |\n|---|---|\n");
    for (measure, value) in rows {
        text.push_str(&format!("| {measure} | {value} |\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64_lines(b""), "");
        assert_eq!(base64_lines(b"f"), "Zg==\n");
        assert_eq!(base64_lines(b"fo"), "Zm8=\n");
        assert_eq!(base64_lines(b"foo"), "Zm9v\n");
        assert_eq!(base64_lines(b"foobar"), "Zm9vYmFy\n");
    }

    #[test]
    fn base64_wraps_at_76_characters() {
        let text = base64_lines(&[0u8; 58]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), 76);
        assert_eq!(lines[1], "AA==");
    }

    #[test]
    fn time_lines_fill_rounds() {
        let mut result = KernelResult::new("6.1");
        result.read_line("vtlb-time warmup-add 9.0 0 1.0");
        result.read_line("vtlb-time bare-1-add 2.0 0 1.5");
        result.read_line("vtlb-time bare-1-del 3.0 0 2.5");
        result.read_line("vtlb-time traced-2-del 5.0 0 4.0");
        assert!(result.errors.is_empty());
        assert_eq!(result.bare.len(), 1);
        let bare = result.bare[0].expect("round 1 without tracer");
        assert_eq!(bare.total(), 5.0);
        assert_eq!(bare.total_cpu(), 4.0);
        assert_eq!(result.traced.len(), 2);
        assert!(result.traced[0].is_none());
        assert_eq!(result.traced[1].expect("round 2 with tracer").delete, 5.0);
        assert!(result.paired_bursts().is_empty());
    }

    #[test]
    fn failed_batch_is_an_error() {
        let mut result = KernelResult::new("6.1");
        result.read_line("vtlb-time bare-1-add 2.0 1 0.5");
        assert_eq!(result.errors.len(), 1);
        assert!(result.bare.is_empty());
    }

    #[test]
    fn latencies_accumulate_over_boots() {
        let mut result = KernelResult::new("6.1");
        result.read_line("vtlb-latencies-us 5 1 3");
        result.read_line("vtlb-latencies-us 2 4");
        let mut latencies = result.latencies_us.clone();
        latencies.sort_unstable();
        assert_eq!(latencies, [1, 2, 3, 4, 5]);
        assert_eq!(percentile(&latencies, 0.5), Some(3));
        assert_eq!(percentile(&latencies, 0.99), Some(5));
        assert_eq!(percentile(&latencies, 0.0), Some(1));
    }

    #[test]
    fn idle_line_counts_switches() {
        let mut result = KernelResult::new("6.1");
        result.read_line("vtlb-idle 30 629 498 1  631 500 1 ");
        assert_eq!(result.idle.len(), 1);
        assert_eq!(result.idle[0].voluntary(), 2);
        assert_eq!(result.idle[0].involuntary(), 2);
    }

    #[test]
    fn bpf_run_time_line_is_read() {
        let mut result = KernelResult::new("6.1");
        result.read_line("vtlb-bpf-run-time 1500000000 10000");
        assert_eq!(result.bpf_seconds, [1.5]);
        assert_eq!(result.bpf_runs, [10000]);
    }

    #[test]
    fn median_of_even_count_averages() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
    }
}
