//! Streams: many logs in one journal. Each scenario runs on both
//! substrates, both runtime flavours, and with direct I/O; each checks the
//! streams against a model, live and after a reopen.

mod common;

use std::collections::BTreeMap;

use tidelog::{Error, Journal, JournalOptions, JournalReader, Lsn, Streams, SubstrateChoice, SyncPolicy};

matrix!(
    streams_match_their_model_live_and_after_reopen,
    concurrent_writers_on_many_streams_share_syncs,
    purge_deletes_what_no_stream_needs_and_rewrites_laggards,
    bad_indexes_are_errors_naming_the_stream,
    plain_records_and_streams_share_a_journal,
    open_reads_a_checkpoint_and_scans_only_what_follows,
    a_checkpoint_taken_under_appends_opens_to_the_live_streams,
    an_entry_reads_back_at_once_across_rollovers,
    indexes_near_the_top_are_refused_not_wrapped,
    a_purge_gets_past_a_laggard_it_cannot_copy,
    a_checkpoint_goes_when_recovery_cuts_the_log,
    a_lone_blocking_stream_appender_leads_its_rounds,
);

/// Buffered only: with direct I/O a padding frame follows each write.
#[test]
fn a_fresh_journal_writes_the_stream_vectors_of_format_md_blocking() {
    common::run(
        common::Flavor::Multi,
        SubstrateChoice::Blocking,
        a_fresh_journal_writes_the_stream_vectors_of_format_md,
    )
}

#[test]
fn a_fresh_journal_writes_the_stream_vectors_of_format_md_io_uring() {
    common::run(common::Flavor::Multi, SubstrateChoice::IoUring, a_fresh_journal_writes_the_stream_vectors_of_format_md)
}

/// A checkpoint long enough to pause, awaited on a runtime without a timer
/// (the journal's own runtime has one): it pauses on the journal's runtime
/// rather than panicking on the caller's.
#[test]
fn a_checkpoint_awaited_on_a_runtime_without_timers_works() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let s = rt.block_on(async {
        let s = Streams::open(dir.path(), JournalOptions::new()).await.unwrap();
        let mut last = None;
        for id in 0..3000u64 {
            let batch: Vec<Vec<u8>> = (0..40).map(|i| payload(id, i)).collect();
            last = Some(s.submit_batch(id, &batch).unwrap().1);
        }
        last.unwrap().await.unwrap();
        s
    });
    let bare = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cut = bare.block_on(s.checkpoint()).unwrap();
    let released = s.journal().released();
    drop(s);
    rt.block_on(async move {
        released.await;
        let s = Streams::open(dir.path(), JournalOptions::new()).await.unwrap();
        assert_eq!(s.opened_from_checkpoint(), Some(cut));
        assert_eq!((s.list().len(), s.info(2999).unwrap().next), (3000, 41));
        s.close().await.unwrap();
    });
}

/// The segment of docs/format.md's stream frames vector: its header block
/// (the first hex block) and the two stream frames (the last two).
fn stream_vector_segment() -> (Vec<u8>, Vec<u8>) {
    let mut blocks = common::format_doc_hex_blocks();
    let frames: Vec<u8> = blocks.split_off(blocks.len() - 2).concat();
    let mut file = blocks.swap_remove(0);
    file.resize(tidelog::format::SEGMENT_HEADER_LEN, 0);
    file.extend_from_slice(&frames);
    (file, frames)
}

#[test]
fn the_stream_vectors_of_format_md_decode() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("00000000000000000000.tlog"), stream_vector_segment().0).unwrap();
    let listed = Streams::list_dir(dir.path()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].id, listed[0].first, listed[0].next, listed[0].meta_len), (7, 1, 2, Some(6)));
    let entries = Streams::read_dir(dir.path(), 7, 1, 10).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].index(), entries[0].lsn(), entries[0].payload()), (1, Lsn::new(48), &b"raft"[..]));
    let mut plain = JournalReader::open(dir.path()).unwrap().reader(Lsn::ZERO).unwrap();
    assert!(plain.next_record().unwrap().is_none(), "stream frames are not plain records");
    let report = tidelog::verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((report.records, report.end_lsn), (0, Lsn::new(96)));
}

