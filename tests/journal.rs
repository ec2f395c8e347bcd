//! Journal scenarios, each on both substrates and both runtime flavours.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use common::{read_all, within};
use tidelog::testing::{FaultPlan, Seams};
use tidelog::{Error, Journal, JournalOptions, Lsn, SyncPolicy};

matrix!(
    append_sync_reopen_reads_back_in_order,
    sixty_four_tasks_durable_appends_survive_reopen_exactly_once,
    closed_loop_appenders_share_each_round_rather_than_alternate,
    blocking_threads_mixed_with_async_tasks,
    a_lone_blocking_caller_leads_its_rounds_across_rollovers,
    close_answers_blocking_leaders_and_keeps_what_they_were_told,
    blocking_threads_racing_to_lead_across_rollovers_lose_nothing,
    atomic_batches_read_back_whole,
    rollover_across_many_small_segments,
    close_then_every_call_is_closed,
    drop_without_close_keeps_written_records,
    read_batch_paginates,
    submit_tickets_resolve_durable_and_dropped_tickets_keep_records,
    owned_payloads_interleave_with_copied_records_across_rollovers,
);

async fn append_sync_reopen_reads_back_in_order(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    assert_eq!(j.next_lsn(), Lsn::ZERO);
    let mut lsns = Vec::new();
    for i in 0..100u32 {
        lsns.push(j.append_async(format!("record {i}")).await.unwrap());
    }
    assert!(lsns.windows(2).all(|w| w[0] < w[1]));
    assert!(j.written_lsn() >= *lsns.last().unwrap());
    j.sync_through_async(*lsns.last().unwrap()).await.unwrap();
    assert!(j.durable_lsn() >= *lsns.last().unwrap());
    let stats = j.stats();
    assert_eq!(stats.appends, 100);
    assert!(stats.syncs >= 1);
    assert_eq!(stats.substrate, j.substrate());
    // The matrix names its substrate; the stats say it was asked for.
    assert!(stats.substrate_reason.starts_with("asked for"), "{}", stats.substrate_reason);
    assert_eq!(j.storage_class(), tidelog::StorageClass::of(dir.path()).unwrap());
    j.close().await.unwrap();
    // The end is the last record's LSN, or past it by a padding frame with
    // direct I/O.
    let end = j.next_lsn();
    assert!(end >= *lsns.last().unwrap());

    let j = Journal::open(dir.path(), opts).await.unwrap();
    assert_eq!(j.recovery_report().end_lsn(), end);
    assert_eq!(j.recovery_report().truncated_bytes(), 0);
    let mut r = j.reader(Lsn::ZERO).unwrap();
    for (i, lsn) in lsns.iter().enumerate() {
        let rec = r.next_record().unwrap().expect("record present");
        assert_eq!(rec.payload(), format!("record {i}").as_bytes());
        assert_eq!(rec.lsn(), *lsn);
    }
    assert!(r.next_record().unwrap().is_none());
    // Reading from a record's LSN starts at the next record.
    let mut r = j.reader(lsns[49]).unwrap();
    assert_eq!(r.next_record().unwrap().unwrap().payload(), b"record 50");
    let next = j.append_async(b"after reopen").await.unwrap();
    assert!(next > *lsns.last().unwrap());
    j.close().await.unwrap();
}

async fn sixty_four_tasks_durable_appends_survive_reopen_exactly_once(opts: JournalOptions) {
    const TASKS: usize = 64;
    const PER_TASK: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let j = j.clone();
        handles.push(tokio::spawn(async move {
            let mut acked = Vec::with_capacity(PER_TASK);
            for i in 0..PER_TASK {
                let lsn = j.append_durable_async(format!("{t}:{i}")).await.unwrap();
                assert!(j.durable_lsn() >= lsn, "acknowledged before durable");
                acked.push(lsn);
            }
            acked
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(within(60, "appending task", h).await.unwrap());
    }
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), TASKS * PER_TASK, "LSNs are unique");
    let stats = j.stats();
    assert!(stats.records_per_sync_max > 1, "group commit shared syncs: {stats:?}");
    // No close: the acknowledged records are durable already.
    let records = within(30, "reopen", read_all_after_drop(j, dir.path(), opts)).await;
    assert_eq!(records.len(), TASKS * PER_TASK, "every acknowledged record exactly once");
    let mut next_per_task: HashMap<usize, usize> = HashMap::new();
    for (lsn, payload) in &records {
        assert!(unique.contains(&Lsn::new(*lsn)));
        let text = String::from_utf8(payload.clone()).unwrap();
        let (t, i) = text.split_once(':').unwrap();
        let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
        let expected = next_per_task.entry(t).or_insert(0);
        assert_eq!(i, *expected, "task {t} order kept");
        *expected += 1;
    }
}

