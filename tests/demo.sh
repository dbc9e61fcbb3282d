#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Run rarewatchd's main job locally: start the local emulators (kinesis-local
# for the stream, moto for the AWS services), put sample card transactions
# into a stream with `rarewatch put`, let `rarewatchd` consume them, and show
# what came out. Everything lives under $DEMO_DIR (default /tmp/rarewatch-demo)
# and stops at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO_DIR=${DEMO_DIR:-/tmp/rarewatch-demo}
BUILD=${RW_BUILD_DIR:-$ROOT/build}
N=${DEMO_RECORDS:-20000}

tests/setup.sh
[ -d "$BUILD" ] || meson setup "$BUILD" >/dev/null
meson compile -C "$BUILD" >/dev/null
RW="$BUILD/src/rarewatch/rarewatch"
RWD="$BUILD/src/rarewatchd/rarewatchd"

rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
export RAREWATCH_EMULATORS_DIR="$DEMO_DIR/emulators"
tests/harness/emulators.sh start --stream transactions --shards 2 >"$DEMO_DIR/env.sh"
trap 'kill "$DAEMON" 2>/dev/null; tests/harness/emulators.sh stop >/dev/null 2>&1 || true' EXIT
DAEMON=
# shellcheck disable=SC1091
. "$DEMO_DIR/env.sh"
# moto's Kinesis (IAM-checked signatures) keeps up with tens of thousands of
# records; kinesis-local, used by the resharding tests, slows as a stream grows.
export AWS_ENDPOINT_URL_KINESIS=$RAREWATCH_MOTO_KINESIS_ENDPOINT
python3 - <<'PY'
import boto3, os
k = boto3.client("kinesis", endpoint_url=os.environ["AWS_ENDPOINT_URL_KINESIS"])
k.create_stream(StreamName="transactions", ShardCount=2)
k.get_waiter("stream_exists").wait(StreamName="transactions")
PY

cat >"$DEMO_DIR/rarewatch.conf" <<CONF
[kinesis]
stream = transactions
poll_interval = 200ms
[input]
timestamp_field = ts
[output]
directory = $DEMO_DIR/out
[checkpoint]
directory = $DEMO_DIR/state
[deadletter]
directory = $DEMO_DIR/state/deadletter
# A card spending far more than it usually does.
[detector.amount_spike]
type = zscore
field = amount
key = card
min_samples = 20
# A card used in a country it has not been used in.
[detector.new_country]
type = rare_category
field = country
key = card
min_samples = 30
# Cards rarely change country: a small prior for "never seen before".
alpha = 0.05
alert_threshold = 0.99
CONF
"$RW" check-config -c "$DEMO_DIR/rarewatch.conf"

echo "==> putting $N sample transactions into the stream 'transactions'"
python3 tests/demo/sample.py -n "$N" >"$DEMO_DIR/sample.ndjson"
"$RW" put --stream transactions --partition-key card "$DEMO_DIR/sample.ndjson"

echo "==> rarewatchd consuming (log: $DEMO_DIR/rarewatchd.log)"
"$RWD" -c "$DEMO_DIR/rarewatch.conf" 2>"$DEMO_DIR/rarewatchd.log" &
DAEMON=$!
deadline=$((SECONDS + 120))
count() { cat "$DEMO_DIR"/out/*/*/*/*/*.ndjson 2>/dev/null | wc -l; }
until [ "$(count)" -ge "$N" ]; do
  if [ $SECONDS -ge $deadline ] || ! kill -0 "$DAEMON" 2>/dev/null; then
    echo "demo: only $(count) of $N records arrived; see $DEMO_DIR/rarewatchd.log" >&2
    exit 1
  fi
  sleep 0.5  # polling the output for the demo's progress display, not synchronising a test
done
kill -TERM "$DAEMON"
wait "$DAEMON"
DAEMON=
echo "==> $(count) records delivered to $DEMO_DIR/out; the first two:"
cat "$DEMO_DIR"/out/*/*/*/*/*.ndjson | awk 'NR <= 2'
echo "==> checkpoints:"
cat "$DEMO_DIR"/state/checkpoints/transactions/*.json
echo "==> rare events found (injected into the sample: $(grep -c injected "$DEMO_DIR/sample.ndjson")):"
cat "$DEMO_DIR"/out/*/*/*/*/*.ndjson | python3 tests/demo/summary.py
