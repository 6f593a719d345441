#!/usr/bin/env bash
# An outside program holds the SQLite database while a QoS 1 stream runs; nothing is lost.
#  A. A long read transaction (WAL: it does not block the writer, but starves checkpoints): the
#     store keeps committing, /readyz stays 200, every acknowledged message is stored once.
#  B. An exclusive lock held for LOCK_S s (longer than the store's 5 s busy timeout): the import
#     gets SQLITE_BUSY and is retried with back-off; live state keeps answering; once the lock goes,
#     every acknowledged message is stored exactly once, and the log tells the operator about the
#     lock in a bounded number of lines (warning, then recovered), not one line per attempt.
# Every expectation is checked and all failures are reported together.
. "$(dirname "$0")/lib.sh"

N=${N:-3000}
LOCK_S=${LOCK_S:-8}
DB=$T/data/citypulse.db

PROBLEMS=()
check() { # description command...
        local what=$1; shift
        if "$@"; then log "ok: $what"; else log "NOT OK: $what"; PROBLEMS+=("$what"); fi
}
wait_secs() { # seconds command... (wall-clock bound)
        local end=$((SECONDS + $1)); shift
        until "$@"; do [ $SECONDS -lt $end ] || return 1; sleep 0.2; done
}
stored_count() { sql "SELECT count(*) FROM readings WHERE sensor_id='$1' AND quantity='entries_total'" 2>/dev/null; }
stored_is() { [ "$(stored_count "$1")" = "$2" ]; }
exactly_once() { # sensor count
        [ "$(sql "SELECT count(*), count(DISTINCT ts_ms), min(value), max(value), sum(value) FROM readings WHERE sensor_id='$1' AND quantity='entries_total'")" = \
          "$2|$2|0.0|$(($2 - 1)).0|$(($2 * ($2 - 1) / 2)).0" ]
}
# Lines after line $1 of the daemon log that talk about the lock.
busy_lines() { tail -n +$(($1 + 1)) "$T/daemon.log" | grep -c -i -E 'locked|busy'; }

# Holds the database from outside: MODE read (a read transaction) or exclusive (BEGIN EXCLUSIVE),
# for SECS seconds; writes "held" to OUT once it has the lock and "released" at the end.
hold_db() { # mode secs out
        python3 - "$DB" "$1" "$2" >"$3" 2>&1 <<'PY' &
import sqlite3, sys, time
db, mode, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
c = sqlite3.connect(db, isolation_level=None, timeout=30)
if mode == "read":
    c.execute("BEGIN")
    n = c.execute("SELECT count(*) FROM readings").fetchone()[0]
else:
    c.execute("BEGIN EXCLUSIVE")
    n = -1
print("held", n, flush=True)
time.sleep(secs)
if mode == "read":
    # Still the same snapshot: the reader really held its transaction all along.
    print("snapshot", c.execute("SELECT count(*) FROM readings").fetchone()[0] == n, flush=True)
c.execute("COMMIT")
print("released", flush=True)
PY
        HOLD_PID=$!
        PIDS+=("$HOLD_PID")
        wait_for 40 grep -q '^held' "$3" || fail "could not take the $1 lock: $(cat "$3")"
}

cat >"$T/facilities.csv" <<CSV
parking_id;name;total_spaces;lat;lon;city;operator
busyr;Parking Lecteur;1000;48.8245;2.2737;Issy-les-Moulineaux;
busyx;Parking Verrou;1000;48.8246;2.2738;Issy-les-Moulineaux;
CSV
cat >"$T/sensors.csv" <<CSV
sensor_id;kind;parking_id;spot_id;district
busyr;facility;busyr;;
busyx;facility;busyx;;
CSV
start_broker "$(free_port)"
write_config "route city/parking/+/counter facility_json" \
        "registry.facilities $T/facilities.csv" "registry.sensors $T/sensors.csv"
start_daemon
wait_ready

# --- A: a long read transaction ---------------------------------------------------------------
log "A: read transaction for ${LOCK_S}s"
hold_db read "$LOCK_S" "$T/hold-read.out"
seq_stream busyr "$N"
not_ready=0
for _ in $(seq 10); do
        sleep 0.3
        [ "$(http_code /readyz)" = 200 ] || not_ready=$((not_ready + 1))
done
check "A: the store commits while an outside reader holds a read transaction ($(stored_count busyr) stored)" \
        [ "$(stored_count busyr)" -gt 0 ]
