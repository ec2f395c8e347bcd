//! Which segments may be deleted: pins held by readers and subscribers, and
//! the segments `truncate_before` condemned while they were pinned.
//!
//! A reader pins the segment it reads; `truncate_before` removes condemned
//! segments from the journal's listing at once (no new reader can start in
//! them) and deletes each as soon as nobody pins it — immediately, or when
//! the last reader lets go. Deletion goes oldest first, so a crash in the
//! middle leaves a contiguous suffix of segments, which reopens cleanly.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::storage::Storage;
use crate::{format, Error, Lsn, Result};

#[derive(Debug, Default)]
struct State {
    pins: HashMap<u64, usize>,
    /// Condemned but still pinned.
    doomed: BTreeSet<u64>,
}

/// Segment pins and deferred deletion for one journal.
#[derive(Debug)]
pub(crate) struct Retention {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    state: Mutex<State>,
}

/// Keeps one segment file from being deleted while held.
#[derive(Debug)]
pub(crate) struct Pin {
    retention: Arc<Retention>,
    base: u64,
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.retention.unpin(self.base);
    }
}

impl Retention {
    pub(crate) fn new(dir: &Path, storage: Arc<dyn Storage>) -> Retention {
        Retention { dir: dir.to_path_buf(), storage, state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pins segment `base` if it is still listed in `segments`, or condemned
    /// but not yet deleted (a reader moving on from an older pinned segment).
    pub(crate) fn pin(self: &Arc<Self>, segments: &RwLock<Vec<u64>>, base: u64) -> Result<Pin> {
        let mut st = self.lock();
        let listed = segments.read().unwrap_or_else(|p| p.into_inner()).binary_search(&base).is_ok();
        if !listed && !st.doomed.contains(&base) {
            return Err(Error::InvalidLsn { lsn: Lsn::new(base), reason: "its segment was truncated".into() });
        }
        *st.pins.entry(base).or_insert(0) += 1;
        Ok(Pin { retention: self.clone(), base })
    }

    fn unpin(&self, base: u64) {
        let mut st = self.lock();
        let Some(n) = st.pins.get_mut(&base) else { return };
        *n -= 1;
        if *n > 0 {
            return;
        }
        st.pins.remove(&base);
        // Oldest first: a later doomed segment waits for earlier ones.
        let mut ready = Vec::new();
        while let Some(&first) = st.doomed.first() {
            if st.pins.contains_key(&first) {
                break;
            }
            st.doomed.remove(&first);
            ready.push(first);
        }
        drop(st);
        if !ready.is_empty() {
            if let Err(e) = delete(self.storage.as_ref(), &self.dir, &ready) {
                tracing::error!(error = %e, "deferred segment deletion failed; reopen or truncate again to retry");
            }
        }
    }

    /// Removes the segments below `keep_from` from `segments` and deletes
    /// those nobody pins (returned for deletion by the caller, off the
    /// runtime); pinned ones are deleted when released. Returns the bases to
    /// delete now.
    pub(crate) fn condemn(&self, segments: &RwLock<Vec<u64>>, keep_from: u64) -> Vec<u64> {
        let mut st = self.lock();
        let condemned: Vec<u64> = {
            let mut list = segments.write().unwrap_or_else(|p| p.into_inner());
            let n = list.partition_point(|&b| b < keep_from);
            list.drain(..n).collect()
        };
        let mut now = Vec::new();
        for base in condemned {
            // Oldest first: once one is pinned, later ones wait behind it.
            if st.pins.contains_key(&base) || !st.doomed.is_empty() {
                st.doomed.insert(base);
            } else {
                now.push(base);
            }
        }
        now
    }

    /// The segment after `base`, among the listed and the condemned ones
    /// not yet deleted.
    pub(crate) fn next_after(&self, segments: &RwLock<Vec<u64>>, base: u64) -> Option<u64> {
        let st = self.lock();
        let doomed = st.doomed.range(base + 1..).next().copied();
        let list = segments.read().unwrap_or_else(|p| p.into_inner());
        let listed = list.get(list.partition_point(|&b| b <= base)).copied();
        [doomed, listed].into_iter().flatten().min()
    }

    /// Segments condemned but still pinned.
    pub(crate) fn deferred(&self) -> usize {
        self.lock().doomed.len()
    }
}

/// Unlinks segment files oldest first, then syncs the directory.
pub(crate) fn delete(storage: &dyn Storage, dir: &Path, bases: &[u64]) -> Result<()> {
    for &base in bases {
        let path = dir.join(format::segment_file_name(base));
        match storage.remove(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io_at("delete segment", path, Lsn::new(base), e)),
        }
    }
    storage.sync_dir(dir).map_err(|e| Error::io("sync journal directory", dir, e))
}
