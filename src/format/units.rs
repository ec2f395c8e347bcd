//! The rules that turn frames into what readers deliver: records, grouped
//! into units — a lone record, or an atomic batch (frames flagged
//! `FLAG_BATCH_CONTINUES`, then one that is not) that is delivered whole or
//! not at all. Padding and unknown optional kinds are skipped; an unknown
//! required kind stops reading. Recovery, live and offline readers, and
//! replay all feed their frames through [`Units`], so the rules are written
//! once.

use super::{
    FLAG_BATCH_CONTINUES, KIND_COMPRESSED, KIND_RECORD, KIND_REQUIRED, KIND_STREAM_CONTROL, KIND_STREAM_ENTRY,
};

/// The record kinds this version reads. Format version 1 as first released
/// knew only `KIND_RECORD`; `KIND_COMPRESSED` came later and is required, so
/// a reader from before it stops at a compressed record (`UnknownRequired`)
/// instead of delivering its compressed bytes.
const RECORD_KINDS: [u8; 2] = [KIND_RECORD, KIND_COMPRESSED];
/// Required kinds this version knows that are not records: stream frames,
/// which `Streams` reads and plain readers skip (they belong to no plain
/// record). A reader from before streams stops at them.
const OTHER_KNOWN_KINDS: [u8; 2] = [KIND_STREAM_ENTRY, KIND_STREAM_CONTROL];

/// What one frame means, fed in LSN order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fed {
    /// The frame is a record (deliver it, with its unit).
    pub(crate) record: bool,
    /// The frame completes a unit: the records fed since the last unit
    /// ended may be delivered now.
    pub(crate) unit_ends: bool,
    /// How many records the unit it completes holds (0 unless `unit_ends`).
    pub(crate) unit_records: u64,
}

/// A frame of a kind this version must understand and does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnknownRequired(pub(crate) u8);

/// Tracks the unit being read. See the module docs.
#[derive(Debug, Default, Clone)]
pub(crate) struct Units {
    /// Records fed since the last unit ended.
    pending: u64,
    /// A frame of the current unit has been fed and the unit has not ended.
    open: bool,
}

impl Units {
    /// Feeds the next frame's kind and flags.
    pub(crate) fn feed(&mut self, kind: u8, flags: u8) -> Result<Fed, UnknownRequired> {
        self.feed_knowing(&RECORD_KINDS, &OTHER_KNOWN_KINDS, kind, flags)
    }

    /// [`feed`](Self::feed) for a reader that knows only `record_kinds`
    /// and `other_kinds` (tests use it to play a reader of an earlier
    /// version).
    fn feed_knowing(
        &mut self,
        record_kinds: &[u8],
        other_kinds: &[u8],
        kind: u8,
        flags: u8,
    ) -> Result<Fed, UnknownRequired> {
        let record = match kind {
            k if record_kinds.contains(&k) => true,
            k if other_kinds.contains(&k) => false,
            other if other & KIND_REQUIRED != 0 => return Err(UnknownRequired(other)),
            _ => false, // padding, or an optional kind this version skips
        };
        let unit_ends = flags & FLAG_BATCH_CONTINUES == 0;
        self.pending += u64::from(record);
        self.open = !unit_ends;
        let unit_records = if unit_ends { std::mem::take(&mut self.pending) } else { 0 };
        Ok(Fed { record, unit_ends, unit_records })
    }

    /// Whether a unit has begun and not ended.
    pub(crate) fn open(&self) -> bool {
        self.open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::KIND_PADDING;

    #[test]
    fn a_lone_record_is_a_unit_and_a_batch_ends_with_its_last_frame() {
        let mut u = Units::default();
        let lone = Fed { record: true, unit_ends: true, unit_records: 1 };
        let continues = Fed { record: true, unit_ends: false, unit_records: 0 };
        assert_eq!(u.feed(KIND_RECORD, 0), Ok(lone));
        assert!(!u.open());
        assert_eq!(u.feed(KIND_RECORD, FLAG_BATCH_CONTINUES), Ok(continues));
        assert_eq!(u.feed(KIND_RECORD, FLAG_BATCH_CONTINUES), Ok(continues));
        assert!(u.open(), "a cut here loses the whole batch so far");
        assert_eq!(u.feed(KIND_RECORD, 0), Ok(Fed { record: true, unit_ends: true, unit_records: 3 }));
        assert!(!u.open());
    }

    #[test]
    fn padding_and_unknown_optional_kinds_are_skipped_and_unknown_required_ones_stop() {
        let mut u = Units::default();
        let skipped = Fed { record: false, unit_ends: true, unit_records: 0 };
        assert_eq!(u.feed(KIND_PADDING, 0), Ok(skipped));
        assert_eq!(u.feed(0x7F, 0), Ok(skipped), "optional, unknown: skipped");
        assert_eq!(u.feed(KIND_REQUIRED | 0x42, 0), Err(UnknownRequired(0xC2)));
    }

    #[test]
    fn compressed_records_are_records_here_and_stop_a_reader_that_predates_them() {
        let mut u = Units::default();
        let lone = Fed { record: true, unit_ends: true, unit_records: 1 };
        assert_eq!(u.feed(KIND_COMPRESSED, 0), Ok(lone));
        // A reader of format 1 as first released knew only plain records.
        let mut old = Units::default();
        assert_eq!(old.feed_knowing(&[KIND_RECORD], &[], KIND_RECORD, 0), Ok(lone));
        assert_eq!(old.feed_knowing(&[KIND_RECORD], &[], KIND_COMPRESSED, 0), Err(UnknownRequired(KIND_COMPRESSED)));
    }

    #[test]
    fn stream_frames_are_skipped_by_plain_readers_but_keep_their_batch_whole() {
        let mut u = Units::default();
        let open = Fed { record: false, unit_ends: false, unit_records: 0 };
        assert_eq!(u.feed(KIND_STREAM_CONTROL, FLAG_BATCH_CONTINUES), Ok(open));
        assert!(u.open(), "a stream batch is atomic like any other");
        assert_eq!(u.feed(KIND_STREAM_ENTRY, 0), Ok(Fed { record: false, unit_ends: true, unit_records: 0 }));
        // A reader from before streams stops at either kind.
        let mut old = Units::default();
        let before_streams = [KIND_RECORD, KIND_COMPRESSED];
        for kind in [KIND_STREAM_ENTRY, KIND_STREAM_CONTROL] {
            assert_eq!(old.feed_knowing(&before_streams, &[], kind, 0), Err(UnknownRequired(kind)));
        }
    }
}
