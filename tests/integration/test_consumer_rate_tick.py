#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Rate detectors' idle keys in the daemon: the shard workers tick the detect
stage (app.c rate_tick()), so a key that stops sending is reported without
sending another record.

A rate detector keyed per store (interval 2s of event time, [input]
timestamp_field); `rarewatch put` 40 intervals of 4 stores at 15 records per
interval, store s0 stopping after interval 24.

1. One-shard stream, idle_timeout = 1h (the quiet-stream extension is off):
   a drop alert for s0 reaches the file sink, driven only by the other
   stores' event time; s1..s3 never alert; `rarewatch replay` of the same
   input reports the s0 drop too.
2. Two-shard stream, idle_timeout = 1s, every store stopping at once: with
   no further record at all, drop alerts for every store arrive (the quiet
   shard's time follows the wall clock).

Usage: test_consumer_rate_tick.py BUILD_DIR
"""
import contextlib
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from consumer_common import (run, WorkDir, Daemon, binaries, clean_env, put,  # noqa: E402
                             read_output, wait_for)
from rwharness import Moto  # noqa: E402

T0 = 1795003200
STORES = 4
PER = 15          # records per store per interval
INTERVALS = 40
S0_STOPS = 25     # s0 sends in intervals 0..24 only


def detector(idle):
    return f"""
[input]
timestamp_field = ts
[detector.sales]
type = rate
key = store
interval = 2s
idle_timeout = {idle}
"""


def gen(path, s0_stops):
    n = 0
    with open(path, "w") as f:
        for i in range(INTERVALS):
            for j in range(PER):
                for s in range(STORES):
                    if s == 0 and i >= s0_stops:
                        continue
                    rec = {"id": f"r-{n}", "store": f"s{s}", "ts": round(T0 + 2 * i + j * 2 / PER, 3)}
                    f.write(json.dumps(rec) + "\n")
                    n += 1
    return n


def drops(lines):
    """{store: number of _alert lines} for rate drops."""
    got = {}
    for o in lines:
        if "_alert" not in o:
            continue
        for a in o.get("anomalies", []):
            if a.get("detector") == "sales" and a.get("value") == 0:
                got[a["key"]] = got.get(a["key"], 0) + 1
    return got


@contextlib.contextmanager
def daemon_fed(t, moto, env, binaries_, workdir, name, shards, idle, src):
    """A stream of `shards` shards, rarewatchd on it, src put into it."""
    rarewatch, rarewatchd = binaries_
    kin = moto.client("kinesis")
    kin.create_stream(StreamName=name, ShardCount=shards)
    kin.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1})
    d = Daemon(rarewatchd, os.path.join(workdir, name), env, name, extra=detector(idle))
    with d:
        d.start()
        d.wait_log(r"shard .*: worker started", 60, "a shard worker")
        r = put(rarewatch, env, name, src, "--partition-key", "store")
        t.check(f"put into {shards} shard(s): exit 0", r.returncode == 0, r.stderr[-600:])
        yield d
        rc = d.terminate(60)
        t.check("SIGTERM: exit 0", rc == 0, d.log(True)[-2000:])


def main(t):
    build = sys.argv[1]
    rarewatch, rarewatchd = binaries(build)
    with WorkDir("rw-ratetick-", t) as workdir, Moto(iam_auth=True) as moto:
        env = clean_env(moto.env())

        # 1. s0 goes silent, the others continue.
        src = os.path.join(workdir, "silent.ndjson")
        n = gen(src, S0_STOPS)
        conf = os.path.join(workdir, "replay.conf")
        with open(conf, "w") as f:
            f.write(detector("1h"))
        r = subprocess.run([rarewatch, "replay", "-c", conf, "-q", src], capture_output=True, text=True)
        rep = [json.loads(x) for x in r.stdout.splitlines()]
        t.check("replay: exit 0, the s0 drop reported, no other store's",
                r.returncode == 0 and set(drops(rep)) == {"s0"}, (r.returncode, drops(rep), r.stderr[-300:]))

        with daemon_fed(t, moto, env, (rarewatch, rarewatchd), workdir, "rw-ratetick-1", 1, "1h", src) as d:
            try:
                wait_for(lambda: d.alive() and len([o for o in read_output(d.out_dir)[0] if "_alert" not in o]) >= n
                         and "s0" in drops(read_output(d.out_dir)[0]), 120, "the s0 drop alert")
            except Exception as exc:  # noqa: BLE001
                t.check("records delivered and the s0 drop alert", False, exc)
            lines, torn = read_output(d.out_dir)
            got = drops(lines)
            recs = [o for o in lines if "_alert" not in o]
            t.check("every input record once", sorted(o["id"] for o in recs) == sorted(f"r-{i}" for i in range(n)),
                    len(recs))
            t.check("a drop alert for the silent store s0 (which sent nothing more), none for the others",
                    set(got) == {"s0"}, got)
            alerts = [o for o in lines if "_alert" in o]
            t.check("alert lines: derived (no _kinesis), at the event time after s0 stopped",
                    alerts and all("_kinesis" not in o and o["_alert"]["time"] >= "2026-11-18T12:00:50"
                                   for o in alerts), alerts[:2])

        # 2. The whole stream stops.
        src2 = os.path.join(workdir, "quiet.ndjson")
        n2 = gen(src2, INTERVALS)
        with daemon_fed(t, moto, env, (rarewatch, rarewatchd), workdir, "rw-ratetick-2", 2, "1s", src2) as d:
            want = {f"s{s}" for s in range(STORES)}
            try:
                wait_for(lambda: d.alive() and set(drops(read_output(d.out_dir)[0])) == want, 120,
                         "drop alerts for every store")
            except Exception as exc:  # noqa: BLE001
                t.check("drop alerts for every store", False, exc)
            lines, torn = read_output(d.out_dir)
            recs = [o for o in lines if "_alert" not in o]
            t.check("stream stopped: every store's drop alert arrives with no further record",
                    set(drops(lines)) == want and len(recs) == n2, (drops(lines), len(recs), n2))
            t.check("no torn lines", not torn, torn[:3])


if __name__ == "__main__":
    sys.exit(run(main))
