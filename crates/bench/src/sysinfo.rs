//! What a benchmark ran on, stated in every result: CPU model, cores, pinning, wait strategy,
//! flush policy, segment preparation and the device that held the journal.

use super::affinity::CoreSet;
use super::report::Hardware;
use super::Pins;
use keel::journal::{FlushPolicy, SegmentPrep};
use serde::Serialize;
use std::path::Path;

/// The environment of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Cores this process may run on.
    pub cores: usize,
    /// Where each thread was pinned, e.g. `journaler=0 logic=1` or `none`.
    pub pinning: String,
    /// Wait strategy of the engine threads.
    pub wait: String,
    /// Journal flush policy in force.
    pub flush: String,
    /// Apply mode of an engine benchmark: `durable` (apply after journaling) or `apply-ahead`;
    /// `None` where no engine runs (the journal alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// How journal segments were prepared (`allocated`, `huge-pages` or `zeroed`; followed by
    /// ` (auto)` when chosen by the flush policy).
    pub segment_prep: String,
    /// The kernel's transparent-huge-page mode (`always`, `madvise` or `never`, from
    /// `/sys/kernel/mm/transparent_hugepage/enabled`): `huge-pages` needs one of the first two.
    pub transparent_hugepage: String,
    /// Journal directory.
    pub journal_dir: String,
    /// Device and file system holding the journal, from `/proc/mounts` (e.g. `/dev/vda ext4`).
    pub journal_device: String,
}

impl RunInfo {
    /// Describes this machine and run. `pins` lists `(thread, core)` pairs; `journal` is the
    /// flush policy and the segment preparation.
    pub fn detect(
        pins: &[(&str, Option<usize>)],
        wait: &str,
        journal: (FlushPolicy, SegmentPrep),
        dir: &Path,
    ) -> Self {
        let hw = Hardware::detect(&CoreSet::detect(), Pins::default());
        let pinned: Vec<String> = pins
            .iter()
            .filter_map(|(name, core)| core.map(|c| format!("{name}={c}")))
            .collect();
        RunInfo {
            cpu_model: hw.cpu_model,
            cores: hw.cores,
            pinning: if pinned.is_empty() {
                "none".into()
            } else {
                pinned.join(" ")
            },
            wait: wait.to_string(),
            flush: journal.0.to_string(),
            mode: None,
            segment_prep: describe_prep(journal.0, journal.1),
            transparent_hugepage: transparent_hugepage_mode(),
            journal_dir: dir.display().to_string(),
            journal_device: device_of(dir),
        }
    }

    /// Two lines for the top of a text report.
    pub fn lines(&self) -> String {
        format!(
            "cpu: {} | cores: {} | pinning: {}\nwait: {} | flush: {}{} | segments: {} | \
             journal: {} on {}\n",
            self.cpu_model,
            self.cores,
            self.pinning,
            self.wait,
            self.flush,
            self.mode
                .as_ref()
                .map_or(String::new(), |m| format!(" ({m})")),
            if self.segment_prep.starts_with("huge-pages") {
                format!("{}, thp {}", self.segment_prep, self.transparent_hugepage)
            } else {
                self.segment_prep.clone()
            },
            self.journal_dir,
            self.journal_device
        )
    }
}

/// The preparation in force under `flush`, marked when `Auto` chose it.
fn describe_prep(flush: FlushPolicy, prep: SegmentPrep) -> String {
    let resolved = prep.resolve(flush);
    if prep == SegmentPrep::Auto {
        format!("{resolved} (auto)")
    } else {
        resolved.to_string()
    }
}

/// The selected mode in `/sys/kernel/mm/transparent_hugepage/enabled` (the bracketed word of
/// e.g. `always [madvise] never`), or `"unknown"`.
pub fn transparent_hugepage_mode() -> String {
    let text = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
    text.ok()
        .as_deref()
        .and_then(selected_word)
        .unwrap_or("unknown")
        .to_string()
}

/// The word in brackets, as sysfs marks the selected choice.
fn selected_word(choices: &str) -> Option<&str> {
    let start = choices.find('[')? + 1;
    let len = choices[start..].find(']')?;
    Some(&choices[start..start + len])
}

/// The device and file-system type of the mount holding `path` (longest mount-point prefix in
/// `/proc/mounts`), or `"unknown"`.
pub fn device_of(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return "unknown".into();
    };
    mounts
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (dev, at, fs) = (words.next()?, words.next()?, words.next()?);
            path.starts_with(at)
                .then(|| (at.len(), format!("{dev} {fs}")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selected_sysfs_choice_is_the_bracketed_word() {
        assert_eq!(selected_word("always [madvise] never\n"), Some("madvise"));
        assert_eq!(selected_word("[always] madvise never"), Some("always"));
        assert_eq!(selected_word("always madvise never"), None);
        assert!(!transparent_hugepage_mode().is_empty());
    }
}
