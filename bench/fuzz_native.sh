#!/usr/bin/env sh
# cargo fuzz over the compiled record checker, typed decoder and contract check (native/fuzz/):
#   bench/fuzz_native.sh [SECONDS] [TARGET...]    default: 60 s each, targets check decode schema
# Installs cargo-fuzz when it is missing. cargo fuzz needs nightly features (sanitizer
# flags, -Z options): on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them. The corpus a run
# grows is kept in native/fuzz/corpus/<target> (ignored by git) and read again next time,
# after the committed seeds in native/fuzz/seeds/<target>; a crash leaves its input in
# native/fuzz/artifacts/<target> and makes this script exit 1.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-check decode schema}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz_native: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
cd "$here/native"
status=0
for target in $targets; do
    mkdir -p "fuzz/corpus/$target"
    log="fuzz/$target.log"
    echo "fuzz_native: $target for ${seconds}s (log: native/$log)" >&2
    # -max_len: records beyond a few kB add time, not paths; -timeout: a slow input is a bug.
    if cargo fuzz run --release "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -max_len=8192 -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1; then
        result=ok
    else
        result=FAILED
        status=1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
    corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
    echo "$target: $result, $runs runs, $rate/s, coverage $cov edges, corpus $corpus inputs"
    [ "$result" = ok ] || tail -40 "$log" >&2
done
exit $status
