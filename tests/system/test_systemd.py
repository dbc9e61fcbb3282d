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
import collections
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
import traceback
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from rwharness import KinesisLocal, Moto, read_firehose_s3_objects  # noqa: E402

BOOT_DEADLINE = 120   # container boot to `is-system-running` answering
STEP_DEADLINE = 30    # any one expected event inside the running container
DYNAMIC_UID_MIN, DYNAMIC_UID_MAX = 61184, 65519   # systemd's DynamicUser= range
MAX_EXPOSURE = 1.5
UNIT = "rarewatch.service"
UNIT_PATH = "/usr/lib/systemd/system/" + UNIT
CONF = "/etc/rarewatch/rarewatch.conf"
WATCHDOG_SEC = 2
RESTART_SEC = 2       # the unit's RestartSec=
# The pipeline part: a stream on kinesis-local, a delivery stream into a moto
# S3 bucket, both on the host's loopback (the container shares its network).
STREAM, DELIVERY, BUCKET = "rw-system-in", "rw-system-out", "rw-system-bucket"
SHARD = "shardId-000000000000"
CKPT_FILE = f"/var/lib/rarewatch/checkpoints/{STREAM}/{SHARD}.json"
PIPELINE_WATCHDOG_SEC = 5   # room for a slow emulator call on a loaded machine
DROPIN_DIR = "/etc/rarewatch/conf.d"
DEB_DIR = "/var/tmp/rarewatch-test"    # where the .deb is put into the container
DEB_BUILD_DEADLINE = 900

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
               # systemd in the container attaches BPF programs for
               # IPAddressDeny=/IPAddressAllow= only with these.
               "--capability=CAP_BPF", "--system-call-filter=bpf",
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


def get_deb(args, workdir):
    """The package to install: $RW_DEB, or one built now with
    packaging/build-deb.sh."""
    if os.environ.get("RW_DEB"):
        deb = os.path.abspath(os.environ["RW_DEB"])
        note(f"installing RW_DEB={deb}")
        if not check("RW_DEB names a .deb", deb.endswith(".deb") and os.path.isfile(deb), deb):
            raise RuntimeError("no package")
        return deb
    out = os.path.join(workdir, "deb")
    os.mkdir(out)
    log = os.path.join(workdir, "build-deb.log")
    t = time.monotonic()
    with open(log, "wb") as f:
        r = subprocess.run([args.build_deb, out], stdout=subprocess.PIPE, stderr=f, timeout=DEB_BUILD_DEADLINE)
    lines = r.stdout.decode(errors="replace").strip().splitlines()
    deb = lines[-1].strip() if lines else ""
    if not check(f"{os.path.basename(args.build_deb)} builds the package", r.returncode == 0
                 and deb.endswith(".deb") and os.path.isfile(deb), f"exit {r.returncode}, last line {deb!r}"):
        with open(log, "rb") as f:
            print(f.read()[-4000:].decode(errors="replace"), flush=True)
        raise RuntimeError("no package")
    note(f"built {os.path.basename(deb)} in {time.monotonic() - t:.0f}s (set RW_DEB to reuse one)")
    return deb


def stage_deb(deb, stage):
    dst = os.path.join(stage, DEB_DIR.lstrip("/"), os.path.basename(deb))
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(deb, dst)
    return os.path.join(DEB_DIR, os.path.basename(deb))


def install_deb(c, deb):
    """dpkg -i in the running container, as an operator would (its
    dependencies are already in the root: no network needed)."""
    r = c.run("dpkg", "-i", deb, timeout=120)
    check("dpkg -i installs the package", r.returncode == 0, (r.stdout + r.stderr)[-3000:])
    r = c.run("dpkg-query", "-W", "-f", "${Status}|${Version}|${Depends}|${Conffiles}", "rarewatch")
    status, version, depends, conffiles = (r.stdout.split("|", 3) + ["", "", ""])[:4]
    note(f"installed rarewatch {version}; Depends: {depends}")
    check("dpkg: rarewatch is 'install ok installed'", status == "install ok installed", r.stdout + r.stderr)
    check("dpkg: the configuration is a conffile", CONF in conffiles.split(), conffiles)
    files = set(c.run("dpkg", "-L", "rarewatch").stdout.split())
    want = {"/usr/sbin/rarewatchd", "/usr/bin/rarewatch", CONF}
    units = {"/lib/systemd/system/" + UNIT, UNIT_PATH}
    check("dpkg: the programs, the configuration and the unit are where the package puts them",
          want <= files and units & files, sorted(want - files) + ([] if units & files else sorted(units)))
    r = c.run("systemctl", "is-enabled", UNIT)
    check("the package enables the service (dh_installsystemd)", r.stdout.strip() == "enabled",
          r.stdout + r.stderr)
    r = c.run("systemctl", "is-active", UNIT)
    check("the package does not start it while no stream is configured", r.stdout.strip() != "active",
          r.stdout.strip())


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


