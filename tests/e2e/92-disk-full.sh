#!/usr/bin/env bash
# Disk full: data_dir is a small tmpfs, filled up with a filler file while a QoS 1 stream runs.
# While full: live availability keeps answering 200 with values newer than what is stored, /readyz
# says 503, the cause is logged a bounded number of times (not once a message), no busy loop. Once
# the filler is deleted: the daemon catches up and every message the broker acknowledged to the
# publisher is stored exactly once (a message that could not be journaled must not have been
# acknowledged to the broker, which then redelivers it), /readyz is 200 again and says so in the log.
# Every expectation is checked and all failures are reported together (check/soft-fail), so one run
# shows every weakness. Needs root (mount -t tmpfs).
. "$(dirname "$0")/lib.sh"

N=${N:-5000}            # messages in the stream (1000/s)
DISK_KB=${DISK_KB:-4096} # size of the data_dir filesystem
LEFT_KB=${LEFT_KB:-96}   # room left once the filler is written
ID=dfull

[ "$(id -u)" = 0 ] || { echo "SKIP: needs root to mount a tmpfs"; exit 0; }

# The mount is undone before lib.sh's cleanup removes $T: processes first (a busy tmpfs does not
# unmount), then the unmount, then the usual cleanup (which also removes the mount point).
MNT=$T/data
disk_cleanup() {
        local p
        for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
        for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
        if mountpoint -q "$MNT"; then
                [ "${KEEP:-0}" = 1 ] && cp -a "$MNT" "$T/data.kept" 2>/dev/null
                umount "$MNT" 2>/dev/null || umount -l "$MNT"
        fi
        cleanup
}
trap disk_cleanup EXIT
mkdir -p "$MNT"
mount -t tmpfs -o size=${DISK_KB}k,mode=0750 tmpfs "$MNT" || { echo "SKIP: cannot mount a tmpfs"; exit 0; }

