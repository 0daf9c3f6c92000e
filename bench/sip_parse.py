"""SIP parsing time against message size (protocols/sip/message.py), beside the standard library's
HTTP header parser (http.client.parse_headers, RFC 5322 fields like SIP's) on the same header block.

A parser that grows quadratically with the number of header fields is a denial of service on the SIP
port; the figure to read is the time per header field at 10, 100 and 1,000 fields (flat means linear;
the parser refuses header sections above its cap, 513). Run: ``python -m bench.sip_parse [--repetitions 7]``.
"""

from __future__ import annotations

import argparse
import http.client
import io
import statistics
import time

from bench.measure import loadavg, machine
from protocols.sip.message import parse_message

HEAD = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Bob" <sip:bob@biloxi.example.com>\r\n'
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
)


def message(fields: int) -> bytes:
    filler = b"".join(b"X-Filler-%d: %s\r\n" % (index, b"a" * 40) for index in range(fields))
    return HEAD + filler + b"Content-Length: 0\r\n\r\n"


def seconds_per_parse(parse: object, data: bytes, repetitions: int) -> float:
    assert callable(parse)
    timings = []
    for _ in range(repetitions):
        start = time.perf_counter()
        parse(data)
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def stdlib(data: bytes) -> object:
    headers = data.split(b"\r\n", 1)[1]
    return http.client.parse_headers(io.BytesIO(headers), _class=http.client.HTTPMessage)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repetitions", type=int, default=7)
    args = parser.parse_args()
    http.client._MAXHEADERS = 100_000  # type: ignore[attr-defined]  # the reference's own cap
    print(f"machine: {machine()}, load {loadavg()}")
    print("| header fields | rondpoint µs/field | http.client µs/field | ratio |")
    print("|---|---|---|---|")
    for fields in (10, 100, 1_000):
        data = message(fields)
        ours = seconds_per_parse(parse_message, data, args.repetitions) / fields * 1e6
        theirs = seconds_per_parse(stdlib, data, args.repetitions) / fields * 1e6
        print(f"| {fields:,} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} |")


if __name__ == "__main__":
    main()
