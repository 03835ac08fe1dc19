//! Helpers for the integration tests: a private sandbox per test and
//! accessors for vethtrace's JSON output.
//!
//! Each test runs its recipe with `unshare` in new network, mount and PID
//! namespaces with a private /proc and /run. Everything the recipe creates
//! lives in namespaces that die with the sandbox's init process, so no test
//! can touch the host's interfaces or leave anything behind, and ifindex
//! numbers are repeatable.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

pub mod runtimes;

/// Returns the vethtrace binary under test: `VETHTRACE_BIN`, or the binary
/// next to this test executable's `deps` folder.
pub fn vethtrace_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("VETHTRACE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executables live in target/PROFILE/deps");
    let path = profile_dir.join("vethtrace");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p vethtrace` or set VETHTRACE_BIN",
        path.display()
    );
    path
}

/// Checks whether the tests run as root, which every sandbox needs. Tests that
/// need it print why they skip and return when it is false.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .map(|uids| uids.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Prints why a test skips; returns true when it must.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("skip {test}: needs root to create namespaces");
    true
}

/// What a sandbox printed: every JSON value on its standard output, in
/// order, and the commands it captured with `capture`.
pub struct SandboxOutput {
    pub values: Vec<Value>,
    pub stderr: String,
    work: WorkDir,
}

/// One command's result, saved by the prelude's `capture NAME COMMAND...`.
#[derive(Debug)]
pub struct Captured {
    pub stdout: String,
    pub stderr: String,
    pub status: i32,
}

/// A per-sandbox folder on the host's filesystem, removed on drop, where
/// `capture` writes and recipes may create files to bind-mount.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> Self {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("vtsandbox-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create the sandbox work folder");
        Self(path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The shell prelude of every sandbox: private /run, a sysfs of the
/// sandbox's netns, and helper functions for recipes.
/// `label NAME PID` prints which netns inode NAME refers to.
const PRELUDE: &str = r#"
set -eu
mount -t tmpfs vtsandbox /run
mkdir -p /run/netns
mount -t sysfs vtsandbox /sys
ip link set lo up
label() { printf '{"label":"%s","inode":%s,"pid":%s}\n' "$1" "$(stat -L -c %i "/proc/$2/ns/net")" "$2"; }
label_path() { printf '{"label":"%s","inode":%s}\n' "$1" "$(stat -L -c %i "$2")"; }
snapshot() { "$VETHTRACE" snapshot --json; }
capture() { name=$1; shift; set +e; "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"; echo $? >"$WORK/$name.rc"; set -e; }
wait_netns() { while [ "$(stat -L -c %i "/proc/$1/ns/net")" = "$(stat -L -c %i /proc/self/ns/net)" ]; do sleep 0.01; done; }
"#;

/// How long one sandbox may run, generous because the VM tests run under
/// QEMU's emulated CPU.
const SANDBOX_TIMEOUT: &str = "300";

/// Runs `recipe` in a fresh sandbox and returns the JSON values it printed.
/// The recipe calls `snapshot` to print vethtrace's JSON and `label` to name
/// namespaces. Panics with the script's stderr when it fails.
pub fn sandbox(recipe: &str) -> SandboxOutput {
    let script = format!("{PRELUDE}\n{recipe}\n");
    let work = WorkDir::new();
    // A hung recipe must not block the suite: timeout(1) kills unshare, and
    // --kill-child then takes the sandbox's init and every process in it.
    let output = Command::new("timeout")
        .args(["--kill-after=10", SANDBOX_TIMEOUT, "unshare"])
        .args(["--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private"])
        .args(["sh", "-c", &script])
        .env("VETHTRACE", vethtrace_bin())
        .env("WORK", &work.0)
        .stdin(Stdio::null())
        .output()
        .expect("failed to start timeout (coreutils) and unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "sandbox failed with {}\n--- script\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    let values = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|error| panic!("sandbox printed invalid JSON ({error}):\n{stdout}"));
    SandboxOutput { values, stderr, work }
}

impl SandboxOutput {
    /// Reads the result of `capture NAME ...` in the recipe.
    pub fn captured(&self, name: &str) -> Captured {
        let read = |extension: &str| {
            let path = self.work.0.join(format!("{name}.{extension}"));
            std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}; did the recipe run `capture {name}`?", path.display()))
        };
        Captured {
            stdout: read("out"),
            stderr: read("err"),
            status: read("rc").trim().parse().expect("exit status"),
        }
    }

    /// Returns a path inside the sandbox's work folder, where recipes write files.
    pub fn work_path(&self, name: &str) -> PathBuf {
        self.work.0.join(name)
    }

    /// Returns the pid recorded by `label NAME PID`.
    pub fn pid(&self, label: &str) -> u64 {
        self.values
            .iter()
            .find(|value| value["label"] == label)
            .and_then(|value| value["pid"].as_u64())
            .unwrap_or_else(|| panic!("no `label {label} PID` in the recipe output"))
    }

    /// Returns the `n`th snapshot printed (0 is the first).
    pub fn snapshot(&self, n: usize) -> Snapshot<'_> {
        let value = self
            .values
            .iter()
            .filter(|value| value.get("links").is_some())
            .nth(n)
            .unwrap_or_else(|| panic!("the sandbox printed fewer than {} snapshots", n + 1));
        Snapshot {
            value,
            labels: self.labels(),
        }
    }

    fn labels(&self) -> Vec<(String, u64)> {
        self.values
            .iter()
            .filter_map(|value| {
                let label = value.get("label")?.as_str()?.to_string();
                let inode = value.get("inode")?.as_u64()?;
                Some((label, inode))
            })
            .collect()
    }
}

/// One `snapshot --json` document with netns labels from the recipe.
pub struct Snapshot<'a> {
    pub value: &'a Value,
    labels: Vec<(String, u64)>,
}

/// One end of a pair as the tests compare it: netns label, ifname, ifindex.
pub type End = (String, String, u64);

impl Snapshot<'_> {
    /// Returns the inode of the netns labelled `label`; "host" is the sandbox's own.
    pub fn inode(&self, label: &str) -> u64 {
        if label == "host" {
            return self.value["netns"]
                .as_array()
                .unwrap()
                .iter()
                .find(|netns| netns["current"] == true)
                .expect("a netns marked current")["inode"]
                .as_u64()
                .unwrap();
        }
        self.labels
            .iter()
            .find(|(name, _)| name == label)
            .map(|(_, inode)| *inode)
            .unwrap_or_else(|| panic!("no label {label:?}; the recipe must call `label {label} PID`"))
    }

    /// Returns the label of a netns inode, or `net:[INODE]` if the recipe gave none.
    pub fn label(&self, inode: u64) -> String {
        if inode == self.inode("host") {
            return "host".into();
        }
        self.labels
            .iter()
            .find(|(_, known)| *known == inode)
            .map(|(name, _)| name.clone())
            .unwrap_or_else(|| format!("net:[{inode}]"))
    }

    pub fn links(&self) -> &Vec<Value> {
        self.value["links"].as_array().expect("links array")
    }

    /// Returns the link entry of `name` in the netns labelled `netns`.
    pub fn link(&self, netns: &str, name: &str) -> &Value {
        let inode = self.inode(netns);
        self.links()
            .iter()
            .find(|link| link["netns"] == inode && link["name"] == name)
            .unwrap_or_else(|| panic!("no veth {name} in {netns}; links: {:#}", self.value["links"]))
    }

    /// Returns the verified peer of `name` in `netns` as (netns label, name, ifindex).
    pub fn peer(&self, netns: &str, name: &str) -> End {
        let link = self.link(netns, name);
        let peer = &link["peer"];
        assert_eq!(peer["verified"], true, "{netns}:{name} is not verified: {link:#}");
        (
            self.label(peer["netns"].as_u64().expect("peer netns")),
            peer["name"].as_str().expect("peer name").to_string(),
            peer["ifindex"].as_u64().expect("peer ifindex"),
        )
    }

    /// Checks that `a` and `b` (netns label, interface name) are verified
    /// peers of each other, from both ends, ifindexes included.
    pub fn assert_pair(&self, a: (&str, &str), b: (&str, &str)) {
        let end = |(netns, name): (&str, &str)| {
            let ifindex = self.link(netns, name)["ifindex"].as_u64().expect("ifindex");
            (netns.to_string(), name.to_string(), ifindex)
        };
        assert_eq!(self.peer(a.0, a.1), end(b), "peer of {}:{}", a.0, a.1);
        assert_eq!(self.peer(b.0, b.1), end(a), "peer of {}:{}", b.0, b.1);
    }

    /// Returns the ifindex of veth `name` in the netns labelled `netns`.
    pub fn ifindex(&self, netns: &str, name: &str) -> u64 {
        self.link(netns, name)["ifindex"].as_u64().expect("ifindex")
    }

    /// Returns the netns entry labelled `label`.
    pub fn netns(&self, label: &str) -> &Value {
        let inode = self.inode(label);
        self.value["netns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|netns| netns["inode"] == inode)
            .unwrap_or_else(|| panic!("netns {label} ({inode}) missing from the snapshot"))
    }

    /// Names of the veth ends in the netns labelled `label`, sorted.
    pub fn veth_names(&self, label: &str) -> Vec<String> {
        let inode = self.inode(label);
        let mut names: Vec<String> = self
            .links()
            .iter()
            .filter(|link| link["netns"] == inode)
            .map(|link| link["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }
}
