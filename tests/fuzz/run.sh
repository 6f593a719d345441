#!/usr/bin/env bash
# tests/fuzz/run.sh HARNESS SECONDS - runs one libFuzzer harness for a fixed time over a corpus
# seeded from the golden vectors (and the config examples, and tests/fuzz/odsql_seeds). Exit 0 when
# nothing crashed; a crash leaves its input in $BUILD/fuzz/crashes/ (add it to the golden vectors, or
# to the seeds, as a regression case).
set -eu -o pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build/san}
h=$1
secs=${2:-20}
bin=$BUILD/fuzz/$h
corpus=$BUILD/fuzz/corpus-$h
crashes=$BUILD/fuzz/crashes
mkdir -p "$corpus" "$crashes"
case $h in
fuzz_decode)
        # Seed: <driver index><topic length><topic><payload>, from every golden vector.
        python3 - "$corpus" <<'PY'
import os, re, sys
out = sys.argv[1]
names = re.findall(r'^CP_DRIVER\((\w+)\)', open('drivers/drivers.def').read(), re.M)
for i, name in enumerate(names):
    d = os.path.join('tests/drivers', name)
    if not os.path.isdir(d):
        continue
    for f in sorted(os.listdir(d)):
        if not f.endswith('.in'):
            continue
        payload = open(os.path.join(d, f), 'rb').read()
        tf = os.path.join(d, f[:-3] + '.topic')
        topic = open(tf, 'rb').read().strip()[:255] if os.path.exists(tf) else b'city/parking/test/counter'
        with open(os.path.join(out, '%s-%s' % (name, f[:-3])), 'wb') as o:
            o.write(bytes([i, len(topic)]) + topic + payload)
PY
        ;;
fuzz_config)
        cp config/citypulse.conf config/demo/citypulse.conf "$corpus"/ 2>/dev/null || true
        sed 's/^# //' config/citypulse.conf >"$corpus/uncommented.conf"
        ;;
fuzz_odsql)
        # Seed: NUL-separated where, select, order_by, refine, exclude, limit, offset, updated_since,
        # timezone (see tests/fuzz/fuzz_odsql.c).
        cp tests/fuzz/odsql_seeds/* "$corpus"/
        ;;
fuzz_http_query)
        cp tests/fuzz/http_query_seeds/* "$corpus"/
        ;;
esac
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$crashes/$h-" "$corpus" 2>&1 | tail -n 15