/// Drops `j`, reopens its directory once the lock is released, and reads
/// every record.
async fn read_all_after_drop(j: Journal, dir: &std::path::Path, opts: JournalOptions) -> Vec<(u64, Vec<u8>)> {
    let j = common::reopen_dropped(j, dir, &opts).await;
    let (records, more) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
    assert!(!more);
    j.close().await.unwrap();
    records.into_iter().map(|r| (r.lsn().as_u64(), r.into_payload())).collect()
}

/// Tasks that each await their own durable append, again and again, all
/// end up in every round: the writer lets the tasks a round released append
/// before it starts the next. Without that, they split into two cohorts
/// that alternate between rounds for good, and a round carries about half
/// of them. Measured over the second half of the appends, 10 runs of the
/// six cells: 5.7-8.7 records per sync of 16 on the multi-thread and direct
/// cells without the rule, 12.3-15.9 with it (12.8 and up beside two busy
/// loops). On a current-thread runtime the tasks start in step and stay so
/// either way.
async fn closed_loop_appenders_share_each_round_rather_than_alternate(opts: JournalOptions) {
    const TASKS: usize = 16;
    const PER_TASK: usize = 250;
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts).await.unwrap();
    // Rounds are counted once half the appends are in: the start, when
    // the tasks come in one by one, is left out.
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let halfway = Arc::new(tokio::sync::Notify::new());
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let (j, done, halfway) = (j.clone(), done.clone(), halfway.clone());
        handles.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                j.append_durable_async(format!("{t}:{i}")).await.unwrap();
                if done.fetch_add(1, SeqCst) + 1 == TASKS * PER_TASK / 2 {
                    halfway.notify_one();
                }
            }
        }));
    }
    within(60, "half the appends", halfway.notified()).await;
    let half = j.stats();
    for h in handles {
        within(60, "appending task", h).await.unwrap();
    }
    let all = j.stats();
    assert_eq!(all.appends, (TASKS * PER_TASK) as u64);
    let per_sync = (all.appends - half.appends) as f64 / (all.syncs - half.syncs).max(1) as f64;
    assert!(
        per_sync >= 10.0,
        "rounds carry most of the {TASKS} writers, not half: {per_sync:.1} records per sync in the second half ({} syncs)",
        all.syncs - half.syncs
    );
    j.close().await.unwrap();
}

async fn blocking_threads_mixed_with_async_tasks(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts).await.unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let j = j.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let lsn = j.append(format!("thread {t} {i}")).unwrap();
                    j.sync_through(lsn).unwrap();
                    assert!(j.durable_lsn() >= lsn);
                }
            })
        })
        .collect();
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let j = j.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    j.append_durable_async(format!("task {t} {i}")).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        within(60, "async appender", t).await.unwrap();
    }
    let joined = tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| t.join().unwrap()));
    within(60, "blocking appenders", joined).await.unwrap();
    assert_eq!(j.stats().appends, 400);
    j.close().await.unwrap();
    assert_eq!(read_all(dir.path()).len(), 400);
}

async fn atomic_batches_read_back_whole(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts).await.unwrap();
    let lsns = j.append_batch_async(&[b"a".as_slice(), b"bb", b"ccc"]).await.unwrap();
    assert_eq!(lsns.len(), 3);
    assert!(lsns[0] < lsns[1] && lsns[1] < lsns[2]);
    assert!(j.append_batch_async::<&[u8]>(&[]).await.unwrap().is_empty());
    j.close().await.unwrap();
    let got = read_all(dir.path());
    let expect: Vec<(u64, Vec<u8>)> =
        lsns.iter().zip([&b"a"[..], b"bb", b"ccc"]).map(|(l, p)| (l.as_u64(), p.to_vec())).collect();
    assert_eq!(got, expect);
}

