//! The test vectors of docs/format.md, decoded through the public readers.

mod common;

use tidelog::{Journal, JournalOptions, JournalReader, Lsn};

/// The vectors of the segment (header and four frames): the hex blocks of
/// docs/format.md before the compressed record's, which is
/// tests/compression.rs's.
fn vector_blocks() -> Vec<Vec<u8>> {
    let mut blocks = common::format_doc_hex_blocks();
    blocks.truncate(5);
    blocks
}

fn segment_from_vectors() -> Vec<u8> {
    let blocks = vector_blocks();
    assert_eq!(blocks.len(), 5, "header + four frames");
    let mut header = blocks[0].clone();
    assert_eq!(header.len(), 64);
    header.resize(tidelog::format::SEGMENT_HEADER_LEN, 0);
    let mut file = header;
    for frame in &blocks[1..] {
        assert_eq!(frame.len() % tidelog::format::FRAME_ALIGN, 0);
        file.extend_from_slice(frame);
    }
    file
}

const EXPECTED: [(u64, &[u8]); 3] = [(32, b"hello"), (88, b"tide"), (120, b"log")];

#[test]
fn vectors_decode_through_the_offline_reader_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("00000000000000000000.tlog"), segment_from_vectors()).unwrap();
    let reader = JournalReader::open(dir.path()).unwrap();
    let mut r = reader.reader(Lsn::ZERO).unwrap();
    for (lsn, payload) in EXPECTED {
        let rec = r.next_record().unwrap().expect("record");
        assert_eq!((rec.lsn().as_u64(), rec.payload()), (lsn, payload));
    }
    assert!(r.next_record().unwrap().is_none());
    let report = tidelog::verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((report.records, report.end_lsn), (3, Lsn::new(120)));
}

#[tokio::test]
async fn vectors_recover_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("00000000000000000000.tlog"), segment_from_vectors()).unwrap();
    let opts = JournalOptions::new().substrate(tidelog::SubstrateChoice::Blocking);
    let j = Journal::open(dir.path(), opts).await.unwrap();
    assert_eq!(j.recovery_report().end_lsn(), Lsn::new(120));
    assert_eq!(j.recovery_report().truncated_bytes(), 0);
    assert_eq!(j.append_async(b"next").await.unwrap(), Lsn::new(120 + 32));
    j.close().await.unwrap();
}

#[test]
fn a_corrupted_vector_byte_is_never_a_record() {
    let good = segment_from_vectors();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("00000000000000000000.tlog");
    for i in tidelog::format::SEGMENT_HEADER_LEN..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        std::fs::write(&path, &bad).unwrap();
        let mut r = JournalReader::open(dir.path()).unwrap().reader(Lsn::ZERO).unwrap();
        let mut got = Vec::new();
        while let Ok(Some(rec)) = r.next_record() {
            got.push((rec.lsn().as_u64(), rec.payload().to_vec()));
        }
        // Whatever survives is an intact prefix of the expected records.
        assert!(got.len() < 3, "flip at byte {i} went unnoticed");
        for (g, e) in got.iter().zip(EXPECTED) {
            assert_eq!((g.0, g.1.as_slice()), e);
        }
    }
}

#[test]
fn the_frontier_vector_is_what_readers_accept() {
    let doc = include_str!("../docs/format.md");
    let block = doc.split("```hex frontier\n").nth(1).expect("the frontier vector").split("```").next().unwrap();
    let bytes: Vec<u8> = block.split_whitespace().map(|h| u8::from_str_radix(h, 16).expect("hex byte")).collect();
    assert_eq!(bytes.len(), tidelog::format::FRONTIER_LEN);
    assert_eq!(bytes[..8], tidelog::format::FRONTIER_MAGIC);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("00000000000000000000.tlog"), segment_from_vectors()).unwrap();
    let reader = JournalReader::open(dir.path()).unwrap();
    assert_eq!(reader.published_frontier().unwrap(), None, "nothing published yet");
    std::fs::write(dir.path().join(tidelog::format::FRONTIER_FILE_NAME), &bytes).unwrap();
    assert_eq!(reader.published_frontier().unwrap(), Some(Lsn::new(120)));
    // A torn or damaged record, and a whole one of another journal, are
    // not this journal's frontier.
    let mut torn = bytes.clone();
    torn[16] ^= 1;
    std::fs::write(dir.path().join(tidelog::format::FRONTIER_FILE_NAME), &torn).unwrap();
    assert_eq!(reader.published_frontier().unwrap(), None, "a bad CRC");
    let mut other = bytes.clone();
    other[8] ^= 1;
    let crc = crc32fast::hash(&other[..24]);
    other[24..28].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(dir.path().join(tidelog::format::FRONTIER_FILE_NAME), &other).unwrap();
    assert_eq!(reader.published_frontier().unwrap(), None, "another journal's id");
}