# ---------------------------------------------------------------- the pipeline

class Records:
    """What went into the stream (by id) and what came out in S3."""

    def __init__(self, moto, kin):
        self.moto = moto
        self.kinesis = kin.client()
        self.put_ids = []
        self.last_seq = None

    def put(self, tag, amounts):
        """One record per amount: {"id", "k", "amount"}; returns the ids. The
        sequence number of the last one (one shard: the highest) is kept."""
        recs = [{"id": f"{tag}-{i:03d}", "k": f"card-{i % 7}", "amount": a} for i, a in enumerate(amounts)]
        res = self.kinesis.put_records(StreamName=STREAM, Records=[
            {"Data": json.dumps(r).encode(), "PartitionKey": r["k"]} for r in recs])
        if res.get("FailedRecordCount"):
            raise RuntimeError(f"put_records: {res['FailedRecordCount']} failed")
        self.last_seq = res["Records"][-1]["SequenceNumber"]
        ids = [r["id"] for r in recs]
        self.put_ids += ids
        return ids

    def lines(self):
        out = []
        for _, _, body in read_firehose_s3_objects(self.moto, BUCKET):
            out += [json.loads(x) for x in body.split(b"\n") if x]
        return out

    def wait_delivered(self, ids, deadline=STEP_DEADLINE):
        """Every line in S3 once each of ids is there (None at the deadline)."""
        want = set(ids)

        def there():
            lines = self.lines()
            return lines if want <= {o.get("id") for o in lines} else None
        return poll(there, deadline, 0.2)

    def duplicates(self, lines):
        """Lines whose Kinesis position was delivered before: records read twice."""
        seen = collections.Counter((o["_kinesis"]["shard_id"], o["_kinesis"]["sequence_number"],
                                    o["_kinesis"]["sub_sequence_number"]) for o in lines)
        return sum(n - 1 for n in seen.values())


def flagged_by(lines, detector):
    return {o["id"] for o in lines if any(a.get("detector") == detector for a in o.get("anomalies", []))}


def checkpoint(c):
    r = c.run("cat", CKPT_FILE)
    try:
        return json.loads(r.stdout) if r.returncode == 0 else None
    except ValueError:
        return None


def wait_checkpoint(c, seq, deadline=STEP_DEADLINE):
    return poll(lambda: (lambda cp: cp if cp and cp.get("sequence_number") == seq else None)(checkpoint(c)),
                deadline, 0.2)


def wait_running(c, pred=lambda s: True, deadline=STEP_DEADLINE):
    props = ("ActiveState", "SubState", "StatusText", "MainPID", "NRestarts")
    return poll(lambda: (lambda s: s if s.get("ActiveState") == "active" and s.get("SubState") == "running"
                         and pred(s) else None)(c.show(*props)), deadline, 0.1)


def reload_and_wait(c, generation):
    """systemctl reload, then the daemon's own word (252 returns early)."""
    mark = mono_usec()
    r = c.run("systemctl", "reload", UNIT)
    e = c.wait_journal(lambda e: from_daemon(e) and f"configuration reloaded (generation {generation}"
                       in msg(e), mark)
    return r, e, mark


