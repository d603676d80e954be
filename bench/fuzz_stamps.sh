#!/usr/bin/env sh
# Fuzzes the compiled stamp reader (native/src/stamps.rs) for a bounded time, then holds it to
# the Python reference (read_stamps) on every input the fuzzer kept or found failing.
#
#   bench/fuzz_stamps.sh [SECONDS]      default 300; run from anywhere
#
# Needs cargo-fuzz (installed with `cargo install cargo-fuzz` when missing) and the nightly
# features it uses (RUSTC_BOOTSTRAP=1 on a stable toolchain), and the project's .venv
# (./dev setup). The fuzz target is a crate of its own (native/fuzz-stamps), outside the main
# crate's build. Its corpus stays in native/fuzz-stamps/corpus/stamps (not in git), so a
# later run continues from it; crashes go to native/fuzz-stamps/artifacts/stamps.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-300}
py="$here/.venv/bin/python"
corpus="$here/native/fuzz-stamps/corpus/stamps"
artifacts="$here/native/fuzz-stamps/artifacts/stamps"

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
mkdir -p "$corpus" "$artifacts"
"$py" "$here/bench/fuzz_stamps.py" seed "$corpus"
cd "$here/native"
status=0
# One job on a 2-core machine shared with others; inputs up to 64 KiB (thousands of headers).
RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz-stamps stamps "$corpus" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 || status=$?
echo "== the corpus against the Python reference" >&2
"$py" "$here/bench/fuzz_stamps.py" check "$corpus" || status=$?
if [ -n "$(ls -A "$artifacts")" ]; then
    echo "== crash inputs against the Python reference" >&2
    "$py" "$here/bench/fuzz_stamps.py" check "$artifacts" || status=$?
fi
exit "$status"
