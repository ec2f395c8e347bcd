//! Direct I/O on both substrates: writes are whole blocks and never touch a
//! block twice, records end on, before and after block boundaries, and
//! reopen continues after every kind of partial block. (The whole journal
//! suite also runs with direct I/O: see the `*_direct` cells of `matrix!`;
//! process death with direct I/O is `tests/kill9.rs`'s.)

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use common::{reopen, run_io, Flavor};
use tidelog::testing::{FaultPlan, Seams};
use tidelog::{Journal, JournalOptions, Lsn, SubstrateChoice};

macro_rules! direct_matrix {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[test]
            fn blocking() { run_io(Flavor::Multi, SubstrateChoice::Blocking, true, super::$name) }
            #[test]
            fn io_uring() { run_io(Flavor::Multi, SubstrateChoice::IoUring, true, super::$name) }
        }
    )*};
}

direct_matrix!(
    records_end_on_before_and_after_block_boundaries_and_no_block_is_written_twice,
    reopen_continues_after_every_kind_of_partial_block,
    dsync_writes_make_appends_durable_without_a_separate_sync,
);

/// The block tidelog must pad direct-I/O writes to in `dir`: the larger of
/// the offset alignment the kernel reports (4096 where `statx` does not
/// say) and the device's physical block (on a 512e drive, 4096 although
/// 512-byte direct I/O is accepted: writing a physical sector twice risks
/// tearing its acknowledged bytes).
fn dio_block(dir: &Path) -> u64 {
    let physical = common::physical_block_size(dir).unwrap_or(0);
    let block = dio_alignment(dir).max(physical);
    eprintln!("direct-I/O pad block: {block} bytes (physical {physical})");
    block
}

/// The direct-I/O offset alignment the kernel reports for files in `dir`,
/// or 4096 where `statx` does not say.
fn dio_alignment(dir: &Path) -> u64 {
    let probe = dir.join("probe");
    std::fs::write(&probe, b"x").unwrap();
    let file = std::fs::File::open(&probe).unwrap();
    // SAFETY: statx is plain data; zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    use std::os::fd::AsRawFd;
    // SAFETY: a valid fd, an empty path with AT_EMPTY_PATH, a writable statx.
    let rc =
        unsafe { libc::statx(file.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, libc::STATX_DIOALIGN, &mut stx) };
    std::fs::remove_file(&probe).unwrap();
    if rc == 0 && stx.stx_mask & libc::STATX_DIOALIGN != 0 && stx.stx_dio_offset_align != 0 {
        u64::from(stx.stx_dio_offset_align)
    } else {
        4096
    }
}

/// Checks the write log: every write starts and ends on a block boundary,
/// and no two writes share a byte (so no block is ever written twice).
fn assert_whole_disjoint_blocks(plan: &FaultPlan, block: u64) {
    let log = plan.write_log.lock().unwrap().clone();
    assert!(!log.is_empty());
    let mut by_segment: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
    for &(base, offset, len) in &log {
        let len = len as u64;
        assert!(offset % block == 0 && len % block == 0, "write {offset}+{len} in segment {base} is not whole blocks");
        by_segment.entry(base).or_default().push((offset, offset + len));
    }
    for (base, mut ranges) in by_segment {
        ranges.sort_unstable();
        for pair in ranges.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "segment {base}: writes {pair:?} overlap: a block was written twice");
        }
    }
}

/// Payload sizes whose frames (24-byte header, 8-byte aligned) are `frame`
/// bytes long.
fn payload_for_frame(frame: u64, fill: u8) -> Vec<u8> {
    vec![fill; frame as usize - 24]
}

async fn records_end_on_before_and_after_block_boundaries_and_no_block_is_written_twice(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let block = dio_block(dir.path());
    let plan = Arc::new(FaultPlan::default());
    let opts = opts.segment_size(1 << 20);
    let seams = Seams::new().faults(&plan);
    let j = seams.open(dir.path(), opts.clone()).await.unwrap();
    // Each durable append starts on a block boundary: frames that end
    // exactly on the next one, 8 and 16 bytes before it (too little room for
    // a padding frame: the pad runs into the next block), just after it, and
    // several blocks long.
    let frames = [block, block - 8, block - 16, block + 8, 32, 3 * block + 8, block - 24, block - 32];
    let mut expected = Vec::new();
    for (i, &frame) in frames.iter().enumerate() {
        let payload = payload_for_frame(frame, b'a' + i as u8);
        let lsn = j.append_durable_async(&payload).await.unwrap();
        expected.push((lsn.as_u64(), payload));
    }
    // Many records in flight at once, with one sync, across block boundaries.
    let tickets: Vec<_> = (0..300u64)
        .map(|i| {
            let payload = payload_for_frame(8 * (4 + i % 97), b'A' + (i % 26) as u8);
            (j.submit(&payload).unwrap(), payload)
        })
        .collect();
    for (t, payload) in tickets {
        expected.push((t.lsn().as_u64(), payload));
    }
    j.sync_through_async(j.next_lsn()).await.unwrap();
    // Enough to roll over twice (1 MiB segments).
    for i in 0..40u64 {
        let payload = payload_for_frame(60_000 + 8 * i, b'z');
        expected.push((j.append_durable_async(&payload).await.unwrap().as_u64(), payload));
    }
    j.close().await.unwrap();
    assert!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "tlog"))
            .count()
            >= 3
    );
    assert_eq!(common::read_all(dir.path()), expected, "every record, in order, nothing else (padding is skipped)");
    assert_whole_disjoint_blocks(&plan, block);
    // Reopen (direct), append, and everything is still there.
    let j = seams.open(dir.path(), opts).await.unwrap();
    assert_eq!(j.recovery_report().truncated_bytes(), 0, "a padded tail is not damage");
    let lsn = j.append_durable_async(b"after reopen").await.unwrap();
    expected.push((lsn.as_u64(), b"after reopen".to_vec()));
    j.close().await.unwrap();
    assert_eq!(common::read_all(dir.path()), expected);
    assert_whole_disjoint_blocks(&plan, block);
}

