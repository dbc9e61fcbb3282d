# SPDX-License-Identifier: Apache-2.0
"""Shared parts of the use-case generators (tests/usecases/<case>.py).

Every case module has `generate(rnd, scale=1.0, start=T0) -> (records, incidents)`:
`records` are dicts in event-time order (`ts` in epoch seconds), `incidents` the
labelled injected events `{"key", "start", "end", "kind"}` (epoch seconds). `scale`
shrinks the stream (1.0 is the full synthetic-suite size used by
tests/quality/synthetic.py; the quickstart uses less). The fraud case's merchant
reference table is the committed sample etc/rarewatch/examples/merchants.csv.

Run a case module as a script to write RECORDS.ndjson and a labels JSON:

    tests/usecases/fraud.py --out DIR [--seed N] [--scale X] [--start EPOCH]
"""
import argparse
import json
import math
import os
import random
import time
from datetime import datetime, timezone

T0 = 1790000000  # the synthetic suite's origin; cycles are relative to `start`


def cycle(t, start, period=86400):
    """A daily load cycle: 0.4x at its trough, 1.6x at its peak."""
    return 1 + 0.6 * math.sin(2 * math.pi * ((t - start) % period) / period)


def poisson(rnd, lam):
    L, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rnd.random()
        if p < L:
            return k
        k += 1


def side_rng(rnd):
    """A second generator derived from `rnd`'s state without drawing from it, so the
    fields and incidents added later do not change the stream the original draws make
    (tests/quality/synthetic.py's data stays comparable across versions)."""
    return random.Random(repr(rnd.getstate()))


def flags(lines):
    """The anomalies in rarewatch output lines (NDJSON strings or parsed objects):
    (event time, key, anomaly object, line) for each detector that fired. A derived
    alert (a rate detector's tick for an idle key) has no `ts`: its `_alert.time`; a
    window's record ([window.NAME]) neither: its `_window.end`."""
    out = []
    for line in lines:
        r = json.loads(line) if isinstance(line, (str, bytes)) else line
        if not r.get("is_anomaly"):
            continue
        t = r.get("ts")
        if t is None and ("_alert" in r or "_window" in r):
            iso = r["_alert"]["time"] if "_alert" in r else r["_window"]["end"]
            t = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
        for a in r.get("anomalies", []):
            out.append((t, a.get("key"), a, r))
    return out


def match(flag_list, incidents, grace=600):
    """Which incident each flag belongs to: the first incident of the flag's key whose
    window [start - 1, end + grace] holds the flag's time, else None."""
    out = []
    for f in flag_list:
        t, key = f[0], f[1]
        hit = None
        for i, e in enumerate(incidents):
            if e["key"] == key and t is not None and e["start"] - 1 <= t <= e["end"] + grace:
                hit = i
                break
        out.append(hit)
    return out


def write(outdir, name, records, incidents):
    os.makedirs(outdir, exist_ok=True)
    rec_path = os.path.join(outdir, f"{name}.ndjson")
    with open(rec_path, "w") as f:
        for r in records:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    lab_path = os.path.join(outdir, f"{name}.labels.json")
    with open(lab_path, "w") as f:
        json.dump({"case": name, "records": len(records), "incidents": incidents}, f, indent=1)
        f.write("\n")
    return [rec_path, lab_path]


def main(name, generate, doc=""):
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--out", required=True, help="directory for NAME.ndjson and NAME.labels.json")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--start", type=float, default=None,
                    help="event time of the first record (epoch s); default: the stream ends now")
    a = ap.parse_args()
    start = a.start
    if start is None:
        # Generate once at T0 to learn the span, then shift so the stream ends now.
        recs, _ = generate(random.Random(a.seed), a.scale, T0)
        start = time.time() - (recs[-1]["ts"] - T0 if recs else 0)
    records, incidents = generate(random.Random(a.seed), a.scale, start)
    for p in write(a.out, name, records, incidents):
        print(p)
