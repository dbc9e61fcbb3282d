#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Consumer benchmark (kinesis-local, boto3 producers, the real rarewatchd).

1. Memory under a stalled sink: 64 shards; the output directory is a tiny
   tmpfs mounted here (needs root), so once it is full every write fails
   with ENOSPC and nothing is acknowledged.  Records (1 KiB each) keep
   arriving at a steady rate; VmRSS of rarewatchd is sampled from
   /proc/PID/status and its peak reported per time window.  It must stay
   bounded (shards stop polling at max_inflight_batches) instead of growing
   with what was put.  Then the tmpfs is grown: the backlog drains, every
   record arrives (at least once), and the drain rate is reported.
2. Latency: 4 shards, 1,000 records/s, poll_interval 200 ms; each record
   carries its send time (taken just before its PutRecords call); the
   output files are tailed every few milliseconds and each line's delivery
   time is when it was first seen.  p50/p90/p99/max of put -> file sink.
   Expectation: p99 < 400 ms.  Against moto at 1,000/s; against kinesis-local
   at a rate it sustains with a consumer polling it (250/s), since it
   saturates well below 1,000/s on 2 cores.  A plain boto3 GetRecords loop
   with the same poll interval is measured as the baseline.
3. Throughput of one shard draining a backlog (moto): records/s and MiB/s,
   against Kinesis' 2 MiB/s per-shard read limit the worker paces itself to.

Prints tables, then "N passed, N failed"; exits 1 when a check fails.

Usage: consumer_bench.py BUILD_DIR [--rss-seconds S] [--latency-seconds S]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
from consumer_common import (run, Daemon, LineCounter, WorkDir, binaries,  # noqa: E402
                             kinesis_local_env, output_files, read_output, summarize, wait_for)
from rwharness import KinesisLocal, Moto  # noqa: E402


def rss_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


class Producer(threading.Thread):
    """Puts `rate` records/s (batches every `tick` s, paced by schedule, not
    by sleeping to synchronise) until stop is set or `total` were sent."""

    def __init__(self, client, stream, rate, tag, pad=0, total=None, tick=0.02, keys=512):
        super().__init__(daemon=True)
        self.client, self.stream, self.rate, self.tag = client, stream, rate, tag
        self.pad = "x" * pad
        self.total = total
        self.tick = tick
        self.keys = keys
        self.stop = threading.Event()
        self.sent = 0
        self.failed = 0
        self.late = 0.0  # how far behind schedule it fell at worst
        self.error = None
        self.ids = []
        self.acked = {}  # id -> when its PutRecords call returned
        self.call_ms = []

    def run(self):
        per_tick = max(1, round(self.rate * self.tick))
        t0 = time.monotonic()
        k = 0
        try:
            while not self.stop.is_set() and (self.total is None or self.sent < self.total):
                due = t0 + k * self.tick
                now = time.monotonic()
                if due > now:
                    # Pacing a load generator: the schedule, not a synchronisation.
                    self.stop.wait(due - now)
                    continue
                self.late = max(self.late, now - due)
                n = per_tick if self.total is None else min(per_tick, self.total - self.sent)
                sent_at = time.time()
                recs = []
                for j in range(n):
                    i = self.sent + j
                    rid = f"{self.tag}-{i}"
                    body = {"id": rid, "sent": sent_at}
                    if self.pad:
                        body["pad"] = self.pad
                    recs.append({"Data": json.dumps(body, separators=(",", ":")).encode(),
                                 "PartitionKey": f"k{i % self.keys}"})
                r = self.client.put_records(StreamName=self.stream, Records=recs)
                acked_at = time.time()
                self.call_ms.append((acked_at - sent_at) * 1000)
                for rec in recs:
                    self.acked[json.loads(rec["Data"])["id"]] = acked_at
                if r["FailedRecordCount"]:
                    self.failed += r["FailedRecordCount"]
                for rec, res in zip(recs, r["Records"]):
                    if "SequenceNumber" in res:
                        self.ids.append(json.loads(rec["Data"])["id"])
                self.sent += n
                k += 1
        except Exception as exc:  # noqa: BLE001
            self.error = exc


