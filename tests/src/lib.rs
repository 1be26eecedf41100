//! podtrail-tests: the synthetic history generator, helpers shared by the
//! end-to-end tests and the benchmark binary.

pub mod containerd;
pub mod fixture;
pub mod kmock;
pub mod lake;
pub mod privileged;
pub mod synth;

use std::path::PathBuf;
use std::process::{Command, Output};

/// Path of a workspace binary built in the same profile as the running test or
/// bench (`target/<profile>/<name>`). Fails with what to run when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(p.exists(), "{} not built: run `cargo build --release --workspace` first (the test suite drives the real binaries)", p.display());
    p
}

/// Run a podtrail binary; returns its output whatever the exit status.
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name)).args(args).env_remove("PODTRAIL_DATA_DIR").output().unwrap_or_else(|e| panic!("running {name}: {e}"))
}

/// Run and require success; returns stdout.
pub fn run_ok(name: &str, args: &[&str]) -> String {
    let out = run(name, args);
    assert!(
        out.status.success(),
        "{name} {args:?} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// `podtrail sql ... --format json` parsed.
pub fn sql_json(data_dir: &std::path::Path, query: &str) -> Vec<serde_json::Value> {
    let out = run_ok("podtrail", &["--data-dir", data_dir.to_str().expect("utf-8 path"), "sql", "--format", "json", "--", query]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("podtrail output for {query:?} is not JSON ({e}): {out}"))
}

/// A single integer from a one-row, one-column query.
pub fn sql_count(data_dir: &std::path::Path, query: &str) -> u64 {
    let rows = sql_json(data_dir, query);
    assert_eq!(rows.len(), 1, "{query} returned {rows:?}");
    let obj = rows[0].as_object().expect("object row");
    assert_eq!(obj.len(), 1, "{query} returned {rows:?}");
    obj.values().next().and_then(|v| v.as_u64()).unwrap_or_else(|| panic!("{query} returned {rows:?}"))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// YAML text parsed the way Kubernetes client tooling parses manifests
/// (PyYAML, installed by tests/setup.sh), as JSON.
pub fn yaml_to_json(yaml: &str) -> serde_json::Value {
    use std::io::Write;
    let parsed = Command::new("python3")
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("piped").write_all(yaml.as_bytes())?;
            c.wait_with_output()
        })
        .expect("python3 with PyYAML (tests/setup.sh installs it)");
    assert!(parsed.status.success(), "not YAML: {}\n{yaml}", String::from_utf8_lossy(&parsed.stderr));
    serde_json::from_slice(&parsed.stdout).expect("json.dumps output")
}
