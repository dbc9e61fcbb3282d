#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""[window.NAME] in the daemon: `rarewatch put` 900 records over six minutes
of event time (3 keys) into a 2-shard moto stream; rarewatchd with a
per-minute window per key delivers to the file sink.

- every input record delivered once, and next to them one derived record
  per (minute, key) whose count equals the records of that minute and key
  (a key lives in one shard, so one shard worker holds its windows);
- the last minute's windows arrive with no further input: the idle tick
  (idle_timeout = 1s) closes them;
- derived records carry no _kinesis provenance, and the checkpoints are the
  shards' last input records (derived lines do not move or hold them);
- the status line (STATUS= to a NOTIFY_SOCKET the test owns) counts the
  windows emitted;
- SIGHUP with a changed window: the reload is rejected naming the window;
- SIGTERM: exit 0.

Usage: test_consumer_windows.py BUILD_DIR
"""
import calendar
import collections
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from consumer_common import (run, WorkDir, Daemon, LineCounter, StatusSocket, binaries, clean_env,  # noqa: E402
                             last_position_per_shard, put, read_output, wait_for)
from rwharness import Moto  # noqa: E402

N = 900
STREAM = "rw-windows"
T0 = 1795003200
WINDOWS = """
[daemon]
status_interval = 100ms
[input]
timestamp_field = ts
[window.per_minute]
size = 1m
key = k
allowed_lateness = 30s
idle_timeout = 1s
aggregates = count, sum(v)
"""


def main(t):
    build = sys.argv[1]
    rarewatch, rarewatchd = binaries(build)
    with WorkDir("rw-windows-", t) as workdir, Moto(iam_auth=True) as moto:
        kin = moto.client("kinesis")
        kin.create_stream(StreamName=STREAM, ShardCount=2)
        kin.get_waiter("stream_exists").wait(StreamName=STREAM, WaiterConfig={"Delay": 1})
        env = clean_env(moto.env())
        src = os.path.join(workdir, "in.ndjson")
        expected = collections.Counter()
        sums = collections.Counter()
        with open(src, "w") as f:
            for i in range(N):
                rec = {"id": f"w-{i}", "k": f"key-{i % 3}", "ts": T0 + i * 0.4, "v": i}
                f.write(json.dumps(rec) + "\n")
                expected[(int(i * 0.4) // 60, rec["k"])] += 1
                sums[(int(i * 0.4) // 60, rec["k"])] += i
        status = StatusSocket(os.path.join(workdir, "notify"))
        d = Daemon(rarewatchd, os.path.join(workdir, "d"), dict(env, NOTIFY_SOCKET=status.path), STREAM,
                   extra=WINDOWS)
        with d:
            d.start()
            d.wait_log(r"shard .*: worker started", 60, "a shard worker")
            r = put(rarewatch, env, STREAM, src)
            t.check("rarewatch put: exit 0", r.returncode == 0, r.stderr[-600:])
            count = LineCounter(d.out_dir)
            total = N + len(expected)
            try:
                wait_for(lambda: d.alive() and count() >= total, 120, f"{total} output lines")
            except Exception as exc:  # noqa: BLE001
                t.check(f"{total} lines delivered", False, f"{exc}; {count()} lines")
            want = f"windows: {len(expected)} emitted, 0 late records, 0 keys evicted"
            t.check("the status line counts the windows",
                    status.wait(lambda st: want in st, 30, "the status line"), status.last())
            d.conf_path.write_text(d.conf_path.read_text().replace("size = 1m", "size = 2m"))
            d.proc.send_signal(signal.SIGHUP)
            try:
                d.wait_log(r"reload rejected.*\[window\.per_minute\] changed", 30, "the reload rejected")
                rejected = True
            except Exception:  # noqa: BLE001
                rejected = False
            t.check("SIGHUP with a changed window: reload rejected, naming it", rejected, d.log(True)[-1500:])
            rc = d.terminate(60)
            t.check("SIGTERM: exit 0", rc == 0, d.log(True)[-2000:])
            lines, torn = read_output(d.out_dir)
            t.check("no torn lines", not torn, torn[:3])
            recs = [o for o in lines if "_window" not in o]
            wins = [o for o in lines if "_window" in o]
            t.check("every input record once", sorted(o["id"] for o in recs) == sorted(f"w-{i}" for i in range(N)),
                    len(recs))
            got = {}
            for w in wins:
                start = calendar.timegm(time.strptime(w["_window"]["start"][:19], "%Y-%m-%dT%H:%M:%S"))
                got[((start - T0) // 60, w["_window"]["key"])] = w
            t.check("one derived record per (minute, key), the last minute's included",
                    len(wins) == len(expected) and set(got) == set(expected), (len(wins), sorted(got)))
            bad = [k for k in expected if k in got and (got[k]["count"] != expected[k] or got[k]["sum_v"] != sums[k])]
            t.check("window counts and sums equal the input", not bad, [(k, got[k], expected[k]) for k in bad[:3]])
            t.check("derived records carry no _kinesis", all("_kinesis" not in w for w in wins), wins[:1])
            cps = d.checkpoints()
            last = last_position_per_shard(recs)
            wrong = {s: cp for s, cp in cps.items()
                     if not cp or int(cp.get("sequence_number", "0")) != last.get(s, (None,))[0]}
            t.check("checkpoints are the shards' last input records", cps and not wrong, wrong)
        status.close()


if __name__ == "__main__":
    sys.exit(run(main))
