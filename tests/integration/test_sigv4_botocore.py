#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Cross-check rarewatch's SigV4 signer against botocore.

usage: test_sigv4_botocore.py PATH/TO/sigv4_tool [COUNT]

Generates requests with awkward paths, queries, headers and bodies, signs
each with sigv4_tool and with botocore.auth.SigV4Auth at the same pinned
instant, and requires the same canonical request, string to sign, signature
and headers. SIGV4_SEED=<int> reproduces a run (the seed is printed).
"""
import datetime
import hashlib
import os
import random
import string
import subprocess
import sys

import botocore.auth
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

SCOPES = [
    ("us-east-1", "kinesis", "kinesis.us-east-1.amazonaws.com"),
    ("eu-west-1", "firehose", "firehose.eu-west-1.amazonaws.com"),
    ("ap-southeast-2", "monitoring", "monitoring.ap-southeast-2.amazonaws.com"),
    ("us-gov-west-1", "logs", "logs.us-gov-west-1.amazonaws.com"),
    ("us-east-1", "service", "example.amazonaws.com"),
    ("eu-central-1", "execute-api", "localhost:4566"),
]
METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]
PATH_SEGMENTS = [
    "kinesis", "a b", "  lead", "tail  ", "ü", "日本語", "\u1234", "emoji\U0001F600",
    "!$&'()*+,;=:@", "%20", "%2F", "%41%42", "100%", "~user", "-_.", ".", "..", "",
    "UPPER", "x=y", "semi;colon", "quote\"d", "back\\slash", "[brackets]", "{braces}",
]
QUERY_KEYS = ["Action", "Version", "a", "A", "a-b", "a_b", "ключ", "key with space",
              "plus+key", "", "sort~", "%", "&", "=", "Param1"]
QUERY_VALUES = ["", "1", "value1", "Value1", "a b", "x+y", "ü", "\u1234", "a/b",
                "?#[]", "=", "&", "%", "tilde~", "-._~", "2015-08-30T12:36:00Z",
                "x" * 40]
HEADER_NAMES = ["X-Amz-Target", "Content-Type", "X-Custom", "x-custom", "X-CUSTOM",
                "My-Header1", "Content-Length", "Accept", "User-Agent", "Expect",
                "X-Amzn-Trace-Id", "Content-Encoding", "X-Amz-Meta-Thing"]
HEADER_VALUES = ["Kinesis_20131202.PutRecords", "application/x-amz-json-1.1",
                 "  leading", "trailing  ", "in   the\tmiddle", "\t tabs \t",
                 "\"a   b   c\"", "", "   ", "v1,v2", "UPPER lower", "100-continue",
                 "Root=1-5759e988-bd862e3fe1be46a994272793"]


def rand_text(rng, alphabet, lo, hi):
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def encode_for_tool(rng, text):
    """Spell a query component the way a caller might: some characters
    percent-encoded, the rest raw. The signer must decode either form."""
    out = []
    for ch in text:
        must = ch in "&=%"
        if must or rng.random() < 0.4:
            out.append("".join("%%%02X" % b if rng.random() < 0.5 else "%%%02x" % b
                               for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def gen_request(rng, i):
    region, service, host = rng.choice(SCOPES)
    segs = [rng.choice(PATH_SEGMENTS) for _ in range(rng.randint(0, 5))]
    path = "/" + "/".join(segs)
    if segs and rng.random() < 0.3:
        path += "/"
    params = []
    for _ in range(rng.choice([0, 0, 1, 2, 3, 5, 8])):
        if params and rng.random() < 0.3:
            key = rng.choice(params)[0]  # repeated key
        else:
            key = rng.choice(QUERY_KEYS)
        params.append((key, rng.choice(QUERY_VALUES)))
    headers = [(rng.choice(["Host", "host", "HOST"]),
                rng.choice(["", " ", "\t"]) + host + rng.choice(["", "  "]))]
    for _ in range(rng.randint(0, 6)):
        headers.append((rng.choice(HEADER_NAMES), rng.choice(HEADER_VALUES)))
    rng.shuffle(headers)
    kind = rng.choice(["empty", "json", "binary", "big"])
    if kind == "empty":
        body = b""
    elif kind == "json":
        body = ('{"StreamName":"s-%d","Limit":%d}' % (i, rng.randint(1, 10000))).encode()
    elif kind == "binary":
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2048)))
    else:
        body = bytes(rng.getrandbits(8) for _ in range(70000))
    token = None
    if rng.random() < 0.5:
        token = rand_text(rng, string.ascii_letters + string.digits + "/+=", 100, 400)
    return {
        "method": rng.choice(METHODS),
        "host": host,
        "path": path,
        "params": params,
        "tool_query": "&".join(encode_for_tool(rng, k) + "=" + encode_for_tool(rng, v)
                               for k, v in params),
        "headers": headers,
        "body": body,
        "give_hash": rng.random() < 0.25,
        "region": region,
        "service": service,
        "time": rng.randint(946684800, 2051222400),  # 2000 .. 2035
        "akid": "AKIA" + rand_text(rng, string.ascii_uppercase + string.digits, 16, 16),
        "secret": rand_text(rng, string.ascii_letters + string.digits + "/+", 40, 40),
        "token": token,
    }


def run_tool(tool, rq):
    argv = [tool, "--method", rq["method"], "--path", rq["path"],
            "--region", rq["region"], "--service", rq["service"],
            "--time", str(rq["time"]), "--access-key", rq["akid"],
            "--secret", rq["secret"]]
    if rq["tool_query"]:
        argv += ["--query", rq["tool_query"]]
    if rq["token"]:
        argv += ["--token", rq["token"]]
    for name, value in rq["headers"]:
        argv += ["--header", name + ":" + value]
    if rq["give_hash"]:
        argv += ["--payload-hash", hashlib.sha256(rq["body"]).hexdigest()]
    else:
        argv += ["--body-stdin"]
    p = subprocess.run(argv, input=rq["body"], capture_output=True, check=False)
    if p.returncode != 0:
        raise RuntimeError("sigv4_tool exited %d: %s" % (p.returncode, p.stderr.decode()))
    out, pos, sections = p.stdout, 0, {}
    while pos < len(out):
        nl = out.index(b"\n", pos)
        tag, name, length = out[pos:nl].split(b" ")
        assert tag == b"==", out[pos:nl]
        start = nl + 1
        end = start + int(length)
        sections[name.decode()] = out[start:end].decode("utf-8")
        pos = end + 1
    return sections


class RecordingSigV4Auth(SigV4Auth):
    """Keeps the intermediate strings add_auth() computes."""

    def canonical_request(self, request):
        self.last_canonical_request = super().canonical_request(request)
        return self.last_canonical_request

    def string_to_sign(self, request, canonical_request):
        self.last_string_to_sign = super().string_to_sign(request, canonical_request)
        return self.last_string_to_sign


def sign_botocore(rq):
    instant = datetime.datetime.fromtimestamp(rq["time"], datetime.timezone.utc)
    # add_auth() asks botocore.auth.get_current_datetime() for "now"; pinning
    # it is how botocore's own tests fix the signing time.
    botocore.auth.get_current_datetime = lambda remove_tzinfo=True: (
        instant.replace(tzinfo=None) if remove_tzinfo else instant)
    headers = HTTPHeaders()
    for name, value in rq["headers"]:
        headers[name] = value  # appends: repeated names stay repeated
    request = AWSRequest(method=rq["method"], url="https://" + rq["host"] + rq["path"],
                         headers=headers, data=rq["body"], params=list(rq["params"]))
    auth = RecordingSigV4Auth(Credentials(rq["akid"], rq["secret"], rq["token"]),
                              rq["service"], rq["region"])
    auth.add_auth(request)
    if request.headers["X-Amz-Date"] != instant.strftime("%Y%m%dT%H%M%SZ"):
        raise RuntimeError("could not pin botocore's clock (botocore %s reads the time "
                           "some other way)" % botocore.__version__)
    return {
        "canonical-request": auth.last_canonical_request,
        "string-to-sign": auth.last_string_to_sign,
        "signature": request.headers["Authorization"].rsplit("Signature=", 1)[1],
        "header:Authorization": request.headers["Authorization"],
        "header:X-Amz-Date": request.headers["X-Amz-Date"],
        "header:X-Amz-Security-Token": request.headers.get("X-Amz-Security-Token"),
    }


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    tool = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) == 3 else 50
    seed = int(os.environ.get("SIGV4_SEED", "20150830"))
    print("# seed %d, %d requests, botocore %s" % (seed, count, botocore.__version__))
    rng = random.Random(seed)
    passed = failed = 0
    for i in range(count):
        rq = gen_request(rng, i)
        try:
            ours = run_tool(tool, rq)
            ref = sign_botocore(rq)
        except Exception as e:  # a crash in either signer is a failed case
            failed += 1
            print("not ok %d - %s %r: %s" % (i + 1, rq["method"], rq["path"], e))
            continue
        diffs = [k for k in ref if ours.get(k) != ref[k]]
        if diffs:
            failed += 1
            print("not ok %d - %s %r query=%r" % (i + 1, rq["method"], rq["path"],
                                                   rq["tool_query"]))
            for k in diffs:
                print("#   %s\n#     ours:     %r\n#     botocore: %r" % (k, ours.get(k), ref[k]))
        else:
            passed += 1
            print("ok %d - %s %s sig=%s" % (i + 1, rq["method"], rq["service"],
                                            ours["signature"][:16]))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
