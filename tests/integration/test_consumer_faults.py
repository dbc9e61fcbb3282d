#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The consumer through a fault proxy: rarewatchd talks to kinesis-local
through FaultProxy, which injects on GetRecords throttling
(ProvisionedThroughputExceededException), ExpiredIteratorException (400),
HTTP 500s, connection resets (before and after forwarding), a truncated
answer and an HTML error page; on GetShardIterator a 500 and on ListShards
a throttle.  The faults are spread over the consumption with `skip`; the
iterator expiries come once every shard has read records.

- no record lost, none twice, each shard in sequence order;
- the daemon never exits until SIGTERM (then exit 0, checkpoints at the
  last record of each shard);
- every fault was injected (proxy counters) and the retries are visible in
  the daemon's log (stderr), including the new iterator after the expiry.

Usage: test_consumer_faults.py BUILD_DIR
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from consumer_common import (run, Daemon, LineCounter, WorkDir, binaries,  # noqa: E402
                             kinesis_local_env, last_position_per_shard, order_violations, put,
                             read_output, summarize, wait_for, write_input)
from rwharness import FaultProxy, KinesisLocal  # noqa: E402

STREAM = "rw-consumer-faults"
N = 4000
SHARDS = 2

RULES = [
    {"action": "ListShards", "kind": "throttle", "count": 1},
    {"action": "GetShardIterator", "kind": "http_error", "status": 500, "count": 1},
    {"action": "GetRecords", "kind": "throttle", "count": 4, "skip": 2},
    {"action": "GetRecords", "kind": "http_error", "status": 500, "count": 3, "skip": 4},
    {"action": "GetRecords", "kind": "reset", "count": 2, "skip": 4},
    {"action": "GetRecords", "kind": "reset", "when": "after", "count": 1, "skip": 4},
    {"action": "GetRecords", "kind": "truncated", "count": 1, "skip": 4},
    {"action": "GetRecords", "kind": "html", "status": 502, "count": 1, "skip": 4},
]
# Added once every shard has read records, so each expiry resumes after the
# last record its shard read ("resuming after <sequence number>"). Among the
# first rules, an expiry could reach a shard whose every earlier poll had
# been faulted: that shard resumes after the checkpoint instead (correct,
# and what the restart below tests), and the check for the other path
# failed (CI, once).
EXPIRY = {"action": "GetRecords", "kind": "http_error", "status": 400,
          "error": "ExpiredIteratorException", "count": 2}
EXPECT_FAULTS = {"GetRecords": {"throttle": 4, "http_error": 5, "reset": 3, "truncated": 1,
                                "html": 1},
                 "GetShardIterator": {"http_error": 1},
                 "ListShards": {"throttle": 1}}


