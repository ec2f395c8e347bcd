//! Futures dropped mid-flight, close racing appenders, more appenders than
//! ring entries, a runtime shut down under the journal; and how the
//! substrate is chosen.

mod common;

use futures::FutureExt;
use tidelog::testing::Capability;
use tidelog::{Error, Journal, JournalOptions, Lsn, StorageClass, Substrate, SubstrateChoice};

use common::{reopen, within};

matrix!(
    dropped_append_and_sync_futures_lose_nothing,
    close_while_appenders_run_acknowledges_only_what_it_keeps,
    thousands_of_appenders_beyond_the_ring_size,
    policy_always_resolves_appends_durable,
    policy_interval_serves_tickets_without_explicit_syncs,
    policy_on_demand_syncs_only_when_asked,
    a_hundred_thousand_tickets_from_one_task,
    policy_never_syncs_only_when_named,
    sqpoll_ring_serves_concurrent_durable_appends,
    a_durable_ticket_or_append_polled_after_close_resolves_ok,
);

/// Close makes everything appended durable; a ticket or append future
/// polled only afterwards must say so, not `Closed` (a caller told `Closed`
/// would append the record again, and the journal would hold it twice).
async fn a_durable_ticket_or_append_polled_after_close_resolves_ok(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts).await.unwrap();
    let synced = j.submit(b"synced before close").unwrap();
    j.sync_through_async(synced.lsn()).await.unwrap();
    let unsynced = j.submit(b"synced by close").unwrap();
    let mut append = Box::pin(j.append_durable_async(b"placed, then close"));
    assert!(futures::poll!(append.as_mut()).is_pending(), "placed, not yet durable");
    let (a, b) = (synced.lsn(), unsynced.lsn());
    within(30, "close", j.close()).await.unwrap();
    assert_eq!(synced.await.unwrap(), a);
    assert_eq!(unsynced.await.unwrap(), b);
    let c = within(30, "the append placed before close", append).await.unwrap();
    assert!(c > b);
    assert!(matches!(j.submit(b"after close"), Err(Error::Closed)), "new calls still get Closed");
    let kept: Vec<u64> = common::read_all(dir.path()).into_iter().map(|(lsn, _)| lsn).collect();
    assert_eq!(kept, [a.as_u64(), b.as_u64(), c.as_u64()]);
}

/// SQPOLL is opt-in; on the Blocking substrate the option is ignored.
async fn sqpoll_ring_serves_concurrent_durable_appends(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let opts = opts.sqpoll(Some(std::time::Duration::from_millis(5)));
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let j = j.clone();
            tokio::spawn(async move {
                let mut lsns = Vec::new();
                for i in 0..20 {
                    lsns.push(j.append_durable_async(format!("{t}-{i}")).await.unwrap());
                }
                lsns
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(within(60, "sqpoll appender", t).await.unwrap());
    }
    assert!(j.durable_lsn() >= *acked.iter().max().unwrap());
    j.close().await.unwrap();
    let kept: Vec<u64> = common::read_all(dir.path()).into_iter().map(|(lsn, _)| lsn).collect();
    acked.sort();
    assert_eq!(kept, acked.iter().map(|l| l.as_u64()).collect::<Vec<_>>());
}

async fn policy_never_syncs_only_when_named(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.sync_policy(tidelog::SyncPolicy::Never)).await.unwrap();
    // Tickets resolve once written; nothing is synced on the journal's own.
    let lsn = within(10, "ticket under Never", j.submit(b"scratch").unwrap()).await.unwrap();
    assert!(j.written_lsn() >= lsn);
    j.append_async(b"more").await.unwrap();
    assert_eq!(j.stats().syncs, 0);
    // Calls that name durability still sync.
    let durable = j.append_durable_async(b"named").await.unwrap();
    assert!(j.durable_lsn() >= durable);
    // One round, or two when the driver began one for the written frontier
    // before the write of "named" completed (pipelining).
    assert!((1..=2).contains(&j.stats().syncs), "{} syncs", j.stats().syncs);
    j.close().await.unwrap();
}

async fn a_hundred_thousand_tickets_from_one_task(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts).await.unwrap();
    let payload = [7u8; 128];
    let mut tickets = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        tickets.push(j.submit(payload).unwrap());
    }
    let last = tickets.last().unwrap().lsn();
    // Half are dropped unawaited; their records stay.
    let kept: Vec<_> = tickets.into_iter().step_by(2).collect();
    for t in kept {
        within(60, "ticket", t).await.unwrap();
    }
    assert!(j.durable_lsn() >= last);
    j.close().await.unwrap();
    assert_eq!(common::read_all(dir.path()).len(), 100_000);
}

