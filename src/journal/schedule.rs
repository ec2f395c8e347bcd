//! When the writer starts a sync round: every rule in one place, with no
//! I/O, so that each is unit-tested on its own.
//!
//! - **Lanes.** At most `lanes` rounds run at once, each on a sync lane of
//!   the active segment (its own open file description). The Blocking
//!   substrate overlaps two; the ring keeps one (overlapping fsyncs on the
//!   ring measured slower, docs/benchmarks.md).
//! - **Stagger.** A round that would overlap another starts no sooner than
//!   half the average sync latency after the latest one began, so that each
//!   carries a share of the arrivals rather than a record or two.
//! - **Window.** With a group-commit window, a round someone wants starts
//!   that long after the need first appeared, so that followers can join.
//!   A forced round (the `Interval` policy's tick, the final sync of a
//!   close) does not wait for it.
//! - **Seal.** While a rollover's seal makes the new segment durable, no
//!   round starts (the new segment's base must not become durable before
//!   its header and name) and no further rollover begins.
//! - **Linked.** A write travels linked to its sync (one round trip) when a
//!   sync is wanted now and nothing else would be held up: no round in
//!   flight, no seal, nothing else waiting to be written, no window, and
//!   the last round did not end with records already waiting behind it
//!   (unless the writer regrouped since) — under load the write goes
//!   alone, so the next write can start while its sync runs. With
//!   `dsync_writes` a linked write is one `RWF_DSYNC` write (when
//!   everything before it is durable), so there is no separate sync to
//!   overlap: every write someone waits on goes linked, loaded or not.
//! - **Regroup.** When a round completes and no other is in flight, the
//!   tasks it released are likely to append again at once (closed-loop
//!   writers, a Raft group awaiting each flush). If no more records were
//!   appended behind the round than it released, and it woke a task while
//!   another task or a record behind it is in play, the writer yields once
//!   before its next round, so that the released tasks' appends join what
//!   waits in one write that carries the round (linked, although records
//!   waited behind the last round). Without it, appenders split into
//!   cohorts that alternate between two rounds for good (each round starts
//!   at once for what came in during the last), and a device flush serves
//!   half of them; with it, the cohorts merge (docs/benchmarks.md,
//!   "Regrouping after a round"). A lone task (one waiter, nothing behind)
//!   never yields, whatever its batches: nobody else is coming. Threads
//!   parked in the blocking API are not counted: a yield of the writer's
//!   worker does not wait for them. The writer yields until the appends
//!   count has grown by as many records as the round woke tasks (each
//!   woken task back, counted in records), at most 16 times: one yield runs
//!   what the writer's worker has queued (or 61 tasks, tokio's event
//!   interval), and a task woken on the other worker may need a few more.
//!   A task that does not come back costs the next round those yields.

use std::time::{Duration, Instant};

/// See the module docs.
#[derive(Debug)]
pub(super) struct SyncSchedule {
    /// How many rounds may overlap.
    lanes: usize,
    window: Duration,
    /// Rounds in flight: (lane, when it began).
    rounds: Vec<(usize, Instant)>,
    sealing: bool,
    /// The last round ended with more records already waiting behind it.
    busy: bool,
    /// The `Interval` policy's timer has fired since the last round began.
    interval_due: bool,
    /// When a wanted round may start (the group-commit window).
    window_until: Option<Instant>,
    /// When a round that would overlap another may start (the stagger).
    stagger_until: Option<Instant>,
    /// Moving average of sync latency.
    sync_avg: Duration,
    /// Writes that carry their sync are `RWF_DSYNC` writes.
    dsync: bool,
    /// The writer lets the appenders a round released run before it
    /// starts the next one (the regroup rule).
    regroup: bool,
}

impl SyncSchedule {
    pub(super) fn new(lanes: usize, window: Duration, dsync: bool) -> SyncSchedule {
        assert!(lanes >= 1, "a journal syncs on at least one lane");
        SyncSchedule {
            lanes,
            window,
            rounds: Vec::with_capacity(lanes),
            sealing: false,
            busy: false,
            interval_due: false,
            window_until: None,
            stagger_until: None,
            sync_avg: Duration::ZERO,
            dsync,
            regroup: false,
        }
    }

