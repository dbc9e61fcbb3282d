#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The credential chain end to end, through tests/integration/creds_tool.

usage: test_creds.py PATH/TO/creds_tool

- IMDSv2 and the container endpoint are small HTTP servers on loopback run
  by this test: tokens are required (a metadata GET without the session
  token gets 401), credentials that expire soon are refreshed, a failed
  refresh keeps the old ones, a rotated token file is re-read.
- STS AssumeRole (source_profile chains) runs against moto with IAM auth
  on, so the signature of the AssumeRole call and of the GetCallerIdentity
  call made with the session credentials are both verified by moto.
- AssumeRoleWithWebIdentity is unsigned by design, and moto with IAM auth
  refuses every unsigned action, so it runs against a moto without auth;
  GetCallerIdentity there still proves moto issued the session keys.

Prints "N passed, N failed" last; exits non-zero on any failure.
Nothing sleeps to synchronise: servers are ready when their socket is
bound, and the tool is stepped through stdin.
"""
from __future__ import annotations

import datetime
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "harness"))
from rwharness import Moto  # noqa: E402

TOOL = sys.argv[1] if len(sys.argv) > 1 else "creds_tool"
RESULTS: list[tuple[str, bool, str]] = []
WORK = Path(tempfile.mkdtemp(prefix="rw-creds-test-"))


def iso(seconds_from_now: int) -> str:
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds_from_now)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def base_env(**extra: str) -> dict[str, str]:
    """Only what the test sets: nothing of the runner's AWS setup leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(WORK)  # no ~/.aws of the runner
    env["AWS_CONFIG_FILE"] = str(WORK / "absent-config")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(WORK / "absent-credentials")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["AWS_REGION"] = "us-east-1"
    env.update(extra)
    return env


