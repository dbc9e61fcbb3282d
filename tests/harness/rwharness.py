"""rarewatch test harness: real local AWS emulators and a fault-injecting proxy.

Stdlib + boto3/botocore only.  Used by the integration tests and by
tests/harness/selftest.py, which proves every piece of it works.

    with Moto() as moto, KinesisLocal(shards=2, stream="in") as kin, \\
         FaultProxy(moto.endpoint, resign_creds=moto.creds) as proxy:
        proxy.add_rule({"action": "PutRecordBatch", "kind": "partial", "fraction": 0.25})
        env = {**os.environ, **moto.env(), "AWS_ENDPOINT_URL_FIREHOSE": proxy.endpoint,
               "AWS_ENDPOINT_URL_KINESIS": kin.endpoint}
        ... run rarewatchd with env, then wait_for(...) on proxy.stats() / S3 objects ...

Nothing here synchronises with sleeps: start-up waits poll a real condition
(port accepting, then a real API answer) against a deadline (wait_for).
"""

from __future__ import annotations

import copy
import http.client
import http.server
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

HARNESS_DIR = Path(__file__).resolve().parent
NODE_MODULES = HARNESS_DIR / "node_modules"
LOOPBACK_PRELOAD = HARNESS_DIR / "loopback-only.cjs"
REGION = "us-east-1"
LOOPBACK = "127.0.0.1"

# Dummy credentials for emulators that do not check signatures (kinesis-local,
# dynalite) and for moto's unauthenticated set-up window.  Deliberately not a
# 12-digit number: kinesis-local treats a 12-digit access key id as an account id.
DUMMY_CREDS = ("AKIDRAREWATCHTEST", "rarewatch-test-secret")

__all__ = [
    "free_port", "wait_for", "port_open", "Moto", "KinesisLocal", "Dynalite",
    "FaultProxy", "read_firehose_s3_objects", "parse_ndjson_objects", "HarnessError", "REGION", "aws_client",
    "DUMMY_CREDS",
]


class HarnessError(RuntimeError):
    pass


# --------------------------------------------------------------------------- utils

