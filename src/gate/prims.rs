//! The synchronization primitives the gate is built from: std's, or loom's
//! in the model of the gate (`tests/loom_gate.rs`, built with
//! `RUSTFLAGS="--cfg tidelog_loom"`), which compiles this same module.

#[cfg(tidelog_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize};
#[cfg(tidelog_loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(tidelog_loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize};
#[cfg(not(tidelog_loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