def run_tool(args: list[str], env: dict[str, str], stdin: str = "", timeout: float = 60):
    p = subprocess.run([TOOL, *args], env=env, input=stdin, capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout.splitlines(), p.stderr


def parse_line(line: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


def check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


def case(fn):
    name = fn.__name__
    try:
        fn()
        RESULTS.append((name, True, ""))
        print(f"ok - {name}", flush=True)
    except Exception as exc:  # noqa: BLE001
        RESULTS.append((name, False, repr(exc)))
        print(f"FAIL - {name}: {exc}", flush=True)
        traceback.print_exc()
    return fn


# --------------------------------------------------------------------------- servers

class _Server:
    """A ThreadingHTTPServer on a free loopback port, bound before start()
    returns, so it is ready without any waiting."""

    def __init__(self, handler_cls):
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()
        outer = self

        class H(handler_cls):
            server_state = outer

            def log_message(self, *a):  # quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def record(self, method, path, headers):
        with self.lock:
            self.requests.append((method, path, {k.lower(): v for k, v in headers.items()}))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        return False


def creds_doc(key: str, expires_in: int, kind: str) -> bytes:
    d = {"AccessKeyId": key, "SecretAccessKey": "secret-" + key, "Token": "token-" + key,
         "Expiration": iso(expires_in)}
    if kind == "imds":
        d.update({"Code": "Success", "Type": "AWS-HMAC", "LastUpdated": iso(0)})
    return json.dumps(d).encode()


class ImdsHandler(http.server.BaseHTTPRequestHandler):
    """IMDSv2: PUT /latest/api/token, then token-authenticated GETs."""
    server_state: "Imds"

    def _send(self, status: int, body: bytes = b"", ctype: str = "text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):
        s = self.server_state
        s.record("PUT", self.path, dict(self.headers))
        if self.path != "/latest/api/token":
            return self._send(404)
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        if not ttl or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self._send(400)
        with s.lock:
            s.token_serial += 1
            tok = f"imds-token-{s.token_serial}"
            s.tokens[tok] = s.token_uses
        self._send(200, tok.encode())

    def do_GET(self):
        s = self.server_state
        s.record("GET", self.path, dict(self.headers))
        tok = self.headers.get("X-aws-ec2-metadata-token")
        with s.lock:
            left = s.tokens.get(tok)
            if left is None or left == 0:
                return self._send(401)
            if left > 0:
                s.tokens[tok] = left - 1
        base = "/latest/meta-data/iam/security-credentials/"
        if self.path == base:
            return self._send(200, s.role.encode())
        if self.path == base + s.role:
            with s.lock:
                item = s.responses.pop(0) if len(s.responses) > 1 else s.responses[0]
            if isinstance(item, int):
                return self._send(item, b"unavailable")
            key, expires_in = item
            return self._send(200, creds_doc(key, expires_in, "imds"), "application/json")
        self._send(404)


class Imds(_Server):
    def __init__(self, responses, token_uses: int = -1, role: str = "rw-instance-role"):
        super().__init__(ImdsHandler)
        self.responses = list(responses)  # (key, expires_in) or an HTTP status; last repeats
        self.token_uses = token_uses      # GETs a token is good for; -1 unlimited
        self.tokens: dict[str, int] = {}
        self.token_serial = 0
        self.role = role

    def cred_gets(self):
        return [r for r in self.requests if r[0] == "GET" and r[1].endswith("/" + self.role)]


class ContainerHandler(http.server.BaseHTTPRequestHandler):
    server_state: "Container"

    def do_GET(self):
        s = self.server_state
        s.record("GET", self.path, dict(self.headers))
        if self.path != "/creds":
            body, status = b"", 404
        elif self.headers.get("Authorization") != s.expected_token():
            body, status = b'{"message":"bad token"}', 401
        else:
            with s.lock:
                key, expires_in = s.responses.pop(0) if len(s.responses) > 1 else s.responses[0]
            body, status = creds_doc(key, expires_in, "container"), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class Container(_Server):
    def __init__(self, responses, token_file: Path):
        super().__init__(ContainerHandler)
        self.responses = list(responses)
        self.token_file = token_file

    def expected_token(self) -> str:
        return self.token_file.read_text().strip()


# --------------------------------------------------------------------------- IMDS

@case
def imds_v2_basic():
    with Imds([("ASIAIMDS1", 3600)]) as imds:
        rc, out, err = run_tool([], base_env(AWS_EC2_METADATA_DISABLED="false",
                                             AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url + "/"))
        check(rc == 0, f"rc={rc} stderr={err}")
        d = parse_line(out[0])
        check(d["provider"] == "imds" and d["access_key_id"] == "ASIAIMDS1", out[0])
        check(d["token"] == "yes" and int(d["expiration"]) > 0, out[0])
        check("secret-ASIAIMDS1" not in "".join(out) + err, "the secret was printed")
        first = imds.requests[0]
        check(first[0] == "PUT" and first[2].get("x-aws-ec2-metadata-token-ttl-seconds") == "21600",
              f"first request {first[:2]}")
        gets = [r for r in imds.requests if r[0] == "GET"]
        check(len(gets) == 2 and all(g[2].get("x-aws-ec2-metadata-token") for g in gets),
              f"GETs {[(g[1], 'x-aws-ec2-metadata-token' in g[2]) for g in gets]}")


@case
def imds_get_without_token_is_refused():
    # The server the tool is tested against really enforces IMDSv2.
    import urllib.error
    import urllib.request
    with Imds([("ASIAIMDS1", 3600)]) as imds:
        try:
            urllib.request.urlopen(imds.url + "/latest/meta-data/iam/security-credentials/", timeout=5)
            raise AssertionError("GET without a token was answered")
        except urllib.error.HTTPError as e:
            check(e.code == 401, f"status {e.code}")


@case
def imds_token_rejected_is_fetched_again():
    # Each token is good for one GET: the tool must see 401 and PUT again.
    with Imds([("ASIAIMDS2", 3600)], token_uses=1) as imds:
        rc, out, err = run_tool([], base_env(AWS_EC2_METADATA_DISABLED="false",
                                             AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url))
        check(rc == 0, f"rc={rc} stderr={err}")
        check(parse_line(out[0])["access_key_id"] == "ASIAIMDS2", out[0])
        puts = [r for r in imds.requests if r[0] == "PUT"]
        check(len(puts) == 2, f"{len(puts)} token requests")


@case
def imds_refreshes_credentials_that_expire_soon():
    # 120 s left is inside a 300 s refresh window: the second get refreshes.
    with Imds([("ASIAOLD", 120), ("ASIANEW", 3600)]) as imds:
        rc, out, err = run_tool(["--refresh-ahead", "300", "--gets", "3"],
                                base_env(AWS_EC2_METADATA_DISABLED="false",
                                         AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url))
        check(rc == 0, f"rc={rc} stderr={err}")
        keys = [parse_line(line)["access_key_id"] for line in out]
        check(keys == ["ASIAOLD", "ASIANEW", "ASIANEW"], f"keys {keys}")
        check(len(imds.cred_gets()) == 2, f"{len(imds.cred_gets())} credential fetches")
        # The session token is cached across refreshes: one PUT.
        check(len([r for r in imds.requests if r[0] == "PUT"]) == 1, "token not reused")


@case
def imds_failed_refresh_keeps_valid_credentials():
    with Imds([("ASIAKEEP", 120), 500]) as imds:
        rc, out, err = run_tool(["--refresh-ahead", "300", "--gets", "2"],
                                base_env(AWS_EC2_METADATA_DISABLED="false",
                                         AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url))
        check(rc == 0, f"rc={rc} stderr={err}")
        keys = [parse_line(line)["access_key_id"] for line in out]
        check(keys == ["ASIAKEEP", "ASIAKEEP"], f"keys {keys}")
        check(len(imds.cred_gets()) >= 2, "no refresh was attempted")
        check("Refreshing AWS credentials failed" in err, f"no warning logged: {err}")


@case
def imds_invalidated_and_unavailable_is_an_error():
    with Imds([("ASIAGONE", 3600), 500]) as imds:
        rc, out, err = run_tool(["--gets", "2", "--invalidate"],
                                base_env(AWS_EC2_METADATA_DISABLED="false",
                                         AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url))
        check(rc == 1, f"rc={rc} out={out}")
        check(parse_line(out[0])["access_key_id"] == "ASIAGONE", out[0])
        check("HTTP 500" in err and "imds" in err, err)


@case
def imds_disabled_is_not_asked():
    with Imds([("ASIANO", 3600)]) as imds:
        rc, out, err = run_tool([], base_env(AWS_EC2_METADATA_DISABLED="true",
                                             AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url))
        check(rc == 1 and "code=NoCredentials" in out[0], f"rc={rc} out={out}")
        check("AWS_EC2_METADATA_DISABLED" in err, err)
        check(imds.requests == [], f"IMDS was asked: {imds.requests}")


@case
def imds_unreachable_means_no_credentials():
    # A port nothing listens on: refused at once, reported as "not reachable".
    with Imds([("X", 1)]) as imds:
        dead = imds.url
    rc, out, err = run_tool([], base_env(AWS_EC2_METADATA_DISABLED="false",
                                         AWS_EC2_METADATA_SERVICE_ENDPOINT=dead))
    check(rc == 1 and "code=NoCredentials" in out[0], f"rc={rc} out={out}")
    check("not reachable" in err, err)


# --------------------------------------------------------------------------- container

@case
def container_with_rotated_token_file():
    token_file = WORK / "container-token"
    token_file.write_text("first-token\n")
    with Container([("ASIACTR1", 120), ("ASIACTR2", 3600)], token_file) as ctr:
        env = base_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=ctr.url + "/creds",
                       AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(token_file),
                       AWS_CONTAINER_AUTHORIZATION_TOKEN="ignored-when-the-file-is-set")
        p = subprocess.Popen([TOOL, "--refresh-ahead", "300", "--gets", "2", "--step"], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            first = p.stdout.readline()
            # The agent rotates the token; the server now accepts only the new one.
            token_file.write_text("second-token\n")
            p.stdin.write("\n")
            p.stdin.flush()
            second = p.stdout.readline()
            p.stdin.close()
            rc = p.wait(timeout=60)
            err = p.stderr.read()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        check(rc == 0, f"rc={rc} stderr={err}")
        check(parse_line(first)["provider"] == "container", first)
        check(parse_line(first)["access_key_id"] == "ASIACTR1", first)
        check(parse_line(second)["access_key_id"] == "ASIACTR2", second)
        auths = [r[2].get("authorization") for r in ctr.requests]
        check(auths == ["first-token", "second-token"], f"Authorization headers {auths}")


@case
def container_bad_token_is_an_error():
    token_file = WORK / "container-token-2"
    token_file.write_text("right")
    with Container([("ASIACTR", 3600)], token_file) as ctr:
        rc, out, err = run_tool([], base_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=ctr.url + "/creds",
                                             AWS_CONTAINER_AUTHORIZATION_TOKEN="wrong"))
        check(rc == 1, f"rc={rc} out={out}")
        check("container: HTTP 401" in err, err)
        check("wrong" not in err, "the token was printed")


@case
def container_beats_imds_and_env_beats_container():
    token_file = WORK / "container-token-3"
    token_file.write_text("t")
    with Container([("ASIACTR", 3600)], token_file) as ctr, Imds([("ASIAIMDS", 3600)]) as imds:
        env = base_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=ctr.url + "/creds",
                       AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(token_file),
                       AWS_EC2_METADATA_DISABLED="false",
                       AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url)
        rc, out, err = run_tool([], env)
        check(rc == 0 and parse_line(out[0])["provider"] == "container", f"{out} {err}")
        check(imds.requests == [], "IMDS was asked although the container answered")
        env.update(AWS_ACCESS_KEY_ID="AKIAENV", AWS_SECRET_ACCESS_KEY="envsecret")
        rc, out, err = run_tool([], env)
        check(rc == 0 and parse_line(out[0])["provider"] == "environment", f"{out} {err}")
        check(parse_line(out[0])["token"] == "no", out[0])


# --------------------------------------------------------------------------- STS

class CredsMoto(Moto):
    # The harness user may use STS; this test also creates the roles it assumes.
    POLICY_ACTIONS = Moto.POLICY_ACTIONS + ["iam:*"]


def make_role(moto: Moto, name: str, principal: str) -> str:
    # moto matches the trust policy's principal literally (no account-root
    # expansion), so name the exact caller.
    iam = moto.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"AWS": principal}}]}
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    allow = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:*",
             "Resource": "*"}]}
    iam.put_role_policy(RoleName=name, PolicyName="sts", PolicyDocument=json.dumps(allow))
    return arn


