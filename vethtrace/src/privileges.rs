//! A check for the capabilities vethtrace needs, so that a non-root user
//! gets one clear line instead of a list of EPERM failures.

/// Capabilities from `<linux/capability.h>` that a snapshot needs, with
/// what each one is for.
const REQUIRED: &[(u32, &str)] = &[
    (21, "CAP_SYS_ADMIN"),
    (12, "CAP_NET_ADMIN"),
    (19, "CAP_SYS_PTRACE"),
    (2, "CAP_DAC_READ_SEARCH"),
];

/// Returns the names of the required capabilities the process lacks, read
/// from `CapEff` in /proc/self/status. An unreadable status file yields an
/// empty list, so the real syscalls report the problem instead.
pub fn missing_capabilities() -> Vec<&'static str> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Vec::new();
    };
    let Some(effective) = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
    else {
        return Vec::new();
    };
    REQUIRED
        .iter()
        .filter(|(bit, _)| effective & (1 << bit) == 0)
        .map(|(_, name)| *name)
        .collect()
}
