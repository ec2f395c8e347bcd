//! The published frontier: a 32-byte record the writer rewrites in place
//! after each sync round, so that readers in other processes know how far
//! the log is durable. It is never synced; recovery rewrites it at open.

/// The file's name in the journal directory.
pub const FRONTIER_FILE_NAME: &str = "FRONTIER";
/// Bytes of the record.
pub const FRONTIER_LEN: usize = 32;
/// First 8 bytes of the record: `"TLFRONT\x01"`.
pub const FRONTIER_MAGIC: [u8; 8] = *b"TLFRONT\x01";

/// What the record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frontier {
    /// The journal id of the segment headers it speaks for.
    pub(crate) journal_id: u64,
    /// Every record ending at or below this LSN is durable.
    pub(crate) durable: u64,
}

/// The record for `f`: magic, journal id, durable LSN, CRC of bytes 0..24, zero.
pub(crate) fn encode_frontier(f: Frontier) -> [u8; FRONTIER_LEN] {
    let mut b = [0u8; FRONTIER_LEN];
    b[0..8].copy_from_slice(&FRONTIER_MAGIC);
    b[8..16].copy_from_slice(&f.journal_id.to_le_bytes());
    b[16..24].copy_from_slice(&f.durable.to_le_bytes());
    let crc = crc32fast::hash(&b[..24]);
    b[24..28].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The record in `b`, or `None` when it is not one (absent, torn by a
/// concurrent rewrite, or left half-written by a power cut).
pub(crate) fn decode_frontier(b: &[u8]) -> Option<Frontier> {
    if b.len() < FRONTIER_LEN || b[0..8] != FRONTIER_MAGIC || b[28..32] != [0; 4] {
        return None;
    }
    let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(b[24..28].try_into().expect("4 bytes"));
    (crc32fast::hash(&b[..24]) == crc).then(|| Frontier { journal_id: u64_at(8), durable: u64_at(16) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_any_flipped_byte() {
        let f = Frontier { journal_id: 0x0123_4567_89ab_cdef, durable: 1 << 40 };
        let b = encode_frontier(f);
        assert_eq!(decode_frontier(&b), Some(f));
        for i in 0..FRONTIER_LEN {
            let mut bad = b;
            bad[i] ^= 0x10;
            assert_eq!(decode_frontier(&bad), None, "byte {i} flipped");
        }
        assert_eq!(decode_frontier(&b[..31]), None);
        assert_eq!(decode_frontier(&[0; FRONTIER_LEN]), None);
    }
}
