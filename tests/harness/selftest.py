#!/usr/bin/env python3
"""Self-test of the rarewatch test harness (tests/harness/rwharness.py).

Proves against the real emulators: moto's IAM auth really rejects bad
signatures; kinesis-local round-trips records and shows ChildShards after a
SplitShard; dynalite refuses a failing conditional put; the fault proxy
injects every fault kind, keeps order and counts right on partial failures,
re-signs modified requests so moto's IAM check passes, and serves its stats
and rules over HTTP.  Ends with "N passed, N failed"; exit status 1 on failure.

Plain stdlib runner (no pytest).  Run:  python3 tests/harness/selftest.py [-v] [name...]
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import sys
import time
import traceback
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import botocore.exceptions  # noqa: E402
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

from rwharness import (Dynalite, FaultProxy, HarnessError, KinesisLocal, Moto,  # noqa: E402
                       free_port, read_firehose_s3_objects, wait_for)

STREAM = "selftest"
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def check(cond, msg="check failed"):
    if not cond:
        raise AssertionError(msg)


def eq(a, b, what=""):
    if a != b:
        raise AssertionError(f"{what}: expected {b!r}, got {a!r}")


def client_error(fn, *a, **kw):
    """Run fn, expect a botocore ClientError; return (code, http status, message)."""
    try:
        fn(*a, **kw)
    except botocore.exceptions.ClientError as e:
        err = e.response.get("Error", {})
        return (err.get("Code", ""), e.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
                str(e))
    raise AssertionError(f"{getattr(fn, '__name__', fn)} succeeded, an error was expected")


def raw_json_request(endpoint: str, target: str, body: dict, timeout: float = 10.0):
    """One unsigned AWS-JSON request over a fresh connection: (status, headers, body)."""
    host, port = endpoint.split("//", 1)[1].split(":")
    data = json.dumps(body).encode()
    req = AWSRequest(method="POST", url=f"{endpoint}/", data=data, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target})
    SigV4Auth(Credentials(*E.kin.creds), "kinesis", "us-east-1").add_auth(req)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", "/", body=data, headers=dict(req.headers.items()))
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


class Env:
    moto: Moto
    kin: KinesisLocal
    ddb: Dynalite


E = Env()


# ----------------------------------------------------------------- moto IAM


@test
def moto_iam_rejects_wrong_secret():
    ok = E.moto.client("kinesis").list_streams()
    check("StreamNames" in ok)
    code, status, text = client_error(E.moto.client("kinesis", creds=E.moto.bad_creds).list_streams)
    eq(status, 403, "status for a wrong secret")
    check("SignatureDoesNotMatch" in code + text, f"not a signature error: {text}")
    code, status, text = client_error(
        E.moto.client("sts", creds=("AKIAUNKNOWNKEY000000", "x" * 40)).get_caller_identity)
    check("InvalidClientTokenId" in code + text, f"unknown key not refused: {text}")
    # the policy is checked too, not just the signature: iam:ListUsers is not granted
    code, status, text = client_error(E.moto.client("iam").list_users)
    check("AccessDenied" in code + text, f"policy not enforced: {text}")
    who = E.moto.client("sts").get_caller_identity()
    check(who["Arn"].endswith(f"user/{Moto.USER}"), who["Arn"])


@test
def moto_firehose_delivers_to_s3():
    E.moto.create_firehose_to_s3("selftest-fh", "selftest-bucket", "out/")
    fh = E.moto.client("firehose")
    r = fh.put_record_batch(DeliveryStreamName="selftest-fh",
                            Records=[{"Data": b"a\n"}, {"Data": b"b\n"}])
    eq(r["FailedPutCount"], 0, "FailedPutCount")
    objs = read_firehose_s3_objects(E.moto, "selftest-bucket", "out/")
    eq([o[2] for o in objs], [b"a\nb\n"], "delivered objects")


# ----------------------------------------------------------------- kinesis-local


def _read_shard(kin, shard_id, it_type="TRIM_HORIZON", want=None, timeout=20.0):
    """Records of a shard from it_type until `want` records (or the shard's end)."""
    it = kin.get_shard_iterator(StreamName=STREAM, ShardId=shard_id,
                                ShardIteratorType=it_type)["ShardIterator"]
    out = []
    last = {}

    def step():
        nonlocal it, last
        r = kin.get_records(ShardIterator=it, Limit=1000)
        out.extend(r["Records"])
        last = r
        it = r.get("NextShardIterator")
        return it is None or (want is not None and len(out) >= want)
    wait_for(step, timeout, f"records of {shard_id}")
    return out, last


@test
def kinesis_local_roundtrip_and_split_shows_child_shards():
    kin = E.kin.client()
    shards = kin.list_shards(StreamName=STREAM)["Shards"]
    eq(len(shards), 1, "initial shards")
    sent = [f"rec-{i}".encode() for i in range(5)]
    for d in sent:
        kin.put_record(StreamName=STREAM, Data=d, PartitionKey="pk")
    recs, last = _read_shard(kin, shards[0]["ShardId"], want=len(sent))
    eq([r["Data"] for r in recs], sent, "round trip")
    check("MillisBehindLatest" in last, "GetRecords has MillisBehindLatest")

    h = shards[0]["HashKeyRange"]
    mid = (int(h["StartingHashKey"]) + int(h["EndingHashKey"])) // 2
    kin.split_shard(StreamName=STREAM, ShardToSplit=shards[0]["ShardId"],
                    NewStartingHashKey=str(mid))
    E.kin.wait_active(STREAM)
    after = kin.list_shards(StreamName=STREAM)["Shards"]
    eq(len(after), 3, "shards after split")
    children = sorted(s["ShardId"] for s in after if s.get("ParentShardId") == shards[0]["ShardId"])
    eq(len(children), 2, "children")
    parent = next(s for s in after if s["ShardId"] == shards[0]["ShardId"])
    check("EndingSequenceNumber" in parent["SequenceNumberRange"], "parent closed")
    # Reading the closed parent to its end: no NextShardIterator, ChildShards listed.
    recs, last = _read_shard(kin, shards[0]["ShardId"])
    eq([r["Data"] for r in recs], sent, "parent still holds its records")
    check(last.get("NextShardIterator") is None, "closed shard ends")
    eq(sorted(c["ShardId"] for c in last.get("ChildShards", [])), children, "ChildShards")
    # New records land in the children.
    kin.put_record(StreamName=STREAM, Data=b"after-split", PartitionKey="pk")
    got = []
    for c in children:
        got += [r["Data"] for r in _read_shard(kin, c, want=0)[0]]
    eq(got, [b"after-split"], "records after split")


# ----------------------------------------------------------------- dynalite


@test
def dynalite_conditional_put():
    ddb = E.ddb.client()
    ddb.create_table(TableName="selftest-leases",
                     KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    E.ddb.wait_table_active("selftest-leases")
    item = {"leaseKey": {"S": "shardId-0"}, "owner": {"S": "a"}, "counter": {"N": "1"}}
    ddb.put_item(TableName="selftest-leases", Item=item,
                 ConditionExpression="attribute_not_exists(leaseKey)")
    code, status, _ = client_error(ddb.put_item, TableName="selftest-leases", Item=item,
                                   ConditionExpression="attribute_not_exists(leaseKey)")
    eq(code, "ConditionalCheckFailedException", "second create")
    eq(status, 400, "status")
    # lease-style compare-and-swap on the counter
    ddb.put_item(TableName="selftest-leases",
                 Item={**item, "owner": {"S": "b"}, "counter": {"N": "2"}},
                 ConditionExpression="#c = :old",
                 ExpressionAttributeNames={"#c": "counter"},
                 ExpressionAttributeValues={":old": {"N": "1"}})
    code, _, _ = client_error(ddb.put_item, TableName="selftest-leases",
                              Item={**item, "owner": {"S": "c"}, "counter": {"N": "2"}},
                              ConditionExpression="#c = :old",
                              ExpressionAttributeNames={"#c": "counter"},
                              ExpressionAttributeValues={":old": {"N": "1"}})
    eq(code, "ConditionalCheckFailedException", "stale CAS")
    got = ddb.get_item(TableName="selftest-leases", Key={"leaseKey": {"S": "shardId-0"}},
                       ConsistentRead=True)["Item"]
    eq(got["owner"]["S"], "b", "owner after CAS")


# ----------------------------------------------------------------- fault proxy


def _kin_via(proxy, **kw):
    from rwharness import aws_client as _client
    return _client("kinesis", proxy.endpoint, E.kin.creds, **kw)


@test
def proxy_passthrough_and_throttle():
    with FaultProxy(E.kin.endpoint) as p:
        kin = _kin_via(p)
        kin.put_record(StreamName=STREAM, Data=b"x", PartitionKey="pk")
        p.add_rule({"action": "PutRecord", "kind": "throttle", "count": 2})
        for _ in range(2):
            code, status, _ = client_error(kin.put_record, StreamName=STREAM, Data=b"x",
                                           PartitionKey="pk")
            eq(code, "ProvisionedThroughputExceededException", "throttle code")
            eq(status, 400, "throttle status")
        kin.put_record(StreamName=STREAM, Data=b"x", PartitionKey="pk")  # rule used up
        s = p.stats("PutRecord")
        eq(s["requests"], 4, "requests")
        eq(s["forwarded"], 2, "forwarded")
        eq(s["faults"], {"throttle": 2}, "faults")
        # other actions are unaffected by a per-action rule
        p.add_rule({"action": "PutRecord", "kind": "throttle", "count": 1})
        kin.list_shards(StreamName=STREAM)
        eq(p.stats("ListShards")["faults"], {}, "ListShards faults")
        # a retrying client gets through: botocore retries throttles
        retrying = _kin_via(p, max_attempts=3)
        retrying.put_record(StreamName=STREAM, Data=b"x", PartitionKey="pk")
        eq(p.faults("PutRecord", "throttle"), 3, "throttles total")


@test
def proxy_http_errors_html_and_outage():
    with FaultProxy(E.kin.endpoint) as p:
        kin = _kin_via(p)
        p.set_rules([{"action": "DescribeStreamSummary", "kind": "http_error", "status": 500},
                     {"action": "DescribeStreamSummary", "kind": "http_error", "status": 503},
                     {"action": "DescribeStreamSummary", "kind": "html", "status": 502}])
        code, status, _ = client_error(kin.describe_stream_summary, StreamName=STREAM)
        eq((code, status), ("InternalFailure", 500), "500")
        code, status, _ = client_error(kin.describe_stream_summary, StreamName=STREAM)
        eq((code, status), ("ServiceUnavailableException", 503), "503")
        st, hdrs, body = raw_json_request(p.endpoint, "Kinesis_20131202.DescribeStreamSummary",
                                          {"StreamName": STREAM})
        eq(st, 502, "html status")
        check(body.lstrip().startswith(b"<html>") and b"502 Bad Gateway" in body, body[:80])
        check(hdrs.get("Content-Type", "").startswith("text/html"), hdrs)
        kin.describe_stream_summary(StreamName=STREAM)
        eq(p.stats("DescribeStreamSummary")["faults"], {"http_error": 2, "html": 1}, "faults")

        # outage flipped over HTTP, as a C-daemon test driven from Python would
        def post(doc):
            req = urllib.request.Request(f"{p.endpoint}/__proxy/rules", method="POST",
                                         data=json.dumps(doc).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read())
        post({"outage": {"action": "ListShards", "on": True}})
        for _ in range(3):
            code, status, _ = client_error(kin.list_shards, StreamName=STREAM)
            eq((code, status), ("ServiceUnavailableException", 503), "outage")
        post({"outage": {"action": "ListShards", "on": False}})
        kin.list_shards(StreamName=STREAM)
        eq(p.faults("ListShards", "outage"), 3, "outage count")
        eq(p.rules(), [], "rules after outage off")


@test
def proxy_reset_delay_truncated():
    with FaultProxy(E.kin.endpoint) as p:
        target = "Kinesis_20131202.ListStreams"
        p.add_rule({"action": "ListStreams", "kind": "reset"})
        try:
            raw_json_request(p.endpoint, target, {})
            raise AssertionError("reset: request succeeded")
        except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError) as exc:
            check(isinstance(exc, (ConnectionResetError, http.client.RemoteDisconnected)), exc)
        eq(p.faults("ListStreams", "reset"), 1, "reset counted")
        eq(p.stats("ListStreams")["forwarded"], 0, "reset before forwarding")

        # reset *after* forwarding: upstream applied it, client saw a reset
        p.add_rule({"action": "PutRecord", "kind": "reset", "when": "after"})
        kin = _kin_via(p)
        try:
            kin.put_record(StreamName=STREAM, Data=b"ambiguous", PartitionKey="pk")
            raise AssertionError("reset-after: request succeeded")
        except botocore.exceptions.ConnectionClosedError:
            pass
        except botocore.exceptions.EndpointConnectionError:
            pass
        eq(p.stats("PutRecord")["forwarded"], 1, "forwarded before reset")

        p.add_rule({"action": "ListStreams", "kind": "delay", "seconds": 0.4})
        t0 = time.monotonic()
        st, _, body = raw_json_request(p.endpoint, target, {})
        elapsed = time.monotonic() - t0
        eq(st, 200, "delayed status")
        check(elapsed >= 0.4, f"delay too short: {elapsed:.3f}s")
        check(STREAM in json.loads(body)["StreamNames"], body)

        p.add_rule({"action": "ListStreams", "kind": "truncated"})
        st, hdrs, body = raw_json_request(p.endpoint, target, {})
        eq(st, 200, "truncated status")
        eq(int(hdrs["Content-Length"]), len(body), "Content-Length agrees")
        try:
            json.loads(body)
            raise AssertionError(f"truncated body parsed: {body!r}")
        except ValueError:
            pass
        eq(p.stats("ListStreams")["faults"], {"reset": 1, "delay": 1, "truncated": 1}, "faults")


@test
def proxy_partial_putrecords_keeps_order_and_counts():
    kin_direct = E.kin.client()
    stream = "selftest-partial"
    kin_direct.create_stream(StreamName=stream, ShardCount=1)
    E.kin.wait_active(stream)
    with FaultProxy(E.kin.endpoint, seed=7) as p:
        p.add_rule({"action": "PutRecords", "kind": "partial", "fraction": 0.3})
        kin = _kin_via(p)
        records = [{"Data": f"p{i}".encode(), "PartitionKey": "pk"} for i in range(10)]
        r = kin.put_records(StreamName=stream, Records=records)
        log = p.partial_log[-1]
        failed = log["failed"]
        eq(len(failed), 3, "failed entries")
        eq(r["FailedRecordCount"], 3, "FailedRecordCount")
        eq(len(r["Records"]), 10, "entries in response")
        for i, e in enumerate(r["Records"]):
            if i in failed:
                check(e.get("ErrorCode") in ("ProvisionedThroughputExceededException",
                                             "InternalFailure"), e)
                check("SequenceNumber" not in e, e)
            else:
                check("SequenceNumber" in e and "ErrorCode" not in e, e)
        s = p.stats("PutRecords")
        eq((s["entries_forwarded"], s["entries_failed"]), (7, 3), "entry counters")
        shard = kin_direct.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
        it = kin_direct.get_shard_iterator(StreamName=stream, ShardId=shard,
                                           ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        stored = kin_direct.get_records(ShardIterator=it)["Records"]
        want = [records[i]["Data"] for i in range(10) if i not in failed]
        eq([x["Data"] for x in stored], want, "only the surviving entries, in order")
        # sequence numbers in the merged answer are the upstream's, in place
        eq([e["SequenceNumber"] for e in r["Records"] if "SequenceNumber" in e],
           [x["SequenceNumber"] for x in stored], "sequence numbers in original positions")
        # every entry failing: nothing is forwarded
        p.add_rule({"action": "PutRecords", "kind": "partial", "fraction": 1.0})
        r = kin.put_records(StreamName=stream, Records=records[:4])
        eq(r["FailedRecordCount"], 4, "all failed")
        eq(p.stats("PutRecords")["forwarded"], 1, "all-failed batch not forwarded")


@test
def proxy_partial_firehose_resigned_passes_moto_iam():
    from rwharness import aws_client as _client
    E.moto.create_firehose_to_s3("selftest-fh-partial", "selftest-partial", "p/")
    batch = [{"Data": f"line-{i}\n".encode()} for i in range(8)]
    # Unmodified requests keep the client's own signature (Host is passed through).
    with FaultProxy(E.moto.endpoint) as p:
        fh = _client("firehose", p.endpoint, E.moto.creds)
        fh.put_record_batch(DeliveryStreamName="selftest-fh-partial", Records=batch[:1])
        # A modified request without re-signing fails moto's signature check:
        # proof that moto really checks what the proxy forwards.
        p.add_rule({"action": "PutRecordBatch", "kind": "partial", "fraction": 0.25})
        code, status, text = client_error(fh.put_record_batch,
                                          DeliveryStreamName="selftest-fh-partial", Records=batch)
        eq(status, 403, "unsigned modified request")
        check("SignatureDoesNotMatch" in code + text, text)
    s3_before = len(read_firehose_s3_objects(E.moto, "selftest-partial"))
    with FaultProxy(E.moto.endpoint, resign_creds=E.moto.creds, seed=3) as p:
        fh = _client("firehose", p.endpoint, E.moto.creds)
        p.add_rule({"action": "PutRecordBatch", "kind": "partial", "fraction": 0.25,
                    "count": None})
        r = fh.put_record_batch(DeliveryStreamName="selftest-fh-partial", Records=batch)
        failed = p.partial_log[-1]["failed"]
        eq(len(failed), 2, "failed entries")
        eq(r["FailedPutCount"], 2, "FailedPutCount")
        eq(len(r["RequestResponses"]), 8, "entries")
        for i, e in enumerate(r["RequestResponses"]):
            if i in failed:
                check(e["ErrorCode"] in ("ServiceUnavailableException", "InternalFailure"), e)
            else:
                check("RecordId" in e and "ErrorCode" not in e, e)
        objs = read_firehose_s3_objects(E.moto, "selftest-partial")
        eq(len(objs), s3_before + 1, "one new object")
        bodies = sorted(o[2] for o in objs)
        want = b"".join(batch[i]["Data"] for i in range(8) if i not in failed)
        check(want in bodies, f"surviving entries, in order, as one object: {bodies!r}")
        s = p.stats("PutRecordBatch")
        eq((s["entries_forwarded"], s["entries_failed"]), (6, 2), "entry counters")
        # resign="always" re-signs untouched requests too, e.g. a client with a
        # key moto does not know still gets through.
    with FaultProxy(E.moto.endpoint, resign_creds=E.moto.creds, resign="always") as p:
        stranger = _client("firehose", p.endpoint, ("AKIAUNKNOWNKEY000000", "x" * 40))
        stranger.list_delivery_streams()
        eq(p.stats("ListDeliveryStreams")["forwarded"], 1, "forwarded")


@test
def proxy_other_protocols_dynamodb_cbor_query():
    from rwharness import aws_client as _client
    with FaultProxy(E.ddb.endpoint) as p:
        ddb = _client("dynamodb", p.endpoint, E.ddb.creds)
        p.add_rule({"action": "GetItem", "kind": "throttle"})
        code, status, _ = client_error(ddb.get_item, TableName="selftest-leases",
                                       Key={"leaseKey": {"S": "x"}})
        eq((code, status), ("ProvisionedThroughputExceededException", 400), "dynamodb throttle")
        ddb.list_tables()
    with FaultProxy(E.moto.endpoint) as p:
        # botocore's CloudWatch speaks smithy rpc-v2-cbor; the proxy answers in CBOR.
        cw = _client("cloudwatch", p.endpoint, E.moto.creds)
        p.add_rule({"action": "PutMetricData", "kind": "throttle"})
        code, status, _ = client_error(cw.put_metric_data, Namespace="rw",
                                       MetricData=[{"MetricName": "m", "Value": 1.0}])
        eq((code, status), ("ThrottlingException", 400), "cloudwatch cbor throttle")
        cw.put_metric_data(Namespace="rw", MetricData=[{"MetricName": "m", "Value": 1.0}])
        eq(p.stats("PutMetricData")["forwarded"], 1, "cbor forwarded")
        # query protocol (STS): Action= in the form body
        sts = _client("sts", p.endpoint, E.moto.creds)
        p.add_rule({"action": "GetCallerIdentity", "kind": "throttle"})
        code, status, _ = client_error(sts.get_caller_identity)
        eq((code, status), ("Throttling", 400), "query throttle")
        check(sts.get_caller_identity()["Arn"].endswith(Moto.USER), "sts through proxy")


@test
def proxy_stats_and_rules_endpoints():
    with FaultProxy(E.kin.endpoint) as p:
        kin = _kin_via(p)
        p.add_rule({"action": "ListStreams", "kind": "throttle", "count": 1})
        client_error(kin.list_streams)
        kin.list_streams()
        with urllib.request.urlopen(f"{p.endpoint}/__proxy/stats", timeout=5) as r:
            eq(r.status, 200, "stats status")
            doc = json.loads(r.read())
        eq(doc, p.stats(), "HTTP stats equal Python stats")
        eq(doc["ListStreams"]["requests"], 2, "requests")
        eq(doc["ListStreams"]["faults"], {"throttle": 1}, "faults")
        req = urllib.request.Request(f"{p.endpoint}/__proxy/rules", method="POST",
                                     data=json.dumps({"rules": [
                                         {"action": "ListStreams", "kind": "http_error",
                                          "status": 503, "count": 2}]}).encode())
        with urllib.request.urlopen(req, timeout=5) as r:
            eq(json.loads(r.read())["rules"][0]["count"], 2, "rule installed")
        for _ in range(2):
            eq(client_error(kin.list_streams)[1], 503, "503 via HTTP rule")
        kin.list_streams()
        bad = urllib.request.Request(f"{p.endpoint}/__proxy/rules", method="POST",
                                     data=json.dumps({"add": [{"kind": "nope"}]}).encode())
        try:
            urllib.request.urlopen(bad, timeout=5)
            raise AssertionError("bad rule accepted")
        except urllib.error.HTTPError as e:
            eq(e.code, 400, "bad rule status")
        urllib.request.urlopen(urllib.request.Request(f"{p.endpoint}/__proxy/reset",
                                                      method="POST", data=b""), timeout=5)
        eq(p.stats(), {}, "stats after reset")


@test
def proxy_expect_continue_keepalive_concurrency():
    """What a libcurl client does: Expect: 100-continue, several requests on one
    connection; and several clients at once."""
    with FaultProxy(E.kin.endpoint) as p:
        host, port = "127.0.0.1", p.port
        data = json.dumps({"StreamName": STREAM, "PartitionKey": "pk",
                           "Data": base64.b64encode(b"x" * 1500).decode()}).encode()  # > 1 KiB, as curl would Expect
        with socket.create_connection((host, port), timeout=10) as sock:
            f = sock.makefile("rb")
            for i in range(3):
                req = AWSRequest(method="POST", url=f"{p.endpoint}/", data=data, headers={
                    "Content-Type": "application/x-amz-json-1.1",
                    "X-Amz-Target": "Kinesis_20131202.PutRecord"})
                SigV4Auth(Credentials(*E.kin.creds), "kinesis", "us-east-1").add_auth(req)
                head = f"POST / HTTP/1.1\r\nHost: {host}:{port}\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in req.headers.items())
                head += f"Content-Length: {len(data)}\r\nExpect: 100-continue\r\n\r\n"
                sock.sendall(head.encode())
                eq(f.readline().split(b" ", 2)[1], b"100", "interim 100 Continue")
                check(f.readline() == b"\r\n", "end of 100 response")
                sock.sendall(data)
                status = int(f.readline().split(b" ", 2)[1])
                length = 0
                while True:
                    line = f.readline()
                    if line in (b"\r\n", b""):
                        break
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = f.read(length)
                eq(status, 200, f"request {i} on one connection: {body!r}")
                check(b"SequenceNumber" in body, body)
        eq(p.stats("PutRecord")["forwarded"], 3, "forwarded on one connection")

        import threading
        p.add_rule({"action": "PutRecords", "kind": "partial", "fraction": 0.5, "count": None})
        results, errors = [], []

        def worker(n):
            try:
                kin = _kin_via(p)
                for _ in range(3):
                    r = kin.put_records(StreamName=STREAM, Records=[
                        {"Data": f"t{n}".encode(), "PartitionKey": "pk"} for _ in range(4)])
                    results.append(r["FailedRecordCount"])
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        eq(errors, [], "errors from concurrent clients")
        eq(results, [2] * 12, "failed per batch")
        s = p.wait_stat("PutRecords", "entries_failed", 24, timeout=5)
        eq((s["requests"], s["entries_forwarded"], s["entries_failed"]), (12, 24, 24),
           "counters under concurrency")


@test
def harness_helpers():
    port = free_port()
    check(1024 <= port <= 65535, port)
    calls = []
    eq(wait_for(lambda: calls.append(1) or (len(calls) >= 3 and "done"), 5, "three calls"),
       "done", "wait_for value")
    t0 = time.monotonic()
    try:
        wait_for(lambda: False, 0.3, "never")
        raise AssertionError("wait_for did not time out")
    except TimeoutError as e:
        check("never" in str(e), e)
    check(time.monotonic() - t0 < 3, "deadline respected")
    try:
        wait_for(lambda: (_ for _ in ()).throw(HarnessError("dead")), 5, "x")
        raise AssertionError("HarnessError swallowed")
    except HarnessError:
        pass
    # kinesis-local listens on loopback only (its own default is every interface)
    for port in (E.kin.port, E.kin.tls_port):
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    try:
        with open("/proc/net/tcp") as f:
            rows = [ln.split() for ln in f.read().splitlines()[1:]]
        listening = {int(r[1].split(":")[1], 16): r[1].split(":")[0] for r in rows if r[3] == "0A"}
        for port in (E.kin.port, E.kin.tls_port):
            eq(listening.get(port), "0100007F", f"bind address of kinesis-local port {port}")
    except FileNotFoundError:
        pass


# ----------------------------------------------------------------- runner


def main(argv):
    verbose = "-v" in argv
    only = [a for a in argv if not a.startswith("-")]
    t0 = time.monotonic()
    passed = failed = 0
    stack = []
    here = Path(__file__).resolve().parent
    if not (here / "node_modules" / "kinesis-local" / "main.js").exists() or \
            not (here / "node_modules" / "dynalite" / "cli.js").exists():
        print("# node_modules missing: running install-deps.sh", flush=True)
        import subprocess
        subprocess.run([str(here / "install-deps.sh")], check=False,
                       stdout=sys.stderr, stderr=sys.stderr)
    try:
        E.moto = Moto(iam_auth=True).__enter__()
        stack.append(E.moto)
        E.kin = KinesisLocal(shards=1, stream=STREAM).__enter__()
        stack.append(E.kin)
        E.ddb = Dynalite().__enter__()
        stack.append(E.ddb)
        if verbose:
            print(f"# emulators up in {time.monotonic() - t0:.1f}s: moto {E.moto.endpoint}, "
                  f"kinesis-local {E.kin.endpoint}, dynalite {E.ddb.endpoint}")
        for fn in TESTS:
            if only and fn.__name__ not in only:
                continue
            t = time.monotonic()
            try:
                fn()
                passed += 1
                print(f"ok - {fn.__name__} ({time.monotonic() - t:.2f}s)")
            except Exception:  # noqa: BLE001
                failed += 1
                print(f"FAIL - {fn.__name__}")
                print("".join("#   " + ln + "\n" for ln in traceback.format_exc().splitlines()))
    except Exception:  # noqa: BLE001 - emulator start-up failed
        failed += 1
        print("FAIL - harness start-up")
        print("".join("#   " + ln + "\n" for ln in traceback.format_exc().splitlines()))
    finally:
        for s in reversed(stack):
            s.__exit__(None, None, None)
    print(f"# {time.monotonic() - t0:.1f}s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    import signal
    # meson's timeout sends SIGTERM: unwind so the emulators are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main(sys.argv[1:]))
