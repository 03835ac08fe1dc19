//! The command line as a user meets it: `peer`, JSON shapes, errors and
//! exit statuses.

use vethtrace_tests::{sandbox, skip_unless_root};

#[test]
fn peer_by_every_netns_reference() {
    if skip_unless_root("peer_by_every_netns_reference") {
        return;
    }
    let output = sandbox(
        r#"
        ip netns add vtc1
        ip link add h1 type veth peer name eth0 netns vtc1
        ip netns exec vtc1 sleep 1000 &
        pid=$!
        wait_netns $pid
        inode=$(stat -L -c %i /run/netns/vtc1)
        label c1 $pid
        capture by_name "$VETHTRACE" peer eth0 --netns vtc1 --json
        capture by_path "$VETHTRACE" peer eth0 --netns /run/netns/vtc1 --json
        capture by_pid "$VETHTRACE" peer eth0 --netns pid:$pid --json
        capture by_net "$VETHTRACE" peer eth0 --netns "net:[$inode]" --json
        capture by_inode "$VETHTRACE" peer eth0 -n $inode --json
        capture host_end "$VETHTRACE" peer h1 --json
        capture human "$VETHTRACE" peer h1
        "#,
    );
    let c1 = output.values.iter().find(|value| value["label"] == "c1").expect("label c1")["inode"].clone();
    for name in ["by_name", "by_path", "by_pid", "by_net", "by_inode"] {
        let captured = output.captured(name);
        assert_eq!(captured.status, 0, "{name}: {captured:?}");
        let link: serde_json::Value = serde_json::from_str(&captured.stdout).expect("JSON");
        assert_eq!(link["name"], "eth0", "{name}");
        assert_eq!(link["netns"], c1, "{name}");
        assert_eq!(link["kind"], "veth", "{name}");
        assert_eq!(link["peer"]["name"], "h1", "{name}");
        assert_eq!(link["peer"]["ifindex"], 2, "{name}");
        assert_eq!(link["peer"]["verified"], true, "{name}");
    }
    let host_end: serde_json::Value = serde_json::from_str(&output.captured("host_end").stdout).expect("JSON");
    assert_eq!(host_end["peer"]["netns"], c1);
    assert_eq!(host_end["peer"]["name"], "eth0");

    let human = output.captured("human");
    assert_eq!(human.status, 0, "{human:?}");
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one row: {}", human.stdout);
    assert!(lines[0].starts_with("NETNS"), "{}", human.stdout);
    assert!(lines[1].contains("h1") && lines[1].contains("eth0") && lines[1].contains("yes"), "{}", human.stdout);
}

#[test]
fn peer_errors_name_the_value() {
    if skip_unless_root("peer_errors_name_the_value") {
        return;
    }
    let output = sandbox(
        r#"
        ip link add vtbr type bridge
        capture missing_interface "$VETHTRACE" peer vtnosuch
        capture bridge "$VETHTRACE" peer vtbr
        capture missing_netns "$VETHTRACE" peer eth0 --netns vtnosuchns
        capture bad_reference "$VETHTRACE" peer eth0 --netns pid:abc
        capture bad_option "$VETHTRACE" snapshot --no-such-option
        capture regular_file "$VETHTRACE" peer eth0 --netns /etc/hostname
        "#,
    );
    let cases = [
        ("missing_interface", 1, "\"vtnosuch\" not found"),
        ("bridge", 1, "bridge, not a veth"),
        ("missing_netns", 1, "/run/netns/vtnosuchns"),
        ("bad_reference", 2, "invalid netns reference \"pid:abc\""),
        ("bad_option", 2, "--no-such-option"),
        ("regular_file", 1, "/etc/hostname is not a network namespace file"),
    ];
    for (name, status, message) in cases {
        let captured = output.captured(name);
        assert_eq!(captured.status, status, "{name}: {captured:?}");
        assert!(captured.stderr.contains(message), "{name}: stderr lacks {message:?}: {captured:?}");
        assert!(!captured.stderr.contains("panicked"), "{name}: {captured:?}");
        assert_eq!(captured.stderr.trim().lines().count().min(1), 1, "{name}: one line");
    }
}

#[test]
fn not_root_is_one_clear_line() {
    if skip_unless_root("not_root_is_one_clear_line") {
        return;
    }
    if std::process::Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skip not_root_is_one_clear_line: setpriv (util-linux) is not installed");
        return;
    }
    let output = sandbox(
        r#"
        capture unprivileged setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all "$VETHTRACE" snapshot
        "#,
    );
    let captured = output.captured("unprivileged");
    assert_eq!(captured.status, 1, "{captured:?}");
    assert_eq!(captured.stderr.lines().count(), 1, "{captured:?}");
    assert!(captured.stderr.contains("needs CAP_SYS_ADMIN"), "{captured:?}");
    assert!(captured.stderr.contains("run it as root"), "{captured:?}");
}

#[test]
fn snapshot_json_shape() {
    if skip_unless_root("snapshot_json_shape") {
        return;
    }
    let output = sandbox(
        r#"
        ip netns add vtc1
        ip link add h1 type veth peer name eth0 netns vtc1
        label_path c1 /run/netns/vtc1
        snapshot
        capture human "$VETHTRACE" snapshot
        "#,
    );
    let snap = output.snapshot(0);
    let netns = snap.netns("c1");
    for field in ["inode", "cookie", "paths", "pids", "containers", "nsids", "current"] {
        assert!(netns.get(field).is_some(), "netns entry lacks {field}: {netns:#}");
    }
    assert_eq!(netns["paths"], serde_json::json!(["/run/netns/vtc1"]));
    let link = snap.link("host", "h1");
    for field in ["netns", "ifindex", "name", "kind", "peer"] {
        assert!(link.get(field).is_some(), "link entry lacks {field}: {link:#}");
    }
    for field in ["netns", "ifindex", "name", "verified"] {
        assert!(link["peer"].get(field).is_some(), "peer lacks {field}: {link:#}");
    }

    let human = output.captured("human");
    assert_eq!(human.status, 0, "{human:?}");
    assert!(human.stdout.contains("vtc1"), "{}", human.stdout);

}
