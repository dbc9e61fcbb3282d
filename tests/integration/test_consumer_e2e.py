#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The consumer end to end: a 4-shard stream, 20,000 records put with
`rarewatch put` (partition key from a field with 200 distinct values) while
`rarewatchd` consumes it into the file sink.

- every record delivered exactly once (by provenance: shard, sequence,
  sub-sequence) with its fields and a correct `_kinesis` provenance;
- in order within each shard (sequence numbers increase in output order;
  the files, rotated at 256 KiB, are taken in name order);
- SIGTERM: exit 0, one checkpoint file per shard holding the last
  delivered sequence number;
- a restart resumes from the checkpoints: 100 more records, none of the
  first 20,000 again.

Usage: test_consumer_e2e.py BUILD_DIR kinesis-local|moto
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from consumer_common import (run, WorkDir, Daemon, LineCounter, binaries, clean_env,  # noqa: E402
                             kinesis_local_env, last_position_per_shard, order_violations,
                             put, read_output, summarize, wait_for, write_input)
from rwharness import KinesisLocal, Moto  # noqa: E402

N = 20000
KEYS = 200
SHARDS = 4
STREAM = "rw-consumer-e2e"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def scenario(t, build, emulator, kin_client, env, workdir):
    rarewatch, rarewatchd = binaries(build)
    shard_ids = sorted(s["ShardId"] for s in kin_client.list_shards(StreamName=STREAM)["Shards"])
    t.check(f"{emulator}: the stream has {SHARDS} shards", len(shard_ids) == SHARDS, shard_ids)

    src = os.path.join(workdir, "in.ndjson")
    ids = write_input(src, N, keys=KEYS, tag="e2e")
    # Small files, so that the order across many rotated files is tested too.
    d = Daemon(rarewatchd, os.path.join(workdir, "d"), env, STREAM,
               output={"rotate_size": "256KiB"})
    with d:
        d.start()
        d.wait_log(r"shard .*: worker started", 60, "a shard worker")
        t0 = time.monotonic()
        r = put(rarewatch, env, STREAM, src)
        put_secs = time.monotonic() - t0
        t.check(f"{emulator}: rarewatch put of {N} records: exit 0", r.returncode == 0,
                r.stderr[-600:])
        m = re.search(r"sent (\d+) records", r.stderr)
        t.check(f"{emulator}: put reports {N} sent", m and int(m.group(1)) == N, r.stderr[-300:])
        count = LineCounter(d.out_dir)
        try:
            wait_for(lambda: d.alive() and count() >= N, 240, f"{N} output lines")
        except (TimeoutError, Exception) as exc:  # noqa: BLE001
            t.check(f"{emulator}: {N} lines delivered", False, f"{exc}; {count()} lines")
        consume_secs = time.monotonic() - t0
        rc = d.terminate(60)
        t.check(f"{emulator}: SIGTERM: exit 0", rc == 0, f"rc={rc}; log:\n{d.log(True)[-2000:]}")
        print(f"# {emulator}: put {N} records in {put_secs:.1f} s; all delivered "
              f"{consume_secs:.1f} s after the put started", flush=True)

        lines, torn = read_output(d.out_dir)
        uniq, dups = summarize(lines)
        got_ids = [o.get("id") for o in lines]
        t.check(f"{emulator}: every record delivered ({uniq} unique of {N})",
                uniq == N and set(got_ids) == set(ids),
                f"unique {uniq}, missing ids {len(set(ids) - set(got_ids))}")
        t.check(f"{emulator}: no duplicates in a clean run", dups == 0, f"{dups} duplicates")
        t.check(f"{emulator}: no torn lines", not torn, torn[:3])
        bad_fields = [o for o in lines
                      if o.get("k") != f"key-{o.get('i', -1) % KEYS:03d}"
                      or o.get("id") != f"e2e-{o.get('i')}"]
        t.check(f"{emulator}: input fields intact", not bad_fields, bad_fields[:2])
        bad_prov = []
        for o in lines:
            k = o.get("_kinesis", {})
            if (k.get("stream") != STREAM or k.get("shard_id") not in shard_ids
                    or k.get("partition_key") != o.get("k") or k.get("sub_sequence_number") != 0
                    or not str(k.get("sequence_number", "")).isdigit()
                    or not ISO.match(str(k.get("arrival_time", "")))):
                bad_prov.append(k)
        t.check(f"{emulator}: _kinesis provenance complete and right", not bad_prov, bad_prov[:2])
        # One key, one shard (no resharding here).
        key_shards = {}
        for o in lines:
            key_shards.setdefault(o["k"], set()).add(o["_kinesis"]["shard_id"])
        t.check(f"{emulator}: each partition key in one shard",
                all(len(v) == 1 for v in key_shards.values()) and len(key_shards) == KEYS,
                {k: v for k, v in key_shards.items() if len(v) != 1})
        used = {o["_kinesis"]["shard_id"] for o in lines}
        t.check(f"{emulator}: records from all {SHARDS} shards", used == set(shard_ids), used)
        nfiles = len({o["_file"] for o in lines})
        t.check(f"{emulator}: the sink rotated ({nfiles} files of at most ~256 KiB)", nfiles > 5,
                nfiles)
        viol = order_violations(lines)
        t.check(f"{emulator}: in sequence order within each shard (files by name)", not viol,
                viol[:3])

        cps = d.checkpoints()
        last = last_position_per_shard(lines)
        t.check(f"{emulator}: a checkpoint file per shard", sorted(cps) == shard_ids, sorted(cps))
        wrong = {s: cp for s, cp in cps.items()
                 if not cp or cp.get("state") != "SEQUENCE"
                 or int(cp.get("sequence_number", "0")) != last.get(s, (None,))[0]
                 or cp.get("sub_sequence_number") != 0}
        t.check(f"{emulator}: each checkpoint is the shard's last delivered record", not wrong,
                {s: (cp, last.get(s)) for s, cp in wrong.items()})
        errors = [ln for ln in d.log().splitlines() if re.search(r"Z (err|crit|alert|emerg)", ln)]
        t.check(f"{emulator}: no errors logged", not errors, errors[:3])

        # Restart: resumes after the checkpoints.
        more = os.path.join(workdir, "more.ndjson")
        more_ids = write_input(more, 100, keys=KEYS, tag="more")
        d.start()
        try:
            d.wait_log(r"(?s)" + r".*".join([r"starting at SEQUENCE"] * SHARDS), 60,
                       "every shard resuming at its checkpoint")
            t.check(f"{emulator}: restart: every shard resumes at its checkpoint", True)
        except Exception as exc:  # noqa: BLE001
            t.check(f"{emulator}: restart: every shard resumes at its checkpoint", False, exc)
        r = put(rarewatch, env, STREAM, more)
        t.check(f"{emulator}: put 100 more: exit 0", r.returncode == 0, r.stderr[-300:])
        try:
            wait_for(lambda: d.alive() and count() >= N + 100, 120, f"{N + 100} lines")
        except Exception:  # noqa: BLE001
            pass
        rc = d.terminate(60)
        t.check(f"{emulator}: second SIGTERM: exit 0", rc == 0, rc)
        lines, _ = read_output(d.out_dir, order="mtime")
        uniq, dups = summarize(lines)
        got = {o.get("id") for o in lines}
        t.check(f"{emulator}: after the restart: the 100 new records, nothing read again",
                len(lines) == N + 100 and dups == 0 and set(more_ids) <= got,
                f"{len(lines)} lines, {dups} duplicates, {len(set(more_ids) - got)} new missing")


def main(t):
    build, emulator = sys.argv[1], sys.argv[2]
    with WorkDir("rw-consumer-e2e-", t) as workdir:
        if emulator == "kinesis-local":
            with KinesisLocal(shards=SHARDS, stream=STREAM) as kin:
                scenario(t, build, emulator, kin.client(), kinesis_local_env(kin.endpoint),
                         workdir)
        elif emulator == "moto":
            with Moto(iam_auth=True) as moto:
                kin = moto.client("kinesis")
                kin.create_stream(StreamName=STREAM, ShardCount=SHARDS)
                kin.get_waiter("stream_exists").wait(StreamName=STREAM,
                                                     WaiterConfig={"Delay": 1})
                scenario(t, build, emulator, kin, clean_env(moto.env()), workdir)
        else:
            raise ValueError(f"unknown emulator {emulator}")


if __name__ == "__main__":
    sys.exit(run(main))
