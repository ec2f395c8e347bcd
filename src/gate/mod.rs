//! The group-commit gate: frontiers, sync rounds and the waiters on them.
//!
//! One gate serves both substrates. It holds the written frontier (advanced
//! only over *completed* writes), the durable frontier (advanced only to what
//! a *successful* sync covered), the sync rounds in flight and what each
//! covers, and the waiters ordered by LSN.
//!
//! The leader of every sync round is the journal's writer task: a caller that
//! needs durability registers its LSN and wakes the writer, which submits one
//! sync for the written frontier as it stands; callers arriving meanwhile
//! follow and are woken in one batch when a covering round completes. Because
//! followers never do I/O themselves, a dropped future can never abandon the
//! leader's role (okaywal's hang), and nobody polls (fsys's `yield_now` loop).
//!
//! Several rounds may be in flight at once (the writer bounds how many):
//! each begins only over writes that completed before it, so whichever
//! completes first makes exactly what it covers durable, and the durable
//! frontier is the highest frontier any successful round covered.
//!
//! Errors are final: `fail` records the first error and wakes every waiter;
//! each whose LSN the frontier it waits for already covers gets `Ok`, every
//! other gets the error, and so does every later wait beyond the frontier.
//! Wakers are collected under the lock and woken after it is released.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

mod prims;

use crate::{Error, Lsn, Result};
use prims::{AtomicU64, AtomicUsize, Condvar, Mutex, MutexGuard};

/// Which frontier a waiter waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Written,
    Durable,
}

#[derive(Debug)]
struct State {
    written: u64,
    durable: u64,
    /// What each sync round in flight will make durable (a handful at most).
    rounds: Vec<u64>,
    /// The highest LSN anyone has asked to be durable.
    sync_wanted: u64,
    /// First fatal error (`Poisoned`) or `Closed`; final.
    failed: Option<Error>,
    written_waiters: BTreeMap<(u64, u64), Waker>,
    durable_waiters: BTreeMap<(u64, u64), Waker>,
    next_waiter_id: u64,
    blocking_waiters: usize,
}

/// The gate. See the module docs.
#[derive(Debug)]
pub(crate) struct Gate {
    state: Mutex<State>,
    parked: Condvar,
    written: AtomicU64,
    durable: AtomicU64,
    /// Wakes the writer (the leader of every round).
    pub(crate) writer_wake: Notify,
    /// Tells passive observers (subscribers) that a frontier moved or the
    /// gate failed. They register no durability need: they never cause a
    /// sync, they follow the ones that happen.
    pub(crate) moved: Notify,
    observers: AtomicUsize,
}

