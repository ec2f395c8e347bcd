//! `tidelog backup SRC DEST` on a journal another process is appending
//! to: every record acknowledged before the command started is in the
//! backup, which verifies clean and opens. And the power cut during a
//! backup (an ext4 image on a loop device, shut down as in `power_cut.rs`):
//! after remount, DEST is absent or a complete, clean backup holding every
//! record acknowledged before the backup began; a leftover may exist only
//! under the temporary name `DEST.tmp-…`.
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};

use common::crash::{self, Ack, Appender};
use common::disk::Disk;
use tidelog::testing::{skip, Capability};
use tidelog::{JournalOptions, SubstrateChoice};

fn opts(substrate: &str) -> JournalOptions {
    let choice = if substrate == "io_uring" { SubstrateChoice::IoUring } else { SubstrateChoice::Blocking };
    JournalOptions::new().substrate(choice).segment_size(1 << 20)
}

/// Why a journal with `opts` cannot open in `dir`'s filesystem, if it cannot.
fn unavailable(rt: &tokio::runtime::Runtime, dir: &Path, opts: &JournalOptions) -> Option<String> {
    let probe = dir.join("probe");
    let result = rt.block_on(async {
        match tidelog::Journal::open(&probe, opts.clone()).await {
            Ok(j) => j.close().await.map(|()| None),
            Err(e @ tidelog::Error::Unsupported(_)) => Ok(Some(e.to_string())),
            Err(e) => Err(e),
        }
    });
    std::fs::remove_dir_all(&probe).ok();
    result.expect("probe journal")
}

/// A backup as a restore would use it: clean, holding every record of
/// `acked`, opening and accepting an append.
fn check_backup(rt: &tokio::runtime::Runtime, dest: &Path, acked: &[Ack], opts: &JournalOptions) {
    let report = tidelog::verify(dest).expect("verify the backup");
    assert!(report.is_clean(), "the backup verifies clean: {report:?}");
    let records: HashMap<u64, Vec<u8>> = common::read_all(dest).into_iter().collect();
    let lost = crash::lost(&records, acked);
    assert!(lost.is_empty(), "records acknowledged before the backup are missing from it: {lost:?}");
    rt.block_on(async {
        let j = common::reopen(dest, opts).await;
        assert_eq!(j.recovery_report().truncated_bytes(), 0);
        j.append_durable_async(b"after restore").await.expect("append to the backup");
        j.close().await.expect("close the backup");
    });
    assert!(tidelog::verify(dest).unwrap().is_clean());
}

fn backup_of_a_journal_another_process_holds(substrate: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = opts(substrate);
    if let Some(why) = unavailable(&rt, dir.path(), &opts) {
        skip(Capability::IoUring, &format!("backup of a live journal ({substrate})"), &why);
        return;
    }
    let wal = dir.path().join("wal");
    let mut child = Appender::spawn(&wal, substrate, false, 0, &[]);
    child.wait_for(300);
    let before = child.acks().to_vec();
    let dest = dir.path().join("backup");
    let out = common::output(Command::new(env!("CARGO_BIN_EXE_tidelog")).arg("backup").arg(&wal).arg(&dest))
        .expect("run tidelog backup");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tidelog backup: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("hard-linked") && stdout.contains("synced"), "{stdout}");
    // The child appended on meanwhile, and goes on after the backup.
    child.wait_for(before.len() + 100);
    let all = child.stop_cut_kill(|| {});
    check_backup(&rt, &dest, &before, &opts);
    assert!(all.len() > before.len());
    // A second backup to the same place is refused, naming it.
    let out = common::output(Command::new(env!("CARGO_BIN_EXE_tidelog")).arg("backup").arg(&wal).arg(&dest))
        .expect("run tidelog backup");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&dest.display().to_string()) && stderr.contains("exists"), "{stderr}");
}

#[test]
fn backup_of_a_journal_another_process_holds_io_uring() {
    backup_of_a_journal_another_process_holds("io_uring");
}

#[test]
fn backup_of_a_journal_another_process_holds_blocking() {
    backup_of_a_journal_another_process_holds("blocking");
}

