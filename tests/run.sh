#!/usr/bin/env bash
# tests/run.sh [unit|e2e|all] - runs the test suites and ends with "N passed, N failed".
# Unit tests: every $BUILD/tests/test_* binary and the driver golden vectors (cmocka).
# End-to-end: every tests/e2e/NN-*.sh, two at a time, each bounded by a timeout, logs kept in
# $BUILD/e2e-logs/ (shown for the failures).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/san}
WHAT=${1:-all}
export BUILD
# ASan: leaks are errors; UBSan: stop at the first report with a stack.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
passed=0
failed=0
failures=()
logs="$BUILD/test-logs"
mkdir -p "$logs"

run_one() { # name, command...
        local name=$1; shift
        local log="$logs/${name//\//_}.log"
        local t0=$SECONDS
        if timeout 300 "$@" >"$log" 2>&1; then
                passed=$((passed + 1))
                printf 'PASS %-40s %3ds\n' "$name" $((SECONDS - t0))
        else
                failed=$((failed + 1))
                failures+=("$name")
                printf 'FAIL %-40s %3ds (log: %s)\n' "$name" $((SECONDS - t0)) "$log"
                tail -n 30 "$log" | sed 's/^/    | /'
        fi
}

if [ "$WHAT" = unit ] || [ "$WHAT" = all ]; then
        for t in "$BUILD"/tests/test_*; do
                [ -x "$t" ] || continue
                run_one "unit/$(basename "$t")" "$t"
        done
        if [ -x "$BUILD/tests/golden" ]; then
                run_one "drivers/golden" "$BUILD/tests/golden" tests/drivers
        fi
        # Fuzzers for a short fixed time (make fuzz runs them longer).
        for h in fuzz_decode fuzz_config fuzz_odsql fuzz_http_query; do
                [ -x "$BUILD/fuzz/$h" ] || continue
                run_one "fuzz/$h" bash tests/fuzz/run.sh "$h" "${FUZZ_SECS:-20}"
        done
fi

if [ "$WHAT" = e2e ] || [ "$WHAT" = all ]; then
        # Two at a time: each test owns its ports and directory.
        mapfile -t scripts < <(ls tests/e2e/[0-9][0-9]-*.sh 2>/dev/null)
        i=0
        while [ $i -lt ${#scripts[@]} ]; do
                pids=()
                names=()
                for k in 0 1; do
                        [ $((i + k)) -lt ${#scripts[@]} ] || break
                        s=${scripts[$((i + k))]}
                        n="e2e/$(basename "$s" .sh)"
                        names+=("$n")
                        ( t0=$SECONDS; timeout 300 bash "$s" >"$logs/${n//\//_}.log" 2>&1; echo "$? $((SECONDS - t0))" >"$logs/${n//\//_}.rc" ) &
                        pids+=($!)
                done
                for k in "${!pids[@]}"; do
                        wait "${pids[$k]}"
                        n=${names[$k]}
                        read -r rc secs <"$logs/${n//\//_}.rc"
                        if [ "$rc" = 0 ]; then
                                passed=$((passed + 1))
                                printf 'PASS %-40s %3ds\n' "$n" "$secs"
                        else
                                failed=$((failed + 1))
                                failures+=("$n")
                                printf 'FAIL %-40s %3ds rc=%s (log: %s)\n' "$n" "$secs" "$rc" "$logs/${n//\//_}.log"
                                tail -n 40 "$logs/${n//\//_}.log" | sed 's/^/    | /'
                        fi
                done
                i=$((i + 2))
        done
fi

echo
if [ $failed -gt 0 ]; then
        echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