impl Gate {
    pub(crate) fn new(recovered_end: u64) -> Gate {
        Gate {
            state: Mutex::new(State {
                written: recovered_end,
                durable: recovered_end,
                rounds: Vec::new(),
                sync_wanted: recovered_end,
                failed: None,
                written_waiters: BTreeMap::new(),
                durable_waiters: BTreeMap::new(),
                next_waiter_id: 0,
                blocking_waiters: 0,
            }),
            parked: Condvar::new(),
            written: AtomicU64::new(recovered_end),
            durable: AtomicU64::new(recovered_end),
            writer_wake: Notify::new(),
            moved: Notify::new(),
            observers: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the frontiers torn:
        // every critical section writes whole values. Keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn written_lsn(&self) -> Lsn {
        Lsn::new(self.written.load(Ordering::Acquire))
    }

    pub(crate) fn durable_lsn(&self) -> Lsn {
        Lsn::new(self.durable.load(Ordering::Acquire))
    }

    /// The first fatal error, if any.
    pub(crate) fn failure(&self) -> Option<Error> {
        self.lock().failed.clone()
    }

    /// One poll of a wait; `id` keeps the registration across polls.
    pub(crate) fn poll_wait(
        &self,
        cx: &mut Context<'_>,
        level: Level,
        lsn: u64,
        id: &mut Option<u64>,
    ) -> Poll<Result<Lsn>> {
        // Without the lock when the frontier is already there (a woken
        // waiter's usual case). A registered waiter's entry is gone then:
        // the frontiers' atomics are stored only under the lock, in the
        // critical section that also takes every waiter they pass
        // (`advance_written`, `complete_sync`), and the registration saw
        // the frontier below `lsn` under the same lock, so the move came
        // after it.
        let frontier = match level {
            Level::Written => &self.written,
            Level::Durable => &self.durable,
        };
        if frontier.load(Ordering::Acquire) >= lsn {
            *id = None;
            return Poll::Ready(Ok(Lsn::new(lsn)));
        }
        let mut st = self.lock();
        if let Some(outcome) = Self::outcome(&st, level, lsn) {
            if let Some(key) = id.take() {
                Self::waiters(&mut st, level).remove(&(lsn, key));
            }
            return Poll::Ready(outcome);
        }
        let key = *id.get_or_insert_with(|| {
            st.next_waiter_id += 1;
            st.next_waiter_id
        });
        let slot = Self::waiters(&mut st, level).entry((lsn, key));
        match slot {
            std::collections::btree_map::Entry::Occupied(mut w) => {
                if !w.get().will_wake(cx.waker()) {
                    w.insert(cx.waker().clone());
                }
            }
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(cx.waker().clone());
            }
        }
        let wake_writer = Self::request(&mut st, level, lsn);
        drop(st);
        if wake_writer {
            self.writer_wake.notify_one();
        }
        Poll::Pending
    }

    /// Forgets a registration of a future dropped before it completed.
    pub(crate) fn cancel_wait(&self, level: Level, lsn: u64, id: u64) {
        Self::waiters(&mut self.lock(), level).remove(&(lsn, id));
    }

    /// Parks the calling thread until `lsn` reaches `level`, or failure.
    pub(crate) fn wait_blocking(&self, level: Level, lsn: u64) -> Result<Lsn> {
        let mut st = self.lock();
        let mut asked = false;
        loop {
            if let Some(outcome) = Self::outcome(&st, level, lsn) {
                return outcome;
            }
            if !asked {
                asked = true;
                if Self::request(&mut st, level, lsn) {
                    self.writer_wake.notify_one();
                }
            }
            st.blocking_waiters += 1;
            st = self.parked.wait(st).unwrap_or_else(|p| p.into_inner());
            st.blocking_waiters -= 1;
        }
    }

    /// A waiter's answer, if it has one. The frontier is checked first: a
    /// waiter whose LSN is covered gets `Ok` whatever came after (a close,
    /// or a failure of a later round), so nobody re-appends a record that is
    /// already durable; only waiters the frontier never reached get the
    /// failure.
    fn outcome(st: &State, level: Level, lsn: u64) -> Option<Result<Lsn>> {
        let frontier = match level {
            Level::Written => st.written,
            Level::Durable => st.durable,
        };
        if frontier >= lsn {
            return Some(Ok(Lsn::new(lsn)));
        }
        st.failed.as_ref().map(|err| Err(err.clone()))
    }

    fn waiters(st: &mut State, level: Level) -> &mut BTreeMap<(u64, u64), Waker> {
        match level {
            Level::Written => &mut st.written_waiters,
            Level::Durable => &mut st.durable_waiters,
        }
    }

    /// Records a need for durability; true if the writer must hear of it:
    /// only when the need was fully met before (nothing pending beyond the
    /// durable frontier or the round in flight). A writer that already
    /// knows of unmet needs reads `sync_wanted` afresh when it begins the
    /// next round, so one wake per round suffices.
    fn request(st: &mut State, level: Level, lsn: u64) -> bool {
        if level != Level::Durable || lsn <= st.sync_wanted {
            return false;
        }
        let met = Self::met(st);
        let writer_knows = st.sync_wanted > met;
        st.sync_wanted = lsn;
        !writer_knows
    }

