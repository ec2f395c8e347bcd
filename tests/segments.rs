//! Segment lifecycle and tailing, on both substrates and both runtime
//! flavours: truncation (with readers holding old segments, and after a crash
//! midway), subscribers following the durable tail across rollovers.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use common::within;
use futures::{FutureExt, StreamExt};
use tidelog::testing::{FaultPlan, Seams};
use tidelog::{Error, Journal, JournalOptions, Lsn, Preallocate, RecoveryMode};

matrix!(
    truncate_before_deletes_only_whole_segments_below,
    truncate_waits_for_a_reader_holding_an_old_segment,
    reopen_after_a_crash_midway_through_truncation,
    subscriber_sees_every_durable_record_once_in_order_while_32_tasks_append,
    subscriber_never_causes_a_sync_and_follows_the_ones_that_happen,
    subscriber_ends_cleanly_on_close_and_with_the_error_on_poison,
    a_subscriber_delivers_everything_durable_at_close_then_ends,
    a_lone_segment_whose_header_never_became_durable_is_remade_at_its_base,
    truncation_at_a_new_segment_waits_until_its_header_and_name_are_durable,
    reopening_syncs_the_directory_before_acknowledging_anything,
    a_torn_header_in_a_never_used_segment_is_dropped_and_remade,
    a_blank_header_over_unacknowledged_records_is_cut_or_corrupt,
    a_damaged_header_over_records_is_corrupt,
    a_new_segment_is_named_only_after_the_sealed_one_is_durable,
    every_preallocation_mode_rolls_over_and_reads_back,
    replay_delivers_what_a_reader_reads_in_order,
);

async fn replay_delivers_what_a_reader_reads_in_order(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.segment_size(SEGMENT)).await.unwrap();
    let mut lsns = fill(&j, 5).await;
    lsns.extend(j.append_batch_async(&[b"batch a".as_slice(), b"batch b", b"batch c"]).await.unwrap());
    j.close().await.unwrap();
    let expected = common::read_all(dir.path());
    assert_eq!(expected.len(), lsns.len());
    let mut got = Vec::new();
    let report = tidelog::replay(dir.path(), Lsn::ZERO, |r| {
        got.push((r.lsn().as_u64(), r.payload().to_vec()));
        Ok(())
    })
    .unwrap();
    assert!(got == expected, "same records, same order, across five segments");
    assert_eq!(report.records, lsns.len() as u64);
    assert_eq!(report.end_lsn, *lsns.last().unwrap());
    // Borrowed payloads: the same records, each starting where the one
    // before it ended.
    let (mut borrowed, mut prev_end) = (Vec::new(), None);
    let report_ref = tidelog::replay_ref(dir.path(), Lsn::ZERO, |r| {
        assert!(prev_end.is_none_or(|e| r.start_lsn() >= e), "in order");
        prev_end = Some(r.lsn());
        assert_eq!(r.to_record().payload(), r.payload());
        borrowed.push((r.lsn().as_u64(), r.payload().to_vec()));
        Ok(())
    })
    .unwrap();
    assert!(borrowed == expected, "replay_ref delivers what replay does");
    assert_eq!(report_ref, report);
    // From a record's LSN: the records after it.
    let mid = lsns[lsns.len() / 2];
    let mut after = Vec::new();
    tidelog::replay(dir.path(), mid, |r| {
        after.push(r.lsn());
        Ok(())
    })
    .unwrap();
    assert!(after == lsns[lsns.len() / 2 + 1..], "from the middle");
    // The callback's error stops the replay and comes back.
    let mut seen = 0;
    let err = tidelog::replay(dir.path(), Lsn::ZERO, |_| {
        seen += 1;
        if seen == 10 {
            return Err(Error::InvalidOptions("stop here".into()));
        }
        Ok(())
    })
    .unwrap_err();
    assert!(matches!(err, Error::InvalidOptions(_)) && seen == 10, "{err}");
    // A torn tail on the last segment ends the replay: the unfinished batch
    // is not delivered.
    let name = segment_files(dir.path()).last().unwrap().clone();
    let base: u64 = base_of(&name);
    let end = 4096 + lsns.last().unwrap().as_u64() - base;
    std::fs::OpenOptions::new().write(true).open(dir.path().join(&name)).unwrap().set_len(end - 5).unwrap();
    let mut torn = Vec::new();
    tidelog::replay(dir.path(), Lsn::ZERO, |r| {
        torn.push(r.lsn());
        Ok(())
    })
    .unwrap();
    assert!(torn == lsns[..lsns.len() - 3], "all or none of the batch: {} of {}", torn.len(), lsns.len());
    // Damage inside a sealed segment is Corrupt, naming the file.
    let first = dir.path().join(&segment_files(dir.path())[0]);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[4096 + 30_000] ^= 0xFF;
    std::fs::write(&first, &bytes).unwrap();
    let err = tidelog::replay(dir.path(), Lsn::ZERO, |_| Ok(())).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }) && err.to_string().contains(".tlog"), "{err}");
}

