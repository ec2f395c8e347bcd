//! Space coming back: deleting the segments no stream needs ([`purge`]),
//! and copying forward the live entries of streams that lag (`rewrite`),
//! so that a stream which never compacts does not keep every segment after
//! its first entry alive.
//!
//! A rewrite of a stream is one atomic batch: a state frame (its first
//! index, next index and metadata) and a copy of each live entry. Applied,
//! it replaces the stream wholesale, so its floor moves to the batch. The
//! old segments are deleted only after the batch is durable; a crash before
//! that leaves the old frames and possibly the batch, and either reads back
//! as the same stream.
//!
//! [`purge`]: Streams::purge

use super::{index, read, Streams};
use crate::format::{self, StreamOp};
use crate::gate::{Level, Wait};
use crate::{Error, Lsn, Result};

/// What [`Streams::purge`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PurgeReport {
    /// Segment files deleted (or handed to deferred deletion, where a
    /// reader still holds one).
    pub segments_deleted: usize,
    /// Streams whose live entries were copied forward.
    pub streams_rewritten: usize,
    /// Bytes of frames those copies wrote.
    pub bytes_rewritten: u64,
    /// The oldest LSN a stream still needs, after the purge.
    pub floor: Option<Lsn>,
}

/// A stream is rewritten only if its live frames fit this share of a
/// segment (the batch must fit one); larger laggards keep their segments.
const REWRITE_MAX_SHARE: u64 = 4;
/// Bytes one purge may rewrite: the bound on the I/O a purge adds.
const REWRITE_BUDGET: u64 = 16 << 20;
/// Segments a purge always leaves alone besides the one being written:
/// disk use beyond live data plus this slack starts rewriting.
const SLACK_SEGMENTS: u64 = 2;

impl Streams {
    /// Gives space back: copies forward the live entries of streams that
    /// pin old segments while most of the journal is dead (when its
    /// segments hold more than twice the live bytes, plus two segments of
    /// slack; at most 16 MiB per call), makes the copies durable, then
    /// deletes every whole segment below the oldest frame any stream still
    /// needs. Runs by itself after truncations and removals; call it to
    /// force one. Appends go on meanwhile.
    pub async fn purge(&self) -> Result<PurgeReport> {
        let _one = self.inner.purging.lock().await;
        let shared = self.shared();
        shared.check_open()?;
        let mut report = PurgeReport::default();
        if let Some(boundary) = self.rewrite_boundary() {
            let candidates = self.index().pinning_below(boundary);
            let cap = (shared.opts.segment_size - format::SEGMENT_HEADER_LEN as u64) / REWRITE_MAX_SHARE;
            let mut last_end = None;
            for id in candidates {
                if report.bytes_rewritten >= REWRITE_BUDGET {
                    break;
                }
                if let Some((bytes, end)) = self.rewrite(id, cap).await? {
                    report.streams_rewritten += 1;
                    report.bytes_rewritten += bytes;
                    last_end = Some(end);
                }
            }
            if let Some(end) = last_end {
                // The copies must be on disk before the originals go.
                Wait::new(&shared.gate, Level::Durable, end).await?;
            }
        }
        let before = crate::read::LiveJournal::segments(shared.as_ref()).len();
        let floor = self.index().floor();
        let keep = floor.unwrap_or_else(|| shared.log.next_lsn_relaxed());
        self.inner.journal.truncate_before(Lsn::new(keep)).await?;
        let bases = crate::read::LiveJournal::segments(shared.as_ref());
        if let Some(&first) = bases.first() {
            self.inner.files.forget_below(first);
        }
        report.segments_deleted = before.saturating_sub(bases.len());
        report.floor = floor.map(Lsn::new);
        Ok(report)
    }

    /// The LSN below which lagging streams should be copied forward, when
    /// the journal holds far more than its live data.
    fn rewrite_boundary(&self) -> Option<u64> {
        let shared = self.shared();
        let bases = crate::read::LiveJournal::segments(shared.as_ref());
        let segment = shared.opts.segment_size;
        let live = self.index().live_bytes;
        let used = bases.len() as u64 * segment;
        if bases.len() < 3 || used <= 2 * live + SLACK_SEGMENTS * segment {
            return None;
        }
        // The older half of the sealed segments.
        Some(bases[(bases.len() - 1) / 2])
    }

    /// Copies stream `id` forward if its live frames fit `cap` bytes and it
    /// does not change while read. Returns the bytes written and the end
    /// of the batch.
    async fn rewrite(&self, id: u64, cap: u64) -> Result<Option<(u64, u64)>> {
        let shared = self.shared();
        let (generation, first, next, meta, plan) = {
            let index = self.index();
            let Some(s) = index.get(id) else { return Ok(None) };
            if s.bytes > cap {
                tracing::debug!(stream = id, bytes = s.bytes, cap, "stream too large to rewrite in one batch");
                return Ok(None);
            }
            let wanted: Vec<(u64, index::Pos)> = (s.first..s.next).filter_map(|i| s.get(i).map(|p| (i, p))).collect();
            let plan = read::Plan::new(
                id,
                wanted,
                |base| shared.retention.pin(&shared.segments, base).map(Some),
                &shared.segments,
            )?;
            (s.generation, s.first, s.next, s.meta.clone(), plan)
        };
        if !plan.is_empty() {
            Wait::new(&shared.gate, Level::Written, plan.end()).await?;
        }
        let (files, dir) = (self.inner.files.clone(), shared.dir.clone());
        let entries = match shared.io.run(move || plan.run(&files, &dir)).await {
            Ok(result) => result?,
            Err(panic) => return Err(Error::Internal(format!("reading stream {id} to rewrite it: {panic}"))),
        };
        let mut bodies = Vec::with_capacity(entries.len() + 1);
        bodies.push(format::encode_control(id, &StreamOp::State { first, next, meta: meta.as_deref() }));
        for e in &entries {
            let mut body = Vec::with_capacity(format::STREAM_ENTRY_HEADER_LEN + e.payload().len());
            body.extend_from_slice(&format::entry_header(id, e.index()));
            body.extend_from_slice(e.payload());
            bodies.push(body);
        }
        let mut kinds = vec![format::KIND_STREAM_ENTRY; bodies.len()];
        kinds[0] = format::KIND_STREAM_CONTROL;
        let bytes: u64 = bodies.iter().map(|b| format::frame_len(b.len()) as u64).sum();
        let end = {
            let mut index = self.index();
            if index.get(id).is_none_or(|s| s.generation != generation) {
                return Ok(None); // it moved meanwhile; the next purge tries again
            }
            self.place_and_apply(&mut index, &bodies, &kinds)?
        };
        Ok(Some((bytes, end)))
    }

    /// Starts a purge in the background if one would delete a segment or
    /// rewrite a lagging stream, and none is running.
    pub(crate) fn maybe_purge(&self) {
        let shared = self.shared();
        let bases = crate::read::LiveJournal::segments(shared.as_ref());
        let Some(&second) = bases.get(1) else { return };
        let floor_moved = self.index().floor().is_none_or(|f| f >= second);
        if !floor_moved && self.rewrite_boundary().is_none() {
            return;
        }
        if self.inner.purging.try_lock().is_err() {
            return;
        }
        let this = self.clone();
        self.inner.runtime.spawn(async move {
            if let Err(e) = this.purge().await {
                tracing::warn!(dir = %this.shared().dir.display(), error = %e, "background purge of streams failed");
            }
        });
    }
}
