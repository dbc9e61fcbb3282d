#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""web — access-log events (one per request): endpoint, method, status, latency.
Load balancer health checks hit /health every 10 s (the configuration filters them
out). Incidents:

- `latency_shift`: an endpoint's latency 4x its usual for 10 minutes;
- `5xx_burst`: an endpoint answering 503 to half its requests for 5 minutes (the
  usual error rate is 0.2%).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import T0, main, side_rng  # noqa: E402

KEY = "endpoint"


def generate(rnd, scale=1.0, start=T0):
    side = side_rng(rnd)
    recs, events = [], []
    eps = [f"/api/v1/{n}" for n in "orders users cart search pay items login stock".split()]
    base = {e: rnd.uniform(20, 200) for e in eps}
    method = {e: ("POST" if e.endswith(("orders", "pay", "login", "cart")) else "GET") for e in eps}
    shift, burst = {}, {}
    n = int(80000 * scale)
    warm = int(30000 * scale)
    t = start
    next_health = start
    for i in range(n):
        t += rnd.expovariate(1 / 2.0)
        while next_health < t:
            recs.append({"ts": round(next_health, 3), "endpoint": "/health", "method": "GET", "status": 200,
                         "latency_ms": round(side.uniform(0.5, 2.0), 1), "user_agent": "ELB-HealthChecker/2.0"})
            next_health += 10
        e = rnd.choice(eps)
        if e not in shift and i > warm and rnd.random() < 0.00012 / scale:
            shift[e] = t + 600
            events.append({"key": e, "start": t, "end": t + 600, "kind": "latency_shift"})
        lat = rnd.lognormvariate(0, 0.25) * base[e]
        if e in shift and t < shift[e]:
            lat *= 4
        elif e in shift and t >= shift[e]:
            del shift[e]
        if e not in burst and i > warm and side.random() < 0.00012 / scale:
            burst[e] = t + 300
            events.append({"key": e, "start": t, "end": t + 300, "kind": "5xx_burst"})
        status = 200
        if e in burst and t < burst[e]:
            status = 503 if side.random() < 0.5 else 200
        else:
            burst.pop(e, None)
            status = 500 if side.random() < 0.002 else 200
        recs.append({"ts": round(t, 3), "endpoint": e, "method": method[e], "latency_ms": round(lat, 1),
                     "status": status, "user_agent": "Mozilla/5.0"})
    return recs, events


if __name__ == "__main__":
    main("web", generate, __doc__)
