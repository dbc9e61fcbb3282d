#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The systemd lifecycle of the real rarewatchd, against a NOTIFY_SOCKET this
test owns: READY and STATUS; SIGHUP with a good edit (RELOADING with
MONOTONIC_USEC, then READY, the new value in effect); SIGHUP with a broken
file (old configuration kept, error logged with file:line); a change that
needs a restart (rejected); SIGTERM (STOPPING, exit 0); a bad configuration
at start (exit 78, FILE:LINE on stderr).

Every wait is on an event (a datagram, a log line, process exit) with a
deadline; nothing sleeps to synchronise.

Usage: test_lifecycle.py PATH/TO/rarewatchd
"""
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

DAEMON = sys.argv[1]
DEADLINE = 60  # seconds per expected event; generous for ASan builds on 2 cores
results = []


def check(name, cond, detail=""):
    results.append((name, bool(cond)))
    print(("ok" if cond else "FAIL") + " - " + name + ("" if cond else ": " + detail), flush=True)


class Daemon:
    def __init__(self, conf, env_extra=None):
        self.dir = os.path.dirname(conf)
        self.sock_path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.sock_path)
        env = dict(os.environ, NOTIFY_SOCKET=self.sock_path)
        env.pop("JOURNAL_STREAM", None)
        env.pop("WATCHDOG_USEC", None)
        env.update(env_extra or {})
        self.proc = subprocess.Popen([DAEMON, "-c", conf], env=env, stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True)
        self.lines = []
        self.cv = threading.Condition()
        self.reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.reader.start()
        self.messages = []

    def _read_stderr(self):
        for line in self.proc.stderr:
            sys.stderr.write("  daemon: " + line)
            with self.cv:
                self.lines.append(line.rstrip("\n"))
                self.cv.notify_all()
        with self.cv:
            self.cv.notify_all()

    def next_notify(self, timeout=DEADLINE):
        """The next sd_notify datagram as a dict (keys may repeat: last wins)."""
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return None
        data = self.sock.recv(65536).decode()
        msg = {}
        for kv in data.split("\n"):
            if "=" in kv:
                k, v = kv.split("=", 1)
                msg[k] = v
        self.messages.append(msg)
        return msg

    def wait_notify(self, key, timeout=DEADLINE):
        """Skip datagrams (STATUS refreshes) until one carries key."""
        end = time.monotonic() + timeout
        seen = []
        while time.monotonic() < end:
            m = self.next_notify(end - time.monotonic())
            if m is None:
                break
            seen.append(m)
            if key in m:
                return m, seen
        return None, seen

    def wait_log(self, needle, start=0, timeout=DEADLINE):
        end = time.monotonic() + timeout
        with self.cv:
            while True:
                for i in range(start, len(self.lines)):
                    if needle in self.lines[i]:
                        return i
                left = end - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and not self.reader.is_alive():
                    return None
                self.cv.wait(left)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()


def write(path, text):
    tmp = path + ".tmp"
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(tmp, path)


GOOD = "[daemon]\nstatus_interval = 1h\nstop_timeout = 5s\n[log]\nlevel = info\n"


def main():
    with tempfile.TemporaryDirectory(prefix="rw-lifecycle-") as d:
        conf = os.path.join(d, "rarewatch.conf")
        write(conf, GOOD)
        dm = Daemon(conf)
        try:
            m, seen = dm.wait_notify("READY")
            check("READY=1 after start", m and m.get("READY") == "1", str(seen))
            check("STATUS= sent with READY", m and "STATUS" in m and "generation 1" in m["STATUS"],
                  str(m))

            # A good edit: the log level goes to debug.
            write(conf, GOOD.replace("level = info", "level = debug"))
            mark = len(dm.lines)
            before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            dm.proc.send_signal(signal.SIGHUP)
            m, seen = dm.wait_notify("RELOADING")
            check("SIGHUP sends RELOADING=1", m and m.get("RELOADING") == "1", str(seen))
            mono = int(m.get("MONOTONIC_USEC", "0")) if m else 0
            after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            check("RELOADING carries MONOTONIC_USEC of this reload", before <= mono <= after,
                  f"{before} <= {mono} <= {after}")
            m, seen = dm.wait_notify("READY")
            check("READY=1 after the reload", m is not None, str(seen))
            check("STATUS shows the new generation", m and "generation 2" in m.get("STATUS", ""),
                  str(m))
            i = dm.wait_log("pipeline now on configuration generation 2", mark)
            check("new log level in effect (a debug line appears)", i is not None and "debug:" in dm.lines[i])
            check("the change is logged",
                  dm.wait_log("changed: [log] level: info -> debug", mark) is not None)

            # A broken file: the old configuration stays.
            write(conf, GOOD.replace("level = info", "level = debug") + "[daemon]\nstop_timeout = banana\n")
            mark = len(dm.lines)
            dm.proc.send_signal(signal.SIGHUP)
            m, seen = dm.wait_notify("RELOADING")
            check("broken reload: RELOADING=1", m is not None, str(seen))
            m, seen = dm.wait_notify("READY")
            check("broken reload: READY=1 again", m is not None, str(seen))
            check("broken reload: old configuration kept", m and "generation 2" in m.get("STATUS", ""),
                  str(m))
            i = dm.wait_log(f"{conf}:7: [daemon] stop_timeout = banana: expected a duration", mark)
            check("broken reload: error logged with file:line", i is not None)
            check("broken reload: says the running configuration is kept",
                  i is not None and "keeping the running configuration" in dm.lines[i])

            # A key that needs a restart: rejected with the reason.
            write(conf, GOOD.replace("level = info", "level = debug\ntarget = stderr"))
            mark = len(dm.lines)
            dm.proc.send_signal(signal.SIGHUP)
            m, seen = dm.wait_notify("READY")
            check("restart-only change: old configuration kept",
                  m and "generation 2" in m.get("STATUS", ""), str(m))
            check("restart-only change: reason logged",
                  dm.wait_log("[log] target changed from auto to stderr, which needs a restart",
                              mark) is not None)

            # Back to a good file: a reload works again after failures.
            write(conf, GOOD)
            dm.proc.send_signal(signal.SIGHUP)
            m, seen = dm.wait_notify("READY")
            check("reload after failures works", m and "generation 3" in m.get("STATUS", ""), str(m))

            dm.proc.send_signal(signal.SIGTERM)
            m, seen = dm.wait_notify("STOPPING")
            check("SIGTERM sends STOPPING=1", m and m.get("STOPPING") == "1", str(seen))
            try:
                rc = dm.proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                rc = None
            check("exit status 0 after SIGTERM", rc == 0, f"rc={rc}")
            dm.reader.join(DEADLINE)
            check("stopped cleanly logged", any("stopped cleanly" in l for l in dm.lines))
        finally:
            dm.close()

        # A bad configuration at start: exit 78, the problem named FILE:LINE.
        os.unlink(os.path.join(d, "notify.sock"))
        write(conf, "[daemon]\nstop_timeout = 5s\nfrobnicate = 1\n")
        dm = Daemon(conf)
        try:
            rc = dm.proc.wait(DEADLINE)
            dm.reader.join(DEADLINE)
            check("bad config at start exits 78", rc == 78, f"rc={rc}")
            check("bad config at start names FILE:LINE and key",
                  any(f"{conf}:3: unknown key 'frobnicate'" in l for l in dm.lines), str(dm.lines))
            # The process has exited: anything it sent is already queued.
            m = dm.next_notify(timeout=0)
            check("bad config at start: no READY", m is None or "READY" not in m, str(m))
        finally:
            dm.close()

        # Under a watchdog the daemon pings while its workers make progress.
        os.unlink(os.path.join(d, "notify.sock"))
        write(conf, GOOD)
        dm = Daemon(conf, {"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"})
        try:
            m, seen = dm.wait_notify("READY")
            check("watchdog: READY", m is not None, str(seen))
            # WATCHDOG_PID names another process: the daemon must not ping.
            dm.proc.send_signal(signal.SIGTERM)
            m, seen = dm.wait_notify("STOPPING")
            check("watchdog: no ping when WATCHDOG_PID is not ours",
                  not any("WATCHDOG" in x for x in seen), str(seen))
            dm.proc.wait(DEADLINE)
        finally:
            dm.close()
        os.unlink(os.path.join(d, "notify.sock"))
        dm = Daemon(conf, {"WATCHDOG_USEC": "400000"})
        try:
            m, seen = dm.wait_notify("READY")
            m1, _ = dm.wait_notify("WATCHDOG")
            m2, _ = dm.wait_notify("WATCHDOG")
            check("watchdog: WATCHDOG=1 pinged repeatedly", m1 and m2 and m2.get("WATCHDOG") == "1")
            dm.proc.send_signal(signal.SIGTERM)
            check("watchdog: exit 0", dm.proc.wait(DEADLINE) == 0)
        finally:
            dm.close()

    passed = sum(1 for _, ok in results if ok)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
