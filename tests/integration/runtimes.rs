//! Acceptance tests in which real clients from outside this project create
//! the veths: the CNI reference bridge plugin, a private Docker daemon, LXC
//! and systemd-nspawn. Each one builds a container the way production
//! stacks do, in the host's own namespaces, and the test checks vethtrace's
//! snapshot against `ip`: both ends paired and verified, the host end on
//! its bridge, the netns named. Then the runtime removes the container and
//! the test checks that both ends are gone.
//!
//! Each test skips, printing why, when its runtime is not installed (as in
//! the minimal VM, which runs the same binary) or when not run as root.
//! The helpers in `vethtrace_tests::runtimes` name everything uniquely and
//! undo every side effect, also when an assert fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vethtrace_tests::Snapshot;
use vethtrace_tests::runtimes::{
    CniNetwork, DockerDaemon, HostSnapshot, IpForward, LxcContainer, NspawnContainer, find_program, ip_link, ip_links,
    netns_inode, skip_unless_installed, static_busybox, unique, wait_until,
};

const CNI_BRIDGE: &str = "/usr/lib/cni/bridge";
const CNI_HOST_LOCAL: &str = "/usr/lib/cni/host-local";

/// How long a runtime may take to remove a veth after its stop command
/// returned.
const REMOVAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks vethtrace's snapshot of the pair `inner` (in the netns labelled
/// "container", whose netns file is `netns`) and `host_veth` (in the host)
/// against what `ip` shows in each netns.
fn assert_pair_matches_ip(snap: &Snapshot, netns: &Path, inner: &str, host_veth: &str) {
    let inner_ip = ip_link(Some(netns), inner).unwrap_or_else(|| panic!("ip: no {inner} in {}", netns.display()));
    let host_ip = ip_link(None, host_veth).unwrap_or_else(|| panic!("ip: no {host_veth} in the host"));
    assert_eq!(inner_ip.link_index, Some(host_ip.ifindex), "ip: {inner} is {host_veth}@if{}", host_ip.ifindex);
    snap.assert_pair(("container", inner), ("host", host_veth));
    assert_eq!(snap.ifindex("container", inner), inner_ip.ifindex, "ifindex of {inner}");
    assert_eq!(snap.ifindex("host", host_veth), host_ip.ifindex, "ifindex of {host_veth}");
}

/// Returns whether the netns entry `entry` lists `pid` among its holders.
fn lists_pid(entry: &Value, pid: u32) -> bool {
    entry["pids"].as_array().expect("pids array").contains(&json!(pid))
}

/// Waits until the host has no interface `name`, then checks that a new
/// snapshot lists no veth end of that name in the host.
fn assert_host_veth_gone(name: &str) -> HostSnapshot {
    wait_until(REMOVAL_TIMEOUT, &format!("{name} to disappear"), || ip_link(None, name).is_none());
    let snapshot = HostSnapshot::take();
    let names = snapshot.labelled(&[]).veth_names("host");
    assert!(!names.contains(&name.to_string()), "{name} is still listed after removal");
    snapshot
}

#[test]
fn cni_bridge_veth_pair() {
    let test = "cni_bridge_veth_pair";
    if skip_unless_installed(test, &[CNI_BRIDGE, CNI_HOST_LOCAL, "ip", "nsenter"]) {
        return;
    }
    let started = Instant::now();
    let mut network = CniNetwork::add(Path::new(CNI_BRIDGE));
    let host_veth = network.host_veth.clone();
    let inode = netns_inode(&network.netns_path);

    let snapshot = HostSnapshot::take();
    let snap = snapshot.labelled(&[("container", inode)]);
    let paths = snap.netns("container")["paths"].as_array().expect("paths").clone();
    assert!(paths.contains(&json!(network.netns_path)), "the netns lists {}: {paths:?}", network.netns_path.display());
    assert_eq!(snap.link("host", &host_veth)["master"]["name"], network.bridge.as_str(), "{host_veth} is on the bridge");
    assert_pair_matches_ip(&snap, &network.netns_path, "eth0", &host_veth);

    network.del();
    let after = assert_host_veth_gone(&host_veth);
    let in_netns = after.labelled(&[("container", inode)]).veth_names("container");
    assert!(in_netns.is_empty(), "DEL left veths in the netns: {in_netns:?}");
    eprintln!("{test} took {:?}", started.elapsed());
}

