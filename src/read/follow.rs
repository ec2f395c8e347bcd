//! [`Follower`]: follow a journal that another process writes, as a
//! `Stream` of records — never one its writer has not made durable.
//!
//! The writer publishes its durable frontier after every sync round (the
//! `FRONTIER` file, `segment::frontier`); a follower reads records up to
//! it and no further, from the segment files, with no lock and no
//! cooperation beyond that file. It wakes when the file is rewritten
//! (`inotify` on Linux) or, where there is no such notification, polls
//! every few milliseconds. Reads are served inline from the page cache, a
//! bounded batch per wake: the records were written moments ago.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use futures::stream;

use super::{JournalReader, Reader, Record, Source};
use crate::format::FRONTIER_FILE_NAME;
use crate::segment::{self, frontier};
use crate::{Error, Lsn, Result};

/// Records read per wake, before the stream hands them out.
const BATCH: usize = 512;
/// How often a follower looks when the platform gives no notification.
const POLL: Duration = Duration::from_millis(5);
/// With notifications, a look this often anyway (a safety net: nothing
/// is known to be missed).
const FALLBACK: Duration = Duration::from_millis(500);

record_stream!(
    /// The stream [`JournalReader::follow`] returns:
    /// `Stream<Item = Result<Record>> + Send + Unpin + 'static`. It ends only
    /// with an error (after yielding it); drop it to stop following.
    Follower
);

impl JournalReader {
    /// Follows the journal from `from` (which must start a record, or be
    /// `Lsn::ZERO`): yields every record in order, each once, as its
    /// writer — in this process or another — makes it durable, then waits
    /// for more. It never yields a record past the durable frontier the
    /// writer published (see [`JournalReader::published_frontier`]), so
    /// nothing it yields can be lost by a crash or a power cut; while no
    /// frontier is published (a journal last written before this version,
    /// until a writer opens it) it waits. It continues across the writer's
    /// restarts, and fails if the directory comes to hold another journal,
    /// or if truncation deletes the records it has not read yet.
    ///
    /// Needs a tokio runtime with its I/O and time drivers when polled
    /// (`Error::RuntimeRequired` otherwise).
    pub fn follow(&self, from: Lsn) -> Follower {
        let state = State {
            dir: self.dir.clone(),
            from,
            journal_id: None,
            limit: 0,
            reader: None,
            ready: VecDeque::new(),
            wake: None,
            done: false,
        };
        Follower { inner: Box::pin(stream::unfold(state, next)) }
    }
}

struct State {
    dir: PathBuf,
    from: Lsn,
    /// The journal followed, once a frontier for it was seen.
    journal_id: Option<u64>,
    /// The highest frontier seen: reads stop there.
    limit: u64,
    reader: Option<Reader>,
    ready: VecDeque<Record>,
    wake: Option<Wake>,
    done: bool,
}

enum Wake {
    #[cfg(tidelog_linux)]
    Notify(tokio::io::unix::AsyncFd<frontier::DirWatch>),
    Poll,
}

async fn next(mut st: State) -> Option<(Result<Record>, State)> {
    loop {
        if let Some(record) = st.ready.pop_front() {
            return Some((Ok(record), st));
        }
        if st.done {
            return None;
        }
        if st.wake.is_none() {
            match wake(&st) {
                Ok(wake) => st.wake = Some(wake),
                Err(e) => return Some(fail(st, e)),
            }
        }
        if let Err(e) = refresh(&mut st) {
            return Some(fail(st, e));
        }
        if let Some(reader) = st.reader.as_mut() {
            while st.ready.len() < BATCH {
                match reader.next_record() {
                    Ok(Some(record)) => st.ready.push_back(record),
                    Ok(None) => break,
                    Err(e) => return Some(fail(st, e)),
                }
            }
            if !st.ready.is_empty() {
                continue;
            }
        }
        if let Err(e) = wait(&mut st).await {
            return Some(fail(st, e));
        }
    }
}

