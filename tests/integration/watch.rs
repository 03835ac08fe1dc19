//! `vethtrace watch` against real changes: the exact event sequence, the
//! actors where the mode can see them, and a final state equal to a fresh
//! snapshot. On a kernel that refuses eBPF tracing this runs the netlink
//! fallback and checks what that mode reports and that it says what it
//! cannot see.

use std::collections::BTreeMap;

use serde_json::Value;
use vethtrace_tests::{SandboxOutput, sandbox, skip_unless_root};

/// Starts `watch --json` in the background after the recipe's `setup`
/// part, waits until it printed its initial state, runs `steps`, waits for
/// `final_lines` lines matching `final_pattern`, stops it with SIGTERM and
/// takes a fresh snapshot.
fn watch_recipe(setup: &str, steps: &str, final_pattern: &str, final_lines: usize) -> SandboxOutput {
    sandbox(&format!(
        r#"
        wait_lines() {{
            i=0
            while :; do
                count=$(grep -c -- "$1" "$WORK/watch.out" 2>/dev/null) || count=0
                [ "$count" -lt "$2" ] || break
                i=$((i + 1))
                if [ $i -gt 600 ]; then echo "timed out waiting for $2 lines matching $1" >&2; cat "$WORK/watch.out" >&2; exit 1; fi
                sleep 0.05
            done
        }}
        ip link add vtseed type veth peer name vtseedp
        {setup}
        progs() {{ if command -v bpftool >/dev/null; then bpftool prog show | grep -c '^[0-9]' || true; else echo none; fi; }}
        progs >"$WORK/progs.before"
        : >"$WORK/watch.out"
        "$VETHTRACE" watch --json >"$WORK/watch.out" 2>"$WORK/watch.err" &
        watcher=$!
        wait_lines '"event":"present"' 2
        progs >"$WORK/progs.during"
        {steps}
        wait_lines '{final_pattern}' {final_lines}
        kill -TERM $watcher
        set +e
        wait $watcher
        echo $? >"$WORK/watch.rc"
        set -e
        progs >"$WORK/progs.after"
        snapshot
        "#
    ))
}

/// Reads the events `watch` printed, in order.
fn events(output: &SandboxOutput) -> Vec<Value> {
    let text = std::fs::read_to_string(output.work_path("watch.out")).expect("watch.out");
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("invalid JSON line {line:?}: {error}")))
        .collect()
}

/// Returns the mode from the first notice: "ebpf" or "netlink".
fn mode(events: &[Value]) -> String {
    let notice = events.iter().find(|event| event["event"] == "notice").expect("a notice line");
    notice["mode"].as_str().expect("notice mode").to_string()
}

/// Events after the initial state, without notices.
fn changes(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|event| event["event"] != "notice" && event["event"] != "present")
        .collect()
}

fn kinds<'a>(events: &[&'a Value]) -> Vec<&'a str> {
    events.iter().map(|event| event["event"].as_str().unwrap()).collect()
}

/// Replays the events into (netns, ifindex) → (name, peer netns, peer
/// ifindex), the state a consumer of the stream would hold.
fn replay(events: &[Value]) -> BTreeMap<(u64, u64), (String, Option<u64>, Option<u64>)> {
    let mut state = BTreeMap::new();
    for event in events {
        let key = || (event["netns"].as_u64().unwrap(), event["ifindex"].as_u64().unwrap());
        let entry = || {
            (
                event["name"].as_str().unwrap().to_string(),
                event["peer"]["netns"].as_u64(),
                event["peer"]["ifindex"].as_u64(),
            )
        };
        match event["event"].as_str().unwrap() {
            "present" | "renamed" => {
                state.insert(key(), entry());
            }
            "pair-created" => {
                state.insert(key(), entry());
                let peer = &event["peer"];
                state.insert(
                    (peer["netns"].as_u64().unwrap(), peer["ifindex"].as_u64().unwrap()),
                    (
                        peer["name"].as_str().unwrap().to_string(),
                        event["netns"].as_u64(),
                        event["ifindex"].as_u64(),
                    ),
                );
            }
            "moved" => {
                let from = &event["from"];
                state.remove(&(from["netns"].as_u64().unwrap(), from["ifindex"].as_u64().unwrap()));
                state.insert(key(), entry());
                let peer_key = (event["peer"]["netns"].as_u64().unwrap(), event["peer"]["ifindex"].as_u64().unwrap());
                if let Some(peer) = state.get_mut(&peer_key) {
                    peer.1 = event["netns"].as_u64();
                    peer.2 = event["ifindex"].as_u64();
                }
            }
            "deleted" => {
                state.remove(&key());
            }
            _ => {}
        }
    }
    state
}

