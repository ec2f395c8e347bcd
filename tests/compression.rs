//! Compressed records (`Compression::Lz4`, cargo feature `compression`):
//! round trips through every reader on both substrates and with direct I/O,
//! recovery, torn tails and batches, the back-off on random payloads, a
//! corrupt compressed payload behind a valid CRC, the stats' ratio, and
//! docs/format.md's test vector. A build without the feature refuses the
//! option and stops at a compressed record, naming its file and LSN.
//!
//! `cargo test -p tidelog --features compression --test compression`, and
//! without the feature (both run by `.ci/run`).

// Without the feature only the last tests run: the helpers are theirs too.
#![cfg_attr(not(feature = "compression"), allow(dead_code))]

mod common;

use std::path::{Path, PathBuf};

use tidelog::format::{frame_len, SEGMENT_HEADER_LEN};
use tidelog::{Compression, Error, Journal, JournalOptions, JournalReader, Lsn};

#[cfg(feature = "compression")]
matrix!(
    compressible_records_round_trip_through_every_reader,
    compressed_records_survive_a_dropped_journal_and_mix_with_plain_ones,
    a_torn_tail_inside_a_compressed_frame_is_cut_by_recovery,
    atomic_batches_of_compressed_records_read_back_whole_or_not_at_all,
    random_payloads_are_stored_plain,
);

const RECORD: usize = 4096;

/// JSON event lines, deterministic, `RECORD` bytes: what the feature is for.
fn json(seed: u64) -> Vec<u8> {
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = String::with_capacity(RECORD + 200);
    while out.len() < RECORD {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        out.push_str(&format!(
            "{{\"id\":{},\"user\":\"user_{}\",\"event\":\"{}\",\"ts\":{},\"ok\":true}}\n",
            rng % 1_000_000_000,
            (rng >> 20) % 50_000,
            ["click", "view", "purchase"][(rng >> 8) as usize % 3],
            1_764_547_200_000u64 + (rng >> 24) % 86_400_000,
        ));
    }
    out.truncate(RECORD);
    out.into_bytes()
}

/// Random bytes: nothing to gain.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    (0..len.div_ceil(8))
        .flat_map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng.to_le_bytes()
        })
        .take(len)
        .collect()
}

fn lz4(opts: JournalOptions) -> JournalOptions {
    opts.compression(Compression::Lz4)
}

fn segment0(dir: &Path) -> PathBuf {
    dir.join("00000000000000000000.tlog")
}

/// A plain record's frame length: what a record takes uncompressed.
fn plain_frame(len: usize) -> u64 {
    frame_len(len) as u64
}

