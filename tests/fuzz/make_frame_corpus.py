#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_frame (tests/fuzz/corpus_frame/): streams framed as
CPython's multiprocessing.connection frames them, plus the malformed kinds the reader
must refuse. Each file: a configuration byte, four receive-choice bytes, the stream
(see fuzz_frame.c). The files are checked in; rerun only to change them."""
import os
import pickle
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus_frame")

MAX_64K, MAX_1M, MAX_DEFAULT, MAX_100 = 0, 1, 2, 3
BUFFERED = 4


def frame(payload):
    return struct.pack("!i", len(payload)) + payload


def long_frame(payload):
    # CPython uses this form above 0x7fffffff bytes; the reader takes it for any size.
    return struct.pack("!iQ", -1, len(payload)) + payload


SEEDS = {
    "bytes_mixed": (MAX_64K, [0, 1, 2, 3],
                    frame(b"hello") + frame(b"") + frame(b"x" * 70) + frame(bytes(range(256)))),
    "values_buffered": (MAX_1M | BUFFERED, [4, 0, 2, 4],
                        b"".join(frame(pickle.dumps(v, protocol=5)) for v in
                                 [[1, "a", None], {"k": (1, 2.5)}, b"raw", 2**40, "s" * 100])),
    "many_small_buffered": (MAX_DEFAULT | BUFFERED, [0, 2, 3, 1],
                            b"".join(frame(bytes([i]) * (i % 9)) for i in range(60))),
    "long_form": (MAX_64K, [0, 3, 1, 2], long_frame(b"12345") + frame(b"after")),
    "truncated_body": (MAX_1M, [0, 0, 0, 0], frame(b"ok") + struct.pack("!i", 100) + b"0123456789"),
    "truncated_header": (MAX_DEFAULT, [1, 1, 1, 1], frame(b"ok") + b"\x00\x00"),
    "truncated_long_header": (MAX_DEFAULT | BUFFERED, [0, 1, 2, 3],
                              frame(b"ok") + b"\xff\xff\xff\xff\x00\x00\x00"),
    "negative_length": (MAX_64K, [2, 2, 2, 2], frame(b"ok") + struct.pack("!i", -2) + b"junk"),
    "over_maxlength": (MAX_DEFAULT, [1, 0, 0, 0], frame(b"x" * 150)),
    "over_maximum": (MAX_100, [0, 3, 2, 4], frame(b"y" * 50) + frame(b"z" * 101)),
    "huge_announced": (MAX_DEFAULT | BUFFERED, [0, 2, 0, 2],
                       struct.pack("!i", (1 << 30) - 1) + b"only a little"),
    "huge_long_form": (MAX_DEFAULT, [2, 0, 1, 3], struct.pack("!iQ", -1, 1 << 63) + b"abc"),
    "big_into_buffered": (MAX_1M | BUFFERED, [2, 3, 0, 2],
                          frame(b"q" * 9000) + frame(b"w" * 40000) + frame(b"e")),
}


def main():
    os.makedirs(HERE, exist_ok=True)
    for name, (cfg, ops, stream) in SEEDS.items():
        with open(os.path.join(HERE, name + ".bin"), "wb") as f:
            f.write(bytes([cfg]) + bytes(ops) + stream)


if __name__ == "__main__":
    main()
