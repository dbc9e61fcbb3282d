#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Several rarewatchd instances share a stream through DynamoDB leases
(dynalite), reading moto's Kinesis:

- 3 instances, 8 shards: every shard owned by exactly one instance, counts
  within one of each other, within take_interval x shards;
- kill -9 of one instance: its shards are taken over within failover_time
  plus a take interval; every record delivered, duplicates only from the
  unacknowledged window; a 4th instance joining takes its share by stealing;
- SIGTERM of one instance: its leases are released and taken within one take
  interval, with no duplicate at all;
- a lease stolen from a worker mid-stream: that worker stops the shard and
  never writes the row again;
- DynamoDB operations per shard per minute in steady state (printed).

Usage: test_leases.py BUILD_DIR [--churn SECONDS]
"""
import collections
import glob
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from rwharness import Dynalite, Moto, wait_for  # noqa: E402

BUILD = sys.argv[1]
CHURN = float(sys.argv[sys.argv.index("--churn") + 1]) if "--churn" in sys.argv else 0
RWD = os.path.join(BUILD, "src", "rarewatchd", "rarewatchd")
RW = os.path.join(BUILD, "src", "rarewatch", "rarewatch")
STREAM, TABLE, SHARDS = "leased", "rw-leases", 8
TAKE, FAILOVER, RENEW = 1.0, 4.0, 1.0
results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(("ok" if cond else "FAIL") + " - " + name + ("" if cond else ": " + str(detail)), flush=True)


class Instance:
    def __init__(self, root, name, env):
        self.name, self.dir = name, os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "rw.conf")
        with open(self.conf, "w") as f:
            f.write(f"""[kinesis]