    /// What is durable or will be once the rounds in flight complete.
    fn met(st: &State) -> u64 {
        st.rounds.iter().copied().fold(st.durable, u64::max)
    }

    /// Nobody waits for a sync (everything wanted is durable) and the gate
    /// has not failed: the writer may lend its round (`writer/lead.rs`).
    pub(crate) fn nothing_wanted(&self) -> bool {
        let st = self.lock();
        st.failed.is_none() && st.sync_wanted <= st.durable
    }

    /// Records a need for durability that the caller meets itself (a
    /// blocking caller leading its own round): nobody is woken.
    pub(crate) fn want_sync(&self, lsn: u64) {
        let mut st = self.lock();
        st.sync_wanted = st.sync_wanted.max(lsn);
    }

    /// The highest LSN someone wants durable.
    pub(crate) fn sync_wanted(&self) -> u64 {
        self.lock().sync_wanted
    }

    /// Starts a sync round covering the written frontier as it stands now.
    /// Returns what it covers, or `None` when nothing needs syncing: all
    /// that is written is durable or covered by a round in flight, or (not
    /// `force`d) nobody wants more than that. The caller bounds how many
    /// rounds run at once.
    pub(crate) fn begin_sync(&self, force: bool) -> Option<u64> {
        let mut st = self.lock();
        let met = Self::met(&st);
        if st.failed.is_some() || st.written <= met || (!force && st.sync_wanted <= met) {
            return None;
        }
        let covers = st.written;
        st.rounds.push(covers);
        Some(covers)
    }

    /// Starts a round that covers a write about to be submitted linked
    /// before its sync; `end` is that write's end.
    pub(crate) fn begin_linked_sync(&self, end: u64) -> bool {
        let mut st = self.lock();
        if st.failed.is_some() || st.sync_wanted <= Self::met(&st) {
            return false;
        }
        st.rounds.push(end);
        true
    }

    fn end_round(st: &mut State, covers: u64) {
        if let Some(at) = st.rounds.iter().position(|&c| c == covers) {
            st.rounds.swap_remove(at);
        }
    }

    /// The round begun for `covers` did not run (e.g. a linked sync
    /// cancelled by a short write). Nothing becomes durable.
    pub(crate) fn abandon_sync(&self, covers: u64) {
        Self::end_round(&mut self.lock(), covers);
    }

    /// Completed writes now reach `lsn`.
    pub(crate) fn advance_written(&self, lsn: u64) {
        let mut st = self.lock();
        debug_assert!(lsn >= st.written, "written frontier moves forward only");
        st.written = lsn;
        self.written.store(lsn, Ordering::Release);
        let woken = split_ready(&mut st.written_waiters, lsn);
        self.release(st, woken);
    }

    /// The round begun for `covers` succeeded: everything below `covers` is
    /// durable (rounds may complete in any order). Returns how many tasks
    /// waiting for durability it woke (threads parked in the blocking API
    /// are not counted).
    pub(crate) fn complete_sync(&self, covers: u64) -> usize {
        let mut st = self.lock();
        debug_assert!(covers <= st.written, "a sync never covers an unfinished write");
        Self::end_round(&mut st, covers);
        if st.failed.is_some() {
            return 0; // poisoned meanwhile: nobody may be told durable.
        }
        if covers > st.durable {
            st.durable = covers;
            self.durable.store(covers, Ordering::Release);
        }
        let woken = split_ready(&mut st.durable_waiters, covers);
        let tasks = woken.len();
        self.release(st, woken);
        tasks
    }

