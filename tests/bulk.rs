//! `bulk::WritebackFile`: chunk boundaries, the degraded path, atomic
//! finish, failed writes and writeback waits (through the hidden fault
//! seams), on both runtime flavours and both substrates (writeback calls on
//! an io_uring ring of the writer's own, or on the blocking pool).

use std::path::Path;
use std::time::Duration;

use tidelog::bulk::{WritebackFile, WritebackOptions, MIN_CHUNK};
use tidelog::testing::{skip, Capability};
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
            skip(Capability::IoUring, "bulk writer on io_uring", &why);
            None
        }
        Err(e) => panic!("create: {e}"),
    }
}

/// [`create`], for a test of writeback waits: `None` (said) also where the
/// file's filesystem has no writeback to wait for (tmpfs).
async fn create_waiting(path: &Path, opts: WritebackOptions, substrate: SubstrateChoice) -> Option<WritebackFile> {
    let w = create(path, opts, substrate).await?;
    if w.storage_class().is_memory() {
        let why = format!("{} has no writeback to wait for", w.storage_class());
        skip(Capability::Direct, "bulk writeback waits", &why);
        return None;
    }
    Some(w)
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
            let Some(mut w) = create_waiting(&path, opts, substrate).await else { return };
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

/// Writes `mib` MiB of `byte`, one MiB per call (one write each), and
/// returns what each call returned.
async fn write_mib(w: &mut WritebackFile, mib: u64, byte: u8) -> Vec<tidelog::Result<()>> {
    let block = vec![byte; 1 << 20];
    let mut results = Vec::new();
    for _ in 0..mib {
        results.push(w.write_all(&block).await);
    }
    results
}

/// After the first failed call, every later call fails too.
fn assert_sticky(results: &[tidelog::Result<()>], what: &str) {
    let first = results.iter().position(|r| r.is_err()).unwrap_or_else(|| panic!("no write_all failed after {what}"));
    for (i, r) in results.iter().enumerate().skip(first) {
        assert!(r.is_err(), "write_all #{} returned Ok after {what} failed #{}", i + 1, first + 1);
    }
}

/// The directory holds exactly `names`: no temporary file is left behind.
fn assert_only(dir: &Path, names: &[&str]) {
    let mut found: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    found.sort();
    assert_eq!(found, names, "files left in {}", dir.display());
}

#[test]
fn a_failed_writeback_wait_fails_finish_with_an_error_naming_the_path() {
    for (rt, substrate) in cells() {
        rt.block_on(within("failed wait", async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("snapshot");
            let opts = WritebackOptions::new().chunk(MIN_CHUNK).adaptive(false).inject_wait_failure(1);
            let Some(mut w) = create_waiting(&path, opts, substrate).await else { return };
            // The first wait (for chunk 1, when chunk 2 is complete) fails.
            let results = write_mib(&mut w, (3 * MIN_CHUNK) >> 20, 0x5A).await;
            let finished = w.finish().await;
            let err = match finished {
                Ok(len) => panic!("finish reported {len} bytes durable after a failed writeback wait"),
                Err(e) => e,
            };
            assert!(err.to_string().contains(&path.display().to_string()), "the error names no path: {err}");
            assert_eq!(err.os_error().and_then(|e| e.raw_os_error()), Some(libc::EIO), "{err}");
            assert_sticky(&results, "a writeback wait");
        }));
    }
}

#[test]
fn a_failed_writeback_wait_never_publishes_an_atomic_snapshot() {
    for (rt, substrate) in cells() {
        rt.block_on(within("failed wait, atomic", async {
            for old in [None, Some(&b"old snapshot"[..])] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("state.snap");
                if let Some(old) = old {
                    std::fs::write(&path, old).unwrap();
                }
                let opts = WritebackOptions::new().chunk(MIN_CHUNK).adaptive(false).atomic(true).inject_wait_failure(1);
                let Some(mut w) = create_waiting(&path, opts, substrate).await else { return };
                let _ = write_mib(&mut w, (3 * MIN_CHUNK) >> 20, 0x5A).await;
                let finished = w.finish().await;
                assert!(finished.is_err(), "atomic finish succeeded after a failed writeback wait: {finished:?}");
                let err = finished.unwrap_err().to_string();
                assert!(err.contains("state.snap"), "the error names no path: {err}");
                match old {
                    None => assert!(!path.exists(), "a snapshot whose writeback failed was published"),
                    Some(old) => assert_eq!(std::fs::read(&path).unwrap(), old, "the old snapshot was replaced"),
                }
                assert_only(dir.path(), if old.is_some() { &["state.snap"] } else { &[] });
            }
        }));
    }
}

