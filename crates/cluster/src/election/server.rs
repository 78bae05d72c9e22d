//! Incoming connections: the channel byte router, and the RPC loop of a `b'E'` connection.

use std::net::TcpStream as StdTcpStream;
use std::sync::Arc;
use std::time::Duration;

use openraft::raft::{AppendEntriesRequest, VoteRequest};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::frame::{
    self, CHANNEL_DATA, CHANNEL_RAFT, KIND_APPEND, KIND_SNAPSHOT, KIND_VOTE, STATUS_ERR, STATUS_OK,
};
use super::types::{Raft, SmState, Snapshot, SnapshotMeta, Types, Vote};
use super::DataHandler;

/// How long an accepted connection may take to send its channel byte.
const CHANNEL_BYTE_TIMEOUT: Duration = Duration::from_secs(5);
/// An RPC connection with no request for this long is closed (peers reconnect on demand).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause after a failed accept (e.g. out of file descriptors) before the next one.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Answers RPC frames on `stream` until the peer closes it or stays idle too long.
pub(crate) async fn serve_rpc(raft: Raft, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    loop {
        let (kind, body) =
            match tokio::time::timeout(IDLE_TIMEOUT, frame::read_frame(&mut stream)).await {
                Ok(Ok(frame)) => frame,
                Ok(Err(_)) | Err(_) => return,
            };
        let (status, answer) = match dispatch(&raft, kind, &body).await {
            Ok(answer) => (STATUS_OK, answer),
            Err(message) => (STATUS_ERR, message.into_bytes()),
        };
        if frame::write_frame(&mut stream, status, &answer)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Hands one request to openraft; the encoded response, or why there is none.
async fn dispatch(raft: &Raft, kind: u8, body: &[u8]) -> Result<Vec<u8>, String> {
    let text = |e: frame::NetworkError| e.to_string();
    match kind {
        KIND_VOTE => {
            let req: VoteRequest<u64> = frame::decode(body).map_err(text)?;
            let resp = raft.vote(req).await.map_err(|e| e.to_string())?;
            frame::encode(&resp).map_err(text)
        }
        KIND_APPEND => {
            let req: AppendEntriesRequest<Types> = frame::decode(body).map_err(text)?;
            let resp = raft.append_entries(req).await.map_err(|e| e.to_string())?;
            frame::encode(&resp).map_err(text)
        }
        KIND_SNAPSHOT => {
            let (vote, meta, data): (Vote, SnapshotMeta, SmState) =
                frame::decode(body).map_err(text)?;
            let snapshot = Snapshot {
                meta,
                snapshot: Box::new(data),
            };
            let resp = raft
                .install_full_snapshot(vote, snapshot)
                .await
                .map_err(|e| e.to_string())?;
            frame::encode(&resp).map_err(text)
        }
        other => Err(format!("unknown request kind {other}")),
    }
}

/// Serves an election connection whose channel byte was already read (blocking std stream).
pub(crate) async fn serve_std(raft: Raft, stream: StdTcpStream) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    match TcpStream::from_std(stream) {
        Ok(stream) => serve_rpc(raft, stream).await,
        Err(e) => tracing::warn!("election connection: {e}"),
    }
}

/// Accepts connections on the cluster address and routes each by its channel byte.
pub(crate) async fn accept_loop(listener: TcpListener, raft: Raft, data: Arc<DataHandler>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(route(stream, raft.clone(), Arc::clone(&data)));
            }
            Err(e) => {
                tracing::warn!("cluster address: accept failed: {e}");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

async fn route(mut stream: TcpStream, raft: Raft, data: Arc<DataHandler>) {
    let mut channel = [0u8; 1];
    match tokio::time::timeout(CHANNEL_BYTE_TIMEOUT, stream.read_exact(&mut channel)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) | Err(_) => return,
    }
    match channel[0] {
        CHANNEL_RAFT => serve_rpc(raft, stream).await,
        CHANNEL_DATA => {
            let stream = match stream.into_std() {
                Ok(s) if s.set_nonblocking(false).is_ok() => s,
                _ => return,
            };
            // A thread of its own: the handler may serve the connection right there without
            // holding up the election's runtime.
            let spawned = std::thread::Builder::new()
                .name("keel-data-conn".to_string())
                .spawn(move || data(stream));
            if let Err(e) = spawned {
                tracing::warn!("cluster address: no thread for a data plane connection: {e}");
            }
        }
        other => {
            tracing::warn!("cluster address: unknown channel byte {other:#04x}, connection closed")
        }
    }
}
