#!/usr/bin/env bash
# The plain recipe, under load: `wrk` keeps 32 keep-alive connections busy while the
# binary is replaced (renamed over) and SIGUSR2 is sent, three times; then SIGTERM.
# Usage: docs/deploy/recipe.sh [path/to/lameduck]   (default target/release/lameduck)
set -euo pipefail
new_binary=$(realpath "${1:-target/release/lameduck}")
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT; cd "$dir"
install -m 755 "$new_binary" ./lameduck
./lameduck http --addr 127.0.0.1:8080 --pid-file "$dir/lameduck.pid" > stdout.txt 2> stderr.txt &
until [ -s lameduck.pid ]; do sleep 0.05; done
wrk -t2 -c32 -d6s http://127.0.0.1:8080/ > wrk.txt &
for round in 1 2 3; do
  sleep 1.5
  echo "upgrade $round: pid $(cat lameduck.pid)"
  install -m 755 "$new_binary" ./lameduck.new && mv ./lameduck.new ./lameduck
  kill -USR2 "$(cat lameduck.pid)"
done
wait %2
echo "serving: pid $(cat lameduck.pid); kill -TERM"
kill -TERM "$(cat lameduck.pid)"
while [ -e lameduck.pid ]; do sleep 0.05; done
cat wrk.txt
echo "--- stdout of every process"
cat stdout.txt
echo "--- errors logged: $(grep -c ERROR stderr.txt || true)"