/// What a stream should hold: its first index, its entries, its metadata.
#[derive(Debug, Clone, PartialEq)]
struct Model {
    first: u64,
    entries: Vec<Vec<u8>>,
    meta: Option<Vec<u8>>,
}

impl Default for Model {
    fn default() -> Model {
        Model { first: 1, entries: Vec::new(), meta: None }
    }
}

impl Model {
    fn next(&self) -> u64 {
        self.first + self.entries.len() as u64
    }
}

/// Checks every stream of `models` against `s`, and that `s` holds no other.
async fn check(s: &Streams, models: &BTreeMap<u64, Model>, when: &str) {
    let listed: Vec<u64> = s.list().iter().map(|i| i.id).collect();
    let expected: Vec<u64> = models
        .iter()
        .filter(|(_, m)| !(m.entries.is_empty() && m.first == 1 && m.meta.is_none()))
        .map(|(&id, _)| id)
        .collect();
    assert_eq!(listed, expected, "{when}: the streams listed");
    for (&id, m) in models {
        let Some(info) = s.info(id) else {
            assert!(!expected.contains(&id), "{when}: stream {id} missing");
            continue;
        };
        assert_eq!((info.first, info.next), (m.first, m.next()), "{when}: stream {id}'s range");
        assert_eq!(s.meta(id), m.meta, "{when}: stream {id}'s metadata");
        // Read in pages of 7, async and blocking alike.
        let mut got = Vec::new();
        let mut from = m.first;
        while from < m.next() {
            let page = s.read_async(id, from, 7).await.unwrap();
            assert!(!page.is_empty() && page.len() <= 7);
            for e in &page {
                assert_eq!(e.index(), from, "{when}: stream {id} pages in order");
                from += 1;
            }
            got.extend(page.into_iter().map(|e| e.into_payload()));
        }
        assert_eq!(got, m.entries, "{when}: stream {id}'s entries");
        assert!(s.read_async(id, m.next(), 10).await.unwrap().is_empty(), "{when}: nothing past the end");
        let s2 = s.clone();
        let (first, n) = (m.first, m.entries.len());
        let blocking = tokio::task::spawn_blocking(move || s2.read(id, first, n)).await.unwrap().unwrap();
        assert_eq!(blocking.len(), n, "{when}: blocking read of stream {id}");
    }
}

fn payload(stream: u64, i: u64) -> Vec<u8> {
    format!("stream {stream} entry {i} ").repeat(1 + (i % 5) as usize).into_bytes()
}