async fn dropped_append_and_sync_futures_lose_nothing(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    for i in 0..200 {
        // The first poll places the record; the future is then dropped
        // while its write (or sync) may be in flight.
        let fut = j.append_durable_async(format!("dropped {i}"));
        assert!(fut.now_or_never().is_none_or(|r| r.is_ok()));
        let sync = j.sync_through_async(j.next_lsn());
        drop(sync.now_or_never());
    }
    let end = j.next_lsn();
    within(30, "sync after drops", j.sync_through_async(end)).await.unwrap();
    j.close().await.unwrap();
    let payloads: Vec<Vec<u8>> = common::read_all(dir.path()).into_iter().map(|(_, p)| p).collect();
    let placed: Vec<Vec<u8>> = (0..200).map(|i| format!("dropped {i}").into_bytes()).collect();
    assert_eq!(payloads, placed, "every record whose future was dropped, in order");
}

async fn close_while_appenders_run_acknowledges_only_what_it_keeps(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    let (acks, mut acked_so_far) = tokio::sync::mpsc::unbounded_channel::<()>();
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let (j, acks) = (j.clone(), acks.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    match j.append_durable_async(format!("{t}/{i}")).await {
                        Ok(lsn) => {
                            acked.push(lsn);
                            let _ = acks.send(());
                        }
                        Err(Error::Closed) => return acked,
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
                acked
            })
        })
        .collect();
    // Let them run until a few hundred records are durable, then close.
    within(30, "300 durable appends", async {
        for _ in 0..300 {
            acked_so_far.recv().await.expect("appenders run");
        }
    })
    .await;
    within(30, "close under load", j.close()).await.unwrap();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(within(30, "appender", t).await.unwrap());
    }
    let j = reopen(dir.path(), &opts).await;
    let (records, _) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
    let kept: std::collections::HashSet<Lsn> = records.iter().map(|r| r.lsn()).collect();
    assert!(acked.len() >= 300);
    for lsn in acked {
        assert!(kept.contains(&lsn), "acknowledged {lsn} lost by close");
    }
    j.close().await.unwrap();
}

async fn thousands_of_appenders_beyond_the_ring_size(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.clone().ring_entries(8)).await.unwrap();
    let tasks: Vec<_> = (0..3000)
        .map(|i| {
            let j = j.clone();
            tokio::spawn(async move { j.append_durable_async(format!("{i}")).await.unwrap() })
        })
        .collect();
    for t in tasks {
        within(60, "appender", t).await.unwrap();
    }
    let stats = j.stats();
    assert_eq!(stats.appends, 3000);
    assert!(stats.syncs < 3000, "group commit: {} syncs for 3000 appends", stats.syncs);
    j.close().await.unwrap();
    assert_eq!(common::read_all(dir.path()).len(), 3000);
}

async fn policy_always_resolves_appends_durable(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.sync_policy(tidelog::SyncPolicy::Always)).await.unwrap();
    for i in 0..20 {
        let lsn = j.append_async(format!("{i}")).await.unwrap();
        assert!(j.durable_lsn() >= lsn, "Always: durable on return");
    }
    // Blocking callers belong off the runtime's workers.
    let jb = j.clone();
    let lsn = tokio::task::spawn_blocking(move || jb.append(b"blocking")).await.unwrap().unwrap();
    assert!(j.durable_lsn() >= lsn);
    j.close().await.unwrap();
}

async fn policy_interval_serves_tickets_without_explicit_syncs(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let every = std::time::Duration::from_millis(5);
    let j = Journal::open(dir.path(), opts.sync_policy(tidelog::SyncPolicy::Interval(every))).await.unwrap();
    // Written appends become durable with nobody asking: a subscriber,
    // which never asks for a sync, sees the record once it is.
    let mut durable = j.subscribe(Lsn::ZERO);
    let lsn = j.append_async(b"background").await.unwrap();
    let seen = within(10, "the interval's sync", futures::StreamExt::next(&mut durable)).await.unwrap().unwrap();
    assert_eq!(seen.lsn(), lsn);
    assert!(j.durable_lsn() >= lsn);
    let tickets: Vec<_> = (0..100).map(|i| j.submit(format!("{i}")).unwrap()).collect();
    for t in tickets {
        within(10, "ticket under Interval", t).await.unwrap();
    }
    assert!(j.stats().syncs >= 1);
    j.close().await.unwrap();
}