def sts_cases():
    with CredsMoto(iam_auth=True) as moto:
        acct = moto.account_id
        role1 = make_role(moto, "rw-target", f"arn:aws:iam::{acct}:user/{moto.USER}")
        role2 = make_role(moto, "rw-second-hop", f"arn:aws:sts::{acct}:assumed-role/rw-target/rw-session")
        config = WORK / "sts-config"
        creds = WORK / "sts-credentials"
        config.write_text(
            f"[profile target]\nrole_arn = {role1}\nsource_profile = base\n"
            f"role_session_name = rw-session\nduration_seconds = 900\n"
            f"[profile hop2]\nrole_arn = {role2}\nsource_profile = target\n"
            f"[profile badbase]\nrole_arn = {role1}\nsource_profile = wrong\n")
        creds.write_text(f"[base]\naws_access_key_id = {moto.creds[0]}\n"
                         f"aws_secret_access_key = {moto.creds[1]}\n"
                         f"[wrong]\naws_access_key_id = {moto.bad_creds[0]}\n"
                         f"aws_secret_access_key = {moto.bad_creds[1]}\n")
        env = base_env(AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=str(creds),
                       AWS_ENDPOINT_URL_STS=moto.endpoint)

        @case
        def sts_assume_role_signed_and_accepted():
            rc, out, err = run_tool(["--profile", "target", "--sts-identity"], env)
            check(rc == 0, f"rc={rc} out={out} stderr={err}")
            d = parse_line(out[0])
            check(d["provider"] == "sts-assume-role" and d["token"] == "yes", out[0])
            check(d["access_key_id"] != moto.creds[0], "got the source keys, not session keys")
            exp = int(d["expiration"])
            now = datetime.datetime.now(datetime.timezone.utc).timestamp()
            check(now + 600 < exp <= now + 960, f"expiration {exp} not ~900 s ahead")
            check(out[1] == f"identity_arn=arn:aws:sts::{moto.account_id}:assumed-role/rw-target/rw-session",
                  out[1])

        @case
        def sts_source_profile_chain_two_hops():
            rc, out, err = run_tool(["--sts-identity"], dict(env, AWS_PROFILE="hop2"))
            check(rc == 0, f"rc={rc} out={out} stderr={err}")
            check("assumed-role/rw-second-hop/" in out[1], out[1])

        @case
        def sts_wrong_source_secret_is_refused():
            rc, out, err = run_tool(["--profile", "badbase"], env)
            check(rc == 1, f"rc={rc} out={out}")
            check("sts-assume-role" in err and "AssumeRole" in err, err)
            check("SignatureDoesNotMatch" in err or "InvalidClientTokenId" in err, err)
            check(moto.bad_creds[1] not in err, "the secret was printed")

        @case
        def session_credentials_with_wrong_token_are_refused():
            # Proves moto really checks what we sign with: the session keys
            # from AssumeRole without their token are refused.
            rc, out, err = run_tool(["--profile", "target"], env)
            key = parse_line(out[0])["access_key_id"]
            check(rc == 0 and key.startswith("ASIA"), f"{out} {err}")
            rc, out, err = run_tool(["--sts-identity"],
                                    dict(env, AWS_ACCESS_KEY_ID=key,
                                         AWS_SECRET_ACCESS_KEY="not-the-session-secret",
                                         AWS_SESSION_TOKEN="not-the-session-token"))
            check(rc == 2, f"rc={rc} out={out} stderr={err}")


