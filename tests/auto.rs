//! `SubstrateChoice::Auto` on real ext4 and XFS (loop images): the
//! substrate its rule picks for each I/O configuration, and the reason
//! `Journal::stats()` gives. The rule's full table is unit-tested in
//! `src/journal/auto.rs`; this checks that a journal on each filesystem
//! gets it — the filesystem detected, the options read, the ring created.
#![cfg(target_os = "linux")]

mod common;

use common::disk::Disk;
use tidelog::testing::{skip, Capability};
use tidelog::{Journal, JournalOptions, Preallocate, Substrate};

fn configurations() -> Vec<(&'static str, JournalOptions)> {
    let base = || JournalOptions::new().segment_size(1 << 20);
    vec![
        ("buffered", base()),
        ("buffered, zero-filled", base().preallocate(Preallocate::Zero)),
        ("dsync", base().dsync_writes(true)),
        ("dsync, zero-filled", base().dsync_writes(true).preallocate(Preallocate::Zero)),
        ("dsync, growing", base().dsync_writes(true).preallocate(Preallocate::None)),
        ("direct", base().direct_io(true)),
        ("direct, zero-filled", base().direct_io(true).preallocate(Preallocate::Zero)),
        ("direct+dsync", base().direct_io(true).dsync_writes(true)),
        ("direct+dsync, zero-filled", base().direct_io(true).dsync_writes(true).preallocate(Preallocate::Zero)),
    ]
}

/// What the rule in docs/benchmarks.md says for `fs` and configuration `what`.
fn expected(fs: &str, what: &str) -> Substrate {
    match (fs, what) {
        (_, "direct, zero-filled" | "dsync" | "dsync, zero-filled" | "direct+dsync" | "direct+dsync, zero-filled") => {
            Substrate::IoUring
        }
        _ => Substrate::Blocking,
    }
}

fn picks_on(fs: &str, cap: Capability) {
    let what = format!("Auto's pick on {fs}");
    if let Err(why) = cap.present() {
        return skip(cap, &what, &why);
    }
    if let Err(why) = Capability::IoUring.present() {
        return skip(Capability::IoUring, &what, &why);
    }
    let disk = Disk::new(fs);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        for (i, (config, opts)) in configurations().into_iter().enumerate() {
            let dir = disk.mnt.join(format!("j{i}"));
            let j = Journal::open(&dir, opts).await.unwrap_or_else(|e| panic!("{fs}, {config}: {e}"));
            let stats = j.stats();
            assert_eq!(j.substrate(), expected(fs, config), "{fs}, {config}: {}", stats.substrate_reason);
            assert!(stats.substrate_reason.starts_with("Auto: "), "{fs}, {config}: {}", stats.substrate_reason);
            // Whatever it picked, it works.
            let lsn = j.append_durable_async(vec![7u8; 300]).await.unwrap();
            assert!(j.durable_lsn() >= lsn, "{fs}, {config}");
            j.close().await.unwrap();
        }
    });
    // A runtime without tokio's I/O driver cannot watch a ring: where the
    // rule picks the ring, Auto falls back and says why.
    let no_io = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    no_io.block_on(async {
        let opts = JournalOptions::new().direct_io(true).dsync_writes(true).preallocate(Preallocate::Zero);
        let j = Journal::open(disk.mnt.join("no-io"), opts.segment_size(1 << 20)).await.unwrap();
        let reason = j.stats().substrate_reason;
        assert_eq!(j.substrate(), Substrate::Blocking, "{fs} without an I/O driver: {reason}");
        assert!(reason.starts_with("Auto: io_uring unavailable"), "{fs} without an I/O driver: {reason}");
        j.close().await.unwrap();
    });
}

#[test]
fn auto_picks_by_the_documented_rule_on_ext4() {
    picks_on("ext4", Capability::Ext4);
}

#[test]
fn auto_picks_by_the_documented_rule_on_xfs() {
    picks_on("xfs", Capability::Xfs);
}
