//! The flusher: one task per store that answers openraft's append
//! callbacks, in order, once the journal has made their records durable.
//! It never writes: it waits on the journal's group commit, so every
//! append queued while one sync ran shares the next.

use std::io;

use tidelog::Ticket;
use tokio::sync::mpsc;

/// openraft's "your entries are on disk" callback, whichever version.
pub(crate) trait Flushed: Send + 'static {
    /// Tells openraft the append finished with `result`.
    fn flushed(self, result: io::Result<()>);
}

/// Callbacks answered per wake-up at most: bounds the batch, not the queue
/// (openraft bounds what it has in flight).
const BATCH_MAX: usize = 4096;

/// One append waiting: the ticket of its last record, and its callback.
pub(crate) type Waiting<F> = (Ticket, F);

/// Answers callbacks in order once the journal is through their records:
/// durable under `SyncPolicy::OnDemand` and `Always`, written under
/// `Never` (a ticket resolves at that level). Awaiting the newest ticket
/// of a batch covers every older one: the journal's frontiers only grow.
pub(crate) async fn run<F: Flushed>(mut rx: mpsc::UnboundedReceiver<Waiting<F>>) {
    let mut queued: Vec<Waiting<F>> = Vec::new();
    while rx.recv_many(&mut queued, BATCH_MAX).await > 0 {
        // `Ticket` is `Unpin`: awaited in place, the queue keeps its order.
        let result = match queued.iter_mut().max_by_key(|(ticket, _)| ticket.lsn()) {
            Some((newest, _)) => newest.await.map(drop).map_err(|e| e.to_string()),
            None => Ok(()),
        };
        for (_, callback) in queued.drain(..) {
            callback.flushed(result.clone().map_err(io::Error::other));
        }
    }
}