stream = {STREAM}
poll_interval = 100ms
shard_discovery_interval = 2s
max_records = 200
[output]
directory = {self.dir}/out
[checkpoint]
store = dynamodb
table = {TABLE}
create_table = true
worker_id = {name}
renew_interval = {RENEW}s
failover_time = {FAILOVER}s
take_interval = {TAKE}s
interval = 0
directory = {self.dir}/state
[deadletter]
directory = {self.dir}/dl
[daemon]
stop_timeout = 20s
""")
        self.env = env
        self.proc = None
        self.log = os.path.join(self.dir, "log")

    def start(self):
        self.proc = subprocess.Popen([RWD, "-c", self.conf], env=self.env,
                                     stderr=open(self.log, "a"), stdout=subprocess.DEVNULL)

    def alive(self):
        return self.proc and self.proc.poll() is None

    def kill(self, sig):
        self.proc.send_signal(sig)
        return self.proc.wait(60)

    def logtext(self):
        with open(self.log) as f:
            return f.read()


def leases(ddb):
    items = ddb.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return {i["leaseKey"]["S"]: {"owner": i.get("leaseOwner", {}).get("S"),
                                 "counter": int(i["leaseCounter"]["N"]),
                                 "checkpoint": i.get("checkpoint", {}).get("S")} for i in items}


def owners(ddb):
    c = collections.Counter(v["owner"] for v in leases(ddb).values())
    return c


def outputs(root):
    recs = []
    for fn in sorted(glob.glob(os.path.join(root, "*", "out", "**", "*.ndjson"), recursive=True)):
        with open(fn) as f:
            recs += [json.loads(x) for x in f]
    return recs


def stable(ddb):
    """Owners unchanged across two take intervals (observed, not assumed)."""
    a = {k: v["owner"] for k, v in leases(ddb).items()}
    t = time.monotonic()
    wait_for(lambda: time.monotonic() - t >= 2 * TAKE, 10, "two take intervals")
    return a == {k: v["owner"] for k, v in leases(ddb).items()}


def delivered(root):
    """Distinct records delivered (ids are unique per record put)."""
    return len({r["id"] for r in outputs(root)})


def put(env, d, tag, n):
    path = os.path.join(d, f"{tag}.ndjson")
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"{tag}-{i}", "k": f"key{i % 50}"}) + "\n")
    r = subprocess.run([RW, "put", "--stream", STREAM, "-k", "k", "-q", path], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def balanced(ddb, live):
    o = owners(ddb)
    if None in o or set(o) - set(live) or sum(o.values()) != SHARDS:
        return False
    counts = [o.get(n, 0) for n in live]
    return max(counts) - min(counts) <= 1


class _Keep:
    def __init__(self, d):
        self.d = d

    def __enter__(self):
        return self.d

    def __exit__(self, *a):
        return False


def main():
    random.seed(3)
    keep = os.environ.get("RW_TEST_KEEP")  # a directory to keep the logs in, for debugging
    if keep:
        os.makedirs(keep, exist_ok=True)
    with (tempfile.TemporaryDirectory(prefix="rw-leases-") if not keep else _Keep(keep)) as root, \
            Moto(iam_auth=True) as moto, Dynalite() as dyn:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(moto.env())
        env.update({"AWS_ENDPOINT_URL_DYNAMODB": dyn.endpoint, "AWS_EC2_METADATA_DISABLED": "true",
                    "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"})
        kin = moto.client("kinesis")
        kin.create_stream(StreamName=STREAM, ShardCount=SHARDS)
        kin.get_waiter("stream_exists").wait(StreamName=STREAM)
        ddb = dyn.client()
        sent = 0
        put(env, root, "a", 4000)
        sent += 4000

        inst = {n: Instance(root, n, env) for n in ("w1", "w2", "w3", "w4", "w5")}
        for n in ("w1", "w2", "w3"):
            inst[n].start()
        t0 = time.monotonic()
        wait_for(lambda: TABLE in ddb.list_tables()["TableNames"], 60, "the lease table")
        dyn.wait_table_active(TABLE)
        ok = True
        try:
            wait_for(lambda: balanced(ddb, ["w1", "w2", "w3"]), TAKE * SHARDS + FAILOVER + 30, "3 instances balanced")
        except TimeoutError as e:
            ok = False
            print("#", e, owners(ddb))
        el = time.monotonic() - t0
        check(f"3 instances, 8 shards: each shard one owner, counts within one ({el:.1f} s)", ok, owners(ddb))
        check("balanced within take_interval x shards (+ table creation)", el <= TAKE * SHARDS + 10, el)
        wait_for(lambda: delivered(root) >= sent, 120, "first records delivered")

        # Steady state: DynamoDB requests per shard per minute.
        c0 = {k: v["counter"] for k, v in leases(ddb).items()}
        w_start = time.monotonic()
        wait_for(lambda: time.monotonic() - w_start >= 10, 20, "a 10 s observation window")
        c1 = {k: v["counter"] for k, v in leases(ddb).items()}
        writes = sum(c1[k] - c0[k] for k in c0) / SHARDS / ((time.monotonic() - w_start) / 60)
        print(f"# steady state: {writes:.1f} lease writes per shard per minute (renew_interval {RENEW:g} s, "
              f"idle stream: renewals only); plus 1 Scan per take_interval per instance")
        check("steady-state writes ~ one renewal per lease per renew_interval",
              writes <= 60 / RENEW * 1.5 + 2, writes)

        # kill -9 one instance: takeover within failover_time + take_interval.
        put(env, root, "b", 4000)
        sent += 4000
        victim = "w2"
        held = [k for k, v in leases(ddb).items() if v["owner"] == victim]
        inst[victim].kill(signal.SIGKILL)
        t0 = time.monotonic()
        try:
            wait_for(lambda: all(leases(ddb)[k]["owner"] in ("w1", "w3") for k in held),
                     FAILOVER + TAKE * len(held) + 30, "takeover")
            el = time.monotonic() - t0
        except TimeoutError:
            el = float("inf")
        print(f"# kill -9 takeover of {len(held)} leases: {el:.1f} s (failover_time {FAILOVER:g} s, take_interval {TAKE:g} s)")
        check("kill -9: shards taken over within failover_time + take_interval per shard",
              el <= FAILOVER + TAKE * len(held) + 3, el)

        # A 4th instance joins and steals its share.
        inst["w4"].start()
        try:
            wait_for(lambda: balanced(ddb, ["w1", "w3", "w4"]), TAKE * SHARDS + 30, "w4 balanced by stealing")
            ok = True
        except TimeoutError:
            ok = False
        check("a new instance takes its share by stealing", ok and "stolen from" in inst["w4"].logtext(), owners(ddb))

        # SIGTERM: released leases move within one take interval, no duplicates.
        # First let the stealing settle (a steal re-reads the victim's
        # unacknowledged batches: those duplicates belong to the steal).
        wait_for(lambda: delivered(root) >= sent, 180, "b delivered")
        wait_for(lambda: stable(ddb), 60, "lease ownership stable for two take intervals")
        dups_before = len(outputs(root)) - delivered(root)
        log_marks = {n: len(i.logtext()) for n, i in inst.items() if os.path.exists(i.log)}
        put(env, root, "c", 2000)
        sent += 2000
        leaving = "w3"
        held = [k for k, v in leases(ddb).items() if v["owner"] == leaving]
        rc = inst[leaving].kill(signal.SIGTERM)
        check("SIGTERM: exit 0", rc == 0, rc)
        t0 = time.monotonic()
        rel = leases(ddb)
        check("SIGTERM: leases released (no owner) at exit",
              all(rel[k]["owner"] in (None, "w1", "w4") for k in held), {k: rel[k]["owner"] for k in held})
        wait_for(lambda: all(leases(ddb)[k]["owner"] in ("w1", "w4") for k in held), TAKE * 2 + 30, "released leases taken")
        el = time.monotonic() - t0
        print(f"# SIGTERM handover of {len(held)} leases: {el:.1f} s")
        check("SIGTERM: shards move within about one take interval", el <= TAKE * 2 + 2, el)
        wait_for(lambda: delivered(root) >= sent, 180, "c delivered")
        dups_after = len(outputs(root)) - delivered(root)
        check("SIGTERM handover: no duplicates at all", dups_after == dups_before, f"{dups_before} -> {dups_after}")
        if dups_after != dups_before:
            # Where they came from (seen once in 8 runs under load, not
            # reproduced since): a steal after the handover, a drain cut by
            # the stop deadline, a lost lease. What each instance logged
            # about its leases and its stop since the SIGTERM step began.
            for n, i in inst.items():
                if n in log_marks:
                    for line in i.logtext()[log_marks[n]:].splitlines():
                        if re.search(r"lease|stolen|deadline|stop|drain|lost|checkpoint", line):
                            print(f"# {n}: {line}")

        # A lease stolen from a live worker: it stops the shard, never writes the row again.
        target = next(k for k, v in leases(ddb).items() if v["owner"] == "w1")
        row = leases(ddb)[target]
        ddb.update_item(TableName=TABLE, Key={"leaseKey": {"S": target}},
                        UpdateExpression="SET leaseOwner = :t, leaseCounter = leaseCounter + :one, #c = :cp",
                        ExpressionAttributeNames={"#c": "checkpoint"},
                        ExpressionAttributeValues={":t": {"S": "thief"}, ":one": {"N": "1"},
                                                   ":cp": {"S": row["checkpoint"]}})
        # The thief renews its lease as a live owner does. Without it the row
        # expires after failover_time and w1 may take it back by the rules
        # (it did, under load, while the waits below took longer than that).
        thief = {"counter": row["counter"] + 1, "at": time.monotonic(), "overwritten": None}

        def thief_renews():
            if time.monotonic() - thief["at"] < RENEW / 2 or thief["overwritten"]:
                return False
            try:
                ddb.update_item(TableName=TABLE, Key={"leaseKey": {"S": target}},
                                UpdateExpression="SET leaseCounter = leaseCounter + :one",
                                ConditionExpression="leaseOwner = :t AND leaseCounter = :c",
                                ExpressionAttributeValues={":t": {"S": "thief"}, ":one": {"N": "1"},
                                                           ":c": {"N": str(thief["counter"])}})
                thief["counter"] += 1
            except ddb.exceptions.ConditionalCheckFailedException:
                thief["overwritten"] = leases(ddb)[target]
            thief["at"] = time.monotonic()
            return False

        put(env, root, "d", 1000)  # traffic on every shard, the stolen one included
        sent += 1000
        wait_for(lambda: thief_renews() or f"lease {target} lost" in inst["w1"].logtext() or
                 f"lease {target}: now owned by thief" in inst["w1"].logtext(), RENEW * 3 + TAKE * 3 + 30,
                 "w1 noticing the stolen lease")
        # Every other lease of w1 renewed twice since: w1 had every chance to write the row.
        mine = {k: v["counter"] for k, v in leases(ddb).items() if v["owner"] == "w1"}
        wait_for(lambda: thief_renews() or all(leases(ddb)[k]["counter"] >= c + 2 for k, c in mine.items()),
                 RENEW * 6 + 30, "two more renewals of w1's other leases")
        after = leases(ddb)[target]
        check("stolen lease: the old owner stopped and never wrote the row again",
              thief["overwritten"] is None and after["owner"] == "thief" and after["counter"] == thief["counter"],
              (after, thief))

        if CHURN:
            # Churn: random stops and starts over CHURN seconds of traffic; no record lost.
            live = {"w1", "w4"}
            churn_kills = 0
            end = time.monotonic() + CHURN
            i = 0
            while time.monotonic() < end:
                put(env, root, f"churn{i}", 500)
                sent += 500
                i += 1
                n = random.choice(list(inst))
                if n in live and len(live) > 1:
                    sig = random.choice([signal.SIGTERM, signal.SIGKILL])
                    churn_kills += sig == signal.SIGKILL
                    inst[n].kill(sig)
                    live.discard(n)
                elif n not in live:
                    inst[n].start()
                    live.add(n)
                wait_for(lambda: True, 1, "tick")
            for n in set(inst) - live:
                inst[n].start()
            wait_for(lambda: delivered(root) >= sent, 300, "churn traffic delivered")

        # The stolen lease expires (its thief never renews it) and is taken.
        wait_for(lambda: delivered(root) >= sent, 120, "every record delivered")
        for n, i in inst.items():
            if i.alive():
                check(f"{n}: SIGTERM exit 0", i.kill(signal.SIGTERM) == 0)
        recs = outputs(root)
        ids = collections.Counter(r["id"] for r in recs)
        missing = sent - len(ids)
        dups = sum(ids.values()) - len(ids)
        # A kill -9 re-reads at most what the victim had not checkpointed: its
        # shards x max_inflight_batches (4) x max_records (200); a steal, the
        # victim's in-flight batches of that one shard.
        kills = 1 + (churn_kills if CHURN else 0)
        steals = sum(i.logtext().count("stolen from") for i in inst.values() if os.path.exists(i.log))
        bound = (kills * SHARDS + steals) * 4 * 200
        print(f"# records sent {sent}, distinct delivered {len(ids)}, missing {missing}, duplicates {dups} "
              f"({kills} kill -9, {steals} steals; bound {bound})")
        check("every record delivered (none lost)", missing == 0, missing)
        check("duplicates only from the unacknowledged windows of killed instances and steals",
              dups <= bound, f"{dups} > {bound}")

    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
