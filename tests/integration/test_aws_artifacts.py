#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The AWS deployment artifacts in packaging/aws/ work (issue 9, items 5 and 7).

Usage: test_aws_artifacts.py BUILD_DIR iam|cloudformation

iam: the end-to-end flow against moto with IAM auth on, the daemon holding
  ONLY packaging/aws/iam-policy.json (placeholders filled in): `rarewatch put`
  (a separate producer user holding only kinesis:PutRecords) -> Kinesis ->
  rarewatchd (DynamoDB leases, a table it creates) -> Firehose -> S3, dead
  letters -> the second Firehose stream, metrics -> CloudWatch.  No request
  is refused, the data arrives.
  moto 5.2.1 checks the signature and the action of every request, but
  evaluates non-S3 actions against the resource "*" (only SQS, IAM and STS
  tell it the resource) and ignores the cloudwatch:namespace condition; it
  also names CloudWatch actions after the signing name ("monitoring:").  So
  the user gets the policy with those two things adapted for moto (moto_view
  below), and the test checks the rest itself on what the daemon really sent:
  every request, recorded by the fault proxy in between, is evaluated against
  the unmodified policy (actions, resource ARNs, the namespace condition), and
  the actions used must be exactly the actions granted (nothing granted that
  the daemon does not use).  The daemon sends CloudWatch bodies uncompressed
  ([cloudwatch] compress = false): moto cannot verify the signature of a
  gzip body.
  Then athena.sql's columns are checked against the delivered lines: every
  field the daemon wrote is a declared column of a compatible type, and every
  declared column occurs (so neither side can drift).

cloudformation: cloudformation.yaml passes cfn-lint (AWS's resource
  specification: this covers the Firehose and alarm resources moto cannot
  model), is deployed to moto's CloudFormation (tests/harness/cfn_local.py),
  the role it creates holds exactly iam-policy.json (less CreateTable: the
  stack makes the table), and rarewatchd runs against what it created: the
  records arrive in the bucket under YYYY/MM/DD/HH/ as athena.sql projects
  them (and quicksight-manifest.json names), the metrics the two alarms
  query exist with the dimensions they group by, and the alarms are as
  declared.  moto without IAM auth here:
  moto stores a CloudFormation inline role policy as a Python repr, which
  its own IAM evaluation cannot parse (the policy itself is proven by 'iam').
