#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The quickstart's run (./quickstart.sh does the installs and the build, then
this): one use case end to end on local emulators.

moto on a loopback port, with IAM auth on (every request signed and checked), plays
Kinesis, Firehose -> S3 and CloudWatch. The script deploys
packaging/aws/cloudformation.yaml to it (tests/harness/cfn_local.py: the stream, the
bucket, the output and dead-letter delivery streams, the lease table, the role and
the two alarms) with the example's names as parameters, starts rarewatchd in the
foreground with etc/rarewatch/examples/CASE.conf (copied unchanged; a drop-in beside
it takes the stream and delivery streams from the stack's outputs, points state and
the lookup table at the run directory, flushes metrics every 5 s and sends them
uncompressed: moto cannot verify the signature of a gzip body), replays the case's sample stream with `rarewatch put --rate`, prints each
anomaly as it lands in S3, and after the stream is delivered (or --duration, or
Ctrl-C) prints a summary. Everything it started is stopped on every exit path.

--check: the non-interactive test mode (fast rate, no live lines); exit 0 only
when every injected incident was detected and its anomaly line delivered to S3,
and every record was delivered.
"""
import argparse
import collections
import configparser
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "harness"))
import common  # noqa: E402
import rwharness  # noqa: E402
from cfn_local import deploy_stack  # noqa: E402

# Per case: the sample's scale (see common.py), put rates (records/s) for the
# interactive run and for --check, and the share of injected incidents --check
# requires (besides every kind found at least once). Found in repeated one-shard
# --check runs with the windowed examples: fraud 12/12, web 16/16 (the 5xx
# threshold on a window: 9/9, four runs), social 15-17/17 (its window detector alone 15/17;
# 19/19 with the bursts of 2026-11-29, which add the same volume at night as by day),
# sales 3-4/4, 4/4 once rarewatchd ticked idle rate keys (before the windows: web 10-14/16, social 11-16/17). `rarewatch
# replay` of seeds 1-5 (2026-11-28): web 5xx bursts 22/22, social 84/95 (94/95 on 2026-11-29), sales 14/14. The web
# and social bars leave two incidents of margin. Sales rests on the rate detector,
# which rarewatchd ticks for idle keys (a store that stops selling is seen without
# another of its orders): 4/4 in four runs, so its bar leaves one incident of
# margin. --check uses one shard (two vary more).
CASES = {
    "fraud": {"scale": 0.25, "rate": 300, "check_rate": 5000, "min_recall": 1.0},
    "web": {"scale": 0.3, "rate": 500, "check_rate": 5000, "min_recall": 0.85},
    "social": {"scale": 0.25, "rate": 500, "check_rate": 5000, "min_recall": 0.8},
    "sales": {"scale": 0.25, "rate": 1500, "check_rate": 10000, "min_recall": 0.75},
}


class QuickMoto(rwharness.Moto):
    # The set-up user also deploys the stack (cfn_local reads the roles it made).
    POLICY_ACTIONS = rwharness.Moto.POLICY_ACTIONS + ["iam:*", "cloudformation:*"]


class Stop(Exception):
    """SIGTERM/SIGHUP: end the run like Ctrl-C (summary, then clean up)."""


# Set by SIGTERM/SIGHUP and checked by the display loop: raising from the handler could
# land inside botocore, which wraps any Exception from a request in its own error.
stop_requested = False


def hms(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%m-%d %H:%M:%S") if t else "--"


class S3Reader:
    """New objects of a bucket, each read once (moto's Firehose writes one object per
    PutRecordBatch, at once)."""

    def __init__(self, s3, bucket, prefix):
        self.s3, self.bucket, self.prefix, self.seen, self.first_key = s3, bucket, prefix, set(), None

    def new_lines(self):
        out = []
        # The prefix is filtered here: moto's SigV4 check rejects a signed Prefix=events/.
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for obj in page.get("Contents", []):
                if obj["Key"] in self.seen or not obj["Key"].startswith(self.prefix):
                    continue
                self.seen.add(obj["Key"])
                self.first_key = self.first_key or obj["Key"]
                body = self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
                out.extend(line for line in body.decode().splitlines() if line)
        return out


class KeyOrder:
    """Counts delivered records whose event time is earlier than a record of the same key
    delivered before it in the same shard (by sequence number): the order the
    detectors saw, which `rarewatch put` should have kept."""

    def __init__(self, key):
        self.key, self.rows, self.late = key, [], 0

    def update(self, lines):
        for ln in lines:
            o = json.loads(ln)
            if "_kinesis" not in o:  # a window's or an idle key's derived line
                continue
            self.rows.append((o["_kinesis"]["shard_id"], int(o["_kinesis"]["sequence_number"]),
                              o.get(self.key), o.get("ts", 0)))

    def count(self):
        self.rows.sort()
        last, self.late = {}, 0
        for shard, _, key, ts in self.rows:
            if ts < last.get((shard, key), ts):
                self.late += 1
            last[(shard, key)] = max(ts, last.get((shard, key), ts))
        return self.late


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", nargs="?", default="fraud", choices=sorted(CASES))
    ap.add_argument("--check", action="store_true", help="non-interactive test mode")
    ap.add_argument("--build", default=os.environ.get("RW_BUILD_DIR", str(ROOT / "build")))
    ap.add_argument("--run-dir", default=None, help="default /tmp/rarewatch-quickstart-CASE")
    ap.add_argument("--moto-port", type=int, default=int(os.environ.get("QUICKSTART_MOTO_PORT", "4566")),
                    help="moto's loopback port (0: a free one)")
    ap.add_argument("--rate", type=int, default=None, help="records per second put into the stream")
    ap.add_argument("--duration", type=float, default=None,
                    help="stop after this many seconds at most (default 240; 600 with --check)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shards", type=int, default=None,
                    help="the stream's shards (default 2; 1 with --check, see CASES)")
    a = ap.parse_args()
    a.shards = a.shards or (1 if a.check else 2)
    a.duration = a.duration or (600 if a.check else 240)
    spec = CASES[a.case]
    rate = a.rate or (spec["check_rate"] if a.check else spec["rate"])
    run = Path(a.run_dir or f"/tmp/rarewatch-quickstart-{a.case}")
    rw = Path(a.build) / "src" / "rarewatch" / "rarewatch"
    rwd = Path(a.build) / "src" / "rarewatchd" / "rarewatchd"
    verbose = not a.check

    def on_signal(*_):
        global stop_requested
        stop_requested = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    shutil.rmtree(run, ignore_errors=True)
    (run / "etc" / "conf.d").mkdir(parents=True)

    # 1. The sample stream, ending now.
    mod = __import__(a.case)
    probe, _ = mod.generate(random.Random(a.seed), spec["scale"], common.T0)
    start = time.time() - (probe[-1]["ts"] - common.T0)
    records, incidents = mod.generate(random.Random(a.seed), spec["scale"], start)
    sample, _ = common.write(run / "sample", a.case, records, incidents)
    dropped = sum(1 for r in records if getattr(mod, "dropped_by_config", lambda r: False)(r))
    kinds = collections.Counter(i["kind"] for i in incidents)
    print(f"==> {a.case}: {len(records)} sample records over {(records[-1]['ts'] - records[0]['ts']) / 3600:.1f} h "
          f"of event time, {len(incidents)} injected incidents ({', '.join(f'{n} {k}' for k, n in kinds.items())})")

    # 2. The configuration: the example unchanged, local paths in a drop-in.
    example = ROOT / "etc" / "rarewatch" / "examples" / f"{a.case}.conf"
    conf = run / "etc" / "rarewatch.conf"
    shutil.copyfile(example, conf)
    ini = configparser.ConfigParser(interpolation=None, strict=False, comment_prefixes=("#", ";"))
    ini.read(example)
    # The stack's parameters: the example's names (so its outputs are the names the
    # example already uses), one shard per --shards.
    params = {"StreamName": ini["kinesis"]["stream"], "ShardCount": str(a.shards),
              "DeliveryStreamName": ini["firehose"]["delivery_stream"],
              "DeadLetterDeliveryStreamName": ini["firehose"]["delivery_stream"] + "-deadletter",
              "LeaseTableName": ini["firehose"]["delivery_stream"] + "-leases",
              "MetricNamespace": ini["cloudwatch"]["namespace"]}
    detectors = [s.split(".", 1)[1] for s in ini.sections() if s.startswith("detector.")]

    moto = daemon = put = None
    interrupted = False
    try:
        # 3. moto, then the stack: the stream, the bucket, the delivery streams, the alarms.
        moto = QuickMoto(iam_auth=True, port=a.moto_port or None, log_dir=run)
        try:
            moto.start()
        except (rwharness.HarnessError, TimeoutError) as exc:
            sys.exit(f"quickstart: moto did not start on 127.0.0.1:{a.moto_port} "
                     f"(busy? QUICKSTART_MOTO_PORT=0 picks a free port): {exc}")
        print(f"==> moto (Kinesis, Firehose -> S3, CloudWatch; IAM auth on) on {moto.endpoint}; log {run}/moto.log")
        out = deploy_stack(moto.endpoint, f"rarewatch-{a.case}", params, creds=moto.creds, region=moto.region)
        stream, fh_all, fh_dl = out["StreamName"], out["DeliveryStreamName"], out["DeadLetterDeliveryStreamName"]
        namespace, bucket = out["MetricNamespace"], out["BucketName"]
        # The output delivery stream's prefix (Firehose adds YYYY/MM/DD/HH/ to it).
        prefix = moto.client("firehose").describe_delivery_stream(DeliveryStreamName=fh_all)[
            "DeliveryStreamDescription"]["Destinations"][0]["ExtendedS3DestinationDescription"].get("Prefix", "")
        alarms = [out["AnomalyAlarmName"], out["LagAlarmName"]]
        print(f"==> deployed packaging/aws/cloudformation.yaml as stack 'rarewatch-{a.case}': stream '{stream}' "
              f"({a.shards} shard{'s' if a.shards > 1 else ''}), delivery streams '{fh_all}' -> s3://{bucket}/{prefix} "
              f"and '{fh_dl}' (dead letters), alarms {', '.join(alarms)}")

        # The drop-in: the stack's names, local paths, fast uncompressed metrics.
        dropin = [f"[kinesis]\nstream = {stream}\n",
                  f"[firehose]\ndelivery_stream = {fh_all}\n",
                  f"[cloudwatch]\nnamespace = {namespace}\nflush_interval = 5s\ncompress = false\n",
                  f"[checkpoint]\ndirectory = {run}/state\n",
                  f"[deadletter]\ndirectory = {run}/state/deadletter\ndelivery_stream = {fh_dl}\n"]
        for sec in ini.sections():
            if sec.startswith("transform.") and ini[sec].get("type") == "lookup":
                dropin.append(f"[{sec}]\nfile = {ROOT}/etc/rarewatch/examples/{Path(ini[sec]['file']).name}\n")
        (run / "etc" / "conf.d" / "50-quickstart.conf").write_text(
            "# ./quickstart.sh: the names from the CloudFormation stack's outputs, state in the run\n"
            "# directory, the lookup table from the source tree, metrics every 5 s instead of 60 s and\n"
            "# uncompressed (moto, with IAM auth on, cannot verify the signature of a gzip body).\n"
            + "\n".join(dropin))
        p = subprocess.run([str(rw), "check-config", "-c", str(conf)], capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"quickstart: {example} does not check:\n{p.stderr}")

        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"AWS_ENDPOINT_URL": moto.endpoint, "AWS_REGION": moto.region,
                    "AWS_ACCESS_KEY_ID": moto.creds[0], "AWS_SECRET_ACCESS_KEY": moto.creds[1]})

        # 4. rarewatchd, then the replay.
        log = open(run / "rarewatchd.log", "wb")
        daemon = subprocess.Popen([str(rwd), "-c", str(conf)], env=env, stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                  preexec_fn=rwharness._die_with_parent)
        print(f"==> rarewatchd -c {conf} (pid {daemon.pid}); log {run}/rarewatchd.log")
        put_log = open(run / "put.log", "wb")
        put = subprocess.Popen([str(rw), "put", "--stream", stream, "--partition-key", mod.KEY, "--rate",
                                str(rate), str(sample)], env=env, stdin=subprocess.DEVNULL, stdout=put_log,
                               stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=rwharness._die_with_parent)
        print(f"==> rarewatch put --stream {stream} --rate {rate} {sample}  (about {len(records) / rate:.0f} s)")
        if verbose:
            print(f"{'event time':15} {'key':16} {'detector':18} reason")

        s3 = moto.client("s3")
        reader = S3Reader(s3, bucket, prefix)
        anomalies, delivered, first_line = [], 0, None
        order = KeyOrder(mod.KEY)
        want = len(records) - dropped
        t_start = time.monotonic()
        next_progress = t_start + 15
        try:
            while True:
                lines = reader.new_lines()
                for line in lines:
                    for f in common.flags([line]):
                        anomalies.append(f)
                        if verbose:
                            hit = common.match([f], incidents)[0]
                            tag = f"  [injected: {incidents[hit]['kind']}]" if hit is not None else ""
                            print(f"{hms(f[0]):15} {str(f[1]):16} {f[2]['detector']:18} {f[2].get('reason', '')}{tag}",
                                  flush=True)
                new = input_lines(lines)
                first_line = first_line or (new[0] if new else None)
                delivered += len(new)
                order.update(new)
                if stop_requested:
                    raise Stop()
                if daemon.poll() is not None:
                    sys.exit(f"quickstart: rarewatchd exited ({daemon.returncode}); see {run}/rarewatchd.log")
                if put.poll() is not None and delivered >= want:
                    break
                now = time.monotonic()
                if now - t_start > a.duration:
                    print(f"==> {a.duration:.0f} s are up")
                    break
                if verbose and now >= next_progress:
                    print(f"    ... {delivered} of {want} records delivered to S3", flush=True)
                    next_progress = now + 15
                time.sleep(0.5)  # the live display's refresh, not a synchronisation
        except (KeyboardInterrupt, Stop):
            interrupted = True
            print("\n==> interrupted: stopping and summarising")
        elapsed = time.monotonic() - t_start
        put_rc = put.poll()
        if put_rc is None:
            put.send_signal(signal.SIGINT)
            put.wait(10)
        put = None
        print("==> rarewatch put: " + (run / "put.log").read_text(errors="replace").strip().splitlines()[-1])
        # SIGTERM: rarewatchd drains, publishes its last metrics and checkpoints.
        daemon.send_signal(signal.SIGTERM)
        daemon_rc = daemon.wait(60)
        daemon = None
        lines = reader.new_lines()
        anomalies.extend(common.flags(lines))
        new = input_lines(lines)
        delivered += len(new)
        order.update(new)
        if order.count():
            print(f"==> {order.late} records reached rarewatchd after a later record of the same key "
                  f"(S3 order by shard and sequence number); detectors see them in that order")
        ok = summary(a, run, records, incidents, dropped, delivered, anomalies, detectors, moto, namespace,
                     alarms, bucket, reader.first_key, first_line, elapsed, daemon_rc)
        if a.check and (not ok or put_rc != 0 or interrupted):
            return 1
        return 0
    finally:
        for p in (put, daemon):
            if p and p.poll() is None:
                p.kill()
                p.wait()
        if moto:
            moto.stop()


def input_lines(lines):
    """The output lines of input records: not a window's record (`_window`) nor an idle
    key's alert (`_alert`), which rarewatchd derives and delivers beside them."""
    return [ln for ln in lines if not ln.startswith(('{"_alert"', '{"_window"'))]


