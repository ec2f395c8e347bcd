//! The client: writes through whichever node leads, following redirects
//! and, when a node stops answering, asking another for the new leader.
//! Every call is bounded in time; a write whose call failed is *not*
//! acknowledged (it may or may not have been applied).

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use crate::api::{ClientReq, ClientResp, Request, Response};
use crate::support::cmd::Set;
use crate::wire::Conn;

/// One call's bound.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client waits for a leader to be elected.
pub const ELECTION_WAIT: Duration = Duration::from_secs(20);
/// Attempts per write (redirects and failovers).
const ATTEMPTS: usize = 8;

/// One request on a fresh connection to `addr`, bounded by `within`.
pub async fn call(addr: &str, req: ClientReq, within: Duration) -> io::Result<ClientResp> {
    let go = async {
        let mut conn = Conn::connect(addr).await?;
        answer(conn.call::<_, Response<()>>(&Request::<()>::Client(req)).await?)
    };
    tokio::time::timeout(within, go)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("{addr} did not answer within {within:?}")))?
}

fn answer(resp: Response<()>) -> io::Result<ClientResp> {
    match resp {
        Response::Client(r) => Ok(r),
        Response::Refused(why) => Err(io::Error::new(io::ErrorKind::InvalidInput, why)),
        Response::Raft(()) => Err(io::Error::other("a Raft answer to a client request")),
    }
}

/// A client of the cluster `members` (id → address).
#[derive(Debug)]
pub struct Client {
    members: BTreeMap<u64, String>,
    target: u64,
    conn: Option<Conn>,
}

impl Client {
    /// A client that first tries the lowest id.
    pub fn new(members: BTreeMap<u64, String>) -> Client {
        let target = *members.keys().next().expect("a cluster has members");
        Client { members, target, conn: None }
    }

    async fn call(&mut self, req: ClientReq) -> io::Result<ClientResp> {
        let addr = self.members[&self.target].clone();
        let go = async {
            let conn = match &mut self.conn {
                Some(c) => c,
                None => self.conn.insert(Conn::connect(&addr).await?),
            };
            answer(conn.call::<_, Response<()>>(&Request::<()>::Client(req)).await?)
        };
        let result = tokio::time::timeout(CALL_TIMEOUT, go)
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, format!("{addr}: no answer"))));
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// Points the client at the leader that a node other than `from`
    /// knows of, waiting for one (other than `dead`) to be elected.
    async fn fail_over(&mut self, from: u64, dead: Option<u64>) -> io::Result<()> {
        let mut last = None;
        for (&id, addr) in self.members.iter().filter(|(&id, _)| id != from) {
            let req = ClientReq::AwaitLeader { other_than: dead, timeout_ms: ELECTION_WAIT.as_millis() as u64 };
            match call(addr, req, ELECTION_WAIT + CALL_TIMEOUT).await {
                Ok(ClientResp::Status(s)) => {
                    if let Some(leader) = s.leader.filter(|l| self.members.contains_key(l)) {
                        self.target = leader;
                        self.conn = None;
                        return Ok(());
                    }
                }
                Ok(other) => last = Some(io::Error::other(format!("node {id}: {other:?}"))),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no other node")))
    }

    /// Writes `set` through the leader; `Ok` once it is committed and
    /// applied (the key's previous value).
    pub async fn write(&mut self, set: &Set) -> io::Result<Option<String>> {
        let mut last = io::Error::other("no attempt");
        for _ in 0..ATTEMPTS {
            let from = self.target;
            match self.call(ClientReq::Write(set.clone())).await {
                Ok(ClientResp::Written(previous)) => return Ok(previous),
                Ok(ClientResp::NotLeader { leader: Some((id, _)) }) if id != from => {
                    self.target = id;
                    self.conn = None;
                }
                Ok(other) => {
                    last = io::Error::other(format!("node {from}: {other:?}"));
                    self.fail_over(from, None).await?;
                }
                Err(e) => {
                    last = e;
                    self.fail_over(from, Some(from)).await?;
                }
            }
        }
        Err(last)
    }
}
