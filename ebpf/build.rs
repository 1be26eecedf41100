//! Compile every `src/*.bpf.c` with clang (CO-RE, `-target bpf`) into OUT_DIR.
//! When clang or the libbpf headers are missing, the error says what to install.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok(other) => panic!("podtrail-ebpf: no vmlinux.h for target arch {other}; generate ebpf/include/{other}/vmlinux.h with `bpftool btf dump file /sys/kernel/btf/vmlinux format c`"),
        Err(_) => panic!("CARGO_CFG_TARGET_ARCH unset"),
    };
    let clang = std::env::var("PODTRAIL_CLANG").ok().or_else(|| ["clang-19", "clang"].iter().find(|c| which(c)).map(|c| c.to_string()));
    let Some(clang) = clang else {
        panic!("podtrail-ebpf: clang not found. Install it: `apt-get install clang-19 libbpf-dev` (or run tests/setup.sh)");
    };
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        panic!("podtrail-ebpf: libbpf headers not found (/usr/include/bpf/bpf_helpers.h). Install them: `apt-get install libbpf-dev` (or run tests/setup.sh)");
    }
    let include = manifest.join("include");
    println!("cargo:rerun-if-changed={}", include.join("events.h").display());
    println!("cargo:rerun-if-changed={}", include.join("common.h").display());
    println!("cargo:rerun-if-changed={}", include.join("x86_64/vmlinux.h").display());
    println!("cargo:rerun-if-env-changed=PODTRAIL_CLANG");
    for entry in std::fs::read_dir(manifest.join("src")).expect("ebpf/src") {
        let src = entry.expect("dir entry").path();
        let name = src.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.ends_with(".bpf.c") {
            continue;
        }
        println!("cargo:rerun-if-changed={}", src.display());
        let obj = out.join(name.replace(".bpf.c", ".bpf.o"));
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
            .arg(format!("-D__TARGET_ARCH_{arch}"))
            .arg("-I")
            .arg(&include)
            .arg("-I")
            .arg(include.join("x86_64"))
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .status()
            .unwrap_or_else(|e| panic!("podtrail-ebpf: running {clang}: {e}"));
        assert!(status.success(), "podtrail-ebpf: {clang} failed to compile {}", src.display());
    }
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}