PROBLEMS=()
check() { # description command...
        local what=$1; shift
        if "$@"; then log "ok: $what"; else log "NOT OK: $what"; PROBLEMS+=("$what"); fi
}
avail_kb() { df -k --output=avail "$MNT" | tail -n 1 | tr -d ' '; }
readyz_code() { http_code /readyz; }
live_entries() { http /api/v1/sensors/$ID | jget 'int(d["readings"]["entries_total"]["value"])' 2>/dev/null; }
live_free() { http /api/v1/parkings/$ID | jget 'd["data"]["parking"]["free_spaces"]' 2>/dev/null; }
stored_max() { sql "SELECT coalesce(max(value),-1) FROM readings WHERE sensor_id='$ID' AND quantity='entries_total'" 2>/dev/null | cut -d. -f1; }
stored_count() { sql "SELECT count(*) FROM readings WHERE sensor_id='$ID' AND quantity='entries_total'" 2>/dev/null; }
# wait_for with a wall-clock bound (each poll here costs a curl or a sqlite3 start).
wait_secs() { # seconds command...
        local end=$((SECONDS + $1)); shift
        until "$@"; do [ $SECONDS -lt $end ] || return 1; sleep 0.2; done
}
readyz_is() { [ "$(readyz_code)" = "$1" ]; }
stored_is() { [ "$(stored_count)" = "$1" ]; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Lines of the daemon log that name the cause (no space left).
cause_lines() { grep -c -E 'ENOSPC|disk is full|No space left' "$T/daemon.log"; }

cat >"$T/facilities.csv" <<CSV
parking_id;name;total_spaces;lat;lon;city;operator
$ID;Parking Disque Plein;1000;48.8245;2.2737;Issy-les-Moulineaux;
CSV
cat >"$T/sensors.csv" <<CSV
sensor_id;kind;parking_id;spot_id;district
$ID;facility;$ID;;
CSV
start_broker "$(free_port)"
write_config "route city/parking/+/counter facility_json" \
        "registry.facilities $T/facilities.csv" "registry.sensors $T/sensors.csv"
start_daemon
wait_ready

# Leave LEFT_KB: the stream fills the rest within a fraction of a second.
fill_kb=$(( $(avail_kb) - LEFT_KB ))
fallocate -l "${fill_kb}k" "$MNT/filler" 2>/dev/null ||
        dd if=/dev/zero of="$MNT/filler" bs=1k count="$fill_kb" status=none ||
        [ "$(avail_kb)" -le $((LEFT_KB + 64)) ] || fail "cannot write the filler file"
log "filler written, $(avail_kb) KiB left"
log_lines_before=$(wc -l <"$T/daemon.log")

seq_stream $ID "$N"
wait_secs 20 readyz_is 503
check "/readyz says 503 while the disk is full" [ "$(readyz_code)" = 503 ]
log "readyz: $(http /readyz)"
log "full: $(avail_kb) KiB left, stored $(stored_count), journal: $(ls "$MNT/journal" | tr '\n' ' ')"

# Live state is in memory: it keeps answering, with readings newer than those stored.
sampled=0 ok_codes=0 newer=0 prev=-1 monotonic=1
for _ in $(seq 10); do
        sleep 0.3
        c1=$(http_code /api/v1/parkings) c2=$(http_code /api/v1/sensors/$ID) c3=$(http_code /api/v1/parkings/$ID)
        v=$(live_entries) s=$(stored_max)
        sampled=$((sampled + 1))
        [ "$c1$c2$c3" = 200200200 ] && ok_codes=$((ok_codes + 1))
        [ -n "$v" ] && [ -n "$s" ] && [ "$v" -gt "$s" ] && newer=$((newer + 1))
        [ -n "$v" ] && [ "$v" -lt "$prev" ] && monotonic=0
        prev=${v:--1}
done
log "live entries_total=$prev stored max=$(stored_max)"
check "live endpoints answer 200 while full ($ok_codes of $sampled)" [ "$ok_codes" = "$sampled" ]
check "live values are newer than the stored ones while full ($newer of $sampled)" [ "$newer" -ge $((sampled / 2)) ]
check "live values never go back while full" [ "$monotonic" = 1 ]

# The broker acknowledged everything to the publisher (it holds what the daemon did not take).
seq_wait_acked "$N"
check "disk still full after the stream" [ "$(avail_kb)" -le 64 ]
# Idle while full: no busy loop retrying the store or the journal.
t0=$(cpu_ticks "$DAEMON_PID")
sleep 3
t1=$(cpu_ticks "$DAEMON_PID")
log "daemon CPU while full and idle: $((t1 - t0)) ticks in 3 s"
check "no busy loop while full ($((t1 - t0)) ticks in 3 s)" [ $((t1 - t0)) -lt 60 ]
check "/readyz still 503 while full and idle" [ "$(readyz_code)" = 503 ]
log "readyz: $(http /readyz)"
# The cause, once (a warning, maybe a periodic count), not once a message; no flood of other lines.
full_lines=$(( $(wc -l <"$T/daemon.log") - log_lines_before ))
check "the log names the cause (ENOSPC / disk is full): $(cause_lines) lines" [ "$(cause_lines)" -ge 1 ]
check "the cause is logged a bounded number of times ($(cause_lines) <= 4)" [ "$(cause_lines)" -le 4 ]
check "no log flood while full ($full_lines lines)" [ "$full_lines" -le 40 ]
check "no 'recovered' while the disk is still full" \
        bash -c "! tail -n +$((log_lines_before + 1)) '$T/daemon.log' | grep -q 'recovered'"
sed -n "$((log_lines_before + 1)),\$p" "$T/daemon.log" | grep -v -E ' (http|mqtt): ' | head -n 20 | sed 's/^/    log| /'
stored_while_full=$(stored_count)

log "deleting the filler"
rm -f "$MNT/filler"
cause_before=$(cause_lines)
log_lines_freed=$(wc -l <"$T/daemon.log")
freed_at=$SECONDS
# Without any new traffic to nudge it: ready again, and every acknowledged message stored once.
wait_secs 40 readyz_is 200
check "/readyz back to 200 within 40 s of space returning (took $((SECONDS - freed_at)) s)" [ "$(readyz_code)" = 200 ]
log "readyz: $(http /readyz)"
wait_secs 40 stored_is "$N"
log "stored $(stored_count) of $N (was $stored_while_full while full) $((SECONDS - freed_at)) s after space returned, journal: $(ls "$MNT/journal" | tr '\n' ' ')"
got=$(sql "SELECT count(*), count(DISTINCT ts_ms), min(value), max(value), sum(value) FROM readings WHERE sensor_id='$ID' AND quantity='entries_total'")
want="$N|$N|0.0|$((N - 1)).0|$((N * (N - 1) / 2)).0"
check "every acknowledged message stored exactly once after space returned (got $got, want $want)" [ "$got" = "$want" ]
check "the log says it recovered once space returned" \
        bash -c "tail -n +$((log_lines_freed + 1)) '$T/daemon.log' | grep -q 'recovered'"
check "no new cause lines after space returned" [ "$(cause_lines)" = "$cause_before" ]
check "live entries_total is the newest ($(live_entries))" [ "$(live_entries)" = $((N - 1)) ]
check "live free_spaces is the newest ($(http /api/v1/parkings/$ID))" [ "$(live_free)" = $((1000 - (N - 1) % 1000)) ]

stop_daemon
check "still exactly once after a clean stop" \
        [ "$(sql "SELECT count(*), count(DISTINCT ts_ms) FROM readings WHERE sensor_id='$ID' AND quantity='entries_total'")" = "$N|$N" ]
check "journal empty after a clean stop ($(ls "$MNT/journal" | tr '\n' ' '))" \
        bash -c "[ -z \"\$(find '$MNT/journal' -name '*.seg' -size +0)\" ]"

if [ ${#PROBLEMS[@]} -gt 0 ]; then
        printf 'problem: %s\n' "${PROBLEMS[@]}"
        fail "${#PROBLEMS[@]} expectation(s) not met"
fi
echo OK
