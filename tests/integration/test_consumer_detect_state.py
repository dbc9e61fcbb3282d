#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Detector state in the daemon, across a restart and a reload.

Two z-score detectors per card (`amount` and `x`) on a one-shard stream,
records with event times. `rarewatch replay` of the same records gives the
reference: the scores an uninterrupted run would print.

1. Part A is put and consumed; SIGTERM: exit 0, "detector state saved", the
   state file beside the checkpoints.
2. Restart: "detector state restored"; part B is put. Every B record's
   anomaly_score equals the uninterrupted run's (replay of A+B), so the
   restart neither relearned from zero nor lost what A taught.
3. SIGHUP with `x` changed (min_samples 5 -> 6), `amount` unchanged: the log
   says which keeps its state and which starts fresh; part C is put. Every C
   record's anomaly_score is max(amount over A+B+C, x' over C alone): the
   unchanged detector went on, the changed one started from nothing.
4. Part D: half the cards, two days of event time later (idle_expiry is
   24h): the other half is forgotten, and the status line (STATUS= to a
   NOTIFY_SOCKET the test owns) counts the keys left and the expirations.

anomaly_score is the maximum over the detectors, printed %.17g, so the
comparison is exact.

Usage: test_consumer_detect_state.py BUILD_DIR
"""
import json
import os
import random
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from consumer_common import (run, WorkDir, Daemon, LineCounter, StatusSocket, binaries, clean_env, put,  # noqa: E402
                             read_output, wait_for)
from rwharness import Moto  # noqa: E402

T0 = 1795003200
CARDS = 20
PART = 400   # records per part, 20 per card

INPUT = "[input]\ntimestamp_field = ts\n"
AMOUNT = "[detector.amount]\ntype = zscore\nfield = amount\nkey = card\nmin_samples = 5\n"
X = "[detector.x]\ntype = zscore\nfield = x\nkey = card\nmin_samples = {}\n"


def gen(path, part, rnd):
    with open(path, "w") as f:
        for i in range(PART):
            n = part * PART + i
            c = n % CARDS
            rec = {"id": f"r-{n}", "card": f"c-{c}", "ts": T0 + n,
                   "amount": round(rnd.gauss(50 + 5 * c, 5), 2), "x": round(rnd.gauss(10, 2), 3)}
            # A few outliers, so that some scores are near 1.
            if n % 97 == 13:
                rec["amount"] = round(rec["amount"] * 8, 2)
            f.write(json.dumps(rec) + "\n")


def gen_late(path):
    """Cards c-0..c-9, two days after part C."""
    with open(path, "w") as f:
        for i in range(40):
            n = 3 * PART + i
            rec = {"id": f"r-{n}", "card": f"c-{i % 10}", "ts": T0 + 2 * 86400 + n, "amount": 60.0, "x": 10.0}
            f.write(json.dumps(rec) + "\n")
    return 40


def replay(rarewatch, workdir, name, conf_text, files):
    conf = os.path.join(workdir, f"{name}.conf")
    with open(conf, "w") as f:
        f.write(conf_text)
    data = b"".join(open(p, "rb").read() for p in files)
    r = subprocess.run([rarewatch, "replay", "-q", "-c", conf], input=data, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"replay {name}: {r.stderr.decode()[-500:]}")
    return {o["id"]: o["anomaly_score"] for o in map(json.loads, r.stdout.decode().splitlines())}


def scores(d):
    return {o["id"]: o.get("anomaly_score") for o in read_output(d.out_dir)[0] if "id" in o}


def mismatches(got, want, ids):
    return [(i, got.get(i), want[i]) for i in ids if got.get(i) != want[i]]


def main(t):
    rarewatch, rarewatchd = binaries(sys.argv[1])
    rnd = random.Random(7)
    with WorkDir("rw-detstate-", t) as workdir, Moto(iam_auth=True) as moto:
        env = clean_env(moto.env())
        parts = [os.path.join(workdir, f"part{p}.ndjson") for p in range(3)]
        for p, path in enumerate(parts):
            gen(path, p, rnd)
        ids = [[f"r-{p * PART + i}" for i in range(PART)] for p in range(3)]

        # The uninterrupted runs, per detector.
        amount = replay(rarewatch, workdir, "amount", INPUT + AMOUNT, parts)
        x = replay(rarewatch, workdir, "x", INPUT + X.format(5), parts[:2])
        x_fresh = replay(rarewatch, workdir, "x6", INPUT + X.format(6), parts[2:])
        want = {i: max(amount[i], x[i]) for i in ids[0] + ids[1]}
        want.update({i: max(amount[i], x_fresh[i]) for i in ids[2]})
        t.check("reference: some records score above 0.99 (the comparison is not of zeros only)",
                sum(v > 0.99 for v in want.values()) >= 5, sorted(want.values())[-5:])

        name = "rw-detstate"
        kin = moto.client("kinesis")
        kin.create_stream(StreamName=name, ShardCount=1)
        kin.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1})
        status = StatusSocket(os.path.join(workdir, "notify"))
        d = Daemon(rarewatchd, os.path.join(workdir, "d"), dict(env, NOTIFY_SOCKET=status.path), name,
                   extra="[daemon]\nstatus_interval = 200ms\n" + INPUT + AMOUNT + X.format(5))
        state_file = d.ck_dir / "detectors.state"

        lines = LineCounter(d.out_dir)

        def feed(label, path, total):
            """Put a part; the scores once the output holds total records."""
            r = put(rarewatch, env, name, path, "--partition-key", "card")
            t.check(f"put part {label}: exit 0", r.returncode == 0, r.stderr[-600:])
            wait_for(lambda: d.alive() and lines() >= total, 120, f"part {label} in the output")
            return scores(d)

        with d:
            # 1. Part A, then a clean stop.
            d.start()
            d.wait_log(r"shard .*: worker started", 60, "a shard worker")
            got = feed("A", parts[0], PART)
            t.check("part A: scores as the uninterrupted run's", not mismatches(got, want, ids[0]),
                    mismatches(got, want, ids[0])[:3])
            rc = d.terminate(60)
            t.check("SIGTERM: exit 0", rc == 0, d.log(True)[-2000:])
            t.check("stop: 'detector state saved' logged, the file beside the checkpoints",
                    "detector state saved to" in d.log(True) and state_file.is_file(), d.log(True)[-1500:])

            # 2. Restart, part B.
            d.start()
            d.wait_log(r"shard .*: worker started", 60, "a shard worker")
            t.check("restart: 'detector state restored'", "detector state restored from" in d.log(True),
                    d.log(True)[-1500:])
            bad = mismatches(feed("B", parts[1], 2 * PART), want, ids[1])
            t.check(f"after the restart, part B: every score as the uninterrupted run's ({len(bad)} differ)",
                    not bad, bad[:3])

            # 3. Reload with x changed, part C.
            conf = d.conf_path.read_text()
            d.conf_path.write_text(conf.replace(X.format(5), X.format(6)))
            d.proc.send_signal(signal.SIGHUP)
            d.wait_log(r"detector x: definition changed, starts fresh", 60, "the reload")
            log = d.log(True)
            t.check("reload: amount keeps its state (20 keys), x starts fresh",
                    "detector amount: definition unchanged, keeps its state (20 keys)" in log, log[-1500:])
            got = feed("C", parts[2], 3 * PART)
            bad = mismatches(got, want, ids[2])
            t.check(f"after the reload, part C: max(amount continued, x fresh) ({len(bad)} differ)",
                    not bad, bad[:3])
            t.check("every record once", sorted(got) == sorted(ids[0] + ids[1] + ids[2]), len(got))

            def counts(keys, expired):
                return lambda st: f"detectors: {keys} keys, " in st and st.endswith(f" {expired} expired")

            t.check("status: 'detectors: 40 keys, ..., 0 expired' (20 cards x 2 detectors)",
                    status.wait(counts(40, 0), 30, "the status line"), status.last())

            # 4. Two days later, half the cards.
            late = os.path.join(workdir, "late.ndjson")
            feed("D", late, 3 * PART + gen_late(late))
            t.check("part D: the 10 idle cards forgotten by both detectors "
                    "(status 'detectors: 20 keys, ..., 20 expired')",
                    status.wait(counts(20, 20), 60, "the expiry in the status line"), status.last())
            rc = d.terminate(60)
            t.check("SIGTERM: exit 0", rc == 0, d.log(True)[-2000:])
        status.close()


if __name__ == "__main__":
    sys.exit(run(main))
