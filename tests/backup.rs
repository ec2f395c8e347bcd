//! Online backup: `Journal::backup` under 64 durable appenders, across
//! rollovers and truncation, into a destination that exists; and
//! `tidelog::backup_dir` on a journal this process holds, on one nobody
//! holds (a torn tail), on one whose writer publishes no frontier, and onto
//! another filesystem (no hard links). The CLI's tests back up a journal
//! another process holds, and cut the power during a backup.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{read_all, within};
use tidelog::{Journal, JournalOptions, Lsn};

matrix!(
    backup_under_64_durable_appenders_holds_every_acknowledged_record,
    backups_across_rollovers_and_after_truncate_before,
    backup_into_an_existing_destination_is_an_error,
);

/// The names in a backup: segment files only (no LOCK, FRONTIER, spare or
/// sidecar).
fn assert_only_segments(dest: &Path) {
    for entry in std::fs::read_dir(dest).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let digits = name.strip_suffix(".tlog").unwrap_or_else(|| panic!("{name} in a backup"));
        assert!(digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()), "{name} in a backup");
    }
}

/// Checks a backup as a restore would use it: verifies clean, holds
/// `expected` (LSN → payload), opens with `opts` ending where the report
/// says, accepts appends, and verifies clean again. Returns its records.
async fn check_backup(
    dest: &Path,
    report: &tidelog::BackupReport,
    expected: &HashMap<u64, Vec<u8>>,
    opts: &JournalOptions,
) -> Vec<(u64, Vec<u8>)> {
    assert_only_segments(dest);
    let verified = tidelog::verify(dest).unwrap();
    assert!(verified.is_clean(), "backup verifies clean: {verified:?}");
    assert_eq!(verified.end_lsn, report.end_lsn);
    assert!(report.end_lsn <= report.frontier);
    let records = read_all(dest);
    assert!(records.windows(2).all(|w| w[0].0 < w[1].0), "records in LSN order");
    let held: HashMap<u64, Vec<u8>> = records.iter().cloned().collect();
    for (lsn, payload) in expected {
        assert_eq!(held.get(lsn), Some(payload), "record at LSN {lsn}, acknowledged before the backup, is in it");
    }
    let j = common::reopen(dest, opts).await;
    assert_eq!(j.recovery_report().truncated_bytes(), 0, "a backup has nothing to cut");
    assert_eq!(j.recovery_report().end_lsn(), report.end_lsn);
    let lsn = j.append_durable_async(b"appended to the backup").await.unwrap();
    j.close().await.unwrap();
    assert!(tidelog::verify(dest).unwrap().is_clean());
    assert_eq!(read_all(dest).last().unwrap(), &(lsn.as_u64(), b"appended to the backup".to_vec()));
    records
}

fn payload(task: usize, n: usize) -> Vec<u8> {
    let mut p = format!("{task}:{n}:").into_bytes();
    p.resize(200 + (task * 37 + n * 101) % 1800, b'a' + (n % 26) as u8);
    p
}

async fn backup_under_64_durable_appenders_holds_every_acknowledged_record(opts: JournalOptions) {
    const TASKS: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let opts = opts.segment_size(1 << 20);
    let j = Journal::open(dir.path().join("wal"), opts.clone()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (j, stop, tx) = (j.clone(), stop.clone(), tx.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let lsn = j.append_durable_async(payload(task, n)).await.unwrap();
                    let _ = tx.send((lsn.as_u64(), payload(task, n)));
                    n += 1;
                }
            })
        })
        .collect();
    drop(tx);
    // Enough acknowledged records for several rollovers, then a backup
    // while the appenders go on, then a second one.
    let mut acked = HashMap::new();
    let mut reports = Vec::new();
    for (k, want) in [3000usize, 4500].into_iter().enumerate() {
        while acked.len() < want {
            let (lsn, p) = within(60, "acknowledgements", rx.recv()).await.expect("appenders run");
            acked.insert(lsn, p);
        }
        let before = acked.clone();
        let dest = dir.path().join(format!("backup-{k}"));
        let report = within(60, "backup", j.backup(&dest)).await.unwrap();
        assert!(report.segments_linked + report.segments_copied >= 2, "{report:?}");
        reports.push((dest, report, before));
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        within(60, "appender", t).await.unwrap();
    }
    j.close().await.unwrap();
    for (dest, report, before) in &reports {
        assert!(report.segments_linked >= 1, "sealed segments are hard-linked on one filesystem: {report:?}");
        let records = check_backup(dest, report, before, &opts).await;
        // Per task, the backup holds a prefix of what it appended: nothing torn.
        let mut next: HashMap<usize, usize> = HashMap::new();
        for (_, p) in &records {
            let text = String::from_utf8_lossy(p);
            let mut parts = text.split(':');
            let task: usize = parts.next().unwrap().parse().unwrap();
            let n: usize = parts.next().unwrap().parse().unwrap();
            let want = next.entry(task).or_insert(0);
            assert_eq!(n, *want, "task {task}: records in order, none missing");
            *want += 1;
        }
    }
    assert!(reports[1].1.end_lsn > reports[0].1.end_lsn);
}

