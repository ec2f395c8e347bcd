//! A journal's own I/O threads: where its blocking system calls run.
//!
//! The journal never hands its writes, syncs, segment work or recovery to
//! tokio's shared blocking pool: its callers may occupy that pool (the
//! blocking API parks a thread of it while it waits for the journal), and
//! then the journal's own I/O would queue behind the very callers waiting
//! for it. These threads belong to one journal, start when work arrives,
//! end after a while without work, and never run anything else.
//!
//! A job never waits for another job, so a bounded number of threads is
//! enough: a job queued behind busy threads is delayed, never stuck.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::channel::oneshot;

/// An idle thread ends after this long without work.
const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// After a job submitted with `linger`, a thread that finds no more work
/// watches the queue this long before it sleeps. A lone durable
/// appender's next write arrives a few tens of µs after its last one
/// completed: the thread is then still awake, and the submission skips a
/// futex wake-up (on a VM, the wake-up of a halted vCPU: 15-25 µs of a
/// lone appender's p50 here, docs/benchmarks.md). Only for jobs whose
/// submitter expects the next soon and sees a light load: on two cores, a
/// thread spinning between busy rounds takes CPU the appenders need.
const SPIN: Duration = Duration::from_micros(50);

type Job = Box<dyn FnOnce() + Send>;

/// A queued job, and whether its thread lingers after it (`SPIN`).
type Queued = (Job, bool);

#[derive(Default)]
struct State {
    queue: VecDeque<Queued>,
    threads: usize,
    /// Threads asleep on `work`.
    idle: usize,
    /// Threads watching `queued` before they sleep.
    spinning: usize,
    /// Jobs queued or running.
    active: usize,
    /// Values to drop once no job is queued or running (`hold_until_idle`).
    held: Vec<Box<dyn std::any::Any + Send>>,
    /// Every handle is gone: threads end once the queue is empty.
    closed: bool,
}

struct Pool {
    name: String,
    max: usize,
    state: Mutex<State>,
    work: Condvar,
    /// `State::queue`'s length, for spinning threads to watch unlocked.
    queued: AtomicUsize,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock and inside `catch_unwind`: the state is
        // never left half-changed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A bounded set of threads for one journal's blocking I/O. Cheap to clone.
#[derive(Clone)]
pub(crate) struct IoThreads {
    pool: Arc<Pool>,
    /// Counts the handles; the last one closes the pool.
    _handle: Arc<Closer>,
}

struct Closer(Arc<Pool>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.work.notify_all();
    }
}

impl std::fmt::Debug for IoThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.pool.lock();
        write!(f, "IoThreads({}: {} threads, {} idle, {} queued)", self.pool.name, st.threads, st.idle, st.queue.len())
    }
}

/// A job's outcome: its value, or why it did not produce one (it panicked,
/// or no thread could be started to run it).
pub(crate) type Outcome<T> = std::result::Result<T, String>;

/// The future of a job handed to [`IoThreads::run`]. Dropping it does not
/// stop the job.
pub(crate) struct Running<T> {
    rx: oneshot::Receiver<Outcome<T>>,
}

impl<T> Future for Running<T> {
    type Output = Outcome<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<T>> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|got| got.unwrap_or_else(|_| Err("the I/O thread running it could not be started".into())))
    }
}

impl IoThreads {
    /// Threads named `name`, at most `max` at once.
    pub(crate) fn new(name: impl Into<String>, max: usize) -> IoThreads {
        assert!(max > 0, "an I/O thread set needs a thread");
        let pool = Arc::new(Pool {
            name: name.into(),
            max,
            state: Mutex::default(),
            work: Condvar::new(),
            queued: AtomicUsize::new(0),
        });
        IoThreads { _handle: Arc::new(Closer(pool.clone())), pool }
    }

    /// Runs `job` on one of the threads; the returned future resolves with
    /// its result.
    pub(crate) fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Running<T> {
        self.run_lingering(false, job)
    }

