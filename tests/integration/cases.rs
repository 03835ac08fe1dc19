//! Topologies where common scripts pair the wrong veth ends, each checked
//! from both ends. Each recipe runs in its own sandbox, so its ifindex
//! numbers are those of a fresh netns (lo is 1).

use vethtrace_tests::{sandbox, skip_unless_root};

#[test]
fn same_ifindex_in_every_container() {
    if skip_unless_root("same_ifindex_in_every_container") {
        return;
    }
    let output = sandbox(
        r#"
        for i in 1 2 3; do
            ip netns add vtc$i
            ip link add h$i type veth peer name eth0 netns vtc$i
            label_path c$i /run/netns/vtc$i
        done
        snapshot
        "#,
    );
    let snap = output.snapshot(0);
    for (i, host_ifindex) in [(1, 2), (2, 3), (3, 4)] {
        let container = format!("c{i}");
        let host_name = format!("h{i}");
        snap.assert_pair((&container, "eth0"), ("host", &host_name));
        assert_eq!(snap.ifindex(&container, "eth0"), 2);
        assert_eq!(snap.ifindex("host", &host_name), host_ifindex);
    }
    assert_eq!(snap.links().len(), 6, "three pairs, each seen from both ends");
}

#[test]
fn peer_index_not_looked_up_locally() {
    if skip_unless_root("peer_index_not_looked_up_locally") {
        return;
    }
    let output = sandbox(
        r#"
        for b in d1 d2 d3; do ip link add $b type bridge; done
        ip netns add vtc1
        ip link add h1 type veth peer name eth0 netns vtc1
        for b in x3 x4 x5; do ip -n vtc1 link add $b type bridge; done
        label_path c1 /run/netns/vtc1
        snapshot
        "#,
    );
    let snap = output.snapshot(0);
    snap.assert_pair(("c1", "eth0"), ("host", "h1"));
    assert_eq!(snap.ifindex("c1", "eth0"), 2);
    assert_eq!(snap.ifindex("host", "h1"), 5);
    assert_eq!(snap.veth_names("c1"), ["eth0"], "bridges are not veths");
}

#[test]
fn peer_in_third_netns() {
    if skip_unless_root("peer_in_third_netns") {
        return;
    }
    let output = sandbox(
        r#"
        ip netns add vtovl; ip netns add vtc1; ip netns add vtc2
        ip link add h2 type veth peer name eth0 netns vtc2
        ip -n vtovl link add ovp type veth peer name eth0 netns vtc1
        ip link add h1 type veth peer name eth1 netns vtc1
        label_path ovl /run/netns/vtovl
        label_path c1 /run/netns/vtc1
        label_path c2 /run/netns/vtc2
        snapshot
        "#,
    );
    let snap = output.snapshot(0);
    snap.assert_pair(("c1", "eth0"), ("ovl", "ovp"));
    snap.assert_pair(("c1", "eth1"), ("host", "h1"));
    snap.assert_pair(("c2", "eth0"), ("host", "h2"));
}

#[test]
fn nsid_resolved_in_its_own_netns() {
    if skip_unless_root("nsid_resolved_in_its_own_netns") {
        return;
    }
    let output = sandbox(
        r#"
        ip netns add vta; ip netns add vtb
        ip link add hb type veth peer name eth0 netns vtb
        ip link add ha type veth peer name eth0 netns vta
        ip -n vta link add ab type veth peer name ba netns vtb
        label_path a /run/netns/vta
        label_path b /run/netns/vtb
        snapshot
        "#,
    );
    let snap = output.snapshot(0);
    snap.assert_pair(("a", "eth0"), ("host", "ha"));
    snap.assert_pair(("a", "ab"), ("b", "ba"));
    snap.assert_pair(("b", "eth0"), ("host", "hb"));

    // a's nsid table names the host and b, as read inside a.
    let nsid_of = |netns: &str, name: &str| snap.link(netns, name)["link_netnsid"].as_i64().expect("nsid");
    let table = snap.netns("a")["nsids"].as_array().expect("nsids").clone();
    for (name, target) in [("eth0", "host"), ("ab", "b")] {
        let nsid = nsid_of("a", name);
        let entry = table
            .iter()
            .find(|entry| entry["nsid"] == nsid)
            .unwrap_or_else(|| panic!("a's nsid table lacks {nsid}: {table:?}"));
        assert_eq!(entry["netns"], snap.inode(target), "nsid {nsid} in a");
    }
}

