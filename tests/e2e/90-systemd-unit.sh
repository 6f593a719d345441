#!/usr/bin/env bash
# The systemd unit: Type=notify with watchdog, reload and config check, its own user, and a
# hardening score of at most 2.0 from systemd-analyze security --offline=yes.
. "$(dirname "$0")/lib.sh"

unit=$ROOT/systemd/citypulsed.service
command -v systemd-analyze >/dev/null || fail "systemd-analyze missing (make deps installs systemd)"
out=$(systemd-analyze security --offline=yes "$unit" 2>&1) || true
score=$(echo "$out" | sed -n 's/.*Overall exposure level for citypulsed.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "no score: $out"
python3 -c "import sys; sys.exit(0 if float('$score') <= 2.0 else 1)" || fail "exposure $score > 2.0: $(echo "$out" | grep '✗')"
echo "exposure level $score"
for want in 'Type=notify' 'WatchdogSec=' 'ExecReload=/bin/kill -HUP $MAINPID' 'Restart=on-failure' \
        'User=citypulse' 'StateDirectory=citypulse' 'ExecStartPre=/usr/local/sbin/citypulsed --check-config'; do
        grep -qF "$want" "$unit" || fail "unit lacks $want"
done
grep -q '^u citypulse ' "$ROOT/systemd/citypulse.sysusers" || fail "sysusers"
# make install puts binary, unit, sysusers, tmpfiles, config example and man page in place.
env -u BUILD -u SANITIZE make -s -C "$ROOT" install DESTDIR="$T/root" >"$T/install.log" 2>&1 || fail "make install: $(tail -5 "$T/install.log")"
for f in usr/local/sbin/citypulsed lib/systemd/system/citypulsed.service usr/lib/sysusers.d/citypulse.conf \
        usr/lib/tmpfiles.d/citypulse.conf etc/citypulse/citypulse.conf.example usr/local/share/man/man8/citypulsed.8; do
        [ -e "$T/root/$f" ] || fail "make install did not install /$f"
done
man -l "$T/root/usr/local/share/man/man8/citypulsed.8" 2>/dev/null | grep -q 'check-config' || fail "man page does not render"
echo OK
