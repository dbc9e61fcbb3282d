# SPDX-License-Identifier: Apache-2.0
"""Shared pieces of the consumer integration tests (test_consumer_*.py) and
the consumer benchmark: run the real `rarewatchd` and `rarewatch put`
against the harness emulators, read the file sink's output and the
checkpoint and dead-letter files back.

Nothing here sleeps to synchronise: every wait is wait_for() on a file, a
counter or a process exit, with a deadline.
"""
from __future__ import annotations

import base64
import glob
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "harness"))
from rwharness import HarnessError, wait_for  # noqa: E402,F401

# Any access key works for kinesis-local; not 12 digits (that selects an account).
KINESIS_LOCAL_CREDS = ("AKIAEXAMPLE12345678", "rarewatch-test-secret")


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, cond, detail=""):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
        print(("ok" if cond else "FAIL") + " - " + name + ("" if cond else ": " + str(detail)),
              flush=True)
        return bool(cond)

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        return 1 if self.failed or not self.passed else 0


def binaries(build):
    return (os.path.join(build, "src", "rarewatch", "rarewatch"),
            os.path.join(build, "src", "rarewatchd", "rarewatchd"))


def clean_env(extra):
    """The environment for a program under test: no AWS_* from outside, no
    shared files, no IMDS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    env.pop("JOURNAL_STREAM", None)
    env.update({"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_REGION": "us-east-1"})
    env.update(extra)
    return env


def kinesis_local_env(endpoint):
    return clean_env({"AWS_ACCESS_KEY_ID": KINESIS_LOCAL_CREDS[0],
                      "AWS_SECRET_ACCESS_KEY": KINESIS_LOCAL_CREDS[1],
                      "AWS_ENDPOINT_URL_KINESIS": endpoint})


def write_input(path, n, keys=200, tag="r", start=0, pad=0):
    """n NDJSON records {"id": "<tag>-<i>", "k": "key-<i % keys>", "i": i}."""
    ids = []
    with open(path, "w") as f:
        for i in range(start, start + n):
            rec = {"id": f"{tag}-{i}", "k": f"key-{i % keys:03d}", "i": i}
            if pad:
                rec["pad"] = "x" * pad
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
            ids.append(rec["id"])
    return ids


def put(rarewatch, env, stream, path, *args, timeout=600):
    cmd = [rarewatch, "put", "--stream", stream, "--partition-key", "k", "--quiet", *args, path]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- the daemon

class Daemon:
    """rarewatchd with a configuration in workdir; stderr appended to
    workdir/rarewatchd.log (restarts accumulate, each start is marked)."""

    def __init__(self, rarewatchd, workdir, env, stream, kinesis=None, checkpoint=None,
                 output=True, extra=""):
        self.bin = rarewatchd
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.stream = stream
        self.out_dir = self.dir / "out"
        self.ck_dir = self.dir / "state"
        self.dl_dir = self.dir / "deadletter"
        self.log_path = self.dir / "rarewatchd.log"
        self.conf_path = self.dir / "rarewatchd.conf"
        self.proc = None
        self.starts = 0
        self.log_start = 0  # offset of the current run in the log
        kin = {"stream": stream, "poll_interval": "200ms", "shard_discovery_interval": "1s"}
        kin.update(kinesis or {})
        ck = {"directory": str(self.ck_dir), "interval": "0"}
        ck.update(checkpoint or {})
        lines = ["[daemon]", "stop_timeout = 30s",
                 "[log]", "target = stderr", "level = info", "rate_limit_interval = 0",
                 "[kinesis]"] + [f"{k} = {v}" for k, v in kin.items()]
        lines += ["[checkpoint]"] + [f"{k} = {v}" for k, v in ck.items()]
        if output:
            lines += ["[output]", f"directory = {self.out_dir}"]
            if isinstance(output, dict):  # more [output] keys
                lines += [f"{k} = {v}" for k, v in output.items()]
        lines += ["[deadletter]", f"directory = {self.dl_dir}"]
        self.conf_path.write_text("\n".join(lines) + "\n" + extra)

    def start(self):
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"---- test: start #{self.starts} ----\n".encode())
            log.flush()
            self.log_start = log.tell()
            self.proc = subprocess.Popen([self.bin, "-c", str(self.conf_path)], env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def log(self, current_run_only=False):
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        if current_run_only:
            data = data[self.log_start:]
        return data.decode(errors="replace")

    def alive(self):
        """For wait_for predicates: abort the wait at once if the daemon died."""
        if self.proc is None or self.proc.poll() is not None:
            rc = None if self.proc is None else self.proc.returncode
            raise HarnessError(f"rarewatchd exited unexpectedly (rc={rc}); log tail:\n"
                               + self.log(True)[-3000:])
        return True

    def wait_log(self, pattern, timeout=60, what=None):
        rx = re.compile(pattern)
        return wait_for(lambda: self.alive() and rx.search(self.log(True)), timeout,
                        what or f"log line /{pattern}/")

    def terminate(self, timeout=60):
        """SIGTERM; the exit status (None if it did not exit in time: then SIGKILL)."""
        p = self.proc
        if p is None:
            return None
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return None
        finally:
            self.proc = None

    def kill9(self):
        p, self.proc = self.proc, None
        if p is None:
            return None
        try:
            p.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        return p.wait(timeout=30)

    def stop_quietly(self):
        if self.proc is not None and self.proc.poll() is None:
            self.kill9()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop_quietly()
        return False

    # ---- state on disk
    def checkpoints(self):
        d = self.ck_dir / "checkpoints" / self.stream
        out = {}
        for p in sorted(d.glob("*.json")):
            try:
                out[p.stem] = json.loads(p.read_text())
            except (OSError, ValueError):
                out[p.stem] = None
        return out

    def deadletters(self):
        out = []
        for p in sorted(self.dl_dir.glob("*.ndjson")):
            for line in p.read_text().splitlines():
                if line.strip():
                    out.append(json.loads(line))
        return out


# --------------------------------------------------------------------------- output

class StatusSocket:
    """A NOTIFY_SOCKET the test owns: the daemon's STATUS= lines as they come.
    Pass env=dict(env, NOTIFY_SOCKET=sock.path) to the Daemon."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.statuses = []

    def last(self):
        """The latest STATUS= text ("" before the first)."""
        while True:
            try:
                msg = self.sock.recv(65536).decode()
            except BlockingIOError:
                break
            self.statuses.extend(ln[7:] for ln in msg.splitlines() if ln.startswith("STATUS="))
        return self.statuses[-1] if self.statuses else ""

    def close(self):
        self.sock.close()

    def wait(self, pred, timeout, what):
        """Whether the latest status satisfies pred within timeout seconds."""
        try:
            wait_for(lambda: pred(self.last()), timeout, what)
            return True
        except HarnessError:
            return False