fn segment_path(dir: &std::path::Path, base: u64) -> std::path::PathBuf {
    dir.join(format!("{base:020}.tlog"))
}

/// A rollover named the next segment, and the crash came before its header
/// (or anything else) reached the disk.
async fn a_torn_header_in_a_never_used_segment_is_dropped_and_remade(opts: JournalOptions) {
    let opts = opts.segment_size(SEGMENT);
    let (dir, lsns, end) = closed_journal(&opts, 2).await;
    let end = end.as_u64();
    let header = std::fs::read(dir.path().join(&segment_files(dir.path())[0])).unwrap()[..4096].to_vec();
    let mut torn = header.clone();
    torn[512..].fill(0); // one sector of a header that is not even this segment's
    torn.resize(64 << 10, 0);
    std::fs::write(segment_path(dir.path(), end), &torn).unwrap();
    for mode in [RecoveryMode::PointInTime, RecoveryMode::AbsoluteConsistency] {
        let j = Journal::open(dir.path(), opts.clone().recovery(mode)).await.unwrap();
        assert_eq!(j.recovery_report().end_lsn(), Lsn::new(end));
        assert_eq!(j.recovery_report().truncated_bytes(), 0);
        assert!(!segment_path(dir.path(), end).exists(), "the never-used segment is dropped");
        j.close().await.unwrap();
        std::fs::write(segment_path(dir.path(), end), &torn).unwrap();
    }
    std::fs::remove_file(segment_path(dir.path(), end)).unwrap();
    let j = Journal::open(dir.path(), opts).await.unwrap();
    let more = fill(&j, 3).await;
    j.close().await.unwrap();
    let all = common::read_all(dir.path());
    assert_eq!(all.len(), lsns.len() + more.len(), "the segment is made again and used");
    assert!(tidelog::verify(dir.path()).unwrap().is_clean());
}

/// The crash came after records were written into a new segment but before
/// the rollover's seal made its header durable: none of them was
/// acknowledged as durable, so PointInTime cuts them (keeping a sidecar).
async fn a_blank_header_over_unacknowledged_records_is_cut_or_corrupt(opts: JournalOptions) {
    let opts = opts.segment_size(SEGMENT);
    let (dir, lsns, _) = closed_journal(&opts, 3).await;
    let files = segment_files(dir.path());
    let last = dir.path().join(files.last().unwrap());
    let last_base: u64 = base_of(files.last().unwrap());
    let mut bytes = std::fs::read(&last).unwrap();
    bytes[..4096].fill(0);
    std::fs::write(&last, &bytes).unwrap();
    let err = Journal::open(dir.path(), opts.clone().recovery(RecoveryMode::AbsoluteConsistency)).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(files.last().unwrap()), "names the file: {err}");
    let j = Journal::open(dir.path(), opts).await.unwrap();
    let report = j.recovery_report().clone();
    assert_eq!(report.end_lsn(), Lsn::new(last_base));
    assert!(report.truncated_bytes() > 0);
    assert!(report.sidecar().unwrap().exists());
    let kept = lsns.iter().filter(|l| l.as_u64() <= last_base).count();
    let (records, _) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
    assert_eq!(records.len(), kept);
    j.close().await.unwrap();
}

