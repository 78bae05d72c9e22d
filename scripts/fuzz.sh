#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a fixed time and prints executions and findings.
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   scripts/fuzz.sh 300             # every target, 300 s each
#   scripts/fuzz.sh 30 frame_decoder journal_reader
#   FUZZ_MERGE=1 scripts/fuzz.sh    # afterwards, add the inputs that found new coverage to the
#                                   # committed corpus (minimised with libFuzzer's -merge=1)
#
# Only stable Rust is needed: cargo-fuzz's instrumentation flags are unstable options, which
# RUSTC_BOOTSTRAP=1 unlocks on a stable compiler. AddressSanitizer needs a nightly standard
# library, so targets run with `--sanitizer none` (safe Rust: panics, aborts, timeouts and
# out-of-memory are still caught; the journal's mmap code is exercised by the tests instead).
#
# The committed seed corpus (fuzz/corpus/<target>, kept small) is read, never written: new
# inputs go to fuzz/target/corpus-work/<target>. Crashes go to fuzz/artifacts/<target>/; rerun
# one with: RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none -O -a <target> <crash-file>
# (from fuzz/). Exits non-zero if any target found something.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(frame_decoder journal_reader snapshot_reader bookstore_decoder exchange_decoder)
fi
export RUSTC_BOOTSTRAP=1
# Where cargo puts the target binaries (CARGO_TARGET_DIR is honoured, as by cargo itself).
BIN_DIR="${CARGO_TARGET_DIR:-target}/$(rustc -vV | sed -n 's/^host: //p')/release"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

echo "== building the targets (release, debug assertions on, no sanitizer)"
cargo fuzz build --sanitizer none -O -a 2>&1 | tail -n 3

declare -A MAX_LEN=(
    [frame_decoder]=4096 [journal_reader]=8192 [snapshot_reader]=8192
    [bookstore_decoder]=4096 [exchange_decoder]=4096
)
# Replays the artifacts a run added (newest first, at most 20, 5 s each) one by one and
# prints each distinct cause once (panic location and message, allocation failure, timeout)
# with one input.
classify() {
    local target=$1 bin="$BIN_DIR/$1"
    find "artifacts/$target" -type f -printf '%T@ %p\n' | sort -rn | head -n 20 |
        cut -d' ' -f2- | while read -r input; do
            out=$("$bin" -timeout=5 "$input" 2>&1 || true)
            if grep -q "panicked at" <<<"$out"; then
                cause=$(grep -m 1 -oE "panicked at [^ ]+:[0-9]+:[0-9]+:" <<<"$out")
            elif grep -q "memory allocation of" <<<"$out"; then
                cause="allocation failure (out of memory)"
            elif grep -q "libFuzzer: timeout" <<<"$out"; then
                cause="timeout"
            else
                cause=$(grep -m 1 -oE "ERROR: libFuzzer: [a-z -]+" <<<"$out" || echo "unknown")
            fi
            detail=$(grep -m 1 -A 1 "panicked at" <<<"$out" | tail -n 1 || true)
            printf '%s\t%s\t%s\n' "$cause" "$input" "$detail"
        done | sort -t $'\t' -k1,1 -u | while IFS=$'\t' read -r cause input detail; do
            echo "     cause: $cause ${detail:+($detail)}"
            echo "       e.g. fuzz/$input"
        done
}

status=0
summary=()
for target in "${TARGETS[@]}"; do
    work="target/corpus-work/$target"
    mkdir -p "$work" "corpus/$target" "artifacts/$target"
    before=$(find "artifacts/$target" -type f | wc -l)
    log="target/fuzz-$target.log"
    echo "== $target: ${SECONDS_PER_TARGET}s"
    # Fork mode with -ignore_*: the fuzzer keeps going after a finding for the whole time
    # (each finding is saved under artifacts/), so one shallow bug does not hide the rest.
    set +e
    cargo fuzz run --sanitizer none -O -a "$target" "$work" "corpus/$target" -- \
        -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
        -max_total_time="$SECONDS_PER_TARGET" -max_len="${MAX_LEN[$target]:-4096}" \
        -rss_limit_mb=4096 -timeout=10 >"$log" 2>&1
    set -e
    last=$(grep -E '^#[0-9]+: cov' "$log" | tail -n 1 || true)
    execs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
    cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
    crashes=$(grep -o 'oom/timeout/crash: [0-9/]*' <<<"$last" | grep -o '[0-9/]*$' || true)
    after=$(find "artifacts/$target" -type f | wc -l)
    found=$((after - before))
    if [ "$found" -ne 0 ]; then
        status=1
        echo "   FINDINGS: $found inputs saved in fuzz/artifacts/$target/ (log: fuzz/$log)"
        classify "$target" || true  # head may end the pipeline early (SIGPIPE)
    fi
    speed=$(( ${execs:-0} / SECONDS_PER_TARGET ))
    line=$(printf '%-18s execs %11s  exec/s %7s  coverage %5s  oom/timeout/crash %-8s  new artifacts %s' \
        "$target" "${execs:-?}" "$speed" "${cov:-?}" "${crashes:-0/0/0}" "$found")
    echo "   $line"
    summary+=("$line")
    if [ "${FUZZ_MERGE:-0}" = 1 ]; then
        cargo fuzz run --sanitizer none -O -a "$target" "corpus/$target" "$work" -- -merge=1 \
            >"target/merge-$target.log" 2>&1 || true
    fi
done

echo "== summary (${SECONDS_PER_TARGET}s per target)"
printf '%s\n' "${summary[@]}"
exit "$status"
