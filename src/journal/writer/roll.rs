//! The writer's side of a rollover: the spare made ahead of need, the
//! switch to the next segment, and its seal, each run on the journal's I/O
//! threads (`segment::roll` holds what they do and in which order).

use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;

use super::Writer;
use crate::substrate::threads::{Outcome, Running};
use crate::substrate::IoFile;
use crate::{segment, Error, Lsn, Result};

/// The syncs that make a new segment durable: its header and its directory
/// entry (the sealed segment was synced before it was named). Runs while
/// writes go on into the new segment; no sync round starts until it is done.
///
/// The round that covers the sealed segment completes only with the seal:
/// the durable frontier reaches a segment's base only once that segment's
/// header and name are durable. Otherwise `truncate_before(base)` could
/// delete every older segment (and sync the directory, making the new name
/// durable) while the new header is not, and a power cut would leave one
/// segment with a blank header and nothing before it.
pub(super) struct Seal {
    pub(super) task: Running<Result<()>>,
    /// The round covering everything below the new segment's base.
    covers: Option<u64>,
    /// Records written below it.
    records: u64,
    pub(super) started: Instant,
    pub(super) stall_logged: bool,
}

impl Writer {
    /// Starts making the next segment, unless the options say not to.
    pub(super) fn make_spare(&mut self) {
        if !self.shared.opts.precreate {
            return;
        }
        let (dir, size, how) = (self.shared.dir.clone(), self.shared.opts.segment_size, self.shared.opts.preallocate);
        let storage = self.shared.storage.clone();
        self.spare = Some(self.shared.io.run(move || segment::make_spare(storage.as_ref(), &dir, size, how)));
    }

    /// Switches to the segment based at `base` (no round or seal in
    /// flight): syncs the sealed one and names the next, then starts its
    /// seal; the round covering everything below `base` completes with it.
    /// Without a spare (its making failed), the segment is made and synced,
    /// name and all, in the rollover itself, and the round completes at once.
    pub(super) async fn rollover(&mut self, base: u64) -> Result<()> {
        debug_assert!(self.writes.is_empty() && self.syncs.is_empty() && self.seal.is_none());
        tracing::info!(dir = %self.shared.dir.display(), base, "segment rollover");
        let spare = match self.spare.take() {
            Some(making) => match self.bounded("make the next segment", base, making).await? {
                Ok(file) => Some(file),
                Err(e) => {
                    tracing::warn!(dir = %self.shared.dir.display(), error = %e, "making the next segment ahead failed");
                    None
                }
            },
            None => None,
        };
        let has_spare = spare.is_some();
        let covers = self.shared.gate.begin_sync(true);
        let (old, dir, storage) = (self.active.clone(), self.shared.dir.clone(), self.shared.storage.clone());
        let (id, direct, lanes) = (self.journal_id, self.shared.opts.direct_io, self.schedule.lanes());
        let job = self.shared.io.run(move || -> Result<IoFile> {
            let made = segment::roll(storage.as_ref(), &dir, &old.file, &old.path, spare, base, id, direct)?;
            Ok(IoFile::new(made.base, made.path, made.file, lanes - 1))
        });
        let made = self.bounded("rollover", base, job).await??;
        self.shared.segments.write().unwrap_or_else(|p| p.into_inner()).push(base);
        self.active = Arc::new(made);
        self.zeroed_to = crate::FileOffset::default();
        debug_assert!(covers.is_none_or(|c| c == base), "a sealed segment ends where the next begins");
        if has_spare {
            let (new, dir, storage) = (self.active.clone(), self.shared.dir.clone(), self.shared.storage.clone());
            let task = self.shared.io.run(move || segment::seal(storage.as_ref(), &dir, &new.file, &new.path, base));
            let records = self.written_records;
            self.schedule.seal_started();
            self.seal = Some(Seal { task, covers, records, started: Instant::now(), stall_logged: false });
        } else if let Some(covers) = covers {
            self.synced_records = self.written_records;
            self.made_durable(covers);
        }
        self.make_spare();
        Ok(())
    }

    /// The seal ended: with success, everything below the new segment's
    /// base is durable, and so is the segment itself.
    pub(super) fn sealed(&mut self, result: Outcome<Result<()>>) -> Result<()> {
        let Some(seal) = self.seal.take() else {
            return Err(self.internal("a seal completed with none running"));
        };
        self.schedule.seal_finished();
        result.map_err(|why| self.internal(&format!("the seal job was lost: {why}")))??;
        if let Some(covers) = seal.covers {
            self.synced_records = self.synced_records.max(seal.records);
            self.made_durable(covers);
        }
        Ok(())
    }

    /// Awaits a job of the journal's I/O threads, for at most
    /// `sync_timeout` when one is set (the job itself runs on; the
    /// directory lock is kept until it ends).
    fn bounded<T>(
        &self,
        op: &'static str,
        lsn: u64,
        job: Running<T>,
    ) -> impl Future<Output = Result<T>> + Send + 'static
    where
        T: Send + 'static,
    {
        let (limit, path) = (self.shared.opts.sync_timeout, self.active.path.clone());
        let lost = self.internal(op);
        async move {
            let outcome = match limit {
                None => job.await,
                Some(limit) => tokio::time::timeout(limit, job).await.map_err(|_| {
                    let why = format!("{op} did not complete within {limit:?}");
                    Error::io_at(op, path, Lsn::new(lsn), std::io::Error::new(std::io::ErrorKind::TimedOut, why))
                })?,
            };
            outcome.map_err(|why| match lost {
                Error::Internal(what) => Error::Internal(format!("{what}: the job was lost: {why}")),
                other => other,
            })
        }
    }
}
