//! What `keel` tells a person when something fails or ends: every I/O error names the address
//! or path it concerns and suggests the likely cause; protocol codes are named and explained;
//! summaries are sentences, never Rust `Debug` output.

use keel::error::Error;
use keel::net::{ClientError, ErrorCode, NetStats};
use std::io;
use std::net::SocketAddr;
use std::path::Path;

/// An I/O error as words ("connection refused"), without the `(os error 111)` suffix when the
/// kind says it all.
fn io_words(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => &text[..at],
        _ => &text,
    };
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}

/// Connecting to a keel server at `addr` failed.
pub fn connect_failed(addr: &str, e: &ClientError) -> String {
    match e {
        ClientError::Io(io) => {
            let hint = match io.kind() {
                io::ErrorKind::ConnectionRefused => {
                    " — is `keel serve` running there? (start one with `keel serve --listen \
                     ADDR`, or point --connect at it)"
                }
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                    " — nothing answered: is the address right, or a firewall in the way?"
                }
                io::ErrorKind::AddrNotAvailable | io::ErrorKind::InvalidInput => {
                    " — write HOST:PORT, e.g. 127.0.0.1:7700"
                }
                _ if io.to_string().contains("lookup") => {
                    " — the host name does not resolve; write HOST:PORT, e.g. 127.0.0.1:7700"
                }
                _ => "",
            };
            format!("connecting to {addr}: {}{hint}", io_words(io))
        }
        ClientError::Server { code, message } => {
            let hint = match *code {
                ErrorCode::UNAUTHORIZED => " — pass the server's token with --token",
                ErrorCode::TOO_MANY_CONNECTIONS => {
                    " — retry later, or raise the server's --max-connections"
                }
                ErrorCode::UNSUPPORTED_PROTOCOL => " — client and server versions differ",
                _ => "",
            };
            format!("{addr} refused the connection: {message} ({code}){hint}")
        }
        ClientError::Closed => format!(
            "{addr} closed the connection during the handshake — is it a keel server, and not \
             another service on that port?"
        ),
        ClientError::Protocol(what) => format!(
            "{addr} does not speak keel's protocol ({what}) — is it a keel server, and not \
             another service on that port?"
        ),
        other => format!("connecting to {addr}: {other}"),
    }
}

/// A request on an open connection to `addr` failed.
pub fn request_failed(addr: &str, e: &ClientError) -> String {
    match e {
        ClientError::Io(io) => format!(
            "lost the connection to {addr}: {} — did the server stop?",
            io_words(io)
        ),
        ClientError::Closed => {
            format!("{addr} closed the connection — did the server stop or restart?")
        }
        other => format!("request to {addr} failed: {other}"),
    }
}

/// What a refusal code means, in a few words.
pub fn code_meaning(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::UNKNOWN_KIND => {
            "the server's service has no message of this kind (wrong --app?)"
        }
        ErrorCode::UNSUPPORTED_VERSION => {
            "the server does not decode this version of the message (older server?)"
        }
        ErrorCode::UNDECODABLE => "the server could not decode the request (wrong --app?)",
        ErrorCode::PAYLOAD_TOO_LARGE => "the request exceeds the server's --max-message-size",
        ErrorCode::SERVER_STOPPING => "the server is shutting down",
        ErrorCode::ALREADY_ANSWERED => {
            "applied before; its reply is no longer held (it was not applied again)"
        }
        ErrorCode::NOT_LEADER => "this node is not the cluster's leader (give every address)",
        _ => "see docs/PROTOCOL.md",
    }
}

/// `refused by the server: UNKNOWN_KIND (32) — …`.
pub fn refused(code: ErrorCode) -> String {
    format!("refused by the server: {code} — {}", code_meaning(code))
}

/// Preparing or opening the data directory `dir` failed at `path`.
pub fn data_dir_failed(dir: &Path, path: &Path, e: &io::Error) -> String {
    let hint = match e.kind() {
        io::ErrorKind::PermissionDenied => " — choose a directory you can write with --data-dir",
        io::ErrorKind::NotFound => " — a parent directory is missing or cannot hold files",
        io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory => {
            " — a file stands where a directory should be"
        }
        io::ErrorKind::ReadOnlyFilesystem => " — the file system is read-only",
        io::ErrorKind::StorageFull => " — the disk is full",
        _ => "",
    };
    format!(
        "--data-dir {}: cannot create {}: {}{hint}",
        dir.display(),
        path.display(),
        io_words(e)
    )
}