#[test]
fn a_failed_write_is_sticky_and_finish_neither_succeeds_nor_renames() {
    for (rt, substrate) in cells() {
        rt.block_on(within("failed write", async {
            for atomic in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("state.snap");
                std::fs::write(&path, b"old snapshot").unwrap();
                let opts = WritebackOptions::new().atomic(atomic).inject_write_failure(2);
                let Some(mut w) = create(&path, opts, substrate).await else { return };
                // One write per MiB: the second fails, the fourth would be fine.
                let results = write_mib(&mut w, 4, 0x77).await;
                assert!(results[0].is_ok(), "{:?}", results[0]);
                let finished = w.finish().await;
                let err = match finished {
                    Ok(len) => panic!("finish (atomic: {atomic}) reported {len} bytes durable after a failed write"),
                    Err(e) => e,
                };
                assert!(err.to_string().contains("state.snap"), "the error names no path: {err}");
                assert_sticky(&results, "a write");
                if atomic {
                    assert_eq!(std::fs::read(&path).unwrap(), b"old snapshot", "renamed after a failed write");
                    assert_only(dir.path(), &["state.snap"]);
                }
            }
        }));
    }
}

#[test]
fn an_abandoned_wait_that_fails_later_fails_finish() {
    for (rt, substrate) in cells() {
        rt.block_on(within("abandoned failed wait", async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.snap");
            std::fs::write(&path, b"old snapshot").unwrap();
            let opts = WritebackOptions::new()
                .chunk(MIN_CHUNK)
                .adaptive(false)
                .atomic(true)
                .wait_deadline(Duration::from_millis(100))
                .inject_wait_delay(Duration::from_millis(300))
                .inject_wait_failure(1);
            let Some(mut w) = create_waiting(&path, opts, substrate).await else { return };
            for r in write_mib(&mut w, (4 * MIN_CHUNK) >> 20, 0xE1).await {
                r.unwrap(); // the wait's failure is not known yet
            }
            assert!(w.stats().degraded, "the 300 ms wait overran the 100 ms deadline");
            // The abandoned wait completes, and fails, before finish (which
            // would also wait for it up to one deadline after its fdatasync).
            within("the abandoned wait", w.settle_abandoned_waits()).await;
            let finished = w.finish().await;
            assert!(finished.is_err(), "finish ignored an abandoned writeback wait that failed: {finished:?}");
            let err = finished.unwrap_err();
            assert!(err.to_string().contains("state.snap"), "the error names no path: {err}");
            assert_eq!(std::fs::read(&path).unwrap(), b"old snapshot", "renamed after a failed writeback wait");
        }));
    }
}

#[test]
fn without_a_runtime_create_says_so() {
    let err = futures::executor::block_on(WritebackFile::create("/tmp/x", WritebackOptions::new())).unwrap_err();
    assert!(matches!(err, tidelog::Error::RuntimeRequired), "{err}");
}

/// `write_all` dropped while its bytes are being written (a timeout around
/// it, a `select!` that took another branch) loses them: every later call
/// and `finish` must say so, never report the file whole.
#[test]
fn a_write_all_cancelled_mid_write_fails_the_writer() {
    use futures::FutureExt;
    for (rt, substrate) in cells() {
        rt.block_on(within("cancelled write", async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.snap");
            let Some(mut w) = create(&path, WritebackOptions::new().atomic(true), substrate).await else { return };
            w.write_all(&pattern(0, 1000)).await.unwrap();
            // One write per MiB staged: the future, polled once and
            // dropped, is still waiting for one of them (even on a loaded
            // machine that lets a few complete within the poll).
            let big = pattern(1000, 32 << 20);
            let polled = w.write_all(&big).now_or_never();
            assert!(polled.is_none(), "the write is in flight: {polled:?}");
            let err = w.write_all(b"more").await.unwrap_err();
            assert!(err.to_string().contains("cancelled"), "{err}");
            let err = w.finish().await.unwrap_err();
            assert!(err.to_string().contains("cancelled"), "{err}");
            assert!(!path.exists(), "nothing renamed into place");
        }));
    }
}