class Tailer(threading.Thread):
    """Reads new complete lines of the output files every `every` s and
    stamps each with the time it was first seen."""

    def __init__(self, out_dir, every=0.003):
        super().__init__(daemon=True)
        self.out_dir, self.every = out_dir, every
        self.offsets = {}
        self.seen = []  # (seen_time, sent_time, id)
        self.files = []
        self.globbed = 0.0
        self.arrival = {}
        self.stop = threading.Event()

    def poll(self):
        now = time.monotonic()
        if not self.files or now - self.globbed >= 0.1:
            # A new file appears only at start and at rotation: list them less often.
            self.files = output_files(self.out_dir)
            self.globbed = now
        for f in self.files:
            off = self.offsets.get(f, 0)
            try:
                size = os.path.getsize(f)
            except OSError:
                continue
            if size <= off:
                continue
            with open(f, "rb") as fh:
                fh.seek(off)
                data = fh.read(size - off)
            now = time.time()
            nl = data.rfind(b"\n")
            if nl < 0:
                continue
            self.offsets[f] = off + nl + 1
            for raw in data[:nl].split(b"\n"):
                try:
                    o = json.loads(raw)
                    self.seen.append((now, float(o["sent"]), o["id"]))
                    self.arrival[o["id"]] = o["_kinesis"]["arrival_time"]
                except (ValueError, KeyError):
                    pass

    def run(self):
        while not self.stop.wait(self.every):
            self.poll()
        self.poll()


class BaselinePoller(threading.Thread):
    """The reference: a plain boto3 GetRecords loop on one shard with the
    same poll interval (no parsing, no file, no fsync); stamps each record
    with the time its GetRecords answer arrived."""

    def __init__(self, client, stream, shard_id, poll, seen, stop):
        super().__init__(daemon=True)
        self.client, self.stream, self.shard_id, self.poll = client, stream, shard_id, poll
        self.seen, self.stop = seen, stop
        self.it = client.get_shard_iterator(StreamName=stream, ShardId=shard_id,
                                            ShardIteratorType="LATEST")["ShardIterator"]

    def run(self):
        while not self.stop.is_set():
            r = self.client.get_records(ShardIterator=self.it, Limit=10000)
            now = time.time()
            for rec in r["Records"]:
                o = json.loads(rec["Data"])
                self.seen.append((now, float(o["sent"]), o["id"]))
            self.it = r["NextShardIterator"]
            if not r["Records"] or r.get("MillisBehindLatest", 0) == 0:
                self.stop.wait(self.poll)  # the poll interval under test, as the daemon's


def iso_epoch(s):
    import datetime
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * (len(sorted_vals) - 1)))))
    return sorted_vals[i]


