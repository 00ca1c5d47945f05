"""Writes the seed corpus of fuzz_manager (tests/fuzz/corpus_manager): requests as
CPython's proxies send them, byte 0 = 1 for a connection's first (public) call."""
import os
import pickle
import sys
from multiprocessing.managers import Token

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus_manager")
os.makedirs(out, exist_ok=True)

public = [
    (None, "create", ("dict",), {}),
    (None, "create", ("list", [1, 2, 3]), {}),
    (None, "create", ("Value", "d", 1.5), {}),
    (None, "create", ("Queue",), {"maxsize": 2}),
    (None, "create", ("nosuch",), {}),
    (None, "incref", ("1",), {}),
    (None, "decref", ("2",), {}),
    (None, "number_of_objects", (), {}),
    (None, "debug_info", (), {}),
    (None, "dummy", (), {}),
    (None, "accept_connection", ("Thread-1",), {}),
    (None, "get_methods", (Token("dict", ("127.0.0.1", 5000), "1"),), {}),
    (None, "shutdown", (), {}),
    (None, "mp_lease", (), {}),
    (None, "mp_create", ("1", "dict"), {}),
    (None, "mp_incref", ("1", "2"), {}),
    (None, "mp_decref", ("1", "2"), {}),
    (None, "accept_connection", ("Thread-2", "1"), {}),
]
calls = [
    ("1", "__setitem__", ("a", 1), {}),
    ("1", "__getitem__", ("a",), {}),
    ("1", "update", ({"b": [1, 2]},), {"c": 3}),
    ("1", "__iter__", (), {}),
    ("1", "popitem", (), {}),
    ("1", "#GETVALUE", (), {}),
    ("2", "append", (5,), {}),
    ("2", "__getitem__", (slice(0, 2, None),), {}),
    ("2", "sort", (), {"reverse": True}),
    ("2", "insert", (-1, "x"), {}),
    ("2", "__imul__", (3,), {}),
    ("3", "__setattr__", ("x", 1), {}),
    ("3", "__getattribute__", ("x",), {}),
    ("4", "set", (3,), {}),
    ("4", "get", (), {}),
    ("5", "put", (1,), {}),
    ("5", "get", (False,), {}),
    ("5", "get", (), {"timeout": 0.01}),
    ("6", "acquire", (True, 0.01), {}),
    ("6", "release", (), {}),
    ("7", "wait", (0.01,), {}),
    ("99", "__len__", (), {}),
]
n = 0
for first, reqs in ((1, public), (0, calls)):
    for r in reqs:
        with open(os.path.join(out, "%02d_%s.bin" % (n, r[1].strip("#_"))), "wb") as f:
            f.write(bytes([first]) + pickle.dumps(r, protocol=int(sys.argv[1]) if len(sys.argv) > 1 else 5))
        n += 1
print("wrote", n, "requests to", out)
