//! A whole segment file of arbitrary bytes after a valid header: `verify`,
//! the offline reader, `replay` and recovery (open) never panic, and every
//! record they return carries a payload the fuzzer put there behind a valid
//! checksum (a frame that parses is one whose CRC matched).
#![no_main]

use std::sync::OnceLock;

use tidelog::{Journal, JournalOptions, Lsn, SubstrateChoice};

/// A valid header block for the segment based at LSN 0, taken from a real
/// journal once.
fn header() -> &'static [u8] {
    static HEADER: OnceLock<Vec<u8>> = OnceLock::new();
    HEADER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let opts = JournalOptions::new().substrate(SubstrateChoice::Blocking).segment_size(1 << 20);
            Journal::open(dir.path(), opts).await.unwrap().close().await.unwrap();
        });
        let file = dir.path().join("00000000000000000000.tlog");
        std::fs::read(file).unwrap()[..tidelog::format::SEGMENT_HEADER_LEN].to_vec()
    })
}

libfuzzer_sys::fuzz_target!(|body: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let mut file = header().to_vec();
    file.extend_from_slice(body);
    std::fs::write(dir.path().join("00000000000000000000.tlog"), &file).unwrap();
    let end = file.len() as u64;
    let inside = |lsn: Lsn| lsn.as_u64() + tidelog::format::SEGMENT_HEADER_LEN as u64 <= end;
    let _ = tidelog::verify(dir.path());
    if let Ok(journal) = tidelog::JournalReader::open(dir.path()) {
        if let Ok(mut reader) = journal.reader(Lsn::ZERO) {
            while let Ok(Some(record)) = reader.next_record() {
                assert!(inside(record.lsn()), "a record ending at {} outside the file", record.lsn());
            }
        }
    }
    let _ = tidelog::replay(dir.path(), Lsn::ZERO, |record| {
        assert!(inside(record.lsn()), "replay: a record outside the file");
        Ok(())
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let opts = JournalOptions::new().substrate(SubstrateChoice::Blocking).segment_size(1 << 20);
        if let Ok(j) = Journal::open(dir.path(), opts).await {
            if let Ok((records, _)) = j.read_batch(Lsn::ZERO, usize::MAX) {
                assert!(records.iter().all(|r| inside(r.lsn())), "recovery kept a record outside the file");
            }
            j.close().await.unwrap();
        }
    });
});
