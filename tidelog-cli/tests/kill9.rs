//! Process death: a child appends durable records from four tasks and prints
//! each acknowledgement; after a varying number of them it is killed with
//! SIGKILL wherever it is (no point — a write, a sync, a rollover — is
//! arranged; 1 MiB segments make rollovers frequent), and the journal is
//! reopened and checked: every acknowledged record is there, intact, at its
//! LSN; reopening is idempotent; the next child appends after it.
//! `TIDELOG_KILL_CYCLES` (default 3) sets the kills per configuration.
//!
//! This tests process death, not power loss: the kernel keeps what the dead
//! process wrote. Power cuts are the reliability harness's job.
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashMap;

use common::crash;
use tidelog::testing::{skip, Capability};
use tidelog::{Journal, JournalOptions, SubstrateChoice};

fn kill_9_cycles(substrate: &str, direct: bool) {
    kill_9_cycles_of(substrate, direct, false);
}

/// `large`: the child appends records of about 270 KB handed over as
/// `Vec`s (`--large`), so writes are large, two in flight, and owned
/// payloads go uncopied.
fn kill_9_cycles_of(substrate: &str, direct: bool, large: bool) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let choice = if substrate == "io_uring" { SubstrateChoice::IoUring } else { SubstrateChoice::Blocking };
    let opts = JournalOptions::new().substrate(choice).direct_io(direct).segment_size(1 << 20);
    match rt.block_on(Journal::open(dir.path().join("probe"), opts.clone())) {
        Ok(probe) => rt.block_on(probe.close()).expect("close the probe journal"),
        Err(e @ tidelog::Error::Unsupported(_)) => {
            let cap = if direct { Capability::Direct } else { Capability::IoUring };
            skip(cap, &format!("kill -9 ({substrate}, direct={direct})"), &e.to_string());
            return;
        }
        Err(e) => panic!("probe journal: {e}"),
    }
    let mut acked: Vec<crash::Ack> = Vec::new();
    let (cycles, mut total) = (kill_cycles(), 0);
    let mut dir = dir;
    for tag in 0..cycles {
        if tag > 0 && tag % 10 == 0 {
            // A fresh journal every ten kills keeps each check's read-back small.
            total += acked.len();
            acked.clear();
            dir = tempfile::tempdir().unwrap();
        }
        let want = 120 + 90 * (tag % 3) as usize + (tag as usize * 37) % 50;
        let (want, extra): (usize, &[&str]) = if large { (want / 8, &["--large"]) } else { (want, &[]) };
        acked.extend(crash::run_child(dir.path(), substrate, direct, tag, extra, want, || {}));
        // Recovery runs twice: the second open finds what the first left.
        for _ in 0..2 {
            rt.block_on(async {
                let j = common::reopen(dir.path(), &opts).await;
                j.close().await.expect("close");
            });
        }
        let records: HashMap<u64, Vec<u8>> = common::read_all(dir.path()).into_iter().collect();
        let lost = crash::lost_of(&records, &acked, if large { crash::large_payload } else { crash::payload });
        assert!(lost.is_empty(), "acknowledged records lost or changed (tag, task, n, lsn): {lost:?}");
        assert!(tidelog::verify(dir.path()).unwrap().is_clean(), "after recovery the journal verifies clean");
    }
    total += acked.len();
    let size = if large { "large owned" } else { "small" };
    eprintln!("{substrate} direct={direct}, {size} records: {cycles} kills, {total} acknowledged records, 0 lost");
}

/// Kills per configuration (`TIDELOG_KILL_CYCLES`, default 3).
fn kill_cycles() -> u32 {
    std::env::var("TIDELOG_KILL_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

#[test]
fn kill_9_large_owned_records_blocking() {
    kill_9_cycles_of("blocking", false, true);
}

#[test]
fn kill_9_large_owned_records_io_uring() {
    kill_9_cycles_of("io_uring", false, true);
}

#[test]
fn kill_9_large_records_io_uring_direct() {
    kill_9_cycles_of("io_uring", true, true);
}

#[test]
fn kill_9_blocking_buffered() {
    kill_9_cycles("blocking", false);
}

#[test]
fn kill_9_io_uring_buffered() {
    kill_9_cycles("io_uring", false);
}

#[test]
fn kill_9_blocking_direct() {
    kill_9_cycles("blocking", true);
}

#[test]
fn kill_9_io_uring_direct() {
    kill_9_cycles("io_uring", true);
}
