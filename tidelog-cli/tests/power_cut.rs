//! Real power cuts on a real kernel. An ext4 or XFS image on a loop device
//! is mounted; a child process appends durable records from four tasks and
//! prints each acknowledgement; at a moment chosen by the parent the
//! filesystem is shut down with the `GOINGDOWN` ioctl and `NOLOGFLUSH` —
//! from then on nothing more reaches the device, and whatever was not made
//! durable is lost exactly as in a power failure (the filesystem's log is
//! not flushed). The filesystem is unmounted and mounted again (log
//! replay), the journal is reopened, and every acknowledged record must be
//! there, intact, at its LSN. Several cuts per configuration accumulate in
//! one journal, so recovery after a cut is itself cut.
//!
//! Covers {ext4, XFS} × {IoUring, Blocking} × {buffered, direct}. The
//! negative control acknowledges *written* (not durable) records: it must
//! lose some, or the harness proves nothing.
//!
//! Needs root, `losetup`, `mkfs.ext4` and `mkfs.xfs` (`.ci/run` installs
//! xfsprogs); elsewhere each test prints why it is skipped. More cuts:
//! `TIDELOG_POWER_CUTS=50 cargo test --release -p tidelog-cli --test power_cut -- --nocapture`.
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::crash;
use common::disk::Disk;
use tidelog::testing::{skip, Capability};
use tidelog::{Journal, JournalOptions, SubstrateChoice};

