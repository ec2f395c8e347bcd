//! Recovery: the store's state rebuilt from every record of its journal,
//! oldest first. tidelog recovers a prefix of the records after any crash,
//! so this rebuilds the state after some prefix of the store's operations.

use tidelog::{Journal, Lsn};

use super::index::{Slot, State};
use super::record::{tag, Purge};
use super::{Codec, Error};

/// The state a replay rebuilds, and how many records it read.
pub(crate) struct Replayed<K: Codec> {
    pub(crate) state: State<K>,
    pub(crate) records: u64,
}

fn decode_error(journal: &Journal, lsn: Lsn, reason: impl ToString) -> Error {
    Error::Decode { dir: journal.dir().to_path_buf(), lsn, reason: reason.to_string() }
}

/// Rebuilds the log state from every record, oldest first. A format record
/// that names another format (the other openraft version's, say) is
/// refused, as is a record with an unknown tag.
pub(crate) fn replay<K: Codec>(journal: &Journal) -> Result<Replayed<K>, Error> {
    let mut out = Replayed { state: State::new(), records: 0 };
    let mut reader = journal.reader(Lsn::ZERO)?;
    while let Some(record) = reader.next_record()? {
        out.records += 1;
        let lsn = record.lsn();
        let bad = |e: bincode::Error| decode_error(journal, lsn, e);
        let Some((&what, body)) = record.payload().split_first() else {
            return Err(decode_error(journal, lsn, "empty record"));
        };
        let state = &mut out.state;
        match what {
            tag::FORMAT if body == K::FORMAT => {}
            tag::FORMAT => {
                let reason = format!(
                    "the journal's format is {:?}, this store's {:?}",
                    String::from_utf8_lossy(body),
                    String::from_utf8_lossy(K::FORMAT)
                );
                return Err(decode_error(journal, lsn, reason));
            }
            tag::ENTRY => {
                let entry: K::Entry = bincode::deserialize(body).map_err(bad)?;
                state.insert(Slot { log_id: K::log_id(&entry), from: record.start_lsn(), lsn, cached: None });
            }
            tag::VOTE => state.vote = Some(bincode::deserialize(body).map_err(bad)?),
            tag::COMMITTED => state.committed = bincode::deserialize(body).map_err(bad)?,
            tag::TRUNCATE => {
                let since: K::LogId = bincode::deserialize(body).map_err(bad)?;
                state.remove_from(K::index(&since));
            }
            tag::PURGE => {
                let p: Purge<K::LogId, K::Vote> = bincode::deserialize(body).map_err(bad)?;
                state.purge(&p.upto);
                if p.vote.is_some() {
                    state.vote = p.vote;
                }
                if p.committed.is_some() {
                    state.committed = p.committed;
                }
            }
            other => return Err(decode_error(journal, lsn, format!("unknown record tag {other}"))),
        }
    }
    Ok(out)
}
