//! A key-value cluster of three OS processes on tidelog-openraft, over
//! loopback TCP: each node a `tidelog-kv node` process with its own
//! journal directory, running openraft 0.10 or 0.9 (with or without
//! proposal batching) on a tidelog journal or an in-memory log.
//!
//! - [`wire`]: length-delimited frames of bincode (tokio-util, bincode);
//! - [`api`]: the messages, Raft's RPCs and the client's;
//! - [`v010`], [`v09`]: a node on each openraft version;
//! - [`client`], [`load`]: the client and the load generator;
//! - [`procs`]: starting, killing and restarting node processes.
//!
//! `tidelog-kv cluster` starts three nodes on 127.0.0.1 with no setup;
//! `tidelog-kv bench` measures them. `docs/replication.md` tells the rest.

#![warn(missing_docs, missing_debug_implementations)]
// openraft's traits fix the error types (`RPCError`, `StorageError`).
#![allow(clippy::result_large_err)]

pub mod api;
pub mod bench;
pub mod client;
pub mod load;
pub mod node;
pub mod procs;
pub mod support;
pub mod v010;
pub mod v09;
pub mod wire;