async fn streams_match_their_model_live_and_after_reopen(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let opts = opts.segment_size(1 << 20).sync_policy(SyncPolicy::Always);
    let s = Streams::open(dir.path(), opts.clone()).await.unwrap();
    let mut models: BTreeMap<u64, Model> = BTreeMap::new();
    for round in 0..40u64 {
        for id in [1u64, 2, 3, u64::MAX] {
            let m = models.entry(id).or_default();
            let i = m.next();
            match round.wrapping_add(id) % 4 {
                0 => {
                    assert_eq!(s.append_async(id, payload(id, i)).await.unwrap(), i);
                    m.entries.push(payload(id, i));
                }
                1 => {
                    let batch = [payload(id, i), payload(id, i + 1), payload(id, i + 2)];
                    assert_eq!(s.append_batch_async(id, &batch).await.unwrap(), i..i + 3);
                    m.entries.extend(batch);
                }
                2 => {
                    let (index, ticket) = s.submit(id, payload(id, i)).unwrap();
                    assert_eq!(index, i);
                    ticket.await.unwrap();
                    m.entries.push(payload(id, i));
                }
                _ => {
                    let s2 = s.clone();
                    let p = payload(id, i);
                    let index = tokio::task::spawn_blocking(move || s2.append(id, p)).await.unwrap().unwrap();
                    assert_eq!(index, i);
                    m.entries.push(payload(id, i));
                }
            }
        }
        if round % 7 == 3 {
            // Compaction of stream 1 and a Raft conflict on stream 2.
            let m = models.get_mut(&1).unwrap();
            let to = m.first + m.entries.len() as u64 / 2;
            s.truncate_prefix(1, to).await.unwrap();
            m.entries.drain(..(to - m.first) as usize);
            m.first = to;
            let m = models.get_mut(&2).unwrap();
            let from = m.next() - 2;
            s.truncate_suffix(2, from).await.unwrap();
            m.entries.truncate((from - m.first) as usize);
        }
        if round % 10 == 5 {
            let meta = format!("vote {round}").into_bytes();
            s.set_meta(3, &meta).await.unwrap();
            models.get_mut(&3).unwrap().meta = Some(meta);
        }
    }
    // A stream made empty past 1 (a snapshot installed), metadata on an
    // empty stream, and a removed stream.
    s.truncate_prefix(4, 1000).await.unwrap();
    models.insert(4, Model { first: 1000, ..Model::default() });
    s.set_meta(5, b"only metadata").await.unwrap();
    models.insert(5, Model { meta: Some(b"only metadata".to_vec()), ..Model::default() });
    s.remove(u64::MAX).await.unwrap();
    models.insert(u64::MAX, Model::default());
    assert_eq!(s.append_async(4, b"after the snapshot").await.unwrap(), 1000);
    models.get_mut(&4).unwrap().entries.push(b"after the snapshot".to_vec());
    check(&s, &models, "live").await;
    s.close().await.unwrap();

    let offline = Streams::list_dir(dir.path()).unwrap();
    let s = Streams::open(dir.path(), opts.clone()).await.unwrap();
    assert_eq!(offline, s.list(), "the offline listing agrees with the reopened journal");
    let m1 = &models[&1];
    let read = Streams::read_dir(dir.path(), 1, m1.first, usize::MAX).unwrap();
    assert_eq!(read.into_iter().map(|e| e.into_payload()).collect::<Vec<_>>(), m1.entries, "offline read");
    check(&s, &models, "reopened").await;
    // A removed stream's id starts afresh.
    assert_eq!(s.append_async(u64::MAX, b"new life").await.unwrap(), 1);
    s.close().await.unwrap();
}

