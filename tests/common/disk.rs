//! A filesystem image on a loop device, mounted, and the power cut that
//! ends it: the `GOINGDOWN` ioctl with `NOLOGFLUSH`, after which nothing
//! more reaches the device and the filesystem's log is not flushed.
//!
//! The library's tests (Auto's pick on real ext4 and XFS) use it as
//! `common::disk`; tidelog-cli's and tidelog-kv's power-cut tests include
//! the same file by path (neither package is published), so none drift.
//! Its commands run through the including module's `output`: the
//! library's and tidelog-cli's take the spawn lock, tidelog-kv's does not.
//! Callers check `tidelog::testing::Capability::{Ext4, Xfs}` before making
//! a `Disk`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::output;

/// `XFS_IOC_GOINGDOWN` / `EXT4_IOC_SHUTDOWN`: `_IOR('X', 125, __u32)`.
const GOINGDOWN: libc::c_ulong = 0x8004_587d;
/// Shut down without flushing the filesystem's log: a power cut.
const NOLOGFLUSH: u32 = 0x2;

/// How long [`Disk::unmount`] retries a busy filesystem.
const UNMOUNT_WAIT: Duration = Duration::from_secs(30);

fn sh(program: &str, args: &[&str]) -> String {
    let out = output(Command::new(program).args(args)).unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A filesystem image on a loop device, mounted; torn down on drop.
pub struct Disk {
    device: String,
    /// Where the filesystem is mounted.
    pub mnt: PathBuf,
    mounted: bool,
    /// Holds the image and the mount point; room for a test's own files,
    /// off the filesystem under test.
    pub dir: tempfile::TempDir,
}

impl Disk {
    /// A fresh `fs` ("ext4" or "xfs") filesystem, mounted.
    pub fn new(fs: &str) -> Disk {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = dir.path().join("fs.img");
        // Sparse; XFS wants at least 300 MiB.
        std::fs::File::create(&image).and_then(|f| f.set_len(512 << 20)).expect("a sparse image");
        let device = sh("losetup", &["--find", "--show", image.to_str().expect("utf-8 path")]);
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mount point");
        let mut disk = Disk { device, mnt, mounted: false, dir };
        match fs {
            "ext4" => sh("mkfs.ext4", &["-q", "-F", &disk.device]),
            "xfs" => sh("mkfs.xfs", &["-q", "-f", &disk.device]),
            other => panic!("unknown filesystem {other}"),
        };
        disk.mount();
        disk
    }

    /// Mounts the filesystem (after a cut: replays its log).
    pub fn mount(&mut self) {
        sh("mount", &[&self.device, self.mnt.to_str().expect("utf-8 path")]);
        self.mounted = true;
    }

    /// Unmounts, retrying while the filesystem is busy: a killed process's
    /// io_uring is torn down asynchronously by the kernel, and its requests
    /// hold the files open for a moment after the process is reaped. There
    /// is nothing to await for that, so this polls, and fails loudly after
    /// [`UNMOUNT_WAIT`]. (A lazy unmount would not do: mounting the device
    /// again would reuse the still-live superblock and skip the log replay
    /// under test.)
    pub fn unmount(&mut self) {
        let deadline = Instant::now() + UNMOUNT_WAIT;
        loop {
            let out = output(Command::new("umount").arg(&self.mnt)).expect("umount");
            if out.status.success() {
                self.mounted = false;
                return;
            }
            let busy = String::from_utf8_lossy(&out.stderr).contains("busy");
            assert!(
                busy && Instant::now() < deadline,
                "umount {}: {}\n{}",
                self.mnt.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The power cut: nothing more reaches the device, the log is not
    /// flushed.
    pub fn shut_down(&self) {
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
            let _ = output(Command::new("umount").arg("-l").arg(&self.mnt));
        }
        let _ = output(Command::new("losetup").args(["-d", &self.device]));
    }
}