fn fail(mut st: State, err: Error) -> (Result<Record>, State) {
    st.done = true;
    (Err(err), st)
}

/// How this follower learns that the frontier moved.
fn wake(st: &State) -> Result<Wake> {
    crate::error::runtime()?;
    #[cfg(tidelog_linux)]
    {
        let watch = frontier::DirWatch::new(&st.dir, FRONTIER_FILE_NAME).map_err(|e| e.to_string()).and_then(|watch| {
            let register = std::panic::AssertUnwindSafe(|| {
                // SAFETY: the DirWatch owns its descriptor (an OwnedFd)
                // and is owned by the AsyncFd, so the fd stays open and
                // the same for the registration's whole life.
                unsafe { tokio::io::unix::AsyncFd::register(watch) }
            });
            // tokio panics (rather than erring) when the runtime has no
            // I/O driver: the follower then polls.
            std::panic::catch_unwind(register)
                .map_err(|_| "the tokio runtime has no I/O driver".to_string())?
                .map_err(|e| e.to_string())
        });
        match watch {
            Ok(watch) => return Ok(Wake::Notify(watch)),
            Err(e) => tracing::debug!(dir = %st.dir.display(), error = %e, "no inotify: the follower polls"),
        }
    }
    #[cfg(not(tidelog_linux))]
    let _ = (st, FALLBACK);
    Ok(Wake::Poll)
}

/// Waits for a notification (or the poll interval).
async fn wait(st: &mut State) -> Result<()> {
    match st.wake.as_mut() {
        #[cfg(tidelog_linux)]
        Some(Wake::Notify(fd)) => {
            if !fd.get_ref().watching_file() {
                fd.get_mut().rearm();
            }
            let notified = async {
                loop {
                    let mut ready = fd.readable().await?;
                    if let Ok(drained) = ready.try_io(|fd| fd.get_ref().drain()) {
                        return drained;
                    }
                }
            };
            match tokio::time::timeout(FALLBACK, notified).await {
                Err(_elapsed) => Ok(()),
                // A file appeared or was renamed in: perhaps the frontier
                // file, made anew.
                Ok(Ok(created)) => {
                    if created {
                        fd.get_mut().rearm();
                    }
                    Ok(())
                }
                Ok(Err(e)) => Err(Error::io("watch journal directory", &st.dir, e)),
            }
        }
        _ => {
            tokio::time::sleep(POLL).await;
            Ok(())
        }
    }
}

/// Reads the published frontier; when it moved, lets the reader go there.
fn refresh(st: &mut State) -> Result<()> {
    let path = || st.dir.join(FRONTIER_FILE_NAME);
    let Some(published) = frontier::read_published(&st.dir).map_err(|e| Error::io("read frontier", path(), e))? else {
        return Ok(());
    };
    match st.journal_id {
        Some(id) if id != published.journal_id => {
            return Err(Error::corrupt(
                path(),
                Lsn::new(st.limit),
                format!("the directory now holds another journal (id {:#x}, followed {id:#x})", published.journal_id),
            ));
        }
        Some(_) => {}
        None => {
            if super::newest_journal_id(&st.dir)? != Some(published.journal_id) {
                return Ok(()); // a frontier left by a journal no longer here
            }
            st.journal_id = Some(published.journal_id);
        }
    }
    if published.durable <= st.limit && st.reader.is_some() {
        return Ok(());
    }
    // Frontier first, then the listing: a segment the frontier reaches was
    // named before the frontier was published.
    st.limit = st.limit.max(published.durable);
    let bases = segment::list_to_read(&st.dir)?;
    match st.reader.as_mut() {
        Some(reader) => reader.source = Source::Published { bases, limit: st.limit },
        None if st.from.as_u64() <= st.limit => {
            let source = Source::Published { bases, limit: st.limit };
            st.reader = Some(Reader::new(st.dir.clone(), source, st.from)?);
        }
        None => {}
    }
    Ok(())
}
