#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""fraud — card transactions. Each card spends around its own mean amount, in its
home country, at merchants of a few everyday categories. Incidents:

- `spike`: a card spending 30x its usual amount;
- `country`: a card used in a country it has never been used in;
- `merchant_category`: a card used at a merchant whose category (from the merchant
  reference table, joined by the `lookup` transform) it has never bought in —
  jewellery, a casino, a money transfer office.
"""
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import T0, main, side_rng  # noqa: E402

KEY = "card"
EVERYDAY = ["grocery", "fuel", "restaurant", "pharmacy", "transport", "bookshop"]
RARE = ["jewellery", "casino", "money_transfer", "crypto_exchange"]


MERCHANTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "etc", "rarewatch",
                         "examples", "merchants.csv")


def merchants():
    """The merchant reference table (merchant_id, name, category, mcc): the sample the
    example configuration's `lookup` transform joins on, etc/rarewatch/examples/merchants.csv."""
    with open(MERCHANTS, newline="") as f:
        return list(csv.DictReader(f))


def generate(rnd, scale=1.0, start=T0):
    side = side_rng(rnd)
    table = merchants()
    by_cat = {c: [m["merchant_id"] for m in table if m["category"] == c] for c in EVERYDAY + RARE}
    recs, events = [], []
    cards = [{"id": f"card-{i:03d}", "mean": rnd.uniform(10, 150), "country": rnd.choice("DE FR NL IT ES".split())}
             for i in range(150)]
    for c in cards:
        c["cats"] = side.sample(EVERYDAY, 3)
    n = int(60000 * scale)
    warm = n // 3
    t = start
    for i in range(n):
        t += rnd.expovariate(1 / 6.0)
        c = rnd.choice(cards)
        amount = max(0.5, rnd.gauss(c["mean"], c["mean"] * 0.2))
        country = c["country"]
        merchant = side.choice(by_cat[side.choice(c["cats"])])
        label = None
        if i > warm and rnd.random() < 0.0006:
            amount, label = c["mean"] * 30, "spike"
        elif i > warm and rnd.random() < 0.0006:
            country, label = rnd.choice("BR NG VN RU".split()), "country"
        elif i > warm and side.random() < 0.0006:
            merchant, label = side.choice(by_cat[side.choice(RARE)]), "merchant_category"
        if label:
            events.append({"key": c["id"], "start": t, "end": t + 1, "kind": label})
        recs.append({"ts": round(t, 3), "card": c["id"], "amount": round(amount, 2), "currency": "EUR",
                     "country": country, "merchant": merchant})
    return recs, events


if __name__ == "__main__":
    main("fraud", generate, __doc__)
