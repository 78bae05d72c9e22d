//! `keel serve --metrics-listen ADDR`: `GET /metrics` in the Prometheus text format, served by
//! `tiny_http` on a thread of its own. Each scrape reads the engine's counters once; nothing
//! here touches the engine's threads.

use super::exposition;
use keel::engine::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The running metrics endpoint; stopped when dropped.
pub struct MetricsEndpoint {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
}

impl MetricsEndpoint {
    /// Binds `addr` and serves `metrics` there until dropped.
    pub fn start(addr: SocketAddr, metrics: Metrics) -> Result<Self, String> {
        Self::start_registry(addr, exposition::registry(metrics))
    }

    /// Binds `addr` and serves `registry` there until dropped (a cluster node's:
    /// [`exposition::cluster_registry`]).
    pub fn start_registry(
        addr: SocketAddr,
        registry: prometheus_client::registry::Registry,
    ) -> Result<Self, String> {
        let server = tiny_http::Server::http(addr).map_err(|e| {
            format!("cannot listen for metrics on {addr}: {e} (is the port in use?)")
        })?;
        let local_addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| format!("metrics address {addr} is not an IP address"))?;
        let server = Arc::new(server);
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("keel-metrics".into())
            .spawn(move || serve(&serving, &registry))
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        tracing::info!(%local_addr, "metrics at http://{local_addr}/metrics");
        Ok(MetricsEndpoint {
            server,
            thread: Some(thread),
            local_addr,
        })
    }

    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(server: &tiny_http::Server, registry: &prometheus_client::registry::Registry) {
    for request in server.incoming_requests() {
        let response = match (request.method(), request.url()) {
            (tiny_http::Method::Get, "/metrics") => {
                let content_type = tiny_http::Header::from_bytes(
                    "Content-Type",
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                )
                .expect("a valid header");
                tiny_http::Response::from_string(exposition::encode(registry))
                    .with_header(content_type)
            }
            (tiny_http::Method::Get, _) => {
                tiny_http::Response::from_string("not found: the metrics are at /metrics\n")
                    .with_status_code(404)
            }
            _ => tiny_http::Response::from_string("only GET is served\n").with_status_code(405),
        };
        if let Err(e) = request.respond(response) {
            tracing::debug!(error = %e, "a metrics scrape ended early");
        }
    }
}
