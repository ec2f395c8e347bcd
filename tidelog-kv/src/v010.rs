//! A key-value node on openraft 0.10: its network (Raft RPCs as
//! [`Request::Raft`] over the wire) and its request handler.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft010::error::{
    ClientWriteError, Fatal, NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft010::network::{RPCOption, RaftNetworkFactory};
use openraft010::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft010::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft010::type_config::alias::{EntryOf, LogIdOf, SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft010::type_config::async_runtime::WatchReceiver;
use openraft010::type_config::TypeConfigExt;
use openraft010::{BasicNode, OptionalSend, RaftNetworkV2};
use serde::{Deserialize, Serialize};
use tidelog_openraft::v010::LogStore;

use crate::api::{ClientReq, ClientResp, Dump, Request, Response, Status};
use crate::node::{NodeArgs, StoreKind};
use crate::support::kv010::{Cmd, KvConfig, KvStateMachine, MemLogStore};
use crate::wire::{self, Pool};

type C = KvConfig;
/// A node of the cluster.
pub type Raft = openraft010::Raft<C, KvStateMachine>;

/// A Raft RPC.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Rpc {
    /// AppendEntries.
    Append(AppendEntriesRequest<C>),
    /// RequestVote.
    Vote(VoteRequest<C>),
    /// A whole snapshot.
    Snapshot {
        /// The leader's vote.
        vote: VoteOf<C>,
        /// What the snapshot covers.
        meta: SnapshotMetaOf<C>,
        /// The state machine's bytes.
        data: Vec<u8>,
    },
}

/// A Raft RPC's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum RpcResp {
    /// To `Rpc::Append`.
    Append(Result<AppendEntriesResponse<C>, RaftError<C>>),
    /// To `Rpc::Vote`.
    Vote(Result<VoteResponse<C>, RaftError<C>>),
    /// To `Rpc::Snapshot`.
    Snapshot(Result<SnapshotResponse<C>, Fatal<C>>),
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

impl Link {
    async fn call(&self, rpc: Rpc) -> Result<RpcResp, Unreachable<C>> {
        match self.pool.call::<_, Response<RpcResp>>(&Request::<Rpc>::Raft(rpc)).await {
            Ok(Response::Raft(resp)) => Ok(resp),
            Ok(other) => Err(Unreachable::from_string(format!("node {}: unexpected answer {other:?}", self.target))),
            Err(e) => Err(Unreachable::new(&e)),
        }
    }
}

fn remote(e: impl std::error::Error + 'static) -> RPCError<C> {
    RPCError::Network(NetworkError::new(&e))
}

impl RaftNetworkV2<C> for Link {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        match self.call(Rpc::Append(rpc)).await? {
            RpcResp::Append(r) => r.map_err(remote),
            other => Err(remote(io::Error::other(format!("answer {other:?} to AppendEntries")))),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<C>, _option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        match self.call(Rpc::Vote(rpc)).await? {
            RpcResp::Vote(r) => r.map_err(remote),
            other => Err(remote(io::Error::other(format!("answer {other:?} to Vote")))),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Vec<u8>>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let rpc = Rpc::Snapshot { vote, meta: snapshot.meta, data: snapshot.snapshot };
        match self.call(rpc).await? {
            RpcResp::Snapshot(r) => r.map_err(|e| StreamingError::Network(NetworkError::new(&e))),
            other => Err(StreamingError::Network(NetworkError::new(&io::Error::other(format!("answer {other:?}"))))),
        }
    }
}

/// Prints, on stdout, each append the store acknowledged (`ack TERM NODE
/// INDEX`, its last entry) before openraft hears of it, and each vote once
/// saved (`vote TERM NODE COMMITTED`): what the power-cut test holds the
/// recovered journal to.
#[derive(Debug)]
pub struct Witness<S>(S);

fn say(line: String) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

impl<S: RaftLogStorage<C>> RaftLogStorage<C> for Witness<S> {
    type LogReader = S::LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        self.0.get_log_state().await
    }

