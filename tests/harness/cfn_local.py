#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Deploy packaging/aws/cloudformation.yaml to a local moto endpoint and
print the stack's outputs.

    python3 tests/harness/cfn_local.py --endpoint http://127.0.0.1:5000 \\
        [--stack rarewatch] [--template FILE] [--param KEY=VALUE ...] \\
        [--format json|env] [--region us-east-1]

    from cfn_local import deploy_stack
    outputs = deploy_stack(moto.endpoint, parameters={"StreamName": "s1"})

Credentials: --access-key/--secret-key, else AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY, else the harness's dummy keys (moto without IAM
auth accepts any).  Output: one JSON object {OutputKey: OutputValue}
(--format json, the default) or KEY=VALUE lines (--format env, e.g. for
`eval`); exit status 0, or 1 with the reason on stderr.  This interface
is documented in docs/aws.md; keep it stable.

moto 5.2.1's CloudFormation creates the stream, bucket, roles, instance
profile and table itself but skips AWS::KinesisFirehose::DeliveryStream
and AWS::CloudWatch::Alarm (it has no CloudFormation model for them) and
drops outputs that refer to them.  This helper creates exactly those
skipped resources through their own APIs, from the template's own
properties (intrinsic functions resolved against the stack), and fills in
the dropped outputs, so what exists afterwards is what the template
declares.  cfn-lint checks the template against AWS's real resource
specification in tests/integration/test_aws_artifacts.py.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rwharness import DUMMY_CREDS, REGION, aws_client  # noqa: E402

TEMPLATE = Path(__file__).resolve().parents[2] / "packaging" / "aws" / "cloudformation.yaml"
NO_VALUE = object()

__all__ = ["deploy_stack", "load_template", "TEMPLATE"]


class _Loader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        v = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        v = loader.construct_sequence(node, deep=True)
    else:
        v = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(v, str):
        v = v.split(".", 1)
    return {suffix if suffix in ("Ref", "Condition") else "Fn::" + suffix: v}


_Loader.add_multi_constructor("!", _tag)


def load_template(path: str | os.PathLike = TEMPLATE) -> dict:
    """The template as a dict, short-form tags (!Ref, !Sub, ...) in long form."""
    with open(path) as f:
        return yaml.load(f, Loader=_Loader)


