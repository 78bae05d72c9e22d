//! `keel serve` stops cleanly on SIGINT (Ctrl-C), SIGTERM (what `kill`, systemd and container
//! runtimes send) and SIGHUP: it stops the network, drains the rings, syncs the journal, writes
//! a final snapshot and exits 0. The restart then replays nothing: the snapshot is at the
//! journal's last sequence.

use keel::journal::verify;
use keel::net::{Client, ReplyStatus};
use keel_services::bookstore::{AddBook, Payload};
mod serve_support;

use serve_support::Served;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

fn serve(data: &Path) -> Served {
    serve_support::spawn(serve_support::bookstore(data))
}

impl Served {
    /// Sends `signal` and waits for the exit. Returns the status and everything printed.
    fn signal(mut self, signal: libc::c_int) -> (ExitStatus, Vec<String>) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child process by its pid.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("keel serve did not stop on signal {signal}");
            }
            thread::sleep(Duration::from_millis(20));
        };
        thread::sleep(Duration::from_millis(100)); // the last stderr lines
        let lines = self.stderr.lock().unwrap().clone();
        (status, lines)
    }
}

/// Adds `n` books, each answered (so each is journaled).
fn add_books(addr: SocketAddr, first: u32, n: u32) {
    let mut client = Client::connect(addr, None).unwrap();
    for book in first..first + n {
        let add = AddBook {
            book,
            price_cents: 1_000,
            stock: 10,
            title: format!("book {book}"),
        };
        let c = add.command();
        let reply = client.request(c.kind, c.version, &c.payload).unwrap();
        assert_eq!(reply.status, ReplyStatus::Accepted);
    }
}

fn stops_cleanly_on(signal: libc::c_int) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = serve(&data);
    assert_eq!(
        server.recovered,
        "snapshot at 0, 0 messages replayed, last sequence 0"
    );
    add_books(server.addr, 0, 25);
    let (status, lines) = server.signal(signal);
    assert!(status.success(), "signal {signal}: {status}: {lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains("stopped cleanly")),
        "signal {signal}: {lines:#?}"
    );
    let report = verify(&data.join("journal")).unwrap();
    assert_eq!(report.last_sequence, 25, "{report}");
    // The final snapshot is at the journal's end: the restart replays nothing.
    let again = serve(&data);
    assert_eq!(
        again.recovered, "snapshot at 25, 0 messages replayed, last sequence 25",
        "signal {signal}"
    );
    add_books(again.addr, 25, 1);
    let (status, _) = again.signal(libc::SIGINT);
    assert!(status.success());
}

#[test]
fn sigterm_is_a_clean_stop() {
    stops_cleanly_on(libc::SIGTERM);
}

#[test]
fn sigint_is_a_clean_stop() {
    stops_cleanly_on(libc::SIGINT);
}

#[test]
fn sighup_is_a_clean_stop() {
    stops_cleanly_on(libc::SIGHUP);
}