def output_files(out_dir):
    """The sink's files in output order: by path relative to the directory
    (YYYY/MM/DD/HH/rarewatch-HOST-PID-TIME-NNNNNN.ndjson).  Within one
    daemon process that is the order they were written."""
    files = glob.glob(os.path.join(str(out_dir), "*", "*", "*", "*", "rarewatch-*.ndjson"))
    return sorted(files, key=lambda f: os.path.relpath(f, str(out_dir)))


def _run_key(path):
    """(pid, time, counter) parsed from a file name, to order restarts."""
    m = re.search(r"rarewatch-.*-(\d+)-(\d{8}T\d{6}Z)-(\d+)\.ndjson$", path)
    return (m.group(2), int(m.group(3))) if m else ("", 0)


class LineCounter:
    """Counts complete output lines incrementally (cheap enough to poll)."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.offsets = {}
        self.count = 0

    def __call__(self):
        for f in output_files(self.out_dir):
            off = self.offsets.get(f, 0)
            try:
                size = os.path.getsize(f)
            except OSError:
                continue
            if size <= off:
                continue
            with open(f, "rb") as fh:
                fh.seek(off)
                data = fh.read(size - off)
            nl = data.rfind(b"\n")
            if nl < 0:
                continue
            self.count += data.count(b"\n", 0, nl + 1)
            self.offsets[f] = off + nl + 1
        return self.count


def read_output(out_dir, order="name"):
    """Every output line as a dict, in output order, plus the number of torn
    lines (a record cut by a crash: only ever the last line of a file).

    order="name": files sorted by name (one daemon process).
    order="mtime": by modification time, then name (across restarts, whose
    PIDs need not increase)."""
    files = output_files(out_dir)
    if order == "mtime":
        files.sort(key=lambda f: (os.stat(f).st_mtime_ns, os.path.basename(f)))
    lines, torn = [], []
    for f in files:
        data = Path(f).read_bytes()
        parts = data.split(b"\n")
        for j, raw in enumerate(parts):
            if not raw:
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                torn.append((f, j, raw[:200]))
                continue
            obj["_file"] = f
            lines.append(obj)
    return lines, torn


def prov_key(o):
    k = o["_kinesis"]
    return (k["shard_id"], k["sequence_number"], k["sub_sequence_number"])


def summarize(lines):
    """unique provenance count, duplicate count, and ids seen."""
    seen = set()
    dups = 0
    for o in lines:
        key = prov_key(o)
        if key in seen:
            dups += 1
        seen.add(key)
    return len(seen), dups


def order_violations(lines):
    """Per shard, positions where (sequence, sub-sequence) does not increase
    in output order."""
    last = {}
    bad = []
    for idx, o in enumerate(lines):
        k = o["_kinesis"]
        pos = (int(k["sequence_number"]), int(k["sub_sequence_number"]))
        prev = last.get(k["shard_id"])
        if prev is not None and pos <= prev:
            bad.append((idx, k["shard_id"], prev, pos))
        last[k["shard_id"]] = pos
    return bad


def last_position_per_shard(lines):
    out = {}
    for o in lines:
        k = o["_kinesis"]
        pos = (int(k["sequence_number"]), int(k["sub_sequence_number"]))
        if k["shard_id"] not in out or pos > out[k["shard_id"]]:
            out[k["shard_id"]] = pos
    return out


def b64(data):
    return base64.b64encode(data).decode()


def rng(seed=None):
    seed = int(os.environ.get("RW_TEST_SEED", seed if seed is not None else time.time_ns() % 100000))
    print(f"# random seed {seed} (set RW_TEST_SEED to repeat)", flush=True)
    return random.Random(seed)


class WorkDir:
    """A temporary directory, kept (and named) when RW_TEST_KEEP is set or a
    check failed, so the daemon's log and files can be looked at."""

    def __init__(self, prefix, results=None):
        import tempfile
        self.path = tempfile.mkdtemp(prefix=prefix)
        self.results = results

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        import shutil
        failed = exc[0] is not None or (self.results is not None and self.results.failed)
        if os.environ.get("RW_TEST_KEEP") or failed:
            print(f"# work directory kept: {self.path}", flush=True)
        else:
            shutil.rmtree(self.path, ignore_errors=True)
        return False


def run(main):
    """Run main(results); an unexpected exception is a failure too, and the
    last line is always "N passed, N failed"."""
    import traceback
    t = Results()
    try:
        main(t)
    except Exception as exc:  # noqa: BLE001
        for line in traceback.format_exc().splitlines():
            print("# " + line, flush=True)
        t.check("no unexpected exception", False, repr(exc))
    return t.finish()