async fn policy_on_demand_syncs_only_when_asked(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts).await.unwrap();
    let mut last = Lsn::ZERO;
    for i in 0..50 {
        last = j.append_async(format!("{i}")).await.unwrap();
    }
    assert_eq!(j.stats().syncs, 0, "OnDemand: nothing synced until asked");
    assert_eq!(j.durable_lsn(), Lsn::ZERO);
    j.sync_through_async(last).await.unwrap();
    assert_eq!(j.stats().syncs, 1);
    j.close().await.unwrap();
}

#[test]
fn a_runtime_shut_down_mid_flight_loses_nothing_acknowledged() {
    for choice in [SubstrateChoice::Blocking, SubstrateChoice::IoUring] {
        if choice == SubstrateChoice::IoUring {
            if let Err(why) = Capability::IoUring.present() {
                tidelog::testing::skip(Capability::IoUring, "runtime shutdown on io_uring", &why);
                continue;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let opts = JournalOptions::new().substrate(choice);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (durable_tx, mut durable_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let released = rt.block_on(async {
            let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
            for t in 0..16 {
                let (j, tx, durable_tx) = (j.clone(), tx.clone(), durable_tx.clone());
                tokio::spawn(async move {
                    for i in 0.. {
                        match j.append_durable_async(format!("{t}/{i}")).await {
                            Ok(lsn) => {
                                tx.send(lsn).unwrap();
                                let _ = durable_tx.send(());
                            }
                            Err(_) => return,
                        }
                    }
                });
            }
            within(30, "200 durable appends", async {
                for _ in 0..200 {
                    durable_rx.recv().await.expect("appenders run");
                }
            })
            .await;
            j.released()
        });
        rt.shutdown_timeout(std::time::Duration::from_secs(10));
        drop(tx);
        let acked: Vec<Lsn> = rx.into_iter().collect();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            within(
                30,
                "the lock of the journal whose runtime shut down",
                std::future::IntoFuture::into_future(released),
            )
            .await;
            let j = reopen(dir.path(), &opts).await;
            let (records, _) = j.read_batch(Lsn::ZERO, usize::MAX).unwrap();
            let kept: std::collections::HashSet<Lsn> = records.iter().map(|r| r.lsn()).collect();
            assert!(acked.len() >= 200, "{choice:?}");
            for lsn in &acked {
                assert!(kept.contains(lsn), "{choice:?}: acknowledged {lsn} lost at runtime shutdown");
            }
            j.close().await.unwrap();
        });
    }
}

#[tokio::test]
async fn substrate_reports_what_runs_and_auto_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let j =
        Journal::open(dir.path().join("b"), JournalOptions::new().substrate(SubstrateChoice::Blocking)).await.unwrap();
    assert_eq!(j.substrate(), Substrate::Blocking);
    assert!(!j.native_iouring_active());
    j.close().await.unwrap();
    let auto = Journal::open(dir.path().join("a"), JournalOptions::new()).await.unwrap();
    if cfg!(target_os = "linux") {
        match Journal::open(dir.path().join("u"), JournalOptions::new().substrate(SubstrateChoice::IoUring)).await {
            Ok(u) => {
                assert_eq!(u.substrate(), Substrate::IoUring);
                assert!(u.stats().substrate_reason.starts_with("asked for"), "{}", u.stats().substrate_reason);
                u.close().await.unwrap();
            }
            Err(Error::Unsupported(why)) => eprintln!("io_uring unavailable here: {why}"),
            Err(e) => panic!("{e}"),
        }
    }
    // Which substrate Auto runs depends on the filesystem (tests/auto.rs
    // checks the rule on ext4 and XFS); the reason names the rule.
    assert!(auto.stats().substrate_reason.starts_with("Auto: "), "{}", auto.stats().substrate_reason);
    auto.close().await.unwrap();
}

#[test]
fn a_runtime_without_io_forces_the_fallback() {
    // Without tokio's I/O driver the ring cannot be watched: Auto must run
    // Blocking, and an explicit IoUring must fail with Unsupported.
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        if let Some(opts) = options_auto_runs_on_the_ring(dir.path(), "Auto's fallback without an I/O driver") {
            let j = Journal::open(dir.path().join("auto"), opts).await.unwrap();
            assert_eq!(j.substrate(), Substrate::Blocking);
            let reason = j.stats().substrate_reason;
            assert!(reason.starts_with("Auto: io_uring unavailable") && reason.contains("enable_io"), "{reason}");
            j.append_durable_async(b"fallback works").await.unwrap();
            j.close().await.unwrap();
        }
        let forced =
            Journal::open(dir.path().join("ring"), JournalOptions::new().substrate(SubstrateChoice::IoUring)).await;
        assert!(matches!(forced, Err(Error::Unsupported(_))), "{forced:?}");
    });
}

