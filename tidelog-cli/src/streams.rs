//! What the operator commands show of streams (`tidelog::Streams`): the
//! table `inspect` adds, `dump --stream`, and the index check `verify`
//! adds. Read-only like the commands that call it: `Streams::list_dir` and
//! `Streams::read_dir` take no lock and need no runtime, so they work
//! beside a live journal (and may trail it).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use tidelog::{StreamEntry, Streams};

use crate::ops::{fail, hex};

/// Streams `inspect` lists one by one; past this it lists the largest.
const TABLE_ROWS: usize = 20;
/// Entries `dump --stream` asks `read_dir` for at once. Each call rebuilds
/// the index (it reads every frame of the journal), so calls are few; the
/// bound keeps what one call holds in memory finite.
const DUMP_BATCH: usize = 65_536;

/// `inspect`'s part: nothing for a journal without streams; else the
/// count, the totals, and a row per stream (the largest by bytes when
/// there are more than [`TABLE_ROWS`]). False if the index could not be
/// rebuilt (the reason is printed).
pub(crate) fn inspect(dir: &Path) -> bool {
    let mut streams = match Streams::list_dir(dir) {
        Ok(list) => list,
        Err(e) => {
            println!("streams: the index could not be rebuilt: {e} (run `tidelog verify`)");
            return false;
        }
    };
    if streams.is_empty() {
        return true;
    }
    let entries: u64 = streams.iter().map(|s| s.next - s.first).sum();
    let bytes: u64 = streams.iter().map(|s| s.bytes).sum();
    let with_meta = streams.iter().filter(|s| s.meta_len.is_some()).count();
    println!(
        "{} streams: {entries} live entries, {bytes} bytes of entry frames, {with_meta} with metadata",
        streams.len()
    );
    if streams.len() > TABLE_ROWS {
        println!("the {TABLE_ROWS} largest by bytes:");
        // Ties by id, so the table is the same on every run.
        streams.sort_unstable_by_key(|s| (std::cmp::Reverse(s.bytes), s.id));
        streams.truncate(TABLE_ROWS);
    }
    println!(
        "{:>20} {:>12} {:>12} {:>10} {:>14} {:>8} {:>20}",
        "stream", "first", "next", "entries", "bytes", "meta", "floor"
    );
    for s in &streams {
        let meta = s.meta_len.map_or("-".to_string(), |n| n.to_string());
        let floor = s.floor.map_or("-".to_string(), |lsn| lsn.to_string());
        println!(
            "{:>20} {:>12} {:>12} {:>10} {:>14} {meta:>8} {floor:>20}",
            s.id,
            s.first,
            s.next,
            s.next - s.first,
            s.bytes
        );
    }
    true
}

/// `verify`'s part: rebuilds the index as `Streams::open` would, which
/// fails on frames that contradict each other (an entry out of sequence,
/// a malformed control frame) even where every CRC holds. Prints the
/// count, or the problem: as corruption of its own when `verify` found
/// none, else as a consequence of what it found. True if consistent.
pub(crate) fn verify(dir: &Path, corruption_found: bool) -> bool {
    match Streams::list_dir(dir) {
        Ok(list) => {
            let entries: u64 = list.iter().map(|s| s.next - s.first).sum();
            println!("{} streams, {entries} live entries: stream index consistent", list.len());
            true
        }
        Err(e) if corruption_found => {
            println!("streams: the index could not be rebuilt past the corruption above: {e}");
            false
        }
        Err(e) => {
            println!("corrupt: stream index: {e}");
            false
        }
    }
}

/// `dump --stream ID`: the stream's entries from index `from` (0: its
/// first live entry), at most `limit`, one line each.
pub(crate) fn dump(dir: &Path, id: u64, from: u64, limit: Option<u64>, format: &str) -> ExitCode {
    let info = match Streams::list_dir(dir) {
        Ok(list) => list.into_iter().find(|s| s.id == id),
        Err(e) => return fail("dump", e),
    };
    let Some(info) = info else {
        return fail("dump", format!("{}: no stream {id} (`tidelog inspect` lists them)", dir.display()));
    };
    let mut next = if from == 0 { info.first } else { from };
    let end = limit.map_or(info.next, |l| info.next.min(next.saturating_add(l)));
    let mut out = std::io::stdout().lock();
    while next < end {
        let want = usize::try_from(end - next).unwrap_or(usize::MAX).min(DUMP_BATCH);
        let entries = match Streams::read_dir(dir, id, next, want) {
            Ok(entries) => entries,
            Err(e) => return fail("dump", e),
        };
        let Some(last) = entries.last().map(StreamEntry::index) else {
            break; // the stream was truncated since we listed it
        };
        for entry in &entries {
            if writeln!(out, "{}", line(format, id, entry)).is_err() {
                return ExitCode::SUCCESS; // the reader went away (a pipe to `head`)
            }
        }
        next = last + 1;
    }
    ExitCode::SUCCESS
}

/// One entry as `dump --stream` prints it: like a record's line, with the
/// entry's index where a record's start LSN would be.
fn line(format: &str, stream: u64, entry: &StreamEntry) -> String {
    let (index, lsn, payload) = (entry.index(), entry.lsn(), entry.payload());
    match format {
        "hex" => format!("{index} {lsn} {} {}", payload.len(), hex(payload)),
        "json" => serde_json::json!({
            "stream": stream, "index": index, "lsn": lsn.as_u64(), "len": payload.len(), "payload_hex": hex(payload),
        })
        .to_string(),
        _ => format!("{index} {lsn} {} {}", payload.len(), String::from_utf8_lossy(payload)),
    }
}
