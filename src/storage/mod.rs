//! The file and directory seam: every operation the journal performs on
//! files and directories outside the substrate — segment creation, rename,
//! removal, preallocation, syncs, listing — goes through a [`Storage`].
//!
//! [`OsStorage`] performs them; tests wrap it (`tidelog::testing`) to record
//! what reaches the OS for crash-state enumeration, or to inject faults.
//! `os` wraps the platform's system calls in one place; `class` tells which
//! kind of filesystem a path is on. This layer knows files and directories,
//! not journals.

mod class;
pub(crate) mod os;

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

pub use class::StorageClass;

/// File and directory operations, as the journal performs them. Every
/// implementation must do exactly what [`OsStorage`] does to the disk (a
/// wrapper may observe, delay or fail an operation, never change it).
pub(crate) trait Storage: Send + Sync + std::fmt::Debug {
    /// Creates `path` (truncating it if it exists) for reading and writing.
    fn create(&self, path: &Path) -> io::Result<File>;
    /// Opens an existing file for reading, and writing when `write`.
    fn open(&self, path: &Path, write: bool) -> io::Result<File>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Cuts or extends (with zeros) `file` to `len` bytes.
    fn set_len(&self, file: &File, len: u64) -> io::Result<()>;
    /// Reserves blocks for `len` bytes of `file` without changing what
    /// reads return, where the filesystem can.
    fn allocate(&self, file: &File, len: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes `file`'s data (and the metadata needed to read it) durable.
    fn sync_data(&self, file: &File) -> io::Result<()>;
    /// Makes `dir`'s entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// The names of `dir`'s entries.
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>>;
}

/// The operating system's file operations.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OsStorage;

impl Storage for OsStorage {
    fn create(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)
    }

    fn open(&self, path: &Path, write: bool) -> io::Result<File> {
        OpenOptions::new().read(true).write(write).open(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        os::allocate(file, len)
    }

    fn write_all_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        os::pwrite_all(file, buf, offset)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        os::sync_data(file)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        os::sync_dir(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        std::fs::read_dir(dir)?.map(|entry| entry.map(|e| e.file_name())).collect()
    }
}
