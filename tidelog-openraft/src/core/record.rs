//! The store's records: a tag byte, then the body in bincode 1 with its
//! default options (little-endian, fixed-width integers, `u64` lengths).
//! Written once for both openraft versions; each version's own types give
//! the bodies (`docs/replication.md` lists them).

use serde::Serialize;

/// Record tags: the first byte of every record.
pub(crate) mod tag {
    pub(crate) const FORMAT: u8 = 0;
    pub(crate) const ENTRY: u8 = 1;
    pub(crate) const VOTE: u8 = 2;
    pub(crate) const COMMITTED: u8 = 3;
    pub(crate) const TRUNCATE: u8 = 4;
    pub(crate) const PURGE: u8 = 5;
}

/// `tag` followed by `body` as it is.
pub(crate) fn framed(what: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + body.len());
    v.push(what);
    v.extend_from_slice(body);
    v
}

/// `tag` followed by `value` in bincode.
pub(crate) fn encode<T: Serialize>(what: u8, value: &T) -> Result<Vec<u8>, bincode::Error> {
    let mut v = vec![what];
    bincode::serialize_into(&mut v, value)?;
    Ok(v)
}

/// The purge record: the purged log id, and the vote and committed id as
/// of the purge, carried forward because the segments that held their own
/// records may be deleted.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Purge<L, V> {
    pub(crate) upto: L,
    pub(crate) vote: Option<V>,
    pub(crate) committed: Option<L>,
}
