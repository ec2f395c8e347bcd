//! What the tests that run the `tidelog` binary share: the library's
//! test helpers (the spawn lock and the helpers that take it), included by
//! path so there is one copy, the crash-test children, and the library
//! tests' loop-device disk that the power cuts shut down.
#![allow(dead_code, unreachable_pub)]

#[path = "../../../tests/common/shared.rs"]
mod shared;
pub use shared::*;

#[cfg(target_os = "linux")]
pub mod crash;

#[cfg(target_os = "linux")]
#[path = "../../../tests/common/disk.rs"]
pub mod disk;
