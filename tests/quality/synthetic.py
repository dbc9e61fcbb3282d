#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Labelled synthetic suite for the four use cases, run through
`rarewatch replay` with one configuration per case (tests/quality/*.conf);
prints precision, recall and detection delay per case.

- fraud:   per-card amounts with rare 30x spikes; a card used in a new country
- web:     per-endpoint latency with rare level shifts (x4 for 10 minutes)
- social:  per-hashtag tweet counts on a daily cycle with rare bursts (x8 for 15 min)
- sales:   per-store sales on a daily cycle; rare drops to zero for an hour;
           a slow upward drift that must not alarm

An injected event is detected when a record (or derived alert) inside its
window is flagged; a flag outside every window is a false positive (flags
of one key within 10 minutes count once). Deterministic: --seed.

Usage: synthetic.py RAREWATCH_BINARY [--seed N] [--case NAME]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
T0 = 1790000000  # a Monday, 00:00 UTC is not needed: cycles are relative


def fraud(rnd):
    recs, events = [], []
    cards = [{"id": f"card-{i:03d}", "mean": rnd.uniform(10, 150), "country": rnd.choice("DE FR NL IT ES".split())}
             for i in range(150)]
    t = T0
    for i in range(60000):
        t += rnd.expovariate(1 / 6.0)
        c = rnd.choice(cards)
        amount = max(0.5, rnd.gauss(c["mean"], c["mean"] * 0.2))
        country = c["country"]
        label = None
        if i > 20000 and rnd.random() < 0.0006:
            amount, label = c["mean"] * 30, "spike"
        elif i > 20000 and rnd.random() < 0.0006:
            country, label = rnd.choice("BR NG VN RU".split()), "country"
            c["country_used"] = True
        rec = {"ts": t, "card": c["id"], "amount": round(amount, 2), "country": country}
        if label:
            events.append({"key": c["id"], "start": t, "end": t + 1, "kind": label})
            rec["_label"] = len(events) - 1
        recs.append(rec)
    return recs, events


def web(rnd):
    recs, events = [], []
    eps = [f"/api/v1/{n}" for n in "orders users cart search pay items login stock".split()]
    base = {e: rnd.uniform(20, 200) for e in eps}
    shift = {}
    t = T0
    for i in range(80000):
        t += rnd.expovariate(1 / 2.0)
        e = rnd.choice(eps)
        if e not in shift and i > 30000 and rnd.random() < 0.00012:
            shift[e] = t + 600
            events.append({"key": e, "start": t, "end": t + 600, "kind": "latency_shift"})
        lat = rnd.lognormvariate(0, 0.25) * base[e]
        if e in shift and t < shift[e]:
            lat *= 4
        elif e in shift and t >= shift[e]:
            del shift[e]
        recs.append({"ts": t, "endpoint": e, "latency_ms": round(lat, 1), "status": 200})
    return recs, events


def cycle(t, period=86400):
    import math
    return 1 + 0.6 * math.sin(2 * math.pi * ((t - T0) % period) / period)


def social(rnd):
    recs, events = [], []
    tags = [f"#tag{i}" for i in range(30)]
    rate = {h: rnd.uniform(0.002, 0.01) for h in tags}
    burst = {}
    t = T0
    end = T0 + 6 * 86400
    while t < end:
        t += 10
        for h in tags:
            lam = rate[h] * 10 * cycle(t)
            if h not in burst and t > T0 + 2 * 86400 and rnd.random() < 0.00002:
                burst[h] = t + 900
                events.append({"key": h, "start": t, "end": t + 900, "kind": "burst"})
            if h in burst:
                if t < burst[h]:
                    lam *= 8
                else:
                    del burst[h]
            for _ in range(poisson(rnd, lam)):
                recs.append({"ts": t + rnd.random() * 10, "hashtag": h})
    recs.sort(key=lambda r: r["ts"])
    return recs, events


def sales(rnd):
    recs, events = [], []
    stores = [f"store-{i:02d}" for i in range(12)]
    rate = {s: rnd.uniform(0.02, 0.05) for s in stores}
    down = {}
    t = T0
    end = T0 + 7 * 86400
    while t < end:
        t += 10
        drift = 1 + 0.3 * (t - T0) / (end - T0)  # slow growth: must not alarm
        for s in stores:
            if s not in down and t > T0 + 3 * 86400 and rnd.random() < 0.000006:
                down[s] = t + 3600
                events.append({"key": s, "start": t, "end": t + 3600, "kind": "drop"})
            if s in down:
                if t < down[s]:
                    continue
                del down[s]
            for _ in range(poisson(rnd, rate[s] * 10 * cycle(t) * drift)):
                recs.append({"ts": t + rnd.random() * 10, "store": s, "amount": round(rnd.uniform(5, 80), 2)})
    recs.sort(key=lambda r: r["ts"])
    return recs, events


def poisson(rnd, lam):
    import math
    L, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rnd.random()
        if p < L:
            return k
        k += 1


CASES = {"fraud": (fraud, "card"), "web": (web, "endpoint"), "social": (social, "hashtag"), "sales": (sales, "store")}


def evaluate(out_lines, events, keyfield):
    flags = []
    for line in out_lines:
        r = json.loads(line)
        if not r.get("is_anomaly"):
            continue
        for a in r["anomalies"]:
            t = r.get("ts")
            if t is None and "_alert" in r:
                from datetime import datetime, timezone
                t = datetime.strptime(r["_alert"]["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
            flags.append((t, a["key"]))
    detected, delays = set(), []
    fp_groups = {}
    for t, key in flags:
        hit = None
        for i, e in enumerate(events):
            if e["key"] == key and e["start"] - 1 <= t <= e["end"] + 600:
                hit = i
                break
        if hit is not None:
            if hit not in detected:
                detected.add(hit)
                delays.append(max(0.0, t - events[hit]["start"]))
        else:
            g = (key, int(t // 600))
            fp_groups[g] = 1
    tp = len(detected)
    fp = len(fp_groups)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / len(events) if events else 1.0
    delays.sort()
    med = delays[len(delays) // 2] if delays else float("nan")
    return precision, recall, med, tp, fp, len(events)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rarewatch")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--case", action="append")
    a = ap.parse_args()
    print(f"{'case':8} {'events':>6} {'found':>6} {'false':>6} {'precision':>9} {'recall':>7} {'median delay':>13}")
    ok = True
    for name in a.case or CASES:
        gen, keyfield = CASES[name]
        recs, events = gen(random.Random(a.seed))
        with tempfile.NamedTemporaryFile("w", suffix=".ndjson", delete=False) as f:
            for r in recs:
                r = dict(r)
                r.pop("_label", None)
                f.write(json.dumps(r) + "\n")
            path = f.name
        conf = os.path.join(HERE, f"synthetic-{name}.conf")
        p = subprocess.run([a.rarewatch, "replay", "-q", "-c", conf, path], capture_output=True, text=True)
        os.unlink(path)
        if p.returncode != 0:
            print(name, "replay failed:", p.stderr)
            ok = False
            continue
        pr, rc, med, tp, fp, n = evaluate(p.stdout.splitlines(), events, keyfield)
        print(f"{name:8} {n:6d} {tp:6d} {fp:6d} {pr:9.3f} {rc:7.3f} {med:11.0f} s")
        ok = ok and pr >= 0.9 and rc >= 0.9
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
