//! Checks each tool's output against the wiring the sandbox built, because
//! the time of a wrong result means nothing.

use std::collections::HashMap;

use anyhow::{Context as _, bail, ensure};
use serde::Deserialize;
use serde_json::Value;

/// The expected result: which host veth leads into which container netns.
pub struct Wiring {
    /// Inode of the sandbox's own netns, which plays the host.
    pub host_netns: u64,
    pub containers: Vec<Container>,
}

/// One container-like netns: a process holding it and the veth pair
/// `host_name` (in the host netns) ↔ [`CONTAINER_IFNAME`] (inside).
pub struct Container {
    pub pid: u32,
    pub netns: u64,
    pub host_name: String,
}

/// The name of every container's end of its veth.
pub const CONTAINER_IFNAME: &str = "eth0";

/// Checks `vethtrace snapshot --json`: every host veth and every container
/// eth0 has a verified peer at the right end, and there are no other veths.
pub fn vethtrace(stdout: &str, wiring: &Wiring) -> anyhow::Result<()> {
    let snapshot: Value = serde_json::from_str(stdout).context("vethtrace printed invalid JSON")?;
    let current = snapshot["netns"]
        .as_array()
        .context("no \"netns\" array")?
        .iter()
        .find(|netns| netns["current"] == true)
        .and_then(|netns| netns["inode"].as_u64())
        .context("no netns marked current")?;
    ensure!(
        current == wiring.host_netns,
        "the current netns is {current}, expected the sandbox's {}",
        wiring.host_netns
    );

    let links = snapshot["links"].as_array().context("no \"links\" array")?;
    let mut by_end: HashMap<(u64, &str), &Value> = HashMap::with_capacity(links.len());
    for link in links {
        let netns = link["netns"].as_u64().context("a link without a netns inode")?;
        let name = link["name"].as_str().context("a link without a name")?;
        if by_end.insert((netns, name), link).is_some() {
            bail!("the link {name} in netns {netns} is listed twice");
        }
    }
    ensure!(
        links.len() == 2 * wiring.containers.len(),
        "{} veth ends listed, expected {}",
        links.len(),
        2 * wiring.containers.len()
    );

    for container in &wiring.containers {
        let host_end = (wiring.host_netns, container.host_name.as_str());
        let container_end = (container.netns, CONTAINER_IFNAME);
        check_vethtrace_peer(&by_end, host_end, container_end)?;
        check_vethtrace_peer(&by_end, container_end, host_end)?;
    }
    Ok(())
}

fn check_vethtrace_peer(
    by_end: &HashMap<(u64, &str), &Value>,
    (netns, name): (u64, &str),
    expected: (u64, &str),
) -> anyhow::Result<()> {
    let link = by_end
        .get(&(netns, name))
        .with_context(|| format!("{name} in netns {netns} is missing"))?;
    let peer = &link["peer"];
    ensure!(peer["verified"] == true, "{name} in netns {netns} has no verified peer: {peer}");
    let found = (peer["netns"].as_u64().unwrap_or_default(), peer["name"].as_str().unwrap_or_default());
    ensure!(
        found == expected,
        "the peer of {name} in netns {netns} is {} in netns {}, expected {} in netns {}",
        found.1,
        found.0,
        expected.1,
        expected.0
    );
    Ok(())
}

/// Checks the shell loop's `PID HOST_IFNAME` lines: one per container, each
/// naming that container's host veth.
pub fn shell_loop(stdout: &str, wiring: &Wiring) -> anyhow::Result<()> {
    let mut found: HashMap<u32, &str> = HashMap::new();
    for line in stdout.lines() {
        let (pid, name) = line
            .split_once(' ')
            .with_context(|| format!("invalid line {line:?}, expected `PID HOST_IFNAME`"))?;
        let pid: u32 = pid.parse().with_context(|| format!("invalid pid in line {line:?}"))?;
        if found.insert(pid, name).is_some() {
            bail!("pid {pid} is listed twice");
        }
    }
    ensure!(
        found.len() == wiring.containers.len(),
        "{} lines, expected {}",
        found.len(),
        wiring.containers.len()
    );
    for container in &wiring.containers {
        let name = found
            .get(&container.pid)
            .with_context(|| format!("pid {} is missing", container.pid))?;
        ensure!(
            *name == container.host_name,
            "pid {} is wired to {name}, expected {}",
            container.pid,
            container.host_name
        );
    }
    Ok(())
}

#[derive(Deserialize)]
struct AllPairsOutput {
    pairs: Vec<[AllPairsEnd; 2]>,
}

#[derive(Deserialize)]
struct AllPairsEnd {
    netns: u64,
    name: String,
}

/// Checks the all-pairs script's JSON: exactly one pair per container,
/// joining its host veth with its eth0.
pub fn all_pairs(stdout: &str, wiring: &Wiring) -> anyhow::Result<()> {
    let output: AllPairsOutput = serde_json::from_str(stdout).context("the all-pairs script printed invalid JSON")?;
    ensure!(
        output.pairs.len() == wiring.containers.len(),
        "{} pairs, expected {}",
        output.pairs.len(),
        wiring.containers.len()
    );
    let mut peers: HashMap<(u64, &str), (u64, &str)> = HashMap::new();
    for [a, b] in &output.pairs {
        peers.insert((a.netns, &a.name), (b.netns, &b.name));
        peers.insert((b.netns, &b.name), (a.netns, &a.name));
    }
    for container in &wiring.containers {
        let host_end = (wiring.host_netns, container.host_name.as_str());
        let peer = peers
            .get(&host_end)
            .with_context(|| format!("no pair has {} in the host netns", container.host_name))?;
        ensure!(
            *peer == (container.netns, CONTAINER_IFNAME),
            "{} is paired with {} in netns {}, expected {CONTAINER_IFNAME} in netns {}",
            container.host_name,
            peer.1,
            peer.0,
            container.netns
        );
    }
    Ok(())
}
