//! Files of a keel data directory, for tests that copy, damage or inspect them.
#![allow(dead_code)] // a module of several test crates: not each uses every helper

use std::fs;
use std::path::{Path, PathBuf};

/// Copies the tree at `from` into `to` (created), files and folders alike.
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The segment files of the journal in `data/journal`, oldest first.
pub fn segments(data: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(data.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    out.sort();
    out
}
