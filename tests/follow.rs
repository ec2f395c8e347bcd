//! Followers (`JournalReader::follow`): a reader that needs no handle on the
//! writer, stops at the durable frontier the writer publishes, and follows
//! it across rollovers, closes and reopens. Each scenario on both
//! substrates, both runtime flavours, and with direct I/O. (Followers in
//! another process than the writer: tidelog-cli/tests/follow.rs.)

mod common;

use std::time::Duration;

use common::within;
use futures::StreamExt;
use tidelog::{Error, Journal, JournalOptions, JournalReader, Lsn, SyncPolicy};

matrix!(
    a_follower_never_passes_the_durable_frontier,
    a_follower_follows_rollovers_closes_and_reopens,
    a_follower_starts_anywhere_even_past_the_end,
    a_follower_of_a_replaced_journal_fails,
);

async fn a_follower_never_passes_the_durable_frontier(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.sync_policy(SyncPolicy::OnDemand)).await.unwrap();
    let mut follower = JournalReader::open(dir.path()).unwrap().follow(Lsn::ZERO);
    let mut lsns = Vec::new();
    for round in 0..20u32 {
        // Five records made durable, then five only written.
        for i in 0..5u32 {
            lsns.push(j.append_async(format!("{round}/{i}")).await.unwrap());
        }
        let synced = *lsns.last().unwrap();
        j.sync_through_async(synced).await.unwrap();
        for i in 5..10u32 {
            lsns.push(j.append_async(format!("{round}/{i}")).await.unwrap());
        }
        assert!(j.durable_lsn() < j.written_lsn(), "nothing syncs on its own here");
        // Everything up to the synced record arrives, each record checked
        // as it arrives against what a sync covered (the writer publishes
        // a round's frontier just before the gate tells waiters)...
        while let Some(rec) = within(10, "the follower", follower.next()).await {
            let rec = rec.unwrap();
            assert!(rec.lsn() <= synced, "{rec:?} delivered beyond the synced {synced}");
            if rec.lsn() >= synced {
                break;
            }
        }
        // ...and the written-only records do not.
        let early = tokio::time::timeout(Duration::from_millis(30), follower.next()).await;
        assert!(early.is_err(), "a record past the durable frontier was delivered: {early:?}");
    }
    j.close().await.unwrap();
    // close syncs: the rest arrives.
    let mut rest = Vec::new();
    while rest.len() < 5 {
        rest.push(within(10, "the follower after close", follower.next()).await.unwrap().unwrap().lsn());
    }
    assert_eq!(rest, lsns[lsns.len() - 5..]);
}

async fn a_follower_follows_rollovers_closes_and_reopens(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let opts = opts.segment_size(1 << 20);
    let mut follower = None;
    let mut want = Vec::new();
    for life in 0..3u32 {
        let j = common::reopen(dir.path(), &opts).await;
        // A reader needs a segment: the follower starts once the first
        // journal is open.
        let f = follower.get_or_insert_with(|| JournalReader::open(dir.path()).unwrap().follow(Lsn::ZERO));
        for i in 0..300u32 {
            let payload = format!("life {life} record {i} {}", "x".repeat((i as usize * 397) % 9000));
            let lsn = if i % 3 == 0 { j.append_durable_async(&payload).await } else { j.append_async(&payload).await };
            want.push((lsn.unwrap(), payload));
        }
        j.sync_through_async(want.last().unwrap().0).await.unwrap();
        let mut got = 0;
        while got < 300 {
            let rec = within(20, "the follower", f.next()).await.unwrap().unwrap();
            let (lsn, payload) = &want[want.len() - 300 + got];
            assert_eq!((rec.lsn(), rec.payload()), (*lsn, payload.as_bytes()));
            got += 1;
        }
        j.close().await.unwrap();
    }
    let segments = JournalReader::open(dir.path()).unwrap().segments().len();
    assert!(segments > 3, "the test means to cross rollovers: {segments} segments");
}

async fn a_follower_starts_anywhere_even_past_the_end(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts).await.unwrap();
    let mut lsns = Vec::new();
    for i in 0..10u32 {
        lsns.push(j.append_durable_async(format!("r{i}")).await.unwrap());
    }
    let reader = JournalReader::open(dir.path()).unwrap();
    // From a record's LSN: the next record first.
    let mut f = reader.follow(lsns[4]);
    assert_eq!(within(10, "follow", f.next()).await.unwrap().unwrap().payload(), b"r5");
    // From an LSN not yet written: records from there once it is reached.
    let mut ahead = Vec::new();
    for i in 10..20u32 {
        ahead.push(j.append_async(format!("r{i}")).await.unwrap());
    }
    let mut late = reader.follow(ahead[4]);
    j.sync_through_async(ahead[9]).await.unwrap();
    assert_eq!(within(10, "follow ahead", late.next()).await.unwrap().unwrap().payload(), b"r15");
    // From the middle of a record: an error, not garbage.
    let mut bad = reader.follow(Lsn::new(lsns[2].as_u64() + 8));
    let err = within(10, "follow a bad LSN", bad.next()).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::InvalidLsn { .. } | Error::Corrupt { .. }), "{err}");
    assert!(within(10, "after the error", bad.next()).await.is_none(), "the stream ends after its error");
    j.close().await.unwrap();
}

async fn a_follower_of_a_replaced_journal_fails(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal");
    let j = Journal::open(&path, opts.clone()).await.unwrap();
    j.append_durable_async(b"first journal").await.unwrap();
    let mut f = JournalReader::open(&path).unwrap().follow(Lsn::ZERO);
    assert_eq!(within(10, "follow", f.next()).await.unwrap().unwrap().payload(), b"first journal");
    j.close().await.unwrap();
    std::fs::remove_dir_all(&path).unwrap();
    let j = Journal::open(&path, opts).await.unwrap();
    j.append_durable_async(b"second journal").await.unwrap();
    let err = within(10, "follow the replaced journal", f.next()).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("another journal"), "{err}");
    j.close().await.unwrap();
}

#[test]
fn a_follower_polled_outside_a_runtime_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let j = Journal::open(dir.path(), JournalOptions::new()).await.unwrap();
        j.append_durable_async(b"x").await.unwrap();
        j.close().await.unwrap();
    });
    let mut f = JournalReader::open(dir.path()).unwrap().follow(Lsn::ZERO);
    let first = futures::executor::block_on(f.next()).unwrap();
    assert!(matches!(first, Err(Error::RuntimeRequired)), "{first:?}");
}
