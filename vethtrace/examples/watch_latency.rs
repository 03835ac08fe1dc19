//! Guest-side helper of `cargo xtask bench live`, which runs it in a QEMU
//! guest next to `vethtrace watch --json`. The guest has no Python, so this
//! binary does the per-line work that a script would do elsewhere.
//!
//! ```text
//! watch_latency read --pairs N --rounds R --ready NAME --status FILE < watch-output
//! watch_latency time LABEL COMMAND [ARGS...]
//! ```
//!
//! `read` reads the JSON lines of `vethtrace watch --json` from standard
//! input and stamps each read(2) with CLOCK_REALTIME as it returns. For
//! every `pair-created` and `deleted` line of the burst pairs `vtlbI` and
//! `vtlbpI` (I below N) it computes latency = arrival − the line's `time`,
//! which eBPF mode takes from the kernel's boot-time clock. It appends
//! progress to the status file. `ready` means that the `present` line of
//! NAME arrived, so the initial snapshot is out. `round K` means that K
//! rounds of lines arrived, each of N `pair-created` and 2N `deleted`.
//! `lost` follows each `lost` line. At end of input it prints
//! `vtlb-reader {JSON}`, with the counts, the checks and the latency
//! percentiles, then `vtlb-latencies-us` and every latency in whole
//! microseconds.
//!
//! `time` runs COMMAND, waits for it and prints
//! `vtlb-time LABEL SECONDS EXIT-CODE CPU-SECONDS`: the wall time from
//! CLOCK_MONOTONIC and the command's user plus system CPU time.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::process::{Command, ExitCode};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nix::sys::resource::{UsageWho, getrusage};
use serde_json::{Value, json};

/// Name prefixes of the burst's two ends: `vtlbI` and `vtlbpI`.
const END_A_PREFIX: &str = "vtlb";
const END_B_PREFIX: &str = "vtlbp";
/// How many unexpected lines the summary quotes.
const UNEXPECTED_KEPT: usize = 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("read") => parse_read_options(&args[1..]).and_then(read),
        Some("time") if args.len() >= 3 => time(&args[1], &args[2], &args[3..]),
        _ => Err("usage: watch_latency read --pairs N --rounds R --ready NAME --status FILE \
                  | watch_latency time LABEL COMMAND [ARGS...]"
            .to_owned()),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("watch_latency: {message}");
            ExitCode::from(2)
        }
    }
}

fn time(label: &str, program: &str, args: &[String]) -> Result<ExitCode, String> {
    let start = Instant::now();
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|error| format!("failed to start {program}: {error}"))?;
    let seconds = start.elapsed().as_secs_f64();
    // This process waits for no other child, so RUSAGE_CHILDREN is the
    // command's own usage, including its kernel work.
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).map_err(|error| format!("getrusage failed: {error}"))?;
    let cpu = usage.user_time() + usage.system_time();
    let cpu_seconds = cpu.tv_sec() as f64 + cpu.tv_usec() as f64 / 1e6;
    let code = status.code().unwrap_or(-1);
    println!("vtlb-time {label} {seconds:.6} {code} {cpu_seconds:.6}");
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

struct ReadOptions {
    pairs: usize,
    rounds: u32,
    ready_name: String,
    status_path: String,
}

