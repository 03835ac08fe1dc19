//! Builds the eBPF programs in `vethtrace-ebpf` with the nightly toolchain and
//! bpf-linker, so that the user-space binary can embed the object file.

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = format!("{manifest_dir}/../vethtrace-ebpf");
    let common_dir = format!("{manifest_dir}/../vethtrace-common");
    println!("cargo:rerun-if-changed={common_dir}");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "vethtrace-ebpf",
            root_dir: &ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