def web_identity_cases():
    # moto with IAM auth refuses unsigned actions, and AssumeRoleWithWebIdentity
    # is unsigned by design: this part runs against moto without auth.
    with Moto(iam_auth=False) as moto:
        token = WORK / "web-identity-token"
        token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJydyJ9.c2ln\n")
        role = f"arn:aws:iam::{moto.account_id}:role/rw-web"

        @case
        def web_identity_from_environment():
            env = base_env(AWS_WEB_IDENTITY_TOKEN_FILE=str(token), AWS_ROLE_ARN=role,
                           AWS_ROLE_SESSION_NAME="rw-web-session",
                           AWS_ENDPOINT_URL_STS=moto.endpoint)
            rc, out, err = run_tool(["--sts-identity"], env)
            check(rc == 0, f"rc={rc} out={out} stderr={err}")
            d = parse_line(out[0])
            check(d["provider"] == "web-identity" and d["token"] == "yes", out[0])
            check(out[1].endswith("assumed-role/rw-web/rw-web-session"), out[1])

        @case
        def web_identity_from_profile():
            config = WORK / "web-config"
            config.write_text(f"[default]\nrole_arn = {role}\nweb_identity_token_file = {token}\n")
            env = base_env(AWS_CONFIG_FILE=str(config), AWS_ENDPOINT_URL_STS=moto.endpoint)
            rc, out, err = run_tool(["--sts-identity"], env)
            check(rc == 0, f"rc={rc} out={out} stderr={err}")
            check(parse_line(out[0])["provider"] == "web-identity", out[0])
            check("assumed-role/rw-web/rarewatch-" in out[1], out[1])

        @case
        def web_identity_env_beats_profile_keys():
            creds = WORK / "web-credentials"
            creds.write_text("[default]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = s\n")
            env = base_env(AWS_SHARED_CREDENTIALS_FILE=str(creds), AWS_WEB_IDENTITY_TOKEN_FILE=str(token),
                           AWS_ROLE_ARN=role, AWS_ENDPOINT_URL_STS=moto.endpoint)
            rc, out, err = run_tool([], env)
            check(rc == 0 and parse_line(out[0])["provider"] == "web-identity", f"{out} {err}")


def main() -> int:
    for group in (sts_cases, web_identity_cases):
        try:
            group()
        except Exception as exc:  # noqa: BLE001 - a set-up failure fails the group
            RESULTS.append((group.__name__, False, repr(exc)))
            print(f"FAIL - {group.__name__}: {exc}", flush=True)
            traceback.print_exc()
    subprocess.run(["rm", "-rf", str(WORK)], check=False)
    passed = sum(1 for r in RESULTS if r[1])
    failed = len(RESULTS) - passed
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not RESULTS else 0


if __name__ == "__main__":
    sys.exit(main())
