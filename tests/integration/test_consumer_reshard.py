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
- a restart starts only the open shards and delivers only new records.

Usage: test_consumer_reshard.py BUILD_DIR
"""
import os
import re
import subprocess
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from consumer_common import (run, WorkDir, Daemon, LineCounter, binaries,  # noqa: E402
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


if __name__ == "__main__":
    sys.exit(run(main))
