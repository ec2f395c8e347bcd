//! Examples must not rot: each runs as a test (small sizes), and what it
//! prints is checked.

/// Runs `cargo run --example NAME -- ARGS`, failing loudly on a non-zero
/// exit; returns its standard output.
fn run_example(name: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--example", name, "--"])
        .args(args)
        .output()
        .expect("cargo run");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "example {name} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn quickstart_runs() {
    let out = run_example("quickstart", &[]);
    assert!(out.contains("hello") && out.contains("world"), "{out}");
}

#[test]
fn tail_follow_sees_every_record_and_resumes() {
    let out = run_example("tail_follow", &["--records", "2000"]);
    assert!(out.contains("followed 2000 events"), "{out}");
    assert!(out.contains("events 1000..2000 delivered again"), "{out}");
}

#[test]
fn kv_store_keeps_every_acknowledged_write_across_kills() {
    let out = run_example("kv_store", &["--rounds", "2", "--acks", "2500"]);
    let verdicts: Vec<&str> = out.lines().filter(|l| l.contains("SIGKILL after")).collect();
    assert_eq!(verdicts.len(), 2, "{out}");
    assert!(verdicts.iter().all(|l| l.contains("every acknowledged write present")), "{out}");
    // The second round recovered from a snapshot (one is taken every 2000
    // writes) and replayed only the journal after it.
    assert!(
        out.lines().any(|l| l.starts_with("round 2: child recovered") && !l.contains("snapshot at LSN 0")),
        "{out}"
    );
}

#[test]
fn durable_service_acknowledges_only_what_survives_a_restart() {
    let out = run_example("durable_service", &["--seconds", "0.5", "--connections", "8"]);
    assert!(out.contains("group commit") && out.contains("one sync per request"), "{out}");
    let restarted = out.lines().find(|l| l.starts_with("restarted:")).unwrap_or_else(|| panic!("{out}"));
    assert!(restarted.contains(" 0 of "), "{out}");
}