/// Checks that replaying the stream gives what a fresh snapshot shows.
fn assert_final_state_matches_snapshot(output: &SandboxOutput, events: &[Value]) {
    let snapshot = output.snapshot(0);
    let expected: BTreeMap<(u64, u64), (String, Option<u64>, Option<u64>)> = snapshot
        .links()
        .iter()
        .map(|link| {
            (
                (link["netns"].as_u64().unwrap(), link["ifindex"].as_u64().unwrap()),
                (
                    link["name"].as_str().unwrap().to_string(),
                    link["peer"]["netns"].as_u64(),
                    link["peer"]["ifindex"].as_u64(),
                ),
            )
        })
        .collect();
    assert_eq!(replay(events), expected, "the replayed stream differs from a fresh snapshot");
}

/// Checks that SIGTERM ended `watch` with 0 and that it left no eBPF
/// program loaded, counting programs with `bpftool prog show`.
fn assert_stopped_cleanly(output: &SandboxOutput, mode: &str) {
    let status = std::fs::read_to_string(output.work_path("watch.rc")).expect("watch.rc");
    let stderr = std::fs::read_to_string(output.work_path("watch.err")).unwrap_or_default();
    assert_eq!(status.trim(), "0", "watch exits 0 on SIGTERM; stderr: {stderr}");

    let read = |name: &str| std::fs::read_to_string(output.work_path(name)).expect(name).trim().to_string();
    let (before, during, after) = (read("progs.before"), read("progs.during"), read("progs.after"));
    if before == "none" {
        eprintln!("skip the bpftool check: bpftool is not installed");
        return;
    }
    let count = |text: &str| text.parse::<u32>().expect("a program count");
    assert_eq!(count(&after), count(&before), "programs left loaded after SIGTERM");
    if mode == "ebpf" {
        assert!(count(&during) > count(&before), "watch loaded its programs: {before} -> {during}");
    }
}

/// Checks the actor of a change made by `ip`: present in eBPF mode, null in
/// netlink mode.
fn assert_actor(event: &Value, mode: &str) {
    if mode == "ebpf" {
        assert_eq!(event["actor"]["comm"], "ip", "actor of {event}");
        assert!(event["actor"]["pid"].as_u64().is_some_and(|pid| pid > 0), "actor of {event}");
    } else {
        assert_eq!(event["actor"], Value::Null, "netlink mode has no actors: {event}");
    }
}

#[test]
fn create_move_rename_delete() {
    if skip_unless_root("create_move_rename_delete") {
        return;
    }
    let output = watch_recipe(
        "ip netns add vta; ip netns add vtb",
        r#"
        ip link add vth1 type veth peer name vtm1 netns vta
        wait_lines '"event":"pair-created"' 1
        ip -n vta link set vtm1 netns vtb
        wait_lines '"event":"moved"' 1
        ip -n vta link add vtbr type bridge
        ip -n vtb link set vtm1 name vtnet1
        wait_lines '"event":"renamed"' 1
        ip link del vth1
        "#,
        r#""event":"deleted""#,
        2,
    );
    let events = events(&output);
    let mode = mode(&events);
    eprintln!("vethtrace-mode: {mode}");
    let changes = changes(&events);
    assert_eq!(kinds(&changes), ["pair-created", "moved", "renamed", "deleted", "deleted"], "{changes:#?}");

    let created = changes[0];
    let names = [created["name"].as_str().unwrap(), created["peer"]["name"].as_str().unwrap()];
    assert!(names.contains(&"vth1"), "{created}");
    assert!(names.contains(&"vtm1"), "{created}");
    assert_actor(created, &mode);

    let moved = changes[1];
    assert_eq!(moved["name"], "vtm1");
    assert_eq!(moved["peer"]["name"], "vth1");
    assert_ne!(moved["netns"], moved["from"]["netns"], "{moved}");
    assert_actor(moved, &mode);

    let renamed = changes[2];
    assert_eq!(renamed["name"], "vtnet1");
    assert_eq!(renamed["old_name"], "vtm1");
    assert_eq!(renamed["netns"], moved["netns"], "renamed in the netns it moved to");
    assert_actor(renamed, &mode);

    let mut deleted: Vec<&str> = changes[3..].iter().map(|event| event["name"].as_str().unwrap()).collect();
    deleted.sort();
    assert_eq!(deleted, ["vth1", "vtnet1"]);

    assert_final_state_matches_snapshot(&output, &events);
    assert_stopped_cleanly(&output, &mode);
}

