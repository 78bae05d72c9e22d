//! The command line as a person meets it: every help screen has an example that parses, no
//! Rust paths or `Debug` output; units parse; the old flag spellings still work; completion
//! scripts generate.

use super::*;
use engine_args::AppName;

/// Every command under `cmd`, with its full name (`keel bench ring`).
fn all_commands(cmd: &clap::Command, prefix: &str, out: &mut Vec<(String, clap::Command)>) {
    let name = format!("{prefix}{}", cmd.get_name());
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        all_commands(sub, &format!("{name} "), out);
    }
    out.push((name, cmd.clone()));
}

fn commands() -> Vec<(String, clap::Command)> {
    let mut out = Vec::new();
    for app in [AppName::Bookstore, AppName::Exchange] {
        let mut cmd = command_for(app);
        cmd.build();
        all_commands(&cmd, "", &mut out);
    }
    out
}

/// The command lines of a help screen's examples (up to a comment, pipe or redirection).
fn example_lines(help: &str) -> Vec<Vec<String>> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("keel "))
        .map(|l| {
            let end = ["  ", " |", " >", ";"]
                .iter()
                .filter_map(|cut| l.find(cut))
                .min()
                .unwrap_or(l.len());
            l[..end].split_whitespace().map(str::to_string).collect()
        })
        .collect()
}

#[test]
fn every_help_has_an_example_and_no_rust_paths_or_debug_output() {
    let path = |text: &str| {
        text.split_whitespace()
            .any(|w| w.contains("::") && w != "keel::net::Client")
    };
    for (name, mut cmd) in commands() {
        let help = cmd.render_long_help().to_string();
        assert!(
            help.contains("Example"),
            "`{name} --help` has no example:\n{help}"
        );
        assert!(!path(&help), "`{name} --help` shows a Rust path:\n{help}");
        assert!(
            !help.contains("Some("),
            "`{name} --help` shows Debug output:\n{help}"
        );
    }
}

#[test]
fn every_example_parses() {
    let mut seen = 0;
    for (name, mut cmd) in commands() {
        for words in example_lines(&cmd.render_long_help().to_string()) {
            let args: Vec<std::ffi::OsString> = words.iter().map(Into::into).collect();
            let app = client_commands::app_in_args(&args);
            if let Err(e) = command_for(app).try_get_matches_from(&words) {
                panic!("an example under `{name} --help` does not parse: {words:?}\n{e}");
            }
            seen += 1;
        }
    }
    assert!(seen > 40, "{seen} examples");
}

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("keel").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn defaults_are_shown_with_units_in_the_form_that_parses() {
    let help = |path: &[&str]| {
        let mut cmd = command_for(AppName::Bookstore);
        for name in path {
            cmd = cmd.find_subcommand(name).expect(name).clone();
        }
        cmd.render_help().to_string()
    };
    let serve = help(&["serve"]);
    for shown in [
        "[default: 60s]",
        "[default: 256KiB]",
        "[default: 1KiB]",
        "[default: 16GiB]",
    ] {
        assert!(serve.contains(shown), "{shown} in\n{serve}");
    }
    let journal = help(&["bench", "journal"]);
    for shown in ["[default: 64,256]", "[default: 2s]", "[default: 256MiB]"] {
        assert!(journal.contains(shown), "{shown} in\n{journal}");
    }
    let Some(Command::Bench(BenchRoot {
        command: Some(BenchCommand::Journal(j)),
    })) = parse(&["bench", "journal"]).command
    else {
        panic!("bench journal")
    };
    assert_eq!((j.payload, j.seconds), (vec![64, 256], 2.0));
    assert_eq!(j.segment_size_bytes, 256 << 20);
}

#[test]
fn old_spellings_are_hidden_aliases_of_the_new_ones() {
    let ring = |args: &[&str]| match parse(args).command {
        Some(Command::Bench(BenchRoot {
            command: Some(BenchCommand::Pingpong(p)),
        })) => (p.iterations, p.warmup, p.ring_size),
        _ => panic!("pingpong"),
    };
    let new = ring(&[
        "bench",
        "pingpong",
        "--messages",
        "9",
        "--warmup-messages",
        "3",
        "--ring-capacity",
        "64",
    ]);
    let old = ring(&[
        "bench",
        "pingpong",
        "--iterations",
        "9",
        "--warmup",
        "3",
        "--ring-size",
        "64",
    ]);
    assert_eq!(new, (Some(9), Some(3), 64));
    assert_eq!(old, new);
}

#[test]
fn old_journal_and_serve_spellings_still_work() {
    let journal = |args: &[&str]| match parse(args).command {
        Some(Command::Bench(BenchRoot {
            command: Some(BenchCommand::Journal(j)),
        })) => (j.seconds, j.segment_size_bytes, j.payload),
        _ => panic!("journal"),
    };
    assert_eq!(
        journal(&[
            "bench",
            "journal",
            "--seconds",
            "3",
            "--segment-size-bytes",
            "4194304"
        ]),
        journal(&[
            "bench",
            "journal",
            "--duration",
            "3s",
            "--segment-size",
            "4MiB"
        ]),
    );
    assert_eq!(
        journal(&["bench", "journal", "--payload", "64,1KiB"]).2,
        vec![64, 1024]
    );
    let serve = |args: &[&str]| match parse(args).command {
        Some(Command::Serve(s)) => (s.idle_timeout_secs, s.output_limit_bytes),
        _ => panic!("serve"),
    };
    assert_eq!(
        serve(&[
            "serve",
            "--idle-timeout-secs",
            "90",
            "--output-limit-bytes",
            "65536"
        ]),
        serve(&[
            "serve",
            "--idle-timeout",
            "1m30s",
            "--output-limit",
            "64KiB"
        ]),
    );
    let mut cmd = command_for(AppName::Bookstore);
    let help = cmd.render_long_help().to_string()
        + &cmd
            .find_subcommand_mut("serve")
            .unwrap()
            .render_long_help()
            .to_string();
    assert!(!help.contains("segment-size-bytes"), "aliases stay hidden");
}

#[test]
fn completions_generate_for_bash_zsh_and_fish() {
    for shell in [
        completions::ShellName::Bash,
        completions::ShellName::Zsh,
        completions::ShellName::Fish,
    ] {
        let mut out = Vec::new();
        completions::write(shell, &mut command_for(AppName::Bookstore), &mut out);
        let script = String::from_utf8(out).unwrap();
        for word in ["keel", "serve", "replay", "segment-size", "order-status"] {
            assert!(script.contains(word), "{shell:?} script lacks {word}");
        }
    }
}