def main(t):
    build = sys.argv[1]
    rarewatch, rarewatchd = binaries(build)
    with WorkDir("rw-consumer-faults-", t) as workdir, \
            KinesisLocal(shards=SHARDS, stream=STREAM) as kl, \
            FaultProxy(kl.endpoint, rules=RULES) as proxy:
        src = os.path.join(workdir, "in.ndjson")
        ids = set(write_input(src, N, keys=200, tag="f"))
        r = put(rarewatch, kinesis_local_env(kl.endpoint), STREAM, src)
        t.check(f"put {N} records (directly): exit 0", r.returncode == 0, r.stderr[-300:])
        shard_ids = sorted(s["ShardId"] for s in kl.client().list_shards(StreamName=STREAM)["Shards"])

        d = Daemon(rarewatchd, os.path.join(workdir, "d"), kinesis_local_env(proxy.endpoint),
                   STREAM, kinesis={"max_records": 100, "error_backoff_max": "1s"},
                   extra="[aws]\nmax_attempts = 3\nrequest_timeout = 5s\n")
        count = LineCounter(d.out_dir)
        with d:
            d.start()
            try:
                wait_for(lambda: d.alive() and
                         len(last_position_per_shard(read_output(d.out_dir)[0])) == SHARDS,
                         240, "records from every shard")
            except Exception as exc:  # noqa: BLE001
                t.check("records from every shard", False, exc)
            proxy.add_rule(EXPIRY)
            try:
                wait_for(lambda: d.alive() and count() >= N, 240, f"{N} lines")
            except Exception as exc:  # noqa: BLE001
                t.check("consumption through the faults", False, f"{exc}; {count()} lines")
            # Every rule fired (they are removed once spent).
            try:
                wait_for(lambda: d.alive() and not proxy.rules(), 60, "every fault injected")
            except Exception as exc:  # noqa: BLE001
                t.check("every fault rule fired", False, f"{exc}; left: {proxy.rules()}")
            t.check("the daemon survived every fault", d.proc is not None and d.proc.poll() is None,
                    d.log(True)[-1500:])
            rc = d.terminate(60)
            t.check("SIGTERM: exit 0", rc == 0, f"rc={rc}\n{d.log(True)[-1500:]}")

        stats = proxy.stats()
        for action, kinds in EXPECT_FAULTS.items():
            got = stats.get(action, {}).get("faults", {})
            t.check(f"{action}: faults injected {kinds}",
                    all(got.get(k, 0) == v for k, v in kinds.items()), got)
        gr = stats.get("GetRecords", {})
        print(f"# proxy: GetRecords {gr.get('requests')} requests, {gr.get('forwarded')} "
              f"forwarded, faults {gr.get('faults')}; GetShardIterator "
              f"{stats.get('GetShardIterator', {}).get('requests')} requests", flush=True)

        lines, torn = read_output(d.out_dir)
        got = {o.get("id") for o in lines}
        uniq, dups = summarize(lines)
        t.check(f"no record lost ({len(ids & got)} of {N})", got >= ids, f"{len(ids - got)} missing")
        t.check("no duplicates", dups == 0 and uniq == N, f"{dups} duplicates, {uniq} unique")
        t.check("no torn lines", not torn, torn[:2])
        t.check("each shard in sequence order", not order_violations(lines),
                order_violations(lines)[:3])
        cps = d.checkpoints()
        last = last_position_per_shard(lines)
        wrong = {s: cp for s, cp in cps.items()
                 if not cp or cp.get("state") != "SEQUENCE"
                 or int(cp.get("sequence_number", "0")) != last.get(s, (None,))[0]}
        t.check("every shard checkpointed at its last record",
                sorted(cps) == shard_ids and not wrong, (sorted(cps), wrong))

        log = d.log()
        expect_log = {
            "throttling retried": r"GetRecords.*(ProvisionedThroughputExceededException).*"
                                  r"(retrying|backing off)",
            "HTTP 500 retried": r"GetRecords.*(InternalFailure|500).*(retrying|backing off)",
            "connection reset retried": r"GetRecords.*(reset|connection|Connection|recv|Recv|"
                                        r"receiv|Failure when|Empty reply|Send failure)"
                                        r".*(retrying|backing off)",
            "expired iterator: a new one": r"shard iterator expired; resuming after \d+",
            "GetShardIterator 500 retried": r"GetShardIterator.*(InternalFailure|500).*"
                                            r"(retrying|failed)",
            "ListShards throttle retried": r"ListShards.*ProvisionedThroughputExceededException",
        }
        for what, rx in expect_log.items():
            t.check(f"log: {what}", re.search(rx, log), rx)
        t.check("the iterator was renewed after each expiry",
                stats.get("GetShardIterator", {}).get("requests", 0) >= SHARDS + 1 + 2,
                stats.get("GetShardIterator"))
        print("# retry lines in the daemon's log:", flush=True)
        for ln in log.splitlines():
            if re.search(r"retrying|backing off|expired|malformed", ln):
                print("#   " + ln[:220], flush=True)

        # Restarted from the checkpoints on a caught-up stream, a shard whose
        # iterator expires before it read anything new must resume after its
        # checkpoint, not at [kinesis] initial_position (TRIM_HORIZON here).
        with d:
            d.start()
            d.wait_log(r"(?s)" + r".*".join([r"starting at SEQUENCE"] * SHARDS), 60,
                       "every shard resuming at its checkpoint")
            base = proxy.stats("GetRecords")["requests"]
            wait_for(lambda: d.alive() and proxy.stats("GetRecords")["requests"] >= base + 4 * SHARDS,
                     60, "a few empty GetRecords per shard")
            proxy.add_rule({"action": "GetRecords", "kind": "http_error", "status": 400,
                            "error": "ExpiredIteratorException", "count": SHARDS})
            wait_for(lambda: d.alive() and not proxy.rules(), 60, "the expiries injected")
            more = os.path.join(workdir, "more.ndjson")
            more_ids = set(write_input(more, 50, keys=200, tag="g"))
            r = put(rarewatch, kinesis_local_env(kl.endpoint), STREAM, more)
            t.check("restart: put 50 more: exit 0", r.returncode == 0, r.stderr[-300:])
            try:
                wait_for(lambda: d.alive() and count() >= N + 50, 120, f"{N + 50} lines")
            except Exception as exc:  # noqa: BLE001
                t.check("restart: the 50 new records delivered", False, exc)
            rc = d.terminate(60)
            t.check("restart: SIGTERM: exit 0", rc == 0, rc)
        lines, _ = read_output(d.out_dir, order="mtime")
        uniq, dups = summarize(lines)
        got = {o.get("id") for o in lines}
        t.check("iterator expired right after a restart: resumed after the checkpoint "
                "(nothing read again)", dups == 0 and got >= ids | more_ids,
                f"{dups} duplicates, {len((ids | more_ids) - got)} missing")


if __name__ == "__main__":
    sys.exit(run(main))
