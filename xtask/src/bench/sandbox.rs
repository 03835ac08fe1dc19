//! The part of the snapshot benchmark that runs inside the sandbox: it
//! builds N container-like namespaces, then times and checks each tool.
//!
//! `cargo xtask bench snapshot` starts this as the init process of new
//! mount, network and PID namespaces (`unshare --pid --fork --kill-child`),
//! so everything created here lives in namespaces that die with it. When
//! this process exits, on success or on any error, the kernel kills every
//! holder process, and their namespaces and veths go with them. Nothing is
//! created in the host's namespaces.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use super::measure::{self, Outcome};
use super::report::{Run, SizeResult, Status, Tool, ToolResult};
use super::verify::{self, CONTAINER_IFNAME, Container, Wiring};
use crate::cmd;

/// Directory for tool output and scratch files, on a tmpfs mounted over
/// /run in the sandbox's mount namespace so nothing lands on the host's disk.
const WORK_DIR: &str = "/run/vtbench";

/// The prefix of every interface the benchmark creates.
const NAME_PREFIX: &str = "vtb";

/// How long a new holder process may take to enter its own netns.
const HOLDER_START_LIMIT: Duration = Duration::from_secs(30);

/// Sizes, run counts and limits of one sandboxed run.
pub struct Plan {
    pub size: usize,
    pub vethtrace: PathBuf,
    pub runs: usize,
    pub shell_runs: usize,
    pub all_pairs_runs: usize,
    pub skip_baselines: bool,
    /// Whether tools run under SCHED_FIFO (see `--fifo`).
    pub fifo: bool,
    pub timeout: Duration,
}

/// Builds the topology, runs every tool and returns what was measured.
pub fn run(plan: &Plan) -> anyhow::Result<SizeResult> {
    ensure!(
        std::process::id() == 1,
        "--sandbox-size is internal: `cargo xtask bench snapshot` passes it to the init process of a \
         private sandbox, and it would create interfaces in the caller's netns anywhere else"
    );
    cmd::run(Command::new("mount").args(["-t", "tmpfs", "vtbench", "/run"]))?;
    std::fs::create_dir(WORK_DIR).with_context(|| format!("failed to create {WORK_DIR}"))?;
    cmd::run(Command::new("ip").args(["link", "set", "lo", "up"]))?;

    let start = Instant::now();
    let topology = Topology::build(plan.size)?;
    let setup_seconds = start.elapsed().as_secs_f64();
    eprintln!("N={}: {} namespaces wired in {setup_seconds:.1} s", plan.size, plan.size);

    let pids_file = Path::new(WORK_DIR).join("pids");
    let pids: String = topology.wiring.containers.iter().map(|container| format!("{}\n", container.pid)).collect();
    std::fs::write(&pids_file, pids).with_context(|| format!("failed to write {}", pids_file.display()))?;

    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench");
    let mut tools = Vec::new();
    let mut vethtrace = tool_command(plan, &plan.vethtrace);
    vethtrace.args(["snapshot", "--json"]);
    // One untimed run first, so the binary and /proc are in the cache as
    // they are for the baselines' thousands of process starts.
    tools.push(measure_tool(plan, &topology.wiring, Tool::Vethtrace, &mut vethtrace, 1 + plan.runs, 1)?);
    if !plan.skip_baselines {
        let mut shell = tool_command(plan, Path::new("/bin/bash"));
        shell.arg(scripts.join("docker-veth-loop.sh")).arg(&pids_file);
        tools.push(measure_tool(plan, &topology.wiring, Tool::ShellLoop, &mut shell, plan.shell_runs, 0)?);

        let mut all_pairs = tool_command(plan, Path::new("/usr/bin/python3"));
        all_pairs.arg(scripts.join("all-pairs-nsid.py")).arg(&pids_file);
        tools.push(measure_tool(plan, &topology.wiring, Tool::AllPairs, &mut all_pairs, plan.all_pairs_runs, 0)?);
    }
    drop(topology);

    Ok(SizeResult {
        size: plan.size,
        setup_seconds,
        tools,
    })
}

/// Returns a command that runs `program`, under `chrt --fifo 1` when
/// `plan.fifo` is set. chrt execs the program, so the measured process is
/// the program itself, started a fraction of a millisecond later.
fn tool_command(plan: &Plan, program: &Path) -> Command {
    if !plan.fifo {
        return Command::new(program);
    }
    let mut command = Command::new("chrt");
    command.args(["--fifo", "1"]).arg(program);
    command
}

/// The holder processes and the wiring between their namespaces and the
/// sandbox's own.
struct Topology {
    holders: Vec<Child>,
    wiring: Wiring,
}

