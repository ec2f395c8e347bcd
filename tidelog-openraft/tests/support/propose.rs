//! Proposal batching for openraft 0.9: one Raft entry carries every write
//! that arrived while the previous entry was being replicated, as etcd's
//! and TiKV's applications do. openraft 0.9's core handles one client
//! write at a time (it awaits each append's flush), so without this a
//! leader syncs once per write; with it, once per batch.

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft};
use tokio::sync::{mpsc, oneshot};

use super::kv::{Cmd, KvConfig, Set};

/// What a batched write returns: the key's previous value, or the error
/// the whole batch's entry failed with.
pub type Written = Result<Option<String>, RaftError<u64, ClientWriteError<u64, BasicNode>>>;

/// Writes gathered per entry at most.
pub const BATCH_MAX: usize = 1024;
/// Writes waiting for an entry at most: `write` waits beyond it.
const QUEUE_MAX: usize = 8 * BATCH_MAX;

type Pending = (Set, oneshot::Sender<Written>);

/// A handle to the batching task of one node; cheap to clone.
#[derive(Clone, Debug)]
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
}

impl Proposer {
    /// Starts the batching task for `raft` (it ends once every handle is
    /// dropped).
    pub fn start(raft: Raft<KvConfig>) -> Proposer {
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        tokio::spawn(run(raft, rx));
        Proposer { tx }
    }

    /// Writes `set` in the next entry; resolves once that entry is applied.
    pub async fn write(&self, set: Set) -> Written {
        let (done, answer) = oneshot::channel();
        let stopped = || RaftError::Fatal(openraft::error::Fatal::Stopped);
        self.tx.send((set, done)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// One entry in flight at a time; everything that queued meanwhile goes
/// into the next.
async fn run(raft: Raft<KvConfig>, mut rx: mpsc::Receiver<Pending>) {
    let mut pending = Vec::with_capacity(BATCH_MAX);
    while rx.recv_many(&mut pending, BATCH_MAX).await > 0 {
        let (mut sets, waiters): (Vec<Set>, Vec<oneshot::Sender<Written>>) = pending.drain(..).unzip();
        let cmd = match sets.len() {
            1 => Cmd::Set(sets.remove(0)),
            _ => Cmd::Batch(sets),
        };
        match raft.client_write(cmd).await {
            Ok(response) => {
                debug_assert_eq!(response.data.0.len(), waiters.len(), "one reply per write");
                for (waiter, previous) in waiters.into_iter().zip(response.data.0) {
                    let _ = waiter.send(Ok(previous));
                }
            }
            Err(e) => {
                for waiter in waiters {
                    let _ = waiter.send(Err(e.clone()));
                }
            }
        }
    }
}
