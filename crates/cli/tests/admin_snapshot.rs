//! `keel admin snapshot` against a real `keel serve` with a token: the snapshot holds every
//! message sent before it and is durable when the command returns; a wrong token is refused;
//! the token comes from `--token` > `--token-file` > `KEEL_TOKEN`.

mod serve_support;

use keel::net::{Client, ReplyStatus};
use keel_services::bookstore::{AddBook, Payload};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const TOKEN: &str = "s3cret-token";

fn admin_snapshot(addr: SocketAddr, args: &[&str], env_token: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
    command
        .args([
            "admin",
            "snapshot",
            "--json",
            "--connect",
            &addr.to_string(),
        ])
        .args(args)
        .env_remove("KEEL_TOKEN")
        .stdin(Stdio::null());
    if let Some(token) = env_token {
        command.env("KEEL_TOKEN", token);
    }
    command.output().unwrap()
}

fn snapshot_sequence(out: &Output) -> u64 {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["snapshot_sequence"].as_u64().expect("a sequence")
}

fn send_books(addr: SocketAddr, books: std::ops::Range<u32>) {
    let mut client = Client::connect(addr, Some(TOKEN.as_bytes())).unwrap();
    for book in books {
        let c = AddBook {
            book,
            price_cents: 1_000,
            stock: 3,
            title: format!("book {book}"),
        }
        .command();
        let reply = client.request(c.kind, c.version, &c.payload).unwrap();
        assert_eq!(reply.status, ReplyStatus::Accepted);
    }
}

fn snap_file(data: &Path, sequence: u64) -> std::path::PathBuf {
    data.join("snapshots").join(format!("{sequence:020}.snap"))
}

#[test]
fn admin_snapshot_is_durable_holds_what_came_before_and_needs_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let wrong_file = tmp.path().join("wrong");
    std::fs::write(&wrong_file, "wrong\n").unwrap();
    let mut serve = serve_support::bookstore(&data);
    serve
        .arg("--token-file")
        .arg(&token_file)
        .env_remove("KEEL_TOKEN");
    let mut served = serve_support::spawn(serve);
    let addr = served.addr;
    send_books(addr, 0..10);

    // --token-file beats a wrong KEEL_TOKEN; the snapshot follows the 10 messages.
    let file = token_file.to_str().unwrap();
    let out = admin_snapshot(addr, &["--token-file", file], Some("wrong"));
    let first = snapshot_sequence(&out);
    assert_eq!(first, 11, "the request is journaled after the 10 books");
    assert!(snap_file(&data, first).exists(), "durable when answered");

    // KEEL_TOKEN alone works; the next snapshot follows the next messages.
    send_books(addr, 10..12);
    let second = snapshot_sequence(&admin_snapshot(addr, &[], Some(TOKEN)));
    assert_eq!(second, 14);
    assert!(snap_file(&data, second).exists());

    // A wrong token is refused, whatever its source; --token beats --token-file.
    let wrong = wrong_file.to_str().unwrap();
    for (args, env) in [
        (vec![], Some("wrong")),
        (vec!["--token-file", wrong], Some(TOKEN)),
        (vec!["--token", "wrong", "--token-file", file], None),
        (vec![], None),
    ] {
        let out = admin_snapshot(addr, &args, env);
        assert!(!out.status.success(), "{args:?} {env:?} was not refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("UNAUTHORIZED"), "{args:?}: {err}");
    }

    let pid = served.child.id() as libc::pid_t;
    // SAFETY: signalling our own child process by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert!(served.child.wait().unwrap().success());
}

#[test]
fn a_snapshot_replica_serves_snapshot_requests_and_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut serve = serve_support::bookstore(&data);
    serve.arg("--snapshot-replica").env("KEEL_TOKEN", TOKEN);
    let mut served = serve_support::spawn(serve);
    send_books(served.addr, 0..10);
    // Taken by the replica once it has applied the request's sequence, durable when answered.
    let sequence = snapshot_sequence(&admin_snapshot(served.addr, &[], Some(TOKEN)));
    assert_eq!(sequence, 11);
    assert!(snap_file(&data, sequence).exists());
    let pid = served.child.id() as libc::pid_t;
    // SAFETY: signalling our own child process by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert!(served.child.wait().unwrap().success());

    // A plain restart recovers from the replica's snapshots: book 5 is listed already.
    let mut serve = serve_support::bookstore(&data);
    serve.env("KEEL_TOKEN", TOKEN);
    let mut served = serve_support::spawn(serve);
    let mut client = Client::connect(served.addr, Some(TOKEN.as_bytes())).unwrap();
    let again = AddBook {
        book: 5,
        price_cents: 1_000,
        stock: 3,
        title: "book 5".into(),
    }
    .command();
    let reply = client
        .request(again.kind, again.version, &again.payload)
        .unwrap();
    assert!(
        matches!(reply.status, ReplyStatus::Rejected(_)),
        "{reply:?}"
    );
    drop(client);
    let pid = served.child.id() as libc::pid_t;
    // SAFETY: signalling our own child process by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert!(served.child.wait().unwrap().success());
}

#[test]
fn a_snapshot_request_without_a_server_names_the_address() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let out = admin_snapshot(addr, &[], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr.to_string()), "{err}");
}