    async fn get_log_reader(&mut self) -> S::LogReader {
        self.0.get_log_reader().await
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        self.0.save_vote(vote).await?;
        say(format!("vote {} {} {}", vote.leader_id.term, vote.leader_id.node_id, vote.committed));
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        self.0.save_committed(committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        self.0.read_committed().await
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<EntryOf<C>> = entries.into_iter().collect();
        let last = entries.last().map(|e| e.log_id);
        let (tx, rx) = C::oneshot();
        self.0.append(entries, IOFlushed::signal(tx)).await?;
        tokio::spawn(async move {
            let result = rx.await.unwrap_or_else(|_| Err(io::Error::other("the store dropped the callback")));
            if let (Ok(()), Some(id)) = (&result, last) {
                say(format!("ack {} {} {}", id.leader_id.term, id.leader_id.node_id, id.index));
            }
            callback.io_completed(result);
        });
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        self.0.truncate_after(last).await
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        self.0.purge(log_id).await
    }
}

struct Node {
    raft: Raft,
    sm: KvStateMachine,
    journal: Option<tidelog::Journal>,
}

/// Starts the node on `listener` and serves until the process ends.
pub async fn run(args: NodeArgs, listener: tokio::net::TcpListener) -> io::Result<()> {
    let sm = KvStateMachine::new();
    let config = Arc::new(crate::node::config010().validate().map_err(io::Error::other)?);
    let (raft, journal) = match args.store {
        StoreKind::Memory => (
            Raft::new(args.id, config, Net::default(), MemLogStore::new(), sm.clone())
                .await
                .map_err(io::Error::other)?,
            None,
        ),
        StoreKind::Tidelog => {
            let store = LogStore::<C>::open(&args.dir, args.journal_options()).await.map_err(io::Error::other)?;
            // The negative control acknowledges written entries: it must
            // not sync on every commit either, or it would be durable.
            let store = store.sync_committed(!args.ack_written);
            let journal = store.journal().clone();
            let raft = if args.witness {
                Raft::new(args.id, config, Net::default(), Witness(store), sm.clone()).await
            } else {
                Raft::new(args.id, config, Net::default(), store, sm.clone()).await
            };
            (raft.map_err(io::Error::other)?, Some(journal))
        }
    };
    let node = Arc::new(Node { raft, sm, journal });
    wire::serve(listener, move |req: Request<Rpc>| {
        let node = node.clone();
        async move { node.handle(req).await }
    })
    .await;
    Ok(())
}

impl Node {
    async fn handle(&self, req: Request<Rpc>) -> Response<RpcResp> {
        match req {
            Request::Raft(Rpc::Append(rpc)) => Response::Raft(RpcResp::Append(self.raft.append_entries(rpc).await)),
            Request::Raft(Rpc::Vote(rpc)) => Response::Raft(RpcResp::Vote(self.raft.vote(rpc).await)),
            Request::Raft(Rpc::Snapshot { vote, meta, data }) => {
                let snapshot = SnapshotOf::<C, Vec<u8>> { meta, snapshot: data };
                Response::Raft(RpcResp::Snapshot(self.raft.install_full_snapshot(vote, snapshot).await))
            }
            Request::Client(req) => Response::Client(self.client(req).await),
        }
    }

    async fn client(&self, req: ClientReq) -> ClientResp {
        match req {
            ClientReq::Write(set) => match self.raft.client_write(Cmd::Set(set)).await {
                Ok(resp) => ClientResp::Written(resp.data.0.into_iter().next().flatten()),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    ClientResp::NotLeader { leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)) }
                }
                Err(e) => ClientResp::Error(e.to_string()),
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
            ClientReq::Dump => {
                ClientResp::Dump(Dump { last_applied: self.sm.last_applied_index(), map: self.sm.contents() })
            }
        }
    }

    fn status(&self) -> Status {
        let m = self.raft.metrics().borrow_watched().clone();
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
