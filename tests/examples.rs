//! Examples must not rot: each runs as a test.

#[test]
fn quickstart_runs() {
    let status = std::process::Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--example", "quickstart"])
        .status()
        .expect("cargo run");
    assert!(status.success());
}
