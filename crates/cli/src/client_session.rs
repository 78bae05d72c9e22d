//! `keel client` with no command: many commands over one connection, one per line.
//!
//! On a terminal it is interactive: a `keel> ` prompt, `help` lists the commands, `quit` (or
//! end of input) leaves. Otherwise it reads standard input and prints exactly one line per
//! command line (blank lines and `#` comments are skipped): the response, as JSON with
//! `--json`, or an `error: …` line for a line that does not parse. The exit status is 0 when
//! every command was accepted, 1 when any was rejected or did not parse. A closed output
//! (`keel client … | head -1`) ends the session: no further command is sent, and the status
//! covers the commands answered.

use crate::client::{write_line, Answer, ClientArgs};
use crate::messages;
use keel::net::Client;
use keel_services::App;
use serde_json::json;
use std::io::{BufRead, IsTerminal, Write};

/// What a line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Skip,
    Help,
    Quit,
    Command(Vec<String>),
}

fn classify(line: &str) -> Line {
    let line = line.trim();
    match line {
        "" => Line::Skip,
        _ if line.starts_with('#') => Line::Skip,
        "help" | "?" => Line::Help,
        "quit" | "exit" | "\\q" => Line::Quit,
        _ => Line::Command(line.split_whitespace().map(str::to_string).collect()),
    }
}

/// Runs the session on standard input until `quit` or end of input.
pub fn run<A: App>(args: &ClientArgs, client: &mut Client) -> Result<i32, String> {
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    if interactive {
        eprintln!(
            "connected to {} ({}); one command per line, `help` lists them, `quit` leaves",
            args.addresses(),
            A::NAME
        );
    }
    let mut session = Session {
        args,
        client,
        interactive,
        worst: 0,
        out: std::io::stdout().lock(),
    };
    let mut input = stdin.lock();
    let mut line = String::new();
    loop {
        if interactive {
            eprint!("keel> ");
        }
        line.clear();
        let read = input
            .read_line(&mut line)
            .map_err(|e| format!("reading standard input: {e}"))?;
        if read == 0 {
            break;
        }
        let open = match classify(&line) {
            Line::Skip => true,
            Line::Quit => break,
            Line::Help => session.help::<A>()?,
            Line::Command(words) => session.command::<A>(&words)?,
        };
        if !open {
            break;
        }
    }
    Ok(session.worst)
}

struct Session<'a, W: Write> {
    args: &'a ClientArgs,
    client: &'a mut Client,
    interactive: bool,
    worst: i32,
    out: W,
}

impl<W: Write> Session<'_, W> {
    /// Prints the command list; `Ok(false)` when the output is closed.
    fn help<A: App>(&mut self) -> Result<bool, String> {
        let text = format!(
            "{} commands:\n{}\nhelp                                      this list\n\
             quit                                      leave (or Ctrl-D)",
            A::NAME,
            A::command_help()
        );
        write_line(&mut self.out, &text)
    }

    /// Sends one command and prints one answer; only a lost connection is an error.
    /// `Ok(false)` when the output is closed: the session sends nothing more.
    fn command<A: App>(&mut self, words: &[String]) -> Result<bool, String> {
        let command = match A::parse_command(words) {
            Ok(command) => command,
            Err(e) => {
                self.worst = self.worst.max(1);
                // Piped: one line per command line. On a terminal: the service's whole text.
                let text = if self.interactive {
                    e.as_str()
                } else {
                    e.lines().next().unwrap_or_default()
                };
                return self.print_error(text);
            }
        };
        let reply = self
            .client
            .request(command.kind, command.version, &command.payload)
            .map_err(|e| messages::request_failed(&self.args.addresses(), &e))?;
        let answer = Answer::of::<A>(command.kind, &reply, self.client.session_id());
        self.worst = self.worst.max(answer.code);
        let text = if self.args.json {
            answer.json().to_string()
        } else if self.interactive {
            let body = serde_json::to_string_pretty(&answer.body).unwrap_or_default();
            format!("{}\n{body}", answer.headline())
        } else {
            format!("{}: {}", answer.headline(), answer.body)
        };
        write_line(&mut self.out, &text)
    }

    fn print_error(&mut self, text: &str) -> Result<bool, String> {
        let line = if self.args.json {
            json!({ "error": text }).to_string()
        } else {
            format!("error: {text}")
        };
        write_line(&mut self.out, &line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_commands_help_quit_or_nothing() {
        assert_eq!(classify("  \n"), Line::Skip);
        assert_eq!(classify("# a comment"), Line::Skip);
        assert_eq!(classify("help\n"), Line::Help);
        assert_eq!(classify("quit"), Line::Quit);
        assert_eq!(
            classify("book  1\n"),
            Line::Command(vec!["book".into(), "1".into()])
        );
    }
}
