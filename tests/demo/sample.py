#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Sample card transactions for the demo: steady spending per card, and a few
rare events (a card suddenly spending 40x its usual amount, or used in a
country it has never been used in). Deterministic: --seed."""
import argparse
import json
import random
import time

ap = argparse.ArgumentParser()
ap.add_argument("-n", type=int, default=20000)
ap.add_argument("--cards", type=int, default=200)
ap.add_argument("--seed", type=int, default=42)
a = ap.parse_args()
rnd = random.Random(a.seed)
countries = ["DE", "FR", "NL", "BE", "AT"]
merchants = ["m-groceries", "m-fuel", "m-books", "m-coffee", "m-pharmacy"]
cards = [{"card": f"4411-{i:04d}", "mean": rnd.uniform(8, 120), "country": rnd.choice(countries)}
         for i in range(a.cards)]
t0 = time.time() - a.n  # one transaction a second, ending now
for i in range(a.n):
    c = rnd.choice(cards)
    amount = max(0.5, rnd.gauss(c["mean"], c["mean"] * 0.25))
    country = c["country"]
    injected = None
    if i > a.n // 3 and rnd.random() < 0.001:
        amount, injected = c["mean"] * 40, "amount_spike"
    elif i > a.n // 3 and rnd.random() < 0.001:
        country, injected = rnd.choice(["RU", "BR", "NG", "VN"]), "new_country"
    rec = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + i)), "card": c["card"],
           "amount": round(amount, 2), "currency": "EUR", "merchant": rnd.choice(merchants),
           "country": country}
    if injected:
        rec["injected"] = injected  # ground truth for the demo's summary
    print(json.dumps(rec))
