//! [`Ticket`]: the future `Journal::submit` hands back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::Shared;
use crate::gate::Level;
use crate::{Lsn, Result};

/// Resolves with a submitted record's LSN once it is durable (once written
/// under `SyncPolicy::Never`). The record is in the journal whether or not
/// the ticket is awaited: dropping it loses nothing.
#[derive(Debug)]
#[must_use = "a ticket does nothing unless awaited; the record is appended either way"]
pub struct Ticket {
    shared: Arc<Shared>,
    level: Level,
    lsn: u64,
    waiter: Option<u64>,
}

impl Ticket {
    pub(super) fn new(shared: Arc<Shared>, level: Level, lsn: u64) -> Ticket {
        Ticket { shared, level, lsn, waiter: None }
    }

    /// The record's LSN (its end), known at submission.
    pub fn lsn(&self) -> Lsn {
        Lsn::new(self.lsn)
    }
}

impl Future for Ticket {
    type Output = Result<Lsn>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Lsn>> {
        let this = &mut *self;
        this.shared.gate.poll_wait(cx, this.level, this.lsn, &mut this.waiter)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(id) = self.waiter {
            self.shared.gate.cancel_wait(self.level, self.lsn, id);
        }
    }
}
