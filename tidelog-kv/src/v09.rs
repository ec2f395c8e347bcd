//! A key-value node on openraft 0.9: its network (Raft RPCs as
//! [`Request::Raft`] over the wire) and its request handler, with optional
//! proposal batching.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use tidelog_openraft::LogStore;

use crate::api::{ClientReq, ClientResp, Dump, Request, Response, Status};
use crate::node::{NodeArgs, StoreKind};
use crate::support::kv::{Cmd, KvConfig, KvStateMachine, MemLogStore};
use crate::support::propose::Proposer;
use crate::wire::{self, Pool};

type C = KvConfig;
/// A node of the cluster.
pub type Raft = openraft::Raft<C>;

/// A Raft RPC.
#[derive(Debug, Serialize, Deserialize)]
pub enum Rpc {
    /// AppendEntries.
    Append(AppendEntriesRequest<C>),
    /// RequestVote.
    Vote(VoteRequest<u64>),
    /// A snapshot chunk.
    Snapshot(InstallSnapshotRequest<C>),
}

/// A Raft RPC's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcResp {
    /// To `Rpc::Append`.
    Append(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    /// To `Rpc::Vote`.
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    /// To `Rpc::Snapshot`.
    Snapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
}

/// Connections to the peers, one pool per address.
#[derive(Clone, Debug, Default)]
pub struct Net {
    pools: Arc<Mutex<HashMap<String, Arc<Pool>>>>,
}

impl RaftNetworkFactory<C> for Net {
    type Network = Link;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Link {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let pool = pools.entry(node.addr.clone()).or_insert_with(|| Arc::new(Pool::new(node.addr.clone())));
        Link { target, pool: pool.clone() }
    }
}

/// The connection to one peer.
#[derive(Debug)]
pub struct Link {
    target: u64,
    pool: Arc<Pool>,
}

type RpcError<E = openraft::error::Infallible> = RPCError<u64, BasicNode, RaftError<u64, E>>;

impl Link {
    async fn call<E: std::error::Error>(&self, rpc: Rpc) -> Result<RpcResp, RpcError<E>> {
        match self.pool.call::<_, Response<RpcResp>>(&Request::<Rpc>::Raft(rpc)).await {
            Ok(Response::Raft(resp)) => Ok(resp),
            Ok(other) => {
                let e = io::Error::other(format!("node {}: unexpected answer {other:?}", self.target));
                Err(RPCError::Network(NetworkError::new(&e)))
            }
            Err(e) => Err(RPCError::Unreachable(Unreachable::new(&e))),
        }
    }
}

fn unexpected<E: std::error::Error>(what: &str) -> RpcError<E> {
    RPCError::Network(NetworkError::new(&io::Error::other(format!("unexpected answer to {what}"))))
}

impl RaftNetwork<C> for Link {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcError> {
        match self.call(Rpc::Append(rpc)).await? {
            RpcResp::Append(r) => {
                r.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
            }
            _ => Err(unexpected("AppendEntries")),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RpcError<InstallSnapshotError>> {
        match self.call(Rpc::Snapshot(rpc)).await? {
            RpcResp::Snapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
            }
            _ => Err(unexpected("InstallSnapshot")),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, _option: RPCOption) -> Result<VoteResponse<u64>, RpcError> {
        match self.call(Rpc::Vote(rpc)).await? {
            RpcResp::Vote(r) => r.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e))),
            _ => Err(unexpected("Vote")),
        }
    }
}

struct Node {
    raft: Raft,
    sm: KvStateMachine,
    journal: Option<tidelog::Journal>,
    proposer: Option<Proposer>,
}

