//! Injected I/O failures through the substrate seam, on both substrates:
//! fsyncgate poisoning, failed writes, short writes and EINTR, completions
//! out of order, a one-entry ring under thousands of waiters.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use common::within;
use tidelog::testing::{FaultPlan, Seams};
use tidelog::{Error, Journal, JournalOptions, Lsn};

matrix!(
    failed_sync_poisons_every_waiter_and_every_later_call,
    failed_write_poisons_and_nothing_unwritten_is_acknowledged,
    short_writes_and_eintr_are_completed_transparently,
    fail_the_kth_sync_never_acknowledges_after_it,
    enospc_at_rollover_poisons_and_keeps_the_sealed_segment,
    completions_reported_out_of_order_keep_every_promise,
    a_one_entry_ring_with_thousands_of_waiters_and_a_failed_sync,
    overlapping_large_writes_out_of_order_short_or_failed_keep_the_frontier_a_completed_prefix,
    a_large_write_never_goes_beside_one_carrying_zeros_ahead,
    a_burst_of_owned_appends_goes_in_bounded_writes,
    blocking_leaders_complete_short_writes_and_poison_on_a_failed_sync,
    a_blocking_leaders_failed_write_poisons_and_names_the_record,
    a_blocking_leaders_cancelled_sync_poisons_instead_of_hanging,
    a_blocking_leader_that_panics_poisons_instead_of_wedging,
    a_blocking_append_from_a_destructor_while_unwinding_does_not_poison,
);

/// The second segment cannot be created (ENOSPC): appenders that needed it
/// are poisoned, nothing in it is acknowledged, and the first segment —
/// sealed and synced before the attempt — reopens whole.
async fn enospc_at_rollover_poisons_and_keeps_the_sealed_segment(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    plan.errno.store(libc::ENOSPC, SeqCst);
    plan.fail_segment_create_nth.store(1, SeqCst);
    let opts = opts.segment_size(1 << 20);
    let j = Seams::new().faults(&plan).open(dir.path(), opts.clone()).await.unwrap();
    let payload = vec![7u8; 100_000];
    let mut acked = Vec::new();
    let err = loop {
        match within(30, "append toward a rollover", j.append_durable_async(&payload)).await {
            Ok(lsn) => acked.push(lsn),
            Err(e) => break e,
        }
        assert!(acked.len() < 20, "a 1 MiB segment holds ten of these: the rollover must have been tried");
    };
    assert!(err.is_poisoned(), "{err}");
    assert_eq!(err.os_error().and_then(|e| e.raw_os_error()), Some(libc::ENOSPC), "{err}");
    assert!(err.to_string().contains(".tlog"), "the error names the segment: {err}");
    assert_eq!(plan.segments_created.load(SeqCst), 1);
    assert!(j.durable_lsn() >= *acked.last().unwrap());
    assert!(j.append_async(b"later").await.unwrap_err().is_poisoned());
    let j = common::reopen_dropped(j, dir.path(), &opts).await;
    let (records, _) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
    let lsns: Vec<Lsn> = records.iter().map(|r| r.lsn()).collect();
    assert_eq!(lsns, acked, "exactly the acknowledged records, none lost, none half-made");
    j.append_durable_async(b"after reopen").await.unwrap();
    j.close().await.unwrap();
}

async fn failed_sync_poisons_every_waiter_and_every_later_call(opts: JournalOptions) {
    for errno in [libc::EIO, libc::ENOSPC] {
        failed_sync_poisons_every_waiter_and_every_later_call_with(opts.clone(), errno).await;
    }
}

async fn failed_sync_poisons_every_waiter_and_every_later_call_with(opts: JournalOptions, errno: i32) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    plan.errno.store(errno, SeqCst);
    let j = Seams::new().faults(&plan).open(dir.path(), opts.clone()).await.unwrap();
    let first = j.append_durable_async(b"durable before the failure").await.unwrap();
    let durable_before = j.durable_lsn();
    assert!(durable_before >= first);
    // 64 records written (nobody has asked for them to be durable yet), so
    // that the one round their waiters start covers them all; it fails.
    let tickets: Vec<_> = (0..64).map(|i| j.submit(format!("w{i}")).unwrap()).collect();
    j.append_async(b"written behind them").await.unwrap();
    let syncs_before = plan.syncs_seen.load(SeqCst);
    plan.fail_sync_nth.store(syncs_before + 1, SeqCst);
    let waiters: Vec<_> = tickets.into_iter().map(tokio::spawn).collect();
    for w in waiters {
        let got = within(30, "waiter after failed sync", w).await.unwrap();
        match got {
            Err(Error::Poisoned(first)) => {
                assert_eq!(first.os_error().and_then(|e| e.raw_os_error()), Some(errno), "{first}");
            }
            other => panic!("a waiter of a failed sync round got {other:?}"),
        }
    }
    assert_eq!(plan.syncs_seen.load(SeqCst), syncs_before + 1, "the 64 waiters shared one (failed) round");
    assert_eq!(j.durable_lsn(), durable_before, "a failed sync covers nothing");
    assert!(j.stats().poisoned);
    assert!(j.append_async(b"later").await.unwrap_err().is_poisoned());
    assert!(j.sync_through_async(first).await.unwrap_err().is_poisoned());
    assert!(j.close().await.unwrap_err().is_poisoned());
    let j = common::reopen_dropped(j, dir.path(), &opts).await;
    let (records, _) = j.read_batch(Lsn::ZERO, 1000).unwrap();
    let kept: std::collections::HashMap<Lsn, &[u8]> = records.iter().map(|r| (r.lsn(), r.payload())).collect();
    assert_eq!(kept.get(&first).copied(), Some(&b"durable before the failure"[..]), "the acknowledged record");
    j.close().await.unwrap();
}

async fn failed_write_poisons_and_nothing_unwritten_is_acknowledged(opts: JournalOptions) {
    for errno in [libc::EIO, libc::ENOSPC] {
        failed_write_poisons_and_nothing_unwritten_is_acknowledged_with(opts.clone(), errno).await;
    }
}

async fn failed_write_poisons_and_nothing_unwritten_is_acknowledged_with(opts: JournalOptions, errno: i32) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    plan.errno.store(errno, SeqCst);
    plan.fail_write_nth.store(3, SeqCst);
    let j = Seams::new().faults(&plan).open(dir.path(), opts.clone()).await.unwrap();
    let a = j.append_async(b"1").await.unwrap();
    let b = j.append_async(b"2").await.unwrap();
    let err = j.append_async(b"3").await.unwrap_err();
    assert!(err.is_poisoned(), "{err}");
    assert_eq!(err.os_error().and_then(|e| e.raw_os_error()), Some(errno));
    assert!(err.to_string().contains(".tlog"), "the error names the segment: {err}");
    // Nothing of "3" was written (direct I/O pads `b` to its block's end).
    assert!(j.written_lsn() >= b && j.written_lsn().as_u64() < b.as_u64() + 4096 + 24, "{:?}", j.written_lsn());
    let (written, _) = j.read_batch(Lsn::ZERO, 10).unwrap();
    assert_eq!(written.iter().map(|r| r.payload()).collect::<Vec<_>>(), [b"1", b"2"]);
    assert!(a < b);
    assert!(j.submit(b"4").unwrap_err().is_poisoned());
    j.close().await.ok();
    // The 13th 20 KB record crosses 256 KiB, so (buffered) its write carries
    // zeros ahead: the error still names where the record begins.
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    plan.fail_write_nth.store(13, SeqCst);
    let j = Seams::new().faults(&plan).open(dir.path(), opts).await.unwrap();
    for _ in 0..12 {
        j.append_async(vec![7u8; 20_000]).await.unwrap();
    }
    let err = j.append_async(vec![7u8; 20_000]).await.unwrap_err();
    let at = format!("at LSN {}", j.written_lsn());
    assert!(err.to_string().contains(&at), "the error names where the record begins ({at}): {err}");
}