#[cfg(feature = "compression")]
async fn compressible_records_round_trip_through_every_reader(opts: JournalOptions) {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), lz4(opts)).await.unwrap();
    let mut sub = j.subscribe(Lsn::ZERO);
    // Compressible, below the minimum size, and incompressible, mixed.
    let payloads: Vec<Vec<u8>> = (0..60u64)
        .map(|i| match i % 3 {
            0 | 1 => json(i),
            _ => format!("small {i}").into_bytes(),
        })
        .collect();
    let mut lsns = Vec::new();
    for p in &payloads {
        lsns.push(j.append_durable_async(p).await.unwrap());
    }
    let stats = j.stats();
    assert_eq!(stats.compressed_records, 40, "every JSON record, no small one: {stats:?}");
    assert_eq!(stats.bytes, payloads.iter().map(|p| p.len() as u64).sum::<u64>());
    assert!(stats.compression_ratio() >= 2.0, "ratio {}", stats.compression_ratio());

    let check = |records: &[tidelog::Record]| {
        assert_eq!(records.len(), payloads.len());
        for ((rec, p), lsn) in records.iter().zip(&payloads).zip(&lsns) {
            assert_eq!(rec.payload(), &p[..]);
            assert_eq!(rec.lsn(), *lsn);
            let stored = rec.lsn().as_u64() - rec.start_lsn().as_u64();
            if p.len() == RECORD {
                assert!(stored * 2 < plain_frame(RECORD), "a JSON record takes {stored} bytes");
            } else {
                assert_eq!(stored, plain_frame(p.len()), "small records are stored plain");
            }
        }
    };
    let (records, more) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
    assert!(!more);
    check(&records);
    let mut reader = j.reader(Lsn::ZERO).unwrap();
    let mut read = Vec::new();
    while let Some(rec) = reader.next_record().unwrap() {
        read.push(rec);
    }
    check(&read);
    let mut followed = Vec::new();
    while followed.len() < payloads.len() {
        followed.push(common::within(10, "subscriber", sub.next()).await.unwrap().unwrap());
    }
    check(&followed);
    j.close().await.unwrap();

    // Offline: JournalReader, replay and verify.
    let offline = JournalReader::open(dir.path()).unwrap();
    let mut reader = offline.reader(Lsn::ZERO).unwrap();
    let mut read = Vec::new();
    while let Some(rec) = reader.next_record().unwrap() {
        read.push(rec);
    }
    check(&read);
    let mut replayed = Vec::new();
    let report = tidelog::replay(dir.path(), Lsn::ZERO, |r| {
        replayed.push(r);
        Ok(())
    })
    .unwrap();
    check(&replayed);
    assert_eq!(report.bytes, stats.bytes, "replay counts payload bytes as given");
    let verified = tidelog::verify(dir.path()).unwrap();
    assert!(verified.is_clean(), "{verified:?}");
    assert_eq!(verified.records, payloads.len() as u64);
    // The records' frames: well under half of what they take plain
    // (padding frames aside: direct I/O pads every write to a block).
    let plain: u64 = payloads.iter().map(|p| plain_frame(p.len())).sum();
    let framed: u64 = read.iter().map(|r| r.lsn().as_u64() - r.start_lsn().as_u64()).sum();
    assert!(framed * 2 < plain, "{framed} of {plain} bytes");
}

/// Each record's frame length, as stored, read offline.
fn framed_lengths(dir: &Path) -> Vec<u64> {
    let mut r = JournalReader::open(dir).unwrap().reader(Lsn::ZERO).unwrap();
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        out.push(rec.lsn().as_u64() - rec.start_lsn().as_u64());
    }
    out
}

#[cfg(feature = "compression")]
async fn compressed_records_survive_a_dropped_journal_and_mix_with_plain_ones(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), lz4(opts.clone())).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..20u64 {
        let lsn = j.append_async(json(i)).await.unwrap();
        expected.push((lsn.as_u64(), json(i)));
    }
    j.sync_through_async(Lsn::new(expected.last().unwrap().0)).await.unwrap();
    // Reopened without compression (no close: recovery finds the end).
    let j = common::reopen_dropped(j, dir.path(), &opts).await;
    assert_eq!(j.recovery_report().tail_records(), 20, "compressed frames count as records");
    assert_eq!(j.recovery_report().truncated_bytes(), 0);
    for i in 20..25u64 {
        let lsn = j.append_async(json(i)).await.unwrap();
        expected.push((lsn.as_u64(), json(i)));
    }
    assert_eq!(j.stats().compressed_records, 0, "this journal stores plain records");
    j.close().await.unwrap();
    // And once more with compression.
    let j = Journal::open(dir.path(), lz4(opts)).await.unwrap();
    let lsn = j.append_async(json(99)).await.unwrap();
    expected.push((lsn.as_u64(), json(99)));
    j.close().await.unwrap();
    assert_eq!(common::read_all(dir.path()), expected);
    let framed = framed_lengths(dir.path());
    assert_eq!(framed.len(), 26);
    assert!(framed[..20].iter().chain(&framed[25..]).all(|&f| f * 2 < plain_frame(RECORD)), "{framed:?}");
    assert!(framed[20..25].iter().all(|&f| f == plain_frame(RECORD)), "{framed:?}");
}

