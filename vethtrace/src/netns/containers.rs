//! Names the container a process belongs to from its cgroup path.
//!
//! A netns number means little to a user; the container that lives in it
//! does. Every common runtime puts a container's processes in a cgroup whose
//! path contains the container id or name, so `/proc/PID/cgroup` names the
//! container without asking any runtime's API.

use serde::{Deserialize, Serialize};

/// A container, as named by a cgroup path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Container {
    /// The runtime: `docker`, `containerd`, `cri-o`, `podman`, `lxc`,
    /// `systemd-nspawn`, or `cri` for a Kubernetes container whose cgroupfs
    /// path does not name the runtime (`crictl inspect ID` finds it).
    pub runtime: String,
    /// The 64-hex-digit container id, or the container name for `lxc` and
    /// `systemd-nspawn`.
    pub id: String,
}

/// Parses a line of `/proc/PID/cgroup` (`HIERARCHY:CONTROLLERS:PATH`) or a
/// bare cgroup path into the container that the path belongs to.
///
/// Containers can nest (Docker in LXC, systemd inside a container), so the
/// innermost container in the path is returned. Runtime helper processes
/// that sit in their own cgroups (`libpod-conmon-ID.scope`,
/// `crio-conmon-ID.scope`, `lxc.monitor.NAME`, nspawn's `supervisor`) are
/// not containers.
pub fn container_of_cgroup(line: &str) -> Option<Container> {
    let path = cgroup_path(line.trim_end())?;
    let components: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    (0..components.len())
        .rev()
        .find_map(|index| container_at(&components, index))
}

/// Returns the path field of a `/proc/PID/cgroup` line, or `line` itself if
/// it is already a path.
fn cgroup_path(line: &str) -> Option<&str> {
    if line.starts_with('/') {
        return Some(line);
    }
    let mut fields = line.splitn(3, ':');
    let _hierarchy = fields.next()?;
    let _controllers = fields.next()?;
    fields.next().filter(|path| path.starts_with('/'))
}

/// Returns the container that `components[index]` names, given the
/// components around it.
fn container_at(components: &[&str], index: usize) -> Option<Container> {
    let component = components[index];
    let parent = index.checked_sub(1).map(|parent| components[parent]);
    let child = components.get(index + 1).copied();
    scoped_id(component)
        .or_else(|| id_under_parent(component, parent))
        .or_else(|| kubepods_id(components, index))
        .or_else(|| lxc_payload(component))
        .or_else(|| nspawn_machine(component, child))
}

/// Parses the systemd scope units that runtimes create with the systemd
/// cgroup driver, such as `docker-ID.scope`.
fn scoped_id(component: &str) -> Option<Container> {
    const SCOPES: [(&str, &str); 4] = [
        ("docker-", "docker"),
        ("cri-containerd-", "containerd"),
        ("crio-", "cri-o"),
        ("libpod-", "podman"),
    ];
    for (prefix, runtime) in SCOPES {
        let Some(rest) = component.strip_prefix(prefix) else {
            continue;
        };
        // Podman's cgroupfs manager leaves the `.scope` suffix off.
        let id = rest.strip_suffix(".scope").unwrap_or(rest);
        if is_container_id(id) && (runtime == "podman" || rest.ends_with(".scope")) {
            return Some(container(runtime, id));
        }
    }
    // When kubelet uses the systemd cgroup driver and runc does not, runc
    // takes the systemd-style `SLICE:cri-containerd:ID` as a plain cgroup name.
    let (_, id) = component.rsplit_once(":cri-containerd:")?;
    is_container_id(id).then(|| container("containerd", id))
}

/// Parses the cgroupfs layouts `/docker/ID` and `/lxc/NAME` (older LXC).
fn id_under_parent(component: &str, parent: Option<&str>) -> Option<Container> {
    match parent? {
        "docker" if is_container_id(component) => Some(container("docker", component)),
        "lxc" | "lxc.payload" => Some(container("lxc", component)),
        _ => None,
    }
}

/// Parses kubelet's cgroupfs layout, `/kubepods/QOS/podUID/ID`, where the
/// last component is the bare container id.
fn kubepods_id(components: &[&str], index: usize) -> Option<Container> {
    let component = components[index];
    let under_kubepods = components[..index]
        .iter()
        .any(|part| part.contains("kubepods"));
    (under_kubepods && is_container_id(component)).then(|| container("cri", component))
}

