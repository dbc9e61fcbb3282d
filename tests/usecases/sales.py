#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""sales — orders per store on a daily cycle, with a slow upward drift (+30% over
the stream) that must not alarm. Incident `drop`: a store whose orders stop for an
hour (a till or payment outage).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import T0, cycle, main, poisson  # noqa: E402

KEY = "store"


def generate(rnd, scale=1.0, start=T0):
    recs, events = [], []
    stores = [f"store-{i:02d}" for i in range(12)]
    rate = {s: rnd.uniform(0.02, 0.05) for s in stores}
    down = {}
    days = 7 if scale >= 1 else max(2.0, 7 * scale)
    warm = start + (3 if days == 7 else days / 2) * 86400
    p = 0.000006 if days == 7 else 0.000006 * 4 / (days / 2)
    t = start
    end = start + days * 86400
    while t < end:
        t += 10
        drift = 1 + 0.3 * (t - start) / (end - start)  # slow growth: must not alarm
        for s in stores:
            if s not in down and t > warm and rnd.random() < p:
                down[s] = t + 3600
                events.append({"key": s, "start": t, "end": t + 3600, "kind": "drop"})
            if s in down:
                if t < down[s]:
                    continue
                del down[s]
            for _ in range(poisson(rnd, rate[s] * 10 * cycle(t, start) * drift)):
                recs.append({"ts": round(t + rnd.random() * 10, 3), "store": s,
                             "amount": round(rnd.uniform(5, 80), 2)})
    recs.sort(key=lambda r: r["ts"])
    return recs, events


if __name__ == "__main__":
    main("sales", generate, __doc__)
