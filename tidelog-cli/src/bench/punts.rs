//! How many io_uring requests the kernel punted to its io-wq workers: the
//! number that explains a native result (a punted write or fsync costs the
//! same thread hand-off the blocking substrate pays).
//!
//! Two perf counters on the `io_uring:io_uring_submit_req` and
//! `io_uring:io_uring_queue_async_work` tracepoints, opened on this process
//! before any other thread exists and inherited by every thread made later
//! (the runtime's workers, the journals' I/O threads), read per cell. They
//! need tracefs (to learn the tracepoints' ids) and the right to open
//! tracepoint counters (root, or `perf_event_paranoid` ≤ 1): where either is
//! missing the share is "unknown", and says why.

use std::fs::File;
use std::io::Read;
use std::os::fd::FromRawFd;

/// The counters, or why there are none.
pub(crate) enum Punts {
    Counting { submitted: File, punted: File },
    Unknown(String),
}

/// `struct perf_event_attr` up to `config1` (PERF_ATTR_SIZE_VER0 is 64).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
}

const PERF_TYPE_TRACEPOINT: u32 = 2;
/// `perf_event_open` flag: the descriptor is close-on-exec.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
/// `attr.inherit`: threads created later count too, summed on read.
const FLAG_INHERIT: u64 = 1 << 1;

impl Punts {
    /// Opens the counters. Call before the runtime starts any thread.
    pub(crate) fn open() -> Punts {
        match (counter("io_uring_submit_req"), counter("io_uring_queue_async_work")) {
            (Ok(submitted), Ok(punted)) => Punts::Counting { submitted, punted },
            (Err(why), _) | (_, Err(why)) => Punts::Unknown(why),
        }
    }

    /// (requests submitted, requests punted) so far, when counting.
    pub(crate) fn read(&self) -> Option<(u64, u64)> {
        match self {
            Punts::Counting { submitted, punted } => Some((value(submitted)?, value(punted)?)),
            Punts::Unknown(_) => None,
        }
    }

    /// Why the share is unknown, if it is.
    pub(crate) fn unknown_because(&self) -> Option<&str> {
        match self {
            Punts::Unknown(why) => Some(why),
            Punts::Counting { .. } => None,
        }
    }
}

/// The share of the requests submitted between two readings that were
/// punted, or `None` when unknown or when nothing was submitted.
pub(crate) fn share(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((s0, p0), (s1, p1)) = (before?, after?);
    let submitted = s1.checked_sub(s0)?;
    (submitted > 0).then(|| p1.saturating_sub(p0) as f64 / submitted as f64)
}

fn tracepoint_id(name: &str) -> Result<u64, String> {
    for root in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        let path = format!("{root}/events/io_uring/{name}/id");
        if let Ok(text) = std::fs::read_to_string(&path) {
            return text.trim().parse().map_err(|e| format!("{path}: {e}"));
        }
    }
    Err("tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)".into())
}

fn counter(name: &str) -> Result<File, String> {
    let config = tracepoint_id(name)?;
    let attr = PerfEventAttr {
        kind: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config,
        flags: FLAG_INHERIT,
        ..PerfEventAttr::default()
    };
    // SAFETY: `attr` is a valid perf_event_attr prefix of the size it
    // declares, alive for the call; pid 0 and cpu -1 count this process on
    // every CPU; no group fd. The kernel only reads `attr`.
    let fd = unsafe {
        libc::syscall(libc::SYS_perf_event_open, &attr as *const PerfEventAttr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC)
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("perf_event_open({name}): {e} (needs root or perf_event_paranoid <= 1)"));
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

fn value(mut counter: &File) -> Option<u64> {
    let mut bytes = [0u8; 8];
    counter.read_exact(&mut bytes).ok()?;
    Some(u64::from_ne_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn the_share_is_of_what_was_submitted_between_the_readings() {
        assert_eq!(share(Some((10, 4)), Some((110, 54))), Some(0.5));
        assert_eq!(share(Some((10, 4)), Some((10, 4))), None, "nothing submitted");
        assert_eq!(share(None, Some((1, 1))), None, "unknown");
    }
}