async fn concurrent_writers_on_many_streams_share_syncs(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let opts = opts.sync_policy(SyncPolicy::Always);
    let s = Streams::open(dir.path(), opts.clone()).await.unwrap();
    const WRITERS: u64 = 64;
    const EACH: u64 = 40;
    let mut tasks = Vec::new();
    for id in 0..WRITERS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 1..=EACH {
                // Each writer awaits its own durable append.
                let index = s.append_async(id, payload(id, i)).await.unwrap();
                assert_eq!(index, i, "stream {id}'s indexes are dense");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = s.journal().stats();
    assert_eq!(stats.appends, WRITERS * EACH, "every entry counts as an append");
    assert!(
        stats.syncs < WRITERS * EACH / 2,
        "{} syncs for {} durable appends: streams did not share syncs",
        stats.syncs,
        WRITERS * EACH
    );
    s.close().await.unwrap();
    let s = Streams::open(dir.path(), opts).await.unwrap();
    for id in 0..WRITERS {
        let entries = s.read_async(id, 1, usize::MAX).await.unwrap();
        let expected: Vec<Vec<u8>> = (1..=EACH).map(|i| payload(id, i)).collect();
        assert_eq!(entries.into_iter().map(|e| e.into_payload()).collect::<Vec<_>>(), expected);
    }
    s.close().await.unwrap();
}

async fn purge_deletes_what_no_stream_needs_and_rewrites_laggards(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let opts = opts.segment_size(1 << 20);
    let s = Streams::open(dir.path(), opts.clone()).await.unwrap();
    let segments = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tlog"))
            .count()
    };
    // A laggard that never compacts, with metadata, written first.
    let mut laggard = Model::default();
    for i in 1..=20 {
        s.append_async(7, payload(7, i)).await.unwrap();
        laggard.entries.push(payload(7, i));
    }
    s.set_meta(7, b"laggard").await.unwrap();
    laggard.meta = Some(b"laggard".to_vec());
    let laggard_floor = s.info(7).unwrap().floor.unwrap();
    // A busy stream that compacts as it goes: ~12 MiB through 1 MiB
    // segments. Purges start by themselves after its truncations.
    let big = vec![0xA5u8; 8 << 10];
    let mut busy = Model::default();
    let mut most = 0;
    for i in 1..=1500u64 {
        s.append_async(8, &big).await.unwrap();
        busy.entries.push(big.clone());
        if i % 100 == 0 {
            let to = i - 10;
            s.truncate_prefix(8, to).await.unwrap();
            busy.entries.drain(..(to - busy.first) as usize);
            busy.first = to;
            most = most.max(segments());
        }
    }
    let report = s.purge().await.unwrap();
    let after = segments();
    // Live data is ~100 KiB: two segments of slack, one being written,
    // one a purge may not have reached yet.
    assert!(most <= 5 && after <= 3, "{most} segments at most, {after} after {report:?}");
    let moved = s.info(7).unwrap().floor.unwrap();
    assert!(
        moved.as_u64() > laggard_floor.as_u64() + (4 << 20),
        "the laggard was copied forward: {laggard_floor} -> {moved}"
    );
    assert_eq!(report.floor, s.list().iter().filter_map(|i| i.floor).min());
    let models = BTreeMap::from([(7, laggard), (8, busy)]);
    check(&s, &models, "after purge").await;
    s.close().await.unwrap();
    let s = Streams::open(dir.path(), opts).await.unwrap();
    check(&s, &models, "reopened after purge").await;
    s.close().await.unwrap();
}

async fn bad_indexes_are_errors_naming_the_stream(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let s = Streams::open(dir.path(), opts).await.unwrap();
    assert!(s.read_async(9, 1, 10).await.unwrap().is_empty(), "an unused stream reads empty");
    assert!(matches!(s.read_async(9, 2, 10).await, Err(Error::InvalidIndex { stream: 9, index: 2, .. })));
    for i in 1..=5 {
        s.append_async(9, payload(9, i)).await.unwrap();
    }
    s.truncate_prefix(9, 3).await.unwrap();
    let err = s.read_async(9, 2, 10).await.unwrap_err();
    assert!(matches!(err, Error::InvalidIndex { stream: 9, index: 2, .. }), "{err}");
    assert!(err.to_string().contains("stream 9"), "{err}");
    let err = s.truncate_suffix(9, 1).await.unwrap_err();
    assert!(matches!(err, Error::InvalidIndex { stream: 9, index: 1, .. }), "{err}");
    assert!(matches!(s.truncate_prefix(9, 0).await, Err(Error::InvalidIndex { .. })));
    // Past the end: nothing to drop, nothing written.
    let before = s.journal().next_lsn();
    s.truncate_suffix(9, 100).await.unwrap();
    s.truncate_prefix(9, 2).await.unwrap();
    assert_eq!(s.journal().next_lsn(), before, "no-op truncations write nothing");
    let too_big = vec![0u8; (16 << 20) + 1];
    assert!(matches!(s.append_async(9, &too_big).await, Err(Error::RecordTooLarge { .. })));
    s.close().await.unwrap();
    assert!(matches!(s.append_async(9, b"late").await, Err(Error::Closed)));
}

