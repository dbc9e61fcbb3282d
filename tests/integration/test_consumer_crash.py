#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Crash safety of the consumer: `kill -9` rarewatchd at random moments
while it consumes (after the output grew by a random number of lines, the
first time right after its first write), restart it each time; records are
still being put during the first kills.

- at the end no record is missing;
- duplicates stay within the unacknowledged window: at most
  kills x shards x max_inflight_batches x max_records (checkpoint interval 0,
  so every acknowledged batch is checkpointed at once);
- a record cut by a kill (if any) is only ever the last line of a file;
- within each daemon process, each shard's records are in sequence order;
- the last run stops on SIGTERM with exit 0 and checkpoints every shard at
  its last delivered record;
- SIGTERM while the sink cannot write at all: the daemon exits by its
  stop_timeout, checkpoints nothing, and a restart after the sink is fixed
  delivers every record.

Runs against moto's Kinesis (IAM auth on), whose PutRecords is fast enough
to keep records arriving during the kills.

Usage: test_consumer_crash.py BUILD_DIR
"""
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from consumer_common import (run, WorkDir, Daemon, LineCounter, binaries, clean_env,  # noqa: E402
                             last_position_per_shard, order_violations, read_output, rng,
                             summarize, wait_for, write_input)
from rwharness import Moto  # noqa: E402

N = 20000
SHARDS = 4
KILLS = 6
MAX_RECORDS = 200
MAX_INFLIGHT = 2
STREAM = "rw-consumer-crash"


def main(t):
    build = sys.argv[1]
    rarewatch, rarewatchd = binaries(build)
    rand = rng()
    with WorkDir("rw-consumer-crash-", t) as workdir, \
            Moto(iam_auth=True) as moto:
        kin = moto.client("kinesis")
        kin.create_stream(StreamName=STREAM, ShardCount=SHARDS)
        kin.get_waiter("stream_exists").wait(StreamName=STREAM, WaiterConfig={"Delay": 1})
        env = clean_env(moto.env())
        shard_ids = sorted(s["ShardId"] for s in kin.list_shards(StreamName=STREAM)["Shards"])
        src = os.path.join(workdir, "in.ndjson")
        ids = set(write_input(src, N, keys=200, tag="crash"))

        d = Daemon(rarewatchd, os.path.join(workdir, "d"), env, STREAM,
                   kinesis={"max_records": MAX_RECORDS, "max_inflight_batches": MAX_INFLIGHT,
                            "poll_interval": "100ms"})
        count = LineCounter(d.out_dir)
        with d:
            d.start()
            d.wait_log(r"shard .*: worker started", 60, "a shard worker")
            producer = subprocess.Popen(
                [rarewatch, "put", "--stream", STREAM, "--partition-key", "k", "--quiet",
                 "--rate", "4000", src], env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True)
            kills = 0
            kill_points = []
            try:
                for i in range(KILLS):
                    base = count()
                    grow = 1 if i == 0 else rand.randint(300, 2200)
                    wait_for(lambda: d.alive() and count() >= base + grow, 120,
                             f"output to grow by {grow} lines (run {i + 1})",
                             interval=0.002, max_interval=0.005)
                    at = count()
                    d.kill9()
                    kills += 1
                    kill_points.append(at)
                    d.start()
            except Exception as exc:  # noqa: BLE001
                t.check("the daemon keeps consuming between kills", False, exc)
            print(f"# killed with SIGKILL {kills} times, at output line counts {kill_points}",
                  flush=True)
            t.check(f"killed at least 5 times during consumption", kills >= 5, kills)
            perr = producer.communicate(timeout=600)[1]
            t.check("rarewatch put: exit 0", producer.returncode == 0, perr[-400:])

            def all_delivered():
                d.alive()
                lines, _ = read_output(d.out_dir, order="mtime")
                return {o.get("id") for o in lines} >= ids
            try:
                wait_for(all_delivered, 180, "every record delivered", interval=0.2,
                         max_interval=1.0)
            except Exception:  # noqa: BLE001
                pass
            rc = d.terminate(60)
            t.check("last run: SIGTERM: exit 0", rc == 0, f"rc={rc}\n{d.log(True)[-1500:]}")

            lines, torn = read_output(d.out_dir, order="mtime")
            got = {o.get("id") for o in lines}
            missing = len(ids - got)
            uniq, dups = summarize(lines)
            bound = kills * SHARDS * MAX_INFLIGHT * MAX_RECORDS
            print(f"# crash test: {len(lines)} lines, {uniq} unique records, missing {missing}, "
                  f"duplicates {dups} (bound {kills} kills x {SHARDS} shards x {MAX_INFLIGHT} "
                  f"batches x {MAX_RECORDS} records = {bound}); torn lines {len(torn)}",
                  flush=True)
            t.check("no record missing", missing == 0, f"{missing} missing")
            t.check("nothing unexpected delivered", uniq == N and got == ids, f"{uniq} unique")
            t.check(f"duplicates within the unacknowledged window ({dups} <= {bound})",
                    dups <= bound, dups)
            # A torn record must be the file's last bytes (the kill cut a write).
            bad_torn = []
            for f, j, raw in torn:
                data = open(f, "rb").read()
                if not (j == len(data.split(b"\n")) - 1 and not data.endswith(b"\n")):
                    bad_torn.append((f, j, raw))
            t.check("a line cut by a kill is only ever at the end of a file", not bad_torn,
                    bad_torn[:2])
            by_pid = defaultdict(list)
            for o in lines:
                m = re.search(r"rarewatch-.*-(\d+)-\d{8}T\d{6}Z-\d+\.ndjson$", o["_file"])
                by_pid[m.group(1) if m else "?"].append(o)
            viol = []
            for pid, group in by_pid.items():
                group.sort(key=lambda o: o["_file"])  # stable: file order, then line order
                viol += [(pid,) + v for v in order_violations(group)]
            t.check(f"in sequence order per shard within each of the {len(by_pid)} runs",
                    not viol, viol[:3])
            cps = d.checkpoints()
            last = last_position_per_shard(lines)
            wrong = {s: cp for s, cp in cps.items()
                     if not cp or cp.get("state") != "SEQUENCE"
                     or int(cp.get("sequence_number", "0")) != last.get(s, (None,))[0]}
            t.check("every shard checkpointed at its last record",
                    sorted(cps) == shard_ids and not wrong, (sorted(cps), wrong))
            starts = len(re.findall(r"starting at SEQUENCE", d.log()))
            t.check("restarts resumed from checkpoints", starts >= SHARDS, starts)

        stalled_sink_stop(t, rarewatch, rarewatchd, moto, workdir)


def stalled_sink_stop(t, rarewatch, rarewatchd, moto, workdir):
    """SIGTERM while the sink cannot write (a file where the sink's YYYY
    directory must go: ENOTDIR on every attempt): the daemon exits on its own
    by [daemon] stop_timeout, checkpoints nothing it did not deliver, and
    after the sink is fixed a restart delivers every record."""
    import datetime
    stream = "rw-consumer-stalled-stop"
    kin = moto.client("kinesis")
    kin.create_stream(StreamName=stream, ShardCount=2)
    kin.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1})
    env = clean_env(moto.env())
    src = os.path.join(workdir, "stall.ndjson")
    ids = set(write_input(src, 2000, keys=50, tag="stall"))
    r = subprocess.run([rarewatch, "put", "--stream", stream, "--partition-key", "k", "--quiet",
                        src], env=env, capture_output=True, text=True, timeout=300)
    t.check("stalled sink: put 2000: exit 0", r.returncode == 0, r.stderr[-300:])
    d = Daemon(rarewatchd, os.path.join(workdir, "stall"), env, stream)
    d.conf_path.write_text(d.conf_path.read_text().replace("stop_timeout = 30s",
                                                           "stop_timeout = 2s"))
    d.out_dir.mkdir(parents=True, exist_ok=True)
    year = datetime.datetime.now(datetime.timezone.utc).year
    blockers = [d.out_dir / str(y) for y in (year, year + 1)]
    for b in blockers:
        b.write_text("not a directory\n")
    with d:
        d.start()
        d.wait_log(r"cannot write output", 60, "the sink failing")
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        try:
            rc = d.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rc = None
        secs = time.monotonic() - t0
        d.stop_quietly()
        d.proc = None
        print(f"# stalled sink: SIGTERM -> exit {rc} after {secs:.1f} s (stop_timeout 2s)",
              flush=True)
        t.check("stalled sink: exits on its own by the stop timeout", rc is not None and secs < 15,
                f"rc={rc} after {secs:.1f} s")
        cps = {s: cp for s, cp in d.checkpoints().items() if cp and cp.get("state") == "SEQUENCE"}
        t.check("stalled sink: nothing checkpointed (nothing was delivered)", not cps, cps)
        for b in blockers:
            b.unlink()
        count = LineCounter(d.out_dir)
        d.start()
        try:
            wait_for(lambda: d.alive() and count() >= len(ids), 120, "the records after the fix")
        except Exception as exc:  # noqa: BLE001
            t.check("stalled sink: delivered after the fix", False, exc)
        rc = d.terminate(60)
        lines, _ = read_output(d.out_dir)
        got = {o.get("id") for o in lines}
        t.check("stalled sink: after the fix every record delivered, exit 0",
                got >= ids and rc == 0, f"{len(ids - got)} missing, rc={rc}")


if __name__ == "__main__":
    sys.exit(run(main))
