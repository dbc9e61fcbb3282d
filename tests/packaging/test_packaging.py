#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The packaging of rarewatch (suite 'packaging'; docs/packaging.md).

  test_packaging.py install --build BUILD        meson install --destdir layout
  test_packaging.py man --page FILE...           man pages render without warnings
  test_packaging.py cli --cli RAREWATCH          check-config --has-stream / --reference=FMT
  test_packaging.py deb --src SRC --out DIR      build-deb.sh, lintian, conffiles, upgrade
  test_packaging.py rpm --src SRC --out DIR      build-rpm.sh, file list, %config(noreplace)

Prints "ok - ..."/"FAIL - ..." per check and "N passed, N failed" last.
Exit 0 all passed, 1 a check failed, 77 (skip) when a tool is missing.
"""
import argparse
import glob
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

CONF = "/etc/rarewatch/rarewatch.conf"
results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(("ok" if cond else "FAIL") + " - " + name + ("" if cond or not detail else ": " + str(detail)),
          flush=True)
    return bool(cond)


def note(msg):
    print("# " + msg, flush=True)


def run(*argv, **kw):
    return subprocess.run(list(argv), capture_output=True, text=True, **kw)


def skip_unless(*tools):
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        print("SKIP: not installed: " + " ".join(missing))
        sys.exit(77)


def summary():
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if results and all(results) else 1


def versions(src):
    """The version the meson project, debian/changelog and the spec say."""
    with open(os.path.join(src, "meson.build")) as f:
        m = re.search(r"version\s*:\s*'([^']+)'", f.read())
    with open(os.path.join(src, "packaging/debian/changelog")) as f:
        d = re.match(r"rarewatch \(([^)]+)\)", f.readline())
    with open(os.path.join(src, "packaging/rpm/rarewatch.spec")) as f:
        r = re.search(r"^Version:\s*(\S+)", f.read(), re.M)
    return m and m.group(1), d and d.group(1), r and r.group(1)


def build(script, out, log_name):
    """Runs packaging/SCRIPT OUTDIR; the path on its last stdout line."""
    t = time.monotonic()
    log = os.path.join(out, log_name)
    os.makedirs(out, exist_ok=True)
    with open(log, "w") as f:
        r = subprocess.run([script, out], stdout=subprocess.PIPE, stderr=f, text=True)
    last = (r.stdout.strip().splitlines() or [""])[-1]
    ok = check(f"{os.path.basename(script)} exits 0 and prints the package's path last",
               r.returncode == 0 and os.path.isfile(last), f"exit {r.returncode}, last line {last!r}")
    if not ok:
        with open(log) as f:
            print(f.read()[-4000:], flush=True)
    note(f"{os.path.basename(script)}: {time.monotonic() - t:.0f}s (log {log})")
    return last if ok else None


# ---- meson install ----

def test_install(args):
    skip_unless("meson")
    opts = {o["name"]: o["value"] for o in json.loads(
        run("meson", "introspect", "--buildoptions", args.build).stdout)}
    prefix = opts["prefix"]

    def at(d):
        return os.path.join(prefix, opts[d])   # an absolute option stays absolute
    with tempfile.TemporaryDirectory(prefix="rw-install-") as dest:
        r = run("meson", "install", "-C", args.build, "--no-rebuild", "--destdir", dest)
        if not check("meson install --destdir succeeds", r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]):
            return
        files = set()
        for root, dirs, names in os.walk(dest):
            for n in dirs + names:
                files.add(os.path.join(root, n)[len(dest):])
        units = [f for f in files if f.endswith("/system/rarewatch.service")]
        note(f"prefix {prefix}; unit {units}")
        want = {
            "the daemon in sbindir": os.path.join(at("sbindir"), "rarewatchd"),
            "the CLI in bindir": os.path.join(at("bindir"), "rarewatch"),
            "the configuration": os.path.join(at("sysconfdir"), "rarewatch/rarewatch.conf"),
            "the conf.d directory": os.path.join(at("sysconfdir"), "rarewatch/conf.d"),
            "rarewatchd(8)": os.path.join(at("mandir"), "man8/rarewatchd.8"),
            "rarewatch(1)": os.path.join(at("mandir"), "man1/rarewatch.1"),
            "rarewatch.conf(5)": os.path.join(at("mandir"), "man5/rarewatch.conf.5"),
            "the examples directory": os.path.join(at("datadir"), "doc/rarewatch/examples"),
        }
        for what, path in want.items():
            check(f"installed: {what} ({path})", path in files)
        check("installed: conf.d is an empty directory",
              os.listdir(dest + want["the conf.d directory"]) == [] if want["the conf.d directory"] in files
              else False)
        ex_src = sorted(os.listdir(os.path.join(args.src, "etc/rarewatch/examples")))
        ex_dst = sorted(os.listdir(dest + want["the examples directory"])) \
            if want["the examples directory"] in files else []
        check("installed: every file of etc/rarewatch/examples/ is in the examples directory",
              ex_src == ex_dst, (ex_src, ex_dst))
        unitdir = opts.get("systemdsystemunitdir") or run(
            "pkg-config", "--variable=systemdsystemunitdir", "systemd").stdout.strip() \
            or os.path.join(prefix, "lib/systemd/system")
        check(f"installed: the unit in systemd's system unit directory ({unitdir})",
              os.path.join(unitdir, "rarewatch.service") in files, units)
        for what in ("the daemon in sbindir", "the CLI in bindir"):
            p = dest + want[what]
            check(f"installed: {what} is executable", os.path.isfile(p) and os.access(p, os.X_OK))


# ---- man pages ----

def test_man(args):
    skip_unless("man")
    env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80")
    for page in args.page:
        # What lintian's groff-message check runs.
        r = run("man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", page, env=env)
        check(f"{os.path.basename(page)}: man --warnings prints nothing", r.returncode == 0 and not r.stderr,
              r.stderr[-2000:])
        r = run("man", "-l", page, env=env)
        check(f"{os.path.basename(page)}: renders NAME and SEE ALSO",
              r.returncode == 0 and "NAME" in r.stdout and "SEE ALSO" in r.stdout, r.stderr)
    if args.cli:
        # rarewatch.conf(5) is generated; it must name every key of the table.
        ref = run(args.cli, "check-config", "--reference").stdout
        keys = re.findall(r"^#([a-z0-9_]+) = ", ref, re.M)
        conf5 = [p for p in args.page if p.endswith(".5")]
        text = open(conf5[0]).read() if conf5 else ""
        missing = [k for k in keys if "\\fB" + k.replace("-", "\\-") not in text]
        check(f"rarewatch.conf(5) names all {len(keys)} keys of the reference", keys and not missing, missing)


# ---- check-config --has-stream (the unit's ExecCondition=) ----

def test_cli(args):
    cli = args.cli
    shipped = os.path.join(args.src, "etc/rarewatch/rarewatch.conf")
    with tempfile.TemporaryDirectory(prefix="rw-cli-") as d:
        conf = os.path.join(d, "rarewatch.conf")
        shutil.copy(shipped, conf)
        r = run(cli, "check-config", "--has-stream", "-c", conf)
        check("--has-stream: the shipped configuration (no stream) exits 1 and says why",
              r.returncode == 1 and "no [kinesis] stream configured" in r.stdout, (r.returncode, r.stdout, r.stderr))
        os.mkdir(os.path.join(d, "conf.d"))
        with open(os.path.join(d, "conf.d/10-stream.conf"), "w") as f:
            f.write("[kinesis]\nstream = payments\n")
        r = run(cli, "check-config", "--has-stream", "-c", conf)
        check("--has-stream: a stream set in a drop-in exits 0", r.returncode == 0, (r.returncode, r.stdout, r.stderr))
        with open(os.path.join(d, "conf.d/20-broken.conf"), "w") as f:
            f.write("[kinesis]\nstream =\n[daemon]\nstop_timeout = banana\n")
        r = run(cli, "check-config", "--has-stream", "-c", conf)
        check("--has-stream: an invalid configuration exits 0 (rarewatchd reports it)", r.returncode == 0,
              (r.returncode, r.stdout, r.stderr))
        r = run(cli, "check-config", "-c", conf)
        check("check-config: that configuration is invalid (78)", r.returncode == 78, r.returncode)
        r = run(cli, "check-config", "--has-stream", "-c", os.path.join(d, "missing.conf"))
        check("--has-stream: a missing configuration exits 0 (rarewatchd reports it)", r.returncode == 0,
              (r.returncode, r.stdout, r.stderr))
    r = run(cli, "check-config", "--reference=conf")
    check("--reference=conf is the shipped file", r.returncode == 0 and r.stdout == open(shipped).read())
    r = run(cli, "check-config", "--reference=roff")
    check("--reference=UNKNOWN exits 64", r.returncode == 64, (r.returncode, r.stderr))


# ---- Debian ----

def scratch_root(path):
    """An empty dpkg database plus /bin/sh, so that dpkg --root can run the
    maintainer scripts (chrooted) of a package whose dependencies it lacks."""
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "bin", "dev"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    for f in ("var/lib/dpkg/status", "var/lib/dpkg/available"):
        open(os.path.join(path, f), "w").close()
    sh = os.path.realpath(shutil.which("dash") or "/bin/sh")
    shutil.copy(sh, os.path.join(path, "bin/sh"))
    for lib in re.findall(r"(/\S+) \(0x", run("ldd", sh).stdout):
        dst = os.path.join(path, lib.lstrip("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy(os.path.realpath(lib), dst)
    subprocess.run(["mknod", "-m", "666", os.path.join(path, "dev/null"), "c", "1", "3"],
                   stderr=subprocess.DEVNULL)


def repack(deb, work, version, conf_suffix=None):
    """deb with another version (and, if given, a line added to the shipped
    configuration): a stand-in for the next upstream release."""
    tree = os.path.join(work, "tree-" + version)
    subprocess.run(["dpkg-deb", "-R", deb, tree], check=True)
    ctl = os.path.join(tree, "DEBIAN/control")
    with open(ctl) as f:
        text = re.sub(r"^Version: .*$", "Version: " + version, f.read(), flags=re.M)
    with open(ctl, "w") as f:
        f.write(text)
    if conf_suffix:
        conf = os.path.join(tree, CONF.lstrip("/"))
        with open(conf, "a") as f:
            f.write(conf_suffix)
        md5 = subprocess.run(["md5sum", CONF.lstrip("/")], cwd=tree, capture_output=True, text=True,
                             check=True).stdout
        sums = os.path.join(tree, "DEBIAN/md5sums")
        with open(sums) as f:
            lines = [ln for ln in f if not ln.rstrip().endswith(" " + CONF.lstrip("/"))]
        with open(sums, "w") as f:
            f.writelines(lines + [md5])
    out = os.path.join(work, f"rarewatch_{version}.deb")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", tree, out], check=True, capture_output=True)
    return out


def test_deb(args):
    skip_unless("dpkg-buildpackage", "dh", "lintian", "dpkg-deb")
    v = versions(args.src)
    check("one version in meson.build, debian/changelog and the spec", len(set(v)) == 1, v)
    deb = build(os.path.join(args.src, "packaging/build-deb.sh"), args.out, "build-deb.log")
    if not deb:
        return
    check("the package is rarewatch_VERSION_ARCH.deb",
          re.fullmatch(rf"rarewatch_{re.escape(v[0])}_[a-z0-9]+\.deb", os.path.basename(deb)), deb)
    note(f"{os.path.basename(deb)}: {os.path.getsize(deb)} bytes")
    listing = run("dpkg-deb", "-c", deb).stdout
    paths = {ln.split()[5].lstrip(".") for ln in listing.splitlines() if len(ln.split()) >= 6}
    paths = {p.rstrip("/") for p in paths}
    for p in ("/usr/sbin/rarewatchd", "/usr/bin/rarewatch", CONF, "/etc/rarewatch/conf.d",
              "/usr/share/man/man8/rarewatchd.8.gz", "/usr/share/man/man1/rarewatch.1.gz",
              "/usr/share/man/man5/rarewatch.conf.5.gz", "/usr/share/doc/rarewatch/examples",
              "/usr/share/doc/rarewatch/copyright"):
        check(f"dpkg -c: {p}", p in paths)
    check("dpkg -c: the unit in /lib/systemd/system (bookworm's systemdsystemunitdir)",
          "/lib/systemd/system/rarewatch.service" in paths, sorted(p for p in paths if "systemd" in p))
    with tempfile.TemporaryDirectory(prefix="rw-deb-") as work:
        ctl = os.path.join(work, "ctl")
        subprocess.run(["dpkg-deb", "-e", deb, ctl], check=True)
        conffiles = open(os.path.join(ctl, "conffiles")).read().split() \
            if os.path.exists(os.path.join(ctl, "conffiles")) else []
        check(f"conffiles: {CONF}", CONF in conffiles, conffiles)
        postinst = open(os.path.join(ctl, "postinst")).read() if os.path.exists(os.path.join(ctl, "postinst")) else ""
        check("postinst enables the unit (dh_installsystemd)",
              "deb-systemd-helper enable 'rarewatch.service'" in postinst, postinst[:400])
        r = subprocess.run(f"dpkg-deb --fsys-tarfile '{deb}' | tar -xOf - ./lib/systemd/system/rarewatch.service",
                           shell=True, capture_output=True, text=True)
        check("the packaged unit skips its start while no stream is configured (ExecCondition=)",
              re.search(r"^ExecCondition=/usr/bin/rarewatch check-config --has-stream", r.stdout, re.M),
              r.stdout[:300] + r.stderr)

        # lintian, over the .changes (the .deb and the -dbgsym package).
        changes = glob.glob(os.path.join(os.path.dirname(deb), "rarewatch_*.changes"))
        targets = changes[:1] or [deb]
        r = run("lintian", "--fail-on", "error,warning", "--display-level", ">=warning", *targets)
        tags = [ln for ln in r.stdout.splitlines() if re.match(r"^[EW]: ", ln)]
        check(f"lintian {' '.join(os.path.basename(t) for t in targets)}: no errors, no warnings",
              r.returncode == 0 and not tags, "\n".join(tags) or r.stderr[-1000:])

        # An operator's edit survives upgrades.
        if os.geteuid() != 0:
            note("not root: the dpkg --root upgrade checks are skipped")
            return
        root = os.path.join(work, "root")
        scratch_root(root)

        def dpkg(*a):
            return run("dpkg", "--root=" + root, "--force-depends", "--force-confold", "--force-confdef", *a)
        r = dpkg("-i", deb)
        check("dpkg --root -i (scratch root)", r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:])
        conf = os.path.join(root, CONF.lstrip("/"))
        edit = "\n[kinesis]\nstream = operators-stream\n"
        with open(conf, "a") as f:
            f.write(edit)
        r = dpkg("-i", repack(deb, work, v[0] + "+upgrade1"))
        check("upgrade, same shipped configuration: succeeds", r.returncode == 0, r.stderr[-1500:])
        check("upgrade, same shipped configuration: the operator's edit is kept",
              open(conf).read().endswith(edit))
        r = dpkg("-i", repack(deb, work, v[0] + "+upgrade2", "\n# changed upstream\n"))
        check("upgrade, changed shipped configuration (keep the local one): succeeds",
              r.returncode == 0, r.stderr[-1500:])
        check("upgrade, changed shipped configuration: the operator's edit is kept",
              open(conf).read().endswith(edit))
        check("upgrade, changed shipped configuration: the new one is beside it as .dpkg-dist",
              os.path.exists(conf + ".dpkg-dist") and open(conf + ".dpkg-dist").read().endswith(
                  "# changed upstream\n"))
        r = dpkg("-r", "rarewatch")
        check("remove: the configuration stays (a conffile)", r.returncode == 0 and os.path.exists(conf),
              r.stderr[-1000:])
        r = dpkg("-P", "rarewatch")
        check("purge: the configuration goes", r.returncode == 0 and not os.path.exists(conf), r.stderr[-1000:])


# ---- RPM ----

def test_rpm(args):
    skip_unless("rpmbuild", "rpm")
    rpm = build(os.path.join(args.src, "packaging/build-rpm.sh"), args.out, "build-rpm.log")
    if not rpm:
        return
    v = versions(args.src)
    check("the package is rarewatch-VERSION-RELEASE.ARCH.rpm",
          re.fullmatch(rf"rarewatch-{re.escape(v[0])}-\d+[^.]*\.[a-z0-9_]+\.rpm", os.path.basename(rpm)), rpm)
    files = set(run("rpm", "-qlp", rpm).stdout.split())
    for p in ("/usr/sbin/rarewatchd", "/usr/bin/rarewatch", CONF, "/etc/rarewatch/conf.d",
              "/usr/lib/systemd/system/rarewatch.service", "/usr/share/man/man8/rarewatchd.8",
              "/usr/share/man/man1/rarewatch.1", "/usr/share/man/man5/rarewatch.conf.5",
              "/usr/share/doc/rarewatch/examples"):
        check(f"rpm -qlp: {p}", any(f == p or f.startswith(p + ".") for f in files))
    check("rpm -qlp: the license", any(re.match(r"/usr/share/licenses/rarewatch[^/]*/LICENSE$", f) for f in files))
    cfg = run("rpm", "-qp", "--configfiles", rpm).stdout.split()
    check(f"rpm -qp --configfiles: {CONF}", cfg == [CONF], cfg)
    flags = run("rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", rpm).stdout
    m = re.search(rf"^{re.escape(CONF)} (\S*)$", flags, re.M)
    check("the configuration is %config(noreplace)", m and "c" in m.group(1) and "n" in m.group(1),
          m and m.group(0))
    scripts = run("rpm", "-qp", "--scripts", rpm).stdout
    check("scriptlets: preset on install, disable on erase, try-restart on upgrade",
          "preset rarewatch.service" in scripts and "disable --now rarewatch.service" in scripts
          and "try-restart rarewatch.service" in scripts, scripts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("install", "man", "cli", "deb", "rpm"))
    ap.add_argument("--src", default=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    ap.add_argument("--build")
    ap.add_argument("--out")
    ap.add_argument("--cli")
    ap.add_argument("--page", nargs="*", default=[])
    args = ap.parse_args()
    {"install": test_install, "man": test_man, "cli": test_cli, "deb": test_deb, "rpm": test_rpm}[args.what](args)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