fn parse_read_options(args: &[String]) -> Result<ReadOptions, String> {
    let mut pairs = None;
    let mut rounds = None;
    let mut ready_name = None;
    let mut status_path = None;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--pairs" => pairs = Some(value.parse().map_err(|error| format!("--pairs {value}: {error}"))?),
            "--rounds" => rounds = Some(value.parse().map_err(|error| format!("--rounds {value}: {error}"))?),
            "--ready" => ready_name = Some(value.clone()),
            "--status" => status_path = Some(value.clone()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(ReadOptions {
        pairs: pairs.ok_or("--pairs is required")?,
        rounds: rounds.ok_or("--rounds is required")?,
        ready_name: ready_name.ok_or("--ready is required")?,
        status_path: status_path.ok_or("--status is required")?,
    })
}

/// One burst pair: how often each line arrived, and which ends are alive
/// according to the lines so far.
#[derive(Clone, Default)]
struct PairState {
    created: u32,
    deleted_a: u32,
    deleted_b: u32,
    alive_a: bool,
    alive_b: bool,
}

/// The counts and checks of `read`.
struct Tally {
    options: ReadOptions,
    status: File,
    pairs: Vec<PairState>,
    latencies_ns: Vec<i64>,
    lines: u64,
    burst_lines: u64,
    rounds_done: u32,
    ready: bool,
    mode: Option<String>,
    notices: Vec<String>,
    lost_lines: u64,
    lost_count: u64,
    /// Lines that contradict the order of the burst: `pair-created` for a
    /// pair with a live end, `deleted` for an end that is not alive.
    order_errors: u64,
    /// Burst lines whose `time` is earlier than the previous burst line's.
    time_regressions: u64,
    last_time_ns: i64,
    /// Lines about burst ends other than their `pair-created` and
    /// `deleted`, such as a `present` or `moved` line.
    unexpected_count: u64,
    /// The first [`UNEXPECTED_KEPT`] of those lines.
    unexpected: Vec<String>,
    malformed: u64,
}

fn read(options: ReadOptions) -> Result<ExitCode, String> {
    let status = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&options.status_path)
        .map_err(|error| format!("failed to open {}: {error}", options.status_path))?;
    let mut tally = Tally {
        pairs: vec![PairState::default(); options.pairs],
        latencies_ns: Vec::with_capacity(options.pairs * 3 * options.rounds as usize),
        options,
        status,
        lines: 0,
        burst_lines: 0,
        rounds_done: 0,
        ready: false,
        mode: None,
        notices: Vec::new(),
        lost_lines: 0,
        lost_count: 0,
        order_errors: 0,
        time_regressions: 0,
        last_time_ns: i64::MIN,
        unexpected_count: 0,
        unexpected: Vec::new(),
        malformed: 0,
    };

    let mut stdin = std::io::stdin().lock();
    let mut buffer = vec![0u8; 1 << 16];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let count = match stdin.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(format!("failed to read standard input: {error}")),
        };
        // Every line completed by this read arrived now, so all of them get
        // the same stamp, taken before any parsing.
        let arrival_ns = realtime_ns();
        pending.extend_from_slice(&buffer[..count]);
        let mut start = 0;
        while let Some(offset) = pending[start..].iter().position(|&byte| byte == b'\n') {
            let end = start + offset;
            tally.line(&pending[start..end], arrival_ns);
            start = end + 1;
        }
        pending.drain(..start);
    }
    if !pending.is_empty() {
        tally.malformed += 1;
    }
    println!("vtlb-reader {}", tally.summary());
    // Every latency, so that the xtask can take percentiles over several
    // runs.
    let latencies: Vec<String> = tally.latencies_ns.iter().map(|ns| (ns / 1000).to_string()).collect();
    println!("vtlb-latencies-us {}", latencies.join(" "));
    Ok(ExitCode::SUCCESS)
}

impl Tally {
    fn line(&mut self, bytes: &[u8], arrival_ns: i64) {
        self.lines += 1;
        let Ok(line) = serde_json::from_slice::<Value>(bytes) else {
            self.malformed += 1;
            return;
        };
        let kind = line["event"].as_str().unwrap_or("");
        let name = line["name"].as_str().unwrap_or("");
        match kind {
            "notice" => {
                if let Some(mode) = line["mode"].as_str() {
                    self.mode = Some(mode.to_owned());
                }
                self.notices.push(line["message"].as_str().unwrap_or("").to_owned());
            }
            "lost" => {
                self.lost_lines += 1;
                self.lost_count += line["count"].as_u64().unwrap_or(0);
                self.mark("lost");
            }
            "present" if name == self.options.ready_name && !self.ready => {
                self.ready = true;
                self.mark("ready");
            }
            "pair-created" | "deleted" if self.burst_line(&line, kind, name) => {
                self.burst_lines += 1;
                self.time_line(&line, arrival_ns);
                let per_round = 3 * self.options.pairs as u64;
                while self.burst_lines >= per_round * u64::from(self.rounds_done + 1) {
                    self.rounds_done += 1;
                    self.mark(&format!("round {}", self.rounds_done));
                }
            }
            _ if self.burst_end(name).is_some() => {
                self.note_unexpected(String::from_utf8_lossy(bytes).into_owned());
            }
            _ => {}
        }
    }

    /// Applies a `pair-created` or `deleted` line to its burst pair; returns
    /// false when the line is not about a burst pair.
    fn burst_line(&mut self, line: &Value, kind: &str, name: &str) -> bool {
        let Some((index, end_b)) = self.burst_end(name) else { return false };
        let state = &mut self.pairs[index];
        if kind == "deleted" {
            let (count, alive) = if end_b {
                (&mut state.deleted_b, &mut state.alive_b)
            } else {
                (&mut state.deleted_a, &mut state.alive_a)
            };
            *count += 1;
            if !*alive {
                self.order_errors += 1;
            }
            *alive = false;
            return true;
        }
        let peer = line["peer"]["name"].as_str().unwrap_or("");
        if self.burst_end(peer) != Some((index, !end_b)) {
            self.note_unexpected(line.to_string());
            return false;
        }
        let state = &mut self.pairs[index];
        state.created += 1;
        if state.alive_a || state.alive_b {
            self.order_errors += 1;
        }
        state.alive_a = true;
        state.alive_b = true;
        true
    }

