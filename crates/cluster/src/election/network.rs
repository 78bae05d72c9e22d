//! Outgoing RPCs: openraft's network factory over TCP, with a small pool of open connections
//! per peer and bounded connect and answer times (a dead peer never holds up a vote).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{Fatal, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::frame::{
    self, NetworkError, CHANNEL_RAFT, KIND_APPEND, KIND_SNAPSHOT, KIND_VOTE, STATUS_OK,
};
use super::types::{RpcError, Snapshot, Types, Vote};

/// Idle connections kept per peer (openraft runs one replication stream per peer, plus the
/// short-lived vote and snapshot calls).
const POOL_PER_PEER: usize = 2;

/// Open connections to peers, shared by every client the factory hands out.
#[derive(Debug, Default)]
struct Pool {
    idle: Mutex<BTreeMap<u64, Vec<TcpStream>>>,
}

impl Pool {
    fn take(&self, target: u64) -> Option<TcpStream> {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&target)?
            .pop()
    }

    fn put(&self, target: u64, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let conns = idle.entry(target).or_default();
        if conns.len() < POOL_PER_PEER {
            conns.push(stream);
        }
    }
}

/// openraft's network factory: a client per (target, purpose), all sharing one pool.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    pool: Arc<Pool>,
    connect_timeout: Duration,
    backoff: Duration,
}

impl Network {
    pub(crate) fn new(connect_timeout: Duration, backoff: Duration) -> Self {
        Self {
            pool: Arc::default(),
            connect_timeout,
            backoff,
        }
    }
}

impl RaftNetworkFactory<Types> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            net: self.clone(),
        }
    }
}

/// RPCs to one peer.
pub(crate) struct PeerClient {
    target: u64,
    addr: String,
    net: Network,
}

impl PeerClient {
    /// One request and its answer, bounded by `ttl` in all.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        kind: u8,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, NetworkError> {
        let body = frame::encode(req)?;
        let timeout_ms = ttl.as_millis() as u64;
        let answer = match tokio::time::timeout(ttl, self.exchange(kind, &body)).await {
            Ok(answer) => answer?,
            Err(_) => {
                return Err(NetworkError::Timeout {
                    target: self.target,
                    timeout_ms,
                })
            }
        };
        frame::decode(&answer)
    }

    /// Sends on a pooled connection (once more on a fresh one if the pooled one was stale).
    async fn exchange(&mut self, kind: u8, body: &[u8]) -> Result<Vec<u8>, NetworkError> {
        if let Some(stream) = self.net.pool.take(self.target) {
            match self.round_trip(stream, kind, body).await {
                Err(NetworkError::Io { .. }) => {}
                other => return other,
            }
        }
        let stream = self.connect().await?;
        self.round_trip(stream, kind, body).await
    }

    async fn round_trip(
        &self,
        mut stream: TcpStream,
        kind: u8,
        body: &[u8],
    ) -> Result<Vec<u8>, NetworkError> {
        let io = |source| NetworkError::Io {
            target: self.target,
            source,
        };
        frame::write_frame(&mut stream, kind, body)
            .await
            .map_err(io)?;
        let (status, answer) = frame::read_frame(&mut stream).await.map_err(io)?;
        self.net.pool.put(self.target, stream);
        if status == STATUS_OK {
            Ok(answer)
        } else {
            let message = String::from_utf8_lossy(&answer).into_owned();
            Err(NetworkError::Remote {
                target: self.target,
                message,
            })
        }
    }

    async fn connect(&self) -> Result<TcpStream, NetworkError> {
        let fail = |source| NetworkError::Connect {
            target: self.target,
            addr: self.addr.clone(),
            source,
        };
        let connecting = TcpStream::connect(self.addr.as_str());
        let mut stream = match tokio::time::timeout(self.net.connect_timeout, connecting).await {
            Ok(result) => result.map_err(fail)?,
            Err(_) => return Err(fail(std::io::ErrorKind::TimedOut.into())),
        };
        crate::refuse_self_connect(stream.local_addr(), stream.peer_addr()).map_err(fail)?;
        stream.set_nodelay(true).map_err(fail)?;
        stream.write_all(&[CHANNEL_RAFT]).await.map_err(fail)?;
        Ok(stream)
    }
}

/// Connect failures and refusals make openraft back off; other failures retry at once.
fn rpc_error(e: NetworkError) -> RpcError {
    match e {
        NetworkError::Connect { .. } | NetworkError::Remote { .. } => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        _ => RPCError::Network(openraft::error::NetworkError::new(&e)),
    }
}

impl RaftNetwork<Types> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Types>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcError> {
        self.call(KIND_APPEND, &rpc, option.hard_ttl())
            .await
            .map_err(rpc_error)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RpcError> {
        self.call(KIND_VOTE, &rpc, option.hard_ttl())
            .await
            .map_err(rpc_error)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<Types, Fatal<u64>>> {
        let req = (vote, snapshot.meta, *snapshot.snapshot);
        match self.call(KIND_SNAPSHOT, &req, option.hard_ttl()).await {
            Ok(resp) => Ok(resp),
            Err(e @ (NetworkError::Connect { .. } | NetworkError::Remote { .. })) => {
                Err(StreamingError::Unreachable(Unreachable::new(&e)))
            }
            Err(e) => Err(StreamingError::Network(openraft::error::NetworkError::new(
                &e,
            ))),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.net.backoff))
    }
}