#[cfg(feature = "compression")]
async fn a_torn_tail_inside_a_compressed_frame_is_cut_by_recovery(opts: JournalOptions) {
    let opts = lz4(opts.segment_size(1 << 20));
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    let mut spans = Vec::new();
    for i in 0..3u64 {
        let start = j.next_lsn().as_u64();
        spans.push((start, j.append_async(json(i)).await.unwrap().as_u64()));
    }
    j.close().await.unwrap();
    let pristine = std::fs::read(segment0(dir.path())).unwrap();
    let (start, end) = spans[2];
    assert!(end - start < plain_frame(RECORD) / 2, "the last record is stored compressed");
    for cut in [start + 8, start + 24, start + 30, (start + end) / 2, end - 8] {
        std::fs::write(segment0(dir.path()), &pristine).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(segment0(dir.path())).unwrap();
        f.set_len(SEGMENT_HEADER_LEN as u64 + cut).unwrap();
        drop(f);
        let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
        assert_eq!(j.recovery_report().end_lsn(), Lsn::new(start), "cut at {cut}");
        assert!(j.recovery_report().truncated_bytes() > 0, "cut at {cut}");
        let next = j.append_async(json(7)).await.unwrap();
        j.close().await.unwrap();
        let records = common::read_all(dir.path());
        assert_eq!(records.len(), 3, "two intact records and the new one (cut at {cut})");
        assert_eq!(records[1], (spans[1].1, json(1)));
        assert_eq!(records[2], (next.as_u64(), json(7)));
        // The next case starts from the pristine file again.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().contains(".corrupt-") {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
}

#[cfg(feature = "compression")]
async fn atomic_batches_of_compressed_records_read_back_whole_or_not_at_all(opts: JournalOptions) {
    let opts = lz4(opts.segment_size(1 << 20));
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    let first: Vec<Vec<u8>> = vec![json(1), b"tiny".to_vec(), noise(2, RECORD), json(3)];
    let first_lsns = j.append_batch_async(&first).await.unwrap();
    let start = j.next_lsn().as_u64();
    let second: Vec<Vec<u8>> = vec![json(4), json(5), json(6)];
    let second_lsns = j.append_batch_async(&second).await.unwrap();
    j.close().await.unwrap();
    let records = common::read_all(dir.path());
    let expected: Vec<(u64, Vec<u8>)> =
        first_lsns.iter().chain(&second_lsns).map(|l| l.as_u64()).zip(first.iter().chain(&second).cloned()).collect();
    assert_eq!(records, expected, "the LSNs append_batch_async returned are the stored frames' ends");
    // Cut inside the second batch's last frame: the whole batch goes.
    let cut = second_lsns[2].as_u64() - 16;
    let f = std::fs::OpenOptions::new().write(true).open(segment0(dir.path())).unwrap();
    f.set_len(SEGMENT_HEADER_LEN as u64 + cut).unwrap();
    drop(f);
    let j = Journal::open(dir.path(), opts).await.unwrap();
    assert!(j.recovery_report().end_lsn().as_u64() <= start, "{:?}", j.recovery_report());
    let (records, _) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
    j.close().await.unwrap();
    let payloads: Vec<Vec<u8>> = records.into_iter().map(|r| r.into_payload()).collect();
    assert_eq!(payloads, first);
}

#[cfg(feature = "compression")]
async fn random_payloads_are_stored_plain(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), lz4(opts)).await.unwrap();
    let mut lsns = Vec::new();
    for i in 0..200u64 {
        lsns.push(j.append_async(noise(i + 1, RECORD)).await.unwrap());
    }
    let stats = j.stats();
    assert_eq!(stats.compressed_records, 0);
    assert_eq!(stats.stored_bytes, stats.bytes);
    assert_eq!(stats.compression_ratio(), 1.0);
    j.close().await.unwrap();
    let records = common::read_all(dir.path());
    assert_eq!(records.len(), 200);
    for (i, ((lsn, payload), want)) in records.iter().zip(&lsns).enumerate() {
        assert_eq!((*lsn, payload), (want.as_u64(), &noise(i as u64 + 1, RECORD)));
    }
}