    /// How many rounds may overlap.
    pub(super) fn lanes(&self) -> usize {
        self.lanes
    }

    /// The lane a new round may run on now, given that the active segment
    /// has `file_lanes` of them. `wanted`: someone waits for durability
    /// beyond what is durable or covered (only then does the group-commit
    /// window matter); `forced`: the round must run regardless of who waits.
    /// `None` means not now; `wake_at` says when to ask again, if waiting
    /// is the reason.
    pub(super) fn lane_for_round(
        &mut self,
        now: Instant,
        file_lanes: usize,
        wanted: bool,
        forced: bool,
    ) -> Option<usize> {
        if self.sealing {
            return None;
        }
        let lanes = file_lanes.min(self.lanes);
        let lane = (0..lanes).find(|&l| self.rounds.iter().all(|&(r, _)| r != l))?;
        if !self.staggered(now) {
            return None;
        }
        if forced || self.window_open(now, wanted) {
            return Some(lane);
        }
        None
    }

    fn staggered(&mut self, now: Instant) -> bool {
        self.stagger_until = None;
        let Some(last) = self.rounds.iter().map(|&(_, started)| started).max() else { return true };
        let due = last + self.sync_avg / 2;
        if now >= due {
            return true;
        }
        self.stagger_until = Some(due);
        false
    }

    fn window_open(&mut self, now: Instant, wanted: bool) -> bool {
        if self.window.is_zero() {
            return true;
        }
        if !wanted {
            self.window_until = None;
            return false;
        }
        let until = *self.window_until.get_or_insert(now + self.window);
        if now < until {
            return false;
        }
        self.window_until = None;
        true
    }

    /// Whether a write about to be submitted may carry its sync (if one is
    /// wanted), given whether more chunks wait behind it.
    pub(super) fn may_link(&self, more_queued: bool) -> bool {
        let quiet = self.dsync || (!self.busy && !more_queued);
        self.rounds.is_empty() && !self.sealing && self.window.is_zero() && quiet
    }

    /// Whether the writer may switch segments now.
    pub(super) fn may_roll(&self) -> bool {
        self.rounds.is_empty() && !self.sealing
    }

    pub(super) fn round_started(&mut self, lane: usize, now: Instant) {
        debug_assert!(lane < self.lanes && self.rounds.iter().all(|&(l, _)| l != lane), "lane {lane} is free");
        self.rounds.push((lane, now));
        self.interval_due = false;
    }

    /// A round that did not run (a linked sync whose write came up short).
    pub(super) fn round_abandoned(&mut self, lane: usize) {
        self.rounds.retain(|&(l, _)| l != lane);
    }

    /// A round completed after `took`; `more_waiting`: records were
    /// already waiting to be written or synced behind it.
    pub(super) fn round_finished(&mut self, lane: usize, took: Duration, more_waiting: bool) {
        self.rounds.retain(|&(l, _)| l != lane);
        self.sync_avg = (self.sync_avg * 7 + took) / 8;
        self.busy = more_waiting;
    }

    /// The round that finished last woke `tasks` tasks and made `released`
    /// records durable; `behind` more records were appended behind it
    /// (written, queued or still in the log buffer). See the regroup rule in
    /// the module docs.
    pub(super) fn round_released(&mut self, tasks: usize, released: u64, behind: u64) {
        self.regroup = self.rounds.is_empty()
            && self.window.is_zero()
            && tasks >= 1
            && behind <= released
            && (tasks >= 2 || behind > 0);
    }

    /// Whether the writer should let the tasks a round released run before
    /// it starts the next round; true once per such round.
    pub(super) fn take_regroup(&mut self) -> bool {
        let regroup = std::mem::take(&mut self.regroup);
        if regroup {
            // What waited behind the round and what the released tasks
            // append now go in one write that carries the next round.
            self.busy = false;
        }
        regroup
    }