async fn short_writes_and_eintr_are_completed_transparently(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    let j = Seams::new().faults(&plan).open(dir.path(), opts.clone()).await.unwrap();
    let mut acked = Vec::new();
    for round in 0..20 {
        plan.short_writes.store(2, SeqCst);
        plan.eintr_writes.store(1, SeqCst);
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let j = j.clone();
                tokio::spawn(async move {
                    // Some writes span blocks, so direct I/O gets short writes too.
                    let payload = format!("round {round} task {i} {}", "x".repeat(i * 1200));
                    (j.append_durable_async(&payload).await.unwrap(), payload)
                })
            })
            .collect();
        for t in tasks {
            acked.push(within(30, "appender", t).await.unwrap());
        }
    }
    j.close().await.unwrap();
    let mut acked: Vec<(u64, Vec<u8>)> = acked.into_iter().map(|(l, p)| (l.as_u64(), p.into_bytes())).collect();
    acked.sort();
    assert_eq!(common::read_all(dir.path()), acked, "exactly the acknowledged records, whole");
    let _ = opts;
}

async fn fail_the_kth_sync_never_acknowledges_after_it(opts: JournalOptions) {
    for k in 1..=6u64 {
        let dir = tempfile::tempdir().unwrap();
        let plan = Arc::new(FaultPlan::default());
        plan.fail_sync_nth.store(k, SeqCst);
        let j = Seams::new().faults(&plan).open(dir.path(), opts.clone()).await.unwrap();
        let mut acked = Vec::new();
        let mut failed = false;
        for i in 0..10 {
            match j.append_durable_async(format!("{i}")).await {
                Ok(lsn) => {
                    assert!(!failed, "k={k}: an acknowledgement followed a failed sync");
                    acked.push(lsn);
                }
                Err(e) => {
                    assert!(e.is_poisoned(), "{e}");
                    failed = true;
                }
            }
        }
        assert!(failed, "k={k}: the injected failure was never seen");
        let j = common::reopen_dropped(j, dir.path(), &opts).await;
        let (records, _) = j.read_batch(Lsn::ZERO, 100).unwrap();
        for lsn in &acked {
            assert!(records.iter().any(|r| r.lsn() == *lsn), "k={k}: acknowledged {lsn} lost");
        }
        j.close().await.unwrap();
    }
}

matrix!(
    a_cancelled_sync_poisons_instead_of_hanging,
    a_write_past_its_timeout_poisons_without_waiting_for_the_device,
    a_sync_past_its_timeout_poisons_without_waiting_for_the_device,
    a_slow_sync_is_counted_as_a_stall_and_still_succeeds,
    a_real_full_filesystem_poisons_with_enospc,
    a_full_filesystem_opens_reads_and_truncation_frees_space_for_appends,
    a_full_ext4_opens_reads_and_truncation_frees_space_for_appends,
    a_torn_tail_on_a_full_disk_is_cut_without_a_copy,
);

/// A plain `fdatasync` that completes without a result (the kernel
/// cancelled it before it ran) made nothing durable: its round must fail
/// and poison, not stay in flight forever with every durable waiter and
/// `close` behind it.
async fn a_cancelled_sync_poisons_instead_of_hanging(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    plan.cancel_sync_nth.store(1, SeqCst);
    let j = Seams::new().faults(&plan).open(dir.path(), opts.clone()).await.unwrap();
    // Written first, then synced: a plain sync, not one linked to a write.
    let lsn = j.append_async(b"written, then a cancelled sync").await.unwrap();
    let err = within(10, "a sync whose fdatasync was cancelled", j.sync_through_async(lsn)).await.unwrap_err();
    assert!(err.is_poisoned(), "{err}");
    assert!(err.to_string().contains("cancelled") && err.to_string().contains(".tlog"), "{err}");
    assert_eq!(j.durable_lsn(), Lsn::ZERO, "nothing was made durable");
    assert!(within(10, "close after a cancelled sync", j.close()).await.unwrap_err().is_poisoned());
    let j = common::reopen_dropped(j, dir.path(), &opts).await;
    assert_eq!(j.read_batch(Lsn::ZERO, 10).unwrap().0.len(), 1, "the written record is still there");
    j.close().await.unwrap();
}

/// A write that never completes is bounded by `sync_timeout` like a sync:
/// the journal poisons instead of letting appenders and `close` wait on a
/// wedged device, and the directory stays locked until the write ends.
async fn a_write_past_its_timeout_poisons_without_waiting_for_the_device(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    plan.write_delay_ms.store(3_000, SeqCst);
    let opts = opts.sync_timeout(Some(std::time::Duration::from_millis(100)));
    let j = Seams::new().faults(&plan).open(dir.path(), opts).await.unwrap();
    let started = std::time::Instant::now();
    let err = within(10, "timed-out write", j.append_async(b"wedged")).await.unwrap_err();
    assert!(err.is_poisoned(), "{err}");
    assert_eq!(err.os_error().map(|e| e.kind()), Some(std::io::ErrorKind::TimedOut), "{err}");
    assert!(err.to_string().contains("write"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "did not wait for the device");
    assert_eq!(j.written_lsn(), Lsn::ZERO);
    assert!(within(5, "close", j.close()).await.unwrap_err().is_poisoned());
    assert!(matches!(Journal::open(dir.path(), JournalOptions::new()).await, Err(Error::Locked { .. })));
}

async fn a_sync_past_its_timeout_poisons_without_waiting_for_the_device(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    plan.sync_delay_ms.store(3_000, SeqCst);
    let opts = opts.sync_timeout(Some(std::time::Duration::from_millis(100)));
    let j = Seams::new().faults(&plan).open(dir.path(), opts).await.unwrap();
    let started = std::time::Instant::now();
    let err = within(10, "timed-out sync", j.append_durable_async(b"wedged")).await.unwrap_err();
    assert!(err.is_poisoned(), "{err}");
    assert_eq!(err.os_error().map(|e| e.kind()), Some(std::io::ErrorKind::TimedOut), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "did not wait for the device");
    assert_eq!(j.durable_lsn(), Lsn::ZERO);
    // close returns promptly with the poison; the lock is held until the
    // wedged sync completes (here: when the injected delay ends).
    assert!(within(5, "close", j.close()).await.unwrap_err().is_poisoned());
    assert!(matches!(Journal::open(dir.path(), JournalOptions::new()).await, Err(Error::Locked { .. })));
}

async fn a_slow_sync_is_counted_as_a_stall_and_still_succeeds(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    plan.sync_delay_ms.store(80, SeqCst);
    let opts = opts.stall_threshold(std::time::Duration::from_millis(20));
    let j = Seams::new().faults(&plan).open(dir.path(), opts).await.unwrap();
    let lsn = within(10, "slow sync", j.append_durable_async(b"slow")).await.unwrap();
    assert!(j.durable_lsn() >= lsn);
    let stats = j.stats();
    assert_eq!(stats.stalls, 1, "{stats:?}");
    assert!(!stats.poisoned);
    j.close().await.unwrap();
}

/// Mounts a tmpfs of `mib` MiB; `None` (with the reason printed) when not
/// root.
fn small_tmpfs(mib: u32) -> Option<(tempfile::TempDir, Unmount)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap().to_string();
    let mounted = common::output(std::process::Command::new("mount").args([
        "-t",
        "tmpfs",
        "-o",
        &format!("size={mib}m"),
        "tidelog-test",
        &path,
    ]));
    match mounted {
        Ok(out) if out.status.success() => Some((dir, Unmount(path))),
        _ => {
            tidelog::testing::skip(
                tidelog::testing::Capability::Root,
                "a real full filesystem",
                "cannot mount a tmpfs",
            );
            None
        }
    }
}

