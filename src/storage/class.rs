//! [`StorageClass`]: what kind of filesystem a path lives on, from `statfs`.
//! Used to seed bulk-write chunk sizes, logged when a journal opens, and to
//! explain refusals (no `O_DIRECT` on tmpfs).

use std::path::Path;

use crate::{Error, Result};

/// The filesystem under a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageClass {
    /// ext2/3/4.
    Ext4,
    /// XFS.
    Xfs,
    /// Btrfs.
    Btrfs,
    /// tmpfs or ramfs: memory, nothing is ever written back.
    Tmpfs,
    /// NFS: every sync is a network round trip.
    Nfs,
    /// overlayfs (containers): syncs reach the upper layer's filesystem.
    Overlay,
    /// Anything else, with its `statfs` magic number.
    Other(u64),
}

impl StorageClass {
    /// The class of the filesystem holding `path`.
    pub fn of(path: impl AsRef<Path>) -> Result<StorageClass> {
        let path = path.as_ref();
        magic(path).map(StorageClass::from_magic).map_err(|e| Error::io("statfs", path, e))
    }

    fn from_magic(magic: u64) -> StorageClass {
        match magic {
            0xEF53 => StorageClass::Ext4,
            0x5846_5342 => StorageClass::Xfs,
            0x9123_683E => StorageClass::Btrfs,
            0x0102_1994 | 0x8584_58F6 => StorageClass::Tmpfs,
            0x6969 => StorageClass::Nfs,
            0x794C_7630 => StorageClass::Overlay,
            other => StorageClass::Other(other),
        }
    }

    /// True where writeback does not exist (memory filesystems).
    pub fn is_memory(self) -> bool {
        self == StorageClass::Tmpfs
    }

    /// A short name for logs and errors.
    pub fn name(self) -> String {
        match self {
            StorageClass::Ext4 => "ext4".into(),
            StorageClass::Xfs => "xfs".into(),
            StorageClass::Btrfs => "btrfs".into(),
            StorageClass::Tmpfs => "tmpfs".into(),
            StorageClass::Nfs => "nfs".into(),
            StorageClass::Overlay => "overlay".into(),
            StorageClass::Other(m) => format!("filesystem {m:#x}"),
        }
    }
}

impl std::fmt::Display for StorageClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(any(tidelog_linux, target_os = "android"))]
fn magic(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated string and `st` a valid,
    // exclusive out-pointer for the duration of the call.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs by target
    Ok(st.f_type as u64)
}

/// Elsewhere the class is not detected (`Other(0)`), but a path that does
/// not exist is still an error.
#[cfg(not(any(tidelog_linux, target_os = "android")))]
fn magic(path: &Path) -> std::io::Result<u64> {
    std::fs::metadata(path).map(|_| 0)
}

#[cfg(test)]
mod tests {
    use super::StorageClass;

    #[test]
    fn magic_numbers_map_to_classes() {
        assert_eq!(StorageClass::from_magic(0xEF53), StorageClass::Ext4);
        assert_eq!(StorageClass::from_magic(0x0102_1994), StorageClass::Tmpfs);
        assert_eq!(StorageClass::from_magic(0x6969), StorageClass::Nfs);
        assert_eq!(StorageClass::from_magic(7), StorageClass::Other(7));
        assert!(StorageClass::Tmpfs.is_memory());
        assert_eq!(StorageClass::Other(0x10).to_string(), "filesystem 0x10");
    }

    #[test]
    fn dev_shm_is_memory_and_a_missing_path_is_an_error() {
        if cfg!(tidelog_linux) && std::path::Path::new("/dev/shm").is_dir() {
            assert!(StorageClass::of("/dev/shm").unwrap().is_memory());
        }
        let err = StorageClass::of("/no/such/dir/here").unwrap_err();
        assert!(err.to_string().contains("/no/such/dir/here"), "{err}");
    }
}