async fn rollover_across_many_small_segments(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let opts = opts.segment_size(1 << 20);
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    let payload = vec![7u8; 40_000];
    let mut last = Lsn::ZERO;
    for i in 0..120u32 {
        let mut p = payload.clone();
        p[..4].copy_from_slice(&i.to_le_bytes());
        last = j.append_async(&p).await.unwrap();
    }
    j.sync_through_async(last).await.unwrap();
    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tlog"));
    assert!(segments.count() >= 4, "120 × 40 KB spans several 1 MiB segments");
    // A live reader crosses every rollover.
    let mut r = j.reader(Lsn::ZERO).unwrap();
    for i in 0..120u32 {
        let rec = r.next_record().unwrap().expect("record");
        assert_eq!(&rec.payload()[..4], &i.to_le_bytes());
    }
    j.close().await.unwrap();
    let end = j.next_lsn();
    assert!(end >= last, "the end is past the last record (by padding with direct I/O)");
    let j = Journal::open(dir.path(), opts).await.unwrap();
    assert_eq!(j.recovery_report().end_lsn(), end);
    assert_eq!(j.read_batch(Lsn::ZERO, 1000).unwrap().0.len(), 120);
    j.close().await.unwrap();
    assert!(tidelog::verify(dir.path()).unwrap().is_clean());
}

async fn close_then_every_call_is_closed(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    let other = j.clone();
    let lsn = j.append_async(b"x").await.unwrap();
    j.close().await.unwrap();
    assert!(j.durable_lsn() >= lsn, "close syncs");
    assert!(matches!(other.append_async(b"y").await, Err(Error::Closed)));
    assert!(matches!(other.append(b"y"), Err(Error::Closed)));
    assert!(matches!(other.submit(b"y"), Err(Error::Closed)));
    assert!(matches!(other.sync_through_async(lsn).await, Err(Error::Closed)));
    assert!(matches!(other.close().await, Err(Error::Closed)));
    // The lock was released: a new journal opens.
    let j = Journal::open(dir.path(), opts).await.unwrap();
    j.close().await.unwrap();
}

async fn drop_without_close_keeps_written_records(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    let mut written = Vec::new();
    for i in 0..10 {
        let payload = format!("{i}").into_bytes();
        written.push((j.append_async(&payload).await.unwrap().as_u64(), payload));
    }
    let records = within(30, "reopen", read_all_after_drop(j, dir.path(), opts)).await;
    assert_eq!(records, written, "every written record, at its LSN");
}

async fn read_batch_paginates(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts).await.unwrap();
    for i in 0..25 {
        j.append_async(format!("{i}")).await.unwrap();
    }
    let mut from = Lsn::ZERO;
    let mut pages = Vec::new();
    loop {
        let (page, more) = j.read_batch(from, 10).unwrap();
        pages.push(page.len());
        if let Some(last) = page.last() {
            from = last.lsn();
        }
        if !more {
            break;
        }
    }
    assert_eq!(pages, vec![10, 10, 5]);
    // LSN 3 is inside the first frame: no record starts there.
    let mid = j.reader(Lsn::new(3)).and_then(|mut r| r.next_record());
    assert!(matches!(mid, Err(Error::InvalidLsn { .. })), "{mid:?}");
    j.close().await.unwrap();
}

async fn submit_tickets_resolve_durable_and_dropped_tickets_keep_records(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    let tickets: Vec<_> = (0..1000).map(|i| j.submit(format!("t{i}")).unwrap()).collect();
    let last = tickets.last().unwrap().lsn();
    let dropped = j.submit(b"dropped ticket").unwrap();
    let mut expected = vec![];
    for (i, t) in tickets.into_iter().enumerate() {
        let lsn = within(30, "ticket", t).await.unwrap();
        assert!(j.durable_lsn() >= lsn);
        expected.push((lsn.as_u64(), format!("t{i}").into_bytes()));
    }
    expected.push((dropped.lsn().as_u64(), b"dropped ticket".to_vec()));
    drop(dropped);
    assert!(j.durable_lsn() >= last);
    let records = within(30, "reopen", read_all_after_drop(j, dir.path(), opts)).await;
    assert_eq!(records, expected, "every ticket's record at its LSN, the dropped one too");
}

