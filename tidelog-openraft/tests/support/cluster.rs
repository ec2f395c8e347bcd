//! An in-process cluster of [`KvConfig`] nodes: a router that delivers
//! Raft RPCs by calling the target node directly (as openraft's examples
//! do), for the tests, the example and the benchmark.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Config, Raft};

use tidelog_openraft::LogStore;

use super::kv::{KvConfig, KvStateMachine};

/// A node of the key-value cluster.
pub type KvRaft = Raft<KvConfig>;

/// Delivers RPCs to the nodes registered with it; a node that is not (it
/// was stopped) is unreachable.
#[derive(Clone, Default)]
pub struct Router {
    nodes: Arc<Mutex<BTreeMap<u64, KvRaft>>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("nodes", &self.nodes().keys().collect::<Vec<_>>()).finish()
    }
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, KvRaft>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `raft` reachable as node `id`.
    pub fn add(&self, id: u64, raft: KvRaft) {
        self.nodes().insert(id, raft);
    }

    /// Makes node `id` unreachable; returns it.
    pub fn remove(&self, id: u64) -> Option<KvRaft> {
        self.nodes().remove(&id)
    }

    /// Node `id`, if reachable.
    pub fn get(&self, id: u64) -> Option<KvRaft> {
        self.nodes().get(&id).cloned()
    }
}

/// The timing the cluster runs with: heartbeats every 50 ms, elections
/// after 300–600 ms of silence (the in-process network has no latency).
pub fn config() -> Arc<Config> {
    let config = Config {
        cluster_name: "tidelog-kv".into(),
        heartbeat_interval: 50,
        election_timeout_min: 300,
        election_timeout_max: 600,
        ..Default::default()
    };
    Arc::new(config.validate().expect("the cluster config is valid"))
}

/// Starts node `id` on `log` and `state`, and registers it with `router`.
pub async fn start<LS>(id: u64, router: &Router, log: LS, state: KvStateMachine) -> Result<KvRaft, io::Error>
where
    LS: RaftLogStorage<KvConfig>,
{
    let raft = Raft::new(id, config(), router.clone(), log, state).await.map_err(io::Error::other)?;
    router.add(id, raft.clone());
    Ok(raft)
}

/// The current leader among the reachable nodes, waiting up to `within`
/// for one to be elected.
pub async fn leader(router: &Router, within: std::time::Duration) -> Result<KvRaft, io::Error> {
    let Some(any) = router.nodes().values().next().cloned() else {
        return Err(io::Error::new(io::ErrorKind::NotConnected, "no node is running"));
    };
    let reachable = router.clone();
    let metrics = any
        .wait(Some(within))
        .metrics(move |m| m.current_leader.is_some_and(|l| reachable.get(l).is_some()), "a reachable leader")
        .await
        .map_err(|e| io::Error::new(io::ErrorKind::TimedOut, e.to_string()))?;
    let id = metrics.current_leader.expect("the wait saw a leader");
    router.get(id).ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, format!("leader {id} went away")))
}

/// The membership of a cluster of nodes `ids`.
pub fn members(ids: impl IntoIterator<Item = u64>) -> BTreeMap<u64, BasicNode> {
    ids.into_iter().map(|id| (id, BasicNode::new(format!("node-{id}")))).collect()
}

impl RaftNetworkFactory<KvConfig> for Router {
    type Network = Link;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Link {
        Link { target, router: self.clone() }
    }
}

/// The connection to one node.
#[derive(Debug)]
pub struct Link {
    target: u64,
    router: Router,
}

impl Link {
    fn raft<E: std::error::Error>(&self) -> Result<KvRaft, RPCError<u64, BasicNode, E>> {
        self.router.get(self.target).ok_or_else(|| {
            let down = io::Error::new(io::ErrorKind::NotConnected, format!("node {} is down", self.target));
            RPCError::Unreachable(Unreachable::new(&down))
        })
    }
}

impl RaftNetwork<KvConfig> for Link {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<KvConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let raft = self.raft()?;
        raft.append_entries(rpc).await.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<KvConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>> {
        let raft = self.raft()?;
        raft.install_snapshot(rpc).await.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let raft = self.raft()?;
        raft.vote(rpc).await.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// A node of the key-value cluster whose log is a tidelog journal.
pub struct TidelogNode {
    /// The node's id.
    pub id: u64,
    /// The Raft handle.
    pub raft: KvRaft,
    /// The node's (in-memory) state machine.
    pub state: KvStateMachine,
    journal: tidelog::Journal,
}

impl std::fmt::Debug for TidelogNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TidelogNode").field("id", &self.id).field("dir", &self.journal.dir()).finish()
    }
}

impl TidelogNode {
    /// Opens (or recovers) the node's log in `dir`, starts the node with an
    /// empty state machine (Raft re-applies the committed log into it) and
    /// registers it with `router`.
    pub async fn start(
        id: u64,
        dir: &std::path::Path,
        opts: tidelog::JournalOptions,
        router: &Router,
    ) -> Result<TidelogNode, Box<dyn std::error::Error + Send + Sync>> {
        let store = LogStore::<KvConfig>::open(dir, opts).await?;
        TidelogNode::start_on(id, store, router).await
    }

    /// Starts node `id` on an opened log store (as [`start`](Self::start)).
    pub async fn start_on(
        id: u64,
        store: LogStore<KvConfig>,
        router: &Router,
    ) -> Result<TidelogNode, Box<dyn std::error::Error + Send + Sync>> {
        let journal = store.journal().clone();
        let state = KvStateMachine::new();
        let raft = start(id, router, store, state.clone()).await?;
        Ok(TidelogNode { id, raft, state, journal })
    }

    /// The node's journal (for its stats).
    pub fn journal(&self) -> &tidelog::Journal {
        &self.journal
    }

    /// Takes the node off the network, stops Raft and closes the journal:
    /// its directory can be reopened at once.
    pub async fn stop(self, router: &Router) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        router.remove(self.id);
        self.raft.shutdown().await.map_err(|e| io::Error::other(e.to_string()))?;
        match self.journal.close().await {
            Ok(()) | Err(tidelog::Error::Closed) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