"""
import ast
import base64
import collections
import copy
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "harness"))
sys.path.insert(0, str(HERE.parent / "usecases"))
from consumer_common import Daemon, WorkDir, binaries, clean_env, run, wait_for  # noqa: E402
from rwharness import REGION, FaultProxy, Moto, aws_client, parse_ndjson_objects, read_firehose_s3_objects  # noqa: E402
import test_e2e  # noqa: E402
import fraud  # noqa: E402

AWS_DIR = HERE.parent.parent / "packaging" / "aws"
N = 2000
# The end-to-end test's two detectors, and an rcf one (its anomalies carry
# "attribution", a column of athena.sql).
DETECTORS = test_e2e.DETECTORS + """
[detector.amount_shape]
type = rcf
fields = amount
alert_threshold = 0.999
"""


# --------------------------------------------------------------------------- the policy

PLACEHOLDER = re.compile(r"<[A-Z_]+>")


def policy_for(names: dict) -> dict:
    """iam-policy.json with its <PLACEHOLDERS> filled in (all of them must be)."""
    text = (AWS_DIR / "iam-policy.json").read_text()
    for k, v in names.items():
        text = text.replace(f"<{k}>", v)
    left = PLACEHOLDER.findall(text)
    if left:
        raise AssertionError(f"placeholders not filled: {left}")
    return json.loads(text)


def aslist(x):
    return x if isinstance(x, list) else [x]


def moto_view(policy: dict) -> dict:
    """The same grants as moto 5.2.1 evaluates them (see the module doc)."""
    p = copy.deepcopy(policy)
    for st in p["Statement"]:
        acts = aslist(st["Action"])
        st["Action"] = acts + ["monitoring:" + a.split(":", 1)[1] for a in acts if a.startswith("cloudwatch:")]
        st["Resource"] = "*"
    return p


def _glob(pattern, value, ci=False):
    rx = "^" + ".*".join(".".join(re.escape(q) for q in part.split("?")) for part in pattern.split("*")) + "$"
    return re.match(rx, value, re.IGNORECASE if ci else 0) is not None


def allows(policy: dict, action: str, resource: str, ctx: dict) -> bool:
    """IAM evaluation of one identity policy (Allow/Deny, Action, Resource,
    StringEquals/StringLike conditions): enough for iam-policy.json, and it
    refuses to guess at anything else."""
    allowed = False
    for st in aslist(policy["Statement"]):
        if set(st) - {"Sid", "Effect", "Action", "Resource", "Condition"}:
            raise AssertionError(f"statement element not evaluated here: {st}")
        if not any(_glob(a, action, ci=True) for a in aslist(st["Action"])):
            continue
        if not any(_glob(r, resource) for r in aslist(st["Resource"])):
            continue
        ok = True
        for op, kv in st.get("Condition", {}).items():
            if op not in ("StringEquals", "StringLike"):
                raise AssertionError(f"condition operator not evaluated here: {op}")
            for key, want in kv.items():
                have = ctx.get(key)
                ok = ok and have is not None and any(
                    have == w if op == "StringEquals" else _glob(w, have) for w in aslist(want))
        if not ok:
            continue
        if st["Effect"] == "Deny":
            return False
        allowed = True
    return allowed


def request_to_iam(r: dict, region: str, account: str):
    """(action, resource ARN, condition context) of one recorded request, as
    IAM sees it."""
    body = r["body"] or b""
    if r["headers"].get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    target = r["headers"].get("x-amz-target", "")
    if not target:  # query protocol: CloudWatch
        q = urllib.parse.parse_qs(body.decode())
        action = "cloudwatch:" + q["Action"][0]
        return action, "*", {"cloudwatch:namespace": q.get("Namespace", [None])[0]}
    prefix, op = target.split(".", 1)
    j = json.loads(body or b"{}")
    if prefix.startswith("Kinesis"):
        arn = j.get("StreamARN")
        name = j.get("StreamName")
        if not arn and not name and "ShardIterator" in j:
            # IAM evaluates GetRecords against the iterator's stream; moto's
            # iterators are base64("stream:shard:sequence").
            name = base64.b64decode(j["ShardIterator"]).decode().split(":")[0]
        if not arn and not name:
            return "kinesis:" + op, None, {}
        return "kinesis:" + op, arn or f"arn:aws:kinesis:{region}:{account}:stream/{name}", {}
    if prefix.startswith("Firehose"):
        return "firehose:" + op, f"arn:aws:firehose:{region}:{account}:deliverystream/{j['DeliveryStreamName']}", {}
    if prefix.startswith("DynamoDB"):
        return "dynamodb:" + op, f"arn:aws:dynamodb:{region}:{account}:table/{j['TableName']}", {}
    return f"?:{target}", None, {}


def granted_actions(policy: dict) -> set:
    return {a for st in policy["Statement"] if st["Effect"] == "Allow" for a in aslist(st["Action"])}


# --------------------------------------------------------------------------- athena.sql

def _split_top(s, sep=","):
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        if ch == sep and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


def parse_type(t: str):
    t = t.strip()
    m = re.fullmatch(r"(?is)(array|struct|map)\s*<(.*)>", t)
    if not m:
        return t.lower()
    kind, inner = m.group(1).lower(), m.group(2)
    if kind == "array":
        return ("array", parse_type(inner))
    if kind == "map":
        k, v = _split_top(inner)
        return ("map", parse_type(k), parse_type(v))
    fields = {}
    for f in _split_top(inner):
        name, ft = f.split(":", 1)
        fields[name.strip().strip("`")] = parse_type(ft)
    return ("struct", fields)


def parse_athena(path=AWS_DIR / "athena.sql"):
    """(columns {name: type}, partition column, LOCATION, TBLPROPERTIES) of
    the CREATE EXTERNAL TABLE statement."""
    sql = "\n".join(line.split("--", 1)[0] for line in Path(path).read_text().splitlines())
    m = re.search(r"(?is)CREATE\s+EXTERNAL\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?\S+\s*\((.*?)\)\s*PARTITIONED\s+BY\s*\((.*?)\)", sql)
    cols = {}
    for c in _split_top(m.group(1)):
        name, t = c.strip().split(None, 1)
        cols[name.strip("`")] = parse_type(t)
    part = m.group(2).split()[0]
    loc = re.search(r"(?is)LOCATION\s+'([^']+)'", sql).group(1)
    props = dict(re.findall(r"'([^']+)'\s*=\s*'([^']*)'", re.search(r"(?is)TBLPROPERTIES\s*\((.*?)\);", sql).group(1)))
    return cols, part, loc, props


# anomalies[].value is polymorphic (number, string, object); the JSON SerDe
# gives it to a string column as JSON text (documented in athena.sql).
ANY_AS_STRING = {"anomalies[].value"}


def check_value(t, v, path, problems, seen):
    if v is None:
        return
    seen.add(path)
    if path in ANY_AS_STRING and t == "string":
        return
    if isinstance(t, tuple):
        kind = t[0]
        if kind == "array":
            if not isinstance(v, list):
                problems.append(f"{path}: {type(v).__name__}, declared array")
                return
            for e in v:
                check_value(t[1], e, path + "[]", problems, seen)
        elif kind == "map":
            if not isinstance(v, dict):
                problems.append(f"{path}: {type(v).__name__}, declared map")
                return
            for e in v.values():
                check_value(t[2], e, path + "{}", problems, seen)
        else:
            if not isinstance(v, dict):
                problems.append(f"{path}: {type(v).__name__}, declared struct")
                return
            for k, e in v.items():
                if k not in t[1]:
                    problems.append(f"{path}.{k}: written by the daemon, not declared")
                else:
                    check_value(t[1][k], e, f"{path}.{k}", problems, seen)
        return
    ok = {"string": isinstance(v, str), "boolean": isinstance(v, bool),
          "bigint": isinstance(v, int) and not isinstance(v, bool),
          "int": isinstance(v, int) and not isinstance(v, bool),
          "double": isinstance(v, (int, float)) and not isinstance(v, bool)}.get(t)
    if ok is None:
        problems.append(f"{path}: type {t} not checked here")
    elif not ok:
        problems.append(f"{path}: {json.dumps(v)[:40]} is not a {t}")


def declared_paths(t, path, out):
    out.add(path)
    if isinstance(t, tuple):
        if t[0] == "array":
            declared_paths(t[1], path + "[]", out)
        elif t[0] == "map":
            declared_paths(t[2], path + "{}", out)
        else:
            for k, ft in t[1].items():
                declared_paths(ft, f"{path}.{k}", out)


def check_athena_columns(t, lines):
    cols, _, _, _ = parse_athena()
    problems, seen = [], set()
    for o in lines:
        for k, v in o.items():
            if k not in cols:
                problems.append(f"{k}: written by the daemon, not a column")
            else:
                check_value(cols[k], v, k, problems, seen)
    declared = set()
    for k, ct in cols.items():
        declared_paths(ct, k, declared)
    unseen = sorted(declared - seen)
    t.check("athena.sql: every field of every delivered line is a column of a compatible type",
            not problems, sorted(set(problems))[:10])
    t.check("athena.sql: every declared column and sub-field occurs in the delivered lines",
            not unseen, unseen)


# --------------------------------------------------------------------------- shared

def sample_input(path, n, seed=11):
    """The quickstart's card transactions (tests/usecases/fraud.py), event
    times as ISO 8601 strings as many producers write them (athena.sql: ts string)."""
    recs, _ = fraud.generate(random.Random(seed), n / 60000)
    for rec in recs:
        rec["ts"] = datetime.fromtimestamp(rec["ts"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # Rare events every detector flags, whatever the seed: an amount spike
    # (zscore, rcf) and a country never seen for the busiest card.
    card = collections.Counter(x["card"] for x in recs).most_common(1)[0][0]
    last = dict(recs[-1], card=card, country=next(x["country"] for x in recs if x["card"] == card))
    recs.append(dict(last, amount=250000.0))
    recs.append(dict(last, country="AQ"))
    with open(path, "w") as f:
        for rec in recs:
            f.write(json.dumps(rec) + "\n")
    return recs


def s3_lines(moto, bucket, prefix):
    objs = [(key, body) for _, key, body in read_firehose_s3_objects(moto, bucket, prefix)]
    lines, bad = parse_ndjson_objects(objs)
    return lines, [k for k, _ in objs], bad


def metric_dims(cw, ns):
    """{metric name: set of dimension-name tuples} published in ns."""
    out = collections.defaultdict(set)
    for page in cw.get_paginator("list_metrics").paginate(Namespace=ns):
        for m in page["Metrics"]:
            out[m["MetricName"]].add(tuple(sorted(d["Name"] for d in m["Dimensions"])))
    return out


def metric_sum(cw, ns, name):
    now = datetime.now(timezone.utc)
    total = 0.0
    for page in cw.get_paginator("list_metrics").paginate(Namespace=ns, MetricName=name):
        for m in page["Metrics"]:
            res = cw.get_metric_statistics(Namespace=ns, MetricName=name, Dimensions=m["Dimensions"],
                                           StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5),
                                           Period=3600, Statistics=["Sum"])
            total += sum(p["Sum"] for p in res.get("Datapoints", []))
    return total


def hour_prefix_ok(key, base, fmt):
    """The object key is base + a dt value in the projection format + '/'."""
    if not key.startswith(base):
        return False
    rest = key[len(base):]
    pyfmt = fmt.replace("yyyy", "%Y").replace("MM", "%m").replace("dd", "%d").replace("HH", "%H")
    width = len(datetime(2026, 1, 1).strftime(pyfmt))
    try:
        datetime.strptime(rest[:width], pyfmt)
    except ValueError:
        return False
    return rest[width:width + 1] == "/"


class AdminMoto(Moto):
    # The set-up user also creates the restricted users and the stack.
    POLICY_ACTIONS = Moto.POLICY_ACTIONS + ["iam:*", "cloudformation:*"]


def make_user(moto, name, policy):
    iam = moto.client("iam")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
    k = iam.create_access_key(UserName=name)["AccessKey"]
    return k["AccessKeyId"], k["SecretAccessKey"]


def is_denied(exc):
    return any(s in str(exc) for s in ("AccessDenied", "not authorized"))


# --------------------------------------------------------------------------- iam

def test_iam(t, build):
    rarewatch, rarewatchd = binaries(build)
    stream, fh, dlfh, bucket, table, ns = "rw-iam-in", "rw-iam-out", "rw-iam-dl", "rw-iam-bucket", "rw-iam-leases", "RarewatchIam"
    t0 = time.monotonic()
    with WorkDir("rw-awsart-iam-", t) as workdir, AdminMoto(iam_auth=True) as moto, \
            FaultProxy(moto.endpoint, record=True) as proxy:
        acct = moto.account_id
        kin = moto.client("kinesis")
        kin.create_stream(StreamName=stream, ShardCount=2)
        kin.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1})
        moto.create_firehose_to_s3(fh, bucket, "events/")
        # The second delivery stream into the same bucket, as the template does.
        moto.client("firehose").create_delivery_stream(
            DeliveryStreamName=dlfh, DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": f"arn:aws:iam::{acct}:role/rarewatch-firehose",
                "BucketARN": f"arn:aws:s3:::{bucket}", "Prefix": "deadletter/"})

        policy = policy_for({"REGION": REGION, "ACCOUNT_ID": acct, "STREAM_NAME": stream,
                             "DELIVERY_STREAM": fh, "DEADLETTER_DELIVERY_STREAM": dlfh,
                             "LEASE_TABLE": table, "METRIC_NAMESPACE": ns})
        daemon_creds = make_user(moto, "rarewatchd", moto_view(policy))
        producer = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kinesis:PutRecords",
                    "Resource": f"arn:aws:kinesis:{REGION}:{acct}:stream/{stream}"}]}
        producer_creds = make_user(moto, "producer", moto_view(producer))

        # Negative controls: the users really hold only their policies.
        try:
            aws_client("kinesis", moto.endpoint, daemon_creds).put_records(
                StreamName=stream, Records=[{"Data": b"{}", "PartitionKey": "x"}])
            denied = False
        except Exception as exc:  # noqa: BLE001
            denied = is_denied(exc)
        t.check("moto refuses the daemon user kinesis:PutRecords (not in its policy)", denied)
        try:
            aws_client("dynamodb", moto.endpoint, producer_creds).list_tables()
            denied = False
        except Exception as exc:  # noqa: BLE001
            denied = is_denied(exc)
        t.check("moto refuses the producer user anything but PutRecords", denied)
        arn = f"arn:aws:kinesis:{REGION}:{acct}:stream/{stream}"
        t.check("the evaluator is not vacuous: another namespace, another stream, another table are refused",
                allows(policy, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": ns}) and
                not allows(policy, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "AWS/EC2"}) and
                not allows(policy, "cloudwatch:PutMetricData", "*", {}) and
                allows(policy, "kinesis:GetRecords", arn, {}) and
                not allows(policy, "kinesis:GetRecords", arn + "-other", {}) and
                not allows(policy, "kinesis:PutRecords", arn, {}) and
                not allows(policy, "dynamodb:Scan", f"arn:aws:dynamodb:{REGION}:{acct}:table/other", {}))

        src = os.path.join(workdir, "in.ndjson")
        sample_input(src, N - 2)  # + 2 rare events = N
        env = clean_env({"AWS_ACCESS_KEY_ID": daemon_creds[0], "AWS_SECRET_ACCESS_KEY": daemon_creds[1],
                         **{f"AWS_ENDPOINT_URL_{s}": proxy.endpoint for s in ("KINESIS", "FIREHOSE", "CLOUDWATCH", "DYNAMODB")}})
        penv = clean_env({"AWS_ACCESS_KEY_ID": producer_creds[0], "AWS_SECRET_ACCESS_KEY": producer_creds[1],
                          "AWS_ENDPOINT_URL_KINESIS": moto.endpoint})
        extra = DETECTORS + (f"[firehose]\ndelivery_stream = {fh}\nflush_interval = 200ms\n"
                             f"[deadletter]\ndelivery_stream = {dlfh}\n"
                             f"[cloudwatch]\nnamespace = {ns}\nflush_interval = 1s\ncompress = false\n")
        d = Daemon(rarewatchd, os.path.join(workdir, "d"), env, stream, output=False, extra=extra,
                   checkpoint={"store": "dynamodb", "table": table, "create_table": "true",
                               "worker_id": "w1", "renew_interval": "1s", "take_interval": "1s"})
        d.ck_dir.mkdir(parents=True, exist_ok=True)  # detector state lives there (StateDirectory=)
        with d:
            d.start()
            r = subprocess.run([rarewatch, "put", "--stream", stream, "--partition-key", "card", "-q", src],
                               env=penv, capture_output=True, text=True, timeout=300)
            t.check("rarewatch put as the producer user (kinesis:PutRecords only): exit 0", r.returncode == 0, r.stderr[-400:])
            # One record the daemon cannot decode: it goes to the dead-letter stream.
            aws_client("kinesis", moto.endpoint, producer_creds).put_records(
                StreamName=stream, Records=[{"Data": b"this is not JSON", "PartitionKey": "bad"}])

            def arrived():
                d.alive()
                lines, _, _ = s3_lines(moto, bucket, "events/")
                dl, _, _ = s3_lines(moto, bucket, "deadletter/")
                return len(lines) >= N and dl
            try:
                wait_for(arrived, 120, f"{N} lines and a dead letter in S3")
            except TimeoutError:
                pass
            lines, keys, bad = s3_lines(moto, bucket, "events/")
            dl, _, _ = s3_lines(moto, bucket, "deadletter/")
            provs = {(o["_kinesis"]["shard_id"], o["_kinesis"]["sequence_number"]) for o in lines}
            t.check(f"all {N} records delivered through Firehose to S3, once each", len(lines) == N and len(provs) == N,
                    (len(lines), len(provs)))
            t.check("every object valid NDJSON under events/YYYY/MM/DD/HH/",
                    not bad and keys and all(hour_prefix_ok(k, "events/", "yyyy/MM/dd/HH") for k in keys), (bad[:3], keys[:3]))
            t.check("the undecodable record reached the dead-letter delivery stream",
                    len(dl) == 1 and base64.b64decode(dl[0].get("data_base64", "")) == b"this is not JSON", dl[:1])
            cw = moto.client("cloudwatch")

            def metrics_in():
                d.alive()
                dims = metric_dims(cw, ns)
                return metric_sum(cw, ns, "RecordsIn") >= N + 1 and "AnomalyCount" in dims and "MillisBehindLatest" in dims
            try:
                wait_for(metrics_in, 60, "metrics in CloudWatch")
            except TimeoutError:
                pass
            dims = metric_dims(cw, ns)
            t.check("CloudWatch: RecordsIn, AnomalyCount (Detector), MillisBehindLatest (ShardId) published",
                    metric_sum(cw, ns, "RecordsIn") == N + 1 and ("Detector",) in dims["AnomalyCount"] and
                    ("ShardId",) in dims["MillisBehindLatest"], {k: sorted(v) for k, v in dims.items()})
            ddb = moto.client("dynamodb")
            items = ddb.scan(TableName=table)["Items"]
            t.check("the daemon created the lease table and holds a lease per shard",
                    len(items) == 2 and all(i.get("leaseOwner", {}).get("S") == "w1" for i in items), items)
            rc = d.terminate(60)
            t.check("SIGTERM: exit 0", rc == 0, rc)
        log = d.log()
        t.check("no AccessDenied in the daemon's log", not re.search(r"AccessDenied|not authorized", log),
                [x for x in log.splitlines() if re.search("AccessDenied|not authorized", x)][:3])
        reqs = list(proxy.requests)
        # The one expected refusal: DescribeTable before the daemon created the table.
        refused = collections.Counter((q["action"], q["status"], q.get("error")) for q in reqs if q["status"] != 200
                                      and not (q["action"] == "DescribeTable" and q["status"] == 400 and
                                               q.get("error") == "ResourceNotFoundException"))
        t.check(f"moto accepted all {len(reqs)} of the daemon's requests (signature and action; "
                "the only error: DescribeTable before CreateTable)", reqs and not refused, dict(refused))
        used, not_allowed = collections.Counter(), []
        for q in reqs:
            action, res, ctx = request_to_iam(q, REGION, acct)
            used[action] += 1
            if res is None or not allows(policy, action, res, ctx):
                not_allowed.append((action, res, ctx))
        print(f"# daemon requests by action: {dict(sorted(used.items()))}", flush=True)
        t.check("every request is allowed by iam-policy.json itself (action, resource ARN, namespace condition)",
                not not_allowed, not_allowed[:5])
        t.check("least privilege: the policy grants exactly the actions the daemon used",
                set(used) == granted_actions(policy), (sorted(set(used)), sorted(granted_actions(policy))))
        check_athena_columns(t, lines)
    print(f"# wall time {time.monotonic() - t0:.1f} s", flush=True)


# --------------------------------------------------------------------------- cloudformation

def normalise(policy):
    st = []
    for s in policy["Statement"]:
        s = dict(s)
        s["Action"] = sorted(aslist(s["Action"]))
        s["Resource"] = sorted(aslist(s["Resource"]))
        st.append(s)
    return sorted(st, key=lambda s: s.get("Sid", ""))


def test_cloudformation(t, build):
    rarewatch, rarewatchd = binaries(build)
    t0 = time.monotonic()
    lint = shutil.which("cfn-lint")
    r = subprocess.run([lint, str(AWS_DIR / "cloudformation.yaml")] if lint else
                       [sys.executable, "-m", "cfnlint", str(AWS_DIR / "cloudformation.yaml")],
                       capture_output=True, text=True)
    t.check("cfn-lint: cloudformation.yaml has no errors or warnings", r.returncode == 0, (r.stdout + r.stderr)[-1500:])
    params = {"StreamName": "rw-cfn-in", "ShardCount": "2", "MetricNamespace": "RarewatchCfn",
              "LeaseTableName": "rw-cfn-leases", "DeliveryStreamName": "rw-cfn-out",
              "DeadLetterDeliveryStreamName": "rw-cfn-dl"}
    with WorkDir("rw-awsart-cfn-", t) as workdir, Moto(iam_auth=False) as moto:
        out = subprocess.run([sys.executable, str(HERE.parent / "harness" / "cfn_local.py"), "--endpoint", moto.endpoint,
                              "--stack", "rw-cfn"] + [f"--param={k}={v}" for k, v in params.items()],
                             capture_output=True, text=True, timeout=120)
        t.check("cfn_local.py deploys the template: exit 0", out.returncode == 0, out.stderr[-1500:])
        outputs = json.loads(out.stdout)
        print(f"# stack outputs: {outputs}", flush=True)
        want = {"StreamName", "StreamArn", "BucketName", "OutputLocation", "DeliveryStreamName",
                "DeadLetterDeliveryStreamName", "LeaseTableName", "MetricNamespace", "DaemonRoleArn",
                "DaemonInstanceProfileName", "AnomalyAlarmName", "LagAlarmName"}
        t.check("every output is there", want <= set(outputs), sorted(want - set(outputs)))
        acct = moto.account_id
        iam = moto.client("iam")
        role = outputs["DaemonRoleArn"].rsplit("/", 1)[1]
        docs = [iam.get_role_policy(RoleName=role, PolicyName=p)["PolicyDocument"]
                for p in iam.list_role_policies(RoleName=role)["PolicyNames"]]
        docs = [d if isinstance(d, dict) else (json.loads(d) if d.lstrip().startswith("{\"") else ast.literal_eval(d))
                for d in docs]
        expect = policy_for({"REGION": REGION, "ACCOUNT_ID": acct, "STREAM_NAME": params["StreamName"],
                             "DELIVERY_STREAM": params["DeliveryStreamName"],
                             "DEADLETTER_DELIVERY_STREAM": params["DeadLetterDeliveryStreamName"],
                             "LEASE_TABLE": params["LeaseTableName"], "METRIC_NAMESPACE": params["MetricNamespace"]})
        for s in expect["Statement"]:
            s["Action"] = [a for a in aslist(s["Action"]) if a != "dynamodb:CreateTable"]
        t.check("the stack's daemon role holds iam-policy.json (less CreateTable: the stack makes the table)",
                len(docs) == 1 and normalise(docs[0]) == normalise(expect), docs)
        profile = iam.get_instance_profile(InstanceProfileName=outputs["DaemonInstanceProfileName"])["InstanceProfile"]
        t.check("the instance profile carries the daemon role",
                [r["Arn"] for r in profile["Roles"]] == [outputs["DaemonRoleArn"]], profile["Roles"])
        fh = moto.client("firehose")
        dest = {n: fh.describe_delivery_stream(DeliveryStreamName=outputs[n])["DeliveryStreamDescription"]
                ["Destinations"][0]["ExtendedS3DestinationDescription"] for n in ("DeliveryStreamName", "DeadLetterDeliveryStreamName")}
        cols, part, loc, props = parse_athena()
        bucket = outputs["BucketName"]
        t.check("athena.sql's LOCATION is the stack's OutputLocation, and the output stream's bucket and prefix",
                loc.replace("<BUCKET>", bucket) == outputs["OutputLocation"] ==
                f"s3://{dest['DeliveryStreamName']['BucketARN'].split(':')[-1]}/{dest['DeliveryStreamName']['Prefix']}",
                (loc, outputs["OutputLocation"], dest))
        qs = json.loads((AWS_DIR / "quicksight-manifest.json").read_text().replace("<BUCKET>", bucket))
        t.check("quicksight-manifest.json: the stack's OutputLocation, format JSON",
                [u for f in qs["fileLocations"] for u in f.get("URIPrefixes", [])] == [outputs["OutputLocation"]]
                and qs["globalUploadSettings"]["format"] == "JSON", qs)
        t.check("athena.sql projects dt over LOCATION/yyyy/MM/dd/HH/",
                props.get("projection.enabled") == "true" and props.get(f"projection.{part}.format") == "yyyy/MM/dd/HH"
                and props.get("storage.location.template") == loc + "${" + part + "}/", props)

        src = os.path.join(workdir, "in.ndjson")
        sample_input(src, N - 2, seed=12)
        env = clean_env(moto.env())
        extra = DETECTORS + (f"[firehose]\ndelivery_stream = {outputs['DeliveryStreamName']}\nflush_interval = 200ms\n"
                             f"[deadletter]\ndelivery_stream = {outputs['DeadLetterDeliveryStreamName']}\n"
                             f"[cloudwatch]\nnamespace = {outputs['MetricNamespace']}\nflush_interval = 1s\n")
        d = Daemon(rarewatchd, os.path.join(workdir, "d"), env, outputs["StreamName"], output=False, extra=extra,
                   checkpoint={"store": "dynamodb", "table": outputs["LeaseTableName"], "worker_id": "w1"})
        ns = outputs["MetricNamespace"]
        cw = moto.client("cloudwatch")
        d.ck_dir.mkdir(parents=True, exist_ok=True)
        with d:
            d.start()
            r = subprocess.run([rarewatch, "put", "--stream", outputs["StreamName"], "--partition-key", "card", "-q", src],
                               env=env, capture_output=True, text=True, timeout=300)
            t.check("rarewatch put into the stack's stream: exit 0", r.returncode == 0, r.stderr[-400:])
            base = outputs["OutputLocation"].split("/", 3)[3]

            def arrived():
                d.alive()
                return len(s3_lines(moto, bucket, base)[0]) >= N and \
                    {"AnomalyCount", "MillisBehindLatest"} <= set(metric_dims(cw, ns))
            try:
                wait_for(arrived, 120, f"{N} lines in the stack's bucket and the metrics")
            except TimeoutError:
                pass
            lines, keys, bad = s3_lines(moto, bucket, base)
            t.check(f"all {N} records in the stack's bucket", len(lines) == N and not bad, (len(lines), bad[:2]))
            fmt = props.get(f"projection.{part}.format", "")
            t.check("objects under OutputLocation + dt (the projection's yyyy/MM/dd/HH) + /",
                    keys and all(hour_prefix_ok(k, base, fmt) for k in keys), keys[:3])
            leases = moto.client("dynamodb").scan(TableName=outputs["LeaseTableName"])["Items"]
            t.check("leases in the stack's table, one per shard", len(leases) == 2, leases)
            dims = metric_dims(cw, ns)
            alarms = {a["AlarmName"]: a for a in cw.describe_alarms(
                AlarmNames=[outputs["AnomalyAlarmName"], outputs["LagAlarmName"]])["MetricAlarms"]}
            print("# alarms: " + json.dumps({n: {k: a.get(k) for k in ("Metrics", "Threshold", "ComparisonOperator",
                  "EvaluationPeriods", "TreatMissingData")} for n, a in alarms.items()}), flush=True)
            t.check("both alarms exist", set(alarms) == {outputs["AnomalyAlarmName"], outputs["LagAlarmName"]}, list(alarms))
            for name, metric, dim in ((outputs["AnomalyAlarmName"], "AnomalyCount", "Detector"),
                                      (outputs["LagAlarmName"], "MillisBehindLatest", "ShardId")):
                a = alarms.get(name, {})
                expr = " ".join(m.get("Expression", "") for m in a.get("Metrics", []))
                m = re.search(r'SELECT\s+\w+\((\w+)\)\s+FROM\s+SCHEMA\("([^"]+)",\s*(\w+)\)', expr)
                t.check(f"{name}: queries {metric} in the namespace grouped by {dim}, as the daemon publishes it",
                        m and m.groups() == (metric, ns, dim) and (dim,) in dims.get(metric, set()),
                        (expr, {k: sorted(v) for k, v in dims.items()}))
            a = alarms.get(outputs["LagAlarmName"], {})
            t.check("lag alarm: > 60000 ms for 5 minutes, missing data breaches",
                    a.get("Threshold") == 60000 and a.get("EvaluationPeriods") == 5 and a.get("TreatMissingData") == "breaching", a)
            rc = d.terminate(60)
            t.check("SIGTERM: exit 0", rc == 0, rc)
    print(f"# wall time {time.monotonic() - t0:.1f} s", flush=True)


def main():
    build, mode = sys.argv[1], sys.argv[2]
    fn = {"iam": test_iam, "cloudformation": test_cloudformation}[mode]
    return run(lambda t: fn(t, build))


if __name__ == "__main__":
    sys.exit(main())
