#!/bin/sh
# Start/stop the local AWS emulators for a manual run of rarewatchd.
#   tests/harness/emulators.sh start   # moto (IAM auth on), kinesis-local, dynalite
#   eval "$(tests/harness/emulators.sh env)"
#   tests/harness/emulators.sh stop
# State (PIDs, logs, env.sh) lives in $RAREWATCH_EMULATORS_DIR (default
# /tmp/rarewatch-emulators).  Every emulator listens on 127.0.0.1 only.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
run_dir=${RAREWATCH_EMULATORS_DIR:-/tmp/rarewatch-emulators}
py=${PYTHON:-python3}

case "${1:-}" in
start)
    if [ -f "$run_dir/env.sh" ] && ls "$run_dir"/*.pid >/dev/null 2>&1; then
        echo "emulators.sh: already started (run '$0 stop' first); environment:" >&2
        cat "$run_dir/env.sh"
        exit 0
    fi
    "$here/install-deps.sh" >&2
    shift
    "$py" "$here/rwharness.py" up "$run_dir" "$@"
    ;;
stop)
    if [ -d "$run_dir" ]; then
        "$py" "$here/rwharness.py" down "$run_dir"
        rm -f "$run_dir/env.sh"
    fi
    ;;
env)
    if [ ! -f "$run_dir/env.sh" ]; then
        echo "emulators.sh: not started (run '$0 start')" >&2
        exit 1
    fi
    cat "$run_dir/env.sh"
    ;;
*)
    echo "usage: $0 start [--stream NAME] [--shards N] [--no-iam] | stop | env" >&2
    exit 2
    ;;
esac
