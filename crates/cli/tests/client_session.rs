//! `keel client` against a real `keel serve` process: commands piped on standard input give
//! one response line each over one connection; an HTTP client gets a plain HTTP 400 naming
//! keel's protocol; errors name the address or path and a likely cause; the stop summary is
//! sentences, not `Debug` output.

mod serve_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

fn keel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keel"))
}

/// Runs `keel client ARGS` with `input` on standard input; returns (exit code, stdout, stderr).
fn client(args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = keel()
        .arg("client")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("keel client starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends SIGINT and waits (bounded) for the exit; returns everything printed on stderr.
fn stop(mut served: serve_support::Served) -> Vec<String> {
    let pid = served.child.id() as libc::pid_t;
    // SAFETY: signalling our own child process by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while served.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "keel serve did not stop");
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(100)); // the last stderr lines
    let lines = served.stderr.lock().unwrap().clone();
    lines
}

#[test]
fn piped_commands_get_one_response_line_each_and_http_gets_a_clear_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let served = serve_support::spawn(serve_support::bookstore(&tmp.path().join("data")));
    let addr = served.addr.to_string();

    let input = "add-book 1 1999 10 The Hobbit\n\n# a comment\nbook 1\nno-such-command 3\nbook 1\n";
    let (code, out, err) = client(&["--connect", &addr, "--json"], input);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "one line per command: {out}\n{err}");
    let json: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(json[0]["status"], "accepted", "{out}");
    assert_eq!(json[1]["response"]["title"], "The Hobbit", "{out}");
    assert!(
        json[2]["error"]
            .as_str()
            .unwrap()
            .contains("no-such-command"),
        "{out}"
    );
    assert_eq!(json[3]["sequence"], 3, "one connection, in order: {out}");
    assert_eq!(code, 1, "a line that did not parse makes the exit status 1");

    let (code, out, _) = client(&["--connect", &addr], "book 1\nquit\nbook 1\n");
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "quit ends the session: {out}");
    assert!(out.starts_with("accepted at sequence 4: {"), "{out}");

    let (code, out, _) = client(&["--connect", &addr, "--json", "book", "1"], "");
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["status"],
        "accepted"
    );

    let mut http = TcpStream::connect(served.addr).unwrap();
    http.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    http.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(answer.contains("keel's binary protocol"), "{answer}");

    let lines = stop(served);
    let summary = lines
        .iter()
        .find(|l| l.starts_with("stopping: "))
        .expect("a stop summary");
    assert!(summary.contains("answered and closed: 1"), "{summary}");
    assert!(
        !summary.contains('{') && !summary.contains("NetStats"),
        "{summary}"
    );
    assert!(
        lines.iter().any(|l| l.contains("client speaking HTTP")),
        "{lines:#?}"
    );
}

#[test]
fn errors_name_the_address_or_path_and_a_likely_cause() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (code, _, err) = client(&["--connect", &addr, "book", "1"], "");
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("connecting to {addr}: connection refused")),
        "{err}"
    );
    assert!(err.contains("keel serve"), "{err}");
    assert!(!err.contains("os error"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let out = keel()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("--data-dir {}: cannot create", file.display())),
        "{err}"
    );
}

/// Sends a query and returns its sequence: one more than the messages journaled before it.
fn next_sequence(addr: std::net::SocketAddr) -> u64 {
    let mut client = keel::net::Client::connect(addr, None).unwrap();
    let words = ["book".to_string(), "1".to_string()];
    let c =
        <keel::Typed<keel_services::bookstore::Bookstore> as keel_services::App>::parse_command(
            &words,
        )
        .unwrap();
    client
        .request(c.kind, c.version, &c.payload)
        .unwrap()
        .sequence
}

#[test]
fn a_closed_output_pipe_ends_the_client_quietly_and_sends_nothing_more() {
    let tmp = tempfile::tempdir().unwrap();
    let served = serve_support::spawn(serve_support::bookstore(&tmp.path().join("data")));
    let addr = served.addr.to_string();

    // One command, its output already closed (`keel client book 1 | true`): no panic, the
    // command's own status.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = keel()
        .args([
            "client",
            "--connect",
            &addr,
            "add-book",
            "1",
            "1999",
            "5",
            "Dune",
        ])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(next_sequence(served.addr), 2, "the one command was sent");

    // A session whose reader leaves after the first line (`… | head -1`): the command in
    // flight when it left is the last one sent; the 50 after it never reach the server.
    let mut child = keel()
        .args(["client", "--connect", &addr, "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    stdin.write_all(b"book 1\n").unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(first.contains("\"accepted\""), "{first}");
    drop(stdout);
    stdin.write_all(b"book 1\n").unwrap();
    // The client stops reading once its write fails: later writes may fail too.
    for _ in 0..50 {
        if stdin.write_all(b"book 1\n").is_err() {
            break;
        }
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // 1 the add-book, 2 the first probe, 3 and 4 the session's two commands.
    assert_eq!(
        next_sequence(served.addr),
        5,
        "no command after the closed pipe"
    );
    stop(served);
}

#[test]
fn the_client_takes_several_addresses_and_a_client_id() {
    let tmp = tempfile::tempdir().unwrap();
    let served = serve_support::spawn(serve_support::bookstore(&tmp.path().join("data")));
    // An address nobody listens on, before the server's: the client moves on to the next.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let addrs = format!("{dead},{}", served.addr);
    let args = ["--connect", &addrs, "--client-id", "7", "--json"];
    let (code, out, err) = client(&args, "add-book 1 1999 10 The Hobbit\nbook 1\n");
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    // The same client id again, in a new process: its request ids continue above the first
    // process's, so its requests are new ones, applied.
    let (code, out, err) = client(&args, "add-book 2 2001 10 Dune\n");
    assert_eq!(code, 0, "{out}\n{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["status"], "accepted", "{out}");
    let (code, _, err) = client(&["--connect", &addrs, "--client-id", "0", "book", "1"], "");
    assert_eq!(code, 2, "an invalid client id is a usage error: {err}");
    stop(served);
}