/// Found by the crash-state enumeration (`tests/crash_states.rs`): when the
/// sealed segment was synced in the seal, beside the new segment's first
/// writes, a crash could keep the new segment's name (the rename persists
/// on its own) while losing the sealed segment's last records, and readers
/// then met a hole. The sealed segment must be durable before the new one
/// is named: in the recorded history, every segment's name appears only
/// after a completed `fdatasync` of the segment before it, issued after that
/// segment's last write.
async fn a_new_segment_is_named_only_after_the_sealed_one_is_durable(opts: JournalOptions) {
    use tidelog::testing::{Event, Recorder};
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(dir.path());
    let j = Seams::new().record(&rec).open(dir.path(), opts.segment_size(SEGMENT)).await.unwrap();
    fill(&j, 3).await;
    j.close().await.unwrap();
    let events = rec.events();
    let name_of = |base: u64| format!("{base:020}.tlog");
    let bases: Vec<u64> = segment_files(dir.path()).iter().map(|n| base_of(n)).collect();
    assert!(bases.len() >= 3, "{bases:?}");
    for pair in bases.windows(2) {
        let (sealed, next) = (name_of(pair[0]), name_of(pair[1]));
        let named = events.iter().position(|e| e.names.iter().any(|(n, _)| *n == next)).expect("the segment is named");
        let file = events[named].names.iter().find(|(n, _)| *n == sealed).expect("sealed segment listed").1;
        let last_write = events[..named]
            .iter()
            .rposition(|e| matches!(&e.event, Event::Write { file: f, .. } if *f == file))
            .expect("the sealed segment was written");
        let synced = events[last_write..named].iter().any(|e| match e.event {
            Event::SyncStart { id, file: f, .. } if f == file => events[last_write..named]
                .iter()
                .any(|d| matches!(d.event, Event::SyncDone { id: done, ok: true } if done == id)),
            _ => false,
        });
        assert!(synced, "{next} was named before {sealed} was synced after its last write");
    }
}

async fn a_damaged_header_over_records_is_corrupt(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let opts = opts.segment_size(SEGMENT);
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    fill(&j, 2).await;
    j.close().await.unwrap();
    let last = dir.path().join(segment_files(dir.path()).last().unwrap());
    let mut bytes = std::fs::read(&last).unwrap();
    bytes[..8].copy_from_slice(b"GARBAGE!");
    std::fs::write(&last, &bytes).unwrap();
    for mode in [RecoveryMode::PointInTime, RecoveryMode::AbsoluteConsistency] {
        let err = Journal::open(dir.path(), opts.clone().recovery(mode)).await.unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{mode:?}: {err}");
        assert!(err.to_string().contains(".tlog"), "names the file: {err}");
    }
    assert!(last.exists(), "nothing is deleted when it may hold durable records");
}

async fn every_preallocation_mode_rolls_over_and_reads_back(opts: JournalOptions) {
    for how in [Preallocate::None, Preallocate::Fallocate, Preallocate::Zero] {
        let dir = tempfile::tempdir().unwrap();
        let opts = opts.clone().segment_size(SEGMENT).preallocate(how);
        let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
        let lsns = fill(&j, 3).await;
        j.close().await.unwrap();
        let end = j.next_lsn();
        assert!(tidelog::verify(dir.path()).unwrap().is_clean(), "{how:?}");
        let j = Journal::open(dir.path(), opts).await.unwrap();
        assert_eq!(j.recovery_report().end_lsn(), end, "{how:?}");
        let (records, _) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
        assert_eq!(records.iter().map(|r| r.lsn()).collect::<Vec<_>>(), lsns, "{how:?}");
        j.close().await.unwrap();
        let stray: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains("tmp"))
            .collect();
        assert!(stray.is_empty(), "close leaves no spare behind: {stray:?}");
    }
}

const SEGMENT: u64 = 1 << 20;

fn segment_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tlog"))
        .collect();
    names.sort();
    names
}

/// The base LSN in a segment file name.
fn base_of(name: &str) -> u64 {
    name.trim_end_matches(".tlog").parse().unwrap()
}