def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free on `host` a moment ago (the kernel picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = LOOPBACK) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition",
             interval: float = 0.02, max_interval: float = 0.25) -> Any:
    """Poll `predicate` until it returns a truthy value; return that value.

    Exceptions raised by the predicate count as "not yet" (the last one is
    reported on timeout), except HarnessError, which aborts at once (used for
    "the process we are waiting for has died").  The pause between polls is a
    poll interval, never a synchronisation: the deadline is what bounds it.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    pause = interval
    while True:
        try:
            value = predicate()
            if value:
                return value
        except HarnessError:
            raise
        except Exception as exc:  # noqa: BLE001 - "not ready yet"
            last_exc = exc
        now = time.monotonic()
        if now >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(min(pause, max(0.0, deadline - now)))
        pause = min(pause * 1.5, max_interval)


def _client(service: str, endpoint: str, creds: tuple[str, str], region: str = REGION,
            max_attempts: int = 1, timeout: float = 10.0, **config: Any):
    """A boto3 client; retries off by default so tests see exactly what happened."""
    cfg = Config(retries={"mode": "standard", "total_max_attempts": max_attempts},
                 connect_timeout=timeout, read_timeout=timeout, **config)
    return boto3.client(service, endpoint_url=endpoint, region_name=region,
                        aws_access_key_id=creds[0], aws_secret_access_key=creds[1],
                        config=cfg)


aws_client = _client  # public name: aws_client("kinesis", proxy.endpoint, creds)


def _tail(path: Path | None, n: int = 4000) -> str:
    if not path:
        return ""
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child if the harness process dies, so a killed test
    (timeout, ^C) leaves no emulator behind even though it runs in its own session."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _Process:
    """A child process in its own session, logged to a file, stopped by pid."""

    name = "process"
    stop_grace = 10.0  # seconds between SIGTERM and SIGKILL
    # False for emulators.sh, which leaves them running after the harness exits.
    # (PDEATHSIG follows the forking *thread*: start emulators from a thread that
    # outlives them, e.g. the main one.)
    die_with_parent = True

    def __init__(self, log_dir: str | os.PathLike | None = None):
        self.proc: subprocess.Popen | None = None
        self._own_log_dir = log_dir is None
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix=f"rw-{self.name}-"))
        self.log_path: Path | None = None

    def _spawn(self, argv: list[str], env: dict[str, str], cwd: str | os.PathLike | None = None):
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"{self.name}.log"
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(argv, env=env, cwd=str(cwd or self.log_dir),
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent if self.die_with_parent
                                         else None)
        finally:
            log.close()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            rc = None if self.proc is None else self.proc.returncode
            raise HarnessError(f"{self.name} exited (rc={rc}); log tail:\n{_tail(self.log_path)}")

    def stop(self, timeout: float | None = None) -> None:
        timeout = self.stop_grace if timeout is None else timeout
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        # Our child leads its own process group (start_new_session); signal only it.
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10.0)

    def __str__(self) -> str:
        return getattr(self, "endpoint", "") or f"<{self.name} not started>"

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        if self._own_log_dir and exc[0] is None:
            shutil.rmtree(self.log_dir, ignore_errors=True)
        return False

    def start(self):
        """Start and wait until ready.  free_port() can race with another program
        taking the port before the emulator binds it: that is retried."""
        for attempt in range(3):
            try:
                return self._start_once()
            except (HarnessError, TimeoutError) as exc:
                text = str(exc) + _tail(self.log_path)
                self.stop()
                if attempt == 2 or not ("EADDRINUSE" in text or "already in use" in text):
                    raise
                self._reset_ports()

    def _reset_ports(self) -> None:
        pass

    def _start_once(self):  # pragma: no cover - overridden
        raise NotImplementedError


def _node() -> str:
    node = shutil.which("node")
    if not node:
        raise HarnessError("node is not on PATH (needed for kinesis-local and dynalite)")
    return node


def _require_node_module(pkg: str, rel: str) -> Path:
    p = NODE_MODULES / pkg / rel
    if not p.exists():
        raise HarnessError(f"{p} is missing: run tests/harness/install-deps.sh")
    return p


# --------------------------------------------------------------------------- moto

class Moto(_Process):
    """moto server on a free loopback port, optionally with IAM auth really on.

    moto counts "actions" in one process-wide counter: every request that reaches
    a service's action dispatcher (BaseResponse.call_action, and S3's per-operation
    checks) increments it while it is below INITIAL_NO_AUTH_ACTION_COUNT, and is
    served unauthenticated; from then on every request has its SigV4 signature
    recomputed with the secret of the access key it names and its action checked
    against that user's IAM policies.  Requests to /moto-api/ do not count, nor
    do connections that never reach a service.  So the harness waits for
    readiness through /moto-api/ (not counted), then makes exactly SETUP_CALLS
    IAM calls with retries off (a botocore retry would count twice), and then
    nothing else may talk to this server before the set-up is done.
    """

    name = "moto"
    SETUP_CALLS = 4  # CreateUser, CreatePolicy, AttachUserPolicy, CreateAccessKey
    USER = "rarewatch-test"
    # moto names an action after the request's SigV4 signing name, and CloudWatch
    # signs as "monitoring": real IAM says cloudwatch:PutMetricData, moto checks
    # monitoring:PutMetricData.  Both are granted.
    POLICY_ACTIONS = ["kinesis:*", "firehose:*", "cloudwatch:*", "monitoring:*", "dynamodb:*",
                      "s3:*", "sts:*", "iam:PassRole"]

    def __init__(self, iam_auth: bool = True, region: str = REGION, port: int | None = None,
                 log_dir: str | os.PathLike | None = None, startup_timeout: float = 60.0):
        super().__init__(log_dir)
        self.iam_auth = iam_auth
        self.region = region
        self.port = port
        self._fixed_port = port is not None
        self.startup_timeout = startup_timeout
        self.endpoint = ""
        self.creds: tuple[str, str] = DUMMY_CREDS
        self.bad_creds: tuple[str, str] = DUMMY_CREDS
        self.account_id = "123456789012"

    def _reset_ports(self) -> None:
        if not self._fixed_port:
            self.port = None

    def _start_once(self) -> "Moto":
        self.port = self.port or free_port()
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("AWS_ENDPOINT_URL"):
                del env[k]
        if self.iam_auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(self.SETUP_CALLS)
        else:
            env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        python = os.environ.get("RAREWATCH_MOTO_PYTHON") or sys.executable
        self._spawn([python, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.port)], env)

        def ready():
            self.check_alive()
            if not port_open(self.port):
                return False
            # /moto-api/ is outside the counted actions, so probing it costs no
            # unauthenticated call.
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=2) as r:
                return r.status == 200
        wait_for(ready, self.startup_timeout, f"moto server on port {self.port}")
        if self.iam_auth:
            self._setup_iam()
        return self

    def _setup_iam(self) -> None:
        iam = _client("iam", self.endpoint, DUMMY_CREDS, self.region, max_attempts=1)
        # The next SETUP_CALLS calls are the only unauthenticated ones; keep the count exact.
        iam.create_user(UserName=self.USER)
        doc = {"Version": "2012-10-17",
               "Statement": [{"Effect": "Allow", "Action": self.POLICY_ACTIONS, "Resource": "*"}]}
        arn = iam.create_policy(PolicyName="rarewatch-test-all",
                                PolicyDocument=json.dumps(doc))["Policy"]["Arn"]
        iam.attach_user_policy(UserName=self.USER, PolicyArn=arn)
        key = iam.create_access_key(UserName=self.USER)["AccessKey"]
        self.creds = (key["AccessKeyId"], key["SecretAccessKey"])
        self.bad_creds = (key["AccessKeyId"], key["SecretAccessKey"][:-4] + "XXXX")
        self.account_id = arn.split(":")[4]
        # Auth must now be on.  The wrong secret goes first: had moto still been in
        # its unauthenticated window (count too high), it would have been accepted.
        try:
            self.client("kinesis", creds=self.bad_creds).list_streams()
        except Exception as exc:  # noqa: BLE001
            # moto answers auth failures as 403 with a query-protocol XML body even
            # to JSON-protocol services, so botocore may not parse the code: look at
            # the text too.
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if "SignatureDoesNotMatch" not in code + str(exc):
                raise HarnessError(f"moto refused a wrong secret, but not for its signature: {exc!r}")
        else:
            raise HarnessError("moto accepted a wrong secret: IAM auth is not on")
        self.client("kinesis").list_streams()

    def client(self, service: str, creds: tuple[str, str] | None = None, **kw):
        """boto3 client for `service` on this moto, signed with the test user's key."""
        return _client(service, self.endpoint, creds or self.creds, self.region, **kw)

    def env(self) -> dict[str, str]:
        """Environment for a program under test (AWS SDK conventions)."""
        e = {"AWS_ACCESS_KEY_ID": self.creds[0], "AWS_SECRET_ACCESS_KEY": self.creds[1],
             "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        for svc in ("KINESIS", "FIREHOSE", "CLOUDWATCH", "DYNAMODB", "S3", "STS", "IAM"):
            e[f"AWS_ENDPOINT_URL_{svc}"] = self.endpoint
        return e

    def create_firehose_to_s3(self, stream: str, bucket: str, prefix: str = "") -> str:
        """A bucket and a DirectPut delivery stream into it.  moto delivers at once:
        one S3 object per PutRecord/PutRecordBatch call, no buffering."""
        s3 = self.client("s3")
        s3.create_bucket(Bucket=bucket)
        fh = self.client("firehose")
        arn = fh.create_delivery_stream(
            DeliveryStreamName=stream, DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": f"arn:aws:iam::{self.account_id}:role/rarewatch-firehose",
                "BucketARN": f"arn:aws:s3:::{bucket}", "Prefix": prefix,
                "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60}},
        )["DeliveryStreamARN"]
        return arn


def read_firehose_s3_objects(moto: Moto, bucket: str | None = None,
                             prefix: str = "") -> list[tuple[str, str, bytes]]:
    """Every object Firehose delivered, as (bucket, key, body), sorted by key
    (moto's keys start with the delivery time, so that is delivery order to the
    second).  bucket=None reads every bucket."""
    s3 = moto.client("s3")
    buckets = [bucket] if bucket else [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
    out = []
    for b in buckets:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b):
            for obj in page.get("Contents", []):
                if not obj["Key"].startswith(prefix):
                    continue
                body = s3.get_object(Bucket=b, Key=obj["Key"])["Body"].read()
                out.append((b, obj["Key"], body))
    out.sort(key=lambda t: (t[0], t[1]))
    return out


def parse_ndjson_objects(objects) -> tuple[list, list]:
    """The JSON lines of delivered objects, given as (key, body) pairs, and the
    problems: (key, "object does not end with a newline") or (key, the first
    bytes of a line that is not JSON)."""
    out, bad = [], []
    for key, body in objects:
        if body and not body.endswith(b"\n"):
            bad.append((key, "object does not end with a newline"))
        for raw in body.split(b"\n"):
            if not raw:
                continue
            try:
                out.append(json.loads(raw))
            except ValueError:
                bad.append((key, raw[:120]))
    return out, bad


# --------------------------------------------------------------------------- kinesis-local

class KinesisLocal(_Process):
    """kinesis-local (kinesis-mock) on explicit free ports.

    It opens a TLS port and a plain HTTP port and has no option for the bind
    address (it binds 0.0.0.0); loopback-only.cjs is preloaded to force
    127.0.0.1.  `endpoint` is the plain HTTP port; `tls_endpoint` the TLS one
    (self-signed certificate from its server.json).
    """

    name = "kinesis-local"
    # On SIGTERM it waits for clients to close their keep-alive connections
    # (boto3, a daemon under test): holding one delays exit by about 10 s.  Its
    # state is in memory and worthless after a test, so do not wait long.
    stop_grace = 1.0

    def __init__(self, shards: int = 1, stream: str | None = "rarewatch-test",
                 region: str = REGION, log_dir: str | os.PathLike | None = None,
                 extra_env: dict[str, str] | None = None, startup_timeout: float = 60.0):
        super().__init__(log_dir)
        self.shards = shards
        self.stream = stream
        self.region = region
        self.extra_env = extra_env or {}
        self.startup_timeout = startup_timeout
        self.port = self.tls_port = 0
        self.endpoint = self.tls_endpoint = ""
        self.creds = DUMMY_CREDS

    def _start_once(self) -> "KinesisLocal":
        main = _require_node_module("kinesis-local", "main.js")
        cert = _require_node_module("kinesis-local", "server.json")
        self.port, self.tls_port = free_port(), free_port()
        while self.tls_port == self.port:
            self.tls_port = free_port()
        env = dict(os.environ)
        env.update({"KINESIS_MOCK_CERT_PATH": str(cert),
                    "KINESIS_MOCK_PLAIN_PORT": str(self.port),
                    "KINESIS_MOCK_TLS_PORT": str(self.tls_port),
                    "AWS_REGION": self.region, "LOG_LEVEL": "WARN",
                    "SHOULD_PERSIST_DATA": "false"})
        if self.stream:
            env["INITIALIZE_STREAMS"] = f"{self.stream}:{self.shards}:{self.region}"
        else:
            env.pop("INITIALIZE_STREAMS", None)
        env.update(self.extra_env)
        self._spawn([_node(), "-r", str(LOOPBACK_PRELOAD), str(main)], env)
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        self.tls_endpoint = f"https://{LOOPBACK}:{self.tls_port}"
        kin = self.client(timeout=2.0)

        def ready():
            self.check_alive()
            if not port_open(self.port):
                return False
            names = kin.list_streams()["StreamNames"]
            if not self.stream:
                return True
            return (self.stream in names and kin.describe_stream_summary(StreamName=self.stream)
                    ["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE")
        wait_for(ready, self.startup_timeout, f"kinesis-local on port {self.port}")
        return self

    def client(self, **kw):
        return _client("kinesis", self.endpoint, self.creds, self.region, **kw)

    def wait_active(self, stream: str | None = None, timeout: float = 30.0) -> None:
        kin = self.client()
        name = stream or self.stream
        wait_for(lambda: kin.describe_stream_summary(StreamName=name)
                 ["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE",
                 timeout, f"stream {name} ACTIVE")


# --------------------------------------------------------------------------- dynalite

class Dynalite(_Process):
    """dynalite (DynamoDB on LevelDB, in memory) on a free loopback port."""

    name = "dynalite"

    def __init__(self, log_dir: str | os.PathLike | None = None, region: str = REGION,
                 create_table_ms: int = 500, delete_table_ms: int = 500,
                 update_table_ms: int = 500, startup_timeout: float = 60.0):
        super().__init__(log_dir)
        self.region = region
        self.ms = (create_table_ms, delete_table_ms, update_table_ms)
        self.startup_timeout = startup_timeout
        self.port = 0
        self.endpoint = ""
        self.creds = DUMMY_CREDS

    def _start_once(self) -> "Dynalite":
        cli = _require_node_module("dynalite", "cli.js")
        self.port = free_port()
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        c, d, u = self.ms
        self._spawn([_node(), str(cli), "--host", LOOPBACK, "--port", str(self.port),
                     "--createTableMs", str(c), "--deleteTableMs", str(d),
                     "--updateTableMs", str(u)], dict(os.environ))
        ddb = self.client(timeout=2.0)

        def ready():
            self.check_alive()
            return port_open(self.port) and "TableNames" in ddb.list_tables()
        wait_for(ready, self.startup_timeout, f"dynalite on port {self.port}")
        return self

    def client(self, **kw):
        return _client("dynamodb", self.endpoint, self.creds, self.region, **kw)

    def wait_table_active(self, table: str, timeout: float = 30.0) -> None:
        ddb = self.client()
        wait_for(lambda: ddb.describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE",
                 timeout, f"table {table} ACTIVE")


# --------------------------------------------------------------------------- fault proxy

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
               "trailers", "transfer-encoding", "upgrade", "content-length",
               "proxy-connection"}
FAULT_KINDS = ("throttle", "http_error", "reset", "delay", "html", "truncated", "partial",
               "outage")
_PARTIAL_DEFAULTS = {
    "PutRecords": ("Records", "Records", "FailedRecordCount",
                   ["ProvisionedThroughputExceededException", "InternalFailure"]),
    "PutRecordBatch": ("Records", "RequestResponses", "FailedPutCount",
                       ["ServiceUnavailableException", "InternalFailure"]),
}
_HTML_PAGE = ("<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
              "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
              "</body>\r\n</html>\r\n")


def _cbor_str(s: str) -> bytes:
    b = s.encode()
    return _cbor_head(3, len(b)) + b


def _cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([(major << 5) | n])
    if n < 256:
        return bytes([(major << 5) | 24, n])
    if n < 65536:
        return bytes([(major << 5) | 25]) + struct.pack(">H", n)
    return bytes([(major << 5) | 26]) + struct.pack(">I", n)


def _cbor_error(fields: dict[str, str]) -> bytes:
    out = _cbor_head(5, len(fields))
    for k, v in fields.items():
        out += _cbor_str(k) + _cbor_str(v)
    return out


def _error_code(body: bytes) -> str:
    """The error code of an AWS error answer (JSON __type or query-protocol XML <Code>)."""
    try:
        return str(json.loads(body).get("__type", "")).rsplit("#", 1)[-1]
    except (ValueError, AttributeError):
        pass
    i = body.find(b"<Code>")
    return body[i + 6:body.find(b"</Code>", i)].decode(errors="replace") if i >= 0 else ""


class _Req:
    """What the proxy knows about one incoming request."""

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes):
        self.method, self.path, self.headers, self.body = method, path, headers, body
        h = {k.lower(): v for k, v in headers.items()}
        self.lheaders = h
        self.target = h.get("x-amz-target", "")
        self.ctype = h.get("content-type", "")
        self.protocol = "json"
        action = ""
        if self.target:
            action = self.target.rsplit(".", 1)[-1]
        elif "/operation/" in path:  # smithy rpc-v2-cbor (botocore's CloudWatch default)
            action = path.split("?")[0].rsplit("/operation/", 1)[-1]
            self.protocol = "cbor"
        else:
            q = urllib.parse.urlsplit(path).query
            params = urllib.parse.parse_qs(q)
            if "x-www-form-urlencoded" in self.ctype:
                params.update(urllib.parse.parse_qs(body.decode("utf-8", "replace")))
            action = (params.get("Action") or [""])[0]
            self.protocol = "query"
        self.action = action or f"{method} {urllib.parse.urlsplit(path).path}"
        self.service_prefix = self.target.split("_", 1)[0] if self.target else ""
        auth = h.get("authorization", "")
        self.scope_region = self.scope_service = None
        if "Credential=" in auth:
            try:
                scope = auth.split("Credential=", 1)[1].split(",", 1)[0].strip().split("/")
                self.scope_region, self.scope_service = scope[2], scope[3]
            except IndexError:
                pass


class FaultProxy:
    """HTTP/1.1 reverse proxy that injects AWS-shaped faults per action.

    A rule is a dict:
      action   X-Amz-Target suffix ("PutRecords"), query Action ("PutMetricData"),
               rpc-v2-cbor operation, or "*" for every action.
      kind     throttle | http_error | reset | delay | html | truncated | partial | outage
      count    how many times it fires (default 1; None = unlimited; outage: unlimited)
      skip     matching requests to let through before it starts firing (default 0)
      when     "before" (default) or "after" forwarding, for http_error/reset: "after"
               means upstream applied the request and the client still saw a failure.
    kind-specific:
      throttle:   error (default ProvisionedThroughputExceededException for Kinesis and
                  DynamoDB, ThrottlingException otherwise; query protocol: Throttling),
                  status (400)
      http_error: status (500; 503 gives ServiceUnavailable), error (its __type)
      delay:      seconds (forward, then hold the response that long)
      html:       status (502) - a proxy's HTML error page instead of AWS JSON
      truncated:  forwarded; the upstream body is cut in half, Content-Length agrees
      partial:    Kinesis PutRecords / Firehose PutRecordBatch only: fraction (0..1) of
                  entries (rounded, at least 1) fail with error_codes (random choice);
                  the others are forwarded, the answers merged back in the original
                  order with FailedRecordCount/FailedPutCount corrected.
      outage:     every request to the action gets 503 ServiceUnavailable while the rule
                  is installed (outage(action, False) removes it).

    Runtime control over HTTP for tests driving a C program:
      GET  /__proxy/stats          counters (JSON)
      GET  /__proxy/rules          the installed rules
      POST /__proxy/rules          {"rules":[...]} replaces, {"add":[...]} appends,
                                   {"outage":{"action":"X","on":true}}, {"clear":true}
      POST /__proxy/reset          zero the counters

    record=True keeps every request that reached the proxy in self.requests (a
    list of dicts: method, path, headers (lower-case names), body, action,
    protocol, scope_service, status once upstream answered and error, the
    error code of a non-2xx answer), for tests
    that check what a program asked for (e.g. each call against an IAM policy).
    """

    def __init__(self, upstream: str, rules: list[dict] | None = None,
                 resign_creds: tuple[str, str] | None = None, resign: str = "modified",
                 seed: int | None = 1234, port: int = 0, upstream_timeout: float = 30.0,
                 record: bool = False):
        u = urllib.parse.urlsplit(upstream)
        if u.scheme != "http":
            raise ValueError("FaultProxy forwards to plain-http upstreams only")
        self.upstream = upstream.rstrip("/")
        self.up_host, self.up_port = u.hostname, u.port or 80
        self.resign_creds = resign_creds
        if resign not in ("modified", "always"):
            raise ValueError("resign must be 'modified' or 'always'")
        self.resign = resign
        self.rng = random.Random(seed)
        self.upstream_timeout = upstream_timeout
        self._lock = threading.Lock()
        self._rules: list[dict] = []
        self._stats: dict[str, dict] = {}
        self.partial_log: list[dict] = []  # every partial failure: action, n, failed indices
        self.record = record
        self.requests: list[dict] = []  # with record=True: every request (see above)
        self._stopping = threading.Event()
        self._port = port
        self.server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.set_rules(rules or [])

    # ---- lifecycle
    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(_ProxyHandler):
            pass
        Handler.proxy = proxy
        self.server = http.server.ThreadingHTTPServer((LOOPBACK, self._port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"fault-proxy-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def __str__(self) -> str:
        return getattr(self, "endpoint", "") or "<fault proxy not started>"

    # ---- rules
    @staticmethod
    def _norm(rule: dict) -> dict:
        r = dict(rule)
        if r.get("kind") not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {r.get('kind')!r}; one of {FAULT_KINDS}")
        r.setdefault("action", "*")
        if r["kind"] == "outage":
            r["count"] = None
        else:
            r.setdefault("count", 1)
        r.setdefault("skip", 0)
        r.setdefault("when", "before")
        if r["when"] not in ("before", "after"):
            raise ValueError("rule 'when' must be 'before' or 'after'")
        if r["count"] is not None and int(r["count"]) < 0:
            raise ValueError("rule 'count' must be >= 0 or null")
        if r["kind"] == "partial":
            f = float(r.get("fraction", 0.5))
            if not 0.0 < f <= 1.0:
                raise ValueError("partial fraction must be in (0, 1]")
            r["fraction"] = f
        return r

    def set_rules(self, rules: list[dict]) -> None:
        normed = [self._norm(r) for r in rules]
        with self._lock:
            self._rules = normed

    def add_rule(self, rule: dict) -> None:
        r = self._norm(rule)
        with self._lock:
            self._rules.append(r)

    def clear_rules(self) -> None:
        self.set_rules([])

    def outage(self, action: str, on: bool = True) -> None:
        with self._lock:
            self._rules = [r for r in self._rules
                           if not (r["kind"] == "outage" and r["action"] == action)]
            if on:
                self._rules.insert(0, self._norm({"action": action, "kind": "outage"}))

    def rules(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self._rules)

    def _pick_rule(self, action: str) -> dict | None:
        with self._lock:
            for r in self._rules:
                if r["action"] not in ("*", action):
                    continue
                if r["kind"] == "partial" and action not in _PARTIAL_DEFAULTS:
                    continue
                if r["skip"] > 0:
                    r["skip"] -= 1
                    continue
                if r["count"] is None:
                    return dict(r)
                if r["count"] > 0:
                    r["count"] -= 1
                    fired = dict(r)
                    if r["count"] == 0:
                        self._rules.remove(r)
                    return fired
            return None

    # ---- stats
    def _bump(self, action: str, key: str, n: int = 1, fault: str | None = None) -> None:
        with self._lock:
            s = self._stats.setdefault(action, {"requests": 0, "forwarded": 0, "faults": {},
                                                "entries_forwarded": 0, "entries_failed": 0})
            if fault:
                s["faults"][fault] = s["faults"].get(fault, 0) + n
            else:
                s[key] += n

    def stats(self, action: str | None = None) -> dict:
        with self._lock:
            snap = copy.deepcopy(self._stats)
        if action is not None:
            return snap.get(action, {"requests": 0, "forwarded": 0, "faults": {},
                                     "entries_forwarded": 0, "entries_failed": 0})
        return snap

    def wait_stat(self, action: str, key: str, at_least: int, timeout: float = 30.0) -> dict:
        """Wait until stats(action)[key] (or faults[key] for a fault kind) >= at_least."""
        def reached():
            s = self.stats(action)
            v = s[key] if key in s and key != "faults" else s["faults"].get(key, 0)
            return s if v >= at_least else None
        return wait_for(reached, timeout, f"proxy stat {action}.{key} >= {at_least}")

    def faults(self, action: str, kind: str) -> int:
        return self.stats(action)["faults"].get(kind, 0)

    def reset_stats(self) -> None:
        with self._lock:
            self._stats.clear()
            self.partial_log.clear()

    # ---- control endpoint
    def control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if path == "/__proxy/stats" and method == "GET":
            return 200, self.stats()
        if path == "/__proxy/rules" and method == "GET":
            return 200, {"rules": self.rules()}
        if path == "/__proxy/reset" and method == "POST":
            self.reset_stats()
            return 200, {"ok": True}
        if path == "/__proxy/rules" and method == "POST":
            try:
                doc = json.loads(body or b"{}")
                if doc.get("clear"):
                    self.clear_rules()
                if "rules" in doc:
                    self.set_rules(doc["rules"])
                for r in doc.get("add", []):
                    self.add_rule(r)
                if "outage" in doc:
                    o = doc["outage"]
                    self.outage(o["action"], bool(o.get("on", True)))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                return 400, {"error": str(exc)}
            return 200, {"rules": self.rules()}
        return 404, {"error": f"no control endpoint {method} {path}"}


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: FaultProxy
    server_version = "rarewatch-fault-proxy"

    def log_message(self, fmt, *args):  # quiet; tests read stats instead
        pass

    def _read_body(self) -> bytes:
        te = self.headers.get("Transfer-Encoding", "").lower()
        if "chunked" in te:
            out = b""
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline(65537)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes,
              content_length: int | None = None) -> None:
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in _HOP_BY_HOP and k.lower() not in ("server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if content_length is None
                                               else content_length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _handle(self):
        p = self.proxy
        body = self._read_body()
        if self.path.startswith("/__proxy/"):
            status, doc = p.control(self.command, self.path.split("?")[0], body)
            self._send(status, [("Content-Type", "application/json")],
                       json.dumps(doc, sort_keys=True).encode())
            return
        req = _Req(self.command, self.path, dict(self.headers.items()), body)
        p._bump(req.action, "requests")
        entry = None
        if p.record:
            entry = {"method": req.method, "path": req.path, "headers": req.lheaders,
                     "body": req.body, "action": req.action, "protocol": req.protocol,
                     "scope_service": req.scope_service, "status": None}
            with p._lock:
                p.requests.append(entry)
        rule = p._pick_rule(req.action)
        kind = rule["kind"] if rule else None
        try:
            if kind == "reset" and rule["when"] == "before":
                p._bump(req.action, "", fault="reset")
                return self._reset()
            if kind in ("throttle", "http_error", "html", "outage") and rule.get("when") != "after":
                p._bump(req.action, "", fault=kind)
                return self._synthetic(req, rule)
            if kind == "partial":
                return self._partial(req, rule)

            status, headers, rbody = self._forward(req, req.body, modified=False)
            p._bump(req.action, "forwarded")
            if entry is not None:
                entry["status"] = status
                if status >= 300:
                    entry["error"] = _error_code(rbody)
            self._count_entries(req, req.body, rbody, status)
            if kind == "reset":  # when == "after"
                p._bump(req.action, "", fault="reset")
                return self._reset()
            if kind in ("throttle", "http_error", "html", "outage"):  # after forwarding
                p._bump(req.action, "", fault=kind)
                return self._synthetic(req, rule)
            if kind == "delay":
                p._bump(req.action, "", fault="delay")
                p._stopping.wait(float(rule.get("seconds", 1.0)))
            if kind == "truncated":
                p._bump(req.action, "", fault="truncated")
                cut = rbody[: max(0, len(rbody) // 2 if len(rbody) > 1 else 0)]
                return self._send(status, headers, cut)
            return self._send(status, headers, rbody)
        except (ConnectionError, OSError, http.client.HTTPException) as exc:
            if getattr(self, "_was_reset", False):
                return
            p._bump(req.action, "", fault="upstream_error")
            msg = json.dumps({"__type": "ProxyUpstreamError", "message": repr(exc)}).encode()
            try:
                self._send(502, [("Content-Type", "application/json")], msg)
            except OSError:
                self.close_connection = True

    # ---- fault builders
    def _reset(self):
        self._was_reset = True
        self.close_connection = True
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # detach+close so the fd really closes now (makefile refs would delay a
            # plain close()); linger 0 turns that close into a TCP RST.
            os.close(sock.detach())
        except OSError:
            pass

    def _error_doc(self, req: _Req, status: int, code: str, message: str):
        rid = str(uuid.uuid4())
        if req.protocol == "query":
            xml = (f'<ErrorResponse><Error><Type>{"Receiver" if status >= 500 else "Sender"}'
                   f"</Type><Code>{code}</Code><Message>{message}</Message></Error>"
                   f"<RequestId>{rid}</RequestId></ErrorResponse>")
            return [("Content-Type", "text/xml"), ("x-amzn-RequestId", rid)], xml.encode()
        if req.protocol == "cbor":
            return ([("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor"),
                     ("x-amzn-RequestId", rid)],
                    _cbor_error({"__type": code, "message": message}))
        ctype = req.ctype if req.ctype.startswith("application/x-amz-json") \
            else "application/x-amz-json-1.1"
        return ([("Content-Type", ctype), ("x-amzn-RequestId", rid),
                 ("x-amzn-ErrorType", code)],
                json.dumps({"__type": code, "message": message}).encode())

    def _synthetic(self, req: _Req, rule: dict):
        kind = rule["kind"]
        if kind == "html":
            status = int(rule.get("status", 502))
            reason = http.HTTPStatus(status).phrase
            return self._send(status, [("Content-Type", "text/html")],
                              _HTML_PAGE.format(status=status, reason=reason).encode())
        if kind == "throttle":
            status = int(rule.get("status", 400))
            if "error" in rule:
                code = rule["error"]
            elif req.protocol == "query":
                code = "Throttling"
            elif req.service_prefix in ("Kinesis", "DynamoDB"):
                code = "ProvisionedThroughputExceededException"
            else:
                code = "ThrottlingException"
            msg = "Rate exceeded (injected by rarewatch fault proxy)"
        elif kind == "outage":
            status, code, msg = 503, rule.get("error", "ServiceUnavailableException"), \
                "Service unavailable (injected outage)"
        else:  # http_error
            status = int(rule.get("status", 500))
            default = "ServiceUnavailableException" if status == 503 else "InternalFailure"
            if req.protocol == "query":
                default = "ServiceUnavailable" if status == 503 else "InternalFailure"
            code = rule.get("error", default)
            msg = f"HTTP {status} injected by rarewatch fault proxy"
        headers, body = self._error_doc(req, status, code, msg)
        return self._send(status, headers, body)

    # ---- forwarding
    def _forward(self, req: _Req, body: bytes, modified: bool):
        p = self.proxy
        # The client's "Expect: 100-continue" was answered by this proxy already
        # (BaseHTTPRequestHandler sends the 100); the body is complete, so it is
        # not passed on - unless the client signed it.
        signed = req.lheaders.get("authorization", "").split("SignedHeaders=", 1)[-1]
        signed = signed.split(",", 1)[0].strip().split(";") if "SignedHeaders=" in \
            req.lheaders.get("authorization", "") else []
        headers = [(k, v) for k, v in req.headers.items() if k.lower() not in _HOP_BY_HOP
                   and (k.lower() != "expect" or "expect" in signed)]
        if modified:
            # The answer is parsed and merged here: ask for it uncompressed (the
            # modified request is re-signed, so changing this header is safe).
            headers = [(k, v) for k, v in headers if k.lower() != "accept-encoding"]
            headers.append(("Accept-Encoding", "identity"))
        if p.resign_creds and (modified or p.resign == "always") and req.scope_service:
            headers = self._resign(req, body, headers)
        conn = http.client.HTTPConnection(p.up_host, p.up_port, timeout=p.upstream_timeout)
        try:
            conn.putrequest(req.method, req.path, skip_host=True, skip_accept_encoding=True)
            have_host = False
            for k, v in headers:
                if k.lower() == "host":
                    have_host = True
                conn.putheader(k, v)
            if not have_host:
                conn.putheader("Host", f"{p.up_host}:{p.up_port}")
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            rbody = resp.read()
            return resp.status, resp.getheaders(), rbody
        finally:
            conn.close()

    def _resign(self, req: _Req, body: bytes, headers: list[tuple[str, str]]):
        """Sign the request afresh for the upstream, with the scope's service/region."""
        p = self.proxy
        drop = {"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256",
                "host", "expect"}
        keep = {k: v for k, v in headers if k.lower() not in drop}
        aws_req = AWSRequest(method=req.method, url=f"{p.upstream}{req.path}", data=body,
                             headers=keep)
        aws_req.headers["Host"] = f"{p.up_host}:{p.up_port}"
        SigV4Auth(Credentials(*p.resign_creds), req.scope_service,
                  req.scope_region or REGION).add_auth(aws_req)
        return list(aws_req.headers.items())

    def _count_entries(self, req: _Req, sent: bytes, rbody: bytes, status: int) -> None:
        spec = _PARTIAL_DEFAULTS.get(req.action)
        if not spec or status != 200:
            return
        try:
            n = len(json.loads(sent).get(spec[0], []))
        except (ValueError, AttributeError):
            return
        self.proxy._bump(req.action, "entries_forwarded", n)

    def _partial(self, req: _Req, rule: dict):
        p = self.proxy
        in_key, out_key, count_key, default_codes = _PARTIAL_DEFAULTS[req.action]
        try:
            doc = json.loads(req.body)
            entries = doc[in_key]
        except (ValueError, KeyError, TypeError):
            # Not a batch we understand: forward untouched.
            status, headers, rbody = self._forward(req, req.body, modified=False)
            p._bump(req.action, "forwarded")
            return self._send(status, headers, rbody)
        n = len(entries)
        codes = rule.get("error_codes") or default_codes
        k = min(n, max(1, round(rule["fraction"] * n))) if n else 0
        with p._lock:
            failed = sorted(p.rng.sample(range(n), k)) if k else []
            picked = {i: p.rng.choice(codes) for i in failed}
        p._bump(req.action, "", n=1, fault="partial")
        failed_set = set(failed)
        keep = [e for i, e in enumerate(entries) if i not in failed_set]

        def synthetic(i):
            code = picked[i]
            if code == "ProvisionedThroughputExceededException":
                msg = "Rate exceeded for shard (injected by rarewatch fault proxy)"
            else:
                msg = f"{code} (injected by rarewatch fault proxy)"
            return {"ErrorCode": code, "ErrorMessage": msg}

        if keep:
            sub = dict(doc)
            sub[in_key] = keep
            fwd_body = json.dumps(sub).encode()
            status, headers, rbody = self._forward(req, fwd_body, modified=True)
            p._bump(req.action, "forwarded")
            if status != 200:
                # The upstream refused the remainder: hand its answer back unchanged.
                return self._send(status, headers, rbody)
            up = json.loads(rbody)
            up_entries = up.get(out_key, [])
            if len(up_entries) != len(keep):
                raise http.client.HTTPException(
                    f"upstream answered {len(up_entries)} entries for {len(keep)}")
            p._bump(req.action, "entries_forwarded", len(keep))
        else:
            headers = [("Content-Type", req.ctype or "application/x-amz-json-1.1"),
                       ("x-amzn-RequestId", str(uuid.uuid4()))]
            up = {count_key: 0, out_key: []}
            if req.action == "PutRecordBatch":
                up["Encrypted"] = False
            up_entries = []
        merged, it = [], iter(up_entries)
        for i in range(n):
            merged.append(synthetic(i) if i in failed_set else next(it))
        up[out_key] = merged
        up[count_key] = int(up.get(count_key, 0)) + k
        p._bump(req.action, "entries_failed", k)
        with p._lock:
            p.partial_log.append({"action": req.action, "entries": n, "failed": failed,
                                  "codes": [picked[i] for i in failed]})
        status = 200
        return self._send(status, [h for h in headers if h[0].lower() != "content-length"],
                          json.dumps(up).encode())


# --------------------------------------------------------------------------- CLI (emulators.sh)

def _cli(argv: list[str]) -> int:
    """`python3 rwharness.py up RUN_DIR`: start moto (IAM on), kinesis-local and
    dynalite detached, write RUN_DIR/{*.pid,env.sh}; `down RUN_DIR` stops them."""
    import argparse
    ap = argparse.ArgumentParser(prog="rwharness.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up")
    up.add_argument("run_dir")
    up.add_argument("--stream", default="rarewatch-demo")
    up.add_argument("--shards", type=int, default=2)
    up.add_argument("--no-iam", action="store_true")
    down = sub.add_parser("down")
    down.add_argument("run_dir")
    px = sub.add_parser("proxy", help="run a FaultProxy in the foreground (manual demos)")
    px.add_argument("--upstream", required=True)
    px.add_argument("--port", type=int, default=0)
    px.add_argument("--resign-key", help="ACCESS_KEY_ID:SECRET to re-sign modified requests")
    px.add_argument("--rules", default="[]", help="initial rules, JSON list")
    args = ap.parse_args(argv)
    if args.cmd == "proxy":
        creds = tuple(args.resign_key.split(":", 1)) if args.resign_key else None
        p = FaultProxy(args.upstream, json.loads(args.rules), resign_creds=creds,
                       port=args.port).start()
        print(f"fault proxy {p.endpoint} -> {p.upstream}; control at {p.endpoint}/__proxy/",
              flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(3600):
                pass
        except KeyboardInterrupt:
            pass
        p.stop()
        return 0
    run = Path(args.run_dir)
    if args.cmd == "down":
        rc = 0
        markers = {"moto": "moto.server", "kinesis-local": "kinesis-local",
                   "dynalite": "dynalite"}
        for pidf in sorted(run.glob("*.pid")):
            name = pidf.stem
            try:
                pid = int(pidf.read_text().strip())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except (ValueError, OSError):
                print(f"{name} was not running")
                pidf.unlink(missing_ok=True)
                continue
            if markers.get(name, name).encode() not in cmdline:
                print(f"{name}: pid {pid} is now another program; left alone")
                pidf.unlink(missing_ok=True)
                continue
            try:
                os.killpg(pid, signal.SIGTERM)
                try:
                    wait_for(lambda: not Path(f"/proc/{pid}").exists()
                             or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower(),
                             5.0, f"{name} to exit")
                except TimeoutError:
                    os.killpg(pid, signal.SIGKILL)
                print(f"stopped {name} (pid {pid})")
            except ProcessLookupError:
                print(f"{name} was not running")
            except OSError as exc:
                print(f"{name}: {exc}", file=sys.stderr)
                rc = 1
            pidf.unlink(missing_ok=True)
        return rc
    run.mkdir(parents=True, exist_ok=True)
    _Process.die_with_parent = False
    started = []
    try:
        moto = Moto(iam_auth=not args.no_iam, log_dir=run).start()
        started.append(moto)
        kin = KinesisLocal(shards=args.shards, stream=args.stream, log_dir=run).start()
        started.append(kin)
        ddb = Dynalite(log_dir=run).start()
        started.append(ddb)
    except BaseException:
        for s in started:
            s.stop()
        raise
    env = moto.env()
    env["AWS_ENDPOINT_URL_KINESIS"] = kin.endpoint
    env["AWS_ENDPOINT_URL_DYNAMODB"] = ddb.endpoint
    env["RAREWATCH_MOTO_ENDPOINT"] = moto.endpoint
    env["RAREWATCH_KINESIS_LOCAL_ENDPOINT"] = kin.endpoint
    env["RAREWATCH_DYNALITE_ENDPOINT"] = ddb.endpoint
    env["RAREWATCH_MOTO_KINESIS_ENDPOINT"] = moto.endpoint
    env["RAREWATCH_DEMO_STREAM"] = args.stream
    lines = [f"export {k}={v}" for k, v in sorted(env.items())]
    (run / "env.sh").write_text("\n".join(lines) + "\n")
    for s in started:
        (run / f"{s.name}.pid").write_text(f"{s.pid}\n")
        s.proc = None  # detach: leave it running after we exit
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