    pub(super) fn seal_started(&mut self) {
        debug_assert!(self.may_roll());
        self.sealing = true;
    }

    pub(super) fn seal_finished(&mut self) {
        self.sealing = false;
    }

    /// The `Interval` policy's timer fired.
    pub(super) fn interval_ticked(&mut self) {
        self.interval_due = true;
    }

    /// Whether the `Interval` policy wants a round now.
    pub(super) fn interval_due(&self) -> bool {
        self.interval_due
    }

    /// When to look again because of a window or a stagger, if either holds
    /// a round back.
    pub(super) fn wake_at(&self) -> Option<Instant> {
        self.window_until.into_iter().chain(self.stagger_until).min()
    }

    #[cfg(test)]
    fn rounds_in_flight(&self) -> usize {
        self.rounds.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rounds_overlap_up_to_the_lanes_and_the_file_allows() {
        let t0 = Instant::now();
        let mut s = SyncSchedule::new(2, Duration::ZERO, false);
        assert_eq!(s.lane_for_round(t0, 2, true, false), Some(0));
        s.round_started(0, t0);
        assert_eq!(s.lane_for_round(t0, 2, true, false), Some(1), "no average yet: no stagger");
        s.round_started(1, t0);
        assert_eq!(s.lane_for_round(t0, 2, true, false), None, "both lanes busy");
        s.round_finished(0, ms(1), false);
        assert_eq!(s.lane_for_round(t0 + ms(1), 1, true, false), Some(0), "lane 0 is free again");
        s.round_finished(1, ms(1), false);
        assert_eq!(s.lane_for_round(t0 + ms(1), 1, true, false), Some(0), "a file with one lane offers lane 0 only");
    }

    #[test]
    fn an_overlapping_round_waits_half_the_average_sync() {
        let t0 = Instant::now();
        let mut s = SyncSchedule::new(2, Duration::ZERO, false);
        for _ in 0..50 {
            s.round_started(0, t0);
            s.round_finished(0, ms(8), false);
        }
        s.round_started(0, t0);
        assert_eq!(s.lane_for_round(t0 + ms(1), 2, true, false), None);
        let wake = s.wake_at().expect("the stagger says when");
        assert!(wake > t0 + ms(3) && wake <= t0 + ms(4), "{:?}", wake - t0);
        assert_eq!(s.lane_for_round(t0 + ms(4), 2, true, false), Some(1));
    }

    #[test]
    fn a_window_holds_a_wanted_round_and_a_forced_one_goes_at_once() {
        let t0 = Instant::now();
        let mut s = SyncSchedule::new(1, ms(2), false);
        assert_eq!(s.lane_for_round(t0, 1, false, false), None, "nobody wants a sync");
        assert_eq!(s.wake_at(), None);
        assert_eq!(s.lane_for_round(t0, 1, true, false), None, "the window opens when first wanted");
        assert_eq!(s.wake_at(), Some(t0 + ms(2)));
        assert_eq!(s.lane_for_round(t0 + ms(1), 1, true, false), None);
        assert_eq!(s.lane_for_round(t0 + ms(2), 1, true, false), Some(0));
        assert_eq!(s.lane_for_round(t0 + ms(2), 1, false, true), Some(0), "forced: no window");
    }

    #[test]
    fn a_seal_holds_rounds_and_rollovers() {
        let t0 = Instant::now();
        let mut s = SyncSchedule::new(1, Duration::ZERO, false);
        assert!(s.may_roll());
        s.seal_started();
        assert_eq!(s.lane_for_round(t0, 1, true, true), None, "not even forced");
        assert!(!s.may_roll());
        assert!(!s.may_link(false));
        s.seal_finished();
        assert_eq!(s.lane_for_round(t0, 1, true, false), Some(0));
        s.round_started(0, t0);
        assert!(!s.may_roll(), "a round in flight");
    }

    #[test]
    fn writes_link_their_sync_only_when_nothing_would_be_held_up() {
        let t0 = Instant::now();
        let mut s = SyncSchedule::new(1, Duration::ZERO, false);
        assert!(s.may_link(false));
        assert!(!s.may_link(true), "more chunks wait behind the write");
        s.round_started(0, t0);
        assert!(!s.may_link(false), "a round in flight");
        s.round_finished(0, ms(1), true);
        assert!(!s.may_link(false), "the last round ended with records waiting: busy");
        s.round_started(0, t0);
        s.round_finished(0, ms(1), false);
        assert!(s.may_link(false));
        assert!(!SyncSchedule::new(1, ms(1), false).may_link(false), "a window: rounds start on their own time");
    }

    #[test]
    fn with_dsync_writes_every_wanted_write_links_under_load_too() {
        let t0 = Instant::now();
        let mut s = SyncSchedule::new(1, Duration::ZERO, true);
        s.round_started(0, t0);
        s.round_finished(0, ms(1), true);
        assert!(s.may_link(true), "busy, more queued: an RWF_DSYNC write has no sync to overlap");
        s.round_started(0, t0);
        assert!(!s.may_link(false), "but one round at a time");
        s.round_finished(0, ms(1), true);
        s.seal_started();
        assert!(!s.may_link(false), "and not during a seal");
    }

    #[test]
    fn a_round_that_released_at_least_what_waits_behind_it_regroups_once() {
        let t0 = Instant::now();
        let mut s = SyncSchedule::new(1, Duration::ZERO, false);
        s.round_started(0, t0);
        s.round_finished(0, ms(1), true);
        s.round_released(7, 7, 1);
        assert!(s.take_regroup(), "seven released, one waiting: let the seven come back first");
        assert!(!s.take_regroup(), "once per round");
        assert!(s.may_link(false), "after regrouping, the next write carries its round");
        for (tasks, released, behind, why) in [
            (1, 1, 0, "a lone task: nobody else is coming"),
            (1, 10, 0, "a lone task's batch: nobody else is coming either"),
            (0, 2, 1, "no task woken (threads parked in the blocking API)"),
            (3, 3, 5, "more waits than was released: that goes first"),
        ] {
            s.round_started(0, t0);
            s.round_finished(0, ms(1), behind > 0);
            s.round_released(tasks, released, behind);
            assert!(!s.take_regroup(), "{why}");
        }
        s.round_started(0, t0);
        s.round_finished(0, ms(1), true);
        s.round_released(1, 1, 1);
        assert!(s.take_regroup(), "two writers, one record each");
        s.round_started(0, t0);
        s.round_finished(0, ms(1), false);
        s.round_released(4, 4, 0);
        assert!(s.take_regroup(), "four writers, all in the round");
    }

    #[test]
    fn no_regroup_beside_a_round_in_flight_or_with_a_window() {
        let t0 = Instant::now();
        let mut s = SyncSchedule::new(2, Duration::ZERO, false);
        s.round_started(0, t0);
        s.round_started(1, t0);
        s.round_finished(0, ms(1), true);
        s.round_released(10, 10, 2);
        assert!(!s.take_regroup(), "the round on lane 1 will take what waits");
        let mut w = SyncSchedule::new(1, ms(1), false);
        w.round_started(0, t0);
        w.round_finished(0, ms(1), false);
        w.round_released(10, 10, 2);
        assert!(!w.take_regroup(), "a window paces rounds already");
    }

    #[test]
    fn the_interval_is_due_until_a_round_starts_and_abandoned_rounds_free_their_lane() {
        let t0 = Instant::now();
        let mut s = SyncSchedule::new(1, Duration::ZERO, false);
        s.interval_ticked();
        assert!(s.interval_due());
        s.round_started(0, t0);
        assert!(!s.interval_due());
        assert_eq!(s.rounds_in_flight(), 1);
        s.round_abandoned(0);
        assert_eq!(s.rounds_in_flight(), 0);
        assert_eq!(s.lane_for_round(t0, 1, true, false), Some(0));
    }
}