/// Cuts per configuration (`TIDELOG_POWER_CUTS`, default 3).
fn cuts() -> u32 {
    std::env::var("TIDELOG_POWER_CUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

/// A small deterministic spread of cut moments (acknowledgements awaited
/// before the cut), different per configuration and cut.
fn cut_after(seed: u64, cut: u32) -> usize {
    let x = (seed ^ u64::from(cut)).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    20 + (x % 400) as usize
}

/// Runs the cuts; returns (acknowledged, lost). `large`: the child appends
/// records of about 270 KB handed over as `Vec`s (`--large`: owned
/// payloads, two large writes in flight), and fewer of them per cut.
fn power_cuts(fs: &str, substrate: &str, direct: bool, control: bool, large: bool) -> Option<(usize, Vec<crash::Ack>)> {
    let size = if large { ", large records" } else { "" };
    let what =
        format!("power cuts on {fs} ({substrate}, direct={direct}{}{size})", if control { ", control" } else { "" });
    let cap = if fs == "xfs" { Capability::Xfs } else { Capability::Ext4 };
    if let Err(why) = cap.present() {
        skip(cap, &what, &why);
        return None;
    }
    let mut disk = Disk::new(fs);
    let journal_dir = disk.mnt.join("journal");
    let choice = if substrate == "io_uring" { SubstrateChoice::IoUring } else { SubstrateChoice::Blocking };
    let opts = JournalOptions::new().substrate(choice).direct_io(direct).segment_size(1 << 20);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    if let Some(why) = probe(&rt, &journal_dir, &opts) {
        skip(if direct { Capability::Direct } else { Capability::IoUring }, &what, &why);
        return None;
    }
    let extra: &[&str] = match (control, large) {
        (false, false) => &[],
        (true, false) => &["--ack-written"],
        (false, true) => &["--large"],
        (true, true) => &["--large", "--ack-written"],
    };
    let make = if large { crash::large_payload } else { crash::payload };
    let seed = fs.len() as u64 * 1_000_003 + substrate.len() as u64 * 7919 + u64::from(direct) * 31 + 1;
    let (mut acked, mut lost, mut done) = (Vec::new(), Vec::new(), 0);
    for cut in 0..cuts() {
        done += 1;
        let want = if large { 4 + cut_after(seed, cut) / 10 } else { cut_after(seed, cut) };
        acked.extend(crash::run_child(&journal_dir, substrate, direct, cut, extra, want, || disk.shut_down()));
        disk.unmount();
        disk.mount();
        // The journal as the cut left it, before recovery touches it.
        let before = disk.dir.path().join("before-recovery");
        let _ = std::fs::remove_dir_all(&before);
        copy_dir(&journal_dir, &before);
        let records = rt.block_on(reopen_and_read(&journal_dir, &opts));
        lost = crash::lost_of(&records, &acked, make);
        if control && !lost.is_empty() {
            break; // the control has shown what it must
        }
        if !lost.is_empty() {
            let kept = std::env::temp_dir().join(format!("tidelog-power-cut-{fs}-{substrate}-{direct}-cut{cut}"));
            let _ = std::fs::remove_dir_all(&kept);
            copy_dir(&before, &kept);
            std::fs::write(kept.join("acknowledged.txt"), format!("{acked:#?}")).unwrap();
            panic!(
                "{fs} {substrate} direct={direct}: after power cut {cut}, {} of {} acknowledged records lost, e.g. \
                 (tag, task, n, lsn) {:?}; the journal as the cut left it is in {}",
                lost.len(),
                acked.len(),
                &lost[..lost.len().min(5)],
                kept.display()
            );
        }
    }
    eprintln!(
        "{fs:<4} {substrate:<8} {:<8}{size} {}: {done} cuts, {} acknowledged, {} lost",
        if direct { "direct" } else { "buffered" },
        if control { "CONTROL (acks written)" } else { "durable acks" },
        acked.len(),
        lost.len()
    );
    Some((acked.len(), lost))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Why the journal cannot be opened with `opts` here, if it cannot.
fn probe(rt: &tokio::runtime::Runtime, dir: &Path, opts: &JournalOptions) -> Option<String> {
    let probe_dir = dir.with_file_name("probe");
    let result = rt.block_on(async {
        match Journal::open(&probe_dir, opts.clone()).await {
            Ok(j) => j.close().await.map(|()| None),
            Err(e @ tidelog::Error::Unsupported(_)) => Ok(Some(e.to_string())),
            Err(e) => Err(e),
        }
    });
    std::fs::remove_dir_all(&probe_dir).ok();
    result.expect("probe journal")
}

/// Reopens (recovery) twice, as a restarted service would after a second
/// crash, and reads every record.
async fn reopen_and_read(dir: &Path, opts: &JournalOptions) -> HashMap<u64, Vec<u8>> {
    for _ in 0..2 {
        // `common::reopen` opens under `common::SPAWN`: a child spawned by a
        // parallel test holds a copy of the lock's file description between
        // its fork and exec.
        let j = common::reopen(dir, opts).await;
        j.close().await.expect("close");
    }
    assert!(tidelog::verify(dir).expect("verify").is_clean(), "after recovery the journal verifies clean");
    common::read_all(dir).into_iter().collect()
}

macro_rules! power_cut_tests {
    ($($name:ident: $fs:literal, $substrate:literal, $direct:literal;)*) => {$(
        #[test]
        fn $name() {
            power_cuts($fs, $substrate, $direct, false, false);
        }
    )*};
}

/// Large records handed over as `Vec`s, on ext4: the owned payloads and
/// the two writes in flight under a power cut, and their control.
#[test]
fn ext4_io_uring_buffered_large_owned_records() {
    power_cuts("ext4", "io_uring", false, false, true);
}

#[test]
fn ext4_blocking_buffered_large_owned_records() {
    power_cuts("ext4", "blocking", false, false, true);
}

#[test]
fn negative_control_ext4_blocking_large_owned_records() {
    let Some((acked, lost)) = power_cuts("ext4", "blocking", false, true, true) else { return };
    assert!(!lost.is_empty(), "the large-record control acknowledged {acked} written records and lost none");
}

power_cut_tests! {
    ext4_io_uring_buffered: "ext4", "io_uring", false;
    ext4_io_uring_direct: "ext4", "io_uring", true;
    ext4_blocking_buffered: "ext4", "blocking", false;
    ext4_blocking_direct: "ext4", "blocking", true;
    xfs_io_uring_buffered: "xfs", "io_uring", false;
    xfs_io_uring_direct: "xfs", "io_uring", true;
    xfs_blocking_buffered: "xfs", "blocking", false;
    xfs_blocking_direct: "xfs", "blocking", true;
}

/// Acknowledging after a plain append must lose records to a power cut;
/// if it did not, the cut would not be cutting anything. On each
/// filesystem and each substrate: a control that was skipped proves
/// nothing, and under `TIDELOG_REQUIRE` a skip fails.
fn negative_control(fs: &str, substrate: &str) {
    let Some((acked, lost)) = power_cuts(fs, substrate, false, true, false) else { return };
    assert!(
        !lost.is_empty(),
        "{fs} {substrate}: the control acknowledged {acked} written-not-durable records and lost none: the power \
         cut did not cut"
    );
}

#[test]
fn negative_control_ext4_io_uring() {
    negative_control("ext4", "io_uring");
}

#[test]
fn negative_control_ext4_blocking() {
    negative_control("ext4", "blocking");
}

#[test]
fn negative_control_xfs_io_uring() {
    negative_control("xfs", "io_uring");
}

#[test]
fn negative_control_xfs_blocking() {
    negative_control("xfs", "blocking");
}
