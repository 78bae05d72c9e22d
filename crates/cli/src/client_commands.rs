//! The service's commands as real `keel client` subcommands (`keel client order 7 3 1 1999`,
//! `keel client --app exchange place 1 1 buy 10000 5`), built from the service's own usage
//! text (`App::command_help`), so `keel client --help` lists them, each has its own `--help`,
//! and shells complete them. The words are then parsed by the service (`App::parse_command`).

use crate::engine_args::AppName;
use clap::builder::PossibleValuesParser;
use clap::{Arg, ArgAction, ArgMatches, Command};
use keel::Typed;
use keel_services::bookstore::Bookstore;
use keel_services::exchange::Exchange;
use keel_services::App;
use std::ffi::OsString;

/// One command of a service's usage text: `order CUSTOMER BOOK QUANTITY SEEN_PRICE_CENTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// The command word.
    pub name: &'static str,
    /// Its arguments as the usage text writes them (`BOOK`, `[DEPTH]`, `TITLE...`, `buy|sell`).
    pub args: Vec<&'static str>,
    /// What it does.
    pub about: String,
}

/// The usage text of `app`'s service.
pub fn help_of(app: AppName) -> &'static str {
    match app {
        AppName::Bookstore => Typed::<Bookstore>::command_help(),
        AppName::Exchange => Typed::<Exchange>::command_help(),
    }
}

/// Reads a usage text: one command per line, `NAME ARGS...  description`; an indented line
/// continues the description above.
pub fn specs(help: &'static str) -> Vec<CommandSpec> {
    let mut out: Vec<CommandSpec> = Vec::new();
    for line in help.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with(char::is_whitespace) {
            if let Some(last) = out.last_mut() {
                last.about = format!("{} {}", last.about, line.trim()).trim().to_string();
            }
            continue;
        }
        let (usage, about) = line.split_once("  ").unwrap_or((line, ""));
        let mut words = usage.split_whitespace();
        let Some(name) = words.next() else { continue };
        out.push(CommandSpec {
            name,
            args: words.collect(),
            about: about.trim().to_string(),
        });
    }
    out
}

/// The clap subcommand for one command.
fn subcommand(app: AppName, spec: &CommandSpec) -> Command {
    let mut cmd = Command::new(spec.name)
        .about(spec.about.clone())
        .after_help(example(app, spec))
        .allow_negative_numbers(true);
    for word in &spec.args {
        let optional = word.starts_with('[');
        let bare = word.trim_start_matches('[').trim_end_matches(']');
        let many = bare.ends_with("...");
        let bare = bare.trim_end_matches("...");
        let mut arg = Arg::new(*word).value_name(bare).required(!optional);
        arg = if many {
            arg.action(ArgAction::Append)
                .num_args(1..)
                .allow_hyphen_values(true)
        } else {
            arg.action(ArgAction::Set)
        };
        if bare.contains('|') {
            arg = arg.value_parser(PossibleValuesParser::new(bare.split('|')));
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

/// `Example:\n  keel client order 1 2 3 4`, with the first choice for a choice.
fn example(app: AppName, spec: &CommandSpec) -> String {
    let app_flag = match app {
        AppName::Bookstore => "",
        AppName::Exchange => "--app exchange ",
    };
    let mut line = format!("Example:\n  keel client {app_flag}{}", spec.name);
    let mut number = 0;
    for word in spec.args.iter().filter(|w| !w.starts_with('[')) {
        let bare = word.trim_end_matches("...");
        if let Some((first, _)) = bare.split_once('|') {
            line.push(' ');
            line.push_str(first);
        } else if word.ends_with("...") {
            line.push_str(" Dune");
        } else {
            number += 1;
            line.push_str(&format!(" {number}"));
        }
    }
    line
}

/// Adds `app`'s commands to the `client` subcommand.
pub fn add_to(client: Command, app: AppName) -> Command {
    let commands = specs(help_of(app))
        .iter()
        .map(|s| subcommand(app, s))
        .collect::<Vec<_>>();
    client.subcommands(commands)
}

/// The `--app` the arguments name after `client` (the default when none does), so the right
/// service's commands are defined before parsing.
pub fn app_in_args(args: &[OsString]) -> AppName {
    let mut words = args.iter().filter_map(|a| a.to_str());
    if !words.any(|w| w == "client" || w == "completions") {
        return AppName::Bookstore;
    }
    let mut value = None;
    while let Some(w) = words.next() {
        if w == "--app" {
            value = words.next();
        } else if let Some(v) = w.strip_prefix("--app=") {
            value = Some(v);
        }
    }
    match value {
        Some("exchange") => AppName::Exchange,
        _ => AppName::Bookstore,
    }
}

/// Takes the chosen command out of `keel client`'s matches, as the words the service parses
/// (`["order", "7", "3", "1", "1999"]`); `None` when no command was given.
pub fn take_words(client: &mut ArgMatches) -> Option<Vec<String>> {
    let (name, sub) = client.remove_subcommand()?;
    let mut words = vec![name];
    let mut ids: Vec<(usize, String)> = sub
        .ids()
        .filter_map(|id| Some((sub.index_of(id.as_str())?, id.as_str().to_string())))
        .collect();
    ids.sort_unstable();
    for (_, id) in ids {
        if let Ok(Some(values)) = sub.try_get_many::<String>(&id) {
            words.extend(values.cloned());
        }
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_lines_become_commands() {
        let specs = specs(help_of(AppName::Bookstore));
        let order = specs.iter().find(|s| s.name == "order").expect("order");
        assert_eq!(
            order.args,
            ["CUSTOMER", "BOOK", "QUANTITY", "SEEN_PRICE_CENTS"]
        );
        assert_eq!(order.about, "place an order at the price you saw");
        let exchange = super::specs(help_of(AppName::Exchange));
        assert!(exchange
            .iter()
            .any(|s| s.name == "place" && s.args.contains(&"buy|sell")));
    }

    fn words(app: AppName, args: &[&str]) -> Result<Vec<String>, clap::Error> {
        let mut cmd = add_to(Command::new("client").subcommand_required(true), app);
        let mut m =
            cmd.try_get_matches_from_mut(std::iter::once("client").chain(args.iter().copied()))?;
        Ok(take_words(&mut m).expect("a command"))
    }

    #[test]
    fn subcommands_give_the_words_in_order() {
        let w = words(
            AppName::Bookstore,
            &["add-book", "1", "1999", "10", "The", "Hobbit"],
        );
        assert_eq!(w.unwrap(), ["add-book", "1", "1999", "10", "The", "Hobbit"]);
        let w = words(
            AppName::Exchange,
            &["place", "1", "2", "sell", "100", "5", "ioc"],
        );
        assert_eq!(w.unwrap(), ["place", "1", "2", "sell", "100", "5", "ioc"]);
        let bad = words(AppName::Exchange, &["place", "1", "2", "hold", "100", "5"]);
        let text = bad.unwrap_err().to_string();
        assert!(text.contains("'hold'") && !text.contains("Some("), "{text}");
    }

    #[test]
    fn the_app_is_found_before_parsing() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            app_in_args(&args(&["keel", "client", "--app", "exchange"])),
            AppName::Exchange
        );
        assert_eq!(
            app_in_args(&args(&["keel", "client", "--app=exchange", "book", "1"])),
            AppName::Exchange
        );
        assert_eq!(
            app_in_args(&args(&["keel", "client", "book", "1"])),
            AppName::Bookstore
        );
        assert_eq!(
            app_in_args(&args(&["keel", "serve", "--app", "exchange"])),
            AppName::Bookstore
        );
    }
}