/// Record `i` of task `t`, `len` bytes: its task and index, then a fill
/// that tells a torn or misplaced byte.
fn owned_record(t: u32, i: u32, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len).map(|k| (k as u32 ^ (t * 131 + i)) as u8).collect();
    v[..4].copy_from_slice(&t.to_le_bytes());
    v[4..8].copy_from_slice(&i.to_le_bytes());
    v
}

fn check_owned_record(payload: &[u8]) {
    let t = u32::from_le_bytes(payload[..4].try_into().unwrap());
    let i = u32::from_le_bytes(payload[4..8].try_into().unwrap());
    assert!(payload == owned_record(t, i, payload.len()).as_slice(), "record {i} of task {t} came back altered");
}

/// Large payloads handed over as `Vec`s (written from them, uncopied, on
/// buffered I/O) beside copied records and batches, from four tasks,
/// across 1 MiB segments: a live reader never sees a torn frame, and
/// every record reads back whole after a reopen.
async fn owned_payloads_interleave_with_copied_records_across_rollovers(opts: JournalOptions) {
    const TASKS: u32 = 4;
    const PER_TASK: u32 = 40;
    let dir = tempfile::tempdir().unwrap();
    let opts = opts.segment_size(1 << 20);
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (j, done) = (j.clone(), done.clone());
        tokio::spawn(async move {
            let mut passes = 0;
            while !done.load(std::sync::atomic::Ordering::Acquire) || passes == 0 {
                let (records, _) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
                assert!(records.last().is_none_or(|r| r.lsn() <= j.written_lsn()));
                records.iter().for_each(|r| check_owned_record(r.payload()));
                passes += 1;
                tokio::task::yield_now().await;
            }
        })
    };
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let j = j.clone();
        handles.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..PER_TASK {
                let len = [64 << 10, 100, 300_003, 150_001][i as usize % 4];
                let rec = owned_record(t, i, len);
                let lsn = match i % 3 {
                    0 => j.append_owned_async(rec.clone()).await.unwrap(),
                    1 => j.append_async(&rec).await.unwrap(),
                    _ => j.submit_owned(rec.clone()).unwrap().await.unwrap(),
                };
                assert!(j.written_lsn() >= lsn);
                acked.push((lsn.as_u64(), rec));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for h in handles {
        acked.extend(within(60, "appending task", h).await.unwrap());
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    within(60, "live reader", reader).await.unwrap();
    let stats = j.stats();
    assert!(stats.overlapped_writes > 0, "large writes went two at a time: {stats:?}");
    // Sizes are checked before anything is placed.
    let too_big = j.append_owned_async(vec![0; (1 << 20) + 1]).await.unwrap_err();
    assert!(matches!(too_big, Error::RecordTooLarge { .. }), "{too_big}");
    let end = j.next_lsn();
    j.sync_through_async(end).await.unwrap();
    acked.sort();
    let records = within(30, "reopen", read_all_after_drop(j, dir.path(), opts)).await;
    assert_eq!(records.len(), acked.len(), "every record exactly once");
    for ((lsn, payload), (acked_lsn, rec)) in records.iter().zip(&acked) {
        assert_eq!((lsn, payload), (acked_lsn, rec), "the record at {lsn}");
    }
}

/// One thread on the blocking API, with nothing else running: it leads its
/// own rounds (the fault seam counts the ops it performs), across
/// rollovers (which go back to the writer), under `OnDemand` (append, then
/// sync_through; or append_durable) and `Always` (append alone is
/// durable). Every record reopens, exactly.
async fn a_lone_blocking_caller_leads_its_rounds_across_rollovers(opts: JournalOptions) {
    for (policy, one_call) in [(SyncPolicy::OnDemand, false), (SyncPolicy::OnDemand, true), (SyncPolicy::Always, false)]
    {
        let dir = tempfile::tempdir().unwrap();
        let opts = opts.clone().segment_size(1 << 20).sync_policy(policy);
        let plan = std::sync::Arc::new(FaultPlan::default());
        let j = Seams::new().faults(&plan).open(dir.path(), opts.clone()).await.unwrap();
        let caller = j.clone();
        let thread = tokio::task::spawn_blocking(move || {
            let mut acked = Vec::new();
            for i in 0..300usize {
                let payload = format!("{i}:{}", "z".repeat(i * 37 % 9000)).into_bytes();
                let lsn =
                    if one_call { caller.append_durable(&payload).unwrap() } else { caller.append(&payload).unwrap() };
                if policy == SyncPolicy::OnDemand && !one_call {
                    caller.sync_through(lsn).unwrap();
                }
                assert!(caller.durable_lsn() >= lsn, "{policy:?}: {i} returned before it was durable");
                acked.push((lsn.as_u64(), payload));
            }
            acked
        });
        let acked = within(120, "a blocking caller", thread).await.unwrap();
        let led = plan.performed_by_callers.load(std::sync::atomic::Ordering::SeqCst);
        assert!(led > 100, "{policy:?}: a lone blocking caller led only {led} ops: the writer ran its rounds");
        let stats = j.stats();
        assert!(stats.syncs >= 100 && stats.syncs <= 330, "{policy:?}: {} syncs for 300 records", stats.syncs);
        let segments = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tlog"));
        assert!(segments.count() >= 2, "the records must span a rollover");
        j.close().await.unwrap();
        assert_eq!(read_all(dir.path()), acked, "{policy:?}: exactly the acknowledged records, in order");
    }
}

/// `close` while blocking callers lead rounds: each caller is answered
/// (success, or `Closed`), nobody hangs, and every record a caller was told
/// is durable reopens.
async fn close_answers_blocking_leaders_and_keeps_what_they_were_told(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let (j, tx) = (j.clone(), tx.clone());
            tokio::task::spawn_blocking(move || {
                let mut durable = Vec::new();
                for i in 0.. {
                    let payload = format!("thread {t} record {i}").into_bytes();
                    let result = j.append(&payload).and_then(|lsn| j.sync_through(lsn).map(|()| lsn));
                    match result {
                        Ok(lsn) => {
                            durable.push((lsn.as_u64(), payload));
                            let _ = tx.send(());
                        }
                        Err(Error::Closed) => return durable,
                        Err(e) => panic!("a blocking caller got {e} at close"),
                    }
                }
                unreachable!()
            })
        })
        .collect();
    drop(tx);
    for _ in 0..150 {
        within(60, "blocking callers making progress", rx.recv()).await.expect("a caller gave up");
    }
    within(60, "close", j.close()).await.unwrap();
    let mut told = Vec::new();
    for t in threads {
        told.extend(within(60, "a blocking caller answered after close", t).await.unwrap());
    }
    told.sort();
    let on_disk: HashMap<u64, Vec<u8>> = read_all(dir.path()).into_iter().collect();
    for (lsn, payload) in &told {
        assert_eq!(on_disk.get(lsn), Some(payload), "a record told durable at {lsn} did not reopen");
    }
    assert!(told.len() >= 150);
}

