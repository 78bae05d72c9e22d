//! Starting `keel serve` from a test: spawn it, read its banner for the address it listens on
//! and its recovery line, and keep everything it prints on stderr.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A running `keel serve` and what it printed.
pub struct Served {
    pub child: Child,
    pub addr: SocketAddr,
    /// The banner's "snapshot at S, R messages replayed, last sequence L".
    pub recovered: String,
    /// Every line printed on stderr so far.
    #[allow(dead_code)] // a module of several test crates: not each reads it
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Served {
    /// The last sequence recovery restored, from the banner.
    #[allow(dead_code)] // a module of several test crates: not each uses every helper
    pub fn recovered_last_sequence(&self) -> u64 {
        let last = self.recovered.split("last sequence ").nth(1);
        last.and_then(|l| l.trim().parse().ok())
            .expect("the banner names the last sequence")
    }
}

/// `keel serve` of the bookstore on an ephemeral loopback port over `data`, with small rings and
/// 1 MiB segments, parking waits and `--flush batch`.
#[allow(dead_code)] // a module of several test crates: not each uses every helper
pub fn bookstore(data: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
    command
        .args(["serve", "--app", "bookstore", "--listen", "127.0.0.1:0"])
        .args(["--wait", "park", "--flush", "batch", "--data-dir"])
        .arg(data)
        .args(["--segment-size-bytes", "1048576"])
        .args(["--ring-capacity", "1024", "--output-ring-capacity", "1024"]);
    command
}

/// Spawns `command` (`keel serve …`) and waits up to 60 s for its banner.
pub fn spawn(mut command: Command) -> Served {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("keel serve starts");
    let (tx, rx) = mpsc::channel();
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let lines = stderr.clone();
    let pipe = child.stderr.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            lines.lock().unwrap().push(line);
        }
    });
    let (mut addr, mut recovered) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while addr.is_none() || recovered.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            panic!("keel serve did not start: {:?}", stderr.lock().unwrap());
        };
        if let Some(at) = line.split("listening on ").nth(1) {
            addr = Some(at.trim().parse().expect("an address"));
        }
        if let Some(at) = line.split("recovered: ").nth(1) {
            recovered = Some(at.trim().to_string());
        }
    }
    Served {
        child,
        addr: addr.unwrap(),
        recovered: recovered.unwrap(),
        stderr,
    }
}
