#!/usr/bin/env bash
# Model-checks the ring's publication protocol with loom (tests/loom_ring.rs).
# `--cfg loom` switches the ring's atomics and slot cells to loom's (src/ring/sync.rs); it is
# built in its own target subdirectory so the normal build's artifacts stay warm.
# LOOM_MAX_PREEMPTIONS=N widens the search (default in the test: 3).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}/loom"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$target" \
    cargo test --release --test loom_ring "$@"