#[test]
fn absent_nsid_means_same_netns() {
    if skip_unless_root("absent_nsid_means_same_netns") {
        return;
    }
    let output = sandbox(
        r#"
        ip netns add vta; ip netns add vtb
        ip -n vta link add ab type veth peer name ba netns vtb
        ip -n vta link add p1 type veth peer name p2
        ip -n vtb link add b3 type bridge
        ip -n vtb link add b4 type bridge
        label_path a /run/netns/vta
        label_path b /run/netns/vtb
        snapshot
        "#,
    );
    let snap = output.snapshot(0);
    snap.assert_pair(("a", "ab"), ("b", "ba"));
    snap.assert_pair(("a", "p1"), ("a", "p2"));
    assert_eq!(snap.link("a", "p1")["link_netnsid"], serde_json::Value::Null);
    assert_eq!(
        snap.netns("host")["nsids"].as_array().map(Vec::len),
        Some(0),
        "vethtrace must not assign nsids in the host"
    );
}

#[test]
fn both_ends_same_ifindex() {
    if skip_unless_root("both_ends_same_ifindex") {
        return;
    }
    let output = sandbox(
        r#"
        ip netns add vtc1
        ip link add h1 type veth peer name eth0 netns vtc1
        label_path c1 /run/netns/vtc1
        snapshot
        "#,
    );
    let snap = output.snapshot(0);
    snap.assert_pair(("host", "h1"), ("c1", "eth0"));
    assert_eq!(snap.ifindex("host", "h1"), 2);
    assert_eq!(snap.ifindex("c1", "eth0"), 2);
}

#[test]
fn host_bridge_named_like_container_eth0() {
    if skip_unless_root("host_bridge_named_like_container_eth0") {
        return;
    }
    let output = sandbox(
        r#"
        ip link add eth0 type bridge
        ip netns add vtc1
        ip link add h1 type veth peer name eth0 netns vtc1
        label_path c1 /run/netns/vtc1
        snapshot
        "#,
    );
    let snap = output.snapshot(0);
    snap.assert_pair(("c1", "eth0"), ("host", "h1"));
    assert_eq!(snap.ifindex("c1", "eth0"), 2);
    assert_eq!(snap.ifindex("host", "h1"), 3);
    assert_eq!(snap.veth_names("host"), ["h1"], "the host's eth0 is a bridge");
}

#[test]
fn workload_in_host_netns() {
    if skip_unless_root("workload_in_host_netns") {
        return;
    }
    let output = sandbox(
        r#"
        ip link add fwpr type veth peer name fwln
        ip netns add vtc1
        ip link add h1 type veth peer name eth0 netns vtc1
        sleep 1000 &
        label hostsleeper $!
        ip netns exec vtc1 sleep 1000 &
        pid=$!
        wait_netns $pid
        label c1 $pid
        snapshot
        "#,
    );
    let snap = output.snapshot(0);
    snap.assert_pair(("host", "fwpr"), ("host", "fwln"));
    snap.assert_pair(("host", "h1"), ("c1", "eth0"));
    assert_eq!(snap.inode("hostsleeper"), snap.inode("host"), "the host sleeper is in the host netns");
    let c1_pids = snap.netns("c1")["pids"].as_array().expect("pids").clone();
    assert!(c1_pids.contains(&output.pid("c1").into()), "c1 is held by its process: {c1_pids:?}");
    assert!(!c1_pids.contains(&output.pid("hostsleeper").into()));
    assert_eq!(snap.netns("c1")["paths"][0], "/run/netns/vtc1");
}

