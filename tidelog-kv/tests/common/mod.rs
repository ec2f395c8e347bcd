//! What the cluster tests share: a runtime, the node binary, bounded
//! waits, the end-of-test checks, and the library tests' loop-device disk for
//! the power cut.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use tidelog_kv::api::{ClientReq, ClientResp, Dump, Status};
use tidelog_kv::client::{call, CALL_TIMEOUT};
use tidelog_kv::procs::Cluster;

/// A filesystem on a loop device and its power cut: the library tests'
/// file, one copy for every package's tests.
#[cfg(target_os = "linux")]
#[path = "../../../tests/common/disk.rs"]
pub mod disk;

/// The node binary cargo built for these tests.
pub fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tidelog-kv"))
}

/// Runs `cmd` to completion (the [`disk`]'s commands). tidelog-cli's
/// tests hold their spawn lock here; these do not, since the nodes start
/// through `procs::Cluster`, which takes no such lock: one here would
/// guard nothing.
pub fn output(cmd: &mut std::process::Command) -> std::io::Result<std::process::Output> {
    cmd.output()
}

/// Runs `body` on a runtime, failing loudly after `secs`.
pub fn run<F: Future<Output = ()>>(secs: u64, what: &str, body: F) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        if tokio::time::timeout(Duration::from_secs(secs), body).await.is_err() {
            panic!("{what} did not finish within {secs} s");
        }
    });
}

/// Awaits `fut` or fails loudly after `secs`.
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not happen within {secs} s"),
    }
}

pub async fn status(addr: &str) -> Status {
    match call(addr, ClientReq::Status, CALL_TIMEOUT).await {
        Ok(ClientResp::Status(s)) => s,
        other => panic!("status of {addr}: {other:?}"),
    }
}

/// Every node applies the leader's log, their state machines are equal,
/// and each holds every acknowledged write.
pub async fn all_agree_and_hold(cluster: &Cluster, acked: &BTreeMap<String, String>) {
    // The highest index any node has applied covers every acknowledged
    // write (a write is acknowledged once its leader applied it). Not the
    // leader's: a node restarted a moment ago may still report itself as
    // the leader of its old term, with its old applied index.
    let mut target = 0;
    for proc in cluster.procs.values() {
        target = target.max(status(&proc.addr).await.last_applied.unwrap_or(0));
    }
    assert!(target > 0, "no node applied an entry");
    let mut dumps: BTreeMap<u64, Dump> = BTreeMap::new();
    for (&id, proc) in &cluster.procs {
        let req = ClientReq::AwaitApplied { index: target, timeout_ms: 60_000 };
        match call(&proc.addr, req, Duration::from_secs(70)).await {
            Ok(ClientResp::Status(_)) => {}
            other => panic!("node {id} did not apply up to {target}: {other:?}"),
        }
        match call(&proc.addr, ClientReq::Dump, CALL_TIMEOUT).await {
            Ok(ClientResp::Dump(d)) => dumps.insert(id, d),
            other => panic!("dump of node {id}: {other:?}"),
        };
    }
    assert_eq!(dumps.len(), 3, "three nodes running");
    // Writes may still land after `target` (none are in flight here: the
    // load has stopped), so the maps are compared as they are.
    let (first_id, first) = dumps.iter().next().expect("a node");
    let summary: Vec<String> = dumps
        .iter()
        .map(|(id, d)| format!("node {id}: {} keys, applied through {:?}", d.map.len(), d.last_applied))
        .collect();
    eprintln!("state machines after applying through {target}: {}", summary.join("; "));
    for (id, d) in &dumps {
        assert_eq!(d.map.len(), first.map.len(), "nodes {first_id} and {id} hold different numbers of keys");
        assert!(d.map == first.map, "nodes {first_id} and {id}: the state machines differ");
    }
    let missing: Vec<&String> = acked.iter().filter(|(k, v)| first.map.get(*k) != Some(v)).map(|(k, _)| k).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes are missing or different, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}
