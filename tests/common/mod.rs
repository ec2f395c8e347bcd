//! Shared test harness: every journal scenario runs on each substrate, on
//! both runtime flavours, and with direct I/O on each substrate.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::path::Path;
use std::time::Duration;

mod shared;
pub use shared::*;

#[cfg(target_os = "linux")]
pub mod disk;

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

/// The ```hex blocks of docs/format.md (its test vectors), in order.
pub fn format_doc_hex_blocks() -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in include_str!("../../docs/format.md").lines() {
        match (line.trim(), current.as_mut()) {
            ("```hex", None) => current = Some(Vec::new()),
            ("```", Some(_)) => blocks.push(current.take().expect("open block")),
            (text, Some(bytes)) => {
                bytes.extend(text.split_whitespace().map(|h| u8::from_str_radix(h, 16).expect("hex byte")))
            }
            _ => {}
        }
    }
    blocks
}
