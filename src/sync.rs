//! The synchronization primitives of the group-commit gate, behind one path
//! so that the `loom` model (`tests/loom_gate.rs`, built with
//! `RUSTFLAGS="--cfg tidelog_loom"`) compiles the same gate over loom's.

pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize};
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