class _Resolver:
    """Just enough of CloudFormation's intrinsic functions for the resources
    moto skips: Ref, Fn::GetAtt (Arn), Fn::Sub, Fn::If/Not/Equals."""

    def __init__(self, tpl, params, physical, arns, region, account):
        self.tpl, self.params, self.physical, self.arns = tpl, params, physical, arns
        self.pseudo = {"AWS::Region": region, "AWS::AccountId": account, "AWS::Partition": "aws",
                       "AWS::NoValue": NO_VALUE}

    def ref(self, name):
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.physical:
            return self.physical[name]
        raise KeyError(f"Ref {name}: unknown")

    def getatt(self, res, attr):
        if attr != "Arn" or res not in self.arns:
            raise KeyError(f"GetAtt {res}.{attr}: not supported here")
        return self.arns[res]

    def condition(self, name):
        return self(self.tpl.get("Conditions", {})[name])

    def __call__(self, v):
        if isinstance(v, list):
            return [x for x in (self(e) for e in v) if x is not NO_VALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (k, a), = v.items()
            if k == "Ref":
                return self.ref(a)
            if k == "Condition":
                return self.condition(a)
            if k == "Fn::GetAtt":
                return self.getatt(*a)
            if k == "Fn::Equals":
                return self(a[0]) == self(a[1])
            if k == "Fn::Not":
                return not self(a[0])
            if k == "Fn::If":
                return self(a[1] if self.condition(a[0]) else a[2])
            if k == "Fn::Sub":
                def sub(m):
                    n = m.group(1)
                    return str(self.getatt(*n.split(".", 1)) if "." in n else self.ref(n))
                return re.sub(r"\$\{([^}!]+)\}", sub, a)
            if k.startswith("Fn::"):
                raise KeyError(f"{k}: not supported here")
        out = {}
        for k, x in v.items():
            x = self(x)
            if x is not NO_VALUE:
                out[k] = x
        return out


def _arn(cl, rtype, physical, region, account):
    if rtype == "AWS::S3::Bucket":
        return f"arn:aws:s3:::{physical}"
    if rtype == "AWS::IAM::Role":
        return cl("iam").get_role(RoleName=physical)["Role"]["Arn"]
    if rtype == "AWS::Kinesis::Stream":
        return f"arn:aws:kinesis:{region}:{account}:stream/{physical}"
    if rtype == "AWS::DynamoDB::Table":
        return f"arn:aws:dynamodb:{region}:{account}:table/{physical}"
    return None


def _create_delivery_stream(cl, name, props):
    kw = {"DeliveryStreamName": props["DeliveryStreamName"],
          "DeliveryStreamType": props.get("DeliveryStreamType", "DirectPut")}
    if "ExtendedS3DestinationConfiguration" in props:
        kw["ExtendedS3DestinationConfiguration"] = props["ExtendedS3DestinationConfiguration"]
    cl("firehose").create_delivery_stream(**kw)
    return props["DeliveryStreamName"]


def _create_alarm(cl, logical, props, stack):
    name = props.get("AlarmName") or f"{stack}-{logical}"
    kw = {k: props[k] for k in ("AlarmDescription", "ComparisonOperator", "Threshold",
                                "EvaluationPeriods", "DatapointsToAlarm", "TreatMissingData",
                                "Metrics", "MetricName", "Namespace", "Dimensions", "Statistic",
                                "Period", "AlarmActions", "OKActions") if k in props}
    for k in ("Threshold",):
        kw[k] = float(kw[k])
    for k in ("EvaluationPeriods", "DatapointsToAlarm", "Period"):
        if k in kw:
            kw[k] = int(kw[k])
    for m in kw.get("Metrics", []):
        if "Period" in m:
            m["Period"] = int(m["Period"])
    cl("cloudwatch").put_metric_alarm(AlarmName=name, **kw)
    return name


FILL_INS = {"AWS::KinesisFirehose::DeliveryStream": lambda cl, lid, p, s: _create_delivery_stream(cl, lid, p),
            "AWS::CloudWatch::Alarm": _create_alarm}


def deploy_stack(endpoint: str, stack_name: str = "rarewatch",
                 parameters: dict[str, str] | None = None,
                 template: str | os.PathLike = TEMPLATE,
                 creds: tuple[str, str] = DUMMY_CREDS, region: str = REGION,
                 timeout: float = 60.0) -> dict[str, str]:
    """Create the stack on moto at `endpoint`, complete what moto's
    CloudFormation skips, and return {OutputKey: OutputValue}."""
    def cl(svc):
        return aws_client(svc, endpoint, creds, region)
    parameters = dict(parameters or {})
    body = Path(template).read_text()
    tpl = load_template(template)
    cf = cl("cloudformation")
    cf.create_stack(StackName=stack_name, TemplateBody=body,
                    Parameters=[{"ParameterKey": k, "ParameterValue": str(v)} for k, v in parameters.items()],
                    Capabilities=["CAPABILITY_IAM"])
    cf.get_waiter("stack_create_complete").wait(
        StackName=stack_name, WaiterConfig={"Delay": 1, "MaxAttempts": max(1, int(timeout))})
    stack = cf.describe_stacks(StackName=stack_name)["Stacks"][0]
    account = stack["StackId"].split(":")[4]
    params = {k: str(v.get("Default", "")) for k, v in tpl.get("Parameters", {}).items()}
    params.update({k: str(v) for k, v in parameters.items()})
    physical, arns = {}, {}
    for r in cf.describe_stack_resources(StackName=stack_name)["StackResources"]:
        lid = r.get("LogicalResourceId")
        if not lid:  # moto lists the resources it skipped without names
            continue
        physical[lid] = r["PhysicalResourceId"]
        a = _arn(cl, r["ResourceType"], r["PhysicalResourceId"], region, account)
        if a:
            arns[lid] = a
    res = _Resolver(tpl, params, physical, arns, region, account)
    for lid, spec in tpl["Resources"].items():
        if lid in physical:
            continue
        make = FILL_INS.get(spec["Type"])
        if make is None:
            raise RuntimeError(f"moto did not create {lid} ({spec['Type']}) and this helper cannot")
        if "Condition" in spec and not res.condition(spec["Condition"]):
            continue
        physical[lid] = make(cl, lid, res(spec.get("Properties", {})), stack_name)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    for key, spec in tpl.get("Outputs", {}).items():
        if key not in outputs:
            outputs[key] = str(res(spec["Value"]))
    return outputs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Deploy the rarewatch CloudFormation template to moto.")
    ap.add_argument("--endpoint", required=True, help="moto endpoint, e.g. http://127.0.0.1:5000")
    ap.add_argument("--stack", default="rarewatch")
    ap.add_argument("--template", default=str(TEMPLATE))
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--region", default=os.environ.get("AWS_REGION", REGION))
    ap.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID", DUMMY_CREDS[0]))
    ap.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY", DUMMY_CREDS[1]))
    ap.add_argument("--format", choices=("json", "env"), default="json")
    a = ap.parse_args(argv)
    try:
        params = dict(p.split("=", 1) for p in a.param)
    except ValueError:
        print("cfn_local: --param takes KEY=VALUE", file=sys.stderr)
        return 1
    try:
        out = deploy_stack(a.endpoint, a.stack, params, a.template, (a.access_key, a.secret_key), a.region)
    except Exception as exc:  # noqa: BLE001 - the CLI reports, the API raises
        print(f"cfn_local: {exc}", file=sys.stderr)
        return 1
    if a.format == "env":
        for k, v in out.items():
            print(f"{k}={v}")
    else:
        print(json.dumps(out, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