    /// Parses `vtlbI` as (I, false) and `vtlbpI` as (I, true), for I below
    /// the number of pairs.
    fn burst_end(&self, name: &str) -> Option<(usize, bool)> {
        let (digits, end_b) = match name.strip_prefix(END_B_PREFIX) {
            Some(digits) => (digits, true),
            None => (name.strip_prefix(END_A_PREFIX)?, false),
        };
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        let index: usize = digits.parse().ok()?;
        (index < self.options.pairs).then_some((index, end_b))
    }

    fn time_line(&mut self, line: &Value, arrival_ns: i64) {
        let Some(time_ns) = line["time"].as_str().and_then(parse_rfc3339_ns) else {
            self.malformed += 1;
            return;
        };
        if time_ns < self.last_time_ns {
            self.time_regressions += 1;
        }
        self.last_time_ns = time_ns;
        self.latencies_ns.push(arrival_ns - time_ns);
    }

    fn note_unexpected(&mut self, line: String) {
        self.unexpected_count += 1;
        if self.unexpected.len() < UNEXPECTED_KEPT {
            self.unexpected.push(line);
        }
    }

    fn mark(&mut self, text: &str) {
        // The guest script polls this file; a failed write only delays it
        // until its own timeout, which then reports the run as incomplete.
        let _ = writeln!(self.status, "{text}");
    }

    fn summary(&mut self) -> Value {
        let rounds = self.options.rounds;
        let mut missing = 0u64;
        let mut extra = 0u64;
        for state in &self.pairs {
            for count in [state.created, state.deleted_a, state.deleted_b] {
                missing += u64::from(rounds.saturating_sub(count));
                extra += u64::from(count.saturating_sub(rounds));
            }
        }
        self.latencies_ns.sort_unstable();
        let percentile_us = |fraction: f64| -> Option<f64> {
            if self.latencies_ns.is_empty() {
                return None;
            }
            // Nearest rank: the smallest value with at least `fraction` of
            // the values at or below it.
            let rank = (fraction * self.latencies_ns.len() as f64).ceil() as usize;
            Some(self.latencies_ns[rank.clamp(1, self.latencies_ns.len()) - 1] as f64 / 1e3)
        };
        json!({
            "mode": self.mode,
            "notices": self.notices,
            "lines": self.lines,
            "burst_lines": self.burst_lines,
            "expected_burst_lines": 3 * self.options.pairs as u64 * u64::from(rounds),
            "rounds_done": self.rounds_done,
            "missing": missing,
            "extra": extra,
            "lost_lines": self.lost_lines,
            "lost_count": self.lost_count,
            "order_errors": self.order_errors,
            "time_regressions": self.time_regressions,
            "unexpected_count": self.unexpected_count,
            "unexpected": self.unexpected,
            "malformed": self.malformed,
            "latency": {
                "count": self.latencies_ns.len(),
                "min_us": percentile_us(0.0),
                "p50_us": percentile_us(0.50),
                "p99_us": percentile_us(0.99),
                "max_us": percentile_us(1.0),
            },
        })
    }
}

fn realtime_ns() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the guest clock is after 1970");
    since_epoch.as_nanos() as i64
}

/// Parses `YYYY-MM-DDTHH:MM:SS.ffffffZ`, the form `vethtrace watch` writes,
/// to nanoseconds since the Unix epoch. Any number of fraction digits is
/// accepted, and the zone must be `Z`.
fn parse_rfc3339_ns(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let (date, clock) = text.split_once('T')?;
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: i64 = date_parts.next()?.parse().ok()?;
    let day: i64 = date_parts.next()?.parse().ok()?;
    let (whole, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut clock_parts = whole.splitn(3, ':');
    let hour: i64 = clock_parts.next()?.parse().ok()?;
    let minute: i64 = clock_parts.next()?.parse().ok()?;
    let second: i64 = clock_parts.next()?.parse().ok()?;
    let mut nanos: i64 = 0;
    for (position, digit) in fraction.bytes().enumerate() {
        if !digit.is_ascii_digit() {
            return None;
        }
        if position < 9 {
            nanos = nanos * 10 + i64::from(digit - b'0');
        }
    }
    nanos *= 10i64.pow(9u32.saturating_sub(fraction.len() as u32));
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(seconds * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}