async fn backups_across_rollovers_and_after_truncate_before(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let opts = opts.segment_size(1 << 20);
    let j = Journal::open(dir.path().join("wal"), opts.clone()).await.unwrap();
    let mut all = HashMap::new();
    let append = |j: Journal, from: usize, to: usize| {
        let records: Vec<_> = (from..to).map(|n| payload(0, n)).collect();
        async move {
            let mut out = Vec::new();
            for p in records {
                out.push((j.append_async(&p).await.unwrap().as_u64(), p));
            }
            j.sync_through_async(Lsn::new(out.last().unwrap().0)).await.unwrap();
            out
        }
    };
    all.extend(append(j.clone(), 0, 4000).await);
    let first = dir.path().join("first");
    let report = j.backup(&first).await.unwrap();
    assert!(report.segments_linked >= 2, "rolled over several times: {report:?}");
    assert_eq!(report.first_lsn, Lsn::ZERO);
    let cut = Lsn::new(*all.keys().max().unwrap() / 2);
    j.truncate_before(cut).await.unwrap();
    let more = append(j.clone(), 4000, 6000).await;
    all.extend(more);
    let second = dir.path().join("second");
    let report2 = j.backup(&second).await.unwrap();
    assert!(report2.first_lsn > Lsn::ZERO && report2.first_lsn <= cut, "{report2:?}");
    j.close().await.unwrap();
    let before_first: HashMap<u64, Vec<u8>> =
        all.iter().filter(|(&l, _)| l <= report.end_lsn.as_u64()).map(|(&l, p)| (l, p.clone())).collect();
    check_backup(&first, &report, &before_first, &opts).await;
    let kept: HashMap<u64, Vec<u8>> =
        all.iter().filter(|(&l, _)| l > cut.as_u64()).map(|(&l, p)| (l, p.clone())).collect();
    let records = check_backup(&second, &report2, &kept, &opts).await;
    assert_eq!(records.len(), all.iter().filter(|(&l, _)| l > report2.first_lsn.as_u64()).count());
}

async fn backup_into_an_existing_destination_is_an_error(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path().join("wal"), opts).await.unwrap();
    j.append_durable_async(b"one").await.unwrap();
    let dest = dir.path().join("taken");
    std::fs::create_dir(&dest).unwrap();
    let err = j.backup(&dest).await.unwrap_err().to_string();
    assert!(err.contains(&dest.display().to_string()) && err.contains("exists"), "{err}");
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(j.backup(&file).await.is_err());
    assert!(tidelog::backup_dir(dir.path().join("wal"), &dest).is_err());
    // Nothing was left beside them.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    j.close().await.unwrap();
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A journal nobody holds: the whole valid log, what recovery would keep,
/// without its torn tail.
#[test]
fn backup_dir_of_a_closed_journal_takes_the_valid_log_without_its_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let opts = JournalOptions::new().segment_size(1 << 20);
    let rt = current_thread();
    let mut expected = HashMap::new();
    rt.block_on(async {
        let j = Journal::open(&wal, opts.clone()).await.unwrap();
        for n in 0..2000 {
            let p = payload(1, n);
            expected.insert(j.append_async(&p).await.unwrap().as_u64(), p);
        }
        j.close().await.unwrap();
    });
    // A torn write after the end.
    let end = tidelog::verify(&wal).unwrap().end_lsn;
    let last = *tidelog::JournalReader::open(&wal).unwrap().segments().last().unwrap();
    let path = wal.join(format!("{last:020}.tlog"));
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[0x5a; 300], 4096 + end.as_u64() - last).unwrap();
    assert!(!tidelog::verify(&wal).unwrap().is_clean());
    let dest = dir.path().join("backup");
    let report = tidelog::backup_dir(&wal, &dest).unwrap();
    assert_eq!(report.end_lsn, end);
    assert_eq!(report.frontier, end);
    rt.block_on(check_backup(&dest, &report, &expected, &opts));
}