/// Parses `lxc.payload.NAME`, the cgroup of a container under current LXC
/// and LXD (`DEFAULT_PAYLOAD_CGROUP_PREFIX` in LXC's src/lxc/cgroups/cgroup.h).
/// `lxc.monitor.NAME` contains the monitor process and is not the container.
fn lxc_payload(component: &str) -> Option<Container> {
    let name = component.strip_prefix("lxc.payload.")?;
    (!name.is_empty()).then(|| container("lxc", name))
}

/// Parses `machine-NAME.scope`, the scope that systemd-machined registers
/// for a systemd-nspawn container, with NAME in systemd's unit escaping.
///
/// systemd-nspawn moves the container into a `payload` sub-cgroup of the
/// scope and, with `--keep-unit`, itself into `supervisor`
/// (`create_subcgroup` in systemd's src/nspawn/nspawn-cgroup.c). The
/// supervisor runs outside the container, so it is skipped. libvirt
/// registers its QEMU virtual machines as `machine-qemu\x2dN\x2dNAME.scope`,
/// which are not containers either.
fn nspawn_machine(component: &str, child: Option<&str>) -> Option<Container> {
    let escaped = component.strip_prefix("machine-")?.strip_suffix(".scope")?;
    let name = unescape_unit_name(escaped)?;
    if name.is_empty() || name.starts_with("qemu-") || child == Some("supervisor") {
        return None;
    }
    Some(container("systemd-nspawn", &name))
}

