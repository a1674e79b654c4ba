#!/usr/bin/env bash
# The units checked, then their mechanics without systemd as PID 1: systemd-socket-activate
# holds the socket and passes it as fd 3 with LISTEN_FDS/LISTEN_PID, as the .socket unit
# would, and a datagram socket stands in for NOTIFY_SOCKET. The reload and the stop send
# what ExecReload and `systemctl stop` send, to the MAINPID systemd would track.
# Usage: docs/deploy/systemd.sh [path/to/lameduck]   (default target/release/lameduck)
set -euo pipefail
binary=$(realpath "${1:-target/release/lameduck}")
units=$(dirname "$(realpath "$0")")
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT; cd "$dir"
sed "s|/usr/local/bin/lameduck|$binary|" "$units/lameduck.service" > lameduck.service
cp "$units/lameduck.socket" .
systemd-analyze verify ./lameduck.socket ./lameduck.service && echo "systemd-analyze verify: ok"
python3 -c '
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind("notify.sock"); s.settimeout(3)
try:
    while True: print(s.recv(4096).decode().replace("\n", " | "), flush=True)
except OSError: pass' > notify.txt &
until [ -S notify.sock ]; do sleep 0.05; done
NOTIFY_SOCKET=$dir/notify.sock systemd-socket-activate -E NOTIFY_SOCKET -l 127.0.0.1:8081 \
  "$binary" http --shutdown-timeout 30s > stdout.txt 2> stderr.txt &
# Socket activation starts the service on the first connection.
curl -s -o /dev/null --retry 5 --retry-connrefused http://127.0.0.1:8081/
until grep -q READY notify.txt; do sleep 0.05; done
mainpid=$(pgrep -f "$binary http --shutdown-timeout" | head -1)
echo "systemctl reload (ExecReload): kill -USR2 $mainpid"; kill -USR2 "$mainpid"
until grep -q MAINPID notify.txt; do sleep 0.05; done
mainpid=$(grep -o 'MAINPID=[0-9]*' notify.txt | tail -1 | cut -d= -f2)
echo "systemctl stop: kill -TERM $mainpid"; kill -TERM "$mainpid"
while kill -0 "$mainpid" 2>/dev/null; do sleep 0.05; done
wait %1  # the receiver ends 3 s after the last datagram
echo "--- what NOTIFY_SOCKET received (one datagram a line)"; cat notify.txt
echo "--- stdout of both processes"; cat stdout.txt
