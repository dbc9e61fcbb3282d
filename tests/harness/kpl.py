#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Build KPL aggregated Kinesis records for tests, with the stdlib only.

    magic F3 89 9A C2 | protobuf AggregatedRecord | md5(protobuf), 16 bytes

The protobuf is encoded by hand (varints and length-delimited fields) from the
format document, independently of protobuf-c, so integration tests exercise
rarewatch's decoder against a second implementation.

    from kpl import UserRecord, aggregate
    blob = aggregate([UserRecord("pk-1", b"hello"),
                      UserRecord("pk-2", b"world", explicit_hash_key="42")])
    bad  = aggregate(records, corrupt_md5=True)        # -> "md5 mismatch"
    cut  = aggregate(records, truncate_protobuf=3)     # -> "truncated protobuf"
    torn = aggregate(records, truncate=10)             # record cut in transit

As a program it writes one aggregate to stdout or a file, for shell tests:

    python3 kpl.py -r pk-1=hello -r pk-2=world -o agg.bin
"""

import argparse
import hashlib
import sys
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Tuple, Union

MAGIC = b"\xf3\x89\x9a\xc2"
DIGEST_LEN = 16

WT_VARINT = 0
WT_LEN = 2

Bytes = Union[bytes, str]


def _b(v: Bytes) -> bytes:
    return v.encode("utf-8") if isinstance(v, str) else bytes(v)


def varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varints here are unsigned")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(field_number: int, wire_type: int) -> bytes:
    return varint(field_number << 3 | wire_type)


def uint_field(field_number: int, value: int) -> bytes:
    return key(field_number, WT_VARINT) + varint(value)


def bytes_field(field_number: int, value: Bytes) -> bytes:
    value = _b(value)
    return key(field_number, WT_LEN) + varint(len(value)) + value


@dataclass
class UserRecord:
    partition_key: Bytes
    data: Bytes
    explicit_hash_key: Optional[Bytes] = None
    # (key, value) pairs; value None encodes a Tag without its optional value.
    tags: Sequence[Tuple[Bytes, Optional[Bytes]]] = field(default_factory=list)
    # Force an index instead of the table lookup, to build out-of-range cases.
    partition_key_index: Optional[int] = None
    explicit_hash_key_index: Optional[int] = None


def encode_message(records: Iterable[UserRecord],
                   partition_keys: Optional[List[Bytes]] = None,
                   explicit_hash_keys: Optional[List[Bytes]] = None) -> bytes:
    """The AggregatedRecord protobuf alone. Keys are deduplicated into the
    tables in first-seen order, as the KPL does; tables given by the caller
    are used as a starting point (e.g. to add unused entries)."""
    pks = [_b(k) for k in (partition_keys or [])]
    ehks = [_b(k) for k in (explicit_hash_keys or [])]

    def intern(table: List[bytes], k: Bytes) -> int:
        k = _b(k)
        if k not in table:
            table.append(k)
        return table.index(k)

    body = bytearray()
    for r in records:
        rec = bytearray()
        pk_index = intern(pks, r.partition_key)
        if r.partition_key_index is not None:
            pk_index = r.partition_key_index
        rec += uint_field(1, pk_index)
        ehk_index = None
        if r.explicit_hash_key is not None:
            ehk_index = intern(ehks, r.explicit_hash_key)
        if r.explicit_hash_key_index is not None:
            ehk_index = r.explicit_hash_key_index
        if ehk_index is not None:
            rec += uint_field(2, ehk_index)
        rec += bytes_field(3, r.data)
        for tag_key, tag_value in r.tags:
            tag = bytes_field(1, tag_key)
            if tag_value is not None:
                tag += bytes_field(2, tag_value)
            rec += bytes_field(4, tag)
        body += bytes_field(3, bytes(rec))

    head = b"".join(bytes_field(1, k) for k in pks)
    head += b"".join(bytes_field(2, k) for k in ehks)
    return head + bytes(body)


def wrap(message: bytes, corrupt_md5: bool = False) -> bytes:
    digest = bytearray(hashlib.md5(message).digest())
    if corrupt_md5:
        digest[0] ^= 0xFF
    return MAGIC + message + bytes(digest)


def aggregate(records: Iterable[UserRecord], *,
              corrupt_md5: bool = False,
              truncate_protobuf: int = 0,
              truncate: Optional[int] = None,
              partition_keys: Optional[List[Bytes]] = None,
              explicit_hash_keys: Optional[List[Bytes]] = None) -> bytes:
    """One aggregated Kinesis record.

    corrupt_md5:        flip the digest, as a bit error in transit would.
    truncate_protobuf:  drop this many bytes off the end of the protobuf and
                        digest what is left: a producer bug that the MD5 does
                        not catch, so the decoder must.
    truncate:           keep only the first `truncate` bytes of the finished
                        record (digest included), as a torn write would.
    """
    message = encode_message(records, partition_keys, explicit_hash_keys)
    if truncate_protobuf:
        if truncate_protobuf > len(message):
            raise ValueError("truncate_protobuf exceeds the message length")
        message = message[:len(message) - truncate_protobuf]
    blob = wrap(message, corrupt_md5=corrupt_md5)
    if truncate is not None:
        blob = blob[:truncate]
    return blob


def is_aggregated(blob: bytes) -> bool:
    return len(blob) > len(MAGIC) + DIGEST_LEN and blob.startswith(MAGIC)


def _parse_record_arg(s: str) -> UserRecord:
    pk, sep, data = s.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError("expected PARTITION_KEY=DATA")
    return UserRecord(pk, data)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Write one KPL aggregated record.")
    p.add_argument("-r", "--record", action="append", type=_parse_record_arg, default=[],
                   metavar="PK=DATA", help="a user record (repeatable)")
    p.add_argument("--explicit-hash-key", help="explicit hash key for every record")
    p.add_argument("--corrupt-md5", action="store_true")
    p.add_argument("--truncate-protobuf", type=int, default=0, metavar="N")
    p.add_argument("--truncate", type=int, default=None, metavar="N")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    args = p.parse_args(argv)

    if args.explicit_hash_key is not None:
        for r in args.record:
            r.explicit_hash_key = args.explicit_hash_key
    blob = aggregate(args.record, corrupt_md5=args.corrupt_md5,
                     truncate_protobuf=args.truncate_protobuf, truncate=args.truncate)
    if args.output:
        with open(args.output, "wb") as f:
            f.write(blob)
    else:
        sys.stdout.buffer.write(blob)
    return 0


if __name__ == "__main__":
    sys.exit(main())
