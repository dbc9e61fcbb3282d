#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The packaged rarewatchd under a real systemd: a Debian 12 root (mkroot.sh,
cached) booted with systemd-nspawn through an overlay that adds the built
programs in their packaged places, driven from the host with nsenter.

Checks: the unit verifies clean and scores <= 1.5 exposure; start, STATUS,
dynamic user with no capabilities, seccomp and no_new_privs; native journal
fields; reload with a good drop-in (generation 2, debug logging on) and with
a broken one (running configuration kept, FILE:LINE logged); a clean stop
(exit 0); a broken configuration at start (exit 78, not restarted); the
watchdog pinged under WatchdogSec=2s, and enforced when the daemon stalls.

Every wait polls a condition against a deadline. The container, the overlay
and the temporary directory are always torn down.

Usage: test_systemd.py --rarewatchd EXE --rarewatch EXE --unit FILE --conf FILE --mkroot SCRIPT
Exit: 0 all passed, 1 a check failed, 77 (skip) when this machine cannot run
systemd-nspawn (not root, or no systemd-nspawn).
"""
import argparse
import ctypes
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

BOOT_DEADLINE = 120   # container boot to `is-system-running` answering
STEP_DEADLINE = 30    # any one expected event inside the running container
DYNAMIC_UID_MIN, DYNAMIC_UID_MAX = 61184, 65519   # systemd's DynamicUser= range
MAX_EXPOSURE = 1.5
UNIT = "rarewatch.service"
UNIT_PATH = "/usr/lib/systemd/system/" + UNIT
CONF = "/etc/rarewatch/rarewatch.conf"
WATCHDOG_SEC = 2
RESTART_SEC = 2       # the unit's RestartSec=

results = []


def check(name, cond, detail=""):
    results.append((name, bool(cond)))
    print(("ok" if cond else "FAIL") + " - " + name + ("" if cond or not detail else ": " + str(detail)),
          flush=True)
    return bool(cond)


def note(msg):
    print("# " + msg, flush=True)


class Interrupted(Exception):
    pass


def on_signal(signum, frame):
    raise Interrupted(f"signal {signum}")


def poll(fn, deadline=STEP_DEADLINE, interval=0.05):
    """fn() until it returns something truthy, or None at the deadline."""
    end = time.monotonic() + deadline
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= end:
            return None
        time.sleep(interval)


def mono_usec():
    # The container shares the kernel's CLOCK_MONOTONIC (nspawn sets up no time
    # namespace): journal __MONOTONIC_TIMESTAMP and *TimestampMonotonic compare.
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Container:
    def __init__(self, root, stage, workdir):
        self.workdir = workdir
        self.name = "rwtest-" + uuid.uuid4().hex[:12]
        self.merged = os.path.join(workdir, "merged")
        self.console = os.path.join(workdir, "console.log")
        self.proc = None
        self.init_pid = None
        self.mounted = False
        for d in ("upper", "work", "merged"):
            os.mkdir(os.path.join(workdir, d))
        # The cached root stays pristine: it is the lowest read-only layer,
        # the packaged files sit above it, writes go to a throwaway upper.
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={stage}:{root},upperdir={workdir}/upper,workdir={workdir}/work",
                        self.merged], check=True)
        self.mounted = True

    def boot(self):
        cmd = ["systemd-nspawn", "--quiet", "--boot", "--register=no", "--keep-unit",
               "--link-journal=no", "--console=read-only", "--machine", self.name,
               "--directory", self.merged]
        if os.path.isdir("/run/systemd/system") and shutil.which("systemd-run") and \
           subprocess.run(["systemd-run", "--quiet", "--scope", "--", "true"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            # The host runs systemd: give the container a delegated cgroup of
            # its own (--keep-unit then means this scope). systemd-run --scope
            # execs nspawn, so the process is still our child.
            cmd = ["systemd-run", "--quiet", "--scope", "--property=Delegate=yes",
                   "--unit", self.name] + cmd
        log = open(self.console, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=die_with_parent)
        log.close()

        def find_init():
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited with {self.proc.returncode}")
            for p in os.listdir("/proc"):
                if not p.isdigit():
                    continue
                try:
                    with open(f"/proc/{p}/stat") as f:
                        st = f.read()
                    with open(f"/proc/{p}/comm") as f:
                        comm = f.read().strip()
                except OSError:
                    continue
                ppid = int(st.rsplit(")", 1)[1].split()[1])
                if ppid == self.proc.pid and comm == "systemd":
                    return int(p)
            return None

        self.init_pid = poll(find_init, BOOT_DEADLINE)
        if not self.init_pid:
            raise RuntimeError("the container's init did not appear")

    def run(self, *argv, input=None, timeout=STEP_DEADLINE):
        cmd = ["nsenter", "-t", str(self.init_pid), "-m", "-u", "-i", "-n", "-p", "--"] + list(argv)
        try:
            return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(cmd, 124, e.stdout or "", (e.stderr or "") + "\n(timed out)")

    def sh(self, script, **kw):
        return self.run("/bin/sh", "-c", script, **kw)

    def write(self, path, text):
        r = self.sh(f'mkdir -p "$(dirname "{path}")" && cat >"{path}"', input=text)
        if r.returncode:
            raise RuntimeError(f"writing {path}: {r.stderr}")

    def show(self, *props):
        r = self.run("systemctl", "show", UNIT, *[f"--property={p}" for p in props])
        out = {}
        for line in r.stdout.splitlines():
            k, _, v = line.partition("=")
            out[k] = v
        return out

    def journal(self, since_usec=0):
        r = self.run("journalctl", "--unit", UNIT, "--output=json", "--no-pager", "--all")
        entries = []
        for line in r.stdout.splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if int(e.get("__MONOTONIC_TIMESTAMP", 0)) >= since_usec:
                entries.append(e)
        return entries

    def wait_journal(self, pred, since_usec, deadline=STEP_DEADLINE):
        """The first entry since since_usec that pred accepts."""
        def find():
            for e in self.journal(since_usec):
                if pred(e):
                    return e
            return None
        return poll(find, deadline, 0.1)

    def teardown(self):
        if self.proc and self.proc.poll() is None:
            # nspawn turns SIGTERM into an orderly shutdown of the container.
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.mounted:
            if subprocess.run(["umount", self.merged]).returncode == 0 or \
               subprocess.run(["umount", "--lazy", self.merged]).returncode == 0:
                self.mounted = False

    def console_tail(self, n=40):
        try:
            with open(self.console, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""


def die_with_parent():
    # If this test is killed outright, nspawn gets SIGTERM and shuts the
    # container down instead of leaving it running.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)   # PR_SET_PDEATHSIG


def remove_stale_workdirs():
    """Work directories of earlier runs that were killed before cleaning up."""
    for d in glob.glob(os.path.join(tempfile.gettempdir(), "rw-system-*")):
        try:
            with open(os.path.join(d, "owner.pid")) as f:
                owner = int(f.read())
            os.kill(owner, 0)
            continue          # its test is still running
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            # No owner recorded yet: a run that is just starting, unless old.
            if time.time() - os.stat(d).st_mtime < 600:
                continue
        merged = os.path.join(d, "merged")
        if os.path.ismount(merged) and subprocess.run(["umount", "--lazy", merged]).returncode:
            continue
        note(f"removing {d}, left by an earlier run")
        shutil.rmtree(d, ignore_errors=True)


def msg(e):
    m = e.get("MESSAGE", "")
    # journalctl gives non-UTF-8 messages as byte arrays.
    return bytes(m).decode(errors="replace") if isinstance(m, list) else m


def from_daemon(e):
    return e.get("SYSLOG_IDENTIFIER") == "rarewatchd"


def stage_package(args, stage):
    """The files a --prefix=/usr package of rarewatch installs, in their places."""
    def put(src, dst, mode):
        dst = os.path.join(stage, dst.lstrip("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(src, dst)
        os.chmod(dst, mode)
    put(args.rarewatchd, "/usr/sbin/rarewatchd", 0o755)
    put(args.rarewatch, "/usr/bin/rarewatch", 0o755)
    put(args.unit, UNIT_PATH, 0o644)
    put(args.conf, CONF, 0o644)
    os.chmod(os.path.join(stage, "etc/rarewatch"), 0o755)


def run_checks(c):
    # --- the unit file, checked by the systemd that runs it ---
    r = c.run("systemd-analyze", "verify", UNIT_PATH)
    out = (r.stdout + r.stderr).strip()
    check("systemd-analyze verify prints nothing", out == "", out)

    r = c.run("systemd-analyze", "security", "--offline=yes", "--no-pager", UNIT_PATH)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    exposure = float(m.group(1)) if m else None
    note(f"exposure: {exposure}")
    check(f"systemd-analyze security exposure <= {MAX_EXPOSURE}",
          exposure is not None and exposure <= MAX_EXPOSURE, f"exposure {exposure}; {r.stderr.strip()}")

    r = c.sh("ldd /usr/sbin/rarewatchd /usr/bin/rarewatch")
    check("every shared library resolves in the root", r.returncode == 0 and "not found" not in r.stdout,
          r.stdout + r.stderr)

    r = c.run("rarewatch", "check-config", "-c", CONF)
    check("rarewatch check-config accepts the packaged configuration", r.returncode == 0,
          r.stdout + r.stderr)

    # --- start ---
    # Enabled, as a package would: it also keeps the unit loaded while it is
    # inactive, so ExecMainStatus= survives a stop (an unreferenced inactive
    # unit is garbage-collected and shows 0 again).
    r = c.run("systemctl", "enable", UNIT)
    check("systemctl enable", r.returncode == 0, r.stderr)
    # No [kinesis] stream in the packaged configuration: ExecCondition= skips
    # the start (inactive, not failed). The checks below are of the idle
    # daemon, so a runtime drop-in empties ExecCondition= for them.
    r = c.run("systemctl", "start", UNIT)
    s = c.show("ActiveState", "ConditionResult", "ExecMainPID")
    check("no stream configured: the start is skipped by ExecCondition= (inactive, not failed)",
          s.get("ActiveState") == "inactive" and s.get("ConditionResult") == "no"
          and s.get("ExecMainPID") == "0", (r.returncode, s))
    c.write("/run/systemd/system/rarewatch.service.d/40-idle.conf", "[Service]\nExecCondition=\n")
    c.run("systemctl", "daemon-reload")
    mark = mono_usec()
    r = c.run("systemctl", "start", UNIT)
    check("systemctl start succeeds", r.returncode == 0, r.stderr)
    r = c.run("systemctl", "is-active", UNIT)
    check("is-active = active", r.stdout.strip() == "active", r.stdout)
    s = c.show("StatusText", "MainPID", "NRestarts")
    check("StatusText shows the daemon's STATUS (generation 1)",
          "generation 1" in s.get("StatusText", ""), s)
    pid = s.get("MainPID", "0")
    r = c.run("cat", f"/proc/{pid}/status")
    st = dict(line.split(":\t", 1) for line in r.stdout.splitlines() if ":\t" in line)
    uid = int(st.get("Uid", "0").split()[0])
    check("runs as a dynamic user", DYNAMIC_UID_MIN <= uid <= DYNAMIC_UID_MAX, f"Uid {st.get('Uid')}")
    check("no effective, permitted or bounding capabilities",
          all(int(st.get(k, "1"), 16) == 0 for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb")),
          {k: st.get(k) for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb")})
    check("no_new_privs and a seccomp filter", st.get("NoNewPrivs") == "1" and st.get("Seccomp") == "2",
          {k: st.get(k) for k in ("NoNewPrivs", "Seccomp")})
    r = c.run("stat", "-L", "-c", "%u %a", "/var/lib/rarewatch")
    check("StateDirectory owned by the dynamic user, mode 750", r.stdout.split() == [str(uid), "750"],
          r.stdout + r.stderr)

    e = c.wait_journal(lambda e: from_daemon(e) and msg(e) == "ready", mark)
    check("journal: 'ready' entry from rarewatchd", e is not None)
    e = e or {}
    check("journal: native fields PRIORITY=6, CODE_FILE, CODE_LINE, CODE_FUNC",
          e.get("PRIORITY") == "6" and e.get("CODE_FILE", "").endswith("daemon.c")
          and e.get("CODE_LINE", "").isdigit() and e.get("CODE_FUNC") == "daemon_main",
          {k: e.get(k) for k in ("PRIORITY", "CODE_FILE", "CODE_LINE", "CODE_FUNC")})
    check("journal: sent natively, not through stderr", e.get("_TRANSPORT") == "journal",
          e.get("_TRANSPORT"))
    warnings = [msg(x) for x in c.journal(mark) if int(x.get("PRIORITY", "6")) <= 4]
    check("a clean start logs no warnings (systemd's or the daemon's)", not warnings, warnings)

    # --- reload: a good drop-in ---
    c.write("/etc/rarewatch/conf.d/50-test.conf", "[log]\nlevel = debug\n")
    mark = mono_usec()
    r = c.run("systemctl", "reload", UNIT)
    check("reload (good drop-in): systemctl reload returns 0", r.returncode == 0, r.stderr)
    # systemd 252 ends the reload job when ExecReload's kill exits, which need
    # not be after the daemon has reloaded: wait for the daemon's own word.
    e = c.wait_journal(lambda e: from_daemon(e) and "configuration reloaded (generation 2" in msg(e), mark)
    check("reload (good drop-in): 'configuration reloaded (generation 2' logged", e is not None)
    check("reload (good drop-in): the change is logged",
          c.wait_journal(lambda e: "changed: [log] level: info -> debug" in msg(e), mark) is not None)
    s = poll(lambda: (lambda s: s if s.get("SubState") == "running" and "generation 2" in s.get("StatusText", "")
                      else None)(c.show("StatusText", "SubState")))
    check("reload (good drop-in): StatusText mentions generation 2", s is not None, c.show("StatusText"))
    dbg = c.wait_journal(lambda e: from_daemon(e) and e.get("PRIORITY") == "7", mark)
    check("reload (good drop-in): debug (PRIORITY=7) entries after the reload", dbg is not None)
    check("reload (good drop-in): no debug entries before it",
          not [x for x in c.journal(0) if from_daemon(x) and x.get("PRIORITY") == "7"
               and int(x["__MONOTONIC_TIMESTAMP"]) < mark])

    # --- reload: a broken drop-in ---
    broken = "/etc/rarewatch/conf.d/60-broken.conf"
    c.write(broken, "[daemon]\nstop_timeout = banana\n")
    r = c.run("rarewatch", "check-config", "-c", CONF)
    check("check-config rejects the broken drop-in (exit 78, FILE:LINE)",
          r.returncode == 78 and f"{broken}:2:" in r.stdout + r.stderr, (r.returncode, r.stdout + r.stderr))
    mark = mono_usec()
    r = c.run("systemctl", "reload", UNIT)
    note(f"systemctl reload with a broken drop-in returned {r.returncode}")
    e = c.wait_journal(lambda e: from_daemon(e) and f"{broken}:2:" in msg(e), mark)
    check("reload (broken drop-in): error logged with FILE:LINE", e is not None)
    check("reload (broken drop-in): says it keeps the running configuration",
          e is not None and "keeping the running configuration" in msg(e) and e.get("PRIORITY") == "3",
          e and (msg(e), e.get("PRIORITY")))
    s = poll(lambda: (lambda s: s if s.get("SubState") == "running" else None)(
        c.show("StatusText", "SubState", "ActiveState", "MainPID", "NRestarts")))
    s = s or c.show("StatusText", "SubState", "ActiveState", "MainPID", "NRestarts")
    check("reload (broken drop-in): still active, same process",
          s.get("ActiveState") == "active" and s.get("MainPID") == pid and s.get("NRestarts") == "0", s)
    check("reload (broken drop-in): StatusText still says generation 2",
          "generation 2" in s.get("StatusText", ""), s.get("StatusText"))
    c.run("rm", "-f", broken)

    # --- stop ---
    mark = mono_usec()
    r = c.run("systemctl", "stop", UNIT)
    check("systemctl stop succeeds", r.returncode == 0, r.stderr)
    s = c.show("ActiveState", "ExecMainCode", "ExecMainStatus", "Result")
    check("stop: inactive, exited with status 0",
          s.get("ActiveState") == "inactive" and s.get("ExecMainCode") == "1"
          and s.get("ExecMainStatus") == "0" and s.get("Result") == "success", s)
    check("stop: 'stopped cleanly' logged",
          c.wait_journal(lambda e: from_daemon(e) and msg(e) == "stopped cleanly", mark) is not None)

    # --- a broken configuration at start ---
    # Through the unit's own ExecCondition= (drop-in removed): a broken
    # configuration must not be skipped like a missing stream, rarewatchd
    # has to start and say what is wrong.
    c.run("rm", "-f", "/run/systemd/system/rarewatch.service.d/40-idle.conf")
    c.run("systemctl", "daemon-reload")
    r = c.run("cp", CONF, CONF + ".orig")
    c.write(CONF, "[daemon]\nstop_timeout = 5s\nfrobnicate = 1\n")
    mark = mono_usec()
    r = c.run("systemctl", "start", UNIT)
    check("broken config at start: systemctl start fails", r.returncode != 0)
    s = c.show("ActiveState", "SubState", "ExecMainStatus", "Result", "NRestarts", "StatusText",
               "ExecMainExitTimestampMonotonic")
    check("broken config at start: ExecMainStatus=78", s.get("ExecMainStatus") == "78", s)
    check("broken config at start: failed, no restart scheduled",
          s.get("ActiveState") == "failed" and s.get("SubState") == "failed", s)
    check("broken config at start: STATUS names the file",
          f"Invalid configuration in {CONF}" in s.get("StatusText", ""), s.get("StatusText"))
    check("broken config at start: FILE:LINE in the journal",
          c.wait_journal(lambda e: from_daemon(e) and f"{CONF}:3: unknown key 'frobnicate'" in msg(e),
                         mark) is not None)
    # RestartPreventExitStatus=78: nothing may happen within RestartSec (and
    # a margin) of the exit. Polled through that window, not slept.
    exited = int(s.get("ExecMainExitTimestampMonotonic") or 0) or mono_usec()
    window_end = exited + (RESTART_SEC * 2 + 1) * 1_000_000
    restarted = poll(lambda: (lambda s: s if s.get("NRestarts") != "0" or s.get("ActiveState") != "failed"
                              else None)(c.show("NRestarts", "ActiveState")),
                     max(0.0, (window_end - mono_usec()) / 1e6), 0.2)
    check(f"broken config at start: not restarted within {RESTART_SEC * 2 + 1}s (NRestarts=0)",
          restarted is None, restarted)
    c.run("mv", CONF + ".orig", CONF)
    c.run("systemctl", "reset-failed", UNIT)
    c.write("/run/systemd/system/rarewatch.service.d/40-idle.conf", "[Service]\nExecCondition=\n")

    # --- the watchdog ---
    c.write("/run/systemd/system/rarewatch.service.d/50-watchdog.conf",
            f"[Service]\nWatchdogSec={WATCHDOG_SEC}s\nLimitCORE=0\n")
    c.run("systemctl", "daemon-reload")
    r = c.run("systemctl", "start", UNIT)
    check("watchdog: starts with WatchdogSec=2s", r.returncode == 0, r.stderr)
    s = c.show("WatchdogUSec", "MainPID", "ActiveEnterTimestampMonotonic")
    check("watchdog: WatchdogUSec=2s in effect", s.get("WatchdogUSec") == f"{WATCHDOG_SEC}s", s)
    wpid = s.get("MainPID")
    started = int(s.get("ActiveEnterTimestampMonotonic") or 0) or mono_usec()
    end = started + (3 * WATCHDOG_SEC + 1) * 1_000_000
    pings = []

    def watch():
        t = c.show("WatchdogTimestampMonotonic", "ActiveState", "MainPID")
        v = int(t.get("WatchdogTimestampMonotonic") or 0)
        if v and (not pings or v != pings[-1]):
            pings.append(v)
        if t.get("ActiveState") != "active" or t.get("MainPID") != wpid:
            return t   # died or restarted: stop early
        return None

    died = poll(watch, max(0.0, (end - mono_usec()) / 1e6), 0.1)
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    check(f"watchdog: active with the same process for > 3 periods ({3 * WATCHDOG_SEC + 1}s)",
          died is None, died)
    check("watchdog: WatchdogTimestamp advances, never a period apart",
          len(pings) >= 3 * WATCHDOG_SEC and all(0 < g < WATCHDOG_SEC * 1_000_000 for g in gaps),
          f"{len(pings)} pings, gaps {gaps}")
    note(f"watchdog: {len(pings)} pings seen, largest gap {max(gaps) / 1000 if gaps else 0:.0f} ms")

    # A stalled daemon: systemd must notice, abort it and restart it.
    mark = mono_usec()
    c.run("kill", "-STOP", wpid)
    e = c.wait_journal(lambda e: "Watchdog timeout" in msg(e), mark, WATCHDOG_SEC + STEP_DEADLINE)
    check("watchdog: a stopped daemon hits the watchdog timeout", e is not None)
    c.run("kill", "-CONT", wpid)   # if SIGABRT has not finished it yet
    s = poll(lambda: (lambda s: s if s.get("NRestarts") == "1" and s.get("ActiveState") == "active"
                      and s.get("SubState") == "running" else None)(
        c.show("NRestarts", "ActiveState", "SubState", "MainPID")), RESTART_SEC + STEP_DEADLINE)
    check("watchdog: restarted after the timeout (Restart=on-failure)",
          s is not None and s.get("MainPID") != wpid, s or c.show("NRestarts", "ActiveState", "SubState"))
    c.run("systemctl", "stop", UNIT)


def main():
    ap = argparse.ArgumentParser()
    for a in ("--rarewatchd", "--rarewatch", "--unit", "--conf", "--mkroot"):
        ap.add_argument(a, required=True)
    args = ap.parse_args()

    if os.geteuid() != 0:
        print("SKIP: the system tests boot a container with systemd-nspawn and must run as root")
        return 77
    if not shutil.which("systemd-nspawn") or not shutil.which("nsenter"):
        print("SKIP: systemd-nspawn (package systemd-container) or nsenter is not installed")
        return 77

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t0 = time.monotonic()
    r = subprocess.run([args.mkroot], stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        print(f"FAIL - building the root file system (mkroot.sh exited {r.returncode})")
        return 1
    root = r.stdout.strip().splitlines()[-1]
    note(f"root {root} ready in {time.monotonic() - t0:.1f}s")

    remove_stale_workdirs()
    workdir = tempfile.mkdtemp(prefix="rw-system-")
    with open(os.path.join(workdir, "owner.pid"), "w") as f:
        f.write(str(os.getpid()))
    c = None
    try:
        stage = os.path.join(workdir, "stage")
        stage_package(args, stage)
        c = Container(root, stage, workdir)
        t1 = time.monotonic()
        c.boot()

        def booted():
            r = c.run("systemctl", "is-system-running", "--wait", timeout=BOOT_DEADLINE)
            return r.stdout.strip() if r.stdout.strip() in ("running", "degraded") else None
        state = poll(booted, BOOT_DEADLINE, 0.2)
        note(f"container {c.name} booted in {time.monotonic() - t1:.1f}s: {state}")
        if state == "degraded":
            note("failed units: " + c.run("systemctl", "--failed", "--no-legend").stdout.strip())
        if check("the container boots (is-system-running: running or degraded)", state is not None,
                 c.console_tail()):
            run_checks(c)
    except Interrupted as e:
        check("not interrupted", False, e)
    except Exception as e:   # report, then tear down
        check("no unexpected error", False, repr(e))
        if c:
            print(c.console_tail(), flush=True)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if c:
            c.teardown()
        if c is None or not c.mounted:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"# {c.merged} is still mounted; leaving {workdir}", flush=True)
        note(f"total {time.monotonic() - t0:.1f}s")

    passed = sum(1 for _, ok in results if ok)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
