//! The `Blocking` substrate: each op runs on tokio's blocking pool.
//!
//! Works on every platform. A write and its sync travel as one task
//! (`OpKind::WriteSync`) so a lone durable append pays one thread hand-off,
//! not two.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{FuturesUnordered, StreamExt};

use super::{perform, Backend, Done, Op};

type Running = Pin<Box<dyn Future<Output = Done> + Send>>;

/// See the module docs.
pub(crate) struct BlockingBackend {
    running: FuturesUnordered<Running>,
}

impl BlockingBackend {
    pub(crate) fn new() -> BlockingBackend {
        BlockingBackend { running: FuturesUnordered::new() }
    }
}

impl Backend for BlockingBackend {
    fn submit(&mut self, op: Op) {
        let (kind, file, lane) = (op.kind, op.file.clone(), op.lane);
        let task = tokio::task::spawn_blocking(move || perform(op));
        // A join error means the runtime is shutting down and the task never
        // ran (or it panicked): report the op as failed so nobody is told
        // written or durable, and nobody waits for it forever.
        self.running.push(Box::pin(async move {
            task.await.unwrap_or_else(|join| {
                let lost = || std::io::Error::other(format!("blocking I/O task lost: {join}"));
                let mut op = Op::sync(file);
                op.kind = kind;
                op.lane = lane;
                let written = (kind != super::OpKind::Sync).then(|| Err(lost()));
                let synced = (kind != super::OpKind::Write).then(|| Err(lost()));
                Done { op, written, synced }
            })
        }));
    }

    fn poll_complete(&mut self, cx: &mut Context<'_>) -> Poll<Done> {
        match self.running.poll_next_unpin(cx) {
            Poll::Ready(Some(done)) => Poll::Ready(done),
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }

    fn in_flight(&self) -> usize {
        self.running.len()
    }

    fn substrate(&self) -> crate::Substrate {
        crate::Substrate::Blocking
    }
}