    /// Records the first fatal error (later ones are dropped) and wakes
    /// everyone with it. `Closed` is recorded as is; I/O errors as
    /// `Poisoned`.
    pub(crate) fn fail(&self, err: Error) {
        let mut st = self.lock();
        st.rounds.clear();
        if st.failed.is_none() {
            let err = match err {
                Error::Closed | Error::Poisoned(_) => err,
                other => Error::Poisoned(std::sync::Arc::new(other)),
            };
            st.failed = Some(err);
        }
        let mut woken: Vec<Waker> = std::mem::take(&mut st.written_waiters).into_values().collect();
        woken.extend(std::mem::take(&mut st.durable_waiters).into_values());
        self.release(st, woken);
    }

    /// Counts a passive observer in or out (`moved` is signalled only while
    /// there are some).
    pub(crate) fn observe(&self, joining: bool) {
        if joining {
            self.observers.fetch_add(1, Ordering::AcqRel);
        } else {
            self.observers.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn release(&self, st: MutexGuard<'_, State>, woken: Vec<Waker>) {
        let parked = st.blocking_waiters > 0;
        drop(st);
        if self.observers.load(Ordering::Acquire) > 0 {
            self.moved.notify_waiters();
        }
        if parked {
            self.parked.notify_all();
        }
        for waker in woken {
            waker.wake();
        }
    }
}

fn split_ready(waiters: &mut BTreeMap<(u64, u64), Waker>, frontier: u64) -> Vec<Waker> {
    let later = waiters.split_off(&(frontier + 1, 0));
    std::mem::replace(waiters, later).into_values().collect()
}

/// A future that resolves when `lsn` reaches `level` (or the gate fails).
#[derive(Debug)]
pub(crate) struct Wait<'a> {
    gate: &'a Gate,
    level: Level,
    lsn: u64,
    id: Option<u64>,
}

impl<'a> Wait<'a> {
    pub(crate) fn new(gate: &'a Gate, level: Level, lsn: u64) -> Wait<'a> {
        Wait { gate, level, lsn, id: None }
    }
}

impl std::future::Future for Wait<'_> {
    type Output = Result<Lsn>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Lsn>> {
        let this = &mut *self;
        this.gate.poll_wait(cx, this.level, this.lsn, &mut this.id)
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.gate.cancel_wait(self.level, self.lsn, id);
        }
    }
}

