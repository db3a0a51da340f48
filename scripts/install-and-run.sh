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
if [ -f /run/cellbox/cellboxd.pid ] && kill -0 "$(cat /run/cellbox/cellboxd.pid)" 2>/dev/null; then
  kill "$(cat /run/cellbox/cellboxd.pid)"; sleep 0.5
fi
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