async fn plain_records_and_streams_share_a_journal(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let s = Streams::open(dir.path(), opts.clone()).await.unwrap();
    let j: Journal = s.journal().clone();
    let plain = j.append_async(b"plain one").await.unwrap();
    s.append_batch_async(1, &[b"s1", b"s2"]).await.unwrap();
    j.append_async(b"plain two").await.unwrap();
    s.set_meta(1, b"m").await.unwrap();
    s.close().await.unwrap();
    // Plain readers see the plain records only; verify passes.
    let mut reader = JournalReader::open(dir.path()).unwrap().reader(Lsn::ZERO).unwrap();
    let mut records = Vec::new();
    while let Some(r) = reader.next_record().unwrap() {
        records.push(r.into_payload());
    }
    assert_eq!(records, vec![b"plain one".to_vec(), b"plain two".to_vec()]);
    assert!(plain > Lsn::ZERO);
    tidelog::verify(dir.path()).unwrap();
    let s = Streams::open(dir.path(), opts).await.unwrap();
    assert_eq!(s.read_async(1, 1, 10).await.unwrap().len(), 2);
    s.close().await.unwrap();
}

async fn open_reads_a_checkpoint_and_scans_only_what_follows(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let opts = opts.segment_size(1 << 20);
    let s = Streams::open(dir.path(), opts.clone()).await.unwrap();
    assert_eq!(s.opened_from_checkpoint(), None, "a new journal has none");
    let mut models: BTreeMap<u64, Model> = BTreeMap::new();
    let write = |s: Streams, from: u64, to: u64| async move {
        let mut written = Vec::new();
        for i in from..to {
            let id = i % 5;
            let index = s.append_async(id, payload(id, i)).await.unwrap();
            written.push((id, index, payload(id, i)));
        }
        written
    };
    for (id, index, p) in write(s.clone(), 0, 300).await {
        let m = models.entry(id).or_default();
        assert_eq!(index, m.next());
        m.entries.push(p);
    }
    s.set_meta(2, b"before the cut").await.unwrap();
    models.get_mut(&2).unwrap().meta = Some(b"before the cut".to_vec());
    let cut = s.checkpoint().await.unwrap();
    // After the cut: more entries, a truncation, metadata.
    for (id, index, p) in write(s.clone(), 300, 400).await {
        let m = models.get_mut(&id).unwrap();
        assert_eq!(index, m.next());
        m.entries.push(p);
    }
    s.truncate_prefix(1, 30).await.unwrap();
    let m = models.get_mut(&1).unwrap();
    m.entries.drain(..29);
    m.first = 30;
    s.set_meta(3, b"after the cut").await.unwrap();
    models.get_mut(&3).unwrap().meta = Some(b"after the cut".to_vec());
    // Dropped without close (no checkpoint at close): open must use the
    // one at `cut` and apply what follows.
    let released = s.journal().released();
    drop(s);
    released.await;
    let s = Streams::open(dir.path(), opts.clone()).await.unwrap();
    assert_eq!(s.opened_from_checkpoint(), Some(cut));
    check(&s, &models, "reopened from a checkpoint").await;
    assert_eq!(s.list(), Streams::list_dir(dir.path()).unwrap(), "a full scan agrees");
    s.close().await.unwrap();
    // close wrote a newer one.
    let s = Streams::open(dir.path(), opts.clone()).await.unwrap();
    assert!(s.opened_from_checkpoint().unwrap() > cut);
    check(&s, &models, "reopened from the checkpoint close wrote").await;
    s.close().await.unwrap();
    // A damaged checkpoint is not used: open scans everything instead.
    let path = dir.path().join("STREAMS");
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let s = Streams::open(dir.path(), opts).await.unwrap();
    assert_eq!(s.opened_from_checkpoint(), None, "a damaged checkpoint was used");
    check(&s, &models, "reopened past a damaged checkpoint").await;
    s.close().await.unwrap();
}

