//! Torn tails, corrupt middles and torn batches, recovered on both substrates.

mod common;

use std::path::{Path, PathBuf};

use tidelog::{Error, Journal, JournalOptions, Lsn, RecoveryMode};

matrix!(
    torn_final_record_at_every_byte_recovers_the_prefix,
    corrupt_middle_is_cut_under_point_in_time_and_fatal_under_absolute,
    torn_atomic_batch_disappears_whole,
);

fn segment0(dir: &Path) -> PathBuf {
    dir.join("00000000000000000000.tlog")
}

/// Writes `n` records, closes, returns their (start, end) LSNs.
async fn make(dir: &Path, opts: &JournalOptions, n: usize) -> Vec<(u64, u64)> {
    let j = Journal::open(dir, opts.clone()).await.unwrap();
    let mut spans = Vec::new();
    for i in 0..n {
        let start = j.next_lsn().as_u64();
        let end = j.append_async(format!("payload number {i}")).await.unwrap().as_u64();
        spans.push((start, end));
    }
    j.close().await.unwrap();
    spans
}

fn truncate_at_lsn(dir: &Path, lsn: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(segment0(dir)).unwrap();
    f.set_len(4096 + lsn).unwrap();
}

async fn torn_final_record_at_every_byte_recovers_the_prefix(opts: JournalOptions) {
    // Small (preallocated) segments: every case rewrites whole files.
    let opts = opts.segment_size(1 << 20);
    let dir = tempfile::tempdir().unwrap();
    let spans = make(dir.path(), &opts, 4).await;
    let pristine = std::fs::read(segment0(dir.path())).unwrap();
    let (start, end) = spans[3];
    for cut in start + 1..end {
        std::fs::write(segment0(dir.path()), &pristine).unwrap();
        truncate_at_lsn(dir.path(), cut);
        let j = Journal::open(dir.path(), opts.clone().recovery(RecoveryMode::AbsoluteConsistency)).await.unwrap();
        let report = j.recovery_report().clone();
        assert_eq!(report.end_lsn(), Lsn::new(start), "cut at {cut}");
        // Counted up to the last non-zero byte: trailing zeros are unused space.
        let torn = &pristine[4096 + start as usize..4096 + cut as usize];
        let nonzero = torn.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1) as u64;
        assert_eq!(report.truncated_bytes(), nonzero, "cut at {cut}");
        assert!(!report.valid_frames_followed());
        let next = j.append_async(b"after the tear").await.unwrap();
        j.close().await.unwrap();
        let records = common::read_all(dir.path());
        assert_eq!(records.len(), 4, "three intact records and the new one (cut at {cut})");
        assert_eq!(records[3], (next.as_u64(), b"after the tear".to_vec()));
        assert_eq!(records[2].1, b"payload number 2");
    }
}

async fn corrupt_middle_is_cut_under_point_in_time_and_fatal_under_absolute(opts: JournalOptions) {
    // Small (preallocated) segments: every case rewrites whole files.
    let opts = opts.segment_size(1 << 20);
    let dir = tempfile::tempdir().unwrap();
    let spans = make(dir.path(), &opts, 5).await;
    let mut bytes = std::fs::read(segment0(dir.path())).unwrap();
    let victim = 4096 + spans[1].0 as usize + 30; // inside record 1's payload
    bytes[victim] ^= 0xff;
    std::fs::write(segment0(dir.path()), &bytes).unwrap();

    let strict = opts.clone().recovery(RecoveryMode::AbsoluteConsistency);
    match Journal::open(dir.path(), strict).await {
        Err(Error::Corrupt { path, lsn, .. }) => {
            assert_eq!(path, segment0(dir.path()));
            assert_eq!(lsn, Lsn::new(spans[1].0));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let j = Journal::open(dir.path(), opts.recovery(RecoveryMode::PointInTime)).await.unwrap();
    let report = j.recovery_report().clone();
    assert_eq!(report.end_lsn(), Lsn::new(spans[1].0));
    // Up to record 4's end, and with direct I/O the padding frame after it.
    let cut = report.truncated_bytes();
    assert!((spans[4].1 - spans[1].0..spans[4].1 - spans[1].0 + 4096 + 24).contains(&cut), "{cut}");
    assert!(report.valid_frames_followed(), "records 2..4 were valid: the report must warn");
    let sidecar = report.sidecar().expect("cut bytes kept");
    assert_eq!(std::fs::read(sidecar).unwrap().len() as u64, report.truncated_bytes());
    assert_eq!(j.read_batch(Lsn::ZERO, 100).unwrap().0.len(), 1);
    j.close().await.unwrap();
}

async fn torn_atomic_batch_disappears_whole(opts: JournalOptions) {
    // Small (preallocated) segments: every case rewrites whole files.
    let opts = opts.segment_size(1 << 20);
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    let single = j.append_async(b"single").await.unwrap();
    let batch = j.append_batch_async(&[b"one".as_slice(), b"two", b"three"]).await.unwrap();
    j.close().await.unwrap();
    let pristine = std::fs::read(segment0(dir.path())).unwrap();
    // Cut inside the last frame, and exactly at its start (two whole frames left).
    for cut in [batch[2].as_u64() - 3, batch[1].as_u64()] {
        std::fs::write(segment0(dir.path()), &pristine).unwrap();
        truncate_at_lsn(dir.path(), cut);
        let strict = opts.clone().recovery(RecoveryMode::AbsoluteConsistency);
        let j = Journal::open(dir.path(), strict).await.unwrap();
        // The end is `single`, or its padding frame's end with direct I/O.
        let end = j.recovery_report().end_lsn();
        assert!(end >= single && end < batch[0], "the batch is all or none: {end:?}");
        j.close().await.unwrap();
        assert_eq!(common::read_all(dir.path()), vec![(single.as_u64(), b"single".to_vec())]);
    }
}
