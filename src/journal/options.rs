//! [`JournalOptions`] and the small enums that configure a journal.

use std::time::Duration;

use crate::recovery::RecoveryMode;
use crate::substrate::SubstrateChoice;
use crate::{Error, Result};

/// When the journal syncs on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SyncPolicy {
    /// Only when a caller asks (`sync_through*`, `append_durable*`, tickets).
    #[default]
    OnDemand,
    /// Every append resolves only once durable.
    Always,
    /// A background sync every interval while there is unsynced data.
    Interval(Duration),
    /// Never on its own. Explicit `sync_through*`/`append_durable*` still
    /// sync (their names promise it); tickets resolve once *written*.
    Never,
}

/// How a journal is opened. Cheap to clone; setters take and return `self`.
#[derive(Clone, Debug)]
pub struct JournalOptions {
    pub(crate) substrate: SubstrateChoice,
    pub(crate) direct_io: bool,
    pub(crate) dsync_writes: bool,
    pub(crate) segment_size: u64,
    pub(crate) sync_policy: SyncPolicy,
    pub(crate) group_commit_window: Duration,
    pub(crate) max_record_size: usize,
    pub(crate) recovery: RecoveryMode,
    pub(crate) ring_entries: u32,
    pub(crate) sqpoll_idle: Option<Duration>,
    pub(crate) preallocate: crate::Preallocate,
    pub(crate) precreate: bool,
    pub(crate) buffer_size: usize,
    pub(crate) stall_threshold: Duration,
    pub(crate) sync_timeout: Option<Duration>,
    pub(crate) compression: crate::Compression,
    pub(crate) compression_min_bytes: usize,
}

/// Smallest accepted segment: keeps the header overhead and rollover rate sane.
pub const MIN_SEGMENT_SIZE: u64 = 1 << 20;
/// Largest accepted segment.
pub const MAX_SEGMENT_SIZE: u64 = 1 << 40;

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            substrate: SubstrateChoice::Auto,
            direct_io: false,
            dsync_writes: false,
            segment_size: 64 << 20,
            sync_policy: SyncPolicy::OnDemand,
            group_commit_window: Duration::ZERO,
            max_record_size: 16 << 20,
            recovery: RecoveryMode::PointInTime,
            ring_entries: 256,
            sqpoll_idle: None,
            preallocate: crate::Preallocate::default(),
            precreate: true,
            buffer_size: 4 << 20,
            stall_threshold: Duration::from_secs(5),
            sync_timeout: None,
            compression: crate::Compression::None,
            compression_min_bytes: 256,
        }
    }
}

impl JournalOptions {
    /// The defaults (same as `Default`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Which substrate to run on (default `Auto`).
    pub fn substrate(mut self, choice: SubstrateChoice) -> Self {
        self.substrate = choice;
        self
    }

    /// Open segments with `O_DIRECT` (default off): writes bypass the page
    /// cache. Writes are whole blocks of the file's direct-I/O alignment; a
    /// write that ends inside a block is filled to the block's end with a
    /// padding frame, so no block holding acknowledged bytes is ever written
    /// again (see `docs/durability.md`). Refused with `Error::Unsupported`
    /// on filesystems without `O_DIRECT` (tmpfs).
    pub fn direct_io(mut self, on: bool) -> Self {
        self.direct_io = on;
        self
    }

    /// Make a write that someone awaits durability for carry `RWF_DSYNC`
    /// (default off): the write is durable when it completes (a FUA write
    /// where the device honours it), instead of a write followed by a
    /// separate `fdatasync`. Pays off with `direct_io` on devices with FUA;
    /// measure with `tidelog bench --dsync`.
    pub fn dsync_writes(mut self, on: bool) -> Self {
        self.dsync_writes = on;
        self
    }

