//! Property tests over damaged and arbitrary segment files: everything that
//! parses disk bytes (recovery in both modes, the offline reader, `verify`,
//! `replay`) must never panic, never return a record that was not written
//! (its checksum covers its LSN and payload), and never one outside the
//! files. The starting point is a real journal with a rollover, an atomic
//! batch and records of many sizes; each case mutates copies of its files.
//!
//! More cases: `PROPTEST_CASES=5000 cargo test --release --test fuzz_segments`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use tidelog::{Journal, JournalOptions, Lsn, RecoveryMode, SubstrateChoice};

/// The pristine journal: its files (name, bytes) and every record by LSN.
struct Pristine {
    files: Vec<(String, Vec<u8>)>,
    records: HashMap<u64, Vec<u8>>,
}

fn opts() -> JournalOptions {
    JournalOptions::new().substrate(SubstrateChoice::Blocking).segment_size(1 << 20)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn pristine() -> &'static Pristine {
    static PRISTINE: OnceLock<Pristine> = OnceLock::new();
    PRISTINE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut records = HashMap::new();
        runtime().block_on(async {
            let j = Journal::open(dir.path(), opts()).await.unwrap();
            for n in 0..260u64 {
                let payload = vec![b'a' + (n % 26) as u8; (n as usize * 97) % 9000];
                let lsn = j.append_async(&payload).await.unwrap();
                records.insert(lsn.as_u64(), payload);
                if n % 50 == 0 {
                    let batch = [format!("batch {n} a").into_bytes(), format!("batch {n} b").into_bytes()];
                    let lsns = j.append_batch_async(&batch).await.unwrap();
                    for (lsn, p) in lsns.into_iter().zip(batch) {
                        records.insert(lsn.as_u64(), p);
                    }
                }
            }
            j.close().await.unwrap();
        });
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tlog"))
            .map(|e| {
                // Only the bytes up to the last non-zero one: the rest is
                // preallocation, and mutating it is mutating nothing.
                let mut bytes = std::fs::read(e.path()).unwrap();
                let used = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                bytes.truncate(used.next_multiple_of(4096));
                (e.file_name().to_string_lossy().into_owned(), bytes)
            })
            .collect();
        files.sort();
        assert!(files.len() >= 2, "the pristine journal spans a rollover");
        Pristine { files, records }
    })
}

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit { file: usize, at: usize, bit: u8 },
    Overwrite { file: usize, at: usize, bytes: Vec<u8> },
    Zero { file: usize, at: usize, len: usize },
    Truncate { file: usize, at: usize },
    Duplicate { file: usize, from: usize, to: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let file = 0usize..4;
    let at = 0usize..300_000;
    prop_oneof![
        (file.clone(), at.clone(), 0u8..8).prop_map(|(file, at, bit)| Mutation::FlipBit { file, at, bit }),
        (file.clone(), at.clone(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(file, at, bytes)| Mutation::Overwrite { file, at, bytes }),
        (file.clone(), at.clone(), 1usize..20_000).prop_map(|(file, at, len)| Mutation::Zero { file, at, len }),
        (file.clone(), at.clone()).prop_map(|(file, at)| Mutation::Truncate { file, at }),
        (file, at.clone(), at, 1usize..5000).prop_map(|(file, from, to, len)| Mutation::Duplicate {
            file,
            from,
            to,
            len
        }),
    ]
}

fn apply(files: &mut [(String, Vec<u8>)], m: &Mutation) {
    let n = files.len();
    let pick = |file: usize| file % n;
    match m {
        Mutation::FlipBit { file, at, bit } => {
            let bytes = &mut files[pick(*file)].1;
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] ^= 1 << bit;
            }
        }
        Mutation::Overwrite { file, at, bytes: new } => {
            let bytes = &mut files[pick(*file)].1;
            let at = at % (bytes.len() + 1);
            let end = (at + new.len()).min(bytes.len());
            bytes[at..end].copy_from_slice(&new[..end - at]);
        }
        Mutation::Zero { file, at, len } => {
            let bytes = &mut files[pick(*file)].1;
            let at = at % (bytes.len() + 1);
            let end = (at + len).min(bytes.len());
            bytes[at..end].fill(0);
        }
        Mutation::Truncate { file, at } => {
            let bytes = &mut files[pick(*file)].1;
            let at = at % (bytes.len() + 1);
            bytes.truncate(at);
        }
        Mutation::Duplicate { file, from, to, len } => {
            // Stale bytes in the wrong place: a frame copied elsewhere must
            // not parse there (its checksum covers its LSN).
            let bytes = &mut files[pick(*file)].1;
            if bytes.is_empty() {
                return;
            }
            let (from, to) = (from % bytes.len(), to % bytes.len());
            let len = (*len).min(bytes.len() - from).min(bytes.len() - to);
            let chunk = bytes[from..from + len].to_vec();
            bytes[to..to + len].copy_from_slice(&chunk);
        }
    }
}

fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Every record read is one that was written, at its LSN, whole.
fn check_record(lsn: Lsn, payload: &[u8], what: &str) {
    let original = pristine().records.get(&lsn.as_u64());
    assert!(original.is_some(), "{what}: a record at LSN {lsn} that was never written");
    assert!(original.unwrap() == payload, "{what}: the record at LSN {lsn} differs from what was written");
}

/// Runs every parser over `files`; panics only on a broken property.
fn check_everything(files: &[(String, Vec<u8>)]) {
    // Offline: verify, the reader, replay.
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), files);
    let _ = tidelog::verify(dir.path());
    if let Ok(journal) = tidelog::JournalReader::open(dir.path()) {
        if let Ok(mut reader) = journal.reader(journal.first_lsn()) {
            while let Ok(Some(record)) = reader.next_record() {
                check_record(record.lsn(), record.payload(), "reader");
            }
        }
    }
    let _ = tidelog::replay(dir.path(), Lsn::ZERO, |record| {
        check_record(record.lsn(), record.payload(), "replay");
        Ok(())
    });
    // Recovery in both modes, each on its own copy (PointInTime cuts).
    for mode in [RecoveryMode::PointInTime, RecoveryMode::AbsoluteConsistency] {
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), files);
        runtime().block_on(async {
            let Ok(j) = Journal::open(dir.path(), opts().recovery(mode)).await else { return };
            let first =
                tidelog::JournalReader::open(dir.path()).expect("a recovered journal reads offline").first_lsn();
            // Recovery scans only the last segment (sealed ones were synced
            // before anything after them was acknowledged), so damage in a
            // sealed segment surfaces when it is read: as an error.
            let records = match j.read_batch(first, usize::MAX) {
                Ok((records, _)) => records,
                Err(e) => {
                    assert!(
                        matches!(e, tidelog::Error::Corrupt { .. }),
                        "{mode:?}: damage read back as {e}, not as Corrupt naming the file"
                    );
                    Vec::new()
                }
            };
            for r in &records {
                check_record(r.lsn(), r.payload(), "recovered journal");
            }
            // A recovered journal takes appends and reopens with them.
            let lsn = j.append_durable_async(b"after recovery").await.expect("append after recovery");
            j.close().await.expect("close after recovery");
            let j = Journal::open(dir.path(), opts().recovery(mode)).await.expect("reopen after recovery");
            let start = Lsn::new(lsn.as_u64() - tidelog::format::frame_len(b"after recovery".len()) as u64);
            let (last, _) = j.read_batch(start, 1).expect("the append after recovery reads back");
            assert!(
                last.iter().any(|r| r.lsn() == lsn && r.payload() == b"after recovery"),
                "{mode:?}: the append after recovery survives a reopen"
            );
            j.close().await.unwrap();
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn damaged_segments_never_yield_a_record_that_was_not_written(mutations in prop::collection::vec(mutation(), 1..6)) {
        let mut files = pristine().files.clone();
        for m in &mutations {
            apply(&mut files, m);
        }
        check_everything(&files);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_yield_a_record(tail in prop::collection::vec(any::<u8>(), 0..20_000), keep in 0usize..30_000) {
        let mut files = pristine().files.clone();
        let last = files.last_mut().unwrap();
        let keep = (4096 + keep).min(last.1.len());
        last.1.truncate(keep);
        last.1.extend_from_slice(&tail);
        check_everything(&files);
    }

    #[test]
    fn arbitrary_files_named_as_segments_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..9000)) {
        check_everything(&[("00000000000000000000.tlog".to_string(), bytes)]);
    }

    #[test]
    fn frame_decoding_never_panics_and_accepted_frames_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        tidelog::testing::fuzz_frame(&bytes);
    }

    #[test]
    fn frames_cut_from_a_real_segment_decode_exactly_or_are_refused(
        start in 0usize..30_000, len in 0usize..10_000, flip in prop::option::of((any::<usize>(), 0u8..8))
    ) {
        let segment = &pristine().files[0].1;
        let from = (4096 + start * 8).min(segment.len());
        let mut bytes = segment[from..(from + len).min(segment.len())].to_vec();
        if let (Some((at, bit)), false) = (flip, bytes.is_empty()) {
            let at = at % bytes.len();
            bytes[at] ^= 1 << bit;
        }
        tidelog::testing::fuzz_frame(&bytes);
    }

    #[test]
    fn segment_header_decoding_never_panics(flip in prop::option::of((0usize..4096, 0u8..8)), cut in 0usize..4097) {
        let mut block = pristine().files[0].1[..4096].to_vec();
        if let Some((at, bit)) = flip {
            block[at] ^= 1 << bit;
        }
        block.truncate(cut);
        tidelog::testing::fuzz_segment_header(&block);
    }
}