/// Starting the engine on data directory `dir` failed.
pub fn engine_failed(dir: &Path, e: &Error) -> String {
    let hint = match e {
        Error::Io(io) if io.kind() == io::ErrorKind::PermissionDenied => {
            " — choose a directory you can write with --data-dir"
        }
        Error::Io(io) if io.kind() == io::ErrorKind::WouldBlock => {
            " — another `keel serve` holds this data directory"
        }
        _ => "",
    };
    format!("starting on --data-dir {}: {e}{hint}", dir.display())
}

/// Binding the listening socket `addr` failed.
pub fn listen_failed(addr: SocketAddr, e: &io::Error) -> String {
    let hint = match e.kind() {
        io::ErrorKind::AddrInUse => {
            " — another program (another `keel serve`?) uses this port; pick another with --listen"
        }
        io::ErrorKind::PermissionDenied => " — ports below 1024 need privileges; use --listen",
        io::ErrorKind::AddrNotAvailable => {
            " — this machine has no such address; use --listen 127.0.0.1:PORT or 0.0.0.0:PORT"
        }
        _ => "",
    };
    format!("listening on {addr}: {}{hint}", io_words(e))
}

/// The network layer's counters as the sentences `keel serve` prints when it stops.
pub fn net_summary(s: &NetStats) -> String {
    let mut out = format!(
        "served {} connection{}, {} request{}, {} response{}",
        s.accepted,
        plural(s.accepted),
        s.requests,
        plural(s.requests),
        s.responses,
        plural(s.responses)
    );
    let problems = [
        (s.rejected, "connections refused (server full)"),
        (s.refused, "requests refused before the engine"),
        (s.responses_dropped, "responses dropped (session gone)"),
        (s.protocol_errors, "protocol errors"),
        (s.unauthorized, "wrong tokens"),
        (s.timeouts, "timeouts"),
        (s.slow_consumers, "slow consumers cut off"),
        (s.closed_mid_frame, "connections ended mid-frame"),
        (s.disconnects, "connections reset"),
        (s.input_full, "input-ring-full pauses"),
        (
            s.foreign_protocol,
            "non-keel clients (HTTP, TLS) answered and closed",
        ),
    ];
    let listed: Vec<String> = problems
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{what}: {n}"))
        .collect();
    if !listed.is_empty() {
        out.push_str("; ");
        out.push_str(&listed.join(", "));
    }
    out
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_codes_are_named_and_explained() {
        let text = refused(ErrorCode::UNKNOWN_KIND);
        assert!(text.contains("UNKNOWN_KIND (32)"), "{text}");
        assert!(!text.contains("ErrorCode("), "{text}");
    }

    #[test]
    fn connection_refused_names_the_address_and_the_likely_cause() {
        let e = ClientError::Io(io::Error::from_raw_os_error(libc::ECONNREFUSED));
        let text = connect_failed("127.0.0.1:7700", &e);
        assert!(
            text.starts_with("connecting to 127.0.0.1:7700: connection refused"),
            "{text}"
        );
        assert!(text.contains("keel serve"), "{text}");
        assert!(!text.contains("os error"), "{text}");
    }

    #[test]
    fn data_dir_errors_name_the_directory() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        let text = data_dir_failed(Path::new("/proc/nope"), Path::new("/proc/nope/journal"), &e);
        assert!(text.starts_with("--data-dir /proc/nope: "), "{text}");
    }

    #[test]
    fn the_stop_summary_is_sentences() {
        let stats = NetStats {
            accepted: 24,
            requests: 1,
            responses: 1,
            timeouts: 2,
            ..NetStats::default()
        };
        let text = net_summary(&stats);
        assert_eq!(
            text,
            "served 24 connections, 1 request, 1 response; timeouts: 2"
        );
    }
}
