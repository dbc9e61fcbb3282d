#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The Firehose and CloudWatch sinks end to end: the real `rarewatchd`
consumes a moto Kinesis stream (records put with `rarewatch put`) and
delivers through a fault proxy to moto Firehose -> moto S3 and to moto
CloudWatch, all with IAM auth on.

1. Partial failures (20 % of the entries of the first 5 PutRecordBatch
   calls fail with ServiceUnavailableException): every record in S3 exactly
   once (by _kinesis provenance), every line valid JSON and
   newline-terminated, and only the failed entries were sent again: moto
   (one S3 object per PutRecordBatch) received exactly N entries, and the
   sink's published Retries equal the entries the proxy failed.
2. Throttling, HTTP 500s and connection resets: no loss, no duplicates.
3. A Firehose outage (PutRecordBatch answers 503; 30 s here, 120 s with
   --outage 120 in the `long` suite): the shards stop polling once
   max_inflight_batches are unacknowledged, RSS stays bounded, and after
   the outage everything arrives, nothing lost or duplicated.
4. CloudWatch: GetMetricData of RecordsIn summed over the shards equals
   the number of records put; health metrics are published. CloudWatch is a
   second moto without IAM auth: moto 5.2 rejects the signature of every
   gzip-encoded request body under IAM auth (a botocore-signed gzip
   PutMetricData fails the same way), and the sink sends gzip bodies by
   default ([cloudwatch] compress = false runs under IAM auth in
   test_aws_artifacts.py).
5. Dead letters: a non-JSON payload and a line over the 1,000 KiB Firehose
   record limit are dead-lettered (stages parse / oversize), the entries
   are also delivered to [deadletter] delivery_stream, `rarewatch
   deadletter list --json` shows them, `replay` re-injects their original
   bytes with their partition keys, and a second replay sends nothing.