#[test]
fn netlink_mode_says_what_it_misses() {
    if skip_unless_root("netlink_mode_says_what_it_misses") {
        return;
    }
    let output = sandbox(
        r#"
        ip link add vtseed type veth peer name vtseedp
        capture watch timeout --preserve-status -s INT 3 "$VETHTRACE" watch --json --netlink
        "#,
    );
    let captured = output.captured("watch");
    assert_eq!(captured.status, 0, "SIGINT ends watch with 0: {captured:?}");
    let first: Value = serde_json::from_str(captured.stdout.lines().next().expect("a line")).expect("JSON");
    assert_eq!(first["event"], "notice");
    assert_eq!(first["mode"], "netlink");
    let message = first["message"].as_str().unwrap();
    assert!(message.contains("--netlink"), "{message}");
    assert!(message.contains("actors are unknown"), "{message}");
    assert!(message.contains("without an nsid"), "{message}");
    let present = captured.stdout.lines().filter(|line| line.contains(r#""event":"present""#)).count();
    assert_eq!(present, 2, "both seed ends are present: {}", captured.stdout);
}

#[test]
fn peer_moved_twice_live() {
    if skip_unless_root("peer_moved_twice_live") {
        return;
    }
    let output = watch_recipe(
        "ip netns add vta; ip netns add vtb; ip -n vtb link add vtbb type bridge",
        r#"
        ip link add vth1 type veth peer name vtm1 netns vta
        wait_lines '"event":"pair-created"' 1
        ip -n vta link set vtm1 netns vtb
        ip -n vta link add vtnb type bridge
        "#,
        r#""event":"moved""#,
        1,
    );
    let events = events(&output);
    let changes = changes(&events);
    assert_eq!(kinds(&changes), ["pair-created", "moved"], "{changes:#?}");
    assert_eq!(changes[1]["ifindex"], 3, "m1 takes index 3 in b");
    assert_eq!(changes[1]["peer"]["name"], "vth1");
    assert_final_state_matches_snapshot(&output, &events);
    assert_stopped_cleanly(&output, &mode(&events));
}

#[test]
fn renames_after_creation_live() {
    if skip_unless_root("renames_after_creation_live") {
        return;
    }
    let output = watch_recipe(
        "ip netns add vtc1",
        r#"
        ip link add vttmp1 type veth peer name vttmpc1 netns vtc1
        wait_lines '"event":"pair-created"' 1
        ip link set vttmp1 name vth1
        ip -n vtc1 link set vttmpc1 name eth0
        ip -n vtc1 link set eth0 name net1
        ip -n vtc1 link add vttmpbr type bridge
        ip -n vtc1 link set vttmpbr name eth0
        "#,
        r#""event":"renamed""#,
        3,
    );
    let events = events(&output);
    let changes = changes(&events);
    assert_eq!(kinds(&changes), ["pair-created", "renamed", "renamed", "renamed"], "{changes:#?}");
    let renames: Vec<(&str, &str)> = changes[1..]
        .iter()
        .map(|event| (event["old_name"].as_str().unwrap(), event["name"].as_str().unwrap()))
        .collect();
    assert_eq!(renames, [("vttmp1", "vth1"), ("vttmpc1", "eth0"), ("eth0", "net1")]);
    assert_final_state_matches_snapshot(&output, &events);
}

#[test]
fn short_lived_container() {
    if skip_unless_root("short_lived_container") {
        return;
    }
    let output = watch_recipe(
        "",
        r#"
        unshare -n sleep 0.5 &
        pid=$!
        wait_netns $pid
        ip link add vthc type veth peer name eth0 netns $pid
        wait $pid
        "#,
        r#""event":"deleted""#,
        2,
    );
    let events = events(&output);
    let changes = changes(&events);
    assert_eq!(kinds(&changes), ["pair-created", "deleted", "deleted"], "{changes:#?}");
    let mut deleted: Vec<&str> = changes[1..].iter().map(|event| event["name"].as_str().unwrap()).collect();
    deleted.sort();
    assert_eq!(deleted, ["eth0", "vthc"], "the netns took both ends with it");
    assert_final_state_matches_snapshot(&output, &events);
}

#[test]
fn move_with_new_name() {
    if skip_unless_root("move_with_new_name") {
        return;
    }
    let output = watch_recipe(
        "ip netns add vtc1; ip link add vth1 type veth peer name eth0 netns vtc1; ip link add vtx type veth peer name vtxp",
        "ip link set vtx netns vtc1 name vty",
        r#""event":"renamed""#,
        1,
    );
    let events = events(&output);
    let changes = changes(&events);
    // rtnetlink moves the link first and renames it in the new netns after,
    // and both modes report it that way.
    assert_eq!(kinds(&changes), ["moved", "renamed"], "{changes:#?}");
    assert_eq!(changes[0]["name"], "vtx", "the move is reported under the name it had");
    assert_eq!(changes[1]["name"], "vty");
    assert_eq!(changes[1]["old_name"], "vtx");
    assert_final_state_matches_snapshot(&output, &events);
}

#[test]
fn move_out_of_netns_without_nsid() {
    if skip_unless_root("move_out_of_netns_without_nsid") {
        return;
    }
    // a and b are wired only to each other, so neither has an nsid in the
    // host and their own notifications never reach the watcher.
    let output = watch_recipe(
        "ip netns add vta; ip netns add vtb; ip -n vta link add vtab type veth peer name vtba netns vtb",
        "ip -n vtb link set vtba netns 1",
        r#""event":"moved""#,
        1,
    );
    let events = events(&output);
    let changes = changes(&events);
    assert_eq!(kinds(&changes), ["moved"], "{changes:#?}");
    assert_eq!(changes[0]["name"], "vtba");
    assert_eq!(changes[0]["peer"]["name"], "vtab");
    assert_ne!(changes[0]["from"]["netns"], changes[0]["netns"]);
    assert_final_state_matches_snapshot(&output, &events);
}

#[test]
fn cni_bridge_add_then_del() {
    if skip_unless_root("cni_bridge_add_then_del") {
        return;
    }
    if !std::path::Path::new("/usr/lib/cni/bridge").exists() {
        eprintln!("skip cni_bridge_add_then_del: /usr/lib/cni/bridge (containernetworking-plugins) is not installed");
        return;
    }
    let output = watch_recipe(
        r#"
        ip netns add vtcni
        mkdir -p "$WORK/ipam"
        printf '{"cniVersion":"0.4.0","name":"vtcninet","type":"bridge","bridge":"vtcnibr0","isGateway":false,"ipMasq":false,"ipam":{"type":"host-local","subnet":"10.213.9.0/24","dataDir":"%s/ipam"}}' "$WORK" >"$WORK/conf.json"
        cni() { CNI_COMMAND=$1 CNI_CONTAINERID=vtcni1 CNI_NETNS=/run/netns/vtcni CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni /usr/lib/cni/bridge <"$WORK/conf.json" >"$WORK/cni.$1.out"; }
        "#,
        r#"
        cni ADD
        wait_lines '"event":"pair-created"' 1
        cni DEL
        "#,
        r#""event":"deleted""#,
        2,
    );
    let events = events(&output);
    let mode = mode(&events);
    let changes = changes(&events);
    let kinds = kinds(&changes);
    assert_eq!(kinds.first(), Some(&"pair-created"), "{changes:#?}");
    assert_eq!(kinds.iter().filter(|kind| **kind == "deleted").count(), 2, "{changes:#?}");
    if mode == "ebpf" {
        // The plugin creates both ends in the container, then moves one out.
        assert!(kinds.contains(&"moved"), "{changes:#?}");
    }
    let created = changes[0];
    let names = [created["name"].as_str().unwrap(), created["peer"]["name"].as_str().unwrap()];
    assert!(names.contains(&"eth0"), "the container end is eth0: {created}");
    assert!(names.iter().any(|name| name.starts_with("veth")), "the host end is vethXXXXXXXX: {created}");
    assert_final_state_matches_snapshot(&output, &events);
    assert_stopped_cleanly(&output, &mode);
}
