//! `keel client`: send one command from the shell and print the response, or (with no
//! command) many, one per line, from a prompt or standard input (`client_session`).

use super::engine_args::AppName;
use crate::{client_session, messages};
use clap::Args;
use keel::net::{Client, OwnedReply, ReplyStatus};
use keel::Typed;
use keel_services::bookstore::Bookstore;
use keel_services::exchange::Exchange;
use keel_services::App;
use serde_json::{json, Value};
use std::io::Write;

/// Flags of `keel client`.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The service the server runs.
    #[arg(long, value_enum, default_value_t = AppName::Bookstore)]
    pub app: AppName,
    /// Server address; a cluster's client addresses separated by commas (the client finds
    /// the leader, follows its redirects, and after a lost connection or a failover resends
    /// what was not answered, with the same ids).
    #[arg(
        long,
        value_name = "ADDR,...",
        value_delimiter = ',',
        default_value = "127.0.0.1:7700"
    )]
    pub connect: Vec<String>,
    /// Exactly-once client id (1 to 2^63-1); a duplicate of an answered request is never
    /// applied twice. Default: a random one. A later process reusing an id continues with
    /// higher request ids.
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(u64).range(1..1 << 63))]
    pub client_id: Option<u64>,
    /// Shared secret, if the server requires one.
    #[arg(long)]
    pub token: Option<String>,
    /// Read the shared secret from the first line of this file (`--token` wins over it, and
    /// it over the KEEL_TOKEN environment variable).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<std::path::PathBuf>,
    /// Print each response as one JSON object (one per line).
    #[arg(long)]
    pub json: bool,
    /// List the app's commands and exit (the same list as `keel client --help`).
    #[arg(long, hide = true)]
    pub help_commands: bool,
}

/// Runs `keel client` with the command `words` (none: a session of many commands); returns
/// the process exit code (0 accepted, 1 rejected or failed).
pub fn run_client(args: &ClientArgs, words: Option<Vec<String>>) -> Result<i32, String> {
    match args.app {
        AppName::Bookstore => client::<Typed<Bookstore>>(args, words),
        AppName::Exchange => client::<Typed<Exchange>>(args, words),
    }
}

fn client<A: App>(args: &ClientArgs, words: Option<Vec<String>>) -> Result<i32, String> {
    if args.help_commands {
        print_line(&format!("{} commands:\n{}", A::NAME, A::command_help()))?;
        return Ok(0);
    }
    let mut client = connect(args)?;
    let Some(words) = words else {
        return client_session::run::<A>(args, &mut client);
    };
    let command = A::parse_command(&words)?;
    let reply = client
        .request(command.kind, command.version, &command.payload)
        .map_err(|e| messages::request_failed(&args.addresses(), &e))?;
    let answer = Answer::of::<A>(command.kind, &reply, client.session_id());
    let text = if args.json {
        answer.json().to_string()
    } else {
        let body = serde_json::to_string_pretty(&answer.body).unwrap_or_default();
        format!("{}\n{body}", answer.headline())
    };
    print_line(&text)?;
    Ok(answer.code)
}

/// Writes `text` and a line end to `out`: `Ok(true)` when written, `Ok(false)` when the
/// reader has gone (`keel client … | head -1`): a closed pipe ends the output quietly.
pub fn write_line(out: &mut impl Write, text: &str) -> Result<bool, String> {
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(format!("writing standard output: {e}")),
    }
}

/// [`write_line`] on standard output.
fn print_line(text: &str) -> Result<bool, String> {
    write_line(&mut std::io::stdout().lock(), text)
}

/// Connects to `--connect` with the token (`--token`, `--token-file` or `KEEL_TOKEN`); the
/// error names the address and the likely cause.
pub fn connect(args: &ClientArgs) -> Result<Client, String> {
    let token = crate::token::resolve(args.token.as_deref(), args.token_file.as_deref())
        .map_err(|e| e.to_string())?;
    let token = token.as_ref().map(String::as_bytes);
    let mut addrs = Vec::with_capacity(args.connect.len());
    for text in &args.connect {
        let resolved = std::net::ToSocketAddrs::to_socket_addrs(text.as_str())
            .map_err(|e| messages::connect_failed(text, &e.into()))?;
        addrs.extend(resolved.take(1));
    }
    let id = args.client_id.unwrap_or_else(Client::random_client_id);
    Client::connect_exactly_once(&addrs, token, id)
        .map_err(|e| messages::connect_failed(&args.addresses(), &e))
}

impl ClientArgs {
    /// The addresses of `--connect`, as given (for messages).
    pub fn addresses(&self) -> String {
        self.connect.join(",")
    }
}

/// One reply, described for a person: status label, exit code, body.
pub struct Answer {
    /// `accepted`, `rejected: price-changed (reason 3)`, `failed`, `refused by the server: …`.
    pub label: String,
    /// 0 accepted, 1 otherwise.
    pub code: i32,
    /// The service's description of the response.
    pub body: Value,
    /// The reply's sequence.
    pub sequence: u64,
    /// The request's correlation id, echoed by the server.
    pub correlation_id: u64,
}

impl Answer {
    /// Describes `reply` to a request of `kind`.
    pub fn of<A: App>(kind: u16, reply: &OwnedReply, session_id: u64) -> Answer {
        let body = reply
            .as_response(session_id)
            .map(|r| A::describe_response(kind, &r))
            .unwrap_or_else(|| json!(String::from_utf8_lossy(&reply.payload)));
        let (label, code) = match reply.status {
            ReplyStatus::Accepted => ("accepted".to_string(), 0),
            ReplyStatus::Rejected(code) => match body["reason"].as_str() {
                Some(name) => (format!("rejected: {name} (reason {code})"), 1),
                None => (format!("rejected (reason {code})"), 1),
            },
            ReplyStatus::Failed => ("failed (the service panicked)".to_string(), 1),
            ReplyStatus::Refused(code) => (messages::refused(code), 1),
        };
        Answer {
            label,
            code,
            body,
            sequence: reply.sequence,
            correlation_id: reply.correlation_id,
        }
    }

    /// `accepted at sequence 12`; a refusal has no sequence.
    pub fn headline(&self) -> String {
        if self.sequence == 0 {
            self.label.clone()
        } else {
            format!("{} at sequence {}", self.label, self.sequence)
        }
    }

    /// The answer as one JSON object, in the one JSON shape (docs/PROTOCOL.md): a request
    /// refused before the engine has no response to describe, so the server's error goes in
    /// `error`.
    pub fn json(&self) -> Value {
        match &self.body {
            Value::Object(_) => self.body.clone(),
            other => json!({
                "sequence": self.sequence,
                "correlation_id": self.correlation_id,
                "request": Value::Null,
                "status": "refused",
                "reason": Value::Null,
                "reason_code": 0,
                "response": Value::Null,
                "error": match other.as_str() {
                    Some(text) if !text.is_empty() => format!("{}: {text}", self.label),
                    _ => self.label.clone(),
                },
            }),
        }
    }
}
