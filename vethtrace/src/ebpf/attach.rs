//! Chooses, per hook, which kernel function and which program variant to
//! attach, and attaches it.
//!
//! A hook is one kernel event vethtrace traces (see [`Hook`]); each has one
//! or more candidate functions, because kernels rename and re-sign them. For
//! each hook the first candidate that the kernel's BTF lists is traced:
//! through fentry/fexit when the programs load and attach (BPF trampolines,
//! Linux 5.5+, need ftrace), else through kprobe/kretprobe when the kernel has
//! kprobes, else the hook is unavailable. Every failed attempt is kept, with
//! the program, the call and the errno, so that `vethtrace status` and the
//! error from `Tracer::start` report exactly what the kernel rejected.

use std::{
    fmt::{self, Write as _},
    io,
    path::Path,
};

use aya::{
    Ebpf,
    programs::{FEntry, FExit, KProbe, ProgramError, kprobe::KProbeError},
};
use serde::Serialize;

use super::btf::KernelBtf;

/// Files that exist when the kernel can attach kprobes: the kprobe PMU
/// (4.17+, which aya tries first) or the tracefs control file.
const KPROBE_INTERFACES: [&str; 3] = [
    "/sys/bus/event_source/devices/kprobe/type",
    "/sys/kernel/tracing/kprobe_events",
    "/sys/kernel/debug/tracing/kprobe_events",
];

/// One kernel event vethtrace traces; the kernel side has one source file
/// per hook, named for [`Hook::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// A device enters a netns (`list_netdevice`).
    ListNetdevice,
    /// A device leaves a netns (`unlist_netdevice`).
    UnlistNetdevice,
    /// A veth pair is tied (`rtnl_configure_link`).
    RtnlConfigureLink,
    /// A device moves to another netns (`__dev_change_net_namespace`).
    DevChangeNetNamespace,
    /// A device is renamed (`netif_change_name` or `dev_change_name`).
    DevChangeName,
}

impl Hook {
    /// Every hook, in the order they are attached.
    pub const ALL: [Self; 5] = [
        Self::ListNetdevice,
        Self::UnlistNetdevice,
        Self::RtnlConfigureLink,
        Self::DevChangeNetNamespace,
        Self::DevChangeName,
    ];

