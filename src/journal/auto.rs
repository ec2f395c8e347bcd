//! What `SubstrateChoice::Auto` runs on, and why: a rule written from the
//! measurements in `docs/benchmarks.md` ("Auto's rule"), decided from what
//! is known when the journal opens — the filesystem and the I/O options.
//!
//! The ring wins where its writes need no separate fsync request or go
//! inline (no io-wq worker between the submission and the device):
//! `RWF_DSYNC` writes on ext4 and XFS, and direct overwrites of zero-filled
//! segments. Elsewhere the ring's requests are punted to io-wq workers
//! (buffered writes on ext4 and tmpfs, fdatasync everywhere, direct writes
//! into unwritten extents), or, on XFS's buffered path, the blocking
//! substrate still won durable appends at 1 and 256 tasks and tied at 64
//! once the writer regrouped its appenders (docs/benchmarks.md, "Auto's
//! rule after the regroup") — so Auto runs the blocking substrate there,
//! and on filesystems nobody measured.

use crate::{JournalOptions, Preallocate, StorageClass, Substrate};

/// Auto's pick for one journal, before io_uring's availability is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Pick {
    pub(super) substrate: Substrate,
    pub(super) why: &'static str,
}

const fn ring(why: &'static str) -> Pick {
    Pick { substrate: Substrate::IoUring, why }
}

const fn blocking(why: &'static str) -> Pick {
    Pick { substrate: Substrate::Blocking, why }
}

/// The rule; its table is `docs/benchmarks.md`'s "Auto's rule".
pub(super) fn pick(class: StorageClass, opts: &JournalOptions) -> Pick {
    if opts.sqpoll_idle.is_some() {
        return ring("SQPOLL was asked for (JournalOptions::sqpoll), which only a ring has");
    }
    let (zero, growing) = (opts.preallocate == Preallocate::Zero, opts.preallocate == Preallocate::None);
    match (class, opts.direct_io, opts.dsync_writes) {
        (StorageClass::Ext4 | StorageClass::Xfs, _, true) if growing => blocking(
            "RWF_DSYNC writes into growing segments (Preallocate::None) were not measured with io_uring",
        ),
        (StorageClass::Ext4 | StorageClass::Xfs, true, true) if zero => ring(
            "direct RWF_DSYNC writes into zero-filled segments go inline from io_uring: no fsync request, no io-wq worker",
        ),
        (StorageClass::Ext4 | StorageClass::Xfs, true, true) => ring(
            "direct RWF_DSYNC writes need no fsync request: io_uring measured faster on ext4 and XFS",
        ),
        (StorageClass::Ext4 | StorageClass::Xfs, false, true) => ring(
            "RWF_DSYNC writes need no fsync request (inline on XFS, one io-wq request each on ext4): io_uring measured faster for durable appends",
        ),
        (StorageClass::Ext4 | StorageClass::Xfs, true, false) if zero => {
            ring("direct overwrites of zero-filled segments go inline from io_uring on ext4 and XFS")
        }
        (StorageClass::Ext4 | StorageClass::Xfs, true, false) => blocking(
            "direct writes into fallocated or growing segments are punted to io-wq; the blocking substrate won at 64 durable appenders",
        ),
        (StorageClass::Xfs, false, false) => blocking(
            "XFS writes inline from io_uring, but the blocking substrate won durable appends at 1 and 256 tasks and tied at 64",
        ),
        (StorageClass::Ext4, false, false) => blocking(
            "buffered writes and fdatasync are punted to io-wq on ext4; the blocking substrate won durable appends at 1 and 256 tasks, tied at 64, and won lone written appends 2-5x",
        ),
        (StorageClass::Tmpfs, _, _) => {
            blocking("tmpfs: the ring's requests are punted to io-wq; the blocking substrate won")
        }
        _ => blocking("a filesystem not measured with io_uring: the blocking substrate, which makes no punts"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(direct: bool, dsync: bool, prealloc: Preallocate) -> JournalOptions {
        JournalOptions::new().direct_io(direct).dsync_writes(dsync).preallocate(prealloc)
    }

    /// The table in docs/benchmarks.md, row by row.
    #[test]
    fn the_rule_matches_the_documented_table() {
        use Preallocate::{Fallocate, None as Grow, Zero};
        use Substrate::{Blocking as B, IoUring as R};
        let table: &[(StorageClass, bool, bool, Preallocate, Substrate)] = &[
            // buffered defaults: the ring's writes and syncs are punted
            (StorageClass::Ext4, false, false, Fallocate, B),
            (StorageClass::Ext4, false, false, Zero, B),
            (StorageClass::Xfs, false, false, Fallocate, B),
            (StorageClass::Xfs, false, false, Zero, B),
            (StorageClass::Tmpfs, false, false, Fallocate, B),
            // RWF_DSYNC, buffered: no fsync request on either
            (StorageClass::Ext4, false, true, Fallocate, R),
            (StorageClass::Ext4, false, true, Zero, R),
            (StorageClass::Xfs, false, true, Fallocate, R),
            (StorageClass::Xfs, false, true, Zero, R),
            (StorageClass::Tmpfs, false, true, Fallocate, B),
            // direct I/O: inline into written blocks
            (StorageClass::Ext4, true, false, Fallocate, B),
            (StorageClass::Ext4, true, false, Grow, B),
            (StorageClass::Ext4, true, false, Zero, R),
            (StorageClass::Xfs, true, false, Fallocate, B),
            (StorageClass::Xfs, true, false, Zero, R),
            // the inline configuration
            (StorageClass::Ext4, true, true, Fallocate, R),
            (StorageClass::Ext4, true, true, Zero, R),
            (StorageClass::Xfs, true, true, Fallocate, R),
            (StorageClass::Xfs, true, true, Zero, R),
            // RWF_DSYNC into growing segments: not measured
            (StorageClass::Ext4, false, true, Grow, B),
            (StorageClass::Xfs, true, true, Grow, B),
            (StorageClass::Tmpfs, false, true, Zero, B),
            // not measured
            (StorageClass::Btrfs, true, true, Zero, B),
            (StorageClass::Nfs, false, false, Fallocate, B),
            (StorageClass::Overlay, false, false, Fallocate, B),
            (StorageClass::Other(0x1234), true, true, Zero, B),
        ];
        for &(class, direct, dsync, prealloc, want) in table {
            let got = pick(class, &opts(direct, dsync, prealloc));
            assert_eq!(
                got.substrate, want,
                "{class} direct={direct} dsync={dsync} {prealloc:?}: picked {:?} ({})",
                got.substrate, got.why
            );
            assert!(!got.why.is_empty());
        }
        let sqpoll = opts(false, false, Fallocate).sqpoll(Some(std::time::Duration::from_millis(2)));
        assert_eq!(pick(StorageClass::Ext4, &sqpoll).substrate, R, "SQPOLL asks for a ring");
    }
}