#[test]
fn docker_container_veth_pair() {
    let test = "docker_container_veth_pair";
    if skip_unless_installed(test, &["dockerd", "docker", "containerd", "runc", "tar", "ip", "nsenter"]) {
        return;
    }
    let Some(busybox) = static_busybox(test) else {
        return;
    };
    let started = Instant::now();
    let ip_forward = IpForward::record();
    let dockerd = find_program("dockerd").expect("dockerd");
    let mut daemon = DockerDaemon::start(&dockerd, &find_program("docker").expect("docker"));
    let image = unique("vtdkimg");
    let (network, bridge) = (unique("vtdknet"), unique("vtdk"));
    daemon.import_busybox(&busybox, &image);
    daemon.create_network(&network, &bridge, "172.29.77.0/24");
    let id = daemon.run_detached(&["--network", &network, &image, "/bin/sleep", "120"]);
    let inspect = daemon.docker(&["inspect", "-f", "{{.State.Pid}} {{.NetworkSettings.SandboxKey}}", &id]);
    let (pid, sandbox) = inspect.trim().split_once(' ').expect("PID SANDBOXKEY");
    let (pid, sandbox): (u32, PathBuf) = (pid.parse().expect("pid"), sandbox.into());
    assert!(sandbox.starts_with(daemon.exec_root().join("netns")), "netns file {}", sandbox.display());
    let inode = netns_inode(&sandbox);
    assert_eq!(netns_inode(Path::new(&format!("/proc/{pid}/ns/net"))), inode, "sleep runs in the sandbox netns");
    let members = ip_links(None, &["master", &bridge]);
    assert_eq!(members.len(), 1, "ip: one port on {bridge}: {members:?}");
    let host_veth = members[0].name.clone();

    let snapshot = HostSnapshot::take();
    let snap = snapshot.labelled(&[("container", inode)]);
    let entry = snap.netns("container");
    let paths = entry["paths"].as_array().expect("paths");
    assert!(paths.contains(&json!(sandbox)), "the netns lists {}: {paths:?}", sandbox.display());
    assert!(lists_pid(entry, pid), "the netns lists sleep ({pid}): {entry}");
    assert_eq!(entry["containers"], json!([{"runtime": "docker", "id": id}]));
    assert_eq!(snap.link("host", &host_veth)["master"]["name"], bridge.as_str(), "{host_veth} is on the bridge");
    assert_pair_matches_ip(&snap, &sandbox, "eth0", &host_veth);

    // sleep is PID 1 of the container and ignores SIGTERM, so -t 0 sends
    // SIGKILL right away.
    daemon.docker(&["stop", "-t", "0", &id]);
    assert_host_veth_gone(&host_veth);
    // dockerd unmounts the netns file after the veth is gone, a moment later.
    wait_until(REMOVAL_TIMEOUT, &format!("{} to leave the snapshot", sandbox.display()), || {
        !HostSnapshot::take().has_netns_path(&sandbox)
    });

    let dir = daemon.dir().to_path_buf();
    drop(daemon);
    assert_eq!(IpForward::current(), ip_forward.before, "dockerd changed ip_forward");
    assert!(!dir.exists(), "{} is left behind", dir.display());
    assert!(ip_link(None, &bridge).is_none(), "{bridge} is left behind");
    eprintln!("{test} took {:?}", started.elapsed());
}

#[test]
fn lxc_container_veth_pair() {
    let test = "lxc_container_veth_pair";
    if skip_unless_installed(test, &["lxc-start", "lxc-stop", "lxc-info", "ip", "nsenter"]) {
        return;
    }
    let Some(busybox) = static_busybox(test) else {
        return;
    };
    let started = Instant::now();
    let mut container = LxcContainer::start(&busybox);
    let netns = PathBuf::from(format!("/proc/{}/ns/net", container.pid));
    let host_veth = container.host_veth.clone();

    let snapshot = HostSnapshot::take();
    let snap = snapshot.labelled(&[("container", netns_inode(&netns))]);
    let entry = snap.netns("container");
    assert!(lists_pid(entry, container.pid), "the netns lists sleep ({}): {entry}", container.pid);
    assert_eq!(entry["paths"], json!([]), "LXC mounts its netns nowhere");
    assert_eq!(entry["containers"], json!([{"runtime": "lxc", "id": container.name}]));
    assert_pair_matches_ip(&snap, &netns, "eth0", &host_veth);

    container.stop();
    assert_host_veth_gone(&host_veth);
    eprintln!("{test} took {:?}", started.elapsed());
}

#[test]
fn nspawn_container_veth_pair() {
    let test = "nspawn_container_veth_pair";
    if skip_unless_installed(test, &["systemd-nspawn", "ip", "nsenter"]) {
        return;
    }
    let Some(busybox) = static_busybox(test) else {
        return;
    };
    let started = Instant::now();
    let nspawn = find_program("systemd-nspawn").expect("systemd-nspawn");
    let mut container = NspawnContainer::start(&nspawn, &busybox);
    let netns = PathBuf::from(format!("/proc/{}/ns/net", container.pid));
    let host_veth = container.host_veth.clone();
    wait_until(REMOVAL_TIMEOUT, "host0 in the container", || ip_link(Some(&netns), "host0").is_some());

    let snapshot = HostSnapshot::take();
    let snap = snapshot.labelled(&[("container", netns_inode(&netns))]);
    let entry = snap.netns("container");
    assert!(lists_pid(entry, container.pid), "the netns lists sleep ({}): {entry}", container.pid);
    // With --register=no, nspawn creates no machine-NAME.scope cgroup, so
    // no cgroup path names the container and `containers` is not checked.
    assert_pair_matches_ip(&snap, &netns, "host0", &host_veth);

    container.stop();
    assert_host_veth_gone(&host_veth);
    eprintln!("{test} took {:?}", started.elapsed());
}