check "A: /readyz stays 200 under a reader ($not_ready samples not 200)" [ "$not_ready" = 0 ]
seq_wait_acked "$N"
wait_secs 20 stored_is busyr "$N"
check "A: the reader was still holding its snapshot when the stream was stored" \
        bash -c "! grep -q released '$T/hold-read.out'"
log "A: WAL $(stat -c %s "$DB-wal" 2>/dev/null) bytes (checkpoints cannot pass the reader)"
wait "$HOLD_PID"
check "A: the reader kept one snapshot throughout" grep -q '^snapshot True' "$T/hold-read.out"
check "A: every acknowledged message stored exactly once" exactly_once busyr "$N"

# --- B: an exclusive lock, longer than the busy timeout ------------------------------------------
log "B: exclusive lock for ${LOCK_S}s"
lines_before=$(wc -l <"$T/daemon.log")
hold_db exclusive "$LOCK_S" "$T/hold-excl.out"
locked_at=$SECONDS
seq_stream busyx "$N"
codes_ok=0 samples=0 saw_503=0 stored_locked=0
while ! grep -q released "$T/hold-excl.out"; do
        c=$(stored_count busyx)
        grep -q released "$T/hold-excl.out" && break
        [ "${c:-0}" -gt "$stored_locked" ] && stored_locked=$c
        samples=$((samples + 1))
        [ "$(http_code /api/v1/parkings/busyx)$(http_code /api/v1/sensors/busyx)" = 200200 ] && codes_ok=$((codes_ok + 1))
        [ "$(http_code /readyz)" = 503 ] && saw_503=1
        sleep 0.3
        [ $((SECONDS - locked_at)) -lt $((LOCK_S + 10)) ] || break
done
live=$(http /api/v1/sensors/busyx | jget 'int(d["readings"]["entries_total"]["value"])' 2>/dev/null)
check "B: nothing reached the readings table while locked ($stored_locked rows seen)" [ "$stored_locked" = 0 ]
check "B: live endpoints answer 200 while the database is locked ($codes_ok of $samples)" [ "$codes_ok" = "$samples" ]
check "B: live state has the stream while locked (entries_total $live)" [ "${live:-0}" -gt 0 ]
check "B: /readyz said 503 while the store could not write" [ "$saw_503" = 1 ]
released_at=$SECONDS
seq_wait_acked "$N"
wait_secs 30 stored_is busyx "$N"
log "B: stored $(stored_count busyx) of $N, $((SECONDS - released_at)) s after the release"
check "B: every acknowledged message stored exactly once after the lock" exactly_once busyx "$N"
# Whichever writer met the lock first (a journal import or a bucket update) failed and was retried.
ierr=$(http /metrics | awk '$1 == "citypulse_store_import_errors_total" || $1 == "citypulse_bucket_errors_total" {n += $2} END {print n + 0}')
check "B: a write hit the lock and was retried (import and bucket errors: $ierr)" [ "${ierr:-0}" -ge 1 ]
wait_secs 10 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$HTTP_PORT/readyz)\" = 200 ]"
check "B: /readyz back to 200" [ "$(http_code /readyz)" = 200 ]
sleep 1
tail -n +$((lines_before + 1)) "$T/daemon.log" | grep -v -E ' (http|mqtt): ' | head -n 20 | sed 's/^/    log| /'
n=$(busy_lines "$lines_before")
check "B: the log says the database was locked ($n lines)" [ "$n" -ge 1 ]
check "B: ... in a bounded number of lines ($n <= 6)" [ "$n" -le 6 ]
check "B: ... and that the store recovered" \
        bash -c "tail -n +$((lines_before + 1)) '$T/daemon.log' | grep -q 'recovered'"
check "B: no log flood ($(( $(wc -l <"$T/daemon.log") - lines_before )) lines)" \
        [ $(( $(wc -l <"$T/daemon.log") - lines_before )) -le 30 ]

stop_daemon
check "still exactly once after a clean stop" bash -c "$(declare -f sql exactly_once); T='$T'; exactly_once busyr $N && exactly_once busyx $N"
if [ ${#PROBLEMS[@]} -gt 0 ]; then
        printf 'problem: %s\n' "${PROBLEMS[@]}"
        fail "${#PROBLEMS[@]} expectation(s) not met"
fi
echo OK
