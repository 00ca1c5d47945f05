#!/usr/bin/env python3
"""A CPython multiprocessing.connection peer for tests/listener_test.cc.

    mp_peer.py client FAMILY ADDRESS KEY MODE   connect to our Listener
    mp_peer.py listen FAMILY ADDRESS KEY MODE   listen for our Client; prints
                                                "ADDRESS <address>" once bound

FAMILY is AF_INET or AF_UNIX; ADDRESS "host:port" or a path ("@name" is abstract);
KEY the authkey in hex, or "none" for no authentication. After the handshake the
peer serves one connection: MODE "bytes" answers each message m with b"py:" + m,
MODE "values" answers each value v with ("echo", v, type(v).__name__) and the value
"sample" with a fixed structure; b"quit" / "quit" ends it (answered "bye").

Exit codes: 0 done, 3 authentication failed, 4 any other error. An alarm ends the
peer after 30 s so a broken test can never hang on it.
"""
import signal
import sys
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener

SAMPLE = {
    "ints": [0, 1, -1, 255, 256, 65535, 65536, -(2**31), 2**31, 2**62, -(2**63)],
    "str": "h\u00e9llo \u2603",
    "bytes": b"\x00\x01\xff",
    "float": 2.5,
    "flags": (True, False, None),
    "nested": [{"a": [1, 2, {"b": ()}]}],
}


def address_of(family, text):
    if family == "AF_INET":
        host, port = text.rsplit(":", 1)
        return (host, int(port))
    if text.startswith("@"):
        return "\0" + text[1:]
    return text


def show(family, address):
    if family == "AF_INET":
        return "%s:%d" % address
    if isinstance(address, bytes):
        address = address.decode()
    if address.startswith("\0"):
        return "@" + address[1:]
    return address


def serve(conn, mode):
    while True:
        if mode == "bytes":
            m = conn.recv_bytes()
            if m == b"quit":
                conn.send_bytes(b"bye")
                return
            conn.send_bytes(b"py:" + m)
        else:
            v = conn.recv()
            if v == "quit":
                conn.send("bye")
                return
            if v == "sample":
                conn.send(SAMPLE)
                continue
            conn.send(("echo", v, type(v).__name__))


def main(argv):
    role, family, text, key, mode = argv[1:6]
    authkey = None if key == "none" else bytes.fromhex(key)
    try:
        if role == "client":
            conn = Client(address_of(family, text), family=family, authkey=authkey)
        else:
            listener = Listener(address_of(family, text), family=family, authkey=authkey)
            print("ADDRESS " + show(family, listener.address), flush=True)
            try:
                conn = listener.accept()
            finally:
                listener.close()
        with conn:
            serve(conn, mode)
    except AuthenticationError as e:
        print("AUTHFAIL %s" % e, file=sys.stderr, flush=True)
        return 3
    except Exception as e:  # reported to the test through the exit code
        print("ERROR %r" % (e,), file=sys.stderr, flush=True)
        return 4
    return 0


if __name__ == "__main__":
    signal.alarm(30)
    sys.exit(main(sys.argv))
