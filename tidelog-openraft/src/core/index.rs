//! The in-memory index of live entries (log index → the record's LSN) and
//! the cache of recent records. Never touches the journal: the store and
//! its readers consult it under one lock.

use std::collections::BTreeMap;
use std::sync::Arc;

use tidelog::Lsn;

use super::Codec;

/// Recent records are kept in memory up to this many bytes; beyond it the
/// oldest *durable* ones are dropped (a record that is not durable is never
/// dropped: it may not be in the file yet).
pub(crate) const CACHE_BYTES: usize = 8 << 20;

/// Where one entry's record lies.
#[derive(Debug)]
pub(crate) struct Slot<K: Codec> {
    pub(crate) log_id: K::LogId,
    /// A frame boundary at or before the record's start, after every record
    /// this store wrote before it: a reader from here meets it first among
    /// this store's records that are not older.
    pub(crate) from: Lsn,
    /// The record's LSN (its end), as the journal returned it.
    pub(crate) lsn: Lsn,
    /// The record itself while it may not be written yet, and for a while
    /// after (replication reads the newest entries): see [`CACHE_BYTES`].
    pub(crate) cached: Option<Arc<Vec<u8>>>,
}

impl<K: Codec> Clone for Slot<K> {
    fn clone(&self) -> Self {
        Slot { log_id: self.log_id.clone(), from: self.from, lsn: self.lsn, cached: self.cached.clone() }
    }
}

/// The live entries, the purged id, the vote and the committed id: what
/// the store and its readers share.
#[derive(Debug)]
pub(crate) struct State<K: Codec> {
    pub(crate) entries: BTreeMap<u64, Slot<K>>,
    pub(crate) purged: Option<K::LogId>,
    pub(crate) vote: Option<K::Vote>,
    pub(crate) committed: Option<K::LogId>,
    cached_bytes: usize,
}

impl<K: Codec> State<K> {
    pub(crate) fn new() -> Self {
        State { entries: BTreeMap::new(), purged: None, vote: None, committed: None, cached_bytes: 0 }
    }

    pub(crate) fn last_log_id(&self) -> Option<K::LogId> {
        self.entries.values().next_back().map(|s| s.log_id.clone()).or_else(|| self.purged.clone())
    }

    /// Forgets every entry at or after `index`.
    pub(crate) fn remove_from(&mut self, index: u64) {
        let gone = self.entries.split_off(&index);
        self.cached_bytes -= cached_len(gone.values());
    }

    /// Forgets every entry up to `upto` and records it as purged.
    pub(crate) fn purge(&mut self, upto: &K::LogId) {
        let upto_index = K::index(upto);
        let kept = self.entries.split_off(&(upto_index.saturating_add(1)));
        let gone = std::mem::replace(&mut self.entries, kept);
        self.cached_bytes -= cached_len(gone.values());
        if self.purged.as_ref().is_none_or(|p| K::index(p) < upto_index) {
            self.purged = Some(upto.clone());
        }
    }

    /// Adds an entry, replacing any at or after its index (as the append
    /// that wrote it did).
    pub(crate) fn insert(&mut self, slot: Slot<K>) {
        let index = K::index(&slot.log_id);
        self.remove_from(index);
        self.cached_bytes += slot.cached.as_ref().map_or(0, |c| c.len());
        self.entries.insert(index, slot);
    }

    /// Drops cached records, oldest first, while over budget and durable.
    pub(crate) fn evict(&mut self, durable: Lsn) {
        if self.cached_bytes <= CACHE_BYTES {
            return;
        }
        for slot in self.entries.values_mut() {
            if self.cached_bytes <= CACHE_BYTES / 2 || slot.lsn > durable {
                break;
            }
            if let Some(c) = slot.cached.take() {
                self.cached_bytes -= c.len();
            }
        }
    }
}

fn cached_len<'a, K: Codec>(slots: impl Iterator<Item = &'a Slot<K>>) -> usize {
    slots.filter_map(|s| s.cached.as_ref()).map(|c| c.len()).sum()
}