    /// The hook's name: its main kernel function.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ListNetdevice => "list_netdevice",
            Self::UnlistNetdevice => "unlist_netdevice",
            Self::RtnlConfigureLink => "rtnl_configure_link",
            Self::DevChangeNetNamespace => "__dev_change_net_namespace",
            Self::DevChangeName => "dev_change_name",
        }
    }

    /// Kernel functions that implement the hook, preferred first.
    const fn functions(self) -> &'static [&'static str] {
        match self {
            Self::ListNetdevice => &["list_netdevice"],
            Self::UnlistNetdevice => &["unlist_netdevice"],
            Self::RtnlConfigureLink => &["rtnl_configure_link"],
            // 5.10 has only dev_change_net_namespace (3 arguments); later
            // kernels do the work in __dev_change_net_namespace, which the
            // other name wraps where it still exists.
            Self::DevChangeNetNamespace => {
                &["__dev_change_net_namespace", "dev_change_net_namespace"]
            }
            // Where netif_change_name exists (6.18, not 6.12), dev_change_name
            // is a wrapper that calls it, so tracing netif_change_name sees
            // every rename once and tracing both would see renames twice.
            Self::DevChangeName => &["netif_change_name", "dev_change_name"],
        }
    }

    /// Returns the programs that trace the hook's function, which takes
    /// `arity` arguments, with `kind`.
    fn programs(self, kind: AttachKind, arity: usize) -> &'static [Program] {
        use ProgramKind::{Fentry, Fexit, Kprobe, Kretprobe};
        match (self, kind) {
            (Self::ListNetdevice, AttachKind::Fentry) => {
                &[Program("list_netdevice_fentry", Fentry)]
            }
            (Self::ListNetdevice, AttachKind::Kprobe) => {
                &[Program("list_netdevice_kprobe", Kprobe)]
            }
            (Self::UnlistNetdevice, AttachKind::Fentry) => {
                &[Program("unlist_netdevice_fentry", Fentry)]
            }
            (Self::UnlistNetdevice, AttachKind::Kprobe) => {
                &[Program("unlist_netdevice_kprobe", Kprobe)]
            }
            (Self::RtnlConfigureLink, AttachKind::Fentry) => {
                &[Program("rtnl_configure_link_fentry", Fentry)]
            }
            (Self::RtnlConfigureLink, AttachKind::Kprobe) => {
                &[Program("rtnl_configure_link_kprobe", Kprobe)]
            }
            // A tracing program may only read the context slots its target
            // has, so the move has one fentry and one fexit program per arity.
            (Self::DevChangeNetNamespace, AttachKind::Fentry) => match arity {
                3 => &[
                    Program("dev_change_net_namespace_fentry3", Fentry),
                    Program("dev_change_net_namespace_fexit3", Fexit),
                ],
                4 => &[
                    Program("dev_change_net_namespace_fentry4", Fentry),
                    Program("dev_change_net_namespace_fexit4", Fexit),
                ],
                _ => &[
                    Program("dev_change_net_namespace_fentry4", Fentry),
                    Program("dev_change_net_namespace_fexit5", Fexit),
                ],
            },
            (Self::DevChangeNetNamespace, AttachKind::Kprobe) => match arity {
                3 => &[
                    Program("dev_change_net_namespace_kprobe3", Kprobe),
                    Program("dev_change_net_namespace_kretprobe", Kretprobe),
                ],
                _ => &[
                    Program("dev_change_net_namespace_kprobe4", Kprobe),
                    Program("dev_change_net_namespace_kretprobe", Kretprobe),
                ],
            },
            (Self::DevChangeName, AttachKind::Fentry) => &[
                Program("dev_change_name_fentry", Fentry),
                Program("dev_change_name_fexit", Fexit),
            ],
            (Self::DevChangeName, AttachKind::Kprobe) => &[
                Program("dev_change_name_kprobe", Kprobe),
                Program("dev_change_name_kretprobe", Kretprobe),
            ],
        }
    }

    /// Arities the eBPF programs were written for, per hook. Another arity
    /// means the kernel changed the function in a way not yet checked.
    const fn supports_arity(self, arity: usize) -> bool {
        match self {
            Self::ListNetdevice | Self::UnlistNetdevice => arity >= 1,
            Self::RtnlConfigureLink => arity >= 1,
            Self::DevChangeNetNamespace => matches!(arity, 3..=5),
            Self::DevChangeName => arity == 2,
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The mechanism a hook's programs attach with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachKind {
    /// fentry and fexit: BPF trampolines (Linux 5.5+), typed arguments, no
    /// per-call state for the return.
    Fentry,
    /// kprobe and kretprobe: any kernel with kprobes; the return program
    /// finds its call's arguments in a per-thread map.
    Kprobe,
}

impl fmt::Display for AttachKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
        })
    }
}

/// The attach point of a hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttachPoint {
    /// The kernel function traced.
    pub function: String,
    /// How.
    pub kind: AttachKind,
    /// The programs attached, by their name in the eBPF object.
    pub programs: Vec<&'static str>,
}

/// The outcome for one hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HookStatus {
    /// The hook.
    pub hook: Hook,
    /// The attach point, or `None` when no attempt succeeded.
    pub attached: Option<AttachPoint>,
    /// Every attempt that failed, in order, as "program: step (call):
    /// errno" (such as "list_netdevice_fentry: load (bpf_prog_load): EPERM:
    /// Operation not permitted"), or "kind: reason" and plain reasons for
    /// problems found before loading. When `attached` is `None`, these are
    /// the reasons.
    pub problems: Vec<String>,
}

