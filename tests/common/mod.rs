//! Shared test harness: every journal scenario runs on each substrate, on
//! both runtime flavours, and with direct I/O on each substrate.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use tidelog::testing::{skip, Capability};
use tidelog::{Journal, JournalOptions, SubstrateChoice};

/// Runtime flavour of a scenario.
#[derive(Clone, Copy, Debug)]
pub enum Flavor {
    Multi,
    Current,
}

/// Runs `body` with options selecting `substrate`, on a fresh runtime.
/// Scenarios on a substrate this machine cannot run are skipped with a
/// printed reason (never silently passed).
pub fn run<F, Fut>(flavor: Flavor, substrate: SubstrateChoice, body: F)
where
    F: FnOnce(JournalOptions) -> Fut,
    Fut: Future<Output = ()>,
{
    run_io(flavor, substrate, false, body)
}

/// [`run`], with `O_DIRECT` segments when `direct` is set (skipped, with the
/// reason printed, where the temp directory's filesystem refuses it).
pub fn run_io<F, Fut>(flavor: Flavor, substrate: SubstrateChoice, direct: bool, body: F)
where
    F: FnOnce(JournalOptions) -> Fut,
    Fut: Future<Output = ()>,
{
    let rt = match flavor {
        Flavor::Multi => tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build(),
        Flavor::Current => tokio::runtime::Builder::new_current_thread().enable_all().build(),
    }
    .expect("runtime");
    run_on(rt, substrate, direct, body)
}

/// [`run_io`] on a runtime of the caller's.
pub fn run_on<F, Fut>(rt: tokio::runtime::Runtime, substrate: SubstrateChoice, direct: bool, body: F)
where
    F: FnOnce(JournalOptions) -> Fut,
    Fut: Future<Output = ()>,
{
    let opts = JournalOptions::new().substrate(substrate).direct_io(direct);
    let cell = format!(
        "{}{} cell",
        if substrate == SubstrateChoice::IoUring { "io_uring" } else { "blocking" },
        if direct { " direct" } else { "" }
    );
    rt.block_on(async move {
        if substrate == SubstrateChoice::IoUring {
            if let Some(why) = unavailable(JournalOptions::new().substrate(SubstrateChoice::IoUring)).await {
                skip(Capability::IoUring, &cell, &why);
                return;
            }
        }
        if direct {
            if let Some(why) = unavailable(opts.clone()).await {
                skip(Capability::Direct, &cell, &why);
                return;
            }
        }
        tokio::time::timeout(Duration::from_secs(120), body(opts))
            .await
            .expect("scenario timed out: a waiter was never woken");
    });
}

/// Why a journal with `opts` cannot open here, if it cannot.
async fn unavailable(opts: JournalOptions) -> Option<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    match Journal::open(dir.path(), opts).await {
        Ok(j) => {
            j.close().await.expect("close probe journal");
            None
        }
        Err(e @ tidelog::Error::Unsupported(_)) => Some(e.to_string()),
        Err(e) => panic!("probe journal failed to open: {e}"),
    }
}

/// Awaits `fut` or fails loudly after `secs`.
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {secs} s"),
    }
}

/// Serialises child processes' start with opening journals in this test
/// process. A child holds a copy of every descriptor of its parent from
/// its fork until its exec closes them (`O_CLOEXEC`): a journal's lock
/// file among them keeps the lock held, and a journal opened in that
/// window would find its directory `Locked`. `spawn` returns once the
/// child's exec has begun, a moment before the kernel closes those copies,
/// so the lock is held until the child has shown it is past that: it
/// exited ([`output`]) or printed its first line (tidelog-cli's crash-test
/// children).
pub static SPAWN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `cmd` to completion under [`SPAWN`], returning its output.
pub fn output(cmd: &mut std::process::Command) -> std::io::Result<std::process::Output> {
    let _no_open = SPAWN.lock().unwrap_or_else(|p| p.into_inner());
    cmd.output()
}

/// Opens a journal whose earlier owner released its lock (it was closed,
/// its process ended, or [`reopen_dropped`] awaited the release).
// The guard is held across the open on purpose: no child may start while
// the lock is taken. Every holder finishes without waiting for another
// holder, and each test drives its own runtime, so blocking a thread on it
// is brief and cannot deadlock.
#[allow(clippy::await_holding_lock)]
pub async fn reopen(dir: &Path, opts: &JournalOptions) -> Journal {
    let _no_spawn = SPAWN.lock().unwrap_or_else(|p| p.into_inner());
    match Journal::open(dir, opts.clone()).await {
        Ok(j) => j,
        Err(e) => panic!("reopen {}: {e}", dir.display()),
    }
}

/// Drops `j` (its driver flushes in the background), awaits the release
/// of its directory lock (failing loudly after 30 s), and opens the
/// directory again.
pub async fn reopen_dropped(j: Journal, dir: &Path, opts: &JournalOptions) -> Journal {
    let released = j.released();
    drop(j);
    within(30, "the dropped journal releasing its lock", std::future::IntoFuture::into_future(released)).await;
    reopen(dir, opts).await
}

/// Every record of the journal in `dir`, read offline.
pub fn read_all(dir: &Path) -> Vec<(u64, Vec<u8>)> {
    let reader = tidelog::JournalReader::open(dir).expect("open reader");
    let mut r = reader.reader(tidelog::Lsn::ZERO).expect("reader");
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().expect("read") {
        out.push((rec.lsn().as_u64(), rec.payload().to_vec()));
    }
    out
}

/// Declares one test per (substrate, runtime flavour) for an async scenario
/// `fn(JournalOptions) -> impl Future<Output = ()>`.
#[macro_export]
macro_rules! matrix {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::common::{run, Flavor};
            use tidelog::SubstrateChoice;
            #[test]
            fn blocking_multi_thread() { run(Flavor::Multi, SubstrateChoice::Blocking, super::$name) }
            #[test]
            fn blocking_current_thread() { run(Flavor::Current, SubstrateChoice::Blocking, super::$name) }
            #[test]
            fn io_uring_multi_thread() { run(Flavor::Multi, SubstrateChoice::IoUring, super::$name) }
            #[test]
            fn io_uring_current_thread() { run(Flavor::Current, SubstrateChoice::IoUring, super::$name) }
            #[test]
            fn blocking_direct() { $crate::common::run_io(Flavor::Multi, SubstrateChoice::Blocking, true, super::$name) }
            #[test]
            fn io_uring_direct() { $crate::common::run_io(Flavor::Multi, SubstrateChoice::IoUring, true, super::$name) }
        }
    )*};
}

/// The physical block size of the device under `dir`, as sysfs reports it.
pub fn physical_block_size(dir: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    let node = std::fs::canonicalize(format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev))).ok()?;
    let read = |d: &Path| std::fs::read_to_string(d.join("queue/physical_block_size")).ok();
    read(&node).or_else(|| node.parent().and_then(read))?.trim().parse().ok()
}
