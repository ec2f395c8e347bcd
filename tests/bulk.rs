//! `bulk::WritebackFile`: chunk boundaries, the degraded path, atomic
//! finish, on both runtime flavours and both substrates (writeback calls on
//! an io_uring ring of the writer's own, or on the blocking pool).

use std::path::Path;
use std::time::Duration;

use tidelog::bulk::{WritebackFile, WritebackOptions, MIN_CHUNK};
use tidelog::{Substrate, SubstrateChoice};

/// Every runtime flavour with every substrate.
fn cells() -> Vec<(tokio::runtime::Runtime, SubstrateChoice)> {
    let mut cells = Vec::new();
    for substrate in [SubstrateChoice::IoUring, SubstrateChoice::Blocking] {
        cells.push((
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap(),
            substrate,
        ));
        cells.push((tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(), substrate));
    }
    cells
}

/// Creates the writer on `substrate`; `None` (said) where the kernel has no
/// io_uring for it.
async fn create(path: &Path, opts: WritebackOptions, substrate: SubstrateChoice) -> Option<WritebackFile> {
    match WritebackFile::create(path, opts.substrate(substrate)).await {
        Ok(w) => {
            let expected = if substrate == SubstrateChoice::IoUring { Substrate::IoUring } else { Substrate::Blocking };
            assert_eq!(w.substrate(), expected);
            Some(w)
        }
        Err(tidelog::Error::Unsupported(why)) if substrate == SubstrateChoice::IoUring => {
            eprintln!("SKIPPED on io_uring: {why}");
            None
        }
        Err(e) => panic!("create: {e}"),
    }
}

fn pattern(at: u64, len: usize) -> Vec<u8> {
    (at..at + len as u64).map(|i| (i % 251) as u8).collect()
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), fut).await.unwrap_or_else(|_| panic!("{what} took over 60 s"))
}

#[test]
fn odd_sized_writes_across_chunk_boundaries_land_exactly() {
    for (rt, substrate) in cells() {
        rt.block_on(within("bulk write", async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("snapshot");
            let opts = WritebackOptions::new().chunk(MIN_CHUNK).adaptive(false);
            let Some(mut w) = create(&path, opts, substrate).await else { return };
            let total = 3 * MIN_CHUNK + 12_345;
            let mut at = 0u64;
            let mut step = 1usize;
            while at < total {
                let len = step.min((total - at) as usize);
                w.write_all(&pattern(at, len)).await.unwrap();
                at += len as u64;
                step = step * 7 % 1_500_001 + 1; // sizes from 1 B to 1.5 MB
            }
            let stats = w.stats();
            assert_eq!(stats.bytes, total);
            assert_eq!(stats.chunks, 3, "one per completed chunk");
            if !w.storage_class().is_memory() {
                assert_eq!(stats.waits, 2, "each chunk after the first waits for the one before");
            }
            assert_eq!(w.finish().await.unwrap(), total);
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(bytes.len() as u64, total);
            assert!(bytes == pattern(0, total as usize), "content differs");
        }));
    }
}

#[test]
fn a_stalled_wait_degrades_and_finish_still_makes_the_file_whole() {
    for (rt, substrate) in cells() {
        rt.block_on(within("degraded write", async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("checkpoint");
            let opts = WritebackOptions::new()
                .chunk(MIN_CHUNK)
                .adaptive(false)
                .wait_deadline(Duration::from_millis(50))
                .inject_wait_delay(Duration::from_millis(400));
            let Some(mut w) = create(&path, opts, substrate).await else { return };
            if w.storage_class().is_memory() {
                eprintln!("SKIPPED: {} has no writeback to stall", w.storage_class());
                return;
            }
            let block = vec![0xC3u8; 1 << 20];
            for _ in 0..((4 * MIN_CHUNK) >> 20) {
                w.write_all(&block).await.unwrap();
            }
            let stats = w.stats();
            assert!(stats.degraded, "the 400 ms wait overran the 50 ms deadline");
            assert_eq!(stats.waits, 0, "no wait completed in time, and later chunks skip waiting");
            assert_eq!(stats.chunks, 4);
            assert_eq!(w.finish().await.unwrap(), 4 * MIN_CHUNK);
            let bytes = std::fs::read(&path).unwrap();
            assert!(bytes.len() as u64 == 4 * MIN_CHUNK && bytes.iter().all(|&b| b == 0xC3));
        }));
    }
}

#[test]
fn atomic_finish_replaces_whole_and_a_crash_before_rename_keeps_the_old_file() {
    for (rt, substrate) in cells() {
        rt.block_on(within("atomic write", async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.snap");
            std::fs::write(&path, b"old snapshot").unwrap();
            // A writer that dies before finish: the old file is untouched.
            let Some(mut w) = create(&path, WritebackOptions::new().atomic(true), substrate).await else { return };
            w.write_all(&[1u8; 100_000]).await.unwrap();
            drop(w);
            assert_eq!(std::fs::read(&path).unwrap(), b"old snapshot");
            // Aborted: the old file stays, the temporary goes.
            let Some(mut w) = create(&path, WritebackOptions::new().atomic(true), substrate).await else { return };
            w.write_all(&[2u8; 10]).await.unwrap();
            w.abort().await.unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"old snapshot");
            // Finished: the new file, whole, and no temporary left.
            let Some(mut w) = create(&path, WritebackOptions::new().atomic(true), substrate).await else { return };
            w.write_all(&[3u8; 3 << 20]).await.unwrap();
            assert_eq!(w.finish().await.unwrap(), 3 << 20);
            let bytes = std::fs::read(&path).unwrap();
            assert!(bytes.len() == 3 << 20 && bytes.iter().all(|&b| b == 3));
            let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(names.len(), 1, "{names:?}");
        }));
    }
}

#[test]
fn without_a_runtime_create_says_so() {
    let err = futures::executor::block_on(WritebackFile::create("/tmp/x", WritebackOptions::new())).unwrap_err();
    assert!(matches!(err, tidelog::Error::RuntimeRequired), "{err}");
}