/// A closed journal in a new temp directory, spanning `segments` files.
/// A closed journal spanning `segments` files: its directory, every record
/// LSN, and its end (past the last record by a padding frame with direct I/O).
async fn closed_journal(opts: &JournalOptions, segments: usize) -> (tempfile::TempDir, Vec<Lsn>, Lsn) {
    let dir = tempfile::tempdir().unwrap();
    let (lsns, end) = closed_journal_in(dir.path(), opts, segments).await;
    (dir, lsns, end)
}

/// [`closed_journal`] in a directory of the caller's.
async fn closed_journal_in(dir: &std::path::Path, opts: &JournalOptions, segments: usize) -> (Vec<Lsn>, Lsn) {
    let j = Journal::open(dir, opts.clone()).await.unwrap();
    let lsns = fill(&j, segments).await;
    j.close().await.unwrap();
    (lsns, j.next_lsn())
}

/// Appends 4 KiB records until the journal spans `segments` files; returns
/// every LSN.
async fn fill(j: &Journal, segments: usize) -> Vec<Lsn> {
    let mut lsns = Vec::new();
    let mut i = 0u32;
    while segment_files(j.dir()).len() < segments {
        let mut payload = vec![(i % 251) as u8; 4096];
        payload[..4].copy_from_slice(&i.to_le_bytes());
        lsns.push(j.append_async(payload).await.unwrap());
        i += 1;
    }
    // One more record, so the last segment is not empty.
    lsns.push(j.append_async(vec![0xEEu8; 4096]).await.unwrap());
    j.sync_through_async(*lsns.last().unwrap()).await.unwrap();
    lsns
}

async fn truncate_before_deletes_only_whole_segments_below(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let opts = opts.segment_size(SEGMENT);
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    let lsns = fill(&j, 4).await;
    let before = segment_files(dir.path());
    assert_eq!(before.len(), 4);
    let third_base: u64 = base_of(&before[2]);
    // An LSN inside the third segment: the first two go, the third stays.
    let cut = *lsns.iter().find(|l| l.as_u64() > third_base).unwrap();
    j.truncate_before(cut).await.unwrap();
    assert_eq!(segment_files(dir.path()), before[2..].to_vec());
    // Truncating again below the first kept segment does nothing.
    j.truncate_before(Lsn::new(third_base)).await.unwrap();
    assert_eq!(segment_files(dir.path()).len(), 2);
    // Readers start at the oldest retained record; older LSNs are refused.
    let (records, _) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
    assert_eq!(records.first().unwrap().start_lsn(), Lsn::new(third_base));
    assert_eq!(records.last().unwrap().lsn(), *lsns.last().unwrap());
    let err = j.reader(lsns[0]).unwrap_err();
    assert!(matches!(err, Error::InvalidLsn { .. }), "{err}");
    // Beyond the end is refused, never a panic.
    let err = j.truncate_before(Lsn::new(u64::MAX)).await.unwrap_err();
    assert!(matches!(err, Error::InvalidLsn { .. }), "{err}");
    j.close().await.unwrap();
    let j = Journal::open(dir.path(), opts).await.unwrap();
    let (after, _) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
    assert_eq!(after, records, "reopen sees the same retained records");
    j.append_durable_async(b"more").await.unwrap();
    j.close().await.unwrap();
}

async fn truncate_waits_for_a_reader_holding_an_old_segment(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.segment_size(SEGMENT)).await.unwrap();
    let lsns = fill(&j, 3).await;
    let first = segment_files(dir.path())[0].clone();
    let mut reader = j.reader(Lsn::ZERO).unwrap();
    let r0 = reader.next_record().unwrap().unwrap();
    assert_eq!(r0.lsn(), lsns[0]);
    j.truncate_before(*lsns.last().unwrap()).await.unwrap();
    let files = segment_files(dir.path());
    assert!(files.contains(&first), "a segment being read is not deleted under its reader");
    assert_eq!(files.len(), 3, "the middle segment waits behind the pinned oldest one: {files:?}");
    // The reader goes on through everything, truncated segments included.
    let mut count = 1;
    let mut last = r0.lsn();
    while let Some(r) = reader.next_record().unwrap() {
        assert!(r.lsn() > last);
        last = r.lsn();
        count += 1;
    }
    assert_eq!(count, lsns.len());
    drop(reader);
    assert_eq!(segment_files(dir.path()).len(), 1, "deleted once the reader let go");
    j.close().await.unwrap();
}