impl fmt::Display for HookStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.attached {
            Some(point) => write!(f, "{}: {} {}", self.hook, point.kind, point.function)?,
            None => write!(f, "{}: unavailable", self.hook)?,
        }
        if !self.problems.is_empty() {
            write!(f, " ({})", self.problems.join("; "))?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProgramKind {
    Fentry,
    Fexit,
    Kprobe,
    Kretprobe,
}

/// One program of the eBPF object: its name there and its type.
#[derive(Clone, Copy, Debug)]
struct Program(&'static str, ProgramKind);

impl Program {
    const fn name(self) -> &'static str {
        self.0
    }

    const fn kind(self) -> ProgramKind {
        self.1
    }
}

/// Checks whether this kernel can attach kprobes (CONFIG_KPROBE_EVENTS).
pub fn kprobes_available() -> bool {
    KPROBE_INTERFACES
        .iter()
        .any(|path| Path::new(path).exists())
}

/// The inputs of the per-hook choice.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan<'a> {
    /// The kernel's BTF, for the functions and their arities.
    pub btf: &'a KernelBtf,
    /// aya's view of vmlinux BTF, which fentry programs load against.
    pub aya_btf: &'a aya::Btf,
    /// Whether kprobes may be tried.
    pub kprobes: bool,
    /// Try only this kind (for tests of both variants on one kernel).
    pub only: Option<AttachKind>,
}

/// Attaches every hook it can and reports each; the links live as long as
/// `ebpf`.
pub(crate) fn attach_all(ebpf: &mut Ebpf, plan: &Plan<'_>) -> Vec<HookStatus> {
    Hook::ALL
        .iter()
        .map(|&hook| attach_hook(ebpf, plan, hook))
        .collect()
}

fn attach_hook(ebpf: &mut Ebpf, plan: &Plan<'_>, hook: Hook) -> HookStatus {
    let mut status = HookStatus {
        hook,
        attached: None,
        problems: Vec::new(),
    };
    let Some((function, arity)) = hook
        .functions()
        .iter()
        .find_map(|&name| plan.btf.function_arity(name).map(|arity| (name, arity)))
    else {
        status.problems.push(format!(
            "none of {} in kernel btf",
            hook.functions().join(", ")
        ));
        return status;
    };
    if !hook.supports_arity(arity) {
        status.problems.push(format!(
            "{function} takes {arity} arguments in kernel btf, which the programs were not written for"
        ));
        return status;
    }
    for kind in [AttachKind::Fentry, AttachKind::Kprobe] {
        if plan.only.is_some_and(|only| only != kind) {
            continue;
        }
        if kind == AttachKind::Kprobe && !plan.kprobes {
            status.problems.push(
                "kprobe: this kernel has no kprobes (no kprobe PMU, no kprobe_events)".to_owned(),
            );
            continue;
        }
        let programs = hook.programs(kind, arity);
        match attach_programs(ebpf, plan.aya_btf, function, programs) {
            Ok(()) => {
                status.attached = Some(AttachPoint {
                    function: function.to_owned(),
                    kind,
                    programs: programs.iter().map(|program| program.name()).collect(),
                });
                break;
            }
            Err((program, reason)) => status.problems.push(format!("{program}: {reason}")),
        }
    }
    status
}

/// Loads and attaches `programs` to `function`, all or none: on a failure the
/// programs already loaded are unloaded again, which detaches them. The error
/// names the failed program and describes the failed step.
fn attach_programs(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    function: &str,
    programs: &[Program],
) -> Result<(), (&'static str, String)> {
    for (index, program) in programs.iter().enumerate() {
        if let Err(reason) = attach_program(ebpf, btf, function, *program) {
            for loaded in &programs[..=index] {
                unload(ebpf, loaded.name());
            }
            return Err((program.name(), reason));
        }
    }
    Ok(())
}

