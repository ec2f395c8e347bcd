//! Platform-specific file operations, in one place.
//!
//! Linux and other Unixes use `fdatasync`; macOS uses `F_FULLFSYNC`, because
//! its `fsync` does not flush the drive's cache.

use std::fs::File;
use std::io;
use std::path::Path;

/// One positional write; may be short. `EINTR` comes back as an error for the
/// caller to retry.
pub(crate) fn pwrite(file: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    file.write_at(buf, offset)
}

/// Makes a file's data (and the metadata needed to read it) durable.
pub(crate) fn sync_data(file: &File) -> io::Result<()> {
    #[cfg(target_os = "macos")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: F_FULLFSYNC takes no pointer argument; the fd is valid for
        // the borrow of `file`.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_FULLFSYNC) };
        if rc == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "macos"))]
    file.sync_data()
}

/// Reserves `len` bytes of blocks for `file` without changing what reads
/// return. Filesystems that cannot (`EOPNOTSUPP`) are left to grow the file.
pub(crate) fn allocate(file: &File, len: u64) -> io::Result<()> {
    #[cfg(tidelog_linux)]
    {
        use std::os::fd::AsRawFd;
        let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        loop {
            // SAFETY: plain syscall on a valid fd borrowed for the call.
            let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
            if rc == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EOPNOTSUPP) => return Ok(()),
                _ => return Err(err),
            }
        }
    }
    #[cfg(not(tidelog_linux))]
    {
        let _ = (file, len);
        Ok(())
    }
}

/// Advises the kernel that `file` is read at random (`random`) or
/// sequentially as usual. Random access turns off read-ahead, which
/// matters where `SEEK_DATA` is used on preallocated files: read-ahead
/// pages of an unwritten extent count as data, so a scan that reads ahead
/// reads every preallocated zero. Advice only: failure is ignored.
pub(crate) fn advise_random(file: &File, random: bool) {
    #[cfg(tidelog_linux)]
    {
        use std::os::fd::AsRawFd;
        let advice = if random { libc::POSIX_FADV_RANDOM } else { libc::POSIX_FADV_NORMAL };
        // SAFETY: plain syscall on a valid fd borrowed for the call; it
        // changes only the kernel's read-ahead policy for this open file.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, advice) };
    }
    #[cfg(not(tidelog_linux))]
    let _ = (file, random);
}

/// The first offset at or after `from` that may hold data (`SEEK_DATA`),
/// `None` past the last data. Where `SEEK_DATA` is unsupported, `from`.
pub(crate) fn next_data(file: &File, from: u64) -> io::Result<Option<u64>> {
    #[cfg(any(tidelog_linux, target_os = "freebsd"))]
    {
        use std::os::fd::AsRawFd;
        let Ok(at) = libc::off_t::try_from(from) else { return Ok(Some(from)) };
        // SAFETY: plain syscall on a valid fd borrowed for the call; it only
        // moves this fd's offset, which positional I/O does not use.
        let rc = unsafe { libc::lseek(file.as_raw_fd(), at, libc::SEEK_DATA) };
        if rc >= 0 {
            return Ok(Some(rc as u64));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            Some(libc::EINVAL | libc::EOPNOTSUPP) => Ok(Some(from)),
            _ => Err(err),
        }
    }
    #[cfg(not(any(tidelog_linux, target_os = "freebsd")))]
    {
        let _ = file;
        Ok(Some(from))
    }
}

/// Starts writeback of `[offset, offset + len)` without waiting for it.
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    sync_range(file, offset, len, SFR_START)
}

/// Waits until `[offset, offset + len)` has been written back (starting
/// writeback of what is still dirty there).
pub(crate) fn wait_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    sync_range(file, offset, len, SFR_WAIT)
}

/// `sync_file_range` flags: start writeback of a range.
pub(crate) const SFR_START: u32 = SFR_WRITE;
/// ... and wait for a range's writeback, starting what is still dirty.
pub(crate) const SFR_WAIT: u32 = SFR_WAIT_BEFORE | SFR_WRITE | SFR_WAIT_AFTER;