Usage: test_sinks.py BUILD_DIR [--outage SECONDS]
"""
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from consumer_common import (WorkDir, Daemon, Results, binaries, clean_env, put,  # noqa: E402
                             wait_for, write_input)
from rwharness import FaultProxy, Moto, parse_ndjson_objects, read_firehose_s3_objects  # noqa: E402

STREAM = "rw-sinks-in"
FH = "rw-sinks-out"
FH_DL = "rw-sinks-dl"
BUCKET = "rw-sinks-bucket"
DL_BUCKET = "rw-sinks-dl-bucket"
NS = "RarewatchTest"


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class S3Lines:
    """Every line Firehose delivered to a bucket, with the objects read once."""

    def __init__(self, moto, bucket):
        self.moto, self.bucket = moto, bucket
        self.seen = {}

    def read(self):
        for _, key, body in read_firehose_s3_objects(self.moto, self.bucket):
            self.seen[key] = body
        return self.seen

    def lines(self):
        return parse_ndjson_objects(sorted(self.read().items()))


def prov(o):
    k = o["_kinesis"]
    return (k["shard_id"], k["sequence_number"], k["sub_sequence_number"])


def count_unique(lines):
    seen, dups = set(), 0
    for o in lines:
        p = prov(o)
        dups += p in seen
        seen.add(p)
    return seen, dups


def main():
    build = sys.argv[1]
    outage = 30
    if "--outage" in sys.argv:
        outage = int(sys.argv[sys.argv.index("--outage") + 1])
    t = Results()
    rarewatch, rarewatchd = binaries(build)
    with WorkDir("rw-sinks-", t) as workdir, Moto(iam_auth=True) as moto, \
            FaultProxy(moto.endpoint, resign_creds=moto.creds) as proxy:
        kin = moto.client("kinesis")
        kin.create_stream(StreamName=STREAM, ShardCount=2)
        kin.get_waiter("stream_exists").wait(StreamName=STREAM)
        kin.create_stream(StreamName="rw-sinks-replay", ShardCount=1)
        kin.get_waiter("stream_exists").wait(StreamName="rw-sinks-replay")
        moto.create_firehose_to_s3(FH, BUCKET, "")
        moto.create_firehose_to_s3(FH_DL, DL_BUCKET, "")
        cwmoto = Moto(iam_auth=False).start()
        cw = cwmoto.client("cloudwatch")

        menv = clean_env(moto.env())
        cw_env = {"AWS_ENDPOINT_URL_CLOUDWATCH": cwmoto.endpoint}
        # Kinesis and Firehose through the proxy (GetRecords is counted there).
        denv = clean_env(dict(moto.env(), AWS_ENDPOINT_URL_FIREHOSE=proxy.endpoint,
                              AWS_ENDPOINT_URL_KINESIS=proxy.endpoint, **cw_env))
        extra = (os.environ.get("RW_TEST_EXTRA_CONF", "") + "[aws]\nmax_attempts = 3\nrequest_timeout = 5s\nconnect_timeout = 2s\n"
                 f"[firehose]\ndelivery_stream = {FH}\nflush_interval = 200ms\nmax_retries = 100\n"
                 f"[cloudwatch]\nnamespace = {NS}\nflush_interval = 1s\n"
                 f"[deadletter]\ndelivery_stream = {FH_DL}\n")
        d = Daemon(rarewatchd, os.path.join(workdir, "d"), denv, STREAM, output=False,
                   kinesis={"max_records": "100", "max_inflight_batches": "2"}, extra=extra)
        out = S3Lines(moto, BUCKET)
        expected = set()

        def delivered(n):
            def ok():
                d.alive()
                lines, _ = out.lines()
                ids = {o.get("id") for o in lines}
                delivered.last = (len(ids & expected), len(lines))
                return len(ids & expected) >= n
            return ok
        delivered.last = None

        with d:
            d.start()
            d.wait_log(r"shard .*: worker started", 60, "a shard worker")

            # 1. Partial failures only: exact accounting of re-sent entries.
            proxy.set_rules([{"action": "PutRecordBatch", "kind": "partial", "fraction": 0.2,
                              "count": 5, "error_codes": ["ServiceUnavailableException"]}])
            src = os.path.join(workdir, "a.ndjson")
            ids = write_input(src, 4000, tag="a")
            expected |= set(ids)
            r = put(rarewatch, menv, STREAM, src)
            t.check("put 4,000 records: exit 0", r.returncode == 0, r.stderr[-400:])
            t0 = time.monotonic()
            try:
                wait_for(delivered(len(expected)), 180, "4,000 records in S3")
            except Exception:
                print("# delivered (unique expected, lines):", delivered.last, proxy.stats(), flush=True)
                raise
            secs = time.monotonic() - t0
            proxy.set_rules([])
            st = proxy.stats("PutRecordBatch")
            sent = sum(e["entries"] for e in proxy.partial_log if e["action"] == "PutRecordBatch")
            partial_failed = st["entries_failed"]
            lines, bad = out.lines()
            seen, dups = count_unique(lines)
            t.check("partial failures: every line valid JSON, objects newline-terminated", not bad, bad[:3])
            t.check("partial failures: every record in S3 exactly once", len(seen) == 4000 and dups == 0
                    and {o["id"] for o in lines} == expected, f"{len(seen)} unique, {dups} dups")
            t.check("partial failures: some entries failed", st["entries_failed"] > 0, st)
            # Whole batches sent again would show up as duplicates in S3.
            t.check("partial failures: only failed entries re-sent (moto received exactly 4000)",
                    len(lines) == 4000 and st["entries_forwarded"] == 4000 and sent > 0,
                    f"{len(lines)} lines in S3, failed {st['entries_failed']}, forwarded {st['entries_forwarded']}")
            bad_prov = [o for o in lines if o["_kinesis"]["stream"] != STREAM
                        or o["_kinesis"]["partition_key"] != o["k"]]
            t.check("partial failures: fields and _kinesis provenance intact", not bad_prov, bad_prov[:2])
            print(f"# 4,000 records through 20 % partial failures in {secs:.1f} s; "
                  f"{st['entries_failed']} entries re-sent in {st['requests']} requests", flush=True)

            # 2. Throttling, 500s, resets.
            proxy.set_rules([{"action": "PutRecordBatch", "kind": "throttle", "count": 4},
                             {"action": "PutRecordBatch", "kind": "http_error", "status": 500, "count": 3},
                             {"action": "PutRecordBatch", "kind": "reset", "count": 3},
                             {"action": "PutRecordBatch", "kind": "partial", "fraction": 0.1, "count": 5}])
            src = os.path.join(workdir, "b.ndjson")
            ids = write_input(src, 2000, tag="b")
            expected |= set(ids)
            r = put(rarewatch, menv, STREAM, src)
            t.check("put 2,000 more: exit 0", r.returncode == 0, r.stderr[-400:])
            wait_for(delivered(len(expected)), 240, "6,000 records in S3")
            faults = proxy.stats("PutRecordBatch")["faults"]
            lines, bad = out.lines()
            seen, dups = count_unique(lines)
            t.check("throttle/500/reset: every fault injected", faults.get("throttle", 0) >= 4
                    and faults.get("http_error", 0) >= 3 and faults.get("reset", 0) >= 3, faults)
            t.check("throttle/500/reset: no loss, no duplicates",
                    len(seen) == len(expected) and dups == 0 and not bad,
                    f"{len(seen)} unique of {len(expected)}, {dups} dups, {len(bad)} bad")
            proxy.set_rules([])

            # 3. Outage: back-pressure, bounded memory, catch-up.
            proxy.outage("PutRecordBatch", True)
            src = os.path.join(workdir, "c.ndjson")
            ids = write_input(src, 3000, tag="c", pad=200)
            expected |= set(ids)
            r = put(rarewatch, menv, STREAM, src)
            t.check("put 3,000 during the outage: exit 0", r.returncode == 0, r.stderr[-400:])
            proxy.wait_stat("PutRecordBatch", "outage", 3, timeout=60)
            rss0 = rss_kb(d.pid)
            t_out = time.monotonic()
            samples = []
            # The outage lasts `outage` seconds: sample GetRecords calls and RSS meanwhile.
            while time.monotonic() - t_out < outage:
                d.alive()
                samples.append((time.monotonic() - t_out, proxy.stats("GetRecords")["requests"], rss_kb(d.pid)))
                time.sleep(1)
            half = [s for s in samples if s[0] >= outage / 2]
            polls_late = half[-1][1] - half[0][1] if len(half) > 1 else 0
            rss_max = max(s[2] for s in samples)
            lines, _ = out.lines()
            during = len({o["id"] for o in lines} & set(ids))
            t.check("outage: nothing of the new records delivered while Firehose is down",
                    during < 3000, during)
            t.check(f"outage: the shards stop polling (GetRecords calls in the last {outage // 2} s: "
                    f"{polls_late})", polls_late <= 4, samples[-5:])
            t.check(f"outage: RSS bounded ({rss0} -> max {rss_max} KiB)", rss_max - rss0 < 64 * 1024,
                    f"{rss0} -> {rss_max}")
            proxy.outage("PutRecordBatch", False)
            t1 = time.monotonic()
            wait_for(delivered(len(expected)), 240, "every record after the outage")
            print(f"# outage {outage} s: caught up {time.monotonic() - t1:.1f} s after it ended; "
                  f"RSS {rss0} -> max {rss_max} KiB; GetRecords calls in its second half: {polls_late}",
                  flush=True)
            lines, bad = out.lines()
            seen, dups = count_unique(lines)
            t.check("outage: after it, no loss and no duplicates",
                    len(seen) == len(expected) and dups == 0 and not bad,
                    f"{len(seen)} unique of {len(expected)}, {dups} dups")

            # 5. Dead letters: a non-JSON payload and an oversize line.
            kin.put_record(StreamName=STREAM, Data=b"this is not json", PartitionKey="dl-key-1")
            big = json.dumps({"id": "big-1", "k": "dl-key-2", "blob": "y" * (1000 * 1024)},
                             separators=(",", ":")).encode()
            kin.put_record(StreamName=STREAM, Data=big, PartitionKey="dl-key-2")
            wait_for(lambda: d.alive() and len(d.deadletters()) >= 2, 120, "two dead-letter entries")
            dls = d.deadletters()
            stages = sorted(e["stage"] for e in dls)
            t.check("dead letters: a parse and an oversize entry", stages == ["oversize", "parse"], stages)
            over = [e for e in dls if e["stage"] == "oversize"]
            t.check("oversize: provenance kept", over and over[0]["_kinesis"]["partition_key"] == "dl-key-2",
                    over[:1] and over[0].get("_kinesis"))
            dlout = S3Lines(moto, DL_BUCKET)

            def dl_forwarded():
                d.alive()
                got, _ = dlout.lines()
                return len(got) >= 2
            wait_for(dl_forwarded, 120, "dead letters in the delivery stream")
            got, bad = dlout.lines()
            t.check("[deadletter] delivery_stream: both entries delivered as JSON (the oversize one "
                    "without its bytes)",
                    sorted(e["stage"] for e in got) == ["oversize", "parse"] and not bad
                    and any("data_omitted_base64_bytes" in e for e in got),
                    [e.get("stage") for e in got])

            # 4. CloudWatch: RecordsIn == records put (after one more interval).
            total_in = len(expected) + 2

            def records_in():
                d.alive()
                ms = cw.list_metrics(Namespace=NS, MetricName="RecordsIn")["Metrics"]
                now = datetime.now(timezone.utc)
                q = [{"Id": f"m{i}", "MetricStat": {"Metric": m, "Period": 60, "Stat": "Sum"},
                      "ReturnData": True} for i, m in enumerate(ms)]
                if not q:
                    return False
                res = cw.get_metric_data(MetricDataQueries=q, StartTime=now - timedelta(hours=1),
                                         EndTime=now + timedelta(minutes=5))
                s = sum(sum(x["Values"]) for x in res["MetricDataResults"])
                records_in.last = (s, [m["Dimensions"] for m in ms])
                return s == total_in
            records_in.last = None
            try:
                wait_for(records_in, 60, "RecordsIn == records put")
                t.check(f"CloudWatch: RecordsIn over the shards == {total_in}", True)
            except Exception as exc:  # noqa: BLE001
                t.check(f"CloudWatch: RecordsIn over the shards == {total_in}", False,
                        f"{records_in.last}; {exc}")
            names = {m["MetricName"] for m in cw.list_metrics(Namespace=NS)["Metrics"]}
            want = {"RecordsIn", "RecordsOut", "RecordsDeadLettered", "MillisBehindLatest",
                    "Retries", "Errors", "DeliveryLatency"}
            t.check("CloudWatch: health metrics published", want <= names, sorted(want - names))
            lat = cw.get_metric_statistics(Namespace=NS, MetricName="DeliveryLatency",
                                           Dimensions=[{"Name": "Sink", "Value": "firehose"}],
                                           StartTime=datetime.now(timezone.utc) - timedelta(hours=1),
                                           EndTime=datetime.now(timezone.utc) + timedelta(minutes=5),
                                           Period=3600, Statistics=["Average", "Maximum", "SampleCount"])
            pts = lat.get("Datapoints", [])
            if pts:
                print(f"# DeliveryLatency (Kinesis arrival -> Firehose ack, per batch): "
                      f"avg {pts[0]['Average']:.0f} ms, max {pts[0]['Maximum']:.0f} ms over "
                      f"{pts[0]['SampleCount']:.0f} batches (the outage included)", flush=True)
            def metric_sum(name, dims):
                now = datetime.now(timezone.utc)
                res = cw.get_metric_statistics(Namespace=NS, MetricName=name, Dimensions=dims,
                                               StartTime=now - timedelta(hours=1),
                                               EndTime=now + timedelta(minutes=5), Period=3600,
                                               Statistics=["Sum"])
                return sum(p["Sum"] for p in res.get("Datapoints", []))
            fh_retries = metric_sum("Retries", [{"Name": "Sink", "Value": "firehose"}])
            t.check("CloudWatch: the Firehose sink's Retries >= the entries the proxy failed",
                    fh_retries >= partial_failed, f"{fh_retries} vs {partial_failed}")
            pm = proxy.stats("PutMetricData")
            t.check("CloudWatch: PutMetricData went to moto (not through the Firehose proxy)",
                    pm["requests"] == 0, pm)

            rc = d.terminate(60)
            t.check("SIGTERM: exit 0", rc == 0, d.log(True)[-1500:])
            errs = [ln for ln in d.log().splitlines() if "PutMetricData failed" in ln]
            t.check("CloudWatch: no failed publishes (gzip bodies accepted under IAM auth)", not errs,
                    errs[:2])

        # The CLI: list and replay.
        conf = str(d.conf_path)
        r = subprocess.run([rarewatch, "deadletter", "list", "-c", conf, "--json"], env=menv,
                           capture_output=True, text=True, timeout=60)
        entries = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
        t.check("deadletter list --json: both entries with file/offset", r.returncode == 0 and len(entries) == 2
                and all("file" in e and "offset" in e and not e["replayed"] for e in entries),
                r.stdout[-500:] + r.stderr[-500:])
        r = subprocess.run([rarewatch, "deadletter", "list", "-c", conf], env=menv,
                           capture_output=True, text=True, timeout=60)
        t.check("deadletter list: time, stage, reason and provenance shown", r.returncode == 0
                and "oversize" in r.stdout and "parse" in r.stdout and "dl-key-2" in r.stdout, r.stdout)
        files = sorted({e["file"] for e in entries})
        cmd = [rarewatch, "deadletter", "replay", "-c", conf, "--stream", "rw-sinks-replay", *files]
        r = subprocess.run(cmd, env=menv, capture_output=True, text=True, timeout=120)
        t.check("deadletter replay: exit 0, 2 replayed", r.returncode == 0 and "replayed 2 entries" in r.stderr,
                r.stderr[-500:])
        shard = kin.list_shards(StreamName="rw-sinks-replay")["Shards"][0]["ShardId"]
        it = kin.get_shard_iterator(StreamName="rw-sinks-replay", ShardId=shard,
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        recs = kin.get_records(ShardIterator=it, Limit=100)["Records"]
        by_key = {x["PartitionKey"]: x["Data"] for x in recs}
        t.check("replay: original bytes with their partition keys",
                by_key.get("dl-key-1") == b"this is not json" and by_key.get("dl-key-2") == big,
                {k: len(v) for k, v in by_key.items()})
        r = subprocess.run(cmd, env=menv, capture_output=True, text=True, timeout=120)
        t.check("replay again: nothing sent twice", r.returncode == 0 and "replayed 0 entries" in r.stderr
                and "2 already replayed" in r.stderr, r.stderr[-300:])
        r = subprocess.run([rarewatch, "deadletter", "list", "-c", conf], env=menv,
                           capture_output=True, text=True, timeout=60)
        t.check("list hides replayed entries", "0 entries" in r.stderr and "2 replayed" in r.stderr, r.stderr)
    cwmoto.stop()
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