struct Unmount(String);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = common::output(std::process::Command::new("umount").arg(&self.0));
    }
}

async fn a_real_full_filesystem_poisons_with_enospc(opts: JournalOptions) {
    let Some((dir, _unmount)) = small_tmpfs(2) else { return };
    let j = match Journal::open(dir.path().join("wal"), opts.segment_size(1 << 20)).await {
        Err(e @ tidelog::Error::Unsupported(_)) => {
            // Only direct I/O is refused on tmpfs, and it must say why.
            assert!(e.to_string().contains("direct_io") && e.to_string().contains("tmpfs"), "{e}");
            return;
        }
        j => j.unwrap(),
    };
    let payload = vec![0xEEu8; 64 << 10];
    let (acked, err) = append_until_full(&j, &payload, 100).await;
    assert!(err.is_poisoned(), "{err}");
    assert!(!acked.is_empty());
    assert!(j.append_async(b"more").await.unwrap_err().is_poisoned());
    let _ = j.close().await;
    drop(j);
    // Everything acknowledged is there.
    let reader = tidelog::JournalReader::open(dir.path().join("wal")).unwrap();
    let mut r = reader.reader(Lsn::ZERO).unwrap();
    let mut n = 0;
    while let Some(rec) = r.next_record().unwrap() {
        n += 1;
        assert_eq!(rec.payload(), &payload[..]);
    }
    assert!(n >= acked.len());
}

