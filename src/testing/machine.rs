//! The test suite's view of the machine: what it can run here, and one
//! place that decides every skip.

use std::io::Write;
use std::sync::OnceLock;

/// Something a test needs of the machine it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Capability {
    /// The kernel runs io_uring rings for this process (not disabled by
    /// `kernel.io_uring_disabled` or a seccomp profile; Linux only).
    IoUring,
    /// The temp directory is on a disk filesystem: it takes `O_DIRECT` and
    /// writes back (not tmpfs).
    Direct,
    /// Root: mounts, loop devices, filesystem shutdown.
    Root,
    /// ext4 images on loop devices: root, `losetup`, `mkfs.ext4`.
    Ext4,
    /// XFS images on loop devices: root, `losetup`, `mkfs.xfs`.
    Xfs,
    /// `SEEK_DATA` on the temp directory skips preallocated extents.
    SeekData,
}

impl Capability {
    /// Every capability, as `TIDELOG_REQUIRE=all` asks for them.
    pub const ALL: [Capability; 6] = [
        Capability::IoUring,
        Capability::Direct,
        Capability::Root,
        Capability::Ext4,
        Capability::Xfs,
        Capability::SeekData,
    ];

    /// Its name in `TIDELOG_REQUIRE`.
    pub fn name(self) -> &'static str {
        match self {
            Capability::IoUring => "io_uring",
            Capability::Direct => "direct",
            Capability::Root => "root",
            Capability::Ext4 => "ext4",
            Capability::Xfs => "xfs",
            Capability::SeekData => "seek_data",
        }
    }

    /// `Ok` if this machine has it, else why not (probed once per process).
    pub fn present(self) -> Result<(), String> {
        static PROBED: OnceLock<Vec<Result<(), String>>> = OnceLock::new();
        let all = PROBED.get_or_init(|| Capability::ALL.iter().map(|c| c.probe()).collect());
        let at = Capability::ALL.iter().position(|&c| c == self).expect("in ALL");
        all[at].clone()
    }

    fn probe(self) -> Result<(), String> {
        match self {
            Capability::IoUring => io_uring_works(),
            Capability::Direct => direct_works(),
            Capability::Root => {
                // SAFETY: geteuid has no preconditions and cannot fail.
                (unsafe { libc::geteuid() } == 0).then_some(()).ok_or_else(|| "not root".to_string())
            }
            Capability::Ext4 => Capability::Root.probe().and_then(|()| tools(&["losetup", "mount", "mkfs.ext4"])),
            Capability::Xfs => Capability::Root.probe().and_then(|()| tools(&["losetup", "mount", "mkfs.xfs"])),
            Capability::SeekData => seek_data_skips_preallocation(),
        }
    }
}

/// Whether `TIDELOG_REQUIRE` asks for `cap`. Panics on a name it does not
/// know (a typo must not turn a requirement off).
pub fn required(cap: Capability) -> bool {
    let Ok(list) = std::env::var("TIDELOG_REQUIRE") else { return false };
    let mut asked = false;
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name == "all" {
            asked = true;
        } else if let Some(c) = Capability::ALL.iter().find(|c| c.name() == name) {
            asked |= *c == cap;
        } else {
            let known: Vec<&str> = Capability::ALL.iter().map(|c| c.name()).collect();
            panic!("TIDELOG_REQUIRE names {name:?}, which is none of all, {}", known.join(", "));
        }
    }
    asked
}

/// A test, or one cell of it (`what`), cannot run here: `cap` is missing,
/// for `why`. When `TIDELOG_REQUIRE` asks for `cap` this panics (the test
/// fails with the reason); otherwise it says so on the terminal — written
/// past the test harness's capture, so a passing run still shows it — and
/// the caller returns without testing anything.
pub fn skip(cap: Capability, what: &str, why: &str) {
    if required(cap) {
        panic!("{what} needs {} (TIDELOG_REQUIRE asks for it), which is missing here: {why}", cap.name());
    }
    let line =
        format!("SKIPPED {what}: no {} here ({why}); TIDELOG_REQUIRE={} would fail it\n", cap.name(), cap.name());
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// One line on what this machine offers the suite, e.g.
/// `io_uring yes, direct yes, root yes, ext4 yes, xfs no (mkfs.xfs is not installed), seek_data yes`.
pub fn capability_report() -> String {
    let parts: Vec<String> = Capability::ALL
        .iter()
        .map(|c| match c.present() {
            Ok(()) => format!("{} yes", c.name()),
            Err(why) => format!("{} no ({why})", c.name()),
        })
        .collect();
    parts.join(", ")
}

fn tools(names: &[&str]) -> Result<(), String> {
    for tool in names {
        let found = std::process::Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
        if !found.is_ok_and(|o| o.status.success()) {
            return Err(format!("{tool} is not installed"));
        }
    }
    Ok(())
}

#[cfg(tidelog_linux)]
fn io_uring_works() -> Result<(), String> {
    crate::substrate::uring::probe()
}

#[cfg(not(tidelog_linux))]
fn io_uring_works() -> Result<(), String> {
    Err("built without io_uring (not Linux, or --cfg tidelog_portable)".into())
}

/// A file in the temp directory opened with `O_DIRECT`, on a filesystem
/// that writes back.
fn direct_works() -> Result<(), String> {
    let dir = std::env::temp_dir();
    let class = crate::StorageClass::of(&dir).map_err(|e| e.to_string())?;
    if class.is_memory() {
        return Err(format!("{} is on {class}", dir.display()));
    }
    let file = tempfile_in(&dir)?;
    crate::storage::os::set_direct(&file.0).map_err(|e| format!("{} ({class}) refuses O_DIRECT: {e}", dir.display()))
}

fn seek_data_skips_preallocation() -> Result<(), String> {
    use crate::storage::os;
    let file = tempfile_in(&std::env::temp_dir())?;
    let len = 4u64 << 20;
    os::allocate(&file.0, len).map_err(|e| format!("fallocate: {e}"))?;
    match os::next_data(&file.0, 1 << 20) {
        Ok(None) => Ok(()),
        Ok(Some(at)) if at >= len => Ok(()),
        Ok(Some(_)) => Err("the temp directory's filesystem reports preallocated extents as data".into()),
        Err(e) => Err(format!("SEEK_DATA: {e}")),
    }
}

/// An unnamed scratch file in `dir`, removed when dropped.
struct Scratch(std::fs::File, std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.1);
    }
}

fn tempfile_in(dir: &std::path::Path) -> Result<Scratch, String> {
    let path = dir.join(format!("tidelog-probe-{}-{:?}", std::process::id(), std::thread::current().id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("cannot create a file in {}: {e}", dir.display()))?;
    Ok(Scratch(file, path))
}