/// A journal this process holds: its published frontier, as for another
/// process's.
#[test]
fn backup_dir_of_a_live_journal_takes_its_published_frontier() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let opts = JournalOptions::new().segment_size(1 << 20);
    current_thread().block_on(async {
        let j = Journal::open(&wal, opts.clone()).await.unwrap();
        let mut expected = HashMap::new();
        for n in 0..3000 {
            let p = payload(2, n);
            expected.insert(j.append_durable_async(&p).await.unwrap().as_u64(), p);
        }
        // Written, not durable: past the frontier, not in the backup.
        let undurable = j.append_async(b"written only").await.unwrap();
        let dest = dir.path().join("backup");
        let wal2 = wal.clone();
        let dest2 = dest.clone();
        let report = tokio::task::spawn_blocking(move || tidelog::backup_dir(&wal2, &dest2)).await.unwrap().unwrap();
        assert!(report.frontier < undurable, "{report:?}");
        assert_eq!(report.end_lsn.as_u64(), *expected.keys().max().unwrap());
        j.close().await.unwrap();
        check_backup(&dest, &report, &expected, &opts).await;
    });
}

/// A writer that holds the lock but publishes nothing is refused: the
/// backup cannot know what is durable.
#[test]
fn backup_dir_refuses_a_live_writer_that_publishes_no_frontier() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    current_thread().block_on(async {
        let j = Journal::open(&wal, JournalOptions::new()).await.unwrap();
        j.append_durable_async(b"one").await.unwrap();
        // The writer keeps writing to the file it opened: the name is gone.
        std::fs::remove_file(wal.join("FRONTIER")).unwrap();
        j.append_durable_async(b"two").await.unwrap();
        let dest = dir.path().join("backup");
        let err = tidelog::backup_dir(&wal, &dest).unwrap_err().to_string();
        assert!(err.contains("publishes no durable frontier") && err.contains("LOCK"), "{err}");
        assert!(!dest.exists());
        j.close().await.unwrap();
    });
}

/// Onto another filesystem (tmpfs) nothing can be hard-linked: every
/// segment is copied, and the copy is as good.
#[test]
fn backup_onto_another_filesystem_copies_every_segment() {
    let shm = Path::new("/dev/shm");
    let dir = tempfile::tempdir().unwrap();
    let Ok(other) = tempfile::tempdir_in(shm) else {
        eprintln!("skipped: no /dev/shm to back up onto");
        return;
    };
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata(shm).unwrap().dev() == std::fs::metadata(dir.path()).unwrap().dev() {
        eprintln!("skipped: /dev/shm is the temp directory's filesystem");
        return;
    }
    let wal = dir.path().join("wal");
    let opts = JournalOptions::new().segment_size(1 << 20);
    current_thread().block_on(async {
        let j = Journal::open(&wal, opts.clone()).await.unwrap();
        let mut expected = HashMap::new();
        for n in 0..3000 {
            let p = payload(3, n);
            expected.insert(j.append_async(&p).await.unwrap().as_u64(), p);
        }
        j.sync_through_async(j.written_lsn()).await.unwrap();
        let dest = other.path().join("backup");
        let report = j.backup(&dest).await.unwrap();
        assert_eq!(report.segments_linked, 0, "{report:?}");
        assert!(report.segments_copied >= 3, "{report:?}");
        j.close().await.unwrap();
        check_backup(&dest, &report, &expected, &opts).await;
    });
}
