#!/usr/bin/env bash
# mqtt.shared_group: two daemons (own client ids, data dirs and HTTP ports, one group) split a QoS 1
# stream over MQTT v5 shared subscriptions. One of them is stopped (SIGTERM) and restarted mid-stream.
# Every key the broker acknowledged to the publisher is stored exactly once across the two SQLite
# files, none in both, each has a real share. A retained message older than the subscriptions goes to
# neither (MQTT v5 4.8.2; mosquitto 2.0 would send it to every member unless asked not to). A reload
# unsubscribes a removed route in its $share/<group>/ form and keeps the running group.
. "$(dirname "$0")/lib.sh"

N=${N:-3000}
GROUP=cpg
declare -A PID PORT

fail() {
        echo "FAIL: $*"
        local i
        for i in a b; do
                [ -f "$T/$i/daemon.log" ] || continue
                echo "--- instance $i log (tail)"
                tail -n 25 "$T/$i/daemon.log"
        done
        exit 1
}

inst_config() { # name extra-lines...
        local i=$1
        shift
        mkdir -p "$T/$i/data"
        PORT[$i]=${PORT[$i]:-$(free_port)}
        {
                echo "mqtt.host 127.0.0.1"
                echo "mqtt.port $BROKER_PORT"
                echo "mqtt.client_id cp-e2e-$$-$i"
                echo "mqtt.reconnect_max 2s"
                echo "http.listen 127.0.0.1:${PORT[$i]}"
                echo "data_dir $T/$i/data"
                echo "log.level ${LOG_LEVEL:-info}"
                echo "route city/parking/+/counter facility_json"
                for l in "$@"; do echo "$l"; done
        } >"$T/$i/citypulse.conf"
}

start_inst() { # name
        "$CITYPULSED" -c "$T/$1/citypulse.conf" --log=plain >>"$T/$1/daemon.log" 2>&1 &
        PID[$1]=$!
        PIDS+=("${PID[$1]}")
        wait_port "${PORT[$1]}" 20 || fail "instance $1 did not listen on ${PORT[$1]}"
        wait_for 20 curl -sf -o /dev/null "http://127.0.0.1:${PORT[$1]}/readyz" || fail "instance $1 not ready"
}

stop_inst() { # name
        kill -TERM "${PID[$1]}"
        local rc=0
        wait "${PID[$1]}" || rc=$?
        [ "$rc" = 0 ] || fail "instance $1 exited with $rc after SIGTERM"
}

db() { echo "$T/$1/data/citypulse.db"; }
count() { sqlite3 -batch -noheader "$(db "$1")" \
        "SELECT count(*) FROM readings WHERE sensor_id='sg' AND quantity='entries_total'" 2>/dev/null || echo 0; }
all_stored() { [ $(($(count a) + $(count b))) -ge "$N" ]; }

start_broker "$(free_port)"
# A retained reading from before the subscriptions exist, with a key the stream does not use.
old=$(date -u -d '-3 hours' +%Y-%m-%dT%H:%M:%S.000Z)
pub -r -t city/parking/sg/counter -m "{\"facility\":\"sg\",\"total\":1000,\"free\":1,\"entries\":123456,\"timestamp\":\"$old\"}"

inst_config a "mqtt.shared_group $GROUP" "route city/other/+/counter facility_json"
inst_config b "mqtt.shared_group $GROUP"
"$CITYPULSED" --check-config -c "$T/a/citypulse.conf" >/dev/null || fail "--check-config refused a valid config"
start_inst a
start_inst b
for i in a b; do
        grep -q "mqtt: connected .*protocol=v5 shared_group='$GROUP'" "$T/$i/daemon.log" || fail "$i: not connected with v5"
        grep -qF "subscribing filter='\$share/$GROUP/city/parking/+/counter'" "$T/$i/daemon.log" ||
                fail "$i: no shared subscription"
done

seq_stream sg "$N"
sleep 1
log "SIGTERM instance b mid-stream"
stop_inst b
sleep 0.5
start_inst b
seq_wait_acked "$N"
wait_for 60 all_stored || fail "stored a=$(count a) b=$(count b) of $N"
sleep 1 # anything beyond N (a duplicate, the retained reading) would show up now

ca=$(count a)
cb=$(count b)
log "shares: a=$ca b=$cb of $N"
[ "$ca" -ge $((N / 5)) ] && [ "$cb" -ge $((N / 5)) ] || fail "one instance did (almost) all the work: a=$ca b=$cb"
both=$(sqlite3 -batch -noheader "$(db a)" "ATTACH '$(db b)' AS b;
        SELECT count(*) FROM readings x JOIN b.readings y USING (sensor_id, quantity, ts_ms)
        WHERE x.sensor_id='sg' AND x.quantity='entries_total'")
[ "$both" = 0 ] || fail "$both keys stored by both instances"
union=$(sqlite3 -batch -noheader "$(db a)" "ATTACH '$(db b)' AS b;
        SELECT count(*), count(DISTINCT ts_ms), min(value), max(value), sum(value) FROM (
          SELECT ts_ms, value FROM readings WHERE sensor_id='sg' AND quantity='entries_total'
          UNION ALL SELECT ts_ms, value FROM b.readings WHERE sensor_id='sg' AND quantity='entries_total')")
want="$N|$N|0.0|$((N - 1)).0|$((N * (N - 1) / 2)).0"
[ "$union" = "$want" ] || fail "union of both stores $union, want $want (the retained 123456 must not be there)"
# The restarted member got its persistent session back.
[ "$(grep -c 'mqtt: connected .*session_present=1' "$T/b/daemon.log")" -ge 1 ] || fail "b: session not kept"

# Reload of a: the removed route is unsubscribed in its shared form; the group needs a restart.
inst_config a "mqtt.shared_group other"
kill -HUP "${PID[a]}"
wait_for 10 grep -qF "unsubscribing filter='\$share/$GROUP/city/other/+/counter'" "$T/a/daemon.log" ||
        fail "a: removed route not unsubscribed in its \$share form"
grep -q "keys=mqtt.shared_group" "$T/a/daemon.log" || fail "a: no restart warning for mqtt.shared_group"

stop_inst a
stop_inst b
[ $(($(count a) + $(count b))) = "$N" ] || fail "after stop: a=$(count a) b=$(count b)"
! grep -q 'refused' "$T/a/daemon.log" "$T/b/daemon.log" || fail "a refusal in the logs"
echo OK