/// Each completion is held back while another op is in flight and reported
/// after it (a sync's after the write submitted behind it, and so on).
/// Durable appenders run beside written-only ones, and a group-commit window
/// keeps writes and syncs apart, so they overlap. Every acknowledgement still means durable, and every
/// acknowledged record reopens.
async fn completions_reported_out_of_order_keep_every_promise(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    plan.reorder.store(true, SeqCst);
    // A group-commit window sends writes alone (a write and its sync travel
    // linked otherwise), so a sync can be in flight beside the next write.
    let windowed = opts.clone().group_commit_window(std::time::Duration::from_micros(200));
    let j = Seams::new().faults(&plan).open(dir.path(), windowed).await.unwrap();
    // Until completions have overtaken each other a few times (bounded).
    let enough = |plan: &FaultPlan| plan.reordered.load(SeqCst) >= 5;
    let tasks: Vec<_> = (0..36)
        .map(|t| {
            let (j, plan) = (j.clone(), plan.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..400 {
                    if enough(&plan) && i >= 5 {
                        break;
                    }
                    let payload = format!("t{t}i{i}");
                    if t < 32 {
                        let lsn = j.append_durable_async(payload).await.unwrap();
                        assert!(j.durable_lsn() >= lsn, "acknowledged {lsn} before it was durable");
                        acked.push(lsn);
                    } else {
                        acked.push(j.append_async(payload).await.unwrap());
                    }
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(within(60, "appender", t).await.unwrap());
    }
    assert!(
        plan.reordered.load(SeqCst) > 0,
        "no completion was ever reported out of order (at most {} ops were in flight)",
        plan.max_in_flight.load(SeqCst)
    );
    exactly_the_acknowledged_reopen(j, dir.path(), &opts, acked).await;
}

/// A ring of one submission entry (two completion entries), completions out
/// of order, 1,000 appenders making 4,000 durable appends, and the third
/// sync fails: every waiter gets an answer, no acknowledgement follows the
/// failure, and every acknowledged record reopens.
async fn a_one_entry_ring_with_thousands_of_waiters_and_a_failed_sync(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    plan.reorder.store(true, SeqCst);
    plan.fail_sync_nth.store(3, SeqCst);
    let j = Seams::new().faults(&plan).open(dir.path(), opts.clone().ring_entries(1)).await.unwrap();
    let mut acked = Vec::new();
    let poisoned = answers(durable_appenders(&j, "", 1000, 4), &mut acked).await;
    assert_eq!(acked.len() + poisoned, 4000, "every waiter is answered");
    assert!(poisoned > 0 && !acked.is_empty(), "{} acknowledged, {poisoned} poisoned", acked.len());
    poisoned_journal_kept_every_acknowledgement(j, dir.path(), &opts, &acked).await;
}

/// `tasks` tasks, each making `per_task` durable appends (payloads
/// `{prefix}t{t}i{i}`) and keeping every answer. An acknowledged append
/// must already be under the durable frontier.
fn durable_appenders(
    j: &Journal,
    prefix: &'static str,
    tasks: usize,
    per_task: usize,
) -> Vec<tokio::task::JoinHandle<Vec<tidelog::Result<Lsn>>>> {
    (0..tasks)
        .map(|t| {
            let j = j.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for i in 0..per_task {
                    let answer = j.append_durable_async(format!("{prefix}t{t}i{i}")).await;
                    if let Ok(lsn) = answer {
                        assert!(j.durable_lsn() >= lsn, "acknowledged {lsn} before it was durable");
                    }
                    answers.push(answer);
                }
                answers
            })
        })
        .collect()
}

/// Closes `j`, reopens `dir` and checks that exactly the acknowledged
/// records are there.
async fn exactly_the_acknowledged_reopen(j: Journal, dir: &std::path::Path, opts: &JournalOptions, acked: Vec<Lsn>) {
    j.close().await.unwrap();
    let j = common::reopen(dir, opts).await;
    let (records, _) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
    let kept: std::collections::HashSet<Lsn> = records.iter().map(|r| r.lsn()).collect();
    assert_eq!(kept, acked.into_iter().collect(), "exactly the acknowledged records reopen");
    j.close().await.unwrap();
}

/// Collects the answers of appending tasks: acknowledged LSNs into `acked`;
/// returns how many were refused (each must be `Poisoned`).
async fn answers(tasks: Vec<tokio::task::JoinHandle<Vec<tidelog::Result<Lsn>>>>, acked: &mut Vec<Lsn>) -> usize {
    let mut poisoned = 0;
    for t in tasks {
        for answer in within(60, "appender", t).await.unwrap() {
            match answer {
                Ok(lsn) => acked.push(lsn),
                Err(e) => {
                    assert!(e.is_poisoned(), "{e}");
                    poisoned += 1;
                }
            }
        }
    }
    poisoned
}

/// After a failed sync: nothing was acknowledged past the durable frontier,
/// and every acknowledged record reopens.
async fn poisoned_journal_kept_every_acknowledgement(
    j: Journal,
    dir: &std::path::Path,
    opts: &JournalOptions,
    acked: &[Lsn],
) {
    let durable = j.durable_lsn();
    assert!(acked.iter().all(|&l| l <= durable), "an acknowledgement followed the failed sync");
    let j = common::reopen_dropped(j, dir, opts).await;
    let (records, _) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
    let kept: std::collections::HashSet<Lsn> = records.iter().map(|r| r.lsn()).collect();
    assert!(acked.iter().all(|l| kept.contains(l)), "an acknowledged record was lost");
    j.close().await.unwrap();
}

matrix!(overlapping_sync_rounds_keep_every_promise);

/// Slow syncs and many durable appenders: on the blocking substrate sync
/// rounds overlap (each on its own file description), on the ring they do
/// not (measured slower there). Either way every acknowledgement means
/// durable, a sync failing while another is in flight poisons without a
/// later acknowledgement, and every acknowledged record reopens.
async fn overlapping_sync_rounds_keep_every_promise(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    plan.sync_delay_ms.store(5, SeqCst);
    let j = Seams::new().faults(&plan).open(dir.path(), opts.clone()).await.unwrap();
    let overlapping = |plan: &FaultPlan| plan.max_syncs_in_flight.load(SeqCst) >= 2;
    let expect_overlap = j.substrate() == tidelog::Substrate::Blocking;
    let tasks: Vec<_> = (0..48)
        .map(|t| {
            let (j, plan) = (j.clone(), plan.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..200 {
                    if i >= 20 && (overlapping(&plan) || !expect_overlap) {
                        break;
                    }
                    // Spread arrivals across a round: woken together, the
                    // tasks of a current-thread runtime would otherwise all
                    // join the same round, every time.
                    let jitter = (t * 7 + i * 13) % 10;
                    tokio::time::sleep(std::time::Duration::from_micros(jitter as u64 * 400)).await;
                    let lsn = j.append_durable_async(format!("t{t}i{i}")).await.unwrap();
                    assert!(j.durable_lsn() >= lsn, "acknowledged {lsn} before it was durable");
                    acked.push(lsn);
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(within(60, "appender", t).await.unwrap());
    }
    let most = plan.max_syncs_in_flight.load(SeqCst);
    if expect_overlap {
        assert!(
            most >= 2,
            "sync rounds never overlapped on the blocking substrate ({} syncs, {} appends)",
            plan.syncs_seen.load(SeqCst),
            acked.len()
        );
    } else {
        assert_eq!(most, 1, "the ring keeps one sync in flight");
    }
    // Now a sync fails while others may be in flight.
    let failing = plan.syncs_seen.load(SeqCst) + 3;
    plan.fail_sync_nth.store(failing, SeqCst);
    let poisoned = answers(durable_appenders(&j, "late ", 48, 20), &mut acked).await;
    assert!(poisoned > 0, "the failed sync poisoned nobody");
    poisoned_journal_kept_every_acknowledgement(j, dir.path(), &opts, &acked).await;
}

matrix!(small_writes_carry_zeros_ahead, under_load_dsync_writes_carry_the_rounds);

/// With `dsync_writes`, a write someone waits on is one `RWF_DSYNC` write
/// (when everything before it is durable), under load too: there is no
/// separate sync for a write to overlap, so writes do not go alone and
/// leave the rounds to plain `fdatasync`s. Every acknowledgement is durable
/// and reopens.
async fn under_load_dsync_writes_carry_the_rounds(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    let j = Seams::new().faults(&plan).open(dir.path(), opts.clone().dsync_writes(true)).await.unwrap();
    let mut acked = Vec::new();
    let refused = answers(durable_appenders(&j, "", 32, 40), &mut acked).await;
    assert_eq!(refused, 0, "nothing failed, nothing may be refused");
    let (dsync, plain) = (plan.dsync_writes_seen.load(SeqCst), plan.plain_syncs_seen.load(SeqCst));
    assert!(dsync > 0 && plain * 4 <= dsync, "{dsync} RWF_DSYNC writes, {plain} plain fdatasyncs under load");
    exactly_the_acknowledged_reopen(j, dir.path(), &opts, acked).await;
}

/// Small writes into reserved blocks carry zeros up to the next 256 KiB (one
/// extent conversion per 256 KiB, not one per sync round); a zero-filled
/// segment needs none, and direct I/O writes no block twice. The zeros never
/// read back as records.
async fn small_writes_carry_zeros_ahead(opts: JournalOptions) {
    for how in [tidelog::Preallocate::Fallocate, tidelog::Preallocate::None, tidelog::Preallocate::Zero] {
        let dir = tempfile::tempdir().unwrap();
        let plan = Arc::new(FaultPlan::default());
        let opts = opts.clone().preallocate(how).segment_size(8 << 20);
        let j = Seams::new().faults(&plan).open(dir.path(), opts.clone()).await.unwrap();
        let mut acked = Vec::new();
        for i in 0..500 {
            acked.push(j.append_durable_async(vec![i as u8; 3000]).await.unwrap());
        }
        let writes = plan.write_log.lock().unwrap().clone();
        // Data alone is a few KiB per write; a write carrying zeros ahead is
        // far larger and ends on a 256 KiB boundary.
        let padded: Vec<_> = writes.iter().filter(|&&(_, _, n)| n > 64 << 10).collect();
        // Direct I/O closes every chunk on a block boundary; 3,024-byte
        // frames alone never do.
        let direct = writes.iter().all(|&(_, _, n)| n % 512 == 0);
        if how == tidelog::Preallocate::Zero || direct {
            assert!(padded.is_empty(), "{how:?}: a zero-filled segment needs no zeros ahead: {padded:?}");
        } else {
            // ~1.5 MB of records cross several 256 KiB boundaries: the first write
            // and those crossing one carry zeros to the next boundary.
            assert!(padded.len() >= 4, "{how:?}: {} writes carried zeros ahead: {padded:?}", padded.len());
            assert!(padded.iter().all(|&&(_, offset, n)| (offset + n as u64) % (256 << 10) == 0), "{padded:?}");
            let (_, offset, n) = writes[0];
            assert_eq!(offset + n as u64, 256 << 10, "{how:?}: the first write reaches 256 KiB");
        }
        j.close().await.unwrap();
        let j = common::reopen(dir.path(), &opts).await;
        let (records, _) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
        assert_eq!(records.iter().map(|r| r.lsn()).collect::<Vec<_>>(), acked, "{how:?}");
        assert!(records.iter().enumerate().all(|(i, r)| r.payload() == vec![i as u8; 3000]), "{how:?}");
        j.close().await.unwrap();
    }
}

/// A node that filled its disk must be able to start, read, and free space
/// by truncating: `open` needs no new space (the spare segment and
/// preallocation wait), and once `truncate_before` has freed whole
/// segments, appends resume. On a real full tmpfs.
async fn a_full_filesystem_opens_reads_and_truncation_frees_space_for_appends(opts: JournalOptions) {
    let Some((dir, _unmount)) = small_tmpfs(4) else { return };
    let wal = dir.path().join("wal");
    match Journal::open(&wal, opts.clone().segment_size(1 << 20)).await {
        // tmpfs refuses O_DIRECT (the test above checks how); the ext4 test
        // below runs the direct cells.
        Err(tidelog::Error::Unsupported(_)) => return,
        j => j.unwrap().close().await.unwrap(),
    }
    full_disk_cycle(&wal, opts, None).await;
}

/// The same on a real full ext4 (a loop image filled to its last 4 MiB
/// by a file of its own, then by the journal).
async fn a_full_ext4_opens_reads_and_truncation_frees_space_for_appends(opts: JournalOptions) {
    if let Err(why) = tidelog::testing::Capability::Ext4.present() {
        return tidelog::testing::skip(tidelog::testing::Capability::Ext4, "a full ext4", &why);
    }
    let disk = common::disk::Disk::new("ext4");
    let mnt = disk.mnt.clone();
    let fill = move || {
        // SAFETY: statvfs writes into the zeroed struct we pass; the path is a
        // NUL-terminated string that lives across the call.
        let free = unsafe {
            let path = std::ffi::CString::new(mnt.to_str().unwrap()).unwrap();
            let mut st: libc::statvfs = std::mem::zeroed();
            assert_eq!(libc::statvfs(path.as_ptr(), &mut st), 0, "{}", std::io::Error::last_os_error());
            st.f_bfree as u64 * st.f_frsize as u64
        };
        // What statvfs calls free is not all allocatable by a plain file
        // (ext4 keeps clusters in reserve): fill to 4 MiB short of it, then
        // give space back until a 6 MiB file fits, so the journal gets a
        // few segments before the disk is full.
        let filler = std::fs::File::create(mnt.join("filler")).unwrap();
        let mut len = free - (4 << 20);
        loop {
            // SAFETY: fallocate on an open fd; no memory is passed.
            let rc = unsafe { libc::fallocate(std::os::fd::AsRawFd::as_raw_fd(&filler), 0, 0, len as libc::off_t) };
            if rc == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            assert!(e.raw_os_error() == Some(libc::ENOSPC) && len > 64 << 20, "fill the image: {e}");
            len -= 4 << 20;
        }
        let fits = |bytes: i64| {
            let probe = std::fs::File::create(mnt.join("probe")).unwrap();
            // SAFETY: as above.
            let ok = unsafe { libc::fallocate(std::os::fd::AsRawFd::as_raw_fd(&probe), 0, 0, bytes) } == 0;
            std::fs::remove_file(mnt.join("probe")).unwrap();
            ok
        };
        while !fits(6 << 20) {
            assert!(len > 64 << 20, "the image never had 6 MiB allocatable");
            len -= 4 << 20;
            filler.set_len(len).unwrap();
        }
        drop(filler);
    };
    full_disk_cycle(&disk.mnt.join("wal"), opts, Some(Box::new(fill))).await;
}

/// Opens a journal in `wal` and closes it, runs `fill` (which leaves a few
/// MiB free), then appends until the disk is full, reopens, reads,
/// truncates and appends again.
async fn full_disk_cycle(wal: &std::path::Path, opts: JournalOptions, fill: Option<Box<dyn FnOnce()>>) {
    let opts = opts.segment_size(1 << 20);
    let j = common::reopen(wal, &opts).await;
    j.close().await.unwrap();
    if let Some(fill) = fill {
        fill();
    }
    let j = common::reopen(wal, &opts).await;
    let payload = vec![0xABu8; 64 << 10];
    let (acked, _) = append_until_full(&j, &payload, 2000).await;
    // Truncation can free only a segment that holds no kept record.
    assert!(acked.last().unwrap().as_u64() > 2 << 20, "{} appends before the disk filled: one segment", acked.len());
    let _ = j.close().await;
    // verify reads a journal on the full disk (it writes nothing).
    let report = tidelog::verify(wal).unwrap();
    assert!(report.corruption.is_empty(), "{:?}", report.corruption);
    assert!(report.records >= acked.len() as u64, "verify counted {} of {} records", report.records, acked.len());
    // Open on the full disk, and read everything acknowledged.
    let j = common::reopen_dropped(j, wal, &opts).await;
    let (records, _) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
    let kept: std::collections::HashSet<Lsn> = records.iter().map(|r| r.lsn()).collect();
    for lsn in &acked {
        assert!(kept.contains(lsn), "acknowledged {lsn} missing after reopening on the full disk");
    }
    // Still full: an append fails with ENOSPC, and poisons. Recovery may
    // have given back what the failed append's torn tail held (it cuts
    // the tail), and then the append fitted (seen once in ten runs): take
    // whatever is free again first, so that the disk is full as meant.
    fill_the_rest(wal.parent().expect("the journal's directory has a parent"));
    let err = within(10, "append on the full disk", j.append_durable_async(&payload)).await.unwrap_err();
    assert_eq!(err.os_error().and_then(|e| e.raw_os_error()), Some(libc::ENOSPC), "{err}");
    let _ = j.close().await;
    // Truncation needs no space and frees whole segments; appends resume.
    let j = common::reopen_dropped(j, wal, &opts).await;
    let keep_from = acked[acked.len() - 1];
    within(10, "truncate on the full disk", j.truncate_before(keep_from)).await.unwrap();
    for _ in 0..4 {
        let lsn = within(10, "append after truncation", j.append_durable_async(&payload)).await.unwrap();
        assert!(j.durable_lsn() >= lsn);
    }
    j.close().await.unwrap();
}

/// Writes a file into `dir` until the filesystem refuses with ENOSPC.
fn fill_the_rest(dir: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("the-rest")).unwrap();
    let block = [0x55u8; 4096];
    for _ in 0..(1 << 20) {
        if let Err(e) = f.write_all(&block).and_then(|()| f.sync_data()) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling the disk: {e}");
            return;
        }
    }
    panic!("4 GiB written and the disk is not full");
}

/// Appends `payload` durably until an append fails, which must be with
/// ENOSPC before `most` appends: what was acknowledged, and the error.
async fn append_until_full(j: &Journal, payload: &[u8], most: usize) -> (Vec<Lsn>, Error) {
    let mut acked = Vec::new();
    let err = loop {
        match within(10, "append on a filling disk", j.append_durable_async(payload)).await {
            Ok(lsn) => acked.push(lsn),
            Err(e) => break e,
        }
        assert!(acked.len() < most, "the disk did not fill within {most} appends of {} bytes", payload.len());
    };
    assert_eq!(err.os_error().and_then(|e| e.raw_os_error()), Some(libc::ENOSPC), "{err}");
    (acked, err)
}

/// A torn final frame (as an append that failed with ENOSPC can leave)
/// found on a full disk: recovery has no room for its sidecar copy, and
/// cuts it without one, so that the journal opens; damage with valid
/// frames after it is still refused rather than cut uncopied.
async fn a_torn_tail_on_a_full_disk_is_cut_without_a_copy(opts: JournalOptions) {
    use std::os::unix::fs::FileExt;
    let Some((dir, _unmount)) = small_tmpfs(4) else { return };
    let wal = dir.path().join("wal");
    let opts = opts.segment_size(1 << 20);
    let j = match Journal::open(&wal, opts.clone()).await {
        Err(tidelog::Error::Unsupported(_)) => return, // no O_DIRECT on tmpfs
        j => j.unwrap(),
    };
    let mut lsns = Vec::new();
    for i in 0..20u32 {
        lsns.push(j.append_durable_async(format!("record {i}")).await.unwrap());
    }
    let end = j.next_lsn().as_u64();
    j.close().await.unwrap();
    // A torn frame after the end, inside the segment's reserved space (no
    // new space needed), then a disk filled to its last byte.
    let segment = wal.join(format!("{:020}.tlog", 0));
    let file = std::fs::OpenOptions::new().write(true).open(&segment).unwrap();
    file.write_all_at(&[0x5A; 100], 4096 + end).unwrap();
    drop(file);
    let mut filler = std::fs::File::create(dir.path().join("filler")).unwrap();
    let chunk = vec![1u8; 64 << 10];
    while std::io::Write::write_all(&mut filler, &chunk).is_ok() {}
    while std::io::Write::write_all(&mut filler, &[1]).is_ok() {}
    drop(filler);
    let report = tidelog::verify(&wal).unwrap();
    assert_eq!(report.torn_tail_bytes, 100, "verify sees the torn tail on the full disk");
    let j = common::reopen(&wal, &opts).await;
    assert_eq!(j.recovery_report().end_lsn().as_u64(), end);
    assert_eq!(j.recovery_report().truncated_bytes(), 100);
    assert!(j.recovery_report().sidecar().is_none(), "no room for a sidecar");
    let (records, _) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
    assert_eq!(records.iter().map(|r| r.lsn()).collect::<Vec<_>>(), lsns);
    j.close().await.unwrap();
    assert!(tidelog::verify(&wal).unwrap().is_clean());
}

/// Large records go two writes at a time. Completions reported out of
/// order and short writes still leave exactly the acknowledged records;
/// and when one write fails, nothing past it is acknowledged, although a
/// write after it may have completed.
async fn overlapping_large_writes_out_of_order_short_or_failed_keep_the_frontier_a_completed_prefix(
    opts: JournalOptions,
) {
    for fail_nth in [0u64, 5] {
        let dir = tempfile::tempdir().unwrap();
        let plan = Arc::new(FaultPlan::default());
        plan.reorder.store(true, SeqCst);
        plan.short_writes.store(4, SeqCst);
        plan.fail_write_nth.store(fail_nth, SeqCst);
        let j = Seams::new().faults(&plan).open(dir.path(), opts.clone()).await.unwrap();
        let tasks: Vec<_> = (0..4u8)
            .map(|t| {
                let j = j.clone();
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    for i in 0..12u8 {
                        let payload = vec![t * 16 + i; 300_000];
                        match j.append_owned_async(payload.clone()).await {
                            Ok(lsn) => {
                                assert!(j.written_lsn() >= lsn, "acknowledged {lsn} before it was written");
                                acked.push((lsn.as_u64(), payload));
                            }
                            Err(e) => {
                                assert!(e.is_poisoned(), "{e}");
                                break;
                            }
                        }
                    }
                    acked
                })
            })
            .collect();
        let mut acked = Vec::new();
        for t in tasks {
            acked.extend(within(60, "appender", t).await.unwrap());
        }
        acked.sort();
        let stats = j.stats();
        // (With a failure, the first write may fail before any overlap.)
        assert!(fail_nth > 0 || stats.overlapped_writes > 0, "no two writes were ever in flight: {stats:?}");
        // Everything below the written frontier reads back whole, and it
        // holds every acknowledged record.
        let (written, _) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
        let written: Vec<(u64, Vec<u8>)> = written.into_iter().map(|r| (r.lsn().as_u64(), r.into_payload())).collect();
        assert!(written.iter().all(|(_, p)| p.len() == 300_000 && p.iter().all(|&b| b == p[0])));
        assert!(acked.iter().all(|a| written.contains(a)), "an acknowledged record is not below the frontier");
        if fail_nth == 0 {
            assert_eq!(written, acked);
            j.close().await.unwrap();
            assert_eq!(common::read_all(dir.path()), acked, "exactly the acknowledged records, whole");
        } else {
            assert!(j.append_async(b"later").await.unwrap_err().is_poisoned());
            assert!(acked.len() < 48, "the failed write's records were not acknowledged");
            j.close().await.ok();
        }
    }
}