def bench_rss(t, rarewatchd, workdir, seconds, rate):
    shards = 64
    stream = "rw-bench-rss"
    mnt = Path(workdir) / "rss" / "out"
    mnt.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        t.check("mount a tiny tmpfs for the stalled sink (needs root)", False, r.stderr)
        return
    try:
        # kinesis-local refuses more than SHARD_LIMIT (default 50) shards per account.
        with KinesisLocal(shards=shards, stream=stream, extra_env={"SHARD_LIMIT": "256"}) as kl:
            env = kinesis_local_env(kl.endpoint)
            d = Daemon(rarewatchd, Path(workdir) / "rss", env, stream,
                       kinesis={"poll_interval": "200ms"})
            producer = Producer(kl.client(timeout=30), stream, rate, "rss", pad=1000, tick=0.1)
            with d:
                d.start()
                d.wait_log(r"starting at", 60, "first shard started")
                wait_for(lambda: d.alive() and len(re.findall(r"starting at", d.log(True)))
                         >= shards, 120, f"{shards} shard workers")
                base = rss_kib(d.pid)["VmRSS"]
                producer.start()
                samples = []  # (t, rss_kib, records put)
                t0 = time.monotonic()
                window = 5.0
                stalled_at = None

                def sample_until(deadline):
                    nonlocal stalled_at
                    while time.monotonic() < deadline:
                        d.alive()
                        samples.append((time.monotonic() - t0, rss_kib(d.pid)["VmRSS"],
                                        producer.sent))
                        if stalled_at is None and "No space left on device" in d.log(True):
                            stalled_at = time.monotonic() - t0
                        producer.stop.wait(0.1)  # the sampling period of the measurement
                sample_until(t0 + seconds)
                producer.stop.set()
                producer.join(60)
                hwm = rss_kib(d.pid)["VmHWM"]
                lines_stalled = LineCounter(d.out_dir)()
                print(f"\n## 1. RSS of rarewatchd, {shards} shards, sink stalled (ENOSPC on a "
                      f"256 KiB tmpfs from t={stalled_at if stalled_at is None else round(stalled_at, 1)} s), "
                      f"{rate} records/s of 1 KiB arriving")
                print(f"{'window':>12} {'put so far':>11} {'peak VmRSS':>11}")
                w = 0.0
                rows = []
                while w < seconds:
                    ws = [s for s in samples if w <= s[0] < w + window]
                    if ws:
                        rows.append((w, max(s[1] for s in ws), ws[-1][2]))
                        print(f"{w:5.0f}-{w + window:<5.0f}s {ws[-1][2]:>11} "
                              f"{max(s[1] for s in ws) / 1024:>9.1f} MB")
                    w += window
                print(f"idle before the load: {base / 1024:.1f} MB; VmHWM {hwm / 1024:.1f} MB; "
                      f"records put {producer.sent} ({producer.sent / 1024:.0f} MiB of payload); "
                      f"output lines while stalled {lines_stalled}; producer behind schedule "
                      f"at worst {producer.late:.2f} s")
                t.check("producer: every record accepted", producer.error is None
                        and producer.failed == 0, (producer.error, producer.failed))
                t.check("the sink really stalled (ENOSPC logged)", stalled_at is not None)
                half = [r for r in rows if r[0] >= seconds / 2]
                first = [r for r in rows if r[0] < seconds / 2 and (stalled_at is None
                                                                     or r[0] >= stalled_at)]
                if half and first:
                    p1 = max(r[1] for r in first)
                    p2 = max(r[1] for r in half)
                    put2 = half[-1][2] - first[-1][2]
                    print(f"peak VmRSS stalled, first half {p1 / 1024:.1f} MB, second half "
                          f"{p2 / 1024:.1f} MB, while {put2} more records "
                          f"({put2 / 1024:.1f} MiB) arrived")
                    t.check("RSS bounded while records keep arriving (second-half peak <= "
                            "first-half peak + 8 MB)", p2 <= p1 + 8 * 1024 and put2 > 0,
                            (p1, p2, put2))
                else:
                    t.check("enough samples", False, rows)

                # Release the stall: the backlog drains, nothing is lost.
                t_rel = time.monotonic()
                subprocess.run(["mount", "-o", "remount,size=512m", str(mnt)], check=True)
                ids = set(producer.ids)

                def drained():
                    d.alive()
                    lines, _ = read_output(d.out_dir, order="mtime")
                    return {o.get("id") for o in lines} >= ids
                try:
                    wait_for(drained, 300, "the backlog delivered", interval=0.2,
                             max_interval=1.0)
                    drain_s = time.monotonic() - t_rel
                except Exception as exc:  # noqa: BLE001
                    drain_s = None
                    t.check("backlog delivered after the stall", False, exc)
                peak_after = rss_kib(d.pid)["VmHWM"]
                rc = d.terminate(60)
                lines, _ = read_output(d.out_dir, order="mtime")
                uniq, dups = summarize(lines)
                got = {o.get("id") for o in lines}
                errors = d.log().count("cannot write output")
                if drain_s is not None:
                    print(f"stall released: {len(ids)} records delivered {drain_s:.1f} s later "
                          f"(includes the sink's retry backoff, up to 10 s); {dups} duplicates "
                          f"(at least once); {errors} failed write attempts logged; VmHWM after "
                          f"the drain {peak_after / 1024:.1f} MB")
                t.check("after the stall: every record delivered, exit 0",
                        got >= ids and rc == 0, (len(ids - got), rc))
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


class _MotoKinesis:
    """moto (IAM auth off) with one stream, shaped like KinesisLocal for here."""

    def __init__(self, shards, stream):
        self.moto = Moto(iam_auth=False)
        self.shards, self.stream = shards, stream

    def __enter__(self):
        self.moto.start()
        self.endpoint = self.moto.endpoint
        c = self.client()
        c.create_stream(StreamName=self.stream, ShardCount=self.shards)
        c.get_waiter("stream_exists").wait(StreamName=self.stream, WaiterConfig={"Delay": 1})
        return self

    def __exit__(self, *exc):
        self.moto.stop()
        return False

    def client(self, **kw):
        return self.moto.client("kinesis", **kw)


