//! The operator commands on journals holding streams (`tidelog::Streams`),
//! written here by the library: `inspect` lists them (or summarises many),
//! `dump --stream` prints one stream's entries, and `verify` checks the
//! stream index, failing on a damaged entry and on stream frames that
//! contradict each other even where every CRC holds.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tidelog::format::{frame_len, FRAME_HEADER_LEN, KIND_STREAM_ENTRY, SEGMENT_HEADER_LEN};
use tidelog::{JournalOptions, Streams};

fn tidelog(args: &[&str]) -> Output {
    common::output(Command::new(env!("CARGO_BIN_EXE_tidelog")).args(args)).expect("run tidelog")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Entry `index` of stream `stream`: its identity, then filler whose
/// length varies, so that frames of about 1 KiB fill several 1 MiB segments.
fn payload(stream: u64, index: u64) -> String {
    format!("s{stream} e{index} {}", "x".repeat(700 + (index % 5 * 131) as usize))
}

/// A closed journal over 1 MiB segments where stream `s` (of `1..=streams`)
/// holds entries `1..=entries(s)`, appended in rounds across streams (so
/// their frames interleave); then `more` runs on the open streams.
fn write(dir: &Path, streams: u64, entries: impl Fn(u64) -> u64, more: impl AsyncFnOnce(&Streams)) {
    let _no_spawn = common::SPAWN.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let s = Streams::open(dir, JournalOptions::new().segment_size(1 << 20)).await.unwrap();
        let rounds = (1..=streams).map(&entries).max().unwrap_or(0);
        let mut last = None;
        for index in 1..=rounds {
            for id in (1..=streams).filter(|&id| index <= entries(id)) {
                let (at, ticket) = s.submit(id, payload(id, index)).unwrap();
                assert_eq!(at, index);
                last = Some(ticket);
            }
        }
        if let Some(ticket) = last {
            ticket.await.unwrap();
        }
        more(&s).await;
        s.close().await.unwrap();
    });
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tlog"))
        .collect();
    segs.sort();
    segs
}

/// One frame of a segment file: where it starts in the file, its kind,
/// and its payload's range in the file.
struct Frame {
    at: usize,
    kind: u8,
    payload: std::ops::Range<usize>,
}

/// Every frame of a segment file, walked by the lengths in their headers
/// (docs/format.md: a frame is CRC, length, LSN, kind, flags, reserved
/// bytes, then the payload and zeros to 8 bytes).
fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while at + FRAME_HEADER_LEN <= bytes.len() && bytes[at + 16] != 0 {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        out.push(Frame { at, kind: bytes[at + 16], payload: at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len });
        at += frame_len(len);
    }
    out
}

/// The stream and index of a stream entry's payload.
fn entry_of(payload: &[u8]) -> (u64, u64) {
    let le = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
    (le(&payload[..8]), le(&payload[8..16]))
}