/// Resolves once the fault backend has seen `n` ops in flight at once.
async fn in_flight_at_least(plan: &FaultPlan, n: u64) {
    within(30, "ops in flight", async {
        while plan.max_in_flight.load(SeqCst) < n {
            tokio::task::yield_now().await;
        }
    })
    .await
}

/// A small write that crosses a 256 KiB boundary carries zeros up to the
/// next one (buffered I/O). A large write must not go beside it: it would
/// start inside those zeros, and zeros landing after its data (here: the
/// small write comes up short and its rest is written again after the
/// large one) would overwrite an acknowledged record. Found in review.
async fn a_large_write_never_goes_beside_one_carrying_zeros_ahead(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    let j = Seams::new().faults(&plan).open(dir.path(), opts.clone()).await.unwrap();
    // Twelve 20 KB records end below 256 KiB; the 13th crosses it.
    for i in 0..12u8 {
        j.append_async(vec![i; 20_000]).await.unwrap();
    }
    plan.write_delay_ms.store(300, SeqCst);
    plan.short_writes.store(1, SeqCst);
    plan.max_in_flight.store(0, SeqCst);
    let t13 = j.submit(vec![13u8; 20_000]).unwrap();
    in_flight_at_least(&plan, 1).await; // the 13th's write is out
    let big = vec![0xB1u8; 300_000];
    let l14 = within(30, "the large append", j.append_owned_async(big.clone())).await.unwrap();
    assert_eq!(j.stats().overlapped_writes, 0, "a large write went beside zeros ahead");
    plan.write_delay_ms.store(0, SeqCst);
    within(30, "the 13th durable", t13).await.unwrap();
    let (records, _) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
    assert_eq!(records.len(), 14);
    assert_eq!((records[13].lsn(), records[13].payload()), (l14, &big[..]));
    j.close().await.unwrap();
    assert_eq!(common::read_all(dir.path())[13].1, big, "the 300 KB record, reopened");
}