impl Topology {
    /// Starts `size` processes, each in a new netns (`unshare -n sleep`),
    /// and wires each netns to this one by a veth pair `vtbK` ↔ eth0.
    fn build(size: usize) -> anyhow::Result<Self> {
        let host_netns = netns_inode(1)?;
        let mut topology = Self {
            holders: Vec::with_capacity(size),
            wiring: Wiring {
                host_netns,
                containers: Vec::with_capacity(size),
            },
        };
        for _ in 0..size {
            let mut holder = Command::new("unshare");
            holder
                .args(["--net", "sleep", "100000"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let child = holder
                .spawn()
                .with_context(|| format!("failed to start {}", cmd::display(&holder)))?;
            topology.holders.push(child);
        }

        // unshare(1) enters the new netns before it execs sleep; wait for it.
        let deadline = Instant::now() + HOLDER_START_LIMIT;
        for (index, holder) in topology.holders.iter().enumerate() {
            let pid = holder.id();
            let netns = loop {
                let netns = netns_inode(pid)?;
                if netns != host_netns {
                    break netns;
                }
                if Instant::now() > deadline {
                    bail!("holder pid {pid} is still in the sandbox's netns after {HOLDER_START_LIMIT:?}");
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            topology.wiring.containers.push(Container {
                pid,
                netns,
                host_name: format!("{NAME_PREFIX}{}", index + 1),
            });
        }

        // One `ip -batch` for every veth: forking ip per veth would make the
        // setup of 1000 namespaces several times slower.
        let batch_path = Path::new(WORK_DIR).join("veths.batch");
        let mut batch = File::create(&batch_path).with_context(|| format!("failed to create {}", batch_path.display()))?;
        for container in &topology.wiring.containers {
            writeln!(
                batch,
                "link add {} type veth peer name {CONTAINER_IFNAME} netns {}",
                container.host_name, container.pid
            )
            .with_context(|| format!("failed to write {}", batch_path.display()))?;
        }
        drop(batch);
        cmd::run(Command::new("ip").arg("-batch").arg(&batch_path))?;
        Ok(topology)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // The holders die with the sandbox's init anyway; killing them here
        // keeps that true for a caller that lives on.
        for holder in &mut self.holders {
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

fn netns_inode(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/ns/net");
    let metadata = std::fs::metadata(&path).with_context(|| format!("failed to stat {path}"))?;
    Ok(metadata.ino())
}

/// Runs `command` `runs` times, checking each output, and keeps the times
/// of all but the first `warmup` runs. Stops at the first run that fails,
/// times out or prints a wrong result.
fn measure_tool(
    plan: &Plan,
    wiring: &Wiring,
    tool: Tool,
    command: &mut Command,
    runs: usize,
    warmup: usize,
) -> anyhow::Result<ToolResult> {
    let stdout_path = Path::new(WORK_DIR).join("stdout");
    let stderr_path = Path::new(WORK_DIR).join("stderr");
    let mut result = ToolResult {
        tool,
        runs: Vec::new(),
        status: Status::Ok,
    };
    for run in 0..runs {
        let stdout = File::create(&stdout_path).with_context(|| format!("failed to create {}", stdout_path.display()))?;
        let stderr = File::create(&stderr_path).with_context(|| format!("failed to create {}", stderr_path.display()))?;
        command.stdin(Stdio::null()).stdout(stdout).stderr(stderr);

        let finished = match measure::run(command, plan.timeout)? {
            Outcome::Finished(finished) => finished,
            Outcome::TimedOut => {
                eprintln!("N={} {}: timed out after {:?}", plan.size, tool.describe(), plan.timeout);
                result.status = Status::TimedOut {
                    limit_seconds: plan.timeout.as_secs(),
                };
                break;
            }
        };
        if !finished.status.success() {
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            let message = format!("{} failed: {}\n{}", cmd::display(command), finished.status, tail(&stderr, 20));
            eprintln!("N={} {}: {message}", plan.size, tool.describe());
            result.status = Status::Failed { message };
            break;
        }

        let output = std::fs::read_to_string(&stdout_path).with_context(|| format!("failed to read {}", stdout_path.display()))?;
        let checked = match tool {
            Tool::Vethtrace => verify::vethtrace(&output, wiring),
            Tool::ShellLoop => verify::shell_loop(&output, wiring),
            Tool::AllPairs => verify::all_pairs(&output, wiring),
        };
        if let Err(error) = checked {
            let message = format!("{error:#}");
            eprintln!("N={} {}: wrong result: {message}", plan.size, tool.describe());
            result.status = Status::WrongResult { message };
            break;
        }

        let seconds = finished.wall.as_secs_f64();
        let cpu = finished.cpu.as_secs_f64();
        let mib = finished.max_rss_kib as f64 / 1024.0;
        let label = if run < warmup { "warm-up run".to_string() } else { format!("run {}/{}", run + 1 - warmup, runs - warmup) };
        eprintln!(
            "N={} {} {label}: {seconds:.3} s, CPU {cpu:.3} s, peak RSS {mib:.1} MiB, output correct",
            plan.size,
            tool.describe()
        );
        if run >= warmup {
            result.runs.push(Run {
                seconds,
                cpu_seconds: finished.cpu.as_secs_f64(),
                max_rss_kib: finished.max_rss_kib,
            });
        }
    }
    Ok(result)
}

/// Returns the last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
