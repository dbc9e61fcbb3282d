#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""End to end, as the sinks issue asks: `rarewatch put` 20,000 card
transactions with injected anomalies into a moto Kinesis stream (IAM auth
on: every call signature-checked); `rarewatchd` consumes them with two
detectors and delivers through moto Firehose into moto S3; CloudWatch
metrics go to moto CloudWatch.

- every input record appears in S3 exactly once (deduplicated by the
  _kinesis provenance: there are no duplicates at all), every line is valid
  JSON and newline-terminated;
- the injected anomalies are found;
- CloudWatch: AnomalyCount per detector equals the anomalies that detector
  flagged in the delivered records, and RecordsIn equals 20,000.

CloudWatch runs on a second moto without IAM auth: moto 5.2.1 cannot check
the signature of a gzip-compressed body (it rejects botocore's own), and
the sink compresses PutMetricData by default (compress = false, for such
emulators, runs under IAM auth in test_aws_artifacts.py).

Usage: test_e2e.py BUILD_DIR
"""
import collections
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from consumer_common import Daemon, Results, WorkDir, binaries, clean_env, wait_for  # noqa: E402
from rwharness import Moto, parse_ndjson_objects, read_firehose_s3_objects  # noqa: E402

N = 20000
STREAM, FH, BUCKET, NS = "e2e-in", "e2e-out", "e2e-bucket", "RarewatchE2E"
DETECTORS = """
[input]
timestamp_field = ts
[detector.amount_spike]
type = zscore
field = amount
key = card
min_samples = 20
[detector.new_country]
type = rare_category
field = country
key = card
min_samples = 30
alpha = 0.05
alert_threshold = 0.99
"""


def main():
    build = sys.argv[1]
    t = Results()
    rarewatch, rarewatchd = binaries(build)
    here = os.path.dirname(os.path.abspath(__file__))
    with WorkDir("rw-e2e-", t) as workdir, Moto(iam_auth=True) as moto, Moto(iam_auth=False) as cwmoto:
        kin = moto.client("kinesis")
        kin.create_stream(StreamName=STREAM, ShardCount=4)
        kin.get_waiter("stream_exists").wait(StreamName=STREAM)
        moto.create_firehose_to_s3(FH, BUCKET, "")
        cw = cwmoto.client("cloudwatch")
        env = clean_env(dict(moto.env(), AWS_ENDPOINT_URL_CLOUDWATCH=cwmoto.endpoint))

        src = os.path.join(workdir, "in.ndjson")
        with open(src, "w") as f:
            subprocess.run([sys.executable, os.path.join(here, "..", "demo", "sample.py"), "-n", str(N),
                            "--seed", "11"], stdout=f, check=True)
        inputs = [json.loads(x) for x in open(src)]
        injected = sum(1 for r in inputs if "injected" in r)

        extra = DETECTORS + (f"[firehose]\ndelivery_stream = {FH}\nflush_interval = 200ms\n"
                             f"[cloudwatch]\nnamespace = {NS}\nflush_interval = 1s\n")
        d = Daemon(rarewatchd, os.path.join(workdir, "d"), env, STREAM, output=False, extra=extra)
        with d:
            d.start()
            r = subprocess.run([rarewatch, "put", "--stream", STREAM, "--partition-key", "card", "-q", src],
                               env=env, capture_output=True, text=True, timeout=600)
            t.check("put 20,000 records: exit 0", r.returncode == 0, r.stderr[-400:])

            def s3_lines():
                return parse_ndjson_objects((key, body) for _, key, body in read_firehose_s3_objects(moto, BUCKET))

            def all_there():
                d.alive()
                lines, _ = s3_lines()
                all_there.n = len(lines)
                return len(lines) >= N
            all_there.n = 0
            wait_for(all_there, 300, "20,000 lines in S3")
            lines, bad = s3_lines()
            provs = collections.Counter((o["_kinesis"]["shard_id"], o["_kinesis"]["sequence_number"],
                                         o["_kinesis"]["sub_sequence_number"]) for o in lines)
            t.check("every line valid JSON, every object newline-terminated", not bad, bad[:3])
            t.check("every record once (no duplicates by provenance)", len(provs) == N and
                    max(provs.values()) == 1, (len(provs), max(provs.values())))
            key = lambda o: (o["ts"], o["card"], o["amount"])  # noqa: E731
            t.check("every input record delivered exactly as put",
                    sorted(map(key, lines)) == sorted(map(key, inputs)))
            flagged = collections.Counter()
            for o in lines:
                for a in o.get("anomalies", []):
                    flagged[a["detector"]] += 1
            found = sum(1 for o in lines if o.get("injected") and o.get("is_anomaly"))
            print(f"# injected {injected}, found {found}; flagged per detector {dict(flagged)}", flush=True)
            t.check("the injected anomalies are found (>= 90%)", found >= 0.9 * injected, (found, injected))

            def metric(name, dims):
                now = datetime.now(timezone.utc)
                res = cw.get_metric_statistics(Namespace=NS, MetricName=name, Dimensions=dims,
                                               StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5),
                                               Period=3600, Statistics=["Sum"])
                return sum(p["Sum"] for p in res.get("Datapoints", []))

            def records_in():
                d.alive()
                ms = cw.list_metrics(Namespace=NS, MetricName="RecordsIn")["Metrics"]
                records_in.v = sum(metric("RecordsIn", m["Dimensions"]) for m in ms)
                return records_in.v >= N
            records_in.v = None

            def anomaly_counts():
                anomaly_counts.v = {n: metric("AnomalyCount", [{"Name": "Detector", "Value": n}])
                                    for n in ("amount_spike", "new_country")}
                return all(anomaly_counts.v[n] == flagged[n] for n in anomaly_counts.v)
            anomaly_counts.v = None
            try:
                wait_for(records_in, 60, "RecordsIn")
            except TimeoutError:
                pass
            t.check("CloudWatch RecordsIn == 20,000", records_in.v == N, records_in.v)
            try:
                wait_for(anomaly_counts, 60, "AnomalyCount")
            except TimeoutError:
                pass
            t.check("CloudWatch AnomalyCount per detector == anomalies flagged in the output",
                    anomaly_counts.v and all(anomaly_counts.v[n] == flagged[n] for n in anomaly_counts.v),
                    (anomaly_counts.v, dict(flagged)))
            rc = d.terminate(60)
            t.check("SIGTERM: exit 0", rc == 0, rc)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
