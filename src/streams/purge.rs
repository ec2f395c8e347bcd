//! Space coming back: deleting the segments no stream needs ([`purge`]),
//! and copying forward the live entries of streams that lag (`rewrite`),
//! so that a stream which never compacts does not keep every segment after
//! its first entry alive.
//!
//! A rewrite copies what of a stream lies below a boundary in batches: each
//! an atomic batch of a state frame (the stream's range as it stands, and
//! its metadata if that is old too) and copies of a run of its entries.
//! Applied, each copy moves its entry's position, so the stream's floor
//! climbs above the boundary once every old entry is copied. The old
//! segments are deleted only after the copies are durable; a crash before
//! that leaves the old frames and some of the copies, and either reads back
//! as the same stream (a state frame names every live entry, so open knows
//! which it must still meet).
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
    /// Lagging streams that could not be copied forward (a batch they need
    /// would not fit a segment); they keep their segments.
    pub streams_skipped: usize,
    /// The oldest LSN a stream still needs, after the purge.
    pub floor: Option<Lsn>,
}

/// Bytes of entries one rewrite batch copies at most (and at most a
/// quarter of a segment: a batch must fit one). Placing a batch holds the
/// index lock, for its copies and for one walk of the stream's entries
/// (the copies moved the one that held its floor): about 1.5–2.5 ms for a
/// full batch of a stream of 10^6 entries on a 2-vCPU VM. Smaller batches
/// hold it for less each but longer in all (a walk each).
const CHUNK: u64 = 1 << 20;
/// Entries a purge looks at per hold of the index lock, where it walks a
/// stream's entries.
const PIECE: usize = 4096;
/// Bytes one purge may rewrite: the bound on the I/O a purge adds.
const REWRITE_BUDGET: u64 = 16 << 20;
/// Segments a rewrite leaves alone (the newest, the one being written
/// among them), and the slack beyond 1.5× the live bytes that disk use
/// may reach before one starts.
const SLACK_SEGMENTS: u64 = 2;