/// Four threads on the blocking API racing for the lead, with a rollover
/// every few dozen records (the leader hands those back to the writer):
/// every record reopens, exactly, in LSN order.
async fn blocking_threads_racing_to_lead_across_rollovers_lose_nothing(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let opts = opts.segment_size(1 << 20);
    let plan = std::sync::Arc::new(FaultPlan::default());
    let j = Seams::new().faults(&plan).open(dir.path(), opts).await.unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let j = j.clone();
            tokio::task::spawn_blocking(move || {
                (0..150usize)
                    .map(|i| {
                        let payload = format!("{t}/{i}:{}", "r".repeat((t * 7919 + i * 104_729) % 12_000)).into_bytes();
                        let lsn = j.append(&payload).unwrap();
                        if i % 3 != 2 {
                            j.sync_through(lsn).unwrap();
                        }
                        (lsn.as_u64(), payload)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in threads {
        acked.extend(within(120, "a blocking caller", t).await.unwrap());
    }
    j.close().await.unwrap();
    acked.sort();
    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tlog"))
        .count();
    assert!(segments >= 3, "the records must span rollovers ({segments} segments)");
    assert!(plan.performed_by_callers.load(std::sync::atomic::Ordering::SeqCst) > 0, "no thread ever led");
    assert_eq!(read_all(dir.path()), acked, "exactly the appended records");
}
