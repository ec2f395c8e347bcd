//! Real power cuts on a real kernel. An ext4 or XFS image on a loop device
//! is mounted; a child process appends durable records from four tasks and
//! prints each acknowledgement; at a moment chosen by the parent the
//! filesystem is shut down with the `GOINGDOWN` ioctl and `NOLOGFLUSH` —
//! from then on nothing more reaches the device, and whatever was not made
//! durable is lost exactly as in a power failure (the filesystem's log is
//! not flushed). The filesystem is unmounted and mounted again (log
//! replay), the journal is reopened, and every acknowledged record must be
//! there, intact, at its LSN. Several cuts per configuration accumulate in
//! one journal, so recovery after a cut is itself cut.
//!
//! Covers {ext4, XFS} × {IoUring, Blocking} × {buffered, direct}. The
//! negative control acknowledges *written* (not durable) records: it must
//! lose some, or the harness proves nothing.
//!
//! Needs root, `losetup`, `mkfs.ext4` and `mkfs.xfs` (`.ci/run` installs
//! xfsprogs); elsewhere each test prints why it is skipped. More cuts:
//! `TIDELOG_POWER_CUTS=50 cargo test --release -p tidelog-cli --test power_cut -- --nocapture`.
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::crash;
use tidelog::testing::{skip, Capability};
use tidelog::{Journal, JournalOptions, SubstrateChoice};

/// `XFS_IOC_GOINGDOWN` / `EXT4_IOC_SHUTDOWN`: `_IOR('X', 125, __u32)`.
const GOINGDOWN: libc::c_ulong = 0x8004_587d;
/// Shut down without flushing the filesystem's log: a power cut.
const NOLOGFLUSH: u32 = 0x2;

fn sh(program: &str, args: &[&str]) -> String {
    let out = common::output(Command::new(program).args(args)).unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A filesystem image on a loop device, mounted; torn down on drop.
struct Disk {
    device: String,
    mnt: PathBuf,
    mounted: bool,
    _dir: tempfile::TempDir,
}

impl Disk {
    fn new(fs: &str) -> Disk {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fs.img");
        // Sparse; XFS wants at least 300 MiB.
        std::fs::File::create(&image).unwrap().set_len(512 << 20).unwrap();
        let device = sh("losetup", &["--find", "--show", image.to_str().unwrap()]);
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mut disk = Disk { device, mnt, mounted: false, _dir: dir };
        match fs {
            "ext4" => sh("mkfs.ext4", &["-q", "-F", &disk.device]),
            "xfs" => sh("mkfs.xfs", &["-q", "-f", &disk.device]),
            other => panic!("unknown filesystem {other}"),
        };
        disk.mount();
        disk
    }

    fn mount(&mut self) {
        sh("mount", &[&self.device, self.mnt.to_str().unwrap()]);
        self.mounted = true;
    }

    /// Unmounts, retrying while the filesystem is busy: a killed child's
    /// io_uring is torn down asynchronously by the kernel, and its requests
    /// hold the files open for a moment after the process is reaped. There
    /// is nothing to await for that, so this polls, and fails loudly after
    /// 30 s. (A lazy unmount would not do: mounting the device again would
    /// reuse the still-live superblock and skip the log replay under test.)
    fn unmount(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let out = common::output(Command::new("umount").arg(&self.mnt)).expect("umount");
            if out.status.success() {
                self.mounted = false;
                return;
            }
            let busy = String::from_utf8_lossy(&out.stderr).contains("busy");
            assert!(
                busy && std::time::Instant::now() < deadline,
                "umount {}: {}\n{}",
                self.mnt.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The power cut: nothing more reaches the device, the log is not
    /// flushed.
    fn shut_down(&self) {
        let root = std::fs::File::open(&self.mnt).expect("open the mount point");
        let flags = NOLOGFLUSH;
        // SAFETY: the ioctl reads one u32 through the pointer, which is
        // valid for the call; the fd is open for the call.
        let rc = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&root), GOINGDOWN, &flags) };
        assert_eq!(rc, 0, "GOINGDOWN: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if self.mounted {
            let _ = common::output(Command::new("umount").arg("-l").arg(&self.mnt));
        }
        let _ = common::output(Command::new("losetup").args(["-d", &self.device]));
    }
}