#[cfg(tidelog_linux)]
const SFR_WRITE: u32 = libc::SYNC_FILE_RANGE_WRITE;
#[cfg(tidelog_linux)]
const SFR_WAIT_BEFORE: u32 = libc::SYNC_FILE_RANGE_WAIT_BEFORE;
#[cfg(tidelog_linux)]
const SFR_WAIT_AFTER: u32 = libc::SYNC_FILE_RANGE_WAIT_AFTER;
#[cfg(not(tidelog_linux))]
const SFR_WRITE: u32 = 1;
#[cfg(not(tidelog_linux))]
const SFR_WAIT_BEFORE: u32 = 2;
#[cfg(not(tidelog_linux))]
const SFR_WAIT_AFTER: u32 = 4;

fn sync_range(file: &File, offset: u64, len: u64, flags: u32) -> io::Result<()> {
    #[cfg(tidelog_linux)]
    {
        use std::os::fd::AsRawFd;
        let (Ok(off), Ok(n)) = (libc::off64_t::try_from(offset), libc::off64_t::try_from(len)) else {
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        };
        loop {
            // SAFETY: plain syscall on a valid fd borrowed for the call.
            let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), off, n, flags) };
            if rc == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINTR) {
                return Err(err);
            }
        }
    }
    #[cfg(not(tidelog_linux))]
    {
        // No range writeback elsewhere: waiting means syncing the data.
        let _ = (offset, len);
        if flags & SFR_WAIT_AFTER != 0 {
            return sync_data(file);
        }
        Ok(())
    }
}

/// Makes a directory's entries (creations, renames, unlinks) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Takes an exclusive, non-blocking `flock`; `Ok(false)` if another holds it.
pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a valid fd borrowed for the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// True if `err` means "try the same call again".
pub(crate) fn is_transient(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock)
}

