#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""KPL aggregates and dead letters through the consumer (kinesis-local).
Records are put with boto3 put_records (aggregates built by
tests/harness/kpl.py, an implementation independent of the daemon's):

- the sub-records of an aggregate are delivered in order, each with the
  aggregate's sequence number, its sub_sequence_number (0..n-1) and its
  own partition key (from the aggregate's key table), explicit hash keys
  and tags notwithstanding; plain records in between keep sub-sequence 0;
- a corrupt aggregate (MD5 mismatch) and one whose protobuf is cut short go
  to the dead-letter directory whole: stage "decode", component "kpl", the
  reason, the record's position (_kinesis: shard, sequence number,
  partition key) and its bytes (base64);
- a non-JSON payload, plain or inside an aggregate, is dead-lettered with
  stage "parse", its position (with the sub-sequence number) and its bytes,
  while its neighbours are delivered;
- SIGTERM: exit 0; a restart delivers nothing again;
- a checkpoint inside an aggregate (sequence + sub_sequence_number 99, as
  the KCL writes it) resumes with sub-record 100.

Usage: test_consumer_kpl.py BUILD_DIR
"""
import base64
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from consumer_common import (run, Daemon, LineCounter, WorkDir, binaries,  # noqa: E402
                             kinesis_local_env, order_violations, read_output, summarize,
                             wait_for)
from kpl import UserRecord, aggregate  # noqa: E402
from rwharness import KinesisLocal  # noqa: E402

STREAM = "rw-consumer-kpl"


def jb(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def main(t):
    build = sys.argv[1]
    _, rarewatchd = binaries(build)
    with WorkDir("rw-consumer-kpl-", t) as workdir, \
            KinesisLocal(shards=2, stream=STREAM) as kl:
        kin = kl.client()
        env = kinesis_local_env(kl.endpoint)

        # Sub-record keys that need escapes in the output's _kinesis, under a
        # plain outer key: the outer key's "no escape needed" must not carry over.
        esc = ["", ' "q"', " back\\slash", " ctl\x01\x1f", " \u00e9\u20ac\U0001f600"]
        agg_a = [UserRecord(f"ka-{j}{esc[j]}", jb({"id": f"a-{j}"})) for j in range(5)]
        agg_b = [UserRecord("kb-0", jb({"id": "b-0"}), explicit_hash_key="1234"),
                 UserRecord("kb-1", jb({"id": "b-1"}), tags=[("t", "v"), ("only-key", None)]),
                 UserRecord("kb-2", b"not json at all {"),
                 UserRecord("kb-0", jb({"id": "b-3"}))]
        bad_md5 = aggregate([UserRecord(f"kc-{j}", jb({"id": f"c-{j}"})) for j in range(3)],
                            corrupt_md5=True)
        cut_pb = aggregate([UserRecord(f"kd-{j}", jb({"id": f"d-{j}"})) for j in range(3)],
                           truncate_protobuf=3)
        entries = [
            ("plain-0", jb({"id": "p-0"}), "pk-plain-0"),
            ("agg-a", aggregate(agg_a), "outer-a"),
            ("bad-md5", bad_md5, "outer-bad"),
            ("nonjson", b"this is not json", "pk-nonjson"),
            ("agg-b", aggregate(agg_b), "outer-b"),
            ("cut-pb", cut_pb, "outer-cut"),
            ("plain-1", jb({"id": "p-1"}), 'pk-plain-1 "q" \\ \u00e9'),
        ]
        resp = kin.put_records(StreamName=STREAM, Records=[
            {"Data": data, "PartitionKey": pk} for _, data, pk in entries])
        t.check("put_records: all accepted", resp["FailedRecordCount"] == 0, resp)
        pos = {name: (r["ShardId"], r["SequenceNumber"])
               for (name, _, _), r in zip(entries, resp["Records"])}
        big = [UserRecord(f"kbig-{j % 17}", jb({"id": f"big-{j}"})) for j in range(200)]
        r2 = kin.put_records(StreamName=STREAM, Records=[{"Data": aggregate(big),
                                                          "PartitionKey": "outer-big"}])
        pos["big"] = (r2["Records"][0]["ShardId"], r2["Records"][0]["SequenceNumber"])
        expected_lines = 2 + 5 + 3 + 200
        expected_dl = 4

        d = Daemon(rarewatchd, os.path.join(workdir, "d"), env, STREAM)
        count = LineCounter(d.out_dir)
        with d:
            d.start()
            try:
                wait_for(lambda: d.alive() and count() >= expected_lines
                         and len(d.deadletters()) >= expected_dl, 120,
                         f"{expected_lines} lines and {expected_dl} dead letters")
            except Exception as exc:  # noqa: BLE001
                t.check("delivery", False, exc)
            rc = d.terminate(60)
            t.check("SIGTERM: exit 0", rc == 0, f"rc={rc}\n{d.log(True)[-1500:]}")

            lines, torn = read_output(d.out_dir)
            by_id = {o.get("id"): o for o in lines}
            uniq, dups = summarize(lines)
            t.check(f"{expected_lines} lines, no duplicates",
                    len(lines) == expected_lines and dups == 0 and not torn,
                    f"{len(lines)} lines, {dups} dups")
            t.check("each shard in (sequence, sub-sequence) order", not order_violations(lines),
                    order_violations(lines)[:3])

            def sub_ok(prefix, recs, name, skip=()):
                shard, seq = pos[name]
                bad = []
                for j, ur in enumerate(recs):
                    if j in skip:
                        continue
                    o = by_id.get(f"{prefix}-{j}")
                    k = (o or {}).get("_kinesis", {})
                    if not o or k.get("sequence_number") != seq or k.get("shard_id") != shard \
                            or k.get("sub_sequence_number") != j \
                            or k.get("partition_key") != ur.partition_key:
                        bad.append((j, k))
                return bad
            bad = sub_ok("a", agg_a, "agg-a")
            t.check("aggregate: 5 sub-records with the aggregate's sequence number, "
                    "sub_sequence_number 0..4, their own partition keys", not bad, bad[:2])
            bad = sub_ok("b", [UserRecord("kb-0", b""), UserRecord("kb-1", b""),
                               UserRecord("kb-2", b""), UserRecord("kb-0", b"")], "agg-b",
                         skip=(2,))
            t.check("aggregate with explicit hash key and tags: sub-records 0, 1, 3 delivered "
                    "right", not bad, bad[:2])
            order_a = [by_id.get(f"a-{j}") for j in range(5)]
            t.check("sub-records in order in the output",
                    all(order_a) and [lines.index(o) for o in order_a]
                    == sorted(lines.index(o) for o in order_a))
            big_bad = sub_ok("big", big, "big")
            t.check("an aggregate of 200 sub-records: all delivered right", not big_bad,
                    big_bad[:2])
            pks = {name: pk for name, _, pk in entries}
            for name, pid in (("plain-0", "p-0"), ("plain-1", "p-1")):
                k = (by_id.get(pid) or {}).get("_kinesis", {})
                t.check(f"plain record {pid}: sub_sequence_number 0, its position, its key",
                        k.get("sub_sequence_number") == 0
                        and (k.get("shard_id"), k.get("sequence_number")) == pos[name]
                        and k.get("partition_key") == pks[name], k)

            dls = d.deadletters()
            t.check(f"{expected_dl} dead-letter entries", len(dls) == expected_dl,
                    json.dumps(dls)[:800])

            def find_dl(seq, sub=None):
                return [e for e in dls if e.get("_kinesis", {}).get("sequence_number") == seq
                        and (sub is None or e["_kinesis"].get("sub_sequence_number") == sub)]

            def dl_check(what, name, stage, data, pk, reason_has, sub=0, component=None):
                shard, seq = pos[name]
                found = find_dl(seq, sub)
                e = found[0] if len(found) == 1 else {}
                k = e.get("_kinesis", {})
                ok = (e.get("stage") == stage and k.get("shard_id") == shard
                      and k.get("stream") == STREAM and k.get("partition_key") == pk
                      and base64.b64decode(e.get("data_base64", "")) == data
                      and reason_has in e.get("reason", "").lower()
                      and (component is None or e.get("component") == component))
                t.check(f"dead letter: {what}: stage {stage}, position, reason, bytes", ok,
                        json.dumps(found)[:600])
            dl_check("corrupt aggregate (bad MD5)", "bad-md5", "decode", bad_md5, "outer-bad",
                     "md5", component="kpl")
            dl_check("aggregate with a cut protobuf", "cut-pb", "decode", cut_pb, "outer-cut",
                     "", component="kpl")
            dl_check("non-JSON plain payload", "nonjson", "parse", b"this is not json",
                     "pk-nonjson", "json")
            dl_check("non-JSON sub-record", "agg-b", "parse", b"not json at all {", "kb-2",
                     "json", sub=2)
            t.check("nothing of a dead-lettered aggregate in the output",
                    not any(str(o.get("id", "")).startswith(("c-", "d-")) for o in lines))

            # A restart delivers nothing again (checkpoints past every record).
            d.start()
            d.wait_log(r"(?s)starting at SEQUENCE.*starting at SEQUENCE", 60, "both shards resume")
            kin.put_records(StreamName=STREAM, Records=[
                {"Data": jb({"id": f"after-{j}"}), "PartitionKey": f"pk-after-{j}"}
                for j in range(20)])
            try:
                wait_for(lambda: d.alive() and count() >= expected_lines + 20, 60, "20 more lines")
            except Exception as exc:  # noqa: BLE001
                t.check("restart: new records delivered", False, exc)
            rc = d.terminate(60)
            lines2, _ = read_output(d.out_dir, order="mtime")
            _, dups2 = summarize(lines2)
            t.check("restart: exit 0, only the new records, no dead letter again",
                    rc == 0 and len(lines2) == expected_lines + 20 and dups2 == 0
                    and len(d.deadletters()) == expected_dl,
                    f"rc={rc}, {len(lines2)} lines, {dups2} dups, {len(d.deadletters())} dl")

            # A checkpoint inside the big aggregate, as the KCL writes one.
            shard, seq = pos["big"]
            cp_path = d.ck_dir / "checkpoints" / STREAM / f"{shard}.json"
            cp_path.write_text(json.dumps({"shard_id": shard, "state": "SEQUENCE",
                                           "sequence_number": seq, "sub_sequence_number": 99,
                                           "parent_shard_ids": []}) + "\n")
            shutil.move(str(d.out_dir), str(d.dir / "out-before"))
            count3 = LineCounter(d.out_dir)
            # Records after the big aggregate in its shard come again too.
            after_big = [o for o in lines2 if o["_kinesis"]["shard_id"] == shard
                         and int(o["_kinesis"]["sequence_number"]) > int(seq)]
            d.start()
            try:
                wait_for(lambda: d.alive() and count3() >= 100 + len(after_big), 60,
                         f"{100 + len(after_big)} lines after the mid-aggregate checkpoint")
            except Exception as exc:  # noqa: BLE001
                t.check("resume inside an aggregate: delivery", False, exc)
            rc = d.terminate(60)
            lines3, _ = read_output(d.out_dir)
            got = [o.get("id") for o in lines3]
            want = [f"big-{j}" for j in range(100, 200)] + [o["id"] for o in after_big]
            t.check("checkpoint at sub-sequence 99: resumes with sub-record 100, nothing before",
                    rc == 0 and got == want, f"rc={rc}; got {got[:3]}...{got[-3:]} "
                                             f"({len(got)}), want {len(want)}")


if __name__ == "__main__":
    sys.exit(run(main))