#[cfg(all(test, not(tidelog_loom)))]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn durable_waiters_wake_only_when_covered() {
        let gate = Gate::new(0);
        let mut a = Box::pin(Wait::new(&gate, Level::Durable, 100));
        let mut b = Box::pin(Wait::new(&gate, Level::Durable, 200));
        assert!(a.as_mut().now_or_never().is_none());
        assert!(b.as_mut().now_or_never().is_none());
        assert_eq!(gate.sync_wanted(), 200);
        gate.advance_written(150);
        assert_eq!(gate.begin_sync(false), Some(150));
        assert_eq!(gate.begin_sync(false), None, "everything written is covered by the round in flight");
        gate.complete_sync(150);
        assert_eq!(a.as_mut().now_or_never().map(|r| r.ok()), Some(Some(Lsn::new(100))));
        assert!(b.as_mut().now_or_never().is_none(), "200 was not covered by the round at 150");
        assert_eq!(gate.durable_lsn(), Lsn::new(150));
        gate.advance_written(300);
        assert_eq!(gate.begin_sync(false), Some(300));
        gate.complete_sync(300);
        assert!(b.as_mut().now_or_never().is_some());
    }

    #[test]
    fn rounds_overlap_and_complete_in_any_order() {
        let gate = Gate::new(0);
        let mut a = Box::pin(Wait::new(&gate, Level::Durable, 100));
        let mut b = Box::pin(Wait::new(&gate, Level::Durable, 250));
        assert!(a.as_mut().now_or_never().is_none());
        gate.advance_written(150);
        assert_eq!(gate.begin_sync(false), Some(150));
        gate.advance_written(300); // a write completes while the first round runs
        assert_eq!(gate.begin_sync(false), None, "nobody wants more than the round in flight covers");
        assert!(b.as_mut().now_or_never().is_none());
        assert_eq!(gate.begin_sync(false), Some(300), "a second round overlaps the first");
        assert_eq!(gate.begin_sync(true), None, "all that is written is covered");
        // The later round completes first: it covers everything below 300.
        gate.complete_sync(300);
        assert_eq!(gate.durable_lsn(), Lsn::new(300));
        assert!(a.as_mut().now_or_never().is_some() && b.as_mut().now_or_never().is_some());
        gate.complete_sync(150);
        assert_eq!(gate.durable_lsn(), Lsn::new(300), "the durable frontier never moves back");
        // An abandoned round leaves its range to the next one.
        let mut c = Box::pin(Wait::new(&gate, Level::Durable, 400));
        assert!(c.as_mut().now_or_never().is_none());
        assert!(gate.begin_linked_sync(400));
        assert!(!gate.begin_linked_sync(400), "400 is covered by the linked round");
        gate.abandon_sync(400);
        gate.advance_written(400);
        assert_eq!(gate.begin_sync(false), Some(400));
        gate.complete_sync(400);
        assert!(c.as_mut().now_or_never().is_some());
        assert!(gate.lock().rounds.is_empty());
    }

    #[test]
    fn failure_wakes_everyone_with_the_first_error_and_is_final() {
        let gate = Gate::new(0);
        let mut w = Box::pin(Wait::new(&gate, Level::Durable, 10));
        assert!(w.as_mut().now_or_never().is_none());
        gate.advance_written(10);
        assert_eq!(gate.begin_sync(false), Some(10));
        gate.fail(Error::io("fdatasync", "/x", std::io::Error::from_raw_os_error(libc::EIO)));
        gate.fail(Error::Closed);
        let got = w.as_mut().now_or_never().expect("woken");
        assert!(matches!(got, Err(Error::Poisoned(_))), "{got:?}");
        // A late successful completion must not make anything durable.
        gate.complete_sync(10);
        assert_eq!(gate.durable_lsn(), Lsn::ZERO);
        assert!(gate.wait_blocking(Level::Written, 11).unwrap_err().is_poisoned());
        // What was written before the failure stays answered truthfully.
        assert_eq!(gate.wait_blocking(Level::Written, 10).unwrap(), Lsn::new(10));
    }

    #[test]
    fn a_woken_waiter_answers_from_the_frontier_without_the_lock() {
        let gate = Gate::new(0);
        let mut durable = Box::pin(Wait::new(&gate, Level::Durable, 10));
        let mut written = Box::pin(Wait::new(&gate, Level::Written, 10));
        assert!(durable.as_mut().now_or_never().is_none());
        assert!(written.as_mut().now_or_never().is_none());
        gate.advance_written(10);
        assert_eq!(gate.begin_sync(false), Some(10));
        gate.complete_sync(10);
        assert!(gate.lock().durable_waiters.is_empty(), "the move took the registrations");
        // Polled while the lock is held elsewhere, both answer: a poll
        // that took the lock would wait here until the timeout.
        let held = gate.lock();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let got = (durable.as_mut().now_or_never(), written.as_mut().now_or_never());
                let _ = tx.send(got);
            });
            let got = rx.recv_timeout(std::time::Duration::from_secs(10));
            drop(held);
            let (d, w) = got.expect("a woken waiter's poll waited for the gate's lock");
            assert_eq!(d.map(|r| r.ok()), Some(Some(Lsn::new(10))));
            assert_eq!(w.map(|r| r.ok()), Some(Some(Lsn::new(10))));
        });
        drop((durable, written));
        let st = gate.lock();
        assert!(st.durable_waiters.is_empty() && st.written_waiters.is_empty());
    }

    #[test]
    fn dropped_waiters_leave_no_registration() {
        let gate = Gate::new(0);
        {
            let mut w = Box::pin(Wait::new(&gate, Level::Written, 5));
            assert!(w.as_mut().now_or_never().is_none());
        }
        assert!(gate.lock().written_waiters.is_empty());
    }
}
