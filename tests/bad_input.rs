//! Bad input gives a clear error naming what is wrong — never a panic.

use tidelog::{Error, Journal, JournalOptions, Lsn, SubstrateChoice};

fn opts() -> JournalOptions {
    JournalOptions::new().substrate(SubstrateChoice::Blocking)
}

#[tokio::test]
async fn oversized_records_are_refused_and_the_journal_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts().max_record_size(1024)).await.unwrap();
    let err = j.append_async(vec![0u8; 1025]).await.unwrap_err();
    assert!(matches!(err, Error::RecordTooLarge { len: 1025, max: 1024 }), "{err}");
    assert!(matches!(j.submit(vec![0u8; 5000]), Err(Error::RecordTooLarge { .. })));
    let batch = j.append_batch_async(&[vec![0u8; 10], vec![0u8; 2000]]).await;
    assert!(matches!(batch, Err(Error::RecordTooLarge { .. })));
    // A batch larger than a segment is refused too, not split.
    let small = Journal::open(dir.path().join("small"), opts().segment_size(1 << 20)).await.unwrap();
    let big: Vec<Vec<u8>> = (0..3).map(|_| vec![1u8; 400_000]).collect();
    assert!(matches!(small.append_batch_async(&big).await, Err(Error::RecordTooLarge { .. })));
    small.close().await.unwrap();
    assert_eq!(j.append_async(b"fine").await.unwrap(), Lsn::new(32));
    j.close().await.unwrap();
}

#[tokio::test]
async fn a_file_instead_of_a_directory_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"hello").unwrap();
    let err = Journal::open(&file, opts()).await.unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
    assert!(matches!(err, Error::Io { .. }));
}

#[tokio::test]
async fn foreign_files_in_the_directory_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README.txt"), b"notes").unwrap();
    std::fs::write(dir.path().join("123.tlog"), b"short name, not a segment").unwrap();
    std::fs::create_dir(dir.path().join("subdir")).unwrap();
    let j = Journal::open(dir.path(), opts()).await.unwrap();
    j.append_async(b"x").await.unwrap();
    j.close().await.unwrap();
    assert!(tidelog::verify(dir.path()).unwrap().is_clean());
}

#[tokio::test]
async fn a_garbage_segment_header_is_corrupt_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts()).await.unwrap();
    j.append_async(b"x").await.unwrap();
    j.close().await.unwrap();
    let seg = dir.path().join("00000000000000000000.tlog");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[..8].copy_from_slice(b"GARBAGE!");
    std::fs::write(&seg, bytes).unwrap();
    match Journal::open(dir.path(), opts()).await {
        Err(Error::Corrupt { path, reason, .. }) => {
            assert_eq!(path, seg);
            assert!(reason.contains("magic"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // A header whose base disagrees with the file name is caught too.
    let renamed = dir.path().join("00000000000000000064.tlog");
    let j2 = tempfile::tempdir().unwrap();
    let j = Journal::open(j2.path(), opts()).await.unwrap();
    j.close().await.unwrap();
    std::fs::remove_file(&seg).unwrap();
    std::fs::copy(j2.path().join("00000000000000000000.tlog"), &renamed).unwrap();
    let err = Journal::open(dir.path(), opts()).await.unwrap_err();
    assert!(matches!(&err, Error::Corrupt { path, .. } if *path == renamed), "{err}");
}

#[tokio::test]
async fn a_second_open_of_a_live_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts()).await.unwrap();
    match Journal::open(dir.path(), opts()).await {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path().join("LOCK")),
        other => panic!("expected Locked, got {other:?}"),
    }
    j.close().await.unwrap();
    Journal::open(dir.path(), opts()).await.unwrap().close().await.unwrap();
}

#[tokio::test]
async fn nonsense_options_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        opts().segment_size(4096),
        opts().segment_size(u64::MAX),
        opts().max_record_size(0),
        opts().ring_entries(3),
        opts().buffer_size(10),
        opts().sync_policy(tidelog::SyncPolicy::Interval(std::time::Duration::ZERO)),
    ] {
        let err = Journal::open(dir.path(), bad.clone()).await.unwrap_err();
        assert!(matches!(err, Error::InvalidOptions(_)), "{bad:?} gave {err}");
    }
}

#[test]
fn open_outside_a_runtime_says_a_runtime_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let got = futures::executor::block_on(Journal::open(dir.path(), opts()));
    assert!(matches!(got, Err(Error::RuntimeRequired)), "{got:?}");
}

#[tokio::test]
async fn readers_refuse_lsns_outside_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts()).await.unwrap();
    let lsn = j.append_async(b"abc").await.unwrap();
    assert!(matches!(j.reader(Lsn::new(lsn.as_u64() + 8)), Err(Error::InvalidLsn { .. })));
    // LSN 8 is inside the first frame: no record starts there.
    let mid = j.reader(Lsn::new(8)).unwrap().next_record();
    assert!(matches!(mid, Err(Error::InvalidLsn { .. })), "{mid:?}");
    assert!(matches!(j.sync_through_async(Lsn::new(1 << 40)).await, Err(Error::InvalidLsn { .. })));
    j.close().await.unwrap();
    assert!(tidelog::JournalReader::open(dir.path().join("nope")).is_err());
}
