//! `keel client`: send one command from the shell and print the response.

use super::engine_args::AppName;
use clap::Args;
use keel::engine::Status;
use keel::net::{Client, ReplyStatus};
use keel::Typed;
use keel_services::bookstore::Bookstore;
use keel_services::exchange::Exchange;
use keel_services::App;
use serde_json::{json, Value};

/// Flags of `keel client`.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The service the server runs.
    #[arg(long, value_enum, default_value_t = AppName::Bookstore)]
    pub app: AppName,
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub connect: String,
    /// Shared secret, if the server requires one.
    #[arg(long)]
    pub token: Option<String>,
    /// Read the shared secret from the first line of this file (`--token` wins over it, and
    /// it over the KEEL_TOKEN environment variable).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<std::path::PathBuf>,
    /// Print the response as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// List the app's commands and exit.
    #[arg(long)]
    pub help_commands: bool,
    /// The command and its arguments, e.g. `order 7 3 1 1999`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub words: Vec<String>,
}

/// Runs `keel client`; returns the process exit code (0 accepted, 1 rejected or failed).
pub fn run_client(args: &ClientArgs) -> Result<i32, String> {
    match args.app {
        AppName::Bookstore => client::<Typed<Bookstore>>(args),
        AppName::Exchange => client::<Typed<Exchange>>(args),
    }
}

fn client<A: App>(args: &ClientArgs) -> Result<i32, String> {
    if args.help_commands || args.words.is_empty() {
        println!("{} commands:\n{}", A::NAME, A::command_help());
        return Ok(if args.help_commands { 0 } else { 2 });
    }
    let command = A::parse_command(&args.words)?;
    let token = crate::token::resolve(args.token.as_deref(), args.token_file.as_deref())
        .map_err(|e| e.to_string())?;
    let token = token.as_ref().map(String::as_bytes);
    let mut client = Client::connect(&args.connect, token).map_err(|e| e.to_string())?;
    let reply = client
        .request(command.kind, command.version, &command.payload)
        .map_err(|e| e.to_string())?;
    let body = reply
        .as_response(client.session_id())
        .map(|r| A::describe_response(command.kind, &r))
        .unwrap_or_else(|| json!(String::from_utf8_lossy(&reply.payload)));
    let (label, code) = match reply.status {
        ReplyStatus::Accepted => ("accepted".to_string(), 0),
        ReplyStatus::Rejected(reason) => (format!("rejected (reason {reason})"), 1),
        ReplyStatus::Failed => (format!("{:?}", Status::Failed).to_lowercase(), 1),
        ReplyStatus::Refused(code) => (format!("refused by the server: {code:?}"), 1),
    };
    if args.json {
        let out = match body {
            Value::Object(_) => body,
            // No response to describe (refused before the engine): the same shape, with the
            // server's error in `error`.
            other => json!({
                "sequence": reply.sequence,
                "correlation_id": reply.correlation_id,
                "request": Value::Null,
                "status": "refused",
                "reason": Value::Null,
                "reason_code": 0,
                "response": Value::Null,
                "error": match other.as_str() {
                    Some(text) if !text.is_empty() => format!("{label}: {text}"),
                    _ => label,
                },
            }),
        };
        println!("{out}");
    } else {
        println!("{label} at sequence {}", reply.sequence);
        println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
    }
    Ok(code)
}