def check_ip_filtering(c, port):
    """IPAddressDeny= is enforced in this container (the nspawn flags): a
    transient unit denied every address cannot reach the emulator on
    loopback, one allowed localhost can."""
    # A dropped SYN is retried, not refused: the denied connect is bounded
    # by timeout(1), the allowed one succeeds at once.
    probe = f"exec 3<>/dev/tcp/127.0.0.1/{port}"
    base = ["systemd-run", "--wait", "--quiet", "--pipe", "-p", "IPAddressDeny=any"]
    denied = c.run(*base, "timeout", "2", "/bin/bash", "-c", probe)
    allowed = c.run(*base, "-p", "IPAddressAllow=localhost", "timeout", "10", "/bin/bash", "-c", probe)
    check("IPAddressDeny= applies in the container (loopback blocked unless IPAddressAllow=localhost)",
          denied.returncode != 0 and allowed.returncode == 0,
          (denied.returncode, denied.stderr.strip(), allowed.returncode, allowed.stderr.strip()))
    s = c.show("IPAddressDeny", "IPAddressAllow")
    if s.get("IPAddressDeny"):
        note(f"the unit filters addresses: {s}")


def run_pipeline(c, moto, kin):
    """rarewatchd under systemd against the emulators: Kinesis in, Firehose
    to S3 out, reload with a new detector, the watchdog on a stalled worker,
    stop with a checkpoint and resume from it."""
    check_ip_filtering(c, moto.port)
    moto.create_firehose_to_s3(DELIVERY, BUCKET)
    rec = Records(moto, kin)

    # Secrets where the unit says they belong (EnvironmentFile=, 0600 root):
    # systemd reads them, nothing here prints them.
    env = (f"AWS_ACCESS_KEY_ID={moto.creds[0]}\nAWS_SECRET_ACCESS_KEY={moto.creds[1]}\n"
           "AWS_EC2_METADATA_DISABLED=true\n")
    r = c.sh("umask 077 && cat >/etc/rarewatch/environment", input=env)
    if r.returncode:
        raise RuntimeError("cannot write /etc/rarewatch/environment")
    c.run("rm", "-f", f"{DROPIN_DIR}/50-test.conf")    # debug logging from the checks above
    # The unit as packaged from here on: its ExecCondition= (a stream must be
    # configured) is no longer emptied.
    c.run("rm", "-f", "/run/systemd/system/rarewatch.service.d/40-idle.conf")
    c.write(f"{DROPIN_DIR}/20-pipeline.conf", f"""\
[daemon]
status_interval = 500ms
[log]
rate_limit_interval = 0
[aws]
region = us-east-1
kinesis_endpoint_url = {kin.endpoint}
firehose_endpoint_url = {moto.endpoint}
[kinesis]
stream = {STREAM}
poll_interval = 200ms
[checkpoint]
interval = 1s
[firehose]
delivery_stream = {DELIVERY}
flush_interval = 200ms
[detector.big]
type = threshold
field = amount
above = 1000
""")
    c.write("/run/systemd/system/rarewatch.service.d/50-watchdog.conf",
            f"[Service]\nWatchdogSec={PIPELINE_WATCHDOG_SEC}s\nLimitCORE=0\n")
    c.run("systemctl", "daemon-reload")
    r = c.run("rarewatch", "check-config", "-c", CONF)
    check("pipeline: check-config accepts the configuration with the emulators' endpoints",
          r.returncode == 0, r.stdout + r.stderr)

    # --- start: STATUS, records to S3, structured journal fields ---
    mark = mono_usec()
    r = c.run("systemctl", "start", UNIT)
    s = wait_running(c, lambda s: s.get("StatusText", "").startswith("1 shard,"))
    check("pipeline: systemctl start (ExecCondition= passes: a stream is configured) -> active, "
          "STATUS '1 shard, ... (config generation 1)'",
          r.returncode == 0 and s is not None and "config generation 1" in s["StatusText"],
          (r.stderr, s or c.show("ActiveState", "SubState", "StatusText")))
    pid = (s or {}).get("MainPID")
    e = c.wait_journal(lambda e: from_daemon(e) and e.get("SHARD_ID") == SHARD
                       and msg(e).startswith("starting at"), mark)
    check("pipeline: the shard worker logs its start position with SHARD_ID",
          e is not None and e.get("STREAM") == STREAM, e and (msg(e), e.get("STREAM")))

    b1 = rec.put("b1", [10.0 + i for i in range(57)] + [5000.0, 7500.0, 9000.0])
    big1 = set(b1[-3:])
    lines = rec.wait_delivered(b1)
    check(f"pipeline: {len(b1)} records put into the stream are delivered to S3 through Firehose",
          lines is not None, f"{len(rec.lines())} lines in S3")
    lines = lines or []
    check("pipeline: detector 'big' flags exactly the injected records", flagged_by(lines, "big") == big1,
          sorted(flagged_by(lines, "big")))
    e = c.wait_journal(lambda e: from_daemon(e) and e.get("DETECTOR") == "big", mark)
    check("journal: an anomaly entry with DETECTOR=big and SHARD_ID, PRIORITY=5",
          e is not None and e.get("SHARD_ID") == SHARD and e.get("PRIORITY") == "5"
          and msg(e).startswith("anomaly: amount"), e and {k: e.get(k) for k in
                                                            ("DETECTOR", "SHARD_ID", "PRIORITY", "MESSAGE")})
    s = wait_running(c, lambda s: f"{len(b1)} records in" in s.get("StatusText", ""))
    check(f"pipeline: STATUS counts the records ('{len(b1)} records in')", s is not None,
          c.show("StatusText"))
    check("pipeline: the checkpoint follows the delivered records", wait_checkpoint(c, rec.last_seq),
          checkpoint(c))

    # --- reload: a new detector, the position kept ---
    c.write(f"{DROPIN_DIR}/30-tiny.conf", "[detector.tiny]\ntype = threshold\nfield = amount\nbelow = 1\n")
    r, e, mark = reload_and_wait(c, 2)
    check("pipeline reload (new detector): 'configuration reloaded (generation 2' logged",
          r.returncode == 0 and e is not None, r.stderr)
    s = wait_running(c, lambda s: "generation 2" in s.get("StatusText", ""))
    check("pipeline reload (new detector): same process, STATUS says generation 2",
          s is not None and s.get("MainPID") == pid, s or c.show("MainPID", "StatusText"))
    b2 = rec.put("b2", [20.0 + i for i in range(55)] + [0.5, 0.25, 0.75, 6000.0, 8000.0])
    tiny2, big2 = set(b2[55:58]), set(b2[58:])
    lines = rec.wait_delivered(b2)
    check(f"pipeline reload (new detector): {len(b2)} more records delivered", lines is not None,
          f"{len(rec.lines())} lines in S3")
    check("pipeline reload (new detector): the new records' checkpoint written",
          wait_checkpoint(c, rec.last_seq), checkpoint(c))
    # The checkpoint covers the last record, so anything re-read is in S3 by now.
    lines = rec.lines()
    check("pipeline reload (new detector): the new detector 'tiny' flags exactly its new records, "
          "'big' still in effect", flagged_by(lines, "tiny") == tiny2
          and flagged_by(lines, "big") == big1 | big2,
          (sorted(flagged_by(lines, "tiny")), sorted(flagged_by(lines, "big"))))
    check(f"pipeline reload (new detector): position kept, nothing re-read ({len(rec.put_ids)} lines, "
          "no duplicates)", len(lines) == len(rec.put_ids) and rec.duplicates(lines) == 0,
          (len(lines), rec.duplicates(lines)))
    e = c.wait_journal(lambda e: from_daemon(e) and e.get("DETECTOR") == "tiny", mark)
    check("journal: the new detector's anomalies carry DETECTOR=tiny", e is not None)

    # --- reload: a broken detector; the running configuration stays ---
    broken = f"{DROPIN_DIR}/40-broken.conf"
    c.write(broken, "[detector.broken]\ntype = zscore\nfield = amount\nthreshold = banana\n")
    mark = mono_usec()
    c.run("systemctl", "reload", UNIT)
    e = c.wait_journal(lambda e: from_daemon(e) and f"{broken}:4:" in msg(e), mark)
    check("pipeline reload (broken detector): error with FILE:LINE, running configuration kept",
          e is not None and "keeping the running configuration" in msg(e), e and msg(e))
    c.run("rm", "-f", broken)
    s = wait_running(c, lambda s: "generation 2" in s.get("StatusText", ""))
    check("pipeline reload (broken detector): same process, still generation 2",
          s is not None and s.get("MainPID") == pid, s or c.show("MainPID", "StatusText"))

    # --- a stalled worker: the watchdog restarts the daemon ---
    # The switch is reloaded in and its drop-in removed at once: the running
    # daemon keeps it until the next reload, the restarted one starts without.
    n0 = int(c.show("NRestarts").get("NRestarts") or 0)
    stall = f"{DROPIN_DIR}/90-stall.conf"
    c.write(stall, "[daemon]\ntest_stall_workers = true\n")
    r, e, mark = reload_and_wait(c, 3)
    c.run("rm", "-f", stall)
    check("watchdog (stalled worker): the test-only switch is reloaded in",
          e is not None and c.wait_journal(lambda e: "test_stall_workers: false -> true" in msg(e), mark),
          e and msg(e))
    e = c.wait_journal(lambda e: from_daemon(e) and f"worker shard {SHARD} has made no progress" in msg(e),
                       mark, PIPELINE_WATCHDOG_SEC * 2 + STEP_DEADLINE)
    check("watchdog (stalled worker): the daemon names the stalled worker and withholds the ping",
          e is not None and e.get("PRIORITY") == "3", e and msg(e))
    e = c.wait_journal(lambda e: "Watchdog timeout" in msg(e), mark, PIPELINE_WATCHDOG_SEC * 2 + STEP_DEADLINE)
    check("watchdog (stalled worker): systemd's watchdog timeout", e is not None)
    s = wait_running(c, lambda s: int(s.get("NRestarts") or 0) == n0 + 1 and s.get("MainPID") != pid,
                     RESTART_SEC + STEP_DEADLINE)
    check("watchdog (stalled worker): restarted (NRestarts +1, a new process)", s is not None,
          c.show("NRestarts", "ActiveState", "SubState", "MainPID"))
    e = c.wait_journal(lambda e: from_daemon(e) and e.get("SHARD_ID") == SHARD
                       and msg(e) == f"starting at SEQUENCE {rec.last_seq}", mark)
    check("watchdog (stalled worker): the new process resumes from the checkpoint", e is not None,
          [msg(x) for x in c.journal(mark) if msg(x).startswith("starting at")])
    b3 = rec.put("b3", [30.0 + i for i in range(39)] + [0.1])
    lines = rec.wait_delivered(b3)
    check(f"watchdog (stalled worker): {len(b3)} more records delivered after the restart, "
          "'tiny' in effect", lines is not None and b3[-1] in flagged_by(lines, "tiny"),
          f"{len(rec.lines())} lines in S3")
    check("watchdog (stalled worker): the new records' checkpoint written",
          wait_checkpoint(c, rec.last_seq), checkpoint(c))
    lines = rec.lines()
    check(f"watchdog (stalled worker): nothing re-read ({len(rec.put_ids)} lines, no duplicates)",
          len(lines) == len(rec.put_ids) and rec.duplicates(lines) == 0, (len(lines), rec.duplicates(lines)))

    # --- stop: exit 0 with the checkpoint written by the stop itself ---
    # With interval = 1h no periodic write happens after the reload: the
    # checkpoint of b4 can only come from the stop.
    c.write(f"{DROPIN_DIR}/60-checkpoint.conf", "[checkpoint]\ninterval = 1h\n")
    r, e, mark = reload_and_wait(c, 2)
    check("stop: [checkpoint] interval = 1h reloaded", e is not None)
    b4 = rec.put("b4", [40.0 + i for i in range(40)])
    check(f"stop: {len(b4)} more records delivered", rec.wait_delivered(b4) is not None)
    cp = checkpoint(c)
    check("stop: their checkpoint not yet written (interval 1h)",
          cp is not None and cp.get("sequence_number") != rec.last_seq, cp)
    mark = mono_usec()
    r = c.run("systemctl", "stop", UNIT)
    s = c.show("ActiveState", "ExecMainCode", "ExecMainStatus", "Result")
    check("stop: systemctl stop -> inactive, exit status 0",
          r.returncode == 0 and s.get("ActiveState") == "inactive" and s.get("ExecMainCode") == "1"
          and s.get("ExecMainStatus") == "0" and s.get("Result") == "success", (r.stderr, s))
    cp = checkpoint(c)
    check("stop: the checkpoint is written at the last record",
          cp is not None and cp.get("state") == "SEQUENCE" and cp.get("sequence_number") == rec.last_seq,
          (cp, rec.last_seq))

    # --- start again: resume from the checkpoint ---
    stopped_at = rec.last_seq
    b5 = rec.put("b5", [50.0 + i for i in range(39)] + [4000.0])
    mark = mono_usec()
    r = c.run("systemctl", "start", UNIT)
    s = wait_running(c)
    check("resume: systemctl start -> active", r.returncode == 0 and s is not None, r.stderr)
    e = c.wait_journal(lambda e: from_daemon(e) and e.get("SHARD_ID") == SHARD
                       and msg(e).startswith("starting at"), mark)
    check("resume: starts at the checkpoint's sequence number",
          e is not None and msg(e) == f"starting at SEQUENCE {stopped_at}", e and msg(e))
    lines = rec.wait_delivered(b5)
    check(f"resume: the {len(b5)} records put while stopped are delivered",
          lines is not None and b5[-1] in flagged_by(lines, "big"), f"{len(rec.lines())} lines in S3")
    r = c.run("systemctl", "stop", UNIT)
    lines = rec.lines()
    dups = rec.duplicates(lines)
    check(f"resume: nothing re-read ({len(lines)} lines in S3 for {len(rec.put_ids)} records, "
          f"{dups} duplicates) and every record delivered",
          len(lines) == len(rec.put_ids) and dups == 0 and {o.get("id") for o in lines} == set(rec.put_ids),
          (len(lines), len(rec.put_ids), dups))
    c.run("rm", "-f", "/run/systemd/system/rarewatch.service.d/50-watchdog.conf")
    c.run("systemctl", "daemon-reload")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mkroot", required=True)
    ap.add_argument("--build-deb", required=True, help="packaging/build-deb.sh; RW_DEB=FILE installs that package instead")
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
    emulators = []
    try:
        stage = os.path.join(workdir, "stage")
        deb = stage_deb(get_deb(args, workdir), stage)
        c = Container(root, stage, workdir)
        t1 = time.monotonic()
        c.boot()
        # The emulators start on this thread (their PR_SET_PDEATHSIG follows
        # the thread that forked them) while the container boots.
        logs = os.path.join(workdir, "emulators")
        moto = Moto(iam_auth=True, log_dir=logs)
        emulators.append(moto)
        moto.start()
        kin = KinesisLocal(shards=1, stream=STREAM, log_dir=logs)
        emulators.append(kin)
        kin.start()
        note(f"moto {moto.endpoint} (IAM auth on), kinesis-local {kin.endpoint}: "
             f"ready {time.monotonic() - t1:.1f}s after the boot began")

        def booted():
            r = c.run("systemctl", "is-system-running", "--wait", timeout=BOOT_DEADLINE)
            return r.stdout.strip() if r.stdout.strip() in ("running", "degraded") else None
        state = poll(booted, BOOT_DEADLINE, 0.2)
        note(f"container {c.name} booted in {time.monotonic() - t1:.1f}s: {state}")
        if state == "degraded":
            note("failed units: " + c.run("systemctl", "--failed", "--no-legend").stdout.strip())
        if check("the container boots (is-system-running: running or degraded)", state is not None,
                 c.console_tail()):
            t2 = time.monotonic()
            install_deb(c, deb)
            run_checks(c)
            t3 = time.monotonic()
            note(f"unit, sandbox, journal, reload, watchdog checks: {t3 - t2:.1f}s")
            run_pipeline(c, moto, kin)
            note(f"pipeline checks: {time.monotonic() - t3:.1f}s")
            if not all(ok for _, ok in results):
                print("# the unit's journal:\n" + c.run("journalctl", "--unit", UNIT, "--no-pager",
                                                        "-n", "150").stdout, flush=True)
    except Interrupted as e:
        check("not interrupted", False, e)
    except Exception as e:   # report, then tear down
        check("no unexpected error", False, repr(e))
        traceback.print_exc(file=sys.stdout)
        if c:
            print(c.console_tail(), flush=True)
        if c and c.init_pid:
            print(c.run("journalctl", "--unit", UNIT, "--no-pager", "-n", "60").stdout, flush=True)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        t4 = time.monotonic()
        for emu in emulators:
            emu.stop()
        if c:
            c.teardown()
        note(f"teardown {time.monotonic() - t4:.1f}s")
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