    /// [`run`](Self::run), and with `linger` the thread that runs `job`
    /// watches for the next job for a while (`SPIN`) before it sleeps.
    pub(crate) fn run_lingering<T: Send + 'static>(
        &self,
        linger: bool,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Running<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).map_err(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                format!("the I/O job panicked: {what}")
            });
            // The receiver may be gone (its future was dropped): the result
            // is then dropped here, after the job finished with it.
            let _ = tx.send(outcome);
        });
        let mut st = self.pool.lock();
        st.queue.push_back((job, linger));
        self.pool.queued.store(st.queue.len(), Ordering::Release);
        st.active += 1;
        // Every queued job should have a thread on its way: a spinning
        // one, else an idle one, else a new one while below the bound.
        let spawn = st.queue.len() > st.spinning + st.idle && st.threads < self.pool.max;
        if spawn {
            st.threads += 1;
        }
        let wake = st.queue.len() > st.spinning && st.idle > 0;
        drop(st);
        if wake {
            self.pool.work.notify_one();
        }
        if spawn {
            let pool = self.pool.clone();
            let spawned = std::thread::Builder::new().name(self.pool.name.clone()).spawn(move || serve(&pool));
            if let Err(e) = spawned {
                let mut st = self.pool.lock();
                st.threads -= 1;
                tracing::error!(name = %self.pool.name, error = %e, "cannot start an I/O thread");
                if st.threads == 0 {
                    // Nobody will ever run what is queued: dropping the jobs
                    // drops their senders, and their futures report it.
                    let dropped = std::mem::take(&mut st.queue);
                    self.pool.queued.store(0, Ordering::Release);
                    st.active -= dropped.len();
                    let held = if st.active == 0 { std::mem::take(&mut st.held) } else { Vec::new() };
                    drop(st);
                    drop((dropped, held));
                }
            }
        }
        Running { rx }
    }

    /// Keeps `value` until no job is queued or running, then drops it (at
    /// once if none is). The journal parks its directory lock here, so
    /// that the lock outlives every job that touches the directory.
    /// Resolves once no job is queued or running (and everything held
    /// before the call has been dropped).
    pub(crate) fn idle(&self) -> impl Future<Output = ()> + Send + 'static {
        let (tx, rx) = oneshot::channel::<()>();
        self.hold_until_idle(tx); // dropping the sender resolves the receiver
        async move {
            let _ = rx.await;
        }
    }

    pub(crate) fn hold_until_idle<T: Send + 'static>(&self, value: T) {
        let mut st = self.pool.lock();
        if st.active > 0 {
            st.held.push(Box::new(value));
            return;
        }
        drop(st);
        drop(value);
    }
}