async fn reopen_after_a_crash_midway_through_truncation(opts: JournalOptions) {
    let opts = opts.segment_size(SEGMENT);
    let (dir, lsns, _) = closed_journal(&opts, 3).await;
    // The state a crash leaves after the oldest segment's unlink reached the
    // disk and before the rest did: a contiguous suffix.
    let files = segment_files(dir.path());
    std::fs::remove_file(dir.path().join(&files[0])).unwrap();
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    let second_base: u64 = base_of(&files[1]);
    let (records, _) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
    assert_eq!(records.first().unwrap().start_lsn(), Lsn::new(second_base));
    assert_eq!(records.last().unwrap().lsn(), *lsns.last().unwrap());
    // Finishing the truncation works, and appends continue the LSNs.
    j.truncate_before(*lsns.last().unwrap()).await.unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    let next = j.append_durable_async(b"after").await.unwrap();
    assert!(next > *lsns.last().unwrap());
    j.close().await.unwrap();
    assert!(tidelog::verify(dir.path()).unwrap().is_clean());
}

async fn subscriber_sees_every_durable_record_once_in_order_while_32_tasks_append(opts: JournalOptions) {
    const TASKS: usize = 32;
    const EACH: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.segment_size(SEGMENT)).await.unwrap();
    let early = j.append_durable_async(b"before the subscriber").await.unwrap();
    let mut sub = j.subscribe(Lsn::ZERO);
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let j = j.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..EACH {
                    // 3 KiB records: the run crosses several rollovers.
                    let mut payload = format!("{t}-{i}-").into_bytes();
                    payload.resize(3000, b'.');
                    acked.push(j.append_durable_async(payload).await.unwrap());
                }
                acked
            })
        })
        .collect();
    let mut acked = vec![early];
    for t in tasks {
        acked.extend(within(60, "appender", t).await.unwrap());
    }
    acked.sort();
    let mut seen = Vec::new();
    while seen.len() < acked.len() {
        let record = within(30, "the subscriber's next record", sub.next()).await.expect("stream ended early");
        seen.push(record.unwrap().lsn());
    }
    assert_eq!(seen, acked, "every durable record exactly once, in LSN order");
    assert!(segment_files(dir.path()).len() >= 3, "the run crossed rollovers");
    assert!(sub.next().now_or_never().is_none(), "nothing more until more is durable");
    let more = j.append_durable_async(b"one more").await.unwrap();
    assert_eq!(within(30, "the tail", sub.next()).await.unwrap().unwrap().lsn(), more);
    j.close().await.unwrap();
}

async fn subscriber_never_causes_a_sync_and_follows_the_ones_that_happen(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts).await.unwrap();
    let mut sub = j.subscribe(Lsn::ZERO);
    let a = j.append_async(b"written, not durable").await.unwrap();
    for _ in 0..10 {
        assert!(sub.next().now_or_never().is_none(), "only durable records are delivered");
        tokio::task::yield_now().await;
    }
    assert_eq!(j.stats().syncs, 0, "a subscriber never asks for a sync");
    j.sync_through_async(a).await.unwrap();
    let got = within(30, "the record once durable", sub.next()).await.unwrap().unwrap();
    assert_eq!((got.lsn(), got.payload()), (a, &b"written, not durable"[..]));
    // A subscription from the future waits for it.
    let mut later = j.subscribe(j.next_lsn());
    let b = j.append_durable_async(b"b").await.unwrap();
    assert_eq!(within(30, "a future record", later.next()).await.unwrap().unwrap().lsn(), b);
    j.close().await.unwrap();
}

