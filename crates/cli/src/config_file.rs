//! `keel serve --config FILE`: a TOML file of serve flags. Every key is the name of a
//! `keel serve` flag without its dashes (`max-connections = 512`, `data-dir = "/var/lib/keel"`);
//! a flag given on the command line overrides the file's value. The file's keys become flags
//! placed before the command line's, and `keel serve` lets a later flag override an earlier
//! one, so both go through the same parser and checks.

use super::serve::ServeArgs;
use clap::{Args, Command};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// `args` (a whole command line) with the flags of `serve --config FILE` inserted after
/// `serve`; unchanged for other commands or without `--config`.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    if args.get(1).is_none_or(|a| a != "serve") {
        return Ok(args);
    }
    let Some(path) = config_path(&args[2..]) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read the config file {}: {e} (check the path)",
            path.display()
        )
    })?;
    let flags = flags_from_toml(&text, &path)?;
    let mut expanded = args[..2].to_vec();
    expanded.extend(flags);
    expanded.extend(args[2..].iter().cloned());
    Ok(expanded)
}

/// The value of `--config PATH` or `--config=PATH` (before a `--`).
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut args = args.iter().take_while(|a| *a != "--");
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    None
}

/// The flags a config file stands for, checked against `keel serve`'s flags.
pub fn flags_from_toml(text: &str, path: &Path) -> Result<Vec<OsString>, String> {
    let shown = path.display();
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("config file {shown}: not valid TOML: {e}"))?;
    let serve = ServeArgs::augment_args(Command::new("serve"));
    let mut flags = Vec::new();
    for (key, value) in &table {
        let Some(arg) = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "config")
        else {
            let hint = if key.contains('_') {
                format!(
                    " (keys are spelled like the flags: {})",
                    key.replace('_', "-")
                )
            } else {
                " (the keys are the flags of `keel serve --help`, without the dashes)".into()
            };
            return Err(format!("config file {shown}: unknown key {key:?}{hint}"));
        };
        let flag = OsString::from(format!("--{key}"));
        let takes_value = arg.get_action().takes_values();
        match value {
            toml::Value::Boolean(true) if !takes_value => flags.push(flag),
            toml::Value::Boolean(false) if !takes_value => {}
            toml::Value::String(s) => flags.extend([flag, s.into()]),
            toml::Value::Integer(n) => flags.extend([flag, n.to_string().into()]),
            toml::Value::Float(x) => flags.extend([flag, x.to_string().into()]),
            toml::Value::Boolean(b) => flags.extend([flag, b.to_string().into()]),
            other => {
                return Err(format!(
                    "config file {shown}: {key} is a {}, not a string, number or boolean",
                    other.type_str()
                ))
            }
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn keys_become_flags_before_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keel.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7800\"\nmax-connections = 9\nprefault-state = false\n",
        )
        .unwrap();
        let config = path.to_str().unwrap();
        let args = os(&[
            "keel",
            "serve",
            "--config",
            config,
            "--max-connections",
            "3",
        ]);
        let expanded = expand(args).unwrap();
        assert_eq!(
            expanded,
            os(&[
                "keel",
                "serve",
                "--listen",
                "127.0.0.1:7800",
                "--max-connections",
                "9",
                "--config",
                config,
                "--max-connections",
                "3"
            ])
        );
        let untouched = os(&["keel", "client", "--config", "x"]);
        assert_eq!(expand(untouched.clone()).unwrap(), untouched);
    }

    #[test]
    fn a_flag_on_the_command_line_overrides_the_file() {
        use clap::Parser;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keel.toml");
        let file = "listen = \"127.0.0.1:7800\"\nmax-connections = 9\n\
                    metrics-listen = \"127.0.0.1:7801\"\nstats-interval = \"30s\"\n\
                    prefault-state = true\nsnapshot-retain = 5\n";
        std::fs::write(&path, file).unwrap();
        let config = path.to_str().unwrap();
        let args = os(&[
            "keel",
            "serve",
            "--config",
            config,
            "--max-connections",
            "3",
        ]);
        let cli = crate::Cli::try_parse_from(expand(args).unwrap()).unwrap();
        let Some(crate::Command::Serve(serve)) = cli.command else {
            panic!("keel serve");
        };
        assert_eq!(serve.max_connections, 3, "the flag wins");
        assert_eq!(
            serve.listen.to_string(),
            "127.0.0.1:7800",
            "the file fills the rest"
        );
        assert_eq!(serve.metrics_listen.unwrap().to_string(), "127.0.0.1:7801");
        assert_eq!(serve.stats_interval, std::time::Duration::from_secs(30));
        assert!(serve.engine.prefault_state);
        assert_eq!(serve.engine.snapshot_retain, 5);
    }

    #[test]
    fn unknown_and_snake_case_keys_are_refused_by_name() {
        let path = Path::new("keel.toml");
        let err = flags_from_toml("max_connections = 3\n", path).unwrap_err();
        assert!(err.contains("max-connections"), "{err}");
        let err = flags_from_toml("bogus = 3\n", path).unwrap_err();
        assert!(err.contains("\"bogus\""), "{err}");
        let err = flags_from_toml("config = \"other.toml\"\n", path).unwrap_err();
        assert!(err.contains("config"), "{err}");
    }
}
