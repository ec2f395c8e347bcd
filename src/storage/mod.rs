//! The file and directory seam: every operation the journal performs on
//! files and directories outside the substrate (segment creation, rename,
//! removal, preallocation, syncs, listing), and the system calls below it.
//!
//! `os` wraps the platform's calls in one place; `class` tells which kind
//! of filesystem a path is on.

mod class;
pub(crate) mod os;

pub use class::StorageClass;