/// Owned appends of an unaligned length, piled up behind a slow write:
/// each frame's header starts a chunk of its own, so the writes that carry
/// them stay within their bounds (a single write for all of them would
/// pass `IOV_MAX` and fail with EINVAL, poisoning the journal). Found in
/// review.
async fn a_burst_of_owned_appends_goes_in_bounded_writes(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    let j = Seams::new().faults(&plan).open(dir.path(), opts.clone().segment_size(64 << 20)).await.unwrap();
    plan.write_delay_ms.store(500, SeqCst);
    plan.max_in_flight.store(0, SeqCst);
    let first = j.submit_owned(vec![1u8; 65_537]).unwrap();
    in_flight_at_least(&plan, 1).await;
    let tickets: Vec<_> = (0..600u32).map(|i| j.submit_owned(vec![i as u8; 65_537]).unwrap()).collect();
    plan.write_delay_ms.store(0, SeqCst);
    within(60, "the first", first).await.unwrap();
    for t in tickets {
        within(60, "the burst", t).await.unwrap();
    }
    let most = plan.write_log.lock().unwrap().iter().map(|&(_, _, n)| n).max().unwrap();
    assert!(most <= (8 << 20) + 2 * 65_600, "a write of {most} bytes");
    j.close().await.unwrap();
    assert_eq!(common::read_all(dir.path()).len(), 601);
}