/// A checkpoint of 2,000 streams, and of one long one that it copies a
/// piece at a time, is copied a few streams at a time while a writer keeps
/// appending (the long stream too), truncating, setting metadata, and
/// removing and remaking streams. Checkpoints are taken until one recorded some streams
/// later than its cut (its header's reach past its cut: the writer's frames
/// landed between its copies); opened from it, dropped without `close`,
/// every stream is as it was.
async fn a_checkpoint_taken_under_appends_opens_to_the_live_streams(opts: JournalOptions) {
    const STREAMS: u64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let s = Streams::open(dir.path(), opts.clone()).await.unwrap();
    let mut last = None;
    for id in 0..STREAMS {
        let batch: Vec<Vec<u8>> = (0..8).map(|i| payload(id, i)).collect();
        last = Some(s.submit_batch(id, &batch).unwrap().1);
    }
    const LONG: u64 = STREAMS;
    let batch: Vec<Vec<u8>> = (0..3000).map(|i| payload(LONG, i)).collect();
    s.submit_batch(LONG, &batch).unwrap().1.await.unwrap();
    last.unwrap().await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let (s, stop) = (s.clone(), stop.clone());
        async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = i * 7919 % STREAMS;
                match i % 6 {
                    0 if i % 601 == 0 => drop(s.truncate_prefix(LONG, s.info(LONG).unwrap().first + 1).await.unwrap()),
                    0 => drop(s.append_async(LONG, payload(LONG, i)).await.unwrap()),
                    1 | 2 => drop(s.append_async(id, payload(id, i)).await.unwrap()),
                    3 => {
                        let first = s.info(id).map_or(1, |info| info.first);
                        s.truncate_prefix(id, first + 1).await.unwrap();
                    }
                    4 => drop(s.set_meta(id, format!("meta {i}").as_bytes()).await.unwrap()),
                    _ if i % 30 == 5 => {
                        s.remove(id).await.unwrap();
                        s.append_async(id, b"remade").await.unwrap();
                    }
                    _ => drop(
                        s.truncate_suffix(id, s.info(id).map_or(1, |info| info.next.saturating_sub(1).max(1)))
                            .await
                            .unwrap(),
                    ),
                }
                i += 1;
                if i % 8 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            i
        }
    });
    let ckpt = dir.path().join("STREAMS");
    let header = |at: usize| {
        let bytes = std::fs::read(&ckpt).unwrap();
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    };
    let mut cut = Lsn::ZERO;
    let mut fuzzy = false;
    for _ in 0..200 {
        cut = s.checkpoint().await.unwrap();
        let (written_cut, reach) = (header(24), header(32));
        assert_eq!(written_cut, cut.as_u64());
        if reach > written_cut {
            fuzzy = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let ops = common::within(60, "the writer", writer).await.unwrap();
    assert!(fuzzy, "no checkpoint in 200 overlapped the writer's {ops} operations");
    // More after the checkpoint, then everything durable.
    s.append_async(1, b"after").await.unwrap();
    let end = s.set_meta(2, b"after").await.unwrap();
    s.journal().sync_through_async(end).await.unwrap();
    let (live, sample) = (s.list(), read_some(&s).await);
    let released = s.journal().released();
    drop(s);
    released.await;
    let s = Streams::open(dir.path(), opts).await.unwrap();
    assert_eq!(s.opened_from_checkpoint(), Some(cut));
    assert_eq!(s.list(), live, "the streams' ranges, bytes, metadata and floors");
    assert_eq!(read_some(&s).await, sample, "the entries and metadata of every 13th stream and the long one");
    assert_eq!(s.list(), Streams::list_dir(dir.path()).unwrap(), "a full scan agrees");
    s.close().await.unwrap();
}

/// The entries and metadata of every 13th stream, and of the long one.
async fn read_some(s: &Streams) -> Vec<(u64, Vec<Vec<u8>>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for info in s.list().into_iter().filter(|info| info.id % 13 == 0 || info.id == 2000) {
        let entries = s.read_async(info.id, info.first, 1000).await.unwrap();
        out.push((info.id, entries.into_iter().map(|e| e.into_payload()).collect(), s.meta(info.id)));
    }
    out
}

async fn a_fresh_journal_writes_the_stream_vectors_of_format_md(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let s = Streams::open(dir.path(), opts.clone()).await.unwrap();
    assert_eq!(s.append_async(7, b"raft").await.unwrap(), 1);
    s.set_meta(7, b"vote 3").await.unwrap();
    s.close().await.unwrap();
    let segment = std::fs::read(dir.path().join("00000000000000000000.tlog")).unwrap();
    let at = tidelog::format::SEGMENT_HEADER_LEN;
    let frames = stream_vector_segment().1;
    assert_eq!(&segment[at..at + frames.len()], &frames[..], "the writer's bytes are the documented ones");
    let s = Streams::open(dir.path(), opts).await.unwrap();
    assert_eq!(s.meta(7).as_deref(), Some(&b"vote 3"[..]));
    s.close().await.unwrap();
}

async fn an_entry_reads_back_at_once_across_rollovers(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let s = Streams::open(dir.path(), opts.segment_size(1 << 20)).await.unwrap();
    // ~5 MiB through 1 MiB segments: each read asks for an entry the log
    // buffer may have placed in a segment the writer has not made yet.
    for i in 0..1200u64 {
        let p = payload(3, i).repeat(40);
        let (index, _ticket) = s.submit(3, &p).unwrap();
        let got = s.read_async(3, index, 1).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload(), &p[..], "entry {index}");
    }
    s.close().await.unwrap();
}

