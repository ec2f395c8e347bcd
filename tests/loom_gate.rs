//! A `loom` model of the group-commit gate: the real `src/gate/`, compiled
//! over loom's mutex, condvar and atomics (`src/gate/prims.rs`), explored
//! over every interleaving of a writer (the leader of every round), followers
//! that wait blocking or as futures, followers that give up, failures and
//! close. Properties: no lost wake-up (loom reports a waiter that is never
//! woken as a deadlock), and nobody is told durable before a completed round
//! covers their LSN.
//!
//! ```sh
//! RUSTFLAGS="--cfg tidelog_loom" cargo test --release --test loom_gate
//! ```
#![cfg(tidelog_loom)]
#![allow(dead_code, unreachable_pub)]

pub(crate) use tidelog::{Error, Lsn, Result};

/// The gate's own source; its primitives (`src/gate/prims.rs`) are loom's
/// under `--cfg tidelog_loom`.
#[path = "../src/gate/mod.rs"]
mod gate;

use std::sync::atomic::Ordering::SeqCst;

use futures::FutureExt;
use gate::{Gate, Level, Wait};
use loom::sync::atomic::AtomicUsize;
use loom::sync::Arc;
use loom::thread;

/// Explores every interleaving of `f` (preemption bound 3) and prints how
/// many executions that took.
fn explore(name: &str, f: impl Fn() + Sync + Send + 'static) {
    static EXECUTIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let before = EXECUTIONS.load(SeqCst);
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(move || {
        EXECUTIONS.fetch_add(1, SeqCst);
        f()
    });
    eprintln!("{name}: {} interleavings explored", EXECUTIONS.load(SeqCst) - before);
}

/// The writer: completes writes up to `written`, then leads rounds until
/// `followers` have finished. `fail_first_round` poisons instead of
/// completing the first round (a failed fdatasync); its late completion must
/// make nothing durable.
fn writer(gate: Arc<Gate>, done: Arc<AtomicUsize>, writes: &'static [u64], followers: usize, fail_first_round: bool) {
    for &end in writes {
        gate.advance_written(end);
    }
    let mut failed = false;
    while done.load(SeqCst) < followers {
        if let Some(covers) = gate.begin_sync(false) {
            if fail_first_round && !failed {
                failed = true;
                let eio = std::io::Error::from_raw_os_error(libc::EIO);
                gate.fail(Error::Poisoned(std::sync::Arc::new(Error::Io {
                    op: "fdatasync",
                    path: "/model".into(),
                    lsn: None,
                    source: std::sync::Arc::new(eio),
                })));
            }
            gate.complete_sync(covers);
        }
        thread::yield_now();
    }
}

/// A follower's verdict: told durable only when the durable frontier covers
/// it (checked right after the wait returns; the frontier never moves back).
fn check_durable(gate: &Gate, lsn: u64, got: Result<Lsn>) -> bool {
    match got {
        Ok(at) => {
            assert_eq!(at, Lsn::new(lsn));
            assert!(gate.durable_lsn() >= Lsn::new(lsn), "told durable at {lsn} before a round covered it");
            true
        }
        Err(_) => false,
    }
}

/// How a follower waits.
#[derive(Clone, Copy)]
enum Waiter {
    /// Parked on the gate's condvar (`Journal::append` from a plain thread).
    Blocking,
    /// A `Wait` future (`append_durable_async`).
    Future,
}

/// Spawns one follower per (LSN, waiter): each waits for its LSN to be
/// durable, checks the verdict with [`check_durable`] (a failure must be
/// `Poisoned`, and is allowed only when `may_fail`), and counts itself done.
fn spawn_followers(
    gate: &Arc<Gate>,
    done: &Arc<AtomicUsize>,
    followers: &[(u64, Waiter)],
    may_fail: bool,
) -> Vec<thread::JoinHandle<()>> {
    followers
        .iter()
        .map(|&(lsn, waiter)| {
            let (gate, done) = (gate.clone(), done.clone());
            thread::spawn(move || {
                let got = match waiter {
                    Waiter::Blocking => gate.wait_blocking(Level::Durable, lsn),
                    Waiter::Future => loom::future::block_on(Wait::new(&gate, Level::Durable, lsn)),
                };
                if let Err(e) = &got {
                    assert!(may_fail && e.is_poisoned(), "{e}");
                }
                check_durable(&gate, lsn, got);
                done.fetch_add(1, SeqCst);
            })
        })
        .collect()
}

#[test]
fn blocking_followers_are_woken_once_covered() {
    explore("blocking_followers_are_woken_once_covered", || {
        let gate = Arc::new(Gate::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let followers = spawn_followers(&gate, &done, &[(8, Waiter::Blocking), (16, Waiter::Blocking)], false);
        writer(gate, done, &[8, 16], 2, false);
        for f in followers {
            f.join().unwrap();
        }
    });
}

#[test]
fn async_followers_arriving_during_a_round_and_dropped_waiters() {
    explore("async_followers_arriving_during_a_round_and_dropped_waiters", || {
        let gate = Arc::new(Gate::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let follower = {
            let (gate, done) = (gate.clone(), done.clone());
            thread::spawn(move || {
                // A waiter that gives up after one poll leaves nothing behind.
                assert!(Wait::new(&gate, Level::Durable, 16).now_or_never().is_none_or(|r| r.is_ok()));
                let got = loom::future::block_on(Wait::new(&gate, Level::Durable, 16));
                assert!(check_durable(&gate, 16, got));
                done.fetch_add(1, SeqCst);
            })
        };
        let written = {
            let gate = gate.clone();
            thread::spawn(move || {
                let got = loom::future::block_on(Wait::new(&gate, Level::Written, 8));
                assert_eq!(got.unwrap(), Lsn::new(8));
                assert!(gate.written_lsn() >= Lsn::new(8));
            })
        };
        writer(gate, done, &[8, 16], 1, false);
        follower.join().unwrap();
        written.join().unwrap();
    });
}

#[test]
fn a_failed_round_tells_no_follower_durable() {
    explore("a_failed_round_tells_no_follower_durable", || {
        let gate = Arc::new(Gate::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let followers = spawn_followers(&gate, &done, &[(8, Waiter::Blocking), (16, Waiter::Future)], true);
        writer(gate.clone(), done, &[8, 16], 2, true);
        for f in followers {
            f.join().unwrap();
        }
        assert!(gate.failure().is_some());
        assert_eq!(gate.durable_lsn(), Lsn::ZERO, "the failed round covered nothing, and nothing ran after it");
    });
}

#[test]
fn close_wakes_every_waiter() {
    explore("close_wakes_every_waiter", || {
        let gate = Arc::new(Gate::new(0));
        let blocking = {
            let gate = gate.clone();
            thread::spawn(move || gate.wait_blocking(Level::Durable, 8))
        };
        let future = {
            let gate = gate.clone();
            thread::spawn(move || loom::future::block_on(Wait::new(&gate, Level::Written, 8)))
        };
        gate.fail(Error::Closed);
        assert!(matches!(blocking.join().unwrap(), Err(Error::Closed)));
        assert!(matches!(future.join().unwrap(), Err(Error::Closed)));
    });
}