async fn subscriber_ends_cleanly_on_close_and_with_the_error_on_poison(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    let mut sub = j.subscribe(Lsn::ZERO);
    let a = j.append_durable_async(b"a").await.unwrap();
    j.close().await.unwrap();
    assert_eq!(within(30, "last record", sub.next()).await.unwrap().unwrap().lsn(), a);
    assert!(within(30, "end of stream", sub.next()).await.is_none(), "ends cleanly on close");

    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    let j = Seams::new().faults(&plan).open(dir.path(), opts).await.unwrap();
    let mut sub = j.subscribe(Lsn::ZERO);
    let a = j.append_durable_async(b"a").await.unwrap();
    plan.fail_sync_nth.store(plan.syncs_seen.load(SeqCst) + 1, SeqCst);
    assert!(j.append_durable_async(b"b").await.unwrap_err().is_poisoned());
    assert_eq!(within(30, "durable record", sub.next()).await.unwrap().unwrap().lsn(), a);
    let err = within(30, "the poison", sub.next()).await.expect("an error, not a silent end").unwrap_err();
    assert!(err.is_poisoned(), "{err}");
    assert!(within(30, "end after the error", sub.next()).await.is_none());
}

/// The close's final round makes the last records durable and then the
/// journal reports `Closed`; a subscriber woken between the two must still
/// deliver those records before it ends. Many short journals, so the
/// close lands at every moment of the subscriber's loop.
async fn a_subscriber_delivers_everything_durable_at_close_then_ends(opts: JournalOptions) {
    for round in 0..200 {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
        let sub = j.subscribe(Lsn::ZERO);
        let collector = tokio::spawn(sub.map(|r| r.expect("no error before the end").lsn()).collect::<Vec<_>>());
        let mut written = Vec::new();
        for i in 0..8 {
            written.push(j.append_async(format!("round {round} record {i}")).await.unwrap());
        }
        // Written, not yet durable: the close's final sync makes them so.
        j.close().await.unwrap();
        let delivered = within(30, "the subscriber's end", collector).await.unwrap();
        assert_eq!(delivered, written, "round {round}: the subscriber ended before delivering every durable record");
    }
}

/// `truncate_before` removed every segment before the last one, and the
/// last one's header never reached the disk (a rollover's seal cut off by
/// a power cut). Nothing in it was acknowledged: the log continues at its
/// base (never reusing an LSN), its bytes are cut to a sidecar under
/// `PointInTime`, and `AbsoluteConsistency` calls data after a blank header
/// corrupt, as it does when other segments remain.
async fn a_lone_segment_whose_header_never_became_durable_is_remade_at_its_base(opts: JournalOptions) {
    let opts = opts.segment_size(SEGMENT);
    for with_data in [true, false] {
        let (dir, _, _) = closed_journal(&opts, 3).await;
        let files = segment_files(dir.path());
        let last_base = base_of(files.last().unwrap());
        let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
        j.truncate_before(Lsn::new(last_base)).await.unwrap();
        j.close().await.unwrap();
        assert_eq!(segment_files(dir.path()), [files.last().unwrap().clone()]);
        let path = segment_path(dir.path(), last_base);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[..4096].fill(0);
        if !with_data {
            bytes[4096..].fill(0);
        }
        std::fs::write(&path, &bytes).unwrap();
        if with_data {
            let err =
                Journal::open(dir.path(), opts.clone().recovery(RecoveryMode::AbsoluteConsistency)).await.unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        }
        let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
        let report = j.recovery_report().clone();
        assert_eq!(report.end_lsn(), Lsn::new(last_base), "with_data={with_data}: the log continues at the base");
        assert_eq!(report.first_lsn(), Lsn::new(last_base));
        assert_eq!(report.sidecar().is_some(), with_data, "{report:?}");
        assert_eq!(j.read_batch(Lsn::ZERO, 10).unwrap().0.len(), 0);
        let lsn = j.append_durable_async(b"after the lost header").await.unwrap();
        assert!(lsn.as_u64() > last_base);
        j.close().await.unwrap();
        let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
        let (records, _) = j.read_batch(Lsn::ZERO, 10).unwrap();
        assert_eq!(
            records.iter().map(|r| (r.lsn(), r.payload().to_vec())).collect::<Vec<_>>(),
            [(lsn, b"after the lost header".to_vec())]
        );
        j.close().await.unwrap();
        assert!(tidelog::verify(dir.path()).unwrap().is_clean());
    }
}