async fn indexes_near_the_top_are_refused_not_wrapped(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let s = Streams::open(dir.path(), opts.clone()).await.unwrap();
    s.truncate_prefix(1, u64::MAX).await.unwrap();
    let err = s.append_async(1, b"past the top").await.unwrap_err();
    assert!(matches!(err, Error::InvalidIndex { stream: 1, index: u64::MAX, .. }), "{err}");
    s.truncate_prefix(2, u64::MAX - 1).await.unwrap();
    assert_eq!(s.append_async(2, b"the last").await.unwrap(), u64::MAX - 1);
    assert!(matches!(s.append_async(2, b"one more").await, Err(Error::InvalidIndex { stream: 2, .. })));
    assert!(matches!(s.append_batch_async(3, &[b"a", b"b"]).await, Ok(r) if r == (1..3)));
    assert_eq!(s.info(2).unwrap().next, u64::MAX);
    s.close().await.unwrap();
    let s = Streams::open(dir.path(), opts).await.unwrap();
    assert_eq!((s.info(1).unwrap().first, s.info(1).unwrap().next), (u64::MAX, u64::MAX));
    assert_eq!(s.read_async(2, u64::MAX - 1, 10).await.unwrap()[0].payload(), b"the last");
    // Empty at index 1 without metadata: the same as never used.
    s.truncate_suffix(3, 1).await.unwrap();
    assert_eq!(s.info(3), None);
    s.close().await.unwrap();
}

async fn a_purge_gets_past_a_laggard_it_cannot_copy(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let s = Streams::open(dir.path(), opts.segment_size(1 << 20)).await.unwrap();
    // Metadata so large that no state frame carrying it fits a segment
    // beside its header: this laggard cannot be copied forward.
    let capacity = (1 << 20) - tidelog::format::SEGMENT_HEADER_LEN;
    let meta = vec![7u8; capacity - tidelog::format::FRAME_HEADER_LEN - 40];
    s.set_meta(1, &meta).await.unwrap();
    s.append_async(2, b"a second laggard, small").await.unwrap();
    let big = vec![1u8; 8 << 10];
    for i in 1..=700u64 {
        s.append_async(3, &big).await.unwrap();
        if i % 50 == 0 {
            s.truncate_prefix(3, i).await.unwrap();
        }
    }
    let report = s.purge().await.unwrap();
    assert!(report.streams_skipped >= 1, "{report:?}");
    assert_eq!(s.meta(1).as_deref(), Some(&meta[..]));
    let again = s.purge().await.unwrap();
    assert!(again.floor.is_some(), "{again:?}");
    s.close().await.unwrap();
    let s = Streams::open(dir.path(), JournalOptions::new().segment_size(1 << 20)).await.unwrap();
    assert_eq!(s.meta(1).as_deref(), Some(&meta[..]));
    assert_eq!(s.read_async(2, 1, 1).await.unwrap()[0].payload(), b"a second laggard, small");
    s.close().await.unwrap();
}

