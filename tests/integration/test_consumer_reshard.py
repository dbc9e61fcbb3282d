#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Resharding under a running consumer (kinesis-local): a 2-shard stream
gets records at a steady rate from `rarewatch put --rate`; rarewatchd
(shard_discovery_interval 1s, parent_first on) consumes it.  Mid-stream
shard 0 is split, and once its children have delivered records they are
merged again.

- every record delivered, none twice, each shard in sequence order;
- for each partition key, no record of a child shard comes before a
  record (of that key) of one of its ancestors in output order;
- records really went through every generation (parent, both split
  children, the merged child);
- the closed parents (0, and both split children) get a SHARD_END
  checkpoint, with their parents recorded; SIGTERM: exit 0, the open
  shards checkpointed at their last record;
- a restart starts only the open shards and delivers only new records;
- kill -9 mid-shard, split while the daemon is down, restart: the parent is
  finished from its checkpoint and ends before its children start.

Usage: test_consumer_reshard.py BUILD_DIR
"""
import os
import re
import subprocess
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from consumer_common import (run, WorkDir, Daemon, LineCounter, binaries, put,  # noqa: E402
                             kinesis_local_env, last_position_per_shard, order_violations,
                             read_output, summarize, wait_for, write_input)
from rwharness import KinesisLocal  # noqa: E402

STREAM = "rw-consumer-reshard"
N = 7200
RATE = 600
KEYS = 200


def main(t):
    build = sys.argv[1]
    rarewatch, rarewatchd = binaries(build)
    with WorkDir("rw-consumer-reshard-", t) as workdir, \
            KinesisLocal(shards=2, stream=STREAM) as kl:
        kin = kl.client()
        env = kinesis_local_env(kl.endpoint)
        src = os.path.join(workdir, "in.ndjson")
        ids = set(write_input(src, N, keys=KEYS, tag="rs"))
        d = Daemon(rarewatchd, os.path.join(workdir, "d"), env, STREAM,
                   kinesis={"shard_discovery_interval": "1s", "parent_first": "true",
                            "max_records": 1000})
        count = LineCounter(d.out_dir)
        with d:
            d.start()
            d.wait_log(r"shard .*: worker started", 60, "a shard worker")
            producer = subprocess.Popen(
                [rarewatch, "put", "--stream", STREAM, "--partition-key", "k", "--quiet",
                 "--rate", str(RATE), src], env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True)
            try:
                wait_for(lambda: d.alive() and count() >= 1200, 120, "1200 lines before the split")
                s0 = kin.list_shards(StreamName=STREAM)["Shards"][0]
                h = s0["HashKeyRange"]
                mid = (int(h["StartingHashKey"]) + int(h["EndingHashKey"])) // 2
                kin.split_shard(StreamName=STREAM, ShardToSplit=s0["ShardId"],
                                NewStartingHashKey=str(mid))
                kl.wait_active(STREAM)
                split_at = count()
                children = sorted(s["ShardId"] for s in kin.list_shards(StreamName=STREAM)["Shards"]
                                  if s.get("ParentShardId") == s0["ShardId"])
                t.check("split: two children", len(children) == 2, children)
                print(f"# split {s0['ShardId']} -> {children} at {split_at} output lines",
                      flush=True)

                def children_delivered():
                    d.alive()
                    lines, _ = read_output(d.out_dir)
                    per = defaultdict(int)
                    for o in lines:
                        per[o["_kinesis"]["shard_id"]] += 1
                    return all(per[c] >= 100 for c in children)
                wait_for(children_delivered, 120, "records from both children", interval=0.1,
                         max_interval=0.5)
                kin.merge_shards(StreamName=STREAM, ShardToMerge=children[0],
                                 AdjacentShardToMerge=children[1])
                kl.wait_active(STREAM)
                merge_at = count()
                merged = [s["ShardId"] for s in kin.list_shards(StreamName=STREAM)["Shards"]
                          if s.get("ParentShardId") in children
                          and s.get("AdjacentParentShardId") in children]
                t.check("merge: one child of both", len(merged) == 1, merged)
                print(f"# merged {children} -> {merged} at {merge_at} output lines", flush=True)
            except Exception as exc:  # noqa: BLE001
                t.check("resharding while consuming", False, exc)
                producer.kill()
            perr = producer.communicate(timeout=600)[1]
            t.check("rarewatch put: exit 0", producer.returncode == 0, perr[-400:])

            all_shards = kin.list_shards(StreamName=STREAM)["Shards"]
            parents = {s["ShardId"]: [p for p in (s.get("ParentShardId"),
                                                  s.get("AdjacentParentShardId")) if p]
                       for s in all_shards}

            def delivered():
                d.alive()
                lines, _ = read_output(d.out_dir)
                return {o.get("id") for o in lines} >= ids
            try:
                wait_for(delivered, 180, "every record delivered", interval=0.2, max_interval=1.0)
            except Exception:  # noqa: BLE001
                pass
            closed = sorted(s for s in parents if any(s in ps for ps in parents.values()))
            try:
                wait_for(lambda: d.alive() and all(
                    (d.checkpoints().get(s) or {}).get("state") == "SHARD_END" for s in closed),
                    60, f"SHARD_END checkpoints of {closed}")
            except Exception:  # noqa: BLE001
                pass
            rc = d.terminate(60)
            t.check("SIGTERM: exit 0", rc == 0, f"rc={rc}\n{d.log(True)[-1500:]}")

            lines, torn = read_output(d.out_dir)
            got = {o.get("id") for o in lines}
            uniq, dups = summarize(lines)
            per_shard = defaultdict(int)
            for o in lines:
                per_shard[o["_kinesis"]["shard_id"]] += 1
            print(f"# records per shard: {dict(sorted(per_shard.items()))}", flush=True)
            t.check(f"every record delivered ({len(ids & got)} of {N})", got >= ids,
                    f"{len(ids - got)} missing")
            t.check("no duplicates", dups == 0 and uniq == N, f"{dups} duplicates, {uniq} unique")
            t.check("no torn lines", not torn, torn[:2])
            t.check("records went through parent, both split children and the merged child",
                    len(parents) == 5 and all(per_shard[s] > 0 for s in parents),
                    dict(per_shard))
            t.check("each shard in sequence order", not order_violations(lines),
                    order_violations(lines)[:3])

            def ancestors(s):
                out, todo = set(), list(parents.get(s, []))
                while todo:
                    p = todo.pop()
                    if p not in out:
                        out.add(p)
                        todo += parents.get(p, [])
                return out
            anc = {s: ancestors(s) for s in parents}
            by_key = defaultdict(list)
            for idx, o in enumerate(lines):
                by_key[o["k"]].append((idx, o["_kinesis"]["shard_id"]))
            bad = []
            moved = 0
            for key, seq in by_key.items():
                seen = set()
                for idx, shard in seq:
                    # A record of an ancestor after a descendant's record of the same key.
                    later_desc = [s for s in seen if shard in anc[s]]
                    if later_desc:
                        bad.append((key, idx, shard, later_desc))
                    seen.add(shard)
                if len(seen) > 1:
                    moved += 1
            t.check(f"per key, no child-shard record before its parents' ({moved} keys crossed "
                    f"a reshard)", not bad and moved > 0, bad[:3])

            cps = d.checkpoints()
            t.check("a checkpoint for every shard", sorted(cps) == sorted(parents), sorted(cps))
            wrong_end = {s: cps.get(s) for s in closed
                         if (cps.get(s) or {}).get("state") != "SHARD_END"}
            t.check(f"closed parents {closed} checkpointed SHARD_END", not wrong_end, wrong_end)
            wrong_par = {s: (cps.get(s) or {}).get("parent_shard_ids") for s in parents
                         if sorted((cps.get(s) or {}).get("parent_shard_ids") or []) !=
                         sorted(parents[s])}
            t.check("checkpoints record the parent shards", not wrong_par, wrong_par)
            last = last_position_per_shard(lines)
            open_shards = [s for s in parents if s not in closed]
            wrong_open = {s: cps.get(s) for s in open_shards
                          if (cps.get(s) or {}).get("state") != "SEQUENCE"
                          or int(cps[s].get("sequence_number", 0)) != last.get(s, (None,))[0]}
            t.check(f"open shards {open_shards} checkpointed at their last record",
                    not wrong_open, wrong_open)
            log = d.log()
            ends = log.count("checkpoint SHARD_END")
            t.check("the log reports each shard end", ends == len(closed), ends)

            # A restart leaves the ended shards alone and reads nothing again.
            d.start()
            d.wait_log(r"(?s)" + r".*".join([r"starting at SEQUENCE"] * len(open_shards)), 60,
                       "the open shards resuming")
            kin.put_records(StreamName=STREAM, Records=[
                {"Data": f'{{"id":"after-{j}","k":"key-{j:03d}"}}'.encode(),
                 "PartitionKey": f"key-{j:03d}"} for j in range(40)])
            try:
                wait_for(lambda: d.alive() and count() >= N + 40, 60, f"{N + 40} lines")
            except Exception as exc:  # noqa: BLE001
                t.check("restart: new records delivered", False, exc)
            rc = d.terminate(60)
            run2 = d.log(True)
            restarted = [s for s in closed if re.search(rf"shard {s}: worker started", run2)]
            lines2, _ = read_output(d.out_dir, order="mtime")
            _, dups2 = summarize(lines2)
            t.check("restart: ended shards not started again, only the 40 new records, exit 0",
                    not restarted and len(lines2) == N + 40 and dups2 == 0 and rc == 0,
                    f"restarted {restarted}, {len(lines2)} lines, {dups2} dups, rc={rc}")

        split_while_down(t, rarewatch, rarewatchd, kl, workdir)


def split_while_down(t, rarewatch, rarewatchd, kl, workdir):
    """kill -9 in the middle of a shard, split it while the daemon is down,
    put more (into the children), restart: the parent is finished from its
    checkpoint and ends before its children start; nothing is lost, and per
    key no child record precedes a parent record."""
    stream = "rw-consumer-split-down"
    kin = kl.client()
    kin.create_stream(StreamName=stream, ShardCount=1)
    kl.wait_active(stream)
    env = kinesis_local_env(kl.endpoint)
    a = os.path.join(workdir, "down-a.ndjson")
    b = os.path.join(workdir, "down-b.ndjson")
    ids = set(write_input(a, 3000, keys=40, tag="da"))
    r = put(rarewatch, env, stream, a)
    t.check("split while down: put 3000: exit 0", r.returncode == 0, r.stderr[-300:])
    d = Daemon(rarewatchd, os.path.join(workdir, "down"), env, stream,
               kinesis={"max_records": 100})
    count = LineCounter(d.out_dir)
    with d:
        d.start()
        wait_for(lambda: d.alive() and count() >= 500, 60, "500 lines")
        d.kill9()
        cp = d.checkpoints().get("shardId-000000000000") or {}
        t.check("split while down: killed mid-shard (checkpoint SEQUENCE)",
                cp.get("state") == "SEQUENCE" and count() < 3000, (cp, count()))
        s0 = kin.list_shards(StreamName=stream)["Shards"][0]
        h = s0["HashKeyRange"]
        kin.split_shard(StreamName=stream, ShardToSplit=s0["ShardId"],
                        NewStartingHashKey=str((int(h["StartingHashKey"])
                                                + int(h["EndingHashKey"])) // 2))
        kl.wait_active(stream)
        ids |= set(write_input(b, 1000, keys=40, tag="db", start=3000))
        r = put(rarewatch, env, stream, b)
        t.check("split while down: put 1000 after the split: exit 0", r.returncode == 0,
                r.stderr[-300:])
        d.start()

        def delivered():
            d.alive()
            return {o.get("id") for o in read_output(d.out_dir, order="mtime")[0]} >= ids
        try:
            wait_for(delivered, 120, "every record", interval=0.2, max_interval=1.0)
        except Exception as exc:  # noqa: BLE001
            t.check("split while down: delivery", False, exc)
        rc = d.terminate(60)
    lines, _ = read_output(d.out_dir, order="mtime")
    got = {o.get("id") for o in lines}
    _, dups = summarize(lines)
    parents = {s["ShardId"]: s.get("ParentShardId") for s in
               kin.list_shards(StreamName=stream)["Shards"]}
    bad = []
    by_key = defaultdict(list)
    for idx, o in enumerate(lines):
        by_key[o["k"]].append((idx, o["_kinesis"]["shard_id"]))
    for key, seq in by_key.items():
        seen = set()
        for idx, shard in seq:
            if any(parents.get(s) == shard for s in seen):
                bad.append((key, idx, shard))
            seen.add(shard)
    cps = d.checkpoints()
    print(f"# split while down: {len(lines)} lines, {dups} duplicates after the kill", flush=True)
    t.check("split while down: every record delivered, exit 0", got >= ids and rc == 0,
            f"{len(ids - got)} missing, rc={rc}")
    t.check("split while down: per key, no child record before a parent record", not bad,
            bad[:3])
    t.check("split while down: parent SHARD_END, children checkpointed with their parent",
            (cps.get(s0["ShardId"]) or {}).get("state") == "SHARD_END"
            and all((cps.get(s) or {}).get("parent_shard_ids") == [s0["ShardId"]]
                    for s, p in parents.items() if p == s0["ShardId"])
            and len(parents) == 3, cps)


if __name__ == "__main__":
    sys.exit(run(main))