#[test]
fn netns_outside_run_netns() {
    if skip_unless_root("netns_outside_run_netns") {
        return;
    }
    let output = sandbox(
        r#"
        unshare -n sleep 1000 &
        p1=$!
        wait_netns $p1
        ip link add h1 type veth peer name eth0 netns $p1
        nsenter --net=/proc/$p1/ns/net sleep 1000 &
        p2=$!
        unshare -n sleep 1000 &
        p3=$!
        wait_netns $p3
        ip link add h2 type veth peer name eth0 netns $p3
        touch "$WORK/vtholder"
        mount --bind /proc/$p3/ns/net "$WORK/vtholder"
        label p1 $p1
        label p2 $p2
        label_path p3 "$WORK/vtholder"
        kill $p3
        wait $p3 || true
        test -z "$(ip netns list)"
        snapshot
        "#,
    );
    let snap = output.snapshot(0);
    snap.assert_pair(("host", "h1"), ("p1", "eth0"));
    snap.assert_pair(("host", "h2"), ("p3", "eth0"));
    assert_eq!(snap.inode("p1"), snap.inode("p2"), "p2 joined p1's netns");

    let p1 = snap.netns("p1");
    let mut expected = vec![output.pid("p1"), output.pid("p2")];
    expected.sort();
    assert_eq!(p1["pids"], serde_json::json!(expected), "p1's netns is listed once with both holders");

    let p3 = snap.netns("p3");
    assert_eq!(p3["pids"], serde_json::json!([]), "no process holds p3's netns");
    let paths = p3["paths"].as_array().expect("paths");
    assert_eq!(paths.len(), 1);
    assert!(paths[0].as_str().unwrap().ends_with("/vtholder"), "{paths:?}");
}

#[test]
fn peer_moved_twice() {
    if skip_unless_root("peer_moved_twice") {
        return;
    }
    let output = sandbox(
        r#"
        ip netns add vta; ip netns add vtb
        ip -n vtb link add bb type bridge
        ip link add h1 type veth peer name m1 netns vta
        ip -n vta link set m1 netns vtb
        ip -n vta link add nb type bridge
        label_path a /run/netns/vta
        label_path b /run/netns/vtb
        snapshot
        "#,
    );
    let snap = output.snapshot(0);
    snap.assert_pair(("host", "h1"), ("b", "m1"));
    assert_eq!(snap.ifindex("b", "m1"), 3);
    assert!(snap.veth_names("a").is_empty(), "a has only a bridge left");
}

#[test]
fn renamed_after_creation() {
    if skip_unless_root("renamed_after_creation") {
        return;
    }
    let output = sandbox(
        r#"
        ip netns add vtc1; ip netns add vtc2
        ip link add tmp1 type veth peer name tmpc1 netns vtc1
        ip link add tmp2 type veth peer name tmpc2 netns vtc2
        ip link set tmp1 name h1
        ip link set tmp2 name h2
        ip -n vtc1 link set tmpc1 name eth0
        ip -n vtc2 link set tmpc2 name eth0
        ip -n vtc1 link set eth0 name net1
        ip -n vtc1 link add tmpbr type bridge
        ip -n vtc1 link set tmpbr name eth0
        label_path c1 /run/netns/vtc1
        label_path c2 /run/netns/vtc2
        snapshot
        capture bridge_peer "$VETHTRACE" peer eth0 --netns vtc1
        "#,
    );
    let snap = output.snapshot(0);
    snap.assert_pair(("host", "h1"), ("c1", "net1"));
    snap.assert_pair(("host", "h2"), ("c2", "eth0"));
    assert_eq!(snap.veth_names("c1"), ["net1"], "c1's eth0 is a bridge");

    let bridge = output.captured("bridge_peer");
    assert_eq!(bridge.status, 1, "{bridge:?}");
    assert!(bridge.stderr.contains("\"eth0\""), "{bridge:?}");
    assert!(bridge.stderr.contains("bridge, not a veth"), "{bridge:?}");
}

