#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Labelled synthetic suite for the four use cases, run through
`rarewatch replay` with one configuration per case (tests/quality/*.conf);
prints precision, recall and detection delay per case.

The data comes from the use-case generators in tests/usecases/ (shared with
./quickstart.sh, which replays smaller streams of the same cases):

- fraud:   per-card amounts with rare 30x spikes; a card used in a new country;
           a card used at a merchant category it never buys in (lookup on the
           merchant reference table)
- web:     per-endpoint latency with rare level shifts (x4 for 10 minutes);
           5xx bursts (half the requests fail for 5 minutes); /health filtered
- social:  per-hashtag tweet counts on a daily cycle with rare bursts (+7x the daily
           mean for 15 min)
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
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "usecases"))
import common as usecases  # noqa: E402  (the generators are shared with ./quickstart.sh)
import fraud  # noqa: E402
import sales  # noqa: E402
import social  # noqa: E402
import web  # noqa: E402

CASES = {m.__name__: m for m in (fraud, web, social, sales)}


def evaluate(out_lines, events):
    found = usecases.flags(out_lines)
    detected, delays = set(), []
    fp_groups = {}
    for (t, key, _, _), hit in zip(found, usecases.match(found, events)):
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
        case = CASES[name]
        recs, events = case.generate(random.Random(a.seed))
        with tempfile.NamedTemporaryFile("w", suffix=".ndjson", delete=False) as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
            path = f.name
        conf = os.path.join(HERE, f"synthetic-{name}.conf")
        # cwd: the configurations name the fraud case's lookup table relative to the tree.
        p = subprocess.run([os.path.abspath(a.rarewatch), "replay", "-q", "-c", conf, path],
                           capture_output=True, text=True, cwd=ROOT)
        os.unlink(path)
        if p.returncode != 0:
            print(name, "replay failed:", p.stderr)
            ok = False
            continue
        pr, rc, med, tp, fp, n = evaluate(p.stdout.splitlines(), events)
        print(f"{name:8} {n:6d} {tp:6d} {fp:6d} {pr:9.3f} {rc:7.3f} {med:11.0f} s")
        ok = ok and pr >= 0.9 and rc >= 0.9
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