/// Writes all of `buf` at `offset`, retrying short writes and `EINTR`.
pub(crate) fn pwrite_all(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match pwrite(file, buf, offset) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "pwrite wrote nothing")),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if is_transient(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One positional write of `slices` laid end to end (`pwritev2`); may be
/// short. With `dsync` it carries `RWF_DSYNC`: durable when it returns, like
/// a write followed by `fdatasync` of that range (a FUA write on devices that
/// honour it). Elsewhere than Linux: one `pwrite` per slice, stopping at
/// the first short or failed one (what was written before it is reported,
/// and the caller continues from there), then (`dsync`, all written)
/// `fdatasync`.
pub(crate) fn pwritev(file: &File, slices: &[&[u8]], offset: u64, dsync: bool) -> io::Result<usize> {
    #[cfg(tidelog_linux)]
    {
        use std::os::fd::AsRawFd;
        if slices.len() == 1 && !dsync {
            return pwrite(file, slices[0], offset);
        }
        let iov = iovecs(slices);
        let count = libc::c_int::try_from(iov.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let offset = libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        let flags = if dsync { libc::RWF_DSYNC } else { 0 };
        // SAFETY: every iovec points into a slice borrowed (so alive and
        // unmoved) for the whole call; the kernel only reads them.
        let n = unsafe { libc::pwritev2(file.as_raw_fd(), iov.as_ptr(), count, offset, flags) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
    #[cfg(not(tidelog_linux))]
    {
        let mut done = 0usize;
        for slice in slices {
            match pwrite(file, slice, offset + done as u64) {
                Ok(n) => {
                    done += n;
                    if n < slice.len() {
                        return Ok(done);
                    }
                }
                Err(e) if done == 0 => return Err(e),
                Err(_) => return Ok(done), // the caller retries the rest and sees the error
            }
        }
        if dsync {
            sync_data(file)?;
        }
        Ok(done)
    }
}

/// The `iovec`s of `slices` (valid while the slices are).
#[cfg(tidelog_linux)]
pub(crate) fn iovecs(slices: &[&[u8]]) -> Vec<libc::iovec> {
    slices.iter().map(|s| libc::iovec { iov_base: s.as_ptr() as *mut libc::c_void, iov_len: s.len() }).collect()
}

/// Direct-I/O alignment a file needs: `(memory, offset)` in bytes — from
/// `statx(STATX_DIOALIGN)` where the kernel reports it, else the
/// filesystem's block size (`st_blksize`, a multiple of the device's
/// logical block size). `Ok(None)`: the kernel says this file cannot do
/// direct I/O, or (elsewhere than Linux) tidelog does not do it there.
pub(crate) fn dio_alignment(file: &File) -> io::Result<Option<(u32, u32)>> {
    #[cfg(tidelog_linux)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `statx` is plain data; all-zero is a valid value.
        let mut stx: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: `stx` is a valid, writable statx; the empty path with
        // AT_EMPTY_PATH names the fd itself.
        let rc =
            unsafe { libc::statx(file.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, libc::STATX_DIOALIGN, &mut stx) };
        if rc == 0 && stx.stx_mask & libc::STATX_DIOALIGN != 0 {
            if stx.stx_dio_offset_align == 0 {
                return Ok(None);
            }
            return Ok(Some((stx.stx_dio_mem_align, stx.stx_dio_offset_align)));
        }
        use std::os::unix::fs::MetadataExt;
        let block = file.metadata()?.blksize().clamp(512, 4096) as u32;
        Ok(Some((block, block)))
    }
    #[cfg(not(tidelog_linux))]
    {
        // tidelog turns O_DIRECT on only on Linux (`set_direct`).
        let _ = file;
        Ok(None)
    }
}

/// The physical block size of the device under `file` (Linux, from sysfs),
/// when the kernel reports one: the unit a drive writes atomically. A
/// "512e" drive accepts 512-byte direct I/O but writes 4 KiB physical
/// sectors by reading, modifying and writing them back, so a power cut
/// during a later write into the same sector can tear bytes written before.
/// `None` for files not on a block device (network, overlay, multi-device
/// filesystems) or where sysfs does not tell.
pub(crate) fn physical_block_size(file: &File) -> Option<u32> {
    #[cfg(tidelog_linux)]
    {
        use std::os::unix::fs::MetadataExt;
        let dev = file.metadata().ok()?.dev();
        let node = std::fs::canonicalize(format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev))).ok()?;
        // A partition's queue is its disk's, one level up.
        let read = |dir: &Path| std::fs::read_to_string(dir.join("queue/physical_block_size")).ok();
        let text = read(&node).or_else(|| node.parent().and_then(read))?;
        text.trim().parse().ok().filter(|&n: &u32| n > 0)
    }
    #[cfg(not(tidelog_linux))]
    {
        let _ = file;
        None
    }
}

/// Turns `O_DIRECT` on for an open file (Linux; elsewhere `Unsupported`).
pub(crate) fn set_direct(file: &File) -> io::Result<()> {
    #[cfg(tidelog_linux)]
    {
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: F_GETFL/F_SETFL take no pointers; the fd is valid for the
        // borrow of `file`.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: as above.
        if flags == -1 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(tidelog_linux))]
    {
        let _ = file;
        Err(io::Error::new(io::ErrorKind::Unsupported, "O_DIRECT is Linux-only in tidelog"))
    }
}

/// Drops `file`'s pages from the page cache (advice: failure is ignored).
pub(crate) fn drop_cache(file: &File) {
    #[cfg(tidelog_linux)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: plain syscall on a valid fd borrowed for the call.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    #[cfg(not(tidelog_linux))]
    let _ = file;
}

/// Change notifications for a journal directory (Linux `inotify`): a
/// non-blocking descriptor that becomes readable when the `FRONTIER` file
/// is rewritten or a file is created or renamed in the directory.
#[cfg(tidelog_linux)]
#[derive(Debug)]
pub(crate) struct DirWatch {
    fd: std::os::fd::OwnedFd,
    dir: std::path::PathBuf,
    file: std::ffi::OsString,
    /// Whether `file` is watched (it may not exist yet).
    watching_file: bool,
}

#[cfg(tidelog_linux)]
impl DirWatch {
    /// Watches `dir` for creations and renames into it, and `dir/file` for
    /// modifications (once it exists: see [`DirWatch::rearm`]).
    pub(crate) fn new(dir: &Path, file: &str) -> io::Result<DirWatch> {
        use std::os::fd::FromRawFd;
        // SAFETY: inotify_init1 takes flags only.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor inotify_init1 just returned, owned by
        // nobody else; the OwnedFd closes it once.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let mut watch = DirWatch { fd, dir: dir.to_path_buf(), file: file.into(), watching_file: false };
        watch.add(dir, libc::IN_CREATE | libc::IN_MOVED_TO)?;
        watch.rearm();
        Ok(watch)
    }