/// Starts the node on `listener` and serves until the process ends.
pub async fn run(args: NodeArgs, listener: tokio::net::TcpListener) -> io::Result<()> {
    if args.witness {
        return Err(io::Error::other("--witness is implemented for openraft 0.10 nodes only"));
    }
    let sm = KvStateMachine::new();
    let config = Arc::new(crate::node::config09().validate().map_err(io::Error::other)?);
    let (raft, journal) = match args.store {
        StoreKind::Memory => {
            let raft = Raft::new(args.id, config, Net::default(), MemLogStore::<C>::new(), sm.clone()).await;
            (raft.map_err(io::Error::other)?, None)
        }
        StoreKind::Tidelog => {
            let store = LogStore::<C>::open(&args.dir, args.journal_options()).await.map_err(io::Error::other)?;
            let store = store.sync_committed(!args.ack_written);
            let journal = store.journal().clone();
            let raft = Raft::new(args.id, config, Net::default(), store, sm.clone()).await;
            (raft.map_err(io::Error::other)?, Some(journal))
        }
    };
    let proposer = args.batch.then(|| Proposer::start(raft.clone()));
    let node = Arc::new(Node { raft, sm, journal, proposer });
    wire::serve(listener, move |req: Request<Rpc>| {
        let node = node.clone();
        async move { node.handle(req).await }
    })
    .await;
    Ok(())
}

fn written(result: Result<Option<String>, RaftError<u64, ClientWriteError<u64, BasicNode>>>) -> ClientResp {
    match result {
        Ok(previous) => ClientResp::Written(previous),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            ClientResp::NotLeader { leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)) }
        }
        Err(e) => ClientResp::Error(e.to_string()),
    }
}

impl Node {
    async fn handle(&self, req: Request<Rpc>) -> Response<RpcResp> {
        match req {
            Request::Raft(Rpc::Append(rpc)) => Response::Raft(RpcResp::Append(self.raft.append_entries(rpc).await)),
            Request::Raft(Rpc::Vote(rpc)) => Response::Raft(RpcResp::Vote(self.raft.vote(rpc).await)),
            Request::Raft(Rpc::Snapshot(rpc)) => {
                Response::Raft(RpcResp::Snapshot(self.raft.install_snapshot(rpc).await))
            }
            Request::Client(req) => Response::Client(self.client(req).await),
        }
    }

    async fn client(&self, req: ClientReq) -> ClientResp {
        match req {
            ClientReq::Write(set) => match &self.proposer {
                Some(proposer) => written(proposer.write(set).await),
                None => {
                    written(self.raft.client_write(Cmd::Set(set)).await.map(|r| r.data.0.into_iter().next().flatten()))
                }
            },
            ClientReq::Init(members) => {
                let members: BTreeMap<u64, BasicNode> =
                    members.into_iter().map(|(id, addr)| (id, BasicNode::new(addr))).collect();
                match self.raft.initialize(members).await {
                    Ok(()) => ClientResp::Done,
                    Err(e) => ClientResp::Error(e.to_string()),
                }
            }
            ClientReq::Status => ClientResp::Status(self.status()),
            ClientReq::AwaitLeader { other_than, timeout_ms } => {
                let wait = self.raft.wait(Some(Duration::from_millis(timeout_ms)));
                match wait.metrics(move |m| m.current_leader.is_some_and(|l| Some(l) != other_than), "a leader").await {
                    Ok(_) => ClientResp::Status(self.status()),
                    Err(e) => ClientResp::Error(e.to_string()),
                }
            }
            ClientReq::AwaitApplied { index, timeout_ms } => {
                let wait = self.raft.wait(Some(Duration::from_millis(timeout_ms)));
                match wait.applied_index_at_least(Some(index), "applied").await {
                    Ok(_) => ClientResp::Status(self.status()),
                    Err(e) => ClientResp::Error(e.to_string()),
                }
            }
            ClientReq::Dump => ClientResp::Dump(Dump {
                last_applied: self.sm.last_applied().map(|id| id.index),
                map: self.sm.contents(),
            }),
        }
    }

    fn status(&self) -> Status {
        let m = self.raft.metrics().borrow().clone();
        let stats = self.journal.as_ref().map(|j| j.stats());
        Status {
            id: m.id,
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|id| id.index),
            records: stats.as_ref().map_or(0, |s| s.appends),
            syncs: stats.as_ref().map_or(0, |s| s.syncs),
        }
    }
}
