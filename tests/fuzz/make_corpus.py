#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_value (tests/fuzz/corpus_value/): small pickles of
the types the codec supports, made by CPython at protocols 0-5, and a few in the
forms only Python 2 writes (RAW: its str opcodes, cPickle's memo numbered from 1).
Run from anywhere; the files are checked in, so this only needs rerunning to change
them."""
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
    # protocols 0 and 1: text opcodes (I, L, F, V), MARK + LIST/DICT, PUT/GET by text
    (0, "scalars", [None, True, False, 0, -5, 2**31, -(2**40), 2**63 - 1, 1.5, -0.0,
                    float("inf"), float("nan"), 1e-300, "h\u00e9 \u20ac \U0001F600 \\ \n \r \x00",
                    b"", b"\x00\xff"]),
    (1, "scalars", [None, True, 300, -70000, 2**40, 0.25, "snow \u2603", b"abc"]),
    (0, "containers", [(), (1,), (1, 2, 3, 4), [], {"a": [1]}, {2: (3,)}, [[[]]]]),
    (1, "containers", ([], {"k": (1, 2)}, ((),), [{}])),
    (0, "shared", [shared, shared, {"k": shared}]),
    (1, "shared", (shared, [shared])),
    (0, "set", [{1, 2}, frozenset([3]), bytearray(b"ab")]),
    (1, "set", [{1}, frozenset()]),
    # frozenset keys, sets of frozensets, keys Python merges (1 == 1.0 == True)
    (0, "frozenset_keys", {frozenset([1, 2]): "a", (1, frozenset()): [2]}),
    (2, "frozenset_keys", {frozenset([1]): {frozenset([2])}, 1.5: None}),
    (4, "frozenset_keys", {frozenset(["x"]): 1, frozenset(): set(), (2, 3.0): frozenset([4])}),
    (5, "frozenset_keys", [{frozenset([frozenset([1])])}, {1: "a", 2.0: "b", True: "c"}]),
    (0, "object", collections.OrderedDict([("a", 1)])),
]

# What only Python 2 writes: its str at protocols 0 (S, escaped), 1 and 2 (U, T);
# cPickle's memo from 1; repr(float) of 17 digits; ints above 2**31 as I text;
# bytearray(u'...', 'latin-1').
RAW = [
    ("py2_p0_str", b"(lp1\nS'abc'\np2\naS'it\\'s \"q\" \\t\\n\\x01\\101'\np3\nag2\na."),
    ("py2_p0_dict", b"(dp1\nS'a'\nI1\nsVb\nF0.10000000000000001\nsI1099511627776\nL5L\ns."),
    ("py2_p1_str", b"]q\x01(U\x03abcq\x02T\x02\x00\x00\x00hih\x02e."),
    ("py2_p2_bytearray", b"\x80\x02c__builtin__\nbytearray\nq\x01X\x03\x00\x00\x00x\xc3\xbfU\x07latin-1\x86Rq\x02."),
    ("py2_p0_unicode", b"Vh\xe9\\u20ac\\U0001f600\\u005c\x00\np1\n."),
]


def _get(i):
    return b"h" + bytes([i]) if i < 256 else b"j" + i.to_bytes(4, "little")


def bomb(leaf, levels, fanout):
    """Memo references to memo references (issue 17): an outer list holding a leaf
    (memo 0) and levels of fanout GETs of the level below, each memoized. Python reads
    it as a small shared structure; copied as a tree it is fanout**levels leaves, so
    the decoder's amplification bound must stop it."""
    p = b"\x80\x05]" + leaf + b"\x94a"
    for level in range(1, levels + 1):
        p += b"(" + _get(level - 1) * fanout + b"l\x94a"
    return p + b"."


# Decoder amplification: values (empty lists), str payload, object names, nested sets.
BOMBS = [
    ("bomb_lists", bomb(b"]", 5, 20)),
    ("bomb_strs", bomb(b"X" + (200).to_bytes(4, "little") + b"x" * 200, 6, 10)),
    ("bomb_globals", bomb(b"c" + b"m" * 200 + b"\n" + b"n" * 200 + b"\n", 4, 40)),
    ("bomb_dicts", bomb(b"}(K\x01K\x02u", 5, 16)),
]


def main():
    os.makedirs(HERE, exist_ok=True)
    for proto, name, obj in SEEDS:
        with open(os.path.join(HERE, "p%d_%s.pickle" % (proto, name)), "wb") as f:
            f.write(pickle.dumps(obj, proto))
    for name, data in RAW + BOMBS:
        with open(os.path.join(HERE, name + ".pickle"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