/// The blocking API parks a thread of tokio's blocking pool when called
/// from `spawn_blocking`, as `docs/durability.md` advises. With as many such
/// callers as the pool has threads, the journal's own writes, syncs and
/// rollovers must still run: they never wait for a thread its callers can
/// occupy. Two callers on a pool of two, each appending across rollovers.
#[test]
fn blocking_callers_filling_tokios_blocking_pool_still_finish() {
    for (substrate, direct) in [
        (SubstrateChoice::Blocking, false),
        (SubstrateChoice::IoUring, false),
        (SubstrateChoice::Blocking, true),
        (SubstrateChoice::IoUring, true),
    ] {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(2)
            .enable_all()
            .build()
            .unwrap();
        common::run_on(rt, substrate, direct, |opts| async move {
            let dir = tempfile::tempdir().unwrap();
            let opts = opts.segment_size(1 << 20);
            let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
            let callers: Vec<_> = (0..2u8)
                .map(|caller| {
                    let j = j.clone();
                    tokio::task::spawn_blocking(move || {
                        let lsns: Vec<u64> =
                            (0..50u8).map(|i| j.append(vec![caller ^ i; 30_000]).unwrap().as_u64()).collect();
                        j.sync_through(Lsn::new(*lsns.last().unwrap())).unwrap();
                        lsns
                    })
                })
                .collect();
            let mut acked = Vec::new();
            for caller in callers {
                let lsns = within(60, "blocking callers on a full blocking pool", caller).await.unwrap();
                assert!(j.durable_lsn().as_u64() >= *lsns.last().unwrap());
                acked.extend(lsns);
            }
            j.close().await.unwrap();
            acked.sort_unstable();
            let kept: Vec<u64> = common::read_all(dir.path()).into_iter().map(|(lsn, _)| lsn).collect();
            assert_eq!(kept, acked, "exactly the acknowledged records");
            let segments = std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "tlog"))
                .count();
            assert!(segments >= 3, "the callers' appends rolled over ({segments} segments)");
        });
    }
}

/// A runtime built without its drivers gets a clear error from `open`
/// naming what is missing, never a panic inside tidelog: without the time
/// driver (timeouts, stall reports, `SyncPolicy::Interval`) the journal
/// cannot run; without the I/O driver `Auto` runs `Blocking`.
#[test]
fn a_runtime_without_its_drivers_gets_a_clear_error_not_a_panic() {
    let no_drivers = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let io_only = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    for rt in [no_drivers, io_only] {
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            for opts in [
                JournalOptions::new(),
                JournalOptions::new().sync_policy(tidelog::SyncPolicy::Interval(std::time::Duration::from_millis(5))),
                JournalOptions::new().substrate(SubstrateChoice::Blocking),
            ] {
                match Journal::open(dir.path(), opts).await {
                    Err(Error::Unsupported(why)) => assert!(why.contains("enable_time"), "{why}"),
                    other => panic!("a runtime without timers: {other:?}"),
                }
            }
        });
    }
    let time_only = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    time_only.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let Some(opts) = options_auto_runs_on_the_ring(dir.path(), "a runtime with timers only") else { return };
        let opts = opts.sync_policy(tidelog::SyncPolicy::Interval(std::time::Duration::from_millis(5)));
        let j = Journal::open(dir.path(), opts).await.unwrap();
        assert_eq!(j.substrate(), Substrate::Blocking, "no I/O driver: no ring to watch");
        assert!(j.stats().substrate_reason.starts_with("Auto: io_uring unavailable"), "{:?}", j.stats());
        let lsn = j.append_durable_async(b"works").await.unwrap();
        let ticket = j.submit(b"interval").unwrap();
        assert!(within(10, "an Interval ticket", ticket).await.unwrap() > lsn);
        j.close().await.unwrap();
    });
}

/// Options for which Auto's rule picks the ring on `dir`'s filesystem
/// (`RWF_DSYNC` writes on ext4 or XFS), so a fallback from it can be seen;
/// `None`, saying why, where the rule never picks the ring.
fn options_auto_runs_on_the_ring(dir: &std::path::Path, what: &str) -> Option<JournalOptions> {
    match StorageClass::of(dir).unwrap() {
        StorageClass::Ext4 | StorageClass::Xfs => Some(JournalOptions::new().dsync_writes(true)),
        other => {
            let why = format!("the temp dir is on {other}, where Auto never picks the ring");
            tidelog::testing::skip(Capability::Direct, what, &why);
            None
        }
    }
}
