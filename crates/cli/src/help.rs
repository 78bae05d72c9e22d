//! Examples shown under each `keel` subcommand's help (`after_help`): one or two command
//! lines a person can paste, using the flags as they are spelled today.

/// `keel` itself.
pub const KEEL: &str = "\
Examples:
  keel                                   serve the bookstore on 127.0.0.1:7700 in ./
  keel serve --data-dir /var/lib/keel --preset production
  keel client order 7 3 1 1999           one command against a running server
  keel client                            an interactive session (one command per line)
  keel replay --data-dir /var/lib/keel info
  keel bench pipeline --rate 200000 --duration 10s
  keel completions bash > ~/.local/share/bash-completion/completions/keel

Sizes take units (64MiB, 4M = 4MiB, 16KiB); durations too (500ms, 10s, 1m30s).
Logging: RUST_LOG=info keel serve (levels: error, warn [default], info, debug, trace).";

/// `keel serve`.
pub const SERVE: &str = "\
Examples:
  keel serve
  keel serve --app exchange --listen 0.0.0.0:7800 --data-dir /var/lib/keel-exchange
  keel serve --preset production --segment-size 64MiB --flush interval:5ms --idle-timeout 5m
  keel serve --node-id 1 --cluster 1=127.0.0.1:7710,2=127.0.0.1:7711,3=127.0.0.1:7712 --listen 127.0.0.1:7700 --data-dir n1";

/// `keel client`.
pub const CLIENT: &str = "\
Examples:
  keel client book 1                              show book 1 (bookstore)
  keel client --json order 7 3 1 1999             place an order, print JSON
  keel client --app exchange --connect 127.0.0.1:7800 place 1 1 buy 10000 5
  keel client                                     interactive: type `help`, `quit`
  printf 'book 1\\nbook 2\\n' | keel client --json  one JSON response per input line

The commands listed are the bookstore's; `keel client --app exchange --help` lists the
exchange's. `keel client COMMAND --help` shows one command's arguments.";

/// `keel bench`.
pub const BENCH: &str = "\
Examples:
  keel bench                                      the canonical bookstore pipeline run
  keel bench ring --messages 10000000 --ring-capacity 4096
  keel bench pipeline --rate 100000 --duration 10s --warmup 2s";

/// `keel bench ring`.
pub const BENCH_RING: &str = "\
Examples:
  keel bench ring
  keel bench ring --messages 20000000 --ring-capacity 1024 --wait yield --no-pin
  keel bench ring --producers 4 --contenders keel,disruptor --wait yield";

/// `keel bench pingpong`.
pub const BENCH_PINGPONG: &str = "\
Examples:
  keel bench pingpong
  keel bench pingpong --messages 500000 --ring-capacity 256 --wait park --no-pin";

/// `keel bench failover`.
pub const BENCH_FAILOVER: &str = "\
Examples:
  keel bench failover --nodes 3 --failovers 10 --json
  keel bench failover --nodes 1,3 --failovers 0 --rate 20000 --closed-loop --duration 10s
  keel bench failover --failovers 3 --ack-policy all --out failover-run";

/// `keel bench pipeline`.
pub const BENCH_PIPELINE: &str = "\
Examples:
  keel bench pipeline --rate 100000 --duration 10s
  keel bench pipeline --rate 0 --messages 2000000          closed loop
  keel bench pipeline --sweep 50000:400000:50000 --p99-bound 500us --out results/
  keel bench pipeline --snapshot-interval-messages 200000 --snapshot-mode none,live,replica";

/// `keel bench journal`.
pub const BENCH_JOURNAL: &str = "\
Examples:
  keel bench journal
  keel bench journal --payload 64,1KiB --batch 1,256 --duration 5s --segment-size 64MiB";

/// `keel bench recovery`.
pub const BENCH_RECOVERY: &str = "\
Examples:
  keel bench recovery --messages 1000000 --tail 10000
  keel bench recovery --no-op --payload 256 --messages 5000000";

/// `keel bench net`.
pub const BENCH_NET: &str = "\
Examples:
  keel bench net --rate 50000 --duration 10s                 against an in-process server
  keel bench net --connect 127.0.0.1:7700 --connections 4 --rate 20000";

/// `keel bench compare`.
pub const BENCH_COMPARE: &str = "\
Examples:
  keel bench compare --messages 2000000
  keel bench compare --rate 100000 --duration 5s --warmup 1s";

/// `keel admin`.
pub const ADMIN: &str = "\
Examples:
  keel admin accept-loss --data-dir /var/lib/keel
  keel admin snapshot --connect 127.0.0.1:7700 --token-file /etc/keel/token";

/// `keel stats` (against `keel serve --metrics-listen ADDR`).
pub const STATS: &str = "\
Examples:
  keel stats --connect 127.0.0.1:9100
  keel stats --connect 127.0.0.1:9100 --json";

/// `keel replay`.
pub const REPLAY: &str = "\
Examples:
  keel replay info
  keel replay --data-dir /var/lib/keel verify
  keel replay --data-dir /var/lib/keel dump --from 100 --limit 20 --json
  keel replay state --at 5000 book 1";

/// `keel completions`.
pub const COMPLETIONS: &str = "\
Examples:
  keel completions bash > ~/.local/share/bash-completion/completions/keel
  keel completions zsh > \"${fpath[1]}/_keel\"
  keel completions fish > ~/.config/fish/completions/keel.fish
  keel completions bash --app exchange                 complete the exchange's client commands";
