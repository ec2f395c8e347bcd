//! The `tidelog` command on real journals made here: exit codes and the key
//! lines of `verify`, `inspect`, `dump`, `repair`, and a tiny `bench` run
//! whose JSON parses.

use std::path::Path;
use std::process::{Command, Output};

use tidelog::{Journal, JournalOptions};

/// Serialises this process's journals with its children: a child holds a
/// copy of our descriptors (a journal's lock among them) from its fork
/// until just after its exec, and a journal opened meanwhile would find its
/// directory locked.
static CHILDREN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn tidelog(args: &[&str]) -> Output {
    let _no_open = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    Command::new(env!("CARGO_BIN_EXE_tidelog")).args(args).output().expect("run tidelog")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A closed journal with `n` records "record i", over 1 MiB segments.
fn journal(dir: &Path, n: usize) -> Vec<u64> {
    let _no_child = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let j = Journal::open(dir, JournalOptions::new().segment_size(1 << 20)).await.unwrap();
        let mut lsns = Vec::new();
        for i in 0..n {
            let payload = format!("record {i} {}", "x".repeat(i % 7 * 3000));
            lsns.push(j.append_async(payload).await.unwrap().as_u64());
        }
        j.close().await.unwrap();
        lsns
    })
}

fn last_segment(dir: &Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tlog"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

/// Appends garbage after the last record: a torn tail.
fn tear(dir: &Path, end: u64) {
    use std::os::unix::fs::FileExt;
    let seg = last_segment(dir);
    let base: u64 = seg.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    file.write_all_at(&[0x5A; 100], 4096 + end - base).unwrap();
}

#[test]
fn verify_exit_codes_clean_torn_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let lsns = journal(dir.path(), 400);
    let d = dir.path().to_str().unwrap();
    let out = tidelog(&["verify", d]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("400 records") && stdout(&out).contains("clean"), "{}", stdout(&out));
    tear(dir.path(), *lsns.last().unwrap());
    let out = tidelog(&["verify", d]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("torn tail: 100 bytes"), "{}", stdout(&out));
    // Damage inside the first (sealed) segment: corruption, exit 2.
    let first = dir.path().join(format!("{:020}.tlog", 0));
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[4096 + 40] ^= 0xFF;
    std::fs::write(&first, bytes).unwrap();
    let out = tidelog(&["verify", d]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stdout(&out).contains("corrupt:") && stdout(&out).contains("00000000000000000000.tlog"));
}

#[test]
fn inspect_lists_segments_and_the_lock_holder() {
    let dir = tempfile::tempdir().unwrap();
    journal(dir.path(), 600);
    let d = dir.path().to_str().unwrap();
    let out = tidelog(&["inspect", d]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("lock: free"), "{text}");
    assert!(text.contains(" 600 records"), "{text}");
    assert!(text.contains("00000000000000000000.tlog"), "{text}");
    // Held by a live journal (this process): inspect still reads, and says who.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let j = {
        let _no_child = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
        rt.block_on(Journal::open(dir.path(), JournalOptions::new().segment_size(1 << 20))).unwrap()
    };
    let out = tidelog(&["inspect", d]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains(&format!("held by process {}", std::process::id())), "{}", stdout(&out));
    rt.block_on(j.close()).unwrap();
}

#[test]
fn commands_on_a_path_that_is_not_a_journal_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, b"hello").unwrap();
    for cmd in ["verify", "inspect", "dump", "repair"] {
        for path in [dir.path(), file.as_path()] {
            let out = tidelog(&[cmd, path.to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(2), "{cmd} {}", path.display());
            let err = stderr(&out);
            assert!(err.starts_with(&format!("tidelog {cmd}: ")) && !err.contains("panicked"), "{cmd}: {err}");
            assert!(err.contains(path.to_str().unwrap()), "{cmd}: names the path: {err}");
        }
    }
}