/// Cuts per configuration (`TIDELOG_POWER_CUTS`, default 3).
fn cuts() -> u32 {
    std::env::var("TIDELOG_POWER_CUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

/// A small deterministic spread of cut moments (acknowledgements awaited
/// before the cut), different per configuration and cut.
fn cut_after(seed: u64, cut: u32) -> usize {
    let x = (seed ^ u64::from(cut)).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    20 + (x % 400) as usize
}

/// Runs the cuts; returns (acknowledged, lost).
fn power_cuts(fs: &str, substrate: &str, direct: bool, control: bool) -> Option<(usize, Vec<crash::Ack>)> {
    let what = format!("power cuts on {fs} ({substrate}, direct={direct}{})", if control { ", control" } else { "" });
    let cap = if fs == "xfs" { Capability::Xfs } else { Capability::Ext4 };
    if let Err(why) = cap.present() {
        skip(cap, &what, &why);
        return None;
    }
    let mut disk = Disk::new(fs);
    let journal_dir = disk.mnt.join("journal");
    let choice = if substrate == "io_uring" { SubstrateChoice::IoUring } else { SubstrateChoice::Blocking };
    let opts = JournalOptions::new().substrate(choice).direct_io(direct).segment_size(1 << 20);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    if let Some(why) = probe(&rt, &journal_dir, &opts) {
        skip(if direct { Capability::Direct } else { Capability::IoUring }, &what, &why);
        return None;
    }
    let extra: &[&str] = if control { &["--ack-written"] } else { &[] };
    let seed = fs.len() as u64 * 1_000_003 + substrate.len() as u64 * 7919 + u64::from(direct) * 31 + 1;
    let (mut acked, mut lost, mut done) = (Vec::new(), Vec::new(), 0);
    for cut in 0..cuts() {
        done += 1;
        let want = cut_after(seed, cut);
        acked.extend(crash::run_child(&journal_dir, substrate, direct, cut, extra, want, || disk.shut_down()));
        disk.unmount();
        disk.mount();
        // The journal as the cut left it, before recovery touches it.
        let before = disk._dir.path().join("before-recovery");
        let _ = std::fs::remove_dir_all(&before);
        copy_dir(&journal_dir, &before);
        let records = rt.block_on(reopen_and_read(&journal_dir, &opts));
        lost = crash::lost(&records, &acked);
        if control && !lost.is_empty() {
            break; // the control has shown what it must
        }
        if !lost.is_empty() {
            let kept = std::env::temp_dir().join(format!("tidelog-power-cut-{fs}-{substrate}-{direct}-cut{cut}"));
            let _ = std::fs::remove_dir_all(&kept);
            copy_dir(&before, &kept);
            std::fs::write(kept.join("acknowledged.txt"), format!("{acked:#?}")).unwrap();
            panic!(
                "{fs} {substrate} direct={direct}: after power cut {cut}, {} of {} acknowledged records lost, e.g. \
                 (tag, task, n, lsn) {:?}; the journal as the cut left it is in {}",
                lost.len(),
                acked.len(),
                &lost[..lost.len().min(5)],
                kept.display()
            );
        }
    }
    eprintln!(
        "{fs:<4} {substrate:<8} {:<8} {}: {done} cuts, {} acknowledged, {} lost",
        if direct { "direct" } else { "buffered" },
        if control { "CONTROL (acks written)" } else { "durable acks" },
        acked.len(),
        lost.len()
    );
    Some((acked.len(), lost))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Why the journal cannot be opened with `opts` here, if it cannot.
fn probe(rt: &tokio::runtime::Runtime, dir: &Path, opts: &JournalOptions) -> Option<String> {
    let probe_dir = dir.with_file_name("probe");
    let result = rt.block_on(async {
        match Journal::open(&probe_dir, opts.clone()).await {
            Ok(j) => j.close().await.map(|()| None),
            Err(e @ tidelog::Error::Unsupported(_)) => Ok(Some(e.to_string())),
            Err(e) => Err(e),
        }
    });
    std::fs::remove_dir_all(&probe_dir).ok();
    result.expect("probe journal")
}

/// Reopens (recovery) twice, as a restarted service would after a second
/// crash, and reads every record.
async fn reopen_and_read(dir: &Path, opts: &JournalOptions) -> HashMap<u64, Vec<u8>> {
    for _ in 0..2 {
        // `common::reopen` opens under `common::SPAWN`: a child spawned by a
        // parallel test holds a copy of the lock's file description between
        // its fork and exec.
        let j = common::reopen(dir, opts).await;
        j.close().await.expect("close");
    }
    assert!(tidelog::verify(dir).expect("verify").is_clean(), "after recovery the journal verifies clean");
    common::read_all(dir).into_iter().collect()
}

macro_rules! power_cut_tests {
    ($($name:ident: $fs:literal, $substrate:literal, $direct:literal;)*) => {$(
        #[test]
        fn $name() {
            power_cuts($fs, $substrate, $direct, false);
        }
    )*};
}

power_cut_tests! {
    ext4_io_uring_buffered: "ext4", "io_uring", false;
    ext4_io_uring_direct: "ext4", "io_uring", true;
    ext4_blocking_buffered: "ext4", "blocking", false;
    ext4_blocking_direct: "ext4", "blocking", true;
    xfs_io_uring_buffered: "xfs", "io_uring", false;
    xfs_io_uring_direct: "xfs", "io_uring", true;
    xfs_blocking_buffered: "xfs", "blocking", false;
    xfs_blocking_direct: "xfs", "blocking", true;
}

/// Acknowledging after a plain append must lose records to a power cut;
/// if it did not, the cut would not be cutting anything. On each
/// filesystem and each substrate: a control that was skipped proves
/// nothing, and under `TIDELOG_REQUIRE` a skip fails.
fn negative_control(fs: &str, substrate: &str) {
    let Some((acked, lost)) = power_cuts(fs, substrate, false, true) else { return };
    assert!(
        !lost.is_empty(),
        "{fs} {substrate}: the control acknowledged {acked} written-not-durable records and lost none: the power \
         cut did not cut"
    );
}

#[test]
fn negative_control_ext4_io_uring() {
    negative_control("ext4", "io_uring");
}

#[test]
fn negative_control_ext4_blocking() {
    negative_control("ext4", "blocking");
}

#[test]
fn negative_control_xfs_io_uring() {
    negative_control("xfs", "io_uring");
}

#[test]
fn negative_control_xfs_blocking() {
    negative_control("xfs", "blocking");
}
