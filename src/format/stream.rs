//! The payloads of stream frames: many logical logs ("streams", each named
//! by a `u64`) in one journal. Two required kinds, so a reader from before
//! streams stops at them instead of handing stream bytes out as records:
//!
//! - `KIND_STREAM_ENTRY`: one entry of one stream — the stream id, the
//!   entry's index in its stream, then the entry's bytes.
//! - `KIND_STREAM_CONTROL`: an operation on one stream — the stream id, an
//!   op code, then the op's arguments.
//!
//! Layouts are drawn in `docs/format.md`; what the ops mean is applied by
//! one function, `streams::index::Index::apply_in_unit`, both live and at
//! open.

use super::MAX_PAYLOAD_LEN;

/// Bytes before an entry's own bytes: stream id, index.
pub const STREAM_ENTRY_HEADER_LEN: usize = 16;
/// Bytes before a control op's arguments: stream id, op code, 7 zero bytes.
const CONTROL_HEADER_LEN: usize = 16;

const OP_TRUNCATE_PREFIX: u8 = 1;
const OP_TRUNCATE_SUFFIX: u8 = 2;
const OP_META: u8 = 3;
const OP_REMOVE: u8 = 4;
const OP_STATE: u8 = 5;

/// Bytes of a state op's fixed part after the control header: first, next,
/// from, count, meta flag and 7 zero bytes.
const STATE_FIXED_LEN: usize = 40;