#[test]
fn dump_prints_records_in_each_format() {
    let dir = tempfile::tempdir().unwrap();
    let lsns = journal(dir.path(), 20);
    let d = dir.path().to_str().unwrap();
    let out = tidelog(&["dump", d, "--limit", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], format!("0 {} 9 record 0 ", lsns[0]));
    // --from a record's start: the LSN dump printed for the one before.
    let out = tidelog(&["dump", d, "--from", &lsns[9].to_string(), "--limit", "1", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    assert_eq!(v["start"], lsns[9]);
    assert_eq!(v["lsn"], lsns[10]);
    let payload = format!("record 10 {}", "x".repeat(10 % 7 * 3000));
    let hex: String = payload.bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(v["payload_hex"], hex);
    let out = tidelog(&["dump", d, "--format", "hex"]);
    assert_eq!(stdout(&out).lines().count(), 20);
    assert!(stdout(&out).lines().next().unwrap().ends_with(" 9 7265636f7264203020"), "hex of \"record 0 \"");
}

#[test]
fn dump_inspect_and_verify_read_compressed_records() {
    let dir = tempfile::tempdir().unwrap();
    let payloads: Vec<String> = (0..30).map(|i| format!("record {i} {}", "x".repeat(i % 7 * 3000))).collect();
    let lsns = {
        let _no_child = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let opts = JournalOptions::new().segment_size(1 << 20).compression(tidelog::Compression::Lz4);
            let j = Journal::open(dir.path(), opts).await.unwrap();
            let mut lsns = Vec::new();
            for p in &payloads {
                lsns.push(j.append_async(p).await.unwrap().as_u64());
            }
            assert!(j.stats().compressed_records >= 25, "{:?}", j.stats());
            j.close().await.unwrap();
            lsns
        })
    };
    let d = dir.path().to_str().unwrap();
    let out = tidelog(&["dump", d, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> =
        stdout(&out).lines().map(|l| serde_json::from_str(l).expect("a JSON object")).collect();
    assert_eq!(lines.len(), payloads.len());
    for ((v, p), lsn) in lines.iter().zip(&payloads).zip(&lsns) {
        let hex: String = p.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!((&v["lsn"], &v["len"], &v["payload_hex"]), (&(*lsn).into(), &p.len().into(), &hex.into()));
    }
    let out = tidelog(&["inspect", d]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(" 30 records"), "{}", stdout(&out));
    let out = tidelog(&["verify", d]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("30 records"), "{}", stdout(&out));
}

#[test]
fn a_tiny_compression_bench_prints_its_four_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = tidelog(&[
        "bench",
        "--compress",
        "--dir",
        d,
        "--duration",
        "0.05",
        "--rounds",
        "1",
        "--tasks",
        "2",
        "--substrate",
        "blocking",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split_whitespace().collect()).take(4).collect();
    let keys: Vec<(&str, &str)> = rows.iter().map(|r| (r[0], r[2])).collect();
    assert_eq!(keys, [("json", "none"), ("json", "lz4"), ("random", "none"), ("random", "lz4")], "{text}");
    // The log bytes per record: JSON-like text takes well under half with
    // lz4; random records are stored plain.
    let log = |i: usize| rows[i][5].parse::<f64>().unwrap();
    assert!(log(1) * 2.0 < log(0), "{text}");
    assert_eq!(log(3), log(2), "{text}");
}

#[test]
fn repair_dry_run_changes_nothing_and_repair_cuts_with_a_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let lsns = journal(dir.path(), 50);
    let d = dir.path().to_str().unwrap();
    let out = tidelog(&["repair", d]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("nothing to repair"), "{}", stdout(&out));
    tear(dir.path(), *lsns.last().unwrap());
    let before = std::fs::read(last_segment(dir.path())).unwrap();
    let out = tidelog(&["repair", d, "--dry-run"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("100 bytes") && stdout(&out).contains("dry run"), "{}", stdout(&out));
    assert_eq!(std::fs::read(last_segment(dir.path())).unwrap(), before, "a dry run changes nothing");
    let out = tidelog(&["repair", d]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("cut 100 bytes"), "{}", stdout(&out));
    let sidecar = dir.path().join(format!(
        "{}.corrupt-{}",
        last_segment(dir.path()).file_name().unwrap().to_str().unwrap(),
        lsns.last().unwrap()
    ));
    assert_eq!(std::fs::read(sidecar).unwrap(), vec![0x5A; 100]);
    assert_eq!(tidelog(&["verify", d]).status.code(), Some(0));
}

#[test]
fn a_tiny_bench_prints_a_table_and_valid_json() {
    use tidelog::testing::{skip, Capability};
    for cap in [Capability::IoUring, Capability::Direct] {
        if let Err(why) = cap.present() {
            return skip(cap, "the bench smoke run (both substrates, direct I/O)", &why);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let svg = dir.path().join("bench.svg");
    let work = dir.path().join("work");
    let out = tidelog(&[
        "bench",
        "--quick",
        "--duration",
        "0.2",
        "--tasks",
        "1,4",
        "--substrate",
        "blocking,io_uring",
        "--direct",
        "--dir",
        work.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = stdout(&out);
    let mut rows =
        vec!["raw pwrite+fdatasync", "raw O_DIRECT pwrite", "tokio::fs write+sync_data", "tidelog Blocking direct"];
    if cfg!(target_os = "linux") {
        rows.push("tokio-uring write+sync_data");
    }
    for row in rows {
        assert!(table.contains(row), "{row} missing from\n{table}");
    }
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cells = doc["cells"].as_array().unwrap();
    assert!(cells.iter().any(|c| c["system"] == "tidelog Blocking direct" && c["tasks"] == 4));
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("tidelog Blocking direct, durable, 128 B"), "{chart}");
    assert!(!stderr(&out).contains('\u{1b}'), "no progress bar drawn when stderr is not a terminal");
    // Every row measured something: a cell counts each task's op in flight
    // at its end, so even one a disk stall swallowed has samples.
    for c in cells {
        let (rate, samples) = (c["ops_per_sec"].as_f64().unwrap(), c["samples"].as_u64().unwrap());
        assert!(samples > 0 && rate > 0.0, "{c}");
    }
    // Both substrates, buffered and direct, at both task counts.
    for system in ["tidelog Blocking", "tidelog IoUring", "tidelog Blocking direct", "tidelog IoUring direct"] {
        for tasks in [1, 4] {
            assert!(
                cells.iter().any(|c| c["system"] == system && c["tasks"] == tasks),
                "no {system} row at {tasks} tasks"
            );
        }
    }
}

/// `--io` and `--preallocate` lists give a row per variant and
/// preallocation, and the table and JSON say what Auto picks for each.
#[test]
fn bench_rows_per_io_variant_and_preallocation_with_autos_pick() {
    use tidelog::testing::{skip, Capability};
    if let Err(why) = Capability::Direct.present() {
        return skip(Capability::Direct, "the bench's direct+dsync rows", &why);
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let work = dir.path().join("work");
    let out = tidelog(&[
        "bench",
        "--quick",
        "--duration",
        "0.1",
        "--tasks",
        "2",
        "--substrate",
        "blocking",
        "--io",
        "buffered,direct+dsync",
        "--preallocate",
        "fallocate,zero",
        "--dir",
        work.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = stdout(&out);
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cells = doc["cells"].as_array().unwrap();
    for system in [
        "tidelog Blocking",
        "tidelog Blocking zero",
        "tidelog Blocking direct+dsync",
        "tidelog Blocking direct+dsync zero",
    ] {
        assert!(cells.iter().any(|c| c["system"] == system && c["samples"].as_u64() > Some(0)), "no {system} row");
    }
    let picks = doc["auto"].as_array().unwrap();
    let variants: Vec<&str> = picks.iter().map(|p| p["variant"].as_str().unwrap()).collect();
    assert_eq!(variants, ["buffered", "buffered zero", "direct+dsync", "direct+dsync zero"], "{picks:?}");
    for p in picks {
        let reason = p["reason"].as_str().unwrap_or_else(|| panic!("no pick: {p}"));
        assert!(reason.starts_with("Auto: "), "{p}");
        let line = format!(
            "Auto picks {} for {} here: {reason}",
            p["substrate"].as_str().unwrap(),
            p["variant"].as_str().unwrap()
        );
        assert!(table.contains(&line), "{line:?} missing from\n{table}");
    }
}

/// A substrate asked for by name that cannot run is an error, not a row
/// quietly left out.
#[test]
fn bench_fails_when_a_substrate_asked_for_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = tidelog(&[
        "bench",
        "--quick",
        "--duration",
        "0.1",
        "--substrate",
        "io_uring",
        "--dir",
        dir.path().join("w").to_str().unwrap(),
    ]);
    match tidelog::testing::Capability::IoUring.present() {
        Ok(()) => assert_eq!(out.status.code(), Some(0), "{}", stderr(&out)),
        Err(_) => {
            assert_ne!(out.status.code(), Some(0), "io_uring is missing and the bench said nothing");
            assert!(stderr(&out).contains("cannot run here"), "{}", stderr(&out));
        }
    }
    let out = tidelog(&["bench", "--quick", "--duration", "0.1", "--substrate", "carrier-pigeon"]);
    assert_ne!(out.status.code(), Some(0));
}
