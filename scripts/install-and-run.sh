#!/usr/bin/env bash
# Set-up command 1: install what is missing (apt), build, install the
# binaries into /usr/local/bin, and start cellboxd on its embedded defaults
# (SQLite state in /var/lib/cellbox, the built-in `host` template, API on the
# unix socket /run/cellbox/cellbox.sock). Safe to run again: it restarts the
# daemon, and running sandboxes are re-adopted.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
make -j"$(nproc)" build/cellboxd build/cellbox build/cellbox-init
make install PREFIX=/usr/local >/dev/null
STATE=${CELLBOX_STATE_DIR:-/var/lib/cellbox}
SOCK=${CELLBOX_SOCKET:-/run/cellbox/cellbox.sock}
LOG=${CELLBOX_LOG:-/var/log/cellboxd.log}
# TCP on loopback so preview URLs (http://<port>-<id>.localhost:7070/) open in
# a browser on this host; every API request there needs a key. CELLBOX_LISTEN=
# (empty) turns it off.
LISTEN=${CELLBOX_LISTEN-127.0.0.1:7070}
# The running daemon: the one the pid file names, or whoever holds the state
# directory's lock (its pid is in the lock file). Only one cellboxd may use a
# state directory: wait until the old one has exited (a graceful stop lets
# running operations finish, up to ~10 s), or the new one refuses to start.
for pidfile in /run/cellbox/cellboxd.pid "$STATE/cellboxd.lock"; do
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = cellboxd ]; then
    kill "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" && sleep 0.2
  fi
done
mkdir -p /run/cellbox "$STATE"
nohup /usr/local/bin/cellboxd --state-dir "$STATE" --socket "$SOCK" ${LISTEN:+--listen "$LISTEN"} >>"$LOG" 2>&1 &
echo $! > /run/cellbox/cellboxd.pid
for _ in $(seq 100); do
  if curl -sf --unix-socket "$SOCK" http://cellbox/healthz >/dev/null 2>&1; then
    echo "cellboxd is running (pid $(cat /run/cellbox/cellboxd.pid)), API on $SOCK${LISTEN:+ and http://$LISTEN}, log $LOG"
    echo "try:  cellbox run -- python3 -c 'print(\"hello from a sandbox\")'"
    exit 0
  fi
  sleep 0.1
done
echo "cellboxd did not become healthy; last log lines:" >&2
tail -20 "$LOG" >&2
exit 1