/// Runs `f` on a thread that is not a runtime worker, as a caller of the
/// blocking API.
async fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    within(60, "a blocking caller", tokio::task::spawn_blocking(f)).await.expect("the blocking caller panicked")
}

/// `n` records of varied sizes (some span direct I/O blocks), made durable
/// by one blocking caller (`append_durable`, or `append` then
/// `sync_through`, alternately): (LSN, payload) of each.
async fn blocking_appends(j: &Journal, tag: &'static str, n: usize) -> Vec<(u64, Vec<u8>)> {
    let j = j.clone();
    on_thread(move || {
        (0..n)
            .map(|i| {
                let payload = format!("{tag} {i} {}", "y".repeat(i * 911 % 10_000)).into_bytes();
                let lsn = if i % 2 == 0 {
                    j.append_durable(&payload).unwrap()
                } else {
                    let lsn = j.append(&payload).unwrap();
                    j.sync_through(lsn).unwrap();
                    lsn
                };
                assert!(j.durable_lsn() >= lsn);
                (lsn.as_u64(), payload)
            })
            .collect()
    })
    .await
}

/// A blocking caller that leads its own rounds goes through the same seams
/// as the writer: short writes and EINTR are completed, and a failed sync
/// poisons the journal with the error, naming the segment and the LSN,
/// with nothing acknowledged after it and nothing acknowledged lost.
async fn blocking_leaders_complete_short_writes_and_poison_on_a_failed_sync(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    let j = Seams::new().faults(&plan).open(dir.path(), opts.clone()).await.unwrap();
    let mut acked = blocking_appends(&j, "clean", 20).await;
    let led = plan.performed_by_callers.load(SeqCst);
    assert!(led >= 10, "blocking callers led {led} of about 30 ops: the test would prove little");
    plan.short_writes.store(3, SeqCst);
    plan.eintr_writes.store(2, SeqCst);
    acked.extend(blocking_appends(&j, "short", 20).await);
    assert_eq!(plan.short_writes.load(SeqCst) + plan.eintr_writes.load(SeqCst), 0, "every fault was injected");
    assert!(plan.performed_by_callers.load(SeqCst) > led + 5, "the faulty rounds were led by callers too");
    let durable_before = j.durable_lsn();
    plan.fail_sync_nth.store(plan.syncs_seen.load(SeqCst) + 1, SeqCst);
    let caller = j.clone();
    let err = on_thread(move || {
        let lsn = caller.append(b"its sync fails").unwrap();
        caller.sync_through(lsn).unwrap_err()
    })
    .await;
    assert!(err.is_poisoned(), "{err}");
    assert_eq!(err.os_error().and_then(|e| e.raw_os_error()), Some(libc::EIO), "{err}");
    assert!(err.to_string().contains(".tlog") && err.to_string().contains("LSN"), "{err}");
    assert_eq!(j.durable_lsn(), durable_before, "a failed sync covers nothing");
    assert!(j.stats().poisoned);
    let caller = j.clone();
    assert!(on_thread(move || caller.append(b"later")).await.unwrap_err().is_poisoned());
    assert!(j.append_async(b"later").await.unwrap_err().is_poisoned());
    assert!(j.close().await.unwrap_err().is_poisoned());
    let j = common::reopen_dropped(j, dir.path(), &opts).await;
    let (records, _) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
    let kept: std::collections::HashMap<u64, &[u8]> = records.iter().map(|r| (r.lsn().as_u64(), r.payload())).collect();
    for (lsn, payload) in &acked {
        assert_eq!(kept.get(lsn).copied(), Some(&payload[..]), "acknowledged record at {lsn}");
    }
    j.close().await.unwrap();
}

/// A write that fails under a blocking leader poisons the journal; the
/// caller gets the error at the record's LSN, and nothing of it is written.
async fn a_blocking_leaders_failed_write_poisons_and_names_the_record(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    let j = Seams::new().faults(&plan).open(dir.path(), opts.clone()).await.unwrap();
    let acked = blocking_appends(&j, "before", 5).await;
    plan.fail_write_nth.store(plan.writes_seen.load(SeqCst) + 1, SeqCst);
    let written = j.written_lsn();
    let caller = j.clone();
    let err = on_thread(move || caller.append(b"its write fails").unwrap_err()).await;
    assert!(err.is_poisoned(), "{err}");
    assert_eq!(err.os_error().and_then(|e| e.raw_os_error()), Some(libc::EIO), "{err}");
    let at = format!("at LSN {written}");
    assert!(err.to_string().contains(".tlog") && err.to_string().contains(&at), "{at}: {err}");
    assert_eq!(j.written_lsn(), written, "nothing of the failed write counts as written");
    let (records, _) = j.read_batch(Lsn::ZERO, 100).unwrap();
    let read: Vec<(u64, Vec<u8>)> = records.into_iter().map(|r| (r.lsn().as_u64(), r.into_payload())).collect();
    assert_eq!(read, acked);
    let caller = j.clone();
    let lsn = Lsn::new(acked.last().unwrap().0);
    assert!(on_thread(move || caller.sync_through(lsn)).await.unwrap_err().is_poisoned());
    assert!(j.close().await.unwrap_err().is_poisoned());
}