async fn a_checkpoint_goes_when_recovery_cuts_the_log(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let s = Streams::open(dir.path(), opts.clone()).await.unwrap();
    for i in 1..=50u64 {
        s.append_async(1, payload(1, i)).await.unwrap();
    }
    s.close().await.unwrap();
    let ckpt = dir.path().join("STREAMS");
    assert!(ckpt.exists(), "close writes a checkpoint");
    // Damage the last entries (a torn tail): recovery cuts below the cut.
    let seg = dir.path().join("00000000000000000000.tlog");
    let mut bytes = std::fs::read(&seg).unwrap();
    let end = tidelog::format::SEGMENT_HEADER_LEN
        + bytes[tidelog::format::SEGMENT_HEADER_LEN..].iter().rposition(|&b| b != 0).unwrap();
    bytes[end - 100] ^= 0xFF;
    std::fs::write(&seg, bytes).unwrap();
    let j = Journal::open(dir.path(), opts.clone()).await.unwrap();
    assert!(j.recovery_report().truncated_bytes() > 0);
    assert!(!ckpt.exists(), "recovery cut the log and kept a checkpoint of frames past the cut");
    j.close().await.unwrap();
    let s = Streams::open(dir.path(), opts).await.unwrap();
    assert_eq!(s.opened_from_checkpoint(), None);
    // The damaged entry and any after it are gone; the rest are intact.
    let next = s.info(1).unwrap().next;
    assert!((45..51).contains(&next), "entries up to {next} left");
    let read: Vec<Vec<u8>> = s.read_async(1, 1, 100).await.unwrap().into_iter().map(|e| e.into_payload()).collect();
    assert_eq!(read, (1..next).map(|i| payload(1, i)).collect::<Vec<_>>());
    s.close().await.unwrap();
}

/// One thread on the blocking `Streams::append` under `SyncPolicy::Always`,
/// nothing else running: it leads its own rounds (the fault seam counts
/// them), every return is durable, and every stream reopens with exactly
/// its entries.
async fn a_lone_blocking_stream_appender_leads_its_rounds(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let opts = opts.sync_policy(SyncPolicy::Always);
    let plan = std::sync::Arc::new(tidelog::testing::FaultPlan::default());
    let s = tidelog::testing::Seams::new().faults(&plan).open_streams(dir.path(), opts.clone()).await.unwrap();
    let caller = s.clone();
    let thread = tokio::task::spawn_blocking(move || {
        let mut model: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
        for i in 0..150u64 {
            let stream = i % 3 + 1;
            let payload = format!("stream {stream} entry {i} {}", "e".repeat((i * 373 % 5000) as usize)).into_bytes();
            let index = caller.append(stream, &payload).unwrap();
            let entries = model.entry(stream).or_default();
            entries.push(payload);
            assert_eq!(index, entries.len() as u64, "dense indexes per stream");
        }
        model
    });
    let model = common::within(120, "a blocking stream appender", thread).await.unwrap();
    let led = plan.performed_by_callers.load(std::sync::atomic::Ordering::SeqCst);
    assert!(led >= 50, "a lone blocking stream appender led only {led} of 150 rounds");
    s.close().await.unwrap();
    let s = Streams::open(dir.path(), opts).await.unwrap();
    for (stream, entries) in &model {
        let read = s.read_async(*stream, 1, usize::MAX).await.unwrap();
        let payloads: Vec<Vec<u8>> = read.into_iter().map(|e| e.payload().to_vec()).collect();
        assert_eq!(&payloads, entries, "stream {stream}");
    }
    s.close().await.unwrap();
}