def bench_latency(t, rarewatchd, workdir, seconds, rate, emulator):
    shards = 4 if emulator == "moto" else 2
    stream = "rw-bench-latency"
    emu = _MotoKinesis(shards, stream) if emulator == "moto" else \
        KinesisLocal(shards=shards, stream=stream)
    with emu as kl:
        env = kinesis_local_env(kl.endpoint)
        d = Daemon(rarewatchd, Path(workdir) / f"lat-{emulator}", env, stream,
                   kinesis={"poll_interval": "200ms"})
        # moto assigns sequence numbers racily: concurrent PutRecords calls can
        # overwrite each other's records (seen: 1 of 10,000 lost with 2 threads).
        # Its PutRecords is fast enough for one producer thread.
        nprod = 1 if emulator == "moto" else 2
        producers = [Producer(kl.client(timeout=30), stream, rate / nprod, f"lat{i}",
                              total=int(rate / nprod * seconds), tick=0.1)
                     for i in range(nprod)]
        tailer = Tailer(d.out_dir)
        with d:
            d.start()
            wait_for(lambda: d.alive() and len(re.findall(r"starting at", d.log(True))) >= shards,
                     60, f"{shards} shard workers")
            tailer.start()
            t0 = time.monotonic()
            for p in producers:
                p.start()
            for p in producers:
                p.join(seconds * 4 + 60)
            put_secs = time.monotonic() - t0
            total = sum(p.sent for p in producers)
            try:
                wait_for(lambda: d.alive() and len(tailer.seen) >= total, 120,
                         f"{total} lines seen")
            except Exception as exc:  # noqa: BLE001
                t.check("every record seen", False, exc)
            tailer.stop.set()
            tailer.join(10)
            rc = d.terminate(60)
        lat = sorted((seen - sent) * 1000 for seen, sent, _ in tailer.seen)
        # Skip the first 2 s (connection set-up, first polls).
        start = min((sent for _, sent, _ in tailer.seen), default=0)
        steady = sorted((seen - sent) * 1000 for seen, sent, _ in tailer.seen
                        if sent >= start + 2)
        acked = {}
        for p in producers:
            acked.update(p.acked)
        from_ack = sorted((seen - acked[i]) * 1000 for seen, sent, i in tailer.seen
                          if i in acked and sent >= start + 2)
        calls = sorted(c for p in producers for c in p.call_ms)
        from_arrival = sorted((seen - iso_epoch(tailer.arrival[i])) * 1000
                              for seen, sent, i in tailer.seen
                              if i in tailer.arrival and sent >= start + 2)
        baseline = run_baseline(kl, stream, shards, rate, min(10.0, seconds), nprod)
        late = max(p.late for p in producers)
        rate_real = total / put_secs if put_secs else 0
        print(f"\n## 2. put -> file sink latency, {emulator}, {shards} shards, poll_interval 200 ms, "
              f"{rate_real:.0f} records/s achieved ({total} records in {put_secs:.1f} s; "
              f"producers behind schedule at worst {late:.2f} s); tail poll every 3 ms")
        print("  rows: from the send time (taken before the PutRecords call), all and after "
              "the first 2 s;\n  'from ack': from the PutRecords answer (the record is in the "
              "stream) to the file;\n  'from arrival': from the stream's arrival time (ms "
              "precision) to the file;\n  'PutRecords': the emulator's call time itself;\n"
              "  'baseline': a plain boto3 GetRecords loop per shard, same poll interval, same "
              "rate, measured after the daemon's run\n  (send -> answer in memory, no file)")
        print(f"{'':>12} {'n':>7} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
        for name, v in (("all", lat), ("after 2 s", steady), ("from ack", from_ack),
                        ("from arrival", from_arrival), ("PutRecords", calls),
                        ("baseline", baseline)):
            print(f"{name:>12} {len(v):>7} {pct(v, 50):>6.0f}ms {pct(v, 90):>6.0f}ms "
                  f"{pct(v, 99):>6.0f}ms {max(v, default=float('nan')):>6.0f}ms")
        t.check(f"{emulator}: latency run: every record delivered, exit 0",
                len({i for _, _, i in tailer.seen}) >= total and rc == 0,
                (len(tailer.seen), total, rc))
        kept_up = rate_real >= 0.9 * rate
        t.check(f"{emulator}: producers kept up ({rate_real:.0f} of {rate} records/s)",
                kept_up, rate_real)
        t.check(f"{emulator}: p99 put -> file sink < 400 ms (p99 {pct(steady, 99):.0f} ms)",
                pct(steady, 99) < 400, pct(steady, 99))


def run_baseline(kl, stream, shards, rate, seconds, nprod):
    stop = threading.Event()
    seen = []
    pollers = [BaselinePoller(kl.client(timeout=30), stream, s["ShardId"], 0.2, seen, stop)
               for s in kl.client().list_shards(StreamName=stream)["Shards"]]
    for p in pollers:
        p.start()
    producers = [Producer(kl.client(timeout=30), stream, rate / nprod, f"base{i}",
                          total=int(rate / nprod * seconds), tick=0.1) for i in range(nprod)]
    for p in producers:
        p.start()
    for p in producers:
        p.join(seconds * 4 + 60)
    total = sum(p.sent for p in producers)
    try:
        wait_for(lambda: len(seen) >= total, 60, "the baseline pollers")
    except TimeoutError:
        pass
    stop.set()
    for p in pollers:
        p.join(30)
    start = min((sent for _, sent, _ in seen), default=0)
    return sorted((a - s) * 1000 for a, s, _ in seen if s >= start + 2)


def bench_throughput(t, rarewatchd, workdir, n, pad, max_records):
    """One shard with a backlog of n records (moto, put before the daemon
    starts): how fast one shard worker drains it, against Kinesis' per-shard
    read limits (5 GetRecords/s, 2 MiB/s) that the worker paces itself to.
    Measured from the first output lines to the last, not counting the lines
    of that first observation (a first large response is allowed as a burst,
    its pacing wait comes after it)."""
    stream = f"rw-bench-tp-{pad}"
    with _MotoKinesis(1, stream) as kl:
        c = kl.client(timeout=60)
        body_pad = "x" * pad
        rec_len = len(json.dumps({"id": f"tp-{n}", "pad": body_pad}, separators=(",", ":")))
        for start in range(0, n, 500):
            recs = [{"Data": json.dumps({"id": f"tp-{i}", "pad": body_pad},
                                        separators=(",", ":")).encode(),
                     "PartitionKey": f"k{i % 64}"} for i in range(start, min(n, start + 500))]
            r = c.put_records(StreamName=stream, Records=recs)
            if r["FailedRecordCount"]:
                t.check("throughput: backlog put", False, r["FailedRecordCount"])
                return
        d = Daemon(rarewatchd, Path(workdir) / f"tp-{pad}", kinesis_local_env(kl.endpoint),
                   stream, kinesis={"poll_interval": "200ms", "max_records": max_records})
        count = LineCounter(d.out_dir)
        with d:
            d.start()
            c0 = wait_for(lambda: d.alive() and count(), 60, "the first lines", interval=0.005,
                          max_interval=0.01)
            t0 = time.monotonic()
            try:
                wait_for(lambda: d.alive() and count() >= n, 300, f"{n} lines", interval=0.005,
                         max_interval=0.02)
            except Exception as exc:  # noqa: BLE001
                t.check("throughput: backlog drained", False, exc)
            secs = time.monotonic() - t0
            rc = d.terminate(60)
        rate = (n - c0) / secs if secs > 0 else float("nan")
        mib = rate * rec_len / 2**20
        print(f"  {rec_len:>5} B  {max_records:>6}  {n:>7}  {rate:>10,.0f}  {mib:>8.2f}  "
              f"({n - c0} records in {secs:.2f} s after the first {c0})")
        t.check(f"throughput ({rec_len} B records): backlog drained, exit 0",
                count() >= n and rc == 0, (count(), rc))
        t.check(f"throughput ({rec_len} B records): within the 2 MiB/s per-shard read limit "
                f"(+10%)", mib <= 2.2, mib)


def main(t):
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--rss-seconds", type=float, default=40)
    ap.add_argument("--rss-rate", type=int, default=400)
    ap.add_argument("--latency-seconds", type=float, default=20)
    ap.add_argument("--latency-rate", type=int, default=1000)
    ap.add_argument("--only", choices=["rss", "latency", "throughput"])
    ap.add_argument("--throughput-records", type=int, default=20000)
    # moto sustains 1,000 records/s here; kinesis-local (Scala.js on node) does not
    # once a consumer polls it (about 300/s on 2 busy cores), so it runs at a rate it
    # sustains: EMULATOR[:RATE].
    ap.add_argument("--latency-emulators", default="moto,kinesis-local:250")
    args = ap.parse_args()
    _, rarewatchd = binaries(args.build)
    with WorkDir("rw-consumer-bench-", t) as workdir:
        if args.only in (None, "rss"):
            bench_rss(t, rarewatchd, workdir, args.rss_seconds, args.rss_rate)
        if args.only in (None, "latency"):
            for spec in args.latency_emulators.split(","):
                emu, _, rate = spec.partition(":")
                bench_latency(t, rarewatchd, workdir, args.latency_seconds,
                              int(rate or args.latency_rate), emu)
        if args.only in (None, "throughput"):
            print("\n## 3. One shard draining a backlog (moto): GetRecords throughput")
            print(f"  {'record':>7}  {'max_rec':>6}  {'backlog':>7}  {'records/s':>10}  "
                  f"{'MiB/s':>8}")
            bench_throughput(t, rarewatchd, workdir, args.throughput_records, 960, 2000)
            bench_throughput(t, rarewatchd, workdir, 50000, 0, 10000)


if __name__ == "__main__":
    sys.exit(run(main))