/// How a journal's last segment ends before it is reopened with direct I/O.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// Written with direct I/O: on a block boundary.
    Aligned,
    /// Written buffered: 8 bytes short of a block boundary.
    JustBefore,
    /// Written buffered: in the middle of a block.
    MidBlock,
    /// Written buffered, then a torn write left garbage after the last
    /// frame (recovery cuts it, mid-block).
    Torn,
}

async fn reopen_continues_after_every_kind_of_partial_block(opts: JournalOptions) {
    for ending in [Ending::Aligned, Ending::JustBefore, Ending::MidBlock, Ending::Torn] {
        let dir = tempfile::tempdir().unwrap();
        let block = dio_block(dir.path());
        let opts = opts.clone().segment_size(1 << 20);
        let first = match ending {
            Ending::Aligned => opts.clone(),
            _ => opts.clone().direct_io(false),
        };
        let j = Journal::open(dir.path(), first).await.unwrap();
        let mut expected = Vec::new();
        let payload = match ending {
            // 4096 (header) + frame ends 8 short of a block boundary.
            Ending::JustBefore => payload_for_frame(block - 8, b'p'),
            _ => payload_for_frame(block / 2 + 8, b'p'),
        };
        let lsn = j.append_durable_async(&payload).await.unwrap();
        expected.push((lsn.as_u64(), payload));
        j.close().await.unwrap();
        if let Ending::Torn = ending {
            let seg = dir.path().join(format!("{:020}.tlog", 0));
            let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
            use std::os::unix::fs::FileExt;
            file.write_at(&[0xAB; 100], 4096 + lsn.as_u64()).unwrap();
        }
        // Reopen with direct I/O several times, appending each time; each
        // reopen starts from wherever the last one ended.
        for round in 0..3u8 {
            let j = reopen(dir.path(), &opts).await;
            if round == 0 {
                if let Ending::Torn = ending {
                    assert_eq!(j.recovery_report().truncated_bytes(), 100, "{ending:?}");
                }
            }
            for k in 0..3u64 {
                let payload = payload_for_frame(8 * (5 + k * 61 + u64::from(round) * 7), b'0' + round);
                expected.push((j.append_durable_async(&payload).await.unwrap().as_u64(), payload));
            }
            j.close().await.unwrap();
            assert_eq!(common::read_all(dir.path()), expected, "{ending:?}, round {round}");
        }
        // And buffered again: the direct-written segments read back the same.
        let j = Journal::open(dir.path(), opts.clone().direct_io(false)).await.unwrap();
        let lsn = j.append_durable_async(b"buffered again").await.unwrap();
        expected.push((lsn.as_u64(), b"buffered again".to_vec()));
        j.close().await.unwrap();
        assert_eq!(common::read_all(dir.path()), expected, "{ending:?}, buffered");
    }
}

async fn dsync_writes_make_appends_durable_without_a_separate_sync(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    let opts = opts.dsync_writes(true);
    let j = Seams::new().faults(&plan).open(dir.path(), opts.clone()).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..50u64 {
        let payload = format!("dsync {i}").into_bytes();
        let lsn = j.append_durable_async(&payload).await.unwrap();
        assert!(j.durable_lsn() >= lsn);
        expected.push((lsn.as_u64(), payload));
    }
    let dsync_writes = plan.dsync_writes_seen.load(std::sync::atomic::Ordering::SeqCst);
    // Most lone durable appends are one RWF_DSYNC write each; an append whose
    // write the driver took before its sync was asked for is a plain write
    // followed by an fdatasync.
    assert!(dsync_writes >= 25, "only {dsync_writes} of 50 durable appends were RWF_DSYNC writes");
    j.close().await.unwrap();
    assert_eq!(common::read_all(dir.path()), expected);
    let j = Journal::open(dir.path(), opts).await.unwrap();
    assert_eq!(j.durable_lsn(), Lsn::new(j.next_lsn().as_u64()));
    j.close().await.unwrap();
}