#[test]
fn inspect_dump_and_verify_show_streams() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        3,
        |_| 400,
        async |s| {
            s.set_meta(2, b"vote 7").await.unwrap();
            s.truncate_prefix(3, 101).await.unwrap();
        },
    );
    assert!(segments(dir.path()).len() >= 2, "the entries span segments");
    let d = dir.path().to_str().unwrap();

    let out = tidelog(&["inspect", d]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("3 streams: 1100 live entries"), "{text}");
    let end = tidelog::verify(dir.path()).unwrap().end_lsn;
    assert!(text.contains(&format!("LSNs [0, {end})")), "the range covers stream frames: {text}");
    assert!(text.contains("1 with metadata"), "{text}");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("stream"))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let listed = Streams::list_dir(dir.path()).unwrap();
    assert_eq!(rows.len(), 3, "{text}");
    for (row, info) in rows.iter().zip(&listed) {
        let meta = info.meta_len.map_or("-".into(), |n| n.to_string());
        let floor = info.floor.map_or("-".into(), |l| l.to_string());
        let want = [info.id, info.first, info.next, info.next - info.first, info.bytes].map(|n| n.to_string());
        assert_eq!(row[..5], want, "{text}");
        assert_eq!(row[5..], [meta, floor], "{text}");
    }
    assert_eq!((rows[1][5], rows[2][1], rows[2][3]), ("6", "101", "300"), "{text}");

    // Stream 3 from its first live entry, in each format.
    let entries = Streams::read_dir(dir.path(), 3, 101, 2).unwrap();
    let out = tidelog(&["dump", d, "--stream", "3", "--limit", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let want: Vec<String> = entries
        .iter()
        .map(|e| format!("{} {} {} {}", e.index(), e.lsn(), e.payload().len(), payload(3, e.index())))
        .collect();
    assert_eq!(stdout(&out).lines().collect::<Vec<_>>(), want);
    let out = tidelog(&["dump", d, "--stream", "1", "--from", "400", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    let hex: String = payload(1, 400).bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!((&v["stream"], &v["index"], &v["payload_hex"]), (&1.into(), &400.into(), &hex.into()));
    let out = tidelog(&["dump", d, "--stream", "2"]);
    assert_eq!(stdout(&out).lines().count(), 400, "every entry, across segments");
    // Below the first live entry, and a stream that does not exist: errors.
    let out = tidelog(&["dump", d, "--stream", "3", "--from", "5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("first live entry 101"), "{}", stderr(&out));
    let out = tidelog(&["dump", d, "--stream", "9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no stream 9"), "{}", stderr(&out));

    let out = tidelog(&["verify", d]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("3 streams, 1100 live entries: stream index consistent"), "{}", stdout(&out));
}

#[test]
fn inspect_of_a_journal_without_streams_prints_no_stream_lines() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 0, |_| 0, async |s| assert!(s.journal().append_async(b"plain").await.is_ok()));
    let out = tidelog(&["inspect", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(" 1 records") && !stdout(&out).contains("stream"), "{}", stdout(&out));
}

#[test]
fn inspect_summarises_many_streams_and_lists_the_largest() {
    let dir = tempfile::tempdir().unwrap();
    // Stream s holds s entries: the largest by bytes are 25 down to 6.
    write(dir.path(), 25, |s| s, async |_| {});
    let out = tidelog(&["inspect", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("25 streams: 325 live entries") && text.contains("the 20 largest by bytes:"), "{text}");
    let ids: Vec<u64> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("stream"))
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, (6..=25).rev().collect::<Vec<u64>>(), "{text}");
}

#[test]
fn verify_fails_on_a_flipped_byte_inside_a_stream_entry() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 4, |_| 400, async |_| {});
    let first = segments(dir.path()).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    let entries: Vec<Frame> = frames(&bytes).into_iter().filter(|f| f.kind == KIND_STREAM_ENTRY).collect();
    let middle = &entries[entries.len() / 2];
    bytes[middle.payload.start + 20] ^= 0x01;
    std::fs::write(&first, bytes).unwrap();
    let d = dir.path().to_str().unwrap();
    let out = tidelog(&["verify", d]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("corrupt:") && text.contains(first.to_str().unwrap()), "{text}");
    assert!(text.contains("streams: the index could not be rebuilt past the corruption above"), "{text}");
    let out = tidelog(&["inspect", d]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stdout(&out).contains("streams: the index could not be rebuilt"), "{}", stdout(&out));
}

/// An entry whose index skips ahead, in a frame whose CRC is recomputed:
/// every frame checks, so only the stream index finds it.
#[test]
fn verify_finds_stream_frames_that_contradict_each_other() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 2, |_| 50, async |_| {});
    let first = segments(dir.path()).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    let frame = frames(&bytes)
        .into_iter()
        .find(|f| f.kind == KIND_STREAM_ENTRY && entry_of(&bytes[f.payload.clone()]) == (2, 7))
        .expect("stream 2's entry 7");
    bytes[frame.payload.start + 8..frame.payload.start + 16].copy_from_slice(&9u64.to_le_bytes());
    // The CRC covers the header after itself and the payload.
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[frame.at + 4..frame.at + FRAME_HEADER_LEN]);
    crc.update(&bytes[frame.payload.clone()]);
    bytes[frame.at..frame.at + 4].copy_from_slice(&crc.finalize().to_le_bytes());
    std::fs::write(&first, bytes).unwrap();
    let lsn = frame.at - SEGMENT_HEADER_LEN; // the first segment starts at LSN 0
    let out = tidelog(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let text = stdout(&out);
    let at = format!("corrupt: stream index: corrupt journal at {} (LSN {lsn})", first.display());
    assert!(text.contains(&at) && text.contains("stream 2: entry 9 where entry 7 was expected"), "{text}");
}

#[test]
fn a_tiny_streams_bench_prints_its_rows_and_the_open_figures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = tidelog(&[
        "bench",
        "--streams",
        "3",
        "--dir",
        d,
        "--duration",
        "0.05",
        "--rounds",
        "1",
        "--substrate",
        "blocking",
        "--segment-mib",
        "1",
        "--open-streams",
        "50x3",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let rows: Vec<Vec<&str>> = text.lines().skip(1).take(3).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.iter().map(|r| r[1]).collect::<Vec<_>>(), ["streams,", "journals,", "writers,"], "{text}");
    // A journal per writer syncs once per record (rec/sync: the third of
    // the eight figures that end each row).
    assert_eq!(rows[1][rows[1].len() - 6], "1.0", "{text}");
    assert!(text.contains("open of 50 streams x 3 entries"), "{text}");
    assert!(text.contains("index heap per stream: ") || text.contains("not measured"), "{text}");
    let out = tidelog(&["bench", "--streams", "2", "--dir", d, "--open-streams", "many"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("STREAMSxENTRIES"), "{}", stderr(&out));
}