/// Cuts per substrate (`TIDELOG_POWER_CUTS`, default 6).
fn cuts() -> u32 {
    std::env::var("TIDELOG_POWER_CUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(6)
}

/// Acknowledgements awaited after the backup started, before cut `cut`: a
/// spread from "before the backup process runs" to "after it is done".
fn cut_after(cut: u32) -> usize {
    [0, 24, 64, 128, 256, 512][cut as usize % 6]
}

/// What a cut left at `dest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Left {
    /// A complete, clean backup.
    Backup,
    /// No backup, and a temporary directory (the cut came mid-way).
    Temp,
    /// Nothing (the cut came before the backup began making anything).
    Nothing,
}

/// Checks what a cut left at `dest`, and removes any temporary leftover.
fn after_cut(rt: &tokio::runtime::Runtime, disk: &Disk, dest: &Path, before: &[Ack], opts: &JournalOptions) -> Left {
    let name = dest.file_name().unwrap().to_str().unwrap();
    let mut temp = false;
    for entry in std::fs::read_dir(&disk.mnt).unwrap() {
        let other = entry.unwrap().file_name().into_string().unwrap();
        if other.starts_with(name) && other != name {
            let expected = format!("{name}.tmp-");
            assert!(other.starts_with(&expected), "a leftover under another name than the temp one: {other}");
            std::fs::remove_dir_all(disk.mnt.join(&other)).unwrap();
            temp = true;
        }
    }
    if dest.exists() {
        check_backup(rt, dest, before, opts);
        Left::Backup
    } else if temp {
        Left::Temp
    } else {
        Left::Nothing
    }
}

/// A power cut while `tidelog backup` runs beside an appending child, at
/// a spread of moments (after 0 to 512 more acknowledgements).
fn power_cut_during_backup(substrate: &str) {
    let what = format!("power cut during a backup (ext4, {substrate})");
    if let Err(why) = Capability::Ext4.present() {
        skip(Capability::Ext4, &what, &why);
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut disk = Disk::new("ext4");
    let opts = opts(substrate);
    if let Some(why) = unavailable(&rt, &disk.mnt, &opts) {
        skip(Capability::IoUring, &what, &why);
        return;
    }
    let wal = disk.mnt.join("journal");
    let mut left: HashMap<Left, u32> = HashMap::new();
    for cut in 0..cuts() {
        // 8 MiB segments: the backup copies megabytes of the active one,
        // long enough for cuts to land inside it, and links sealed ones
        // once the journal has grown past the first.
        let mut child = Appender::spawn(&wal, substrate, false, cut, &["--segment-kib", "8192"]);
        child.wait_for(600);
        let before = child.acks().to_vec();
        let dest = disk.mnt.join(format!("backup-{cut}"));
        // Under the spawn lock until it has ended (see `common::SPAWN`).
        let no_open = common::SPAWN.lock().unwrap_or_else(|p| p.into_inner());
        let mut backup = Command::new(env!("CARGO_BIN_EXE_tidelog"))
            .arg("backup")
            .arg(&wal)
            .arg(&dest)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tidelog backup");
        child.wait_for(before.len() + cut_after(cut));
        child.stop_cut_kill(|| disk.shut_down());
        let _ = backup.kill();
        let said = backup.wait_with_output().expect("reap tidelog backup");
        drop(no_open);
        let said = format!("{}{}", String::from_utf8_lossy(&said.stdout), String::from_utf8_lossy(&said.stderr));
        eprintln!("{what}, cut {cut}: the backup said {:?}", said.trim());
        disk.unmount();
        disk.mount();
        *left.entry(after_cut(&rt, &disk, &dest, &before, &opts)).or_default() += 1;
        // Recovery of the journal itself, for the next child.
        rt.block_on(async { common::reopen(&wal, &opts).await.close().await.expect("close") });
    }
    eprintln!("{what}: what {} cuts left: {left:?}", cuts());
}

#[test]
fn power_cut_during_backup_ext4_io_uring() {
    power_cut_during_backup("io_uring");
}

#[test]
fn power_cut_during_backup_ext4_blocking() {
    power_cut_during_backup("blocking");
}
