//! The messages: Raft's RPCs between nodes (each openraft version's own
//! serde types) and the client's requests, on one port. `Client` comes
//! first in both enums, so a client encodes and decodes them without
//! knowing which Raft version a node runs (`Request<()>`, `Response<()>`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::support::cmd::Set;
use crate::wire::Refused;

/// What a node is sent.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request<R> {
    /// From a client.
    Client(ClientReq),
    /// From a peer: a Raft RPC.
    Raft(R),
}

/// What a node answers.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response<R> {
    /// To a client.
    Client(ClientResp),
    /// The request was refused before it reached the node: malformed or
    /// oversized.
    Refused(String),
    /// To a peer.
    Raft(R),
}

impl<R> From<Refused> for Response<R> {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Malformed(why) => Response::Refused(format!("malformed request: {why}")),
            Refused::Oversized(why) => Response::Refused(format!("oversized request: {why}")),
        }
    }
}

/// A client's request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ClientReq {
    /// Replicate a write; answered once it is committed and applied.
    Write(Set),
    /// Initialize the cluster with these members (id → address).
    Init(BTreeMap<u64, String>),
    /// The node's view: [`Status`].
    Status,
    /// Resolves once the node knows a leader other than `other_than`, or
    /// after `timeout_ms` with an error.
    AwaitLeader {
        /// A leader that does not count (one that was killed).
        other_than: Option<u64>,
        /// How long to wait.
        timeout_ms: u64,
    },
    /// Resolves once the node applied the log up to `index`, or after
    /// `timeout_ms` with an error.
    AwaitApplied {
        /// The log index.
        index: u64,
        /// How long to wait.
        timeout_ms: u64,
    },
    /// The state machine's contents.
    Dump,
}

/// A node's answer to a client.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ClientResp {
    /// The write is committed and applied; the key's previous value.
    Written(Option<String>),
    /// This node does not lead; `leader` does, if known.
    NotLeader {
        /// The leader's id and address, if known.
        leader: Option<(u64, String)>,
    },
    /// See [`ClientReq::Status`].
    Status(Status),
    /// See [`ClientReq::Dump`].
    Dump(Dump),
    /// Done.
    Done,
    /// Failed.
    Error(String),
}

/// A node's view of itself and the cluster.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Status {
    /// The node's id.
    pub id: u64,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// Its term.
    pub term: u64,
    /// Its last log index.
    pub last_log_index: Option<u64>,
    /// The last index it applied.
    pub last_applied: Option<u64>,
    /// Its journal's records so far (0 for the in-memory store).
    pub records: u64,
    /// Its journal's fdatasyncs so far.
    pub syncs: u64,
}

/// A node's state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dump {
    /// The last index it applied.
    pub last_applied: Option<u64>,
    /// Every key and value.
    pub map: BTreeMap<String, String>,
}
