//! Followers in another process than the writer: this process follows
//! (`JournalReader::follow`) while a child process appends durably and is
//! killed with SIGKILL and restarted; and `tidelog dump --follow` follows a
//! journal this process writes. Every record arrives once, in order, and
//! the follower continues across the writer's death and restart.
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::crash;
use futures::StreamExt;
use tidelog::testing::{skip, Capability};
use tidelog::{JournalOptions, JournalReader, Lsn, SubstrateChoice};

/// Records as (LSN, payload).
type Records = Vec<(u64, Vec<u8>)>;

/// Follows `dir` on a thread of its own until it has seen a record at or
/// past the LSN sent on the returned channel (or at once, for `None`);
/// returns every record seen.
fn follow_on_a_thread(dir: &std::path::Path) -> (mpsc::Sender<Option<u64>>, std::thread::JoinHandle<Records>) {
    let (target_tx, target_rx) = mpsc::channel::<Option<u64>>();
    let reader = JournalReader::open(dir).expect("a journal to follow");
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let mut follower = reader.follow(Lsn::ZERO);
            let mut got: Records = Vec::new();
            let mut target = None;
            loop {
                target = target.or_else(|| target_rx.try_recv().ok());
                if target.is_some_and(|t: Option<u64>| t.is_none_or(|t| got.last().is_some_and(|r| r.0 >= t))) {
                    return got;
                }
                match tokio::time::timeout(Duration::from_millis(200), follower.next()).await {
                    Ok(Some(Ok(rec))) => got.push((rec.lsn().as_u64(), rec.into_payload())),
                    Ok(Some(Err(e))) => panic!("the follower failed after {} records: {e}", got.len()),
                    Ok(None) => panic!("the follower ended"),
                    // Only the check of the target needs a turn; the
                    // parent's own timeout bounds the wait.
                    Err(_) => {}
                }
            }
        })
    });
    (target_tx, thread)
}

fn follow_a_writer_that_is_killed_and_restarted(substrate: &str, direct: bool) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let choice = if substrate == "io_uring" { SubstrateChoice::IoUring } else { SubstrateChoice::Blocking };
    let opts = JournalOptions::new().substrate(choice).direct_io(direct).segment_size(1 << 20);
    // The journal exists (a segment to follow) before the follower starts.
    match rt.block_on(tidelog::Journal::open(dir.path(), opts.clone())) {
        Ok(j) => rt.block_on(j.close()).expect("close"),
        Err(e @ tidelog::Error::Unsupported(_)) => {
            let cap = if direct { Capability::Direct } else { Capability::IoUring };
            skip(cap, &format!("follow ({substrate}, direct={direct})"), &e.to_string());
            return;
        }
        Err(e) => panic!("open: {e}"),
    }
    let (target, follower) = follow_on_a_thread(dir.path());
    let mut acked = Vec::new();
    for tag in 0..3u32 {
        acked.extend(crash::run_child(dir.path(), substrate, direct, tag, &[], 150 + 50 * tag as usize, || {}));
    }
    // The last child died without publishing its last rounds, perhaps:
    // the next open recovers and publishes the end.
    rt.block_on(async { common::reopen(dir.path(), &opts).await.close().await.expect("close") });
    let all = common::read_all(dir.path());
    target.send(Some(all.last().expect("records").0)).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = done_tx.send(follower.join());
    });
    let got = match done_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(joined) => joined.expect("the follower thread"),
        Err(_) => panic!("the follower did not reach the journal's end within 60 s"),
    };
    waiter.join().unwrap();
    // Exactly the journal's records, in order, each once.
    assert_eq!(got.len(), all.len(), "records followed vs in the journal");
    for (i, (g, a)) in got.iter().zip(&all).enumerate() {
        assert!(g == a, "record {i} differs: followed LSN {} vs journal LSN {}", g.0, a.0);
    }
    let followed: HashMap<u64, Vec<u8>> = got.into_iter().collect();
    let lost = crash::lost(&followed, &acked);
    assert!(lost.is_empty(), "acknowledged records the follower never saw: {lost:?}");
}

#[test]
fn follow_across_kill_9_io_uring_buffered() {
    follow_a_writer_that_is_killed_and_restarted("io_uring", false);
}

#[test]
fn follow_across_kill_9_blocking_buffered() {
    follow_a_writer_that_is_killed_and_restarted("blocking", false);
}

