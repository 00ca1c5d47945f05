#!/usr/bin/env python3
"""A CPython multiprocessing.shared_memory peer for tests/shm_interop_test.cc.

    shm_peer.py create           creates a SharedMemory (4096 bytes, PY_TEXT at 0) and a
                                 ShareableList (PY_ITEMS); prints "NAMES <shm> <list>";
                                 waits for a line on stdin, then checks what the C side
                                 wrote (C_TEXT at 1000, C_CHANGES in the list), prints
                                 "OK" or "BAD <what>", closes and unlinks both.
    shm_peer.py attach SHM LIST  attaches the C side's block and list, checks C_TEXT at 0
                                 and C_ITEMS, writes PY_TEXT at 1000 and PY_CHANGES into
                                 the list, prints "OK" or "BAD <what>".
    shm_peer.py create_named N   as create, for a block named N only (no list): prints
                                 "NAMES <shm>", waits for a line, checks C_TEXT at 1000.
    shm_peer.py attach_named N   as attach, for the block named N only.

gh-82300: before Python 3.13 an attaching process registers the block with its
resource tracker, which unlinks it when this process exits, although the C side still
uses it. In attach mode the peer therefore unregisters both blocks from its tracker
before it exits; in create mode Python is the creator and unlinks them itself.

Exit codes: 0 done (also after "BAD"), 4 any error. An alarm ends the peer after 30 s
so a broken test can never hang on it.
"""
import signal
import sys
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory, ShareableList

PY_TEXT = b"written by python"
C_TEXT = b"written by C"
# "snow \u2603" is 6 characters and 8 bytes: exactly its slot (8 * (6 // 8 + 1)).
PY_ITEMS = [-5, 1.25, False, "snow \u2603", b"\x00\x01", None, 2**62, "py"]
# What the C side sets in PY_ITEMS (index: value).
C_CHANGES = {0: 42, 3: "cc", 5: 3.5, 7: "12345678"}
C_ITEMS = [7, 2.5, True, "py", b"b\x00y", None, "h\u00e9llo", -(2**63), 2**63 - 1, "", False]
PY_CHANGES = {0: 99, 1: -1.5, 3: "Py!", 5: 3}


def untrack(shm):
    # The private _name is the one the tracker was given (with the leading '/').
    resource_tracker.unregister(shm._name, "shared_memory")


def same(a, b):
    # 1 == True in Python: compare the types too.
    return len(a) == len(b) and all(type(x) is type(y) and x == y for x, y in zip(a, b))


def create():
    shm = SharedMemory(create=True, size=4096)
    sl = ShareableList(PY_ITEMS)
    try:
        shm.buf[: len(PY_TEXT)] = PY_TEXT
        print("NAMES", shm.name, sl.shm.name, flush=True)
        sys.stdin.readline()
        bad = []
        got = bytes(shm.buf[1000 : 1000 + len(C_TEXT)])
        if got != C_TEXT:
            bad.append("block %r" % got)
        want = list(PY_ITEMS)
        for i, v in C_CHANGES.items():
            want[i] = v
        if not same(list(sl), want):
            bad.append("list %r" % list(sl))
        print("BAD " + "; ".join(bad) if bad else "OK", flush=True)
    finally:
        shm.close()
        shm.unlink()
        sl.shm.close()
        sl.shm.unlink()


def attach(shm_name, list_name):
    shm = SharedMemory(name=shm_name)
    sl = ShareableList(name=list_name)
    try:
        bad = []
        got = bytes(shm.buf[: len(C_TEXT)])
        if got != C_TEXT:
            bad.append("block %r" % got)
        if not same(list(sl), C_ITEMS):
            bad.append("list %r" % list(sl))
        shm.buf[1000 : 1000 + len(PY_TEXT)] = PY_TEXT
        for i, v in PY_CHANGES.items():
            sl[i] = v
        print("BAD " + "; ".join(bad) if bad else "OK", flush=True)
    finally:
        untrack(shm)
        untrack(sl.shm)
        shm.close()
        sl.shm.close()


def create_named(name):
    shm = SharedMemory(name=name, create=True, size=4096)
    try:
        shm.buf[: len(PY_TEXT)] = PY_TEXT
        print("NAMES", shm.name, flush=True)
        sys.stdin.readline()
        got = bytes(shm.buf[1000 : 1000 + len(C_TEXT)])
        print("OK" if got == C_TEXT else "BAD block %r" % got, flush=True)
    finally:
        shm.close()
        shm.unlink()


def attach_named(name):
    shm = SharedMemory(name=name)
    try:
        got = bytes(shm.buf[: len(C_TEXT)])
        shm.buf[1000 : 1000 + len(PY_TEXT)] = PY_TEXT
        ok = got == C_TEXT and shm.name == name
        print("OK" if ok else "BAD block %r name %r" % (got, shm.name), flush=True)
    finally:
        untrack(shm)
        shm.close()


def main():
    signal.alarm(30)
    try:
        if sys.argv[1] == "create":
            create()
        elif sys.argv[1] == "attach":
            attach(sys.argv[2], sys.argv[3])
        elif sys.argv[1] == "create_named":
            create_named(sys.argv[2])
        elif sys.argv[1] == "attach_named":
            attach_named(sys.argv[2])
        else:
            raise ValueError("unknown mode " + sys.argv[1])
    except Exception as e:  # noqa: BLE001 - report anything to the test
        print("ERROR %s: %s" % (type(e).__name__, e), flush=True)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
