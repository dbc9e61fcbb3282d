#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Summarise rarewatchd's NDJSON output for the demo: flagged records, how
many of them were the injected rare events, a few reasons."""
import json
import sys

rows = [json.loads(line) for line in sys.stdin]
hits = [r for r in rows if r.get("is_anomaly")]
injected = sum(1 for r in rows if "injected" in r)
found = sum(1 for r in hits if "injected" in r)
print(f"{len(hits)} records flagged; {found} of the {injected} injected rare events among them. For example:")
for r in [h for h in hits if "injected" in h][:4] + [h for h in hits if "injected" not in h][:2]:
    for a in r["anomalies"]:
        print(f"  {r['ts']} {a['detector']}: {a['reason']} (score {a['score']:.6f})")
