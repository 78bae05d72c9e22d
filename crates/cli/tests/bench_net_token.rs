//! `keel bench net --connect` reads the server's token like every other command: `--token` >
//! `--token-file` > `KEEL_TOKEN`; without one it stops before measuring, naming the ways to
//! give it.

mod serve_support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const TOKEN: &str = "bench-s3cret";

fn bench_net(addr: SocketAddr, args: &[&str], env_token: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
    command
        .args(["bench", "net", "--json", "--connect", &addr.to_string()])
        .args(["--rate", "100", "--duration", "200ms", "--warmup", "0"])
        .args(["--connections", "1"])
        .args(args)
        .env_remove("KEEL_TOKEN")
        .stdin(Stdio::null());
    if let Some(token) = env_token {
        command.env("KEEL_TOKEN", token);
    }
    command.output().unwrap()
}

fn assert_ran(out: &Output, how: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{how}: {stderr}");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn bench_net_takes_the_token_from_a_file_or_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let token_file = write(tmp.path(), "token", &format!("{TOKEN}\n"));
    let wrong_file = write(tmp.path(), "wrong", "wrong\n");
    let mut serve = serve_support::bookstore(&tmp.path().join("data"));
    serve
        .args(["--token-file", &token_file])
        .env_remove("KEEL_TOKEN");
    let mut served = serve_support::spawn(serve);
    let addr = served.addr;

    let none = bench_net(addr, &[], None);
    let stderr = String::from_utf8_lossy(&none.stderr);
    assert!(!none.status.success(), "ran without the token");
    assert!(stderr.contains("UNAUTHORIZED"), "{stderr}");
    assert!(stderr.contains("--token-file, KEEL_TOKEN"), "{stderr}");

    assert_ran(&bench_net(addr, &[], Some(TOKEN)), "KEEL_TOKEN");
    let from_file = bench_net(addr, &["--token-file", &token_file], Some("wrong"));
    assert_ran(&from_file, "--token-file over a wrong KEEL_TOKEN");
    let from_flag = bench_net(addr, &["--token", TOKEN, "--token-file", &wrong_file], None);
    assert_ran(&from_flag, "--token over a wrong --token-file");

    let missing = tmp.path().join("missing");
    let out = bench_net(addr, &["--token-file", missing.to_str().unwrap()], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("missing"),
        "{stderr}"
    );

    served.child.kill().unwrap();
    served.child.wait().unwrap();
}
