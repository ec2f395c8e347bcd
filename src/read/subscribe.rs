//! [`Subscription`]: follow a live journal's durable tail as a `Stream`.
//!
//! A subscriber is a passive observer of the commit gate: it waits on the
//! gate's `moved` notification (armed before the frontier is checked, so no
//! advance is missed), never registers a durability need, and reads records
//! back from the segment files in batches — so a slow subscriber costs
//! appenders nothing, and nothing is buffered for it. A subscriber at the
//! tail reads what was written moments ago, from the page cache: it reads
//! on its own task (a copy, no hand-off to another thread per frontier
//! move). One further behind, or on a direct-I/O journal whose writes
//! bypass the page cache, reads on the blocking pool, where a device read
//! blocks no runtime worker.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::stream;

use super::{LiveJournal, Reader, Record};
use crate::gate::Level;
use crate::{Error, Lsn, Result};

/// Records read per batch.
const BATCH: usize = 512;
/// A subscriber this close to the frontier reads on its own task: these
/// bytes were written moments ago and are in the page cache.
const HOT_BYTES: u64 = 8 << 20;

record_stream!(
    /// The stream [`Journal::subscribe`](crate::Journal::subscribe) returns:
    /// `Stream<Item = Result<Record>> + Send + Unpin + 'static`.
    Subscription
);

/// Counts the subscriber as an observer of the gate while it lives.
struct Observer(Arc<dyn LiveJournal>);

impl Drop for Observer {
    fn drop(&mut self) {
        self.0.gate().observe(false);
    }
}

struct State {
    observer: Observer,
    level: Level,
    from: Lsn,
    reader: Option<Reader>,
    ready: VecDeque<Record>,
    done: bool,
}

impl Subscription {
    pub(crate) fn new(journal: Arc<dyn LiveJournal>, from: Lsn) -> Subscription {
        journal.gate().observe(true);
        let level = journal.follow_level();
        let state =
            State { observer: Observer(journal), level, from, reader: None, ready: VecDeque::new(), done: false };
        Subscription { inner: Box::pin(stream::unfold(state, next)) }
    }
}

async fn next(mut st: State) -> Option<(Result<Record>, State)> {
    loop {
        if let Some(record) = st.ready.pop_front() {
            return Some((Ok(record), st));
        }
        if st.done {
            return None;
        }
        let shared = st.observer.0.clone();
        let moved = shared.gate().moved.notified();
        tokio::pin!(moved);
        moved.as_mut().enable();
        // The failure is read before the frontier: once the journal is
        // closed the frontier no longer moves, so a frontier read after
        // seeing `Closed` is final, and everything below it is delivered
        // before the stream ends (read the other way round, the last round
        // and the close could land between the two reads).
        let failure = shared.gate().failure();
        let frontier = match st.level {
            Level::Written => shared.gate().written_lsn(),
            Level::Durable => shared.gate().durable_lsn(),
        };
        let position = st.reader.as_ref().map_or(st.from, Reader::position);
        if position < frontier {
            let reader = match st.reader.take() {
                Some(reader) => reader,
                None => match Reader::live(shared.clone(), st.from, st.level) {
                    Ok(reader) => reader,
                    Err(e) => return Some(fail(st, e)),
                },
            };
            let hot = shared.page_cached() && frontier.as_u64() - position.as_u64() <= HOT_BYTES;
            match read_batch(reader, shared.as_ref(), hot).await {
                Ok((reader, records)) => {
                    st.reader = Some(reader);
                    if !records.is_empty() {
                        st.ready.extend(records);
                        continue;
                    }
                }
                Err(e) => return Some(fail(st, e)),
            }
        }
        match failure {
            Some(Error::Closed) => return None, // everything durable was delivered
            Some(e) => return Some(fail(st, e)),
            None => moved.await,
        }
    }
}

fn fail(mut st: State, err: Error) -> (Result<Record>, State) {
    st.done = true;
    (Err(err), st)
}

/// Reads up to `BATCH` records: inline when `hot` (or without a runtime),
/// otherwise off the runtime's workers.
async fn read_batch(mut reader: Reader, journal: &dyn LiveJournal, hot: bool) -> Result<(Reader, Vec<Record>)> {
    let work = move || -> Result<(Reader, Vec<Record>)> {
        let mut records = Vec::new();
        while records.len() < BATCH {
            match reader.next_record()? {
                Some(record) => records.push(record),
                None => break,
            }
        }
        Ok((reader, records))
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) if !hot => rt
            .spawn_blocking(work)
            .await
            .map_err(|e| Error::io("subscriber read", journal.dir(), std::io::Error::other(e.to_string())))?,
        _ => work(),
    }
}
