#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The AWS client layer against real verifiers: moto with IAM auth on (every
request from here on must pass moto's SigV4 and IAM checks), and a fault
proxy between rarewatch and moto.

- `rarewatch put` of 10,000 records into a moto Kinesis stream; all of them
  readable back with boto3, content intact.
- The same with a wrong secret: a clear authentication error, exit non-zero.
- Throttling then success, 500s, connection resets, slow responses: the
  standard retry mode gets every record in.
- Partial failures: only the failed entries are sent again (the proxy counts).

Usage: test_aws.py BUILD_DIR
"""
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from rwharness import FaultProxy, Moto  # noqa: E402

BUILD = sys.argv[1]
RAREWATCH = os.path.join(BUILD, "src", "rarewatch", "rarewatch")
results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(("ok" if cond else "FAIL") + " - " + name + ("" if cond else ": " + str(detail)), flush=True)


def clean_env(extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"})
    env.update(extra)
    return env


def put(env, stream, path, *args, conf=None):
    cmd = [RAREWATCH, "put", "--stream", stream, "--partition-key", "user", "--quiet"]
    if conf:
        cmd += ["-c", conf]
    cmd += list(args) + [path]
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    return r, time.monotonic() - t0


def read_stream(kin, stream):
    """Every record of every shard, with boto3 (an independent reader)."""
    out = []
    for shard in kin.list_shards(StreamName=stream)["Shards"]:
        it = kin.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = kin.get_records(ShardIterator=it, Limit=10000)
            out += [json.loads(x["Data"]) for x in r["Records"]]
            if not r["Records"]:
                break
            it = r.get("NextShardIterator")
    return out


def write_records(path, n, tag):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"{tag}-{i}", "user": f"u{i % 97}", "amount": round(random.uniform(1, 500), 2),
                                "note": "ünïcödé ✓" if i % 50 == 0 else "plain"}) + "\n")


def main():
    random.seed(7)
    with tempfile.TemporaryDirectory(prefix="rw-aws-") as d, Moto(iam_auth=True) as moto:
        kin = moto.client("kinesis")
        env = clean_env(moto.env())

        # 1. 10,000 records, every request signature-checked by moto.
        kin.create_stream(StreamName="put-test", ShardCount=2)
        kin.get_waiter("stream_exists").wait(StreamName="put-test")
        src = os.path.join(d, "in.ndjson")
        write_records(src, 10000, "a")
        r, secs = put(env, "put-test", src)
        check("put 10,000 records: exit 0", r.returncode == 0, r.stderr[-500:])
        m = re.search(r"sent (\d+) records in [\d.]+ s \(([\d.]+) records/s\), retried (\d+), failed (\d+)", r.stderr)
        check("put summary: 10000 sent, 0 failed", m and m.group(1) == "10000" and m.group(4) == "0", r.stderr[-300:])
        print(f"# rarewatch put against moto (IAM auth on): {m.group(2) if m else '?'} records/s "
              f"({secs:.1f} s wall for 10,000)")
        got = read_stream(kin, "put-test")
        ids = sorted(x["id"] for x in got)
        check("all 10,000 readable back with boto3", ids == sorted(f"a-{i}" for i in range(10000)),
              f"{len(ids)} records")
        check("content intact (unicode)", any(x.get("note") == "ünïcödé ✓" for x in got))

        # 2. A wrong secret: a clear authentication error, non-zero exit.
        bad = clean_env(dict(moto.env(), AWS_SECRET_ACCESS_KEY=moto.bad_creds[1]))
        small = os.path.join(d, "small.ndjson")
        write_records(small, 10, "b")
        r, _ = put(bad, "put-test", small)
        check("wrong secret: exit non-zero", r.returncode != 0, r.returncode)
        check("wrong secret: the error names the signature failure",
              "SignatureDoesNotMatch" in r.stderr or "InvalidSignature" in r.stderr, r.stderr[-400:])
        check("wrong secret: the secret is not printed", moto.bad_creds[1] not in r.stderr)

        # 3. Faults between rarewatch and moto; the proxy re-signs what it changes.
        with FaultProxy(moto.endpoint, resign_creds=moto.creds) as proxy:
            penv = clean_env(dict(moto.env(), AWS_ENDPOINT_URL_KINESIS=proxy.endpoint))
            kin.create_stream(StreamName="fault-test", ShardCount=2)
            kin.get_waiter("stream_exists").wait(StreamName="fault-test")
            conf = os.path.join(d, "rw.conf")
            with open(conf, "w") as f:
                f.write("[aws]\nmax_attempts = 5\nrequest_timeout = 3s\n")
            expected = []

            cases = [
                ("throttling then success", {"action": "PutRecords", "kind": "throttle", "count": 3}),
                ("HTTP 500s", {"action": "PutRecords", "kind": "http_error", "status": 500, "count": 2}),
                ("connection resets", {"action": "PutRecords", "kind": "reset", "count": 2}),
                ("an HTML error page from a proxy", {"action": "PutRecords", "kind": "html", "status": 502, "count": 1}),
                ("a truncated response", {"action": "PutRecords", "kind": "truncated", "count": 1}),
                ("a slow response within the timeout", {"action": "PutRecords", "kind": "delay", "seconds": 1, "count": 1}),
                ("a response slower than the request timeout", {"action": "PutRecords", "kind": "delay", "seconds": 6, "count": 1}),
            ]
            at_least_once = set()
            for i, (name, rule) in enumerate(cases):
                proxy.set_rules([rule])
                path = os.path.join(d, f"f{i}.ndjson")
                write_records(path, 300, f"f{i}")
                expected += [f"f{i}-{j}" for j in range(300)]
                before = proxy.stats("PutRecords")
                r, _ = put(penv, "fault-test", path, conf=conf)
                after = proxy.stats("PutRecords")
                injected = sum(after["faults"].values()) - sum(before["faults"].values())
                requests = after["requests"] - before["requests"]
                # A response within the timeout is not a failure; a forwarded
                # request whose answer comes too late (or cut) was applied
                # already, so its retry may duplicate records (at least once).
                retried = not (rule["kind"] == "delay" and rule["seconds"] < 3)
                if rule["kind"] in ("delay", "truncated") and retried:
                    at_least_once.update(f"f{i}-{j}" for j in range(300))
                check(f"{name}: every record accepted", r.returncode == 0, r.stderr[-400:])
                check(f"{name}: fault injected, {'retried' if retried else 'no retry needed'}",
                      injected == rule["count"] and requests == (rule["count"] + 1 if retried else 1),
                      f"injected {injected}, requests {requests}")

            # Partial failures: only the failed entries are sent again.
            proxy.set_rules([{"action": "PutRecords", "kind": "partial", "fraction": 0.3, "count": 4}])
            path = os.path.join(d, "partial.ndjson")
            write_records(path, 1000, "p")
            expected += [f"p-{j}" for j in range(1000)]
            before = proxy.stats("PutRecords")
            r, _ = put(penv, "fault-test", path, conf=conf)
            after = proxy.stats("PutRecords")
            failed = after["entries_failed"] - before["entries_failed"]
            forwarded = after["entries_forwarded"] - before["entries_forwarded"]
            m = re.search(r"retried (\d+)", r.stderr)
            check("partial failures: every record accepted", r.returncode == 0, r.stderr[-400:])
            check("partial failures: some entries were failed", failed > 0, failed)
            check("partial failures: only failed entries re-sent (forwarded == 1000)",
                  forwarded == 1000, f"forwarded {forwarded}, failed {failed}")
            check("partial failures: put reports the re-sent entries", m and int(m.group(1)) == failed,
                  r.stderr[-300:])
            got = [x["id"] for x in read_stream(kin, "fault-test")]
            once = sorted(x for x in got if x not in at_least_once)
            check("fault runs: every record in the stream, exactly once unless its answer was lost",
                  once == sorted(x for x in expected if x not in at_least_once) and
                  at_least_once <= set(got), f"{len(got)} vs {len(expected)}")

            # Validation errors are not retried.
            proxy.set_rules([])
            before = proxy.stats("PutRecords")
            r, _ = put(penv, "no-such-stream", small, conf=conf)
            after = proxy.stats("PutRecords")
            check("a missing stream: exit non-zero, not retried",
                  r.returncode != 0 and after["requests"] - before["requests"] == 1,
                  f"rc {r.returncode}, {after['requests'] - before['requests']} requests")
            check("a missing stream: ResourceNotFoundException named", "ResourceNotFoundException" in r.stderr,
                  r.stderr[-300:])

        # Bad input lines: clear errors with file:line, the rest still sent.
        mixed = os.path.join(d, "mixed.ndjson")
        with open(mixed, "w") as f:
            f.write('{"id":"m-1","user":"x"}\n{"id": trunc\n{"id":"m-2","user":"y"}\n')
        r, _ = put(env, "put-test", mixed)
        check("invalid JSON line: named with file:line", f"{mixed}:2: invalid JSON" in r.stderr, r.stderr)
        check("invalid JSON line: exit non-zero, good lines sent", r.returncode != 0 and "sent 2 records" in r.stderr,
              r.stderr)
        csvp = os.path.join(d, "in.csv")
        with open(csvp, "w") as f:
            f.write('id,user,amount\nc-1,u1,12.5\n"c-2","u, two",7\n')
        r, _ = put(env, "put-test", csvp, "--format", "csv")
        check("CSV rows sent as JSON objects", r.returncode == 0, r.stderr)
        rows = [x for x in read_stream(kin, "put-test") if str(x.get("id", "")).startswith("c-")]
        check("CSV: numbers stay numbers, quoted commas kept",
              {"id": "c-2", "user": "u, two", "amount": 7} in rows and any(x.get("amount") == 12.5 for x in rows), rows)

    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
