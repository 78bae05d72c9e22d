//! Examples shown under each `keel replay` subcommand's help (`after_help`).

/// `keel replay info`.
pub const INFO: &str = "\
Examples:
  keel replay info
  keel replay --data-dir /var/lib/keel --json info";

/// `keel replay verify`.
pub const VERIFY: &str = "\
Examples:
  keel replay --data-dir /var/lib/keel verify; echo \"exit $?\"";

/// `keel replay dump`.
pub const DUMP: &str = "\
Examples:
  keel replay dump --from 1 --limit 20
  keel replay dump --kind order --since 2025-01-31T12:00:00Z --json";

/// `keel replay state`.
pub const STATE: &str = "\
Examples:
  keel replay state
  keel replay state --at 5000 book 1
  keel replay --dedup-window 64 state";

/// `keel replay find`.
pub const FIND: &str = "\
Examples:
  keel replay find --query book 1 --field stock --lt 9
  keel replay find --hash 0x1f2e3d4c5b6a7988 --bisect";

/// `keel replay outputs`.
pub const OUTPUTS: &str = "\
Examples:
  keel replay outputs --from 1 --to 100
  keel replay outputs --save before.jsonl";

/// `keel replay diff`.
pub const DIFF: &str = "\
Examples:
  keel replay diff --against before.jsonl
  keel replay diff --other /backup/keel --checkpoint 100000";

/// `keel replay check`.
pub const CHECK: &str = "\
Examples:
  keel replay --data-dir /var/lib/keel check";