/// A thread's life: run queued jobs; end when closed and idle, or after
/// `KEEP_ALIVE` without work.
fn serve(pool: &Pool) {
    let mut st = pool.lock();
    let mut linger = false;
    loop {
        if let Some((job, lingering)) = st.queue.pop_front() {
            linger = lingering;
            pool.queued.store(st.queue.len(), Ordering::Release);
            drop(st);
            job();
            st = pool.lock();
            st.active -= 1;
            if st.active == 0 && !st.held.is_empty() {
                let held = std::mem::take(&mut st.held);
                drop(st);
                drop(held);
                st = pool.lock();
            }
            continue;
        }
        if st.closed {
            break;
        }
        if std::mem::take(&mut linger) {
            st.spinning += 1;
            drop(st);
            let until = Instant::now() + SPIN;
            while pool.queued.load(Ordering::Acquire) == 0 && Instant::now() < until {
                std::hint::spin_loop();
            }
            st = pool.lock();
            st.spinning -= 1;
            if !st.queue.is_empty() || st.closed {
                continue;
            }
        }
        st.idle += 1;
        let (next, waited) = pool.work.wait_timeout(st, KEEP_ALIVE).unwrap_or_else(|p| p.into_inner());
        st = next;
        st.idle -= 1;
        if waited.timed_out() && st.queue.is_empty() {
            break;
        }
    }
    st.threads -= 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn jobs_run_on_at_most_max_threads_and_all_complete() {
        let threads = IoThreads::new("test-io", 2);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..16)
            .map(|i| {
                let (running, most) = (running.clone(), most.clone());
                threads.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                    running.fetch_sub(1, Ordering::SeqCst);
                    i * 2
                })
            })
            .collect();
        let got: Vec<usize> =
            futures::executor::block_on(futures::future::join_all(jobs)).into_iter().map(|r| r.expect("ran")).collect();
        assert_eq!(got, (0..16).map(|i| i * 2).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 2, "{} jobs ran at once", most.load(Ordering::SeqCst));
    }

    #[test]
    fn a_held_value_is_dropped_only_when_every_job_has_ended() {
        let threads = IoThreads::new("test-io", 2);
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let job = threads.run(move || gate.recv_timeout(Duration::from_secs(10)).is_ok());
        let held = Arc::new(());
        threads.hold_until_idle(held.clone());
        assert_eq!(Arc::strong_count(&held), 2, "kept while a job runs");
        release.send(()).unwrap();
        assert!(futures::executor::block_on(job).unwrap());
        // The job's thread drops the held value right after the job.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&held) > 1 {
            assert!(std::time::Instant::now() < deadline, "the held value was never dropped");
            std::thread::yield_now();
        }
        let idle = Arc::new(());
        threads.hold_until_idle(idle.clone());
        assert_eq!(Arc::strong_count(&idle), 1, "dropped at once when idle");
    }

    #[test]
    fn lingering_threads_take_jobs_queued_while_they_spin_and_sleep_after() {
        let threads = IoThreads::new("test-io", 2);
        // A chain of lingering jobs, each submitted right after the last
        // completed (a lone appender's pattern), and jobs from two
        // submitters at once while threads spin: every one runs.
        for i in 0..200u32 {
            assert_eq!(futures::executor::block_on(threads.run_lingering(true, move || i + 1)).unwrap(), i + 1);
        }
        let a = threads.clone();
        let other = std::thread::spawn(move || {
            (0..200u32)
                .map(|i| futures::executor::block_on(a.run_lingering(i % 2 == 0, move || i)).unwrap())
                .sum::<u32>()
        });
        let mine: u32 = (0..200u32).map(|i| futures::executor::block_on(threads.run(move || i)).unwrap()).sum();
        assert_eq!(other.join().unwrap(), mine);
        // Once the spin has ended the threads sleep, and a plain job still
        // wakes one.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while threads.pool.lock().spinning > 0 {
            assert!(std::time::Instant::now() < deadline, "a thread kept spinning");
            std::thread::yield_now();
        }
        assert_eq!(threads.pool.queued.load(Ordering::Acquire), 0);
        assert_eq!(futures::executor::block_on(threads.run(|| 7)).unwrap(), 7);
    }

    #[test]
    fn a_panicking_job_reports_and_the_threads_keep_serving() {
        let threads = IoThreads::new("test-io", 1);
        let err = futures::executor::block_on(threads.run(|| -> u8 { panic!("boom") })).unwrap_err();
        assert!(err.contains("boom"), "{err}");
        assert_eq!(futures::executor::block_on(threads.run(|| 7)).unwrap(), 7);
    }

    #[test]
    fn a_dropped_future_does_not_stop_its_job_and_queued_jobs_outlive_the_handle() {
        let threads = IoThreads::new("test-io", 1);
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..3 {
            let (done, tx) = (done.clone(), tx.clone());
            drop(threads.run(move || {
                done.fetch_add(1, Ordering::SeqCst);
                tx.send(()).unwrap();
            }));
        }
        drop(threads);
        for _ in 0..3 {
            rx.recv_timeout(Duration::from_secs(10)).expect("every queued job ran");
        }
        assert_eq!(done.load(Ordering::SeqCst), 3);
    }
}
