#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""social — posts with hashtags. Each hashtag has its own volume on a daily cycle
(0.4x at night, 1.6x at the peak). Incident `burst`: a hashtag taking off, 8x its
usual volume for 15 minutes.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import T0, cycle, main, poisson  # noqa: E402

KEY = "hashtag"


def generate(rnd, scale=1.0, start=T0):
    recs, events = [], []
    tags = [f"#tag{i}" for i in range(30)]
    rate = {h: rnd.uniform(0.002, 0.01) for h in tags}
    burst = {}
    days = 6 if scale >= 1 else max(2.0, 6 * scale)
    warm = start + days / 3 * 86400
    t = start
    end = start + days * 86400
    p = 0.00002 * 6 / days * 2 / 3 / (1 - 1 / 3) if days != 6 else 0.00002
    while t < end:
        t += 10
        for h in tags:
            lam = rate[h] * 10 * cycle(t, start)
            if h not in burst and t > warm and rnd.random() < p:
                burst[h] = t + 900
                events.append({"key": h, "start": t, "end": t + 900, "kind": "burst"})
            if h in burst:
                if t < burst[h]:
                    lam *= 8
                else:
                    del burst[h]
            for _ in range(poisson(rnd, lam)):
                recs.append({"ts": round(t + rnd.random() * 10, 3), "hashtag": h,
                             "lang": "en"})
    recs.sort(key=lambda r: r["ts"])
    return recs, events


if __name__ == "__main__":
    main("social", generate, __doc__)