/// A frame at `lsn` as docs/format.md draws it (the CRC computed here).
fn frame(lsn: u64, kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; frame_len(payload.len())];
    buf[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    buf[8..16].copy_from_slice(&lsn.to_le_bytes());
    buf[16] = kind;
    buf[24..24 + payload.len()].copy_from_slice(payload);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&buf[4..24]);
    crc.update(payload);
    let crc = crc.finalize();
    buf[0..4].copy_from_slice(&crc.to_le_bytes());
    buf
}

/// A segment file: the header vector of docs/format.md, then `frames`.
fn segment_with(frames: &[&[u8]]) -> Vec<u8> {
    let mut file = common::format_doc_hex_blocks()[0].clone();
    assert_eq!(file.len(), 64, "the header vector");
    file.resize(SEGMENT_HEADER_LEN, 0);
    for f in frames {
        file.extend_from_slice(f);
    }
    file
}

/// The compressed record vector of docs/format.md (its sixth block, after
/// the segment's header and four frames).
fn compressed_vector() -> Vec<u8> {
    common::format_doc_hex_blocks().swap_remove(5)
}

const VECTOR_TEXT: &[u8] = b"tidelog tidelog tidelog tidelog tidelog tidelog ";

#[cfg(feature = "compression")]
#[test]
fn the_format_vector_decodes_through_every_offline_reader() {
    let vector = compressed_vector();
    assert_eq!(vector.len(), 56);
    assert_eq!(vector[16], tidelog::format::KIND_COMPRESSED);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(segment0(dir.path()), segment_with(&[&vector])).unwrap();
    let mut r = JournalReader::open(dir.path()).unwrap().reader(Lsn::ZERO).unwrap();
    let rec = r.next_record().unwrap().expect("the record");
    assert_eq!((rec.start_lsn(), rec.lsn(), rec.payload()), (Lsn::ZERO, Lsn::new(56), VECTOR_TEXT));
    assert!(r.next_record().unwrap().is_none());
    let report = tidelog::verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((report.records, report.end_lsn), (1, Lsn::new(56)));
    // The journal writes exactly these bytes for this payload.
    let written = tempfile::tempdir().unwrap();
    let opts = JournalOptions::new()
        .substrate(tidelog::SubstrateChoice::Blocking)
        .compression(Compression::Lz4)
        .compression_min_bytes(1);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let j = Journal::open(written.path(), opts).await.unwrap();
        assert_eq!(j.append_async(VECTOR_TEXT).await.unwrap(), Lsn::new(56));
        j.close().await.unwrap();
    });
    let bytes = std::fs::read(segment0(written.path())).unwrap();
    assert_eq!(&bytes[SEGMENT_HEADER_LEN..SEGMENT_HEADER_LEN + 56], &vector[..]);
}