/// A plain sync that a blocking leader ran and that reports no result
/// (cancelled) poisons the journal; it never leaves the caller waiting.
async fn a_blocking_leaders_cancelled_sync_poisons_instead_of_hanging(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    let j = Seams::new().faults(&plan).open(dir.path(), opts.clone()).await.unwrap();
    blocking_appends(&j, "before", 3).await;
    plan.cancel_sync_nth.store(plan.plain_syncs_seen.load(SeqCst) + 1, SeqCst);
    let caller = j.clone();
    let err = on_thread(move || {
        let lsn = caller.append(b"its sync is cancelled").unwrap();
        caller.sync_through(lsn).unwrap_err()
    })
    .await;
    assert!(err.is_poisoned(), "{err}");
    assert!(err.to_string().contains("cancelled"), "{err}");
    assert!(j.close().await.unwrap_err().is_poisoned());
}

/// A tracing subscriber that panics on every error event: on the leader's
/// thread alone, it turns the leader's "sync stalled" report into a panic
/// in the middle of its round.
struct PanicOnError;

impl tracing::Subscriber for PanicOnError {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        if *e.metadata().level() == tracing::Level::ERROR {
            panic!("the test's subscriber panics on an error event");
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A blocking caller that panics while leading its round hands the lease
/// back marked failed: the journal is poisoned (no hang of the writer,
/// `close` or later appenders), and what was durable before reopens.
async fn a_blocking_leader_that_panics_poisons_instead_of_wedging(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    let opts = opts.stall_threshold(std::time::Duration::ZERO);
    let j = Seams::new().faults(&plan).open(dir.path(), opts.clone()).await.unwrap();
    let mut acked = blocking_appends(&j, "before", 3).await;
    // A caller leads only once the writer, idle, has lent its round; one
    // that finds the writer still busy is served by it and does not panic.
    // Such a caller is tried again, a bounded number of times.
    let mut panicked = false;
    for attempt in 0..200 {
        let payload = format!("attempt {attempt}").into_bytes();
        let (caller, sent) = (j.clone(), payload.clone());
        let leader = tokio::task::spawn_blocking(move || {
            tracing::subscriber::with_default(PanicOnError, || {
                let lsn = caller.append(&sent).unwrap();
                caller.sync_through(lsn).map(|()| lsn) // if it leads: reports the "stall", and panics
            })
        });
        match within(60, "the leader", leader).await {
            Err(_) => {
                panicked = true;
                break;
            }
            Ok(lsn) => acked.push((lsn.unwrap().as_u64(), payload)),
        }
        tokio::task::yield_now().await; // lets a current-thread runtime's writer lend
    }
    assert!(panicked, "no blocking caller led a round in 200 attempts");
    let err = within(30, "an append after the panic", j.append_async(b"after")).await.unwrap_err();
    assert!(err.is_poisoned() && err.to_string().contains("panicked while leading"), "{err}");
    assert!(within(30, "close after the panic", j.close()).await.unwrap_err().is_poisoned());
    let j = common::reopen_dropped(j, dir.path(), &opts).await;
    let (records, _) = j.read_batch(Lsn::ZERO, 100).unwrap();
    let kept: std::collections::HashMap<u64, &[u8]> = records.iter().map(|r| (r.lsn().as_u64(), r.payload())).collect();
    for (lsn, payload) in &acked {
        assert_eq!(kept.get(lsn).copied(), Some(&payload[..]), "acknowledged record at {lsn}");
    }
    j.close().await.unwrap();
}

/// Appends durably from its destructor: what a guard recording an aborted
/// operation does while its thread unwinds from a panic of its own.
struct AbortRecord(Journal);

impl Drop for AbortRecord {
    fn drop(&mut self) {
        self.0.append_durable(b"aborted").expect("the destructor's append");
    }
}

/// A blocking append made from a destructor while the caller's thread is
/// already unwinding leads its round like any other: the panic was not the
/// leader's, and the journal is not poisoned for it.
async fn a_blocking_append_from_a_destructor_while_unwinding_does_not_poison(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    let j = Seams::new().faults(&plan).open(dir.path(), opts.clone()).await.unwrap();
    blocking_appends(&j, "before", 3).await;
    // Tried until the destructor's append leads (see the panicking-leader
    // test: a caller that finds the writer busy is served by it).
    let mut led = false;
    for _ in 0..200 {
        let (caller, plan) = (j.clone(), plan.clone());
        led = on_thread(move || {
            let before = plan.performed_by_callers.load(SeqCst);
            let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _guard = AbortRecord(caller);
                panic!("the caller's own panic");
            }));
            assert!(unwound.is_err());
            plan.performed_by_callers.load(SeqCst) > before
        })
        .await;
        if led {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(led, "no destructor's append led its round in 200 attempts");
    let lsn = j.append_durable_async(b"after").await.expect("the journal is not poisoned");
    assert!(j.durable_lsn() >= lsn);
    j.close().await.unwrap();
}

/// A runtime shut down while an op never completes (a wedged device; here
/// a write whose completion is held for a minute, with no `sync_timeout`)
/// returns at once: the writer's task, cancelled by the shutdown, hands the
/// op's buffers to a thread of its own instead of waiting for the kernel on
/// a tokio worker. The directory stays locked until the op ends.
#[test]
fn a_runtime_shut_down_beside_a_wedged_op_does_not_wait_for_it() {
    use tidelog::testing::Capability;
    use tidelog::SubstrateChoice;
    for choice in [SubstrateChoice::Blocking, SubstrateChoice::IoUring] {
        if choice == SubstrateChoice::IoUring {
            if let Err(why) = Capability::IoUring.present() {
                tidelog::testing::skip(Capability::IoUring, "a runtime shut down beside a wedged op", &why);
                continue;
            }
        }
        for multi in [true, false] {
            let what = format!("{choice:?}, multi-thread {multi}");
            let dir = tempfile::tempdir().unwrap();
            let plan = Arc::new(FaultPlan::default());
            plan.write_delay_ms.store(60_000, SeqCst);
            let rt = if multi {
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
            } else {
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
            };
            let opts = JournalOptions::new().substrate(choice);
            rt.block_on(async {
                let j = Seams::new().faults(&plan).open(dir.path(), opts.clone()).await.unwrap();
                let appender = tokio::spawn(async move { j.append_async(b"wedged").await });
                within(10, "the write's completion held back", async {
                    while plan.writes_seen.load(SeqCst) == 0 {
                        tokio::task::yield_now().await;
                    }
                })
                .await;
                assert!(!appender.is_finished(), "{what}: the write's completion is held");
            });
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                drop(rt);
                let _ = tx.send(());
            });
            rx.recv_timeout(std::time::Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("{what}: dropping the runtime waited for the wedged write"));
            let reopen = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let locked = reopen.block_on(Journal::open(dir.path(), opts));
            assert!(
                matches!(locked, Err(Error::Locked { .. })),
                "{what}: the lock follows the wedged write: {locked:?}"
            );
        }
    }
}
