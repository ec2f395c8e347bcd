//! What the adapter's tests share: the journal configurations every test
//! runs on (both substrates, and direct I/O where the filesystem allows).

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use tidelog::{Journal, JournalOptions, SubstrateChoice};

/// The cells: (name, options).
pub fn cells() -> Vec<(&'static str, JournalOptions)> {
    let base = JournalOptions::new().segment_size(1 << 20);
    vec![
        ("blocking", base.clone().substrate(SubstrateChoice::Blocking)),
        ("io_uring", base.clone().substrate(SubstrateChoice::IoUring)),
        ("blocking+direct", base.clone().substrate(SubstrateChoice::Blocking).direct_io(true)),
        ("io_uring+direct", base.substrate(SubstrateChoice::IoUring).direct_io(true)),
    ]
}

/// Why a journal with `opts` cannot run here, if it cannot (io_uring
/// refused, or a filesystem without O_DIRECT).
pub async fn unavailable(opts: &JournalOptions) -> Option<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    match Journal::open(dir.path(), opts.clone()).await {
        Ok(j) => {
            j.close().await.expect("close the probe journal");
            None
        }
        Err(e @ tidelog::Error::Unsupported(_)) => Some(e.to_string()),
        Err(e) => panic!("probe journal failed to open: {e}"),
    }
}

/// What a cell needs that a machine may lack: direct I/O's cells fail
/// first on the filesystem, the others on io_uring.
pub fn capability(cell: &str) -> tidelog::testing::Capability {
    if cell.contains("direct") && tidelog::testing::Capability::Direct.present().is_err() {
        tidelog::testing::Capability::Direct
    } else {
        tidelog::testing::Capability::IoUring
    }
}

/// Runs `body` once per available cell on a multi-thread runtime, failing
/// loudly if one takes over two minutes.
pub fn each_cell<F, Fut>(body: F)
where
    F: Fn(&'static str, JournalOptions) -> Fut,
    Fut: Future<Output = ()>,
{
    for (name, opts) in cells() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async {
            if let Some(why) = unavailable(&opts).await {
                tidelog::testing::skip(capability(name), name, &why);
                return;
            }
            within(120, name, body(name, opts)).await;
        });
    }
}

/// Runs `body` with the options of the cell named `cell` on a multi-thread
/// runtime if the machine can run it (else skips, saying why), failing
/// loudly if it takes over two minutes.
pub fn in_cell<F, Fut>(cell: &str, body: F)
where
    F: FnOnce(JournalOptions) -> Fut,
    Fut: Future<Output = ()>,
{
    let (name, opts) = cells().into_iter().find(|(name, _)| *name == cell).expect("a known cell");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        if let Some(why) = unavailable(&opts).await {
            tidelog::testing::skip(capability(name), name, &why);
            return;
        }
        within(120, name, body(opts)).await;
    });
}

/// Awaits `fut` or fails loudly after `secs`.
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {secs} s"),
    }
}