/// A compressed record whose CRC is valid but whose bytes do not
/// decompress: every reader stops with `Corrupt` naming file and LSN,
/// `verify` reports it, and opening (which does not decompress) works.
#[cfg(feature = "compression")]
#[test]
fn a_corrupt_compressed_payload_with_a_valid_crc_is_corrupt_not_a_panic() {
    let good = frame(0, 0x81, b"first");
    let vector = compressed_vector();
    let payload_len = u32::from_le_bytes(vector[4..8].try_into().unwrap()) as usize;
    let mut payload = vector[24..24 + payload_len].to_vec();
    // Offsets beyond the output: a decoder that trusted them would read
    // out of bounds.
    for b in &mut payload[8..] {
        *b = 0xFF;
    }
    let mut wrong_len = vector[24..24 + payload_len].to_vec();
    wrong_len[4..8].copy_from_slice(&47u32.to_le_bytes());
    for (what, bad) in [("garbage", payload), ("a wrong length", wrong_len)] {
        let bad = frame(32, tidelog::format::KIND_COMPRESSED, &bad);
        let after = frame(32 + bad.len() as u64, 0x81, b"after");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(segment0(dir.path()), segment_with(&[&good, &bad, &after])).unwrap();
        let mut r = JournalReader::open(dir.path()).unwrap().reader(Lsn::ZERO).unwrap();
        assert_eq!(r.next_record().unwrap().unwrap().payload(), b"first");
        let expect_corrupt = |e: Error| match e {
            Error::Corrupt { path, lsn, reason } => {
                assert_eq!((path, lsn), (segment0(dir.path()), Lsn::new(32)), "{what}: {reason}");
            }
            other => panic!("{what}: expected Corrupt, got {other}"),
        };
        expect_corrupt(r.next_record().unwrap_err());
        expect_corrupt(tidelog::replay(dir.path(), Lsn::ZERO, |_| Ok(())).unwrap_err());
        let report = tidelog::verify(dir.path()).unwrap();
        assert_eq!(report.corruption.len(), 1, "{what}: {report:?}");
        assert!(report.corruption[0].contains("LSN 32"), "{}", report.corruption[0]);
        assert_eq!(report.records, 3, "{what}: counted, and reported");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let opts = JournalOptions::new().substrate(tidelog::SubstrateChoice::Blocking);
            let j = Journal::open(dir.path(), opts).await.unwrap();
            assert_eq!(j.recovery_report().tail_records(), 3, "recovery does not decompress");
            assert_eq!(j.recovery_report().truncated_bytes(), 0, "nothing after a valid frame is cut");
            expect_corrupt(j.read_batch(Lsn::ZERO, 10).unwrap_err());
            j.close().await.unwrap();
        });
    }
}

/// A required kind this version does not know stops every reader with
/// `Corrupt`: what a reader from before compressed records does at one.
#[test]
fn a_required_kind_this_version_does_not_know_stops_readers_with_corrupt() {
    let vector = compressed_vector();
    let payload_len = u32::from_le_bytes(vector[4..8].try_into().unwrap()) as usize;
    let unknown = frame(32, 0x86, &vector[24..24 + payload_len]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(segment0(dir.path()), segment_with(&[&frame(0, 0x81, b"first"), &unknown])).unwrap();
    let mut r = JournalReader::open(dir.path()).unwrap().reader(Lsn::ZERO).unwrap();
    assert_eq!(r.next_record().unwrap().unwrap().payload(), b"first");
    match r.next_record() {
        Err(Error::Corrupt { lsn, reason, .. }) => {
            assert_eq!(lsn, Lsn::new(32));
            assert!(reason.contains("0x86"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[cfg(not(feature = "compression"))]
#[test]
fn without_the_feature_open_refuses_the_option_naming_the_feature() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    match rt.block_on(Journal::open(dir.path(), JournalOptions::new().compression(Compression::Lz4))) {
        Err(Error::Unsupported(why)) => assert!(why.contains("`compression` cargo feature"), "{why}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[cfg(not(feature = "compression"))]
#[test]
fn without_the_feature_readers_stop_at_a_compressed_record_naming_file_and_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let vector = compressed_vector();
    std::fs::write(segment0(dir.path()), segment_with(&[&vector, &frame(56, 0x81, b"plain")])).unwrap();
    let mut r = JournalReader::open(dir.path()).unwrap().reader(Lsn::ZERO).unwrap();
    let expect_unsupported = |e: Error| match e {
        Error::Unsupported(why) => {
            assert!(why.contains("00000000000000000000.tlog at LSN 0"), "{why}");
            assert!(why.contains("`compression` cargo feature"), "{why}");
        }
        other => panic!("expected Unsupported, got {other}"),
    };
    expect_unsupported(r.next_record().unwrap_err());
    expect_unsupported(tidelog::replay(dir.path(), Lsn::ZERO, |_| Ok(())).unwrap_err());
    expect_unsupported(tidelog::verify(dir.path()).unwrap_err());
    // Opening needs no decompression: the journal counts the record and
    // appends after it.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let j = Journal::open(dir.path(), JournalOptions::new()).await.unwrap();
        assert_eq!(j.recovery_report().tail_records(), 2);
        assert_eq!(j.recovery_report().end_lsn(), Lsn::new(88));
        j.close().await.unwrap();
    });
}
