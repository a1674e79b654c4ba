#!/usr/bin/env bash
# What the pod's process does on SIGTERM with the manifest's arguments: /healthz says
# 503 at once while requests are still served for the drain delay, then it drains.
# Usage: docs/deploy/k8s.sh [path/to/lameduck]   (default target/release/lameduck)
set -euo pipefail
binary=$(realpath "${1:-target/release/lameduck}")
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT; cd "$dir"
"$binary" http --addr 127.0.0.1:8082 --drain-delay 5s --shutdown-timeout 30s > out.txt 2> err.txt &
until grep -q listening out.txt 2>/dev/null; do sleep 0.05; done
status() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:8082$1" || true; }
start=$(date +%s.%N)
at() { printf '%5.1fs  ' "$(echo "$(date +%s.%N) - $start" | bc)"; }
at; echo "readiness probe: $(status /healthz)"
kill -TERM %1; start=$(date +%s.%N); echo "  0.0s  SIGTERM"
for t in 0.1 1 4.5; do
  sleep "$(echo "$t - ($(date +%s.%N) - $start)" | bc)"
  at; echo "readiness probe: $(status /healthz)   GET /: $(status /)"
done
sleep 1
code=$(status /); at; echo "new connection: ${code/000/refused}"
wait %1 && at && echo "exited with 0"
tail -1 out.txt
