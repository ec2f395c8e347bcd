//! tidelog's streams (`tidelog::Streams`: many logs in one journal), from
//! tokio tasks: the counterpart of raft-engine's one Raft group per writer.

use std::io;
use std::path::{Path, PathBuf};

use tidelog::{JournalOptions, Streams};

use super::{AsyncWal, Fut, ReadBack, System};

/// One `Streams` journal with default options, one stream per writer (its
/// id, from the record's first bytes, as raft-engine's row takes its group).
/// A durable append is `submit` and then awaiting its `Ticket`, which is
/// what `append_async` does under `SyncPolicy::Always`; a written append is
/// `append_async` under the default policy. Concurrent writers share one
/// write and one fdatasync, as raft-engine's groups share its write queue.
pub struct TidelogStreams;

struct StreamsWal(Streams);

/// The stream of a harness record: its writer.
fn stream_of(record: &[u8]) -> u64 {
    record.get(..4).map_or(0, |b| u64::from(u32::from_le_bytes(b.try_into().expect("4 bytes"))))
}

impl AsyncWal for StreamsWal {
    fn append_durable<'a>(&'a self, record: &'a [u8]) -> Fut<'a, ()> {
        Box::pin(async move {
            let (_, ticket) = self.0.submit(stream_of(record), record).map_err(io::Error::other)?;
            ticket.await.map(drop).map_err(io::Error::other)
        })
    }
    fn append_written<'a>(&'a self, record: &'a [u8]) -> Fut<'a, ()> {
        Box::pin(
            async move { self.0.append_async(stream_of(record), record).await.map(drop).map_err(io::Error::other) },
        )
    }
    fn close(self: Box<Self>) -> Fut<'static, ()> {
        Box::pin(async move { self.0.close().await.map_err(io::Error::other) })
    }
}

/// Entries read per call when reading a stream back: bounds the memory of
/// one read (1 MiB records in the large workload).
const READ_BATCH: usize = 256;

impl System for TidelogStreams {
    fn name(&self) -> String {
        "tidelog streams".into()
    }
    fn written_promise(&self) -> &'static str {
        "page cache (append_async)"
    }
    fn open_async(&self, dir: PathBuf) -> Option<Fut<'static, Box<dyn AsyncWal>>> {
        Some(Box::pin(async move {
            let streams = Streams::open(dir, JournalOptions::new()).await.map_err(io::Error::other)?;
            Ok(Box::new(StreamsWal(streams)) as Box<dyn AsyncWal>)
        }))
    }
    fn read_all(&self, dir: &Path) -> io::Result<ReadBack> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            let streams = Streams::open(dir, JournalOptions::new()).await.map_err(io::Error::other)?;
            let mut back = ReadBack::default();
            for info in streams.list() {
                let mut next = info.first;
                while next < info.next {
                    let entries = streams.read_async(info.id, next, READ_BATCH).await.map_err(io::Error::other)?;
                    let Some(last) = entries.last().map(tidelog::StreamEntry::index) else {
                        return Err(io::Error::other(format!("stream {} ends at {next}, not {}", info.id, info.next)));
                    };
                    for entry in &entries {
                        back.add(entry.payload());
                    }
                    next = last + 1;
                }
            }
            streams.close().await.map_err(io::Error::other)?;
            Ok(back)
        })
    }
}