/// What one stream frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamOp<'a> {
    /// Entry `index` of the stream, holding `data`.
    Entry { index: u64, data: &'a [u8] },
    /// Entries below `first` are gone; the stream starts at `first` (and
    /// continues there if it had not reached it).
    TruncatePrefix { first: u64 },
    /// Entries at and after `from` are gone; the next entry is `from`.
    TruncateSuffix { from: u64 },
    /// The stream's metadata is now `data`.
    Meta { data: &'a [u8] },
    /// The stream is gone, metadata and all.
    Remove,
    /// Part of a stream is copied forward (a rewrite, so old segments can
    /// go): its live entries are `first..next`, copies of entries
    /// `from..from + count` follow in the same atomic batch, and its
    /// metadata is now `meta` (unchanged when `None`).
    State { first: u64, next: u64, from: u64, count: u64, meta: Option<&'a [u8]> },
}

/// One decoded stream frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamFrame<'a> {
    pub(crate) stream: u64,
    pub(crate) op: StreamOp<'a>,
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// The header of entry `index` of `stream`; the entry's bytes follow it.
pub(crate) fn entry_header(stream: u64, index: u64) -> [u8; STREAM_ENTRY_HEADER_LEN] {
    let mut h = [0u8; STREAM_ENTRY_HEADER_LEN];
    h[..8].copy_from_slice(&stream.to_le_bytes());
    h[8..].copy_from_slice(&index.to_le_bytes());
    h
}

/// The payload of a frame of kind `KIND_STREAM_CONTROL` for `op` (an
/// entry is written by its header and bytes instead: see [`entry_header`]).
pub(crate) fn encode_control(stream: u64, op: &StreamOp<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(CONTROL_HEADER_LEN + STATE_FIXED_LEN);
    out.extend_from_slice(&stream.to_le_bytes());
    let code = match op {
        StreamOp::Entry { .. } => unreachable!("entries are written by entry_header"),
        StreamOp::TruncatePrefix { .. } => OP_TRUNCATE_PREFIX,
        StreamOp::TruncateSuffix { .. } => OP_TRUNCATE_SUFFIX,
        StreamOp::Meta { .. } => OP_META,
        StreamOp::Remove => OP_REMOVE,
        StreamOp::State { .. } => OP_STATE,
    };
    out.push(code);
    out.extend_from_slice(&[0u8; 7]);
    match *op {
        StreamOp::Entry { .. } | StreamOp::Remove => {}
        StreamOp::TruncatePrefix { first: n } | StreamOp::TruncateSuffix { from: n } => {
            out.extend_from_slice(&n.to_le_bytes())
        }
        StreamOp::Meta { data } => out.extend_from_slice(data),
        StreamOp::State { first, next, from, count, meta } => {
            for v in [first, next, from, count] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.push(u8::from(meta.is_some()));
            out.extend_from_slice(&[0u8; 7]);
            out.extend_from_slice(meta.unwrap_or_default());
        }
    }
    debug_assert!(out.len() <= MAX_PAYLOAD_LEN);
    out
}

/// Decodes a stream frame's payload; the reason when it is malformed.
/// `kind` must be one of the two stream kinds.
pub(crate) fn decode_stream(kind: u8, payload: &[u8]) -> Result<StreamFrame<'_>, &'static str> {
    if kind == super::KIND_STREAM_ENTRY {
        let Some(header) = payload.get(..STREAM_ENTRY_HEADER_LEN) else {
            return Err("stream entry shorter than its header");
        };
        let (stream, index) = (le_u64(header), le_u64(&header[8..]));
        if index == 0 || index == u64::MAX {
            return Err("stream entry with index 0 or u64::MAX (indexes are 1 to u64::MAX - 1)");
        }
        return Ok(StreamFrame { stream, op: StreamOp::Entry { index, data: &payload[STREAM_ENTRY_HEADER_LEN..] } });
    }
    debug_assert_eq!(kind, super::KIND_STREAM_CONTROL);
    let Some(header) = payload.get(..CONTROL_HEADER_LEN) else {
        return Err("stream control frame shorter than its header");
    };
    if header[9..].iter().any(|&b| b != 0) {
        return Err("stream control frame: non-zero reserved bytes");
    }
    let stream = le_u64(header);
    let args = &payload[CONTROL_HEADER_LEN..];
    let index_arg = |args: &[u8]| -> Result<u64, &'static str> {
        match args.len() {
            8 => match le_u64(args) {
                0 => Err("stream control frame: index 0 (indexes start at 1)"),
                n => Ok(n),
            },
            _ => Err("stream control frame: wrong length for its op"),
        }
    };
    let op = match header[8] {
        OP_TRUNCATE_PREFIX => StreamOp::TruncatePrefix { first: index_arg(args)? },
        OP_TRUNCATE_SUFFIX => StreamOp::TruncateSuffix { from: index_arg(args)? },
        OP_META => StreamOp::Meta { data: args },
        OP_REMOVE if args.is_empty() => StreamOp::Remove,
        OP_REMOVE => return Err("stream control frame: wrong length for its op"),
        OP_STATE => {
            let Some(fixed) = args.get(..STATE_FIXED_LEN) else {
                return Err("stream state frame shorter than its fields");
            };
            let (first, next, from, count) =
                (le_u64(fixed), le_u64(&fixed[8..]), le_u64(&fixed[16..]), le_u64(&fixed[24..]));
            let has_meta = fixed[32];
            if first == 0
                || next < first
                || next == u64::MAX
                || from < first
                || from.checked_add(count).is_none_or(|end| end > next)
            {
                return Err("stream state frame: indexes out of order");
            }
            if has_meta > 1 || fixed[33..].iter().any(|&b| b != 0) {
                return Err("stream state frame: bad meta flag or non-zero reserved bytes");
            }
            let rest = &args[STATE_FIXED_LEN..];
            if has_meta == 0 && !rest.is_empty() {
                return Err("stream state frame: metadata bytes without the meta flag");
            }
            StreamOp::State { first, next, from, count, meta: (has_meta == 1).then_some(rest) }
        }
        _ => return Err("stream control frame: unknown op"),
    };
    Ok(StreamFrame { stream, op })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{KIND_STREAM_CONTROL, KIND_STREAM_ENTRY};

    #[test]
    fn every_control_op_round_trips() {
        let ops = [
            StreamOp::TruncatePrefix { first: 7 },
            StreamOp::TruncateSuffix { from: 3 },
            StreamOp::Meta { data: b"vote=5" },
            StreamOp::Meta { data: b"" },
            StreamOp::Remove,
            StreamOp::State { first: 4, next: 9, from: 5, count: 3, meta: Some(b"m") },
            StreamOp::State { first: 4, next: 4, from: 4, count: 0, meta: None },
        ];
        for op in ops {
            let bytes = encode_control(u64::MAX - 1, &op);
            let frame = decode_stream(KIND_STREAM_CONTROL, &bytes).unwrap();
            assert_eq!(frame, StreamFrame { stream: u64::MAX - 1, op });
        }
    }

    #[test]
    fn an_entry_is_its_header_and_bytes() {
        let mut payload = entry_header(42, 3).to_vec();
        payload.extend_from_slice(b"abc");
        let frame = decode_stream(KIND_STREAM_ENTRY, &payload).unwrap();
        assert_eq!(frame, StreamFrame { stream: 42, op: StreamOp::Entry { index: 3, data: b"abc" } });
    }

    #[test]
    fn malformed_frames_are_refused_with_a_reason() {
        assert!(decode_stream(KIND_STREAM_ENTRY, &[0; 15]).is_err());
        assert!(decode_stream(KIND_STREAM_ENTRY, &entry_header(1, 0)).is_err(), "index 0");
        let mut bad = encode_control(1, &StreamOp::TruncatePrefix { first: 2 });
        bad[8] = 99;
        assert!(decode_stream(KIND_STREAM_CONTROL, &bad).is_err(), "unknown op");
        let mut bad = encode_control(1, &StreamOp::Remove);
        bad[12] = 1;
        assert!(decode_stream(KIND_STREAM_CONTROL, &bad).is_err(), "reserved bytes");
        let short = &encode_control(1, &StreamOp::TruncateSuffix { from: 2 })[..20];
        assert!(decode_stream(KIND_STREAM_CONTROL, short).is_err(), "short argument");
        let state = encode_control(1, &StreamOp::State { first: 5, next: 4, from: 5, count: 0, meta: None });
        assert!(decode_stream(KIND_STREAM_CONTROL, &state).is_err(), "next before first");
        let state = encode_control(1, &StreamOp::State { first: 5, next: 9, from: 7, count: 3, meta: None });
        assert!(decode_stream(KIND_STREAM_CONTROL, &state).is_err(), "copies past the end");
    }
}
