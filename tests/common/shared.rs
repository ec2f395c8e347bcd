//! What every test that opens journals or runs child processes shares:
//! the lock that keeps journals from opening while a child is being
//! spawned, the helpers that take it, and a loud timeout. The library's
//! tests include it as a module; tidelog-cli's tests include the same file
//! by path (that package is not published), so the two never drift.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use tidelog::{Journal, JournalOptions};

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