    fn add(&self, path: &Path, mask: u32) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
        // SAFETY: `path` is a NUL-terminated string that outlives the call;
        // the descriptor is ours.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), path.as_ptr(), mask) };
        if wd == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Watches the file (again): after it was created, or replaced by a new
    /// inode (adding a watch an inode already has is harmless).
    pub(crate) fn rearm(&mut self) {
        let path = self.dir.join(&self.file);
        self.watching_file = self.add(&path, libc::IN_MODIFY).is_ok();
    }

    /// Whether the watched file exists and is watched.
    pub(crate) fn watching_file(&self) -> bool {
        self.watching_file
    }

    /// Reads (and discards) every queued event. `WouldBlock` when there was
    /// none; returns whether a creation or rename in the directory was seen.
    pub(crate) fn drain(&self) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 4096];
        let (mut any, mut created) = (false, false);
        loop {
            // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`,
            // which lives across the call.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock if any => return Ok(created),
                    _ => return Err(err),
                }
            }
            any = true;
            // Events: wd (i32), mask (u32), cookie (u32), len (u32), name.
            let mut at = 0;
            while at + 16 <= n as usize {
                let mask = u32::from_ne_bytes(buf[at + 4..at + 8].try_into().expect("4 bytes"));
                let len = u32::from_ne_bytes(buf[at + 12..at + 16].try_into().expect("4 bytes")) as usize;
                created |= mask & (libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_Q_OVERFLOW) != 0;
                at += 16 + len;
            }
        }
    }
}

#[cfg(tidelog_linux)]
impl std::os::fd::AsRawFd for DirWatch {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

/// The process holding an `flock` on `path`, from `/proc/locks` (Linux):
/// read-only, because taking the lock to test it would make its owner's
/// next open fail meanwhile. `Ok(None)`: nobody holds it. Elsewhere there
/// is no way to tell without taking it: `Unsupported`.
pub(crate) fn flock_holder(path: &Path) -> io::Result<Option<u32>> {
    #[cfg(tidelog_linux)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let locks = std::fs::read_to_string("/proc/locks")?;
        let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
        Ok(locks.lines().find_map(|line| {
            // "1: FLOCK  ADVISORY  WRITE 4910 fd:00:1234 0 EOF": device
            // major and minor in hex, then the inode in decimal.
            let f: Vec<&str> = line.split_whitespace().collect();
            let mut id = f.get(5)?.split(':');
            let maj = u32::from_str_radix(id.next()?, 16).ok()?;
            let min = u32::from_str_radix(id.next()?, 16).ok()?;
            let ino = id.next()?.parse::<u64>().ok()?;
            let ours = f.get(1) == Some(&"FLOCK") && (maj, min, ino) == (major, minor, meta.ino());
            ours.then(|| f.get(4)?.parse().ok()).flatten()
        }))
    }
    #[cfg(not(tidelog_linux))]
    {
        let _ = path;
        Err(io::Error::new(io::ErrorKind::Unsupported, "lock holders are read from /proc/locks (Linux only)"))
    }
}

/// Renames `from` to `to` unless `to` exists (`AlreadyExists` then). Where
/// the kernel or filesystem lacks `RENAME_NOREPLACE`, a check then a plain
/// rename (a race with a concurrent creator of `to` remains there).
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(tidelog_linux)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
        let (cfrom, cto) = (c(from)?, c(to)?);
        // SAFETY: both strings are NUL-terminated and alive for the call;
        // the kernel only reads them.
        let rc = unsafe {
            libc::renameat2(libc::AT_FDCWD, cfrom.as_ptr(), libc::AT_FDCWD, cto.as_ptr(), libc::RENAME_NOREPLACE)
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
            return Err(err);
        }
    }
    if std::fs::symlink_metadata(to).is_ok() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "the destination exists"));
    }
    std::fs::rename(from, to)
}