    /// Bytes per segment file, header included (default 64 MiB, min 1 MiB).
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// When the journal syncs on its own (default `OnDemand`).
    pub fn sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.sync_policy = policy;
        self
    }

    /// How long a sync leader waits for more followers (default zero: the
    /// natural batching of a sync in flight is usually enough).
    pub fn group_commit_window(mut self, window: Duration) -> Self {
        self.group_commit_window = window;
        self
    }

    /// Largest payload accepted (default 16 MiB).
    pub fn max_record_size(mut self, bytes: usize) -> Self {
        self.max_record_size = bytes;
        self
    }

    /// What recovery does with a damaged tail (default `PointInTime`).
    pub fn recovery(mut self, mode: RecoveryMode) -> Self {
        self.recovery = mode;
        self
    }

    /// Submission queue entries of the native ring (default 256).
    pub fn ring_entries(mut self, entries: u32) -> Self {
        self.ring_entries = entries;
        self
    }

    /// How the next segment, made ahead of need, reserves its space
    /// (default `Fallocate`; see `docs/benchmarks.md` for the measurements
    /// behind the choice).
    pub fn preallocate(mut self, how: crate::Preallocate) -> Self {
        self.preallocate = how;
        self
    }

    /// Benchmark seam: `false` makes each segment at rollover, on the
    /// append path, instead of ahead of need. Not a stable API.
    #[doc(hidden)]
    pub fn precreate_segments(mut self, on: bool) -> Self {
        self.precreate = on;
        self
    }

    /// Opt-in `IORING_SETUP_SQPOLL` for the native ring: a kernel thread
    /// polls the submission queue and stays awake for `idle` after the last
    /// submission, so writes are issued without a syscall from the writer
    /// (default off). It spends a CPU while awake: worth it only with cores to
    /// spare. Under `Auto` it asks for the ring whatever the filesystem
    /// (only a ring has SQPOLL); a kernel that refuses SQPOLL makes `Auto`
    /// fall back to `Blocking` like any other ring failure.
    pub fn sqpoll(mut self, idle: Option<Duration>) -> Self {
        self.sqpoll_idle = idle;
        self
    }

    /// Soft bound on bytes appended but not yet written; appenders wait for
    /// the writer beyond it (default 4 MiB). `submit` never waits.
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.buffer_size = bytes;
        self
    }

    /// A sync slower than this is logged once with `tracing::error!` and
    /// counted in `Stats::stalls` (default 5 s).
    pub fn stall_threshold(mut self, threshold: Duration) -> Self {
        self.stall_threshold = threshold;
        self
    }

    /// Poison the journal when an operation on the device — a write, a
    /// sync, or a rollover's segment work — takes longer than this, instead
    /// of letting callers wait forever on a wedged device (default: none).
    /// The timed-out syscall may still finish later; the journal stays
    /// poisoned and its directory stays locked until it does.
    pub fn sync_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.sync_timeout = timeout;
        self
    }

    /// Compress the records this journal appends (default
    /// [`Compression::None`](crate::Compression::None)). Each record of at
    /// least [`compression_min_bytes`](Self::compression_min_bytes) is
    /// compressed on the appending thread, before it takes its place in the
    /// log, and stored compressed only when that saves at least an eighth of
    /// it; after a run of incompressible records the journal stops trying
    /// for a while. Record LSNs are the ends of the stored frames, so they
    /// advance by the compressed size. Every reader decompresses; a journal
    /// may hold plain and compressed records side by side, and reopening
    /// with another setting is fine. Anything but `None` needs the
    /// `compression` cargo feature: without it, open returns
    /// `Error::Unsupported`.
    pub fn compression(mut self, how: crate::Compression) -> Self {
        self.compression = how;
        self
    }

    /// Records shorter than this are stored plain whatever
    /// [`compression`](Self::compression) says (default 256 bytes): a
    /// small record saves little and costs the same attempt.
    pub fn compression_min_bytes(mut self, bytes: usize) -> Self {
        self.compression_min_bytes = bytes;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        crate::compress::check_available(self.compression)?;
        let bad = |why: String| Err(Error::InvalidOptions(why));
        if self.segment_size < MIN_SEGMENT_SIZE || self.segment_size > MAX_SEGMENT_SIZE {
            return bad(format!(
                "segment_size {} is outside [{MIN_SEGMENT_SIZE}, {MAX_SEGMENT_SIZE}]",
                self.segment_size
            ));
        }
        if self.direct_io && self.segment_size % 4096 != 0 {
            return bad(format!("segment_size {} must be a multiple of 4096 with direct_io", self.segment_size));
        }
        if self.max_record_size == 0 {
            return bad("max_record_size must be at least 1".into());
        }
        // A record whose frame exceeds a segment is refused at append time
        // (`RecordTooLarge`), so small segments need no matching option.
        if self.max_record_size > crate::format::MAX_PAYLOAD_LEN {
            return bad(format!(
                "max_record_size {} exceeds the format's limit of {}",
                self.max_record_size,
                crate::format::MAX_PAYLOAD_LEN
            ));
        }
        if !(1..=32768).contains(&self.ring_entries) || !self.ring_entries.is_power_of_two() {
            return bad(format!("ring_entries {} must be a power of two in [1, 32768]", self.ring_entries));
        }
        if self.sqpoll_idle.is_some_and(|d| d.is_zero() || d > Duration::from_secs(10)) {
            return bad("sqpoll idle must be in (0, 10 s]".into());
        }
        if self.buffer_size < 4096 {
            return bad(format!("buffer_size {} is below 4096", self.buffer_size));
        }
        if let SyncPolicy::Interval(d) = self.sync_policy {
            if d.is_zero() {
                return bad("SyncPolicy::Interval needs a non-zero interval".into());
            }
        }
        if self.sync_timeout.is_some_and(|t| t.is_zero()) {
            return bad("sync_timeout must be non-zero".into());
        }
        if self.group_commit_window > std::time::Duration::from_secs(1) {
            return bad("group_commit_window above 1 s".into());
        }
        Ok(())
    }
}
