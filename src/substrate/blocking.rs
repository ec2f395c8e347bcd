//! The `Blocking` substrate: each op runs on the journal's own I/O threads
//! ([`IoThreads`]), never on tokio's shared blocking pool (which the
//! journal's blocking callers may fill).
//!
//! Works on every platform. A write and its sync travel as one job
//! (`OpKind::WriteSync`) so a lone durable append pays one thread hand-off,
//! not two.

use std::task::{Context, Poll};

use futures::stream::{FuturesUnordered, StreamExt};

use super::threads::{IoThreads, Running};
use super::{perform, Backend, Done, Op, OpKind};

/// An op on its way: the job, and what to report if it never ran.
struct InFlight {
    running: Running<Done>,
    lost: Option<Op>,
}

impl std::future::Future for InFlight {
    type Output = Done;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Done> {
        let got = std::task::ready!(std::pin::Pin::new(&mut self.running).poll(cx));
        Poll::Ready(got.unwrap_or_else(|why| {
            // The job panicked or never ran: report the op failed, so that
            // nobody is told written or durable, and nobody waits forever.
            let op = self.lost.take().expect("an op completes once");
            let lost = || std::io::Error::other(format!("blocking I/O job lost: {why}"));
            let written = (op.kind != OpKind::Sync).then(|| Err(lost()));
            let synced = (op.kind != OpKind::Write).then(|| Err(lost()));
            Done { op, written, synced }
        }))
    }
}

/// See the module docs.
pub(crate) struct BlockingBackend {
    threads: IoThreads,
    running: FuturesUnordered<InFlight>,
}

impl BlockingBackend {
    pub(crate) fn new(threads: IoThreads) -> BlockingBackend {
        BlockingBackend { threads, running: FuturesUnordered::new() }
    }
}

impl Backend for BlockingBackend {
    fn submit(&mut self, op: Op) {
        // Kept to report a lost job: the same file, kind, lane and tag, no bytes.
        let lost = Op { kind: op.kind, lane: op.lane, tag: op.tag, ..Op::sync(op.file.clone()) };
        let running = self.threads.run_lingering(op.linger, move || perform(op));
        self.running.push(InFlight { running, lost: Some(lost) });
    }

    fn poll_complete(&mut self, cx: &mut Context<'_>) -> Poll<Done> {
        match self.running.poll_next_unpin(cx) {
            Poll::Ready(Some(done)) => Poll::Ready(done),
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }

    fn perform_now(&mut self, op: Op) -> Done {
        perform(op)
    }

    fn in_flight(&self) -> usize {
        self.running.len()
    }

    fn substrate(&self) -> crate::Substrate {
        crate::Substrate::Blocking
    }
}

impl Drop for BlockingBackend {
    fn drop(&mut self) {
        // The ops own their buffers and files, so nothing dangles; but the
        // journal's directory lock is released after the backend, and a
        // write still running must not land after the next owner recovered.
        // Wait for them (only after a failure or a runtime shutdown).
        while futures::executor::block_on(self.running.next()).is_some() {}
    }
}