impl Streams {
    /// Gives space back: copies forward the live entries of streams that
    /// pin old, mostly dead segments, makes everything written so far
    /// durable (the copies, and the truncations that let old frames go),
    /// then deletes every whole segment below the oldest frame any stream
    /// still needs. Runs by itself after truncations and removals; call it to
    /// force one. Appends go on meanwhile.
    ///
    /// Copying starts when the segments hold more than 1.5× the live bytes
    /// plus two segments. It goes one segment at a time, oldest first,
    /// deleting each once its copies are durable, up to the lowest segment
    /// boundary that brings disk use down to 1.25× the live bytes plus two
    /// segments; never into the newest two segments, and at most 16 MiB per
    /// call.
    pub async fn purge(&self) -> Result<PurgeReport> {
        let _one = self.inner.purging.lock().await;
        let shared = self.shared();
        shared.check_open()?;
        let mut report = PurgeReport::default();
        let steps = match self.rewritable() {
            Some(need) => {
                let live = self.live_per_segment(&need.bases).await;
                let boundary = need.boundary(&live).unwrap_or(0);
                need.bases.into_iter().skip(1).take_while(|&b| b <= boundary).collect()
            }
            None => Vec::new(),
        };
        // Oldest segment first, deleting as the floor climbs past each: were
        // every stream copied below the boundary before anything went, disk
        // use would hold all the old frames and all their copies at once.
        let mut rewritten = std::collections::BTreeSet::new();
        for step in steps {
            if report.bytes_rewritten >= REWRITE_BUDGET {
                break;
            }
            // Streams already copied past this step (or never below it)
            // leave nothing to do or to wait for here.
            let candidates = self.index().pinning_below(step);
            if candidates.is_empty() {
                continue;
            }
            let before = report.bytes_rewritten;
            for id in candidates {
                if report.bytes_rewritten >= REWRITE_BUDGET {
                    break;
                }
                let budget = REWRITE_BUDGET - report.bytes_rewritten;
                match self.rewrite(id, step, budget).await {
                    Ok(Some(bytes)) => {
                        rewritten.insert(id);
                        report.bytes_rewritten += bytes;
                    }
                    Ok(None) => {}
                    // A batch this stream needs cannot fit a segment (an
                    // entry or metadata within a state frame of the
                    // segment's size): it keeps its segments; the others
                    // still give theirs back.
                    Err(e @ Error::RecordTooLarge { .. }) => {
                        tracing::warn!(dir = %shared.dir.display(), stream = id, error = %e, "a lagging stream cannot be copied forward");
                        report.streams_skipped += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
            // Stop where the floor did not climb past this step (a stream
            // skipped, or the budget spent). Where nothing was copied (the
            // streams truncated or removed meanwhile) there is nothing to
            // wait for: the last deletion below takes what that freed.
            let floor = if report.bytes_rewritten == before {
                self.index().floor()
            } else {
                self.delete_below_floor(&mut report).await?
            };
            if floor.is_some_and(|floor| floor < step) {
                break;
            }
        }
        report.streams_rewritten = rewritten.len();
        let floor = self.delete_below_floor(&mut report).await?;
        report.floor = floor.map(Lsn::new);
        Ok(report)
    }

    /// Makes everything placed so far durable, then deletes every whole
    /// segment below the oldest frame any stream needs (counted in
    /// `report`). Returns that floor.
    async fn delete_below_floor(&self, report: &mut PurgeReport) -> Result<Option<u64>> {
        let shared = self.shared();
        let before = crate::read::LiveJournal::segments(shared.as_ref());
        let (floor, end) = {
            let index = self.index();
            (index.floor(), shared.log.next_lsn())
        };
        // The frames that moved the floor (truncations, copies) must be on
        // disk before what they make unnecessary goes: a crash must not
        // bring back a stream whose old frames are deleted.
        Wait::new(&shared.gate, Level::Durable, end).await?;
        let keep = floor.unwrap_or(end);
        self.inner.journal.truncate_before(Lsn::new(keep)).await?;
        let bases = crate::read::LiveJournal::segments(shared.as_ref());
        // Counted as the old segments now gone: a segment opened meanwhile
        // must not hide one deleted.
        if let Some(&first) = bases.first() {
            self.inner.files.forget_below(first);
            report.segments_deleted += before.iter().filter(|&&b| b < first).count();
        }
        Ok(floor)
    }

    /// The rewrite the journal needs, if its segments hold far more than
    /// its live data.
    fn rewritable(&self) -> Option<Rewrite> {
        let shared = self.shared();
        let bases = crate::read::LiveJournal::segments(shared.as_ref());
        let segment = shared.opts.segment_size;
        let live = self.index().live_bytes;
        let used = bases.len() as u64 * segment;
        if bases.len() < 3 || 2 * used <= 3 * live + 2 * SLACK_SEGMENTS * segment {
            return None;
        }
        Some(Rewrite {
            bases: bases[..=bases.len() - SLACK_SEGMENTS as usize].to_vec(),
            segment,
            used,
            target: live + live / 4 + SLACK_SEGMENTS * segment,
        })
    }

    /// The bytes of live entries in each segment below the last of `bases`
    /// ([`index::Index::live_per_segment`]), counted [`PIECE`] entries per
    /// hold of the index lock: a laggard of a million entries would hold it
    /// for milliseconds. Streams that change between pieces make it an
    /// estimate, which is all the boundary needs: each copy is checked
    /// against the index when it is placed.
    async fn live_per_segment(&self, bases: &[u64]) -> Vec<u64> {
        let Some(&top) = bases.last() else { return Vec::new() };
        let mut out = vec![0u64; bases.len() - 1];
        let ids = self.index().pinning_below(top);
        for id in ids {
            let mut from = 0;
            loop {
                let more = self.index().add_live(id, bases, from, PIECE, &mut out);
                let Some(next) = more else { break };
                from = next;
                tokio::task::yield_now().await;
            }
        }
        out
    }

    /// The first entry of stream `id` at or after index `from` whose frame
    /// lies below `boundary`, looked for [`PIECE`] entries per hold of the
    /// index lock (the entries a rewrite already copied lie first, and may
    /// be a million).
    async fn first_below(&self, id: u64, boundary: u64, mut from: u64) -> Option<u64> {
        loop {
            let looked = self.index().first_below(id, boundary, from, PIECE as u64);
            match looked {
                Ok(found) => return found,
                Err(next) => from = next,
            }
            tokio::task::yield_now().await;
        }
    }

    /// Copies forward what of stream `id` lies below `boundary` — entries,
    /// its metadata, the frame that left it empty — in batches of at most
    /// [`CHUNK`] bytes, each a state frame and the copies of a run of
    /// entries, until nothing of it lies below `boundary` or `budget` bytes
    /// are written. Returns the bytes written, if any. The caller makes
    /// them durable before deleting anything.
    async fn rewrite(&self, id: u64, boundary: u64, budget: u64) -> Result<Option<u64>> {
        let shared = self.shared();
        let chunk = CHUNK.min((shared.opts.segment_size - format::SEGMENT_HEADER_LEN as u64) / 4);
        let mut written = 0u64;
        // Entries before this one were copied by this call or lay above the
        // boundary when passed; neither can fall below it again.
        let (mut cursor, mut lost) = (1, 0);
        while written < budget {
            let found = self.first_below(id, boundary, cursor).await;
            // Plan: the first run of entries below the boundary.
            let (wanted, plan) = {
                let index = self.index();
                let Some(s) = index.get(id) else { break };
                let stale = stale_meta(s, boundary);
                // Found a moment ago: if a truncation took it since, look
                // again from the stream's start (twice; then the next purge
                // looks again).
                let start = match found {
                    Some(i) if s.get(i).is_some_and(|p| p.lsn() < boundary) => Some(i),
                    Some(_) if lost < 2 => {
                        (cursor, lost) = (1, lost + 1);
                        continue;
                    }
                    Some(_) => break,
                    None => None,
                };
                let mut wanted = Vec::new();
                let mut bytes = 0u64;
                match start {
                    // Old metadata goes first, in a state frame of its own:
                    // with copies beside it, the batch might not fit.
                    _ if stale => {}
                    Some(start) => {
                        for i in start..s.next() {
                            match s.get(i) {
                                Some(p)
                                    if p.lsn() < boundary && (wanted.is_empty() || bytes + p.len() as u64 <= chunk) =>
                                {
                                    bytes += p.len() as u64;
                                    wanted.push((i, p));
                                }
                                _ => break,
                            }
                        }
                    }
                    None if !stale_anchor(s, boundary) => break, // nothing of it lies below
                    None => {}
                }
                let pin = |base| shared.retention.pin(&shared.segments, base).map(Some);
                let plan = read::Plan::new(id, wanted.clone(), pin, &shared.segments)?;
                (wanted, plan)
            };
            if !plan.is_empty() {
                Wait::new(&shared.gate, Level::Written, plan.end()).await?;
            }
            let (files, dir) = (self.inner.files.clone(), shared.dir.clone());
            let entries = match shared.io.run(move || plan.run(&files, &dir)).await {
                Ok(result) => result?,
                Err(panic) => return Err(Error::Internal(format!("reading stream {id} to rewrite it: {panic}"))),
            };
            // The copies' frames, made before the lock is taken (a batch
            // holds up to a megabyte); the state frame goes first.
            let mut bodies = Vec::with_capacity(entries.len() + 1);
            bodies.push(Vec::new());
            for e in &entries {
                let mut body = Vec::with_capacity(format::STREAM_ENTRY_HEADER_LEN + e.payload().len());
                body.extend_from_slice(&format::entry_header(id, e.index()));
                body.extend_from_slice(e.payload());
                bodies.push(body);
            }
            // Place: only if those entries still lie where they were read.
            let mut index = self.index();
            let Some(s) = index.get(id) else { break };
            if wanted.iter().any(|&(i, p)| s.get(i) != Some(p)) {
                break; // truncated or rewritten meanwhile; the next purge looks again
            }
            let meta =
                wanted.is_empty().then(|| s.meta().filter(|_| stale_meta(s, boundary)).map(<[u8]>::to_vec)).flatten();
            let (from, count) = (wanted.first().map_or(s.first, |w| w.0), wanted.len() as u64);
            let state = StreamOp::State { first: s.first, next: s.next(), from, count, meta: meta.as_deref() };
            bodies[0] = format::encode_control(id, &state);
            let mut kinds = vec![format::KIND_STREAM_ENTRY; bodies.len()];
            kinds[0] = format::KIND_STREAM_CONTROL;
            written += bodies.iter().map(|b| format::frame_len(b.len()) as u64).sum::<u64>();
            self.place_and_apply(&mut index, &bodies, &kinds)?;
            cursor = from + count;
        }
        Ok((written > 0).then_some(written))
    }

    /// Starts a purge in the background if one would delete a segment or
    /// rewrite a lagging stream, and none is running.
    pub(crate) fn maybe_purge(&self) {
        let shared = self.shared();
        let bases = crate::read::LiveJournal::segments(shared.as_ref());
        let Some(&second) = bases.get(1) else { return };
        let floor_moved = self.index().floor().is_none_or(|f| f >= second);
        if !floor_moved && self.rewritable().is_none() {
            return;
        }
        // One background purge at a time, scheduled or running.
        if self.inner.purge_scheduled.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        self.inner.runtime.spawn(async move {
            let result = this.purge().await;
            this.inner.purge_scheduled.store(false, std::sync::atomic::Ordering::Release);
            match result {
                Ok(_) | Err(Error::Closed) => {}
                Err(e) => {
                    tracing::warn!(dir = %this.shared().dir.display(), error = %e, "background purge of streams failed")
                }
            }
        });
    }
}

/// A rewrite a journal needs: its segments hold more than 1.5× the live
/// bytes plus two segments.
#[derive(Debug)]
struct Rewrite {
    /// The bases of the segments it may empty (all but the newest two),
    /// then the base of the first it leaves alone.
    bases: Vec<u64>,
    segment: u64,
    /// Bytes the segments take now.
    used: u64,
    /// Where it should bring that down to: 1.25× the live bytes plus two
    /// segments (below where rewrites start, so they do not start again
    /// at once).
    target: u64,
}

impl Rewrite {
    /// The boundary below which lagging streams are copied forward, given
    /// the live bytes in each segment below the highest: the lowest that
    /// brings disk use down to the target once the segments below it are
    /// deleted and the copies written, so a rewrite copies as little as it
    /// must (segments are deleted oldest first: a rewrite must empty every
    /// segment below the boundary, dense ones too). Short of the target
    /// even at the highest boundary, the highest, if deleting gives back
    /// more than copying takes.
    fn boundary(&self, live: &[u64]) -> Option<u64> {
        let mut copied = 0u64;
        for (j, &base) in self.bases.iter().enumerate().skip(1) {
            copied += live.get(j - 1).copied().unwrap_or(0);
            let freed = j as u64 * self.segment;
            if self.used.saturating_sub(freed) + copied <= self.target {
                return Some(base);
            }
        }
        let top = self.bases.len().checked_sub(1).filter(|&top| top > 0)?;
        (top as u64 * self.segment > copied).then(|| self.bases[top])
    }
}

/// Whether the stream's metadata frame lies below `boundary`.
fn stale_meta(s: &index::Stream, boundary: u64) -> bool {
    s.meta_lsn().is_some_and(|lsn| lsn < boundary)
}

/// Whether the stream is empty past index 1 and the frame that left it so
/// lies below `boundary`.
fn stale_anchor(s: &index::Stream, boundary: u64) -> bool {
    s.pos.is_empty() && s.first > 1 && s.anchor < boundary
}

#[cfg(test)]
mod tests {
    use super::Rewrite;

    fn need(used: u64, target: u64) -> Rewrite {
        Rewrite { bases: vec![0, 100, 200, 300, 400], segment: 100, used, target }
    }

    #[test]
    fn a_rewrite_copies_the_least_that_brings_disk_use_to_its_target() {
        // The two oldest segments, mostly dead, are enough.
        assert_eq!(need(600, 450).boundary(&[10, 10, 10, 10]), Some(200));
        // A dense oldest segment must be emptied too: deletion goes oldest first.
        assert_eq!(need(600, 450).boundary(&[100, 100, 10, 10]), Some(400));
        assert_eq!(need(600, 500).boundary(&[100, 10, 10, 10]), Some(300));
        // The target is out of reach: as far as copying still gives space back.
        assert_eq!(need(600, 100).boundary(&[90, 90, 90, 90]), Some(400));
        assert_eq!(need(600, 100).boundary(&[100, 100, 100, 100]), None);
        let none = Rewrite { bases: vec![0], segment: 100, used: 300, target: 100 };
        assert_eq!(none.boundary(&[]), None);
    }
}
