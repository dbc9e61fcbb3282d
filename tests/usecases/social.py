#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""social — posts with hashtags. Each hashtag has its own volume on a daily cycle
(0.4x at night, 1.6x at the peak). Incident `burst`: a hashtag taking off for 15
minutes, 7x its daily-mean volume on top of what the hour brings (the hour's volume
times 8 at an average hour, 5.4 at the peak, 18.5 in the night's trough).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import T0, cycle, main, poisson  # noqa: E402

KEY = "hashtag"


def generate(rnd, scale=1.0, start=T0, truth=None):
    """truth, a dict if given, receives each hashtag's base rate (events/s before
    the daily cycle), for tests/quality/oracle_social.py."""
    recs, events = [], []
    # A smaller stream has fewer hashtags, not fewer days: the hour-of-day profile
    # needs days of history. The burst probability keeps the expected incidents.
    n_tags = 30 if scale >= 1 else max(5, round(30 * scale))
    tags = [f"#tag{i}" for i in range(n_tags)]
    rate = {h: rnd.uniform(0.002, 0.01) for h in tags}
    if truth is not None:
        truth.update(rate)
    burst = {}
    days = 6
    warm = start + 2 * 86400
    t = start
    end = start + days * 86400
    p = 0.00002 if n_tags == 30 else 0.00002 * 30 / n_tags
    while t < end:
        t += 10
        for h in tags:
            lam = rate[h] * 10 * cycle(t, start)
            if h not in burst and t > warm and rnd.random() < p:
                burst[h] = t + 900
                events.append({"key": h, "start": t, "end": t + 900, "kind": "burst"})
            if h in burst:
                if t < burst[h]:
                    # Outside news drives a take-off, not the hour: its added
                    # volume is the same at 3 am as at noon. (8x the hour's own
                    # volume made a night burst on a quiet hashtag ~6 posts
                    # against 0.7, not rarer than 1-in-10^5 even against the
                    # true rate: up to a quarter of a seed's labels were bursts
                    # no detector could tell from noise, see oracle_social.py.)
                    lam += 7 * rate[h] * 10
                else:
                    del burst[h]
            for _ in range(poisson(rnd, lam)):
                recs.append({"ts": round(t + rnd.random() * 10, 3), "hashtag": h,
                             "lang": "en"})
    recs.sort(key=lambda r: r["ts"])
    return recs, events


if __name__ == "__main__":
    main("social", generate, __doc__)
