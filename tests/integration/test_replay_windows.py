#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""[window.NAME] through rarewatch replay: tweets per minute per hashtag.
- every (minute, hashtag) with tweets gives one derived record whose count
  equals the number of tweets (after the transforms: bots are filtered);
- a z-score detector scoped with `where = _window.name == "per_minute"`
  flags the burst window, and scores no input record;
- records older than the watermark are counted as late, not aggregated;
- the output is the same on every run (open windows flush at end of input);
- check-config rejects a bad aggregate with FILE:LINE:COL (exit 78).
Usage: test_replay_windows.py BUILD_DIR
"""
import calendar
import collections
import json
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from consumer_common import Results  # noqa: E402

RW = os.path.join(sys.argv[1], "src", "rarewatch", "rarewatch")
t = Results()
check = t.check

CONF = """[input]
timestamp_field = ts

[transform.no_bots]
type = filter
where = not (user =~ "^bot")

[window.per_minute]
size = 1m
key = lower(hashtag)
allowed_lateness = 5s
aggregates = count, distinct_count(user), p95(len), max(len)

[detector.burst]
type = zscore
field = count
key = _window.key
where = exists(_window) and _window.name == "per_minute"
"""

T0 = 1795003200  # a whole hour
BURST_MINUTE = 150


def gen(path):
    rnd = random.Random(11)
    expected = collections.Counter()
    late = 0
    with open(path, "w") as f:
        for minute in range(180):
            tweets = []
            for tag, rate in (("#rust", 20), ("#C", 30), ("#launch", 10)):
                n = rate + rnd.randrange(-3, 4)
                if tag == "#launch" and minute == BURST_MINUTE:
                    n = 120
                for _ in range(n):
                    tweets.append((T0 + minute * 60 + rnd.random() * 59.9, tag, f"u{rnd.randrange(500)}"))
            tweets.sort()
            for ts, tag, user in tweets:
                f.write(json.dumps({"ts": round(ts, 3), "hashtag": tag, "user": user,
                                    "len": rnd.randrange(10, 280)}) + "\n")
                expected[(minute, tag.lower())] += 1
            # Bots are filtered before the windows.
            f.write(json.dumps({"ts": T0 + minute * 60 + 30, "hashtag": "#rust", "user": "bot7", "len": 1}) + "\n")
            # A straggler after the minute's last tweet (about +59.9 s), so
            # some 20 s behind (lateness 5 s): late, not counted.
            if minute % 10 == 5:
                f.write(json.dumps({"ts": T0 + minute * 60 + 39.9, "hashtag": "#rust", "user": "late", "len": 1}) + "\n")
                late += 1
    return expected, late


def main():
    with tempfile.TemporaryDirectory() as d:
        conf, data = os.path.join(d, "rw.conf"), os.path.join(d, "tweets.ndjson")
        with open(conf, "w") as f:
            f.write(CONF)
        expected, late = gen(data)
        r = subprocess.run([RW, "replay", "-c", conf, data], capture_output=True, text=True)
        check("replay exits 0", r.returncode == 0, r.stderr)
        out = [json.loads(line) for line in r.stdout.splitlines()]
        wins = [o for o in out if "_window" in o]
        recs = [o for o in out if "_window" not in o]
        got = {}
        for w in wins:
            start = w["_window"]["start"]
            minute = (calendar.timegm(time.strptime(start[:19], "%Y-%m-%dT%H:%M:%S")) - T0) // 60
            got[(minute, w["_window"]["key"])] = w
        check("one window per (minute, hashtag) with tweets", set(got) == set(expected) and len(wins) == len(expected),
              (len(wins), len(expected)))
        bad = [(k, got[k]["count"], v) for k, v in expected.items() if k in got and got[k]["count"] != v]
        check("window counts equal the tweets (bots filtered, late not counted)", not bad, bad[:5])
        check("windows carry name, end, distinct_count, p95, max",
              all(w["_window"]["name"] == "per_minute" and w["_window"]["end"] > w["_window"]["start"] and
                  0 < w["distinct_count_user"] <= w["count"] * 1.2 + 1 and 10 <= w["p95_len"] <= 280 * 1.02 and
                  w["max_len"] < 280 for w in wins), wins[0])
        flagged = [(k, w["count"]) for k, w in got.items() if w.get("is_anomaly")]
        check("the burst window is flagged by the burst detector",
              got.get((BURST_MINUTE, "#launch"), {}).get("is_anomaly") is True and
              any(a["detector"] == "burst" and a["key"] == "#launch" for a in got[(BURST_MINUTE, "#launch")]["anomalies"]),
              got.get((BURST_MINUTE, "#launch")))
        check("few other windows flagged", len(flagged) <= 3, flagged)
        check("input records are not scored by the window detector",
              all("anomaly_score" not in o and not o.get("is_anomaly") for o in recs), recs[0])
        check("summary counts the late records",
              f"window per_minute             emitted {len(expected)}," in r.stderr and f"late {late}," in r.stderr,
              r.stderr)
        r2 = subprocess.run([RW, "replay", "-c", conf, data], capture_output=True, text=True)
        check("same output on a second run", r2.stdout == r.stdout)

        with open(conf, "a") as f:
            f.write("[window.bad]\nsize = 1m\naggregates = count, p42(len)\n")
        r = subprocess.run([RW, "check-config", "-c", conf], capture_output=True, text=True)
        lines = CONF.count("\n")
        check("check-config: bad aggregate at FILE:LINE:COL, exit 78",
              r.returncode == 78 and f"{conf}:{lines + 3}:21: [window.bad] aggregates: unknown aggregate 'p42'" in r.stderr,
              (r.returncode, r.stderr))
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