/// Undoes systemd's unit name escaping, in which `\xHH` stands for the byte
/// with hex value HH (`-` is `\x2d`), as systemd-escape(1) describes.
fn unescape_unit_name(escaped: &str) -> Option<String> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'\\' && bytes.get(index + 1) == Some(&b'x') {
            let hex = escaped.get(index + 2..index + 4)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 4;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Returns whether `text` is a full container id: 64 lowercase hex digits.
fn is_container_id(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

fn container(runtime: &str, id: &str) -> Container {
    Container {
        runtime: runtime.to_owned(),
        id: id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a";
    const INNER: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

    fn expect(line: &str, runtime: &str, id: &str) {
        assert_eq!(
            container_of_cgroup(line),
            Some(container(runtime, id)),
            "cgroup line {line:?}"
        );
    }

    fn expect_none(line: &str) {
        assert_eq!(container_of_cgroup(line), None, "cgroup line {line:?}");
    }

    #[test]
    fn docker_cgroupfs_v1_and_v2() {
        expect(&format!("12:pids:/docker/{ID}"), "docker", ID);
        expect(&format!("0::/docker/{ID}"), "docker", ID);
        expect(&format!("/docker/{ID}\n"), "docker", ID);
    }

    #[test]
    fn docker_systemd_scope() {
        expect(&format!("0::/system.slice/docker-{ID}.scope"), "docker", ID);
        expect(
            &format!("4:memory:/system.slice/docker-{ID}.scope"),
            "docker",
            ID,
        );
        // A container that runs systemd moves its processes into sub-cgroups.
        expect(
            &format!("0::/system.slice/docker-{ID}.scope/init.scope"),
            "docker",
            ID,
        );
        // Rootless Docker runs under the user's systemd instance.
        expect(
            &format!(
                "0::/user.slice/user-1000.slice/user@1000.service/app.slice/docker-{ID}.scope"
            ),
            "docker",
            ID,
        );
    }

    #[test]
    fn docker_nested_returns_innermost() {
        expect(&format!("0::/docker/{ID}/docker/{INNER}"), "docker", INNER);
        expect(
            &format!("0::/lxc.payload.build1/system.slice/docker-{INNER}.scope"),
            "docker",
            INNER,
        );
    }

    #[test]
    fn containerd_systemd_scope() {
        expect(
            &format!(
                "0::/kubepods.slice/kubepods-burstable.slice/\
                 kubepods-burstable-pod8d3c1c4e_5b1a_4f7e_9d2a_0e6b7c8d9f10.slice/cri-containerd-{ID}.scope"
            ),
            "containerd",
            ID,
        );
        expect(
            &format!(
                "0::/system.slice/containerd.service/\
                 kubepods-besteffort-pod0f1e2d3c_4b5a_6978_8a9b_0c1d2e3f4a5b.slice:cri-containerd:{ID}"
            ),
            "containerd",
            ID,
        );
    }

    #[test]
    fn kubepods_cgroupfs() {
        expect(
            &format!("0::/kubepods/besteffort/pod8d3c1c4e-5b1a-4f7e-9d2a-0e6b7c8d9f10/{ID}"),
            "cri",
            ID,
        );
        expect(
            &format!("11:cpu,cpuacct:/kubepods/pod8d3c1c4e-5b1a-4f7e-9d2a-0e6b7c8d9f10/{ID}"),
            "cri",
            ID,
        );
    }

    #[test]
    fn crio_scope_and_conmon() {
        expect(
            &format!("0::/kubepods.slice/kubepods-pod1.slice/crio-{ID}.scope"),
            "cri-o",
            ID,
        );
        expect_none(&format!(
            "0::/kubepods.slice/kubepods-pod1.slice/crio-conmon-{ID}.scope"
        ));
    }

    #[test]
    fn podman_scope_and_conmon() {
        expect(
            &format!("0::/machine.slice/libpod-{ID}.scope"),
            "podman",
            ID,
        );
        expect(
            &format!("0::/machine.slice/libpod-{ID}.scope/container"),
            "podman",
            ID,
        );
        expect(&format!("0::/libpod_parent/libpod-{ID}"), "podman", ID);
        expect_none(&format!("0::/machine.slice/libpod-conmon-{ID}.scope"));
    }

    #[test]
    fn lxc_layouts() {
        expect("0::/lxc.payload.web1", "lxc", "web1");
        expect("0::/lxc.payload.web1/init.scope", "lxc", "web1");
        expect("5:devices:/lxc/web1", "lxc", "web1");
        expect("0::/lxc.payload/web1", "lxc", "web1");
        expect_none("0::/lxc.monitor.web1");
        expect_none("0::/lxc.monitor/web1");
    }

    #[test]
    fn nspawn_machine_scope() {
        expect(
            "0::/machine.slice/machine-build.scope",
            "systemd-nspawn",
            "build",
        );
        expect(
            r"0::/machine.slice/machine-my\x2dbox.scope/payload",
            "systemd-nspawn",
            "my-box",
        );
        expect(
            r"1:name=systemd:/machine.slice/machine-a\x2db\x2dc.scope",
            "systemd-nspawn",
            "a-b-c",
        );
        expect_none(r"0::/machine.slice/machine-my\x2dbox.scope/supervisor");
        expect_none(r"0::/machine.slice/machine-qemu\x2d1\x2dvm1.scope");
        expect_none(r"0::/machine.slice/machine-bad\x2.scope");
    }

    #[test]
    fn host_cgroups_are_not_containers() {
        expect_none("0::/");
        expect_none("0::/init.scope");
        expect_none("0::/system.slice/containerd.service");
        expect_none("0::/system.slice/docker.service");
        expect_none("0::/user.slice/user-1000.slice/session-3.scope");
        expect_none("4:memory:/process_api/29fdacd2ea3516a32d3c600d0ababd7e");
        expect_none("0::/kubepods.slice/kubepods-burstable.slice");
        expect_none("");
        expect_none("garbage");
    }

    #[test]
    fn ids_must_be_full_lowercase_hex() {
        expect_none(&format!("0::/docker/{}", &ID[..63]));
        expect_none(&format!("0::/docker/{}", ID.to_uppercase()));
        expect_none(&format!("0::/system.slice/docker-{ID}0.scope"));
        // Docker's systemd scopes always end in `.scope`.
        expect_none(&format!("0::/system.slice/docker-{ID}"));
        // A bare id outside docker and kubepods cgroups is not attributed.
        expect_none(&format!("0::/system.slice/{ID}"));
    }

    #[test]
    fn container_serializes_as_runtime_and_id() {
        let container = container("docker", ID);
        let json = serde_json::to_string(&container).expect("serialize container");
        assert_eq!(json, format!(r#"{{"runtime":"docker","id":"{ID}"}}"#));
        let back: Container = serde_json::from_str(&json).expect("deserialize container");
        assert_eq!(back, container);
    }
}
