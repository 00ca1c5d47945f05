#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_value (tests/fuzz/corpus_value/): small pickles of
the types the codec supports, made by CPython at protocols 2-5. Run from anywhere;
the files are checked in, so this only needs rerunning to change them."""
import collections
import datetime
import os
import pickle

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus_value")

shared = [1, "s"]
SEEDS = [
    (2, "scalars", [None, True, False, 0, 255, 65535, -1, 2**31, -2**63, 1.5, "h\u00e9", b"\x00\xff"]),
    (3, "scalars", [None, True, 2**40, -7, 0.25, "", b"", "x" * 300]),
    (4, "scalars", (None, False, 2**63 - 1, float("inf"), "\U0001F600", b"abc")),
    (5, "scalars", [True, 70000, -70000, 1e-300, "snowman \u2603", bytes(range(40))]),
    (2, "tuples", [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4, 5)]),
    (5, "tuples", ((), ((),), (1, (2, (3, (4,)))), ("a", b"b", None, True))),
    (3, "dict", {"a": 1, 2: "b", (3, 4): [5], None: {"x": b"y"}}),
    (5, "dict", {"k%d" % i: i for i in range(12)}),
    (4, "nested", [[[[]]], {"l": [{}, []]}, ([],)]),
    (5, "nested", {"a": [1, [2, [3, {"b": (4, 5, 6, 7)}]]]}),
    (2, "shared", [shared, shared, {"k": shared}]),
    (4, "shared", (shared, [shared], shared)),
    (5, "shared", {"x": shared, "y": (shared, shared)}),
    (2, "set", [{1, 2}, frozenset([3])]),
    (4, "set", [{1, 2, 3}, frozenset(), set()]),
    (5, "bytearray", [bytearray(b"ab"), bytearray()]),
    (3, "bytes_proto3", [b"", b"x" * 10]),
    (5, "list_batches", list(range(1005))),
    (2, "object", collections.OrderedDict([("a", 1)])),
    (5, "object", [datetime.date(2020, 1, 2), collections.OrderedDict(b=2)]),
    (4, "long", [2**62, -(2**62), 2**32 + 1]),
]


def main():
    os.makedirs(HERE, exist_ok=True)
    for proto, name, obj in SEEDS:
        with open(os.path.join(HERE, "p%d_%s.pickle" % (proto, name)), "wb") as f:
            f.write(pickle.dumps(obj, proto))


if __name__ == "__main__":
    main()