def summary(a, run, records, incidents, dropped, delivered, anomalies, detectors, moto, namespace, alarms,
            bucket, first_key, first_line, elapsed, daemon_rc):
    print(f"\n==> summary ({elapsed:.0f} s; rarewatchd exited {daemon_rc})")
    want = len(records) - dropped
    print(f"records: {len(records)} put into the stream, {dropped} filtered by the configuration, "
          f"{delivered} delivered to S3 ({'all' if delivered >= want else f'{want - delivered} missing'})")
    hits = common.match(anomalies, incidents)
    found = collections.defaultdict(set)  # incident -> detectors
    per_det = collections.Counter()
    other = collections.Counter()
    for f, h in zip(anomalies, hits):
        per_det[f[2]["detector"]] += 1
        if h is None:
            other[f[2]["detector"]] += 1
        else:
            found[h].add(f[2]["detector"])
    print("\nanomalies per detector (CloudWatch AnomalyCount counts the same lines):")
    print(f"  {'detector':20} {'anomalies':>9} {'on injected':>11} {'other':>6}")
    for d in detectors:
        print(f"  {d:20} {per_det[d]:9d} {per_det[d] - other[d]:11d} {other[d]:6d}")
    print("\ninjected incidents:")
    print(f"  {'kind':18} {'injected':>8} {'found':>6} {'missed':>6}  found by")
    by_kind = collections.defaultdict(list)
    for i, e in enumerate(incidents):
        by_kind[e["kind"]].append(i)
    missed = []
    for kind, idx in by_kind.items():
        n_found = sum(1 for i in idx if i in found)
        dets = collections.Counter(d for i in idx for d in found.get(i, ()))
        print(f"  {kind:18} {len(idx):8d} {n_found:6d} {len(idx) - n_found:6d}  "
              f"{', '.join(f'{d} ({n})' for d, n in dets.most_common())}")
        missed += [incidents[i] for i in idx if i not in found]
    for e in missed:
        print(f"  missed: {e['kind']} on {e['key']} at {hms(e['start'])}")

    print(f"\nS3 (moto): every output line under s3://{bucket}/events/YYYY/MM/DD/HH/ (anomalies are the "
          f"lines with \"is_anomaly\":true; packaging/aws/athena.sql reads them)")
    if first_key:
        print(f"  e.g. s3://{bucket}/{first_key}, first line:\n  {first_line}")

    cw = moto.client("cloudwatch")
    # Whole minutes around the run: moto returns only the periods inside [start, end).
    t0 = datetime.fromtimestamp((time.time() - elapsed) // 60 * 60 - 120, timezone.utc)
    now = datetime.fromtimestamp(time.time() // 60 * 60 + 120, timezone.utc)
    print(f"\nCloudWatch metrics (namespace {namespace}, GetMetricStatistics over the run):")
    metrics = cw.list_metrics(Namespace=namespace)["Metrics"]
    totals = collections.defaultdict(float)
    for m in sorted(metrics, key=lambda m: (m["MetricName"], str(m["Dimensions"]))):
        st = cw.get_metric_statistics(Namespace=namespace, MetricName=m["MetricName"], Dimensions=m["Dimensions"],
                                      StartTime=t0, EndTime=now, Period=60,
                                      Statistics=["Sum", "Maximum", "SampleCount"])["Datapoints"]
        if not st:
            continue
        dims = ",".join(f"{d['Name']}={d['Value']}" for d in m["Dimensions"])
        s, mx = sum(p["Sum"] for p in st), max(p["Maximum"] for p in st)
        unit = st[0].get("Unit", "")
        if unit == "Count":
            totals[m["MetricName"]] += s
            print(f"  {m['MetricName']:20} {dims:28} Sum {s:.0f}")
        else:
            print(f"  {m['MetricName']:20} {dims:28} Maximum {mx:.4g} {unit if unit != 'None' else ''}")
    print("  (DetectionLatency runs from a record's event time: the sample's hours of event time are\n"
          "   replayed in about a minute, so it shows their age, not rarewatchd's delay.)")
    # The stack's alarms: AnomalyAlarm sums AnomalyCount over every Detector per minute
    # (a Metrics Insights query) and fires above AnomalyAlarmThreshold (0); LagAlarm
    # watches the worst shard's MillisBehindLatest over 5 minutes.
    anom_name, lag_name = alarms
    desc = {x["AlarmName"]: x for x in cw.describe_alarms(AlarmNames=alarms)["MetricAlarms"]}
    per_min = collections.Counter()
    for d in detectors:
        for p in cw.get_metric_statistics(Namespace=namespace, MetricName="AnomalyCount",
                                          Dimensions=[{"Name": "Detector", "Value": d}], StartTime=t0, EndTime=now,
                                          Period=60, Statistics=["Sum"])["Datapoints"]:
            per_min[p["Timestamp"]] += p["Sum"]
    peak = max(per_min.values(), default=0)
    thr = desc.get(anom_name, {}).get("Threshold", 0)
    print("\nalarms (the stack's):")
    print(f"  {anom_name:36} DescribeAlarms: {desc.get(anom_name, {}).get('StateValue', '?'):18} from the metric: "
          f"{'ALARM' if peak > thr else 'OK'} (AnomalyCount, all detectors: max {peak:.0f}/min, "
          f"{sum(1 for v in per_min.values() if v > thr)} minutes above {thr:.0f})")
    print(f"  {lag_name:36} DescribeAlarms: {desc.get(lag_name, {}).get('StateValue', '?'):18} "
          f"(MillisBehindLatest above {desc.get(lag_name, {}).get('Threshold', 0):.0f} ms for 5 minutes)")

    print("  (moto stores alarms but does not evaluate them: DescribeAlarms keeps the state it was\n"
          "   created with; \"from the metric\" is what CloudWatch decides from the same datapoints.)")

    recall = len(found) / len(incidents) if incidents else 1.0
    every_kind = all(any(i in found for i in idx) for idx in by_kind.values())
    ok = (recall >= CASES[a.case]["min_recall"] and every_kind and delivered >= want
          and totals.get("RecordsIn", 0) >= len(records) and totals.get("RecordsOut", 0) >= want)
    print(f"\n{'OK' if ok else 'NOT OK'}: {len(found)} of {len(incidents)} injected incidents detected and "
          f"delivered to S3 (--check wants {CASES[a.case]['min_recall']:.0%} and every kind); CloudWatch "
          f"RecordsIn {totals.get('RecordsIn', 0):.0f}, RecordsOut {totals.get('RecordsOut', 0):.0f}. Files: {run}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