#[test]
fn follow_across_kill_9_io_uring_direct() {
    follow_a_writer_that_is_killed_and_restarted("io_uring", true);
}

#[test]
fn follow_across_kill_9_blocking_direct() {
    follow_a_writer_that_is_killed_and_restarted("blocking", true);
}

/// Kills the `dump --follow` child if the test panics first.
struct Reaper(std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn dump_follow_prints_records_as_they_become_durable() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let j = rt.block_on(tidelog::Journal::open(dir.path(), JournalOptions::new())).unwrap();
    let first = rt.block_on(j.append_durable_async(b"before the follower")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidelog"));
    cmd.args(["dump", "--follow", "--limit", "101"]).arg(dir.path());
    let child = {
        let _no_open = common::SPAWN.lock().unwrap_or_else(|p| p.into_inner());
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn dump --follow")
    };
    let mut child = Reaper(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let lines = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(next("the first record"), format!("0 {first} 19 before the follower"));
    let mut lsns = Vec::new();
    for i in 0..100u32 {
        let lsn = rt.block_on(j.append_durable_async(format!("durable {i}"))).unwrap();
        let line = next("a record made durable");
        let want_len = format!("durable {i}").len();
        assert!(line.ends_with(&format!(" {lsn} {want_len} durable {i}")), "{line:?} for LSN {lsn}");
        lsns.push(lsn);
    }
    // --limit 101: it exits by itself.
    let status = child.0.wait().unwrap();
    assert!(status.success(), "dump --follow exited with {status}");
    lines.join().unwrap();
    rt.block_on(j.close()).unwrap();
}

/// A follower reads a journal on an ext4 image while a child appends; the
/// child is frozen, the follower stopped, and the filesystem shut down
/// (`GOINGDOWN`, `NOLOGFLUSH`: what was not durable is lost, as in a power
/// cut). After remounting and recovery, every record the follower was given
/// is there: it was given only durable records. (The power-cut harness's
/// negative control shows that such a cut does lose records that were only
/// written.)
fn followed_records_survive_a_power_cut(substrate: &str) {
    let what = format!("a follower across a power cut ({substrate})");
    if let Err(why) = Capability::Ext4.present() {
        return skip(Capability::Ext4, &what, &why);
    }
    let mut disk = common::disk::Disk::new("ext4");
    let dir = disk.mnt.join("journal");
    let choice = if substrate == "io_uring" { SubstrateChoice::IoUring } else { SubstrateChoice::Blocking };
    let opts = JournalOptions::new().substrate(choice).segment_size(1 << 20);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    match rt.block_on(tidelog::Journal::open(&dir, opts.clone())) {
        Ok(j) => rt.block_on(j.close()).expect("close"),
        Err(e @ tidelog::Error::Unsupported(_)) => return skip(Capability::IoUring, &what, &e.to_string()),
        Err(e) => panic!("open: {e}"),
    }
    let mut followed = Vec::new();
    for cut in 0..2u32 {
        let (stop, follower) = follow_on_a_thread(&dir);
        let mut seen = None;
        crash::run_child(&dir, substrate, false, cut, &[], 200 + 150 * cut as usize, || {
            // The writer is frozen: stop following (the follower lets go of
            // the files and its watch), then cut.
            stop.send(None).unwrap();
            seen = Some(follower.join().expect("the follower thread"));
            disk.shut_down();
        });
        let seen = seen.expect("the cut ran");
        assert!(!seen.is_empty(), "the follower saw nothing before cut {cut}");
        followed.extend(seen);
        disk.unmount();
        disk.mount();
        rt.block_on(async { common::reopen(&dir, &opts).await.close().await.expect("close") });
        let records: HashMap<u64, Vec<u8>> = common::read_all(&dir).into_iter().collect();
        let lost: Vec<u64> =
            followed.iter().filter(|(lsn, payload)| records.get(lsn) != Some(payload)).map(|r| r.0).collect();
        assert!(lost.is_empty(), "cut {cut}: records the follower was given are gone: {lost:?}");
    }
    eprintln!("{what}: 2 cuts, {} followed records, 0 lost", followed.len());
}

#[test]
fn followed_records_survive_a_power_cut_io_uring() {
    followed_records_survive_a_power_cut("io_uring");
}

#[test]
fn followed_records_survive_a_power_cut_blocking() {
    followed_records_survive_a_power_cut("blocking");
}