/// A checkpointer truncates up to the segment a rollover just made. The
/// durable frontier reaches that segment's base only once the rollover's
/// seal has made its header and name durable, so the truncation removes
/// nothing before then: in the recorded history, every removal of an old
/// segment follows a completed sync of the new segment's file (after its
/// header was written) and a completed directory sync after its rename.
/// The seal is slowed through the fault seam, so the truncation is asked
/// for while it runs.
async fn truncation_at_a_new_segment_waits_until_its_header_and_name_are_durable(opts: JournalOptions) {
    use tidelog::testing::{Event, Recorder};
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(dir.path());
    let plan = Arc::new(FaultPlan::default());
    plan.storage_sync_delay_ms.store(50, SeqCst);
    let j = Seams::new().record(&rec).faults(&plan).open(dir.path(), opts.segment_size(SEGMENT)).await.unwrap();
    let mut truncated = Vec::new();
    let mut known = segment_files(dir.path()).len();
    while truncated.len() < 2 {
        // Written, not durable: the rollover and its seal run while this
        // task looks at the directory.
        j.append_async(vec![7u8; 20_000]).await.unwrap();
        let files = segment_files(dir.path());
        if files.len() > known {
            let base = base_of(files.last().unwrap());
            assert!(j.durable_lsn() < Lsn::new(base), "durable past a segment whose seal is still running");
            within(30, "truncate at the new segment", j.truncate_before(Lsn::new(base))).await.unwrap();
            assert!(j.durable_lsn() >= Lsn::new(base));
            truncated.push(base);
        }
        known = segment_files(dir.path()).len();
    }
    j.close().await.unwrap();
    let events = rec.events();
    for base in truncated {
        let name = format!("{base:020}.tlog");
        let named = events.iter().position(|e| e.names.iter().any(|(n, _)| *n == name)).expect("named");
        let file = events[named].names.iter().find(|(n, _)| *n == name).unwrap().1;
        // The header was written before the rename (`activate`).
        let header = events[..named]
            .iter()
            .rposition(|e| matches!(&e.event, Event::Write { file: f, offset: 0, .. } if *f == file))
            .expect("the header write");
        let synced = |from: usize| {
            events[from..].iter().enumerate().find_map(|(k, e)| match &e.event {
                Event::SyncStart { id, file: f, .. } if *f == file => {
                    let id = *id;
                    events[from + k..]
                        .iter()
                        .position(|d| matches!(d.event, Event::SyncDone { id: i, ok: true } if i == id))
                        .map(|d| from + k + d)
                }
                _ => None,
            })
        };
        let header_durable = synced(header).expect("the header is synced");
        let dir_durable = events[named..]
            .iter()
            .position(|e| matches!(e.event, Event::DirSyncDone { ok: true, .. }))
            .map(|k| named + k)
            .expect("the directory is synced after the rename");
        let removal = events[named..]
            .iter()
            .position(|e| matches!(e.event, Event::Namespace { what: "remove" }))
            .map(|k| named + k)
            .expect("the truncation removed a segment");
        assert!(
            removal > header_durable && removal > dir_durable,
            "segment {base}: an older segment was removed (event {removal}) before the new one's header \
             (synced at {header_durable}) and name (directory synced at {dir_durable}) were durable"
        );
    }
}

/// A process that crashed between a rollover and its seal left the last
/// segment's name possibly not durable. Recovery makes it durable before
/// anything in that segment is acknowledged: in the history of a reopen,
/// a completed directory sync precedes the first durable acknowledgement.
async fn reopening_syncs_the_directory_before_acknowledging_anything(opts: JournalOptions) {
    use tidelog::testing::{Event, Recorder};
    let opts = opts.segment_size(SEGMENT);
    let dir = tempfile::tempdir().unwrap();
    closed_journal_in(dir.path(), &opts, 2).await;
    let rec = Recorder::new(dir.path());
    let j = Seams::new().record(&rec).open(dir.path(), opts).await.unwrap();
    let lsn = j.append_durable_async(b"after reopen").await.unwrap();
    rec.note(1, lsn.as_u64());
    j.close().await.unwrap();
    let events = rec.events();
    let acked = events.iter().position(|e| matches!(e.event, Event::Note { tag: 1, .. })).unwrap();
    assert!(
        events[..acked].iter().any(|e| matches!(e.event, Event::DirSyncDone { ok: true, .. })),
        "a record was acknowledged durable after a reopen that never synced the directory"
    );
}