fn attach_program(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    function: &str,
    program: Program,
) -> Result<(), String> {
    let name = program.name();
    let Some(object) = ebpf.program_mut(name) else {
        return Err("missing from the ebpf object".to_owned());
    };
    let step = |step: &str, result: Result<(), ProgramError>| {
        result.map_err(|error| describe(name, step, &error))
    };
    match program.kind() {
        ProgramKind::Fentry => {
            let fentry: &mut FEntry = object.try_into().map_err(|e| describe(name, "type", &e))?;
            step("load", fentry.load(function, btf))?;
            step("attach", fentry.attach().map(drop))
        }
        ProgramKind::Fexit => {
            let fexit: &mut FExit = object.try_into().map_err(|e| describe(name, "type", &e))?;
            step("load", fexit.load(function, btf))?;
            step("attach", fexit.attach().map(drop))
        }
        ProgramKind::Kprobe | ProgramKind::Kretprobe => {
            let kprobe: &mut KProbe = object.try_into().map_err(|e| describe(name, "type", &e))?;
            step("load", kprobe.load())?;
            step("attach", kprobe.attach(function, 0).map(drop))
        }
    }
}

/// Unloads `name` if loaded; unloading also detaches its links.
fn unload(ebpf: &mut Ebpf, name: &str) {
    let Some(object) = ebpf.program_mut(name) else {
        return;
    };
    let result = match object {
        aya::programs::Program::FEntry(program) => program.unload(),
        aya::programs::Program::FExit(program) => program.unload(),
        aya::programs::Program::KProbe(program) => program.unload(),
        _ => Ok(()),
    };
    // NotLoaded is the expected error for the program that failed to load.
    if let Err(error) = result
        && !matches!(error, ProgramError::NotLoaded)
    {
        log::debug!("unloading {name}: {error}");
    }
}

/// Describes a failed step as "step (call): errno", the form the caller's
/// one-line notice shows. The verifier log, if any, goes to the debug log.
fn describe(program: &str, step: &str, error: &ProgramError) -> String {
    let call = match error {
        ProgramError::LoadError { verifier_log, .. } => {
            log::debug!("{program}: verifier log:\n{verifier_log}");
            Some("bpf_prog_load")
        }
        ProgramError::SyscallError(error) => Some(error.call),
        ProgramError::KProbeError(KProbeError::FileError { .. }) => Some("kprobe_events"),
        _ => None,
    };
    let mut text = step.to_owned();
    if let Some(call) = call {
        let _ = write!(text, " ({call})");
    }
    match errno_of(error) {
        Some(errno) => {
            let _ = write!(text, ": {}", nix::errno::Errno::from_raw(errno));
        }
        None => {
            let _ = write!(text, ": {error}");
        }
    }
    text
}

/// Finds the errno in `error`'s source chain, if any.
fn errno_of(error: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(code) = error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            return Some(code);
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hook_has_programs_for_each_supported_arity() {
        for hook in Hook::ALL {
            for arity in 1..=6 {
                if !hook.supports_arity(arity) {
                    continue;
                }
                for kind in [AttachKind::Fentry, AttachKind::Kprobe] {
                    let programs = hook.programs(kind, arity);
                    assert!(!programs.is_empty(), "{hook} {kind} {arity}");
                    for program in programs {
                        assert!(program.name().len() <= 40, "{}", program.name());
                    }
                }
            }
        }
    }

    #[test]
    fn errno_is_found_under_aya_errors() {
        let error = ProgramError::SyscallError(aya::sys::SyscallError {
            call: "bpf_link_create",
            io_error: io::Error::from_raw_os_error(libc::EPERM),
        });
        assert_eq!(errno_of(&error), Some(libc::EPERM));
        assert_eq!(
            describe("list_netdevice_fentry", "attach", &error),
            "attach (bpf_link_create): EPERM: Operation not permitted"
        );
    }
}