#[test]
fn netns_inode_reused() {
    if skip_unless_root("netns_inode_reused") {
        return;
    }
    let output = sandbox(
        r#"
        ip netns add vta
        ip link add h1 type veth peer name eth0 netns vta
        label_path old /run/netns/vta
        snapshot
        old=$(stat -L -c %i /run/netns/vta)
        ip netns del vta
        i=0
        while [ $i -lt 200 ]; do
            ip netns add vtn$i
            if [ "$(stat -L -c %i /run/netns/vtn$i)" = "$old" ]; then
                label_path new /run/netns/vtn$i
                snapshot
                exit 0
            fi
            i=$((i + 1))
            sleep 0.05
        done
        echo '{"reused":false}'
        "#,
    );
    let before = output.snapshot(0);
    before.assert_pair(("host", "h1"), ("old", "eth0"));
    if output.values.iter().any(|value| value["reused"] == false) {
        eprintln!("skip netns_inode_reused: the kernel did not reuse the inode within 200 new namespaces");
        return;
    }
    let after = output.snapshot(1);
    assert_eq!(after.inode("new"), before.inode("old"), "the recipe found a reused inode");
    let old_cookie = &before.netns("old")["cookie"];
    let new_cookie = &after.netns("new")["cookie"];
    if old_cookie.is_null() {
        eprintln!("skip netns_inode_reused: this kernel has no SO_NETNS_COOKIE (Linux 5.14+), so nothing tells the namespaces apart");
        return;
    }
    assert_ne!(old_cookie, new_cookie, "only the cookie tells the two namespaces apart");
    assert!(after.veth_names("new").is_empty(), "the new netns is empty");
    assert!(after.veth_names("host").is_empty(), "h1 died with the old netns");
}

#[test]
fn peer_netns_that_cannot_be_opened() {
    if skip_unless_root("peer_netns_that_cannot_be_opened") {
        return;
    }
    // The container's netns ends up held only by a bind mount inside a
    // mount namespace that no process lives in (itself kept by a bind mount
    // of its nsfs file), so discovery cannot reach it.
    let output = sandbox(
        r#"
        mkdir -p /run/vtpriv
        mount -t tmpfs vtpriv /run/vtpriv
        mount --make-private /run/vtpriv
        touch /run/vtpriv/mnt
        unshare -n sleep 1000 &
        pid=$!
        wait_netns $pid
        ip link add vth1 type veth peer name vtpeer netns $pid
        # util-linux's unshare binds the new mount namespace from a helper
        # process, which fails now and then with EINVAL under load; retry.
        bound=no
        for attempt in $(seq 20); do
            if unshare --mount=/run/vtpriv/mnt --propagation private sh -c "mount -t tmpfs vtinner /mnt && touch /mnt/net && mount --bind /proc/$pid/ns/net /mnt/net"; then
                bound=yes
                break
            fi
            sleep 0.2
        done
        test $bound = yes
        kill $pid
        wait $pid || true
        snapshot
        "#,
    );
    let snap = output.snapshot(0);
    let link = snap.link("host", "vth1");
    let peer = &link["peer"];
    assert_eq!(peer["verified"], false, "{link:#}");
    assert_eq!(peer["netns"], serde_json::Value::Null, "{link:#}");
    assert_eq!(peer["ifindex"], 2, "the kernel's peer ifindex: {link:#}");
    assert_eq!(peer["name"], "vtpeer", "named through IFLA_TARGET_NETNSID: {link:#}");
    assert!(link["link_netnsid"].is_i64(), "the kernel's nsid is reported: {link:#}");
    let reason = peer["reason"].as_str().expect("a reason");
    assert!(reason.contains("not among the namespaces found"), "{reason}");
}
