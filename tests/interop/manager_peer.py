# The CPython side of the manager interop tests (tests/manager_interop_test.cc, issue 13).
#
#   manager_peer.py serve <AF_INET|AF_UNIX> <address> <authkey hex>
#       A SyncManager server in this process (get_server().serve_forever() on a thread),
#       with one typeid more: "root", a DictProxy of ROOT, the one dict every create of
#       it returns. ROOT holds what the C client reads, and the C client leaves there
#       what this peer checks. Prints "ADDRESS <host:port or path>" once it listens,
#       then reads commands on stdin: "check" prints what the C client left, one
#       "key=value" line each, then "END"; "quit" (or the end of stdin) exits 0.
#   manager_peer.py client <address> <authkey hex> <pickled dict proxy, hex>
#       A SyncManager client of a C manager: uses the dict proxy the C side pickled
#       (and what it holds), and the manager's dict, list, Namespace, Value, Queue,
#       Lock, Event, Semaphore, RLock and the C type Counter (an AutoProxy). Prints one
#       "key=value" line per result, stores its own proxies in the C side's dict, prints
#       "STORED", and keeps them alive until "exit" (or the end of stdin).
#   manager_peer.py shutdown <address> <authkey hex>
#       Uses a Counter and a dict of a C manager, prints "key=value" lines, drops its
#       proxies, asks the server to shut down (as BaseManager's finalizer does), prints
#       "shutdown=ok" and "END".
#
# A result that raised prints "EXC:<exception type>:<repr of its message>", so the C
# side shows which step failed and why; the peer goes on with the next step. Addresses
# are given and printed in the C library's syntax ("host:port" or a socket path).
import faulthandler
import multiprocessing
import os
import pickle
import sys
import threading
from multiprocessing import managers
from multiprocessing.managers import DictProxy, SyncManager

# A peer the C side failed to kill dumps its stacks and ends by itself.
faulthandler.dump_traceback_later(240, exit=True)


def out(key, value):
    print(f"{key}={value}", flush=True)


def step(key, fn):
    """out(key, fn()), or the exception fn raised."""
    try:
        value = fn()
    except Exception as e:  # report it, then go on with the next step
        value = f"EXC:{type(e).__name__}:{str(e)!r}"
    out(key, value)


def exc_name(fn):
    """The name of the exception fn raises ("none" when it returns)."""
    try:
        fn()
    except Exception as e:
        return type(e).__name__
    return "none"


def parse_address(s):
    host, sep, port = s.rpartition(":")
    if sep and port.isdigit() and "/" not in s:
        return (host, int(port))
    return s


def format_address(a):
    return f"{a[0]}:{a[1]}" if isinstance(a, tuple) else a


def wait_for(word):
    """Blocks until stdin says word, or ends."""
    for line in sys.stdin:
        if line.strip() == word:
            return


# ---- serve: a Python SyncManager for a C client ------------------------------------

ROOT = {
    "greeting": "hello from python",
    "n": 41,
    "nested": {"a": [1, 2.5, None, True], "b": b"\x00\x01"},
}


def get_root():
    return ROOT


class PeerManager(SyncManager):
    pass


PeerManager.register("root", callable=get_root, proxytype=DictProxy)


def serve(family, address, key):
    addr = ("127.0.0.1", 0) if family == "AF_INET" else address
    server = PeerManager(address=addr, authkey=key).get_server()
    threading.Thread(target=server.serve_forever, daemon=True).start()

    # Objects made by Python for the C client: a Queue (an AutoProxy) holding an item,
    # and a list, both stored in ROOT as proxies (pickled when the C client reads them).
    own = PeerManager(address=server.address, authkey=key)
    own.connect()
    py_queue = own.Queue()
    py_queue.put("from python")
    py_list = own.list(["from python"])
    ROOT["py_queue"] = py_queue
    ROOT["py_list"] = py_list

    print(f"ADDRESS {format_address(server.address)}", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        if cmd == "check":
            check_c_writes()
            print("END", flush=True)
    # Not a normal exit: at exit the proxies here would decref through this process's
    # own server, which Python 3.12+ cannot serve any more (no new threads at
    # interpreter shutdown), and the exit would hang.
    if isinstance(server.address, str):
        try:
            os.unlink(server.address)
        except OSError:
            pass
    sys.stdout.flush()
    os._exit(0)


def check_c_writes():
    step("from_c", lambda: repr(ROOT["from_c"]))
    step("big", lambda: repr(ROOT["big"]))
    step("c_dict_type", lambda: type(ROOT["c_dict"]).__name__)
    step("c_dict", lambda: repr(ROOT["c_dict"]._getvalue()))
    step("c_list_type", lambda: type(ROOT["c_list"]).__name__)
    step("c_list", lambda: repr(ROOT["c_list"]._getvalue()))
    step("c_ns_type", lambda: type(ROOT["c_ns"]).__name__)
    step("c_ns", lambda: repr((ROOT["c_ns"].x, ROOT["c_ns"].name)))
    step("c_value_type", lambda: type(ROOT["c_value"]).__name__)
    step("c_value", lambda: repr(ROOT["c_value"].value))
    step("c_queue_type", lambda: type(ROOT["c_queue"]).__name__)
    step("c_queue", lambda: repr(ROOT["c_queue"].get(timeout=10)))
    step("c_lock_type", lambda: type(ROOT["c_lock"]).__name__)

    def lock_free():
        lock = ROOT["c_lock"]
        got = lock.acquire(timeout=10)
        if got:
            lock.release()
        return got

    step("c_lock_free", lock_free)
    step("py_list", lambda: repr(ROOT["py_list"]._getvalue()))
    step("py_queue_empty", lambda: ROOT["py_queue"].empty())


# ---- client: Python's proxies on a C manager ---------------------------------------


class ClientManager(SyncManager):
    pass


# The C manager's own type: no callable here, so the proxy is an AutoProxy built from
# the methods the C server says the type exposes.
ClientManager.register("Counter")


def client(address, key, dict_hex):
    step(
        "wrong_key",
        lambda: exc_name(lambda: ClientManager(address=address, authkey=b"wrong key").connect()),
    )
    m = ClientManager(address=address, authkey=key)
    m.connect()

    # The C side's dict, from its pickled proxy (it holds a list proxy and a Counter).
    d = pickle.loads(bytes.fromhex(dict_hex))
    step("d_type", lambda: type(d).__name__)
    step("from_c", lambda: repr(d["from_c"]))
    step("n", lambda: repr(d["n"]))
    step("t", lambda: repr(d["t"]))
    step("d_missing", lambda: exc_name(lambda: d["nope"]))
    step("d_get_default", lambda: repr(d.get("nope", "dflt")))
    step("d_contains", lambda: repr(("n" in d, "nope" in d)))
    inner = d["inner"]
    step("inner_type", lambda: type(inner).__name__)
    step("inner_append", lambda: repr(inner.append("from python")))
    step("inner", lambda: repr(inner._getvalue()))
    c_counter = d["c_counter"]
    step("c_counter_type", lambda: type(c_counter).__name__)
    step("c_counter_incr", lambda: repr(c_counter.incr()))
    d["from_py"] = {"a": [1, 2], "b": (3,)}

    pd = m.dict({"k": "v"})
    pd["k2"] = 2
    step("py_dict_type", lambda: type(pd).__name__)
    step("py_dict_items", lambda: repr(sorted(pd.items())))
    step("py_dict_keys", lambda: repr(sorted(pd.keys())))
    step("py_dict_len", lambda: repr(len(pd)))
    step("py_dict_value", lambda: repr(pd._getvalue()))

    pl = m.list([1, 2, 3])
    pl.append(4)
    pl.extend([5])
    step("py_list_type", lambda: type(pl).__name__)
    step("py_list_iter", lambda: repr(list(pl)))
    step("py_list_neg", lambda: repr(pl[-1]))
    step("py_list_len", lambda: repr(len(pl)))
    step("py_list_pop", lambda: repr(pl.pop()))
    step("py_list_index_error", lambda: exc_name(lambda: pl[10]))
    step("py_list", lambda: repr(pl._getvalue()))

    ns = m.Namespace()
    ns.x = 5
    ns.name = "py"
    step("ns_type", lambda: type(ns).__name__)
    step("ns", lambda: repr((ns.x, ns.name)))
    step("ns_missing", lambda: exc_name(lambda: ns.nope))

    v = m.Value("i", 3)
    v.value = 9
    vd = m.Value("d", 2.5)
    step("value_type", lambda: type(v).__name__)
    step("value", lambda: repr((v.value, v.get(), vd.value)))

    q = m.Queue()
    q.put("a")
    q.put(["b", 1])
    step("queue_type", lambda: type(q).__name__)
    step("qsize", lambda: repr(q.qsize()))
    step("q_get", lambda: repr((q.get(), q.get(timeout=5))))
    step("q_empty", lambda: exc_name(lambda: q.get(timeout=0.2)))
    step("q_get_nowait", lambda: exc_name(q.get_nowait))
    step("q_is_empty", lambda: repr(q.empty()))
    q.put("for C")
    bq = m.Queue(1)
    bq.put(1)
    step("q_full", lambda: exc_name(lambda: bq.put(2, timeout=0.2)))

    lock = m.Lock()
    step("lock_type", lambda: type(lock).__name__)
    step("lock", lambda: repr((lock.acquire(), lock.acquire(timeout=0.1))))
    lock.release()

    def with_lock():
        with lock:
            return lock.acquire(False)

    step("lock_with", lambda: repr(with_lock()))
    step("lock_held", lambda: repr(lock.acquire(timeout=5)))  # held for C to find so

    ev = m.Event()
    step("event", lambda: repr((ev.is_set(), ev.wait(0.1), ev.set(), ev.is_set(), ev.wait(5))))
    sem = m.Semaphore(2)
    step("semaphore", lambda: repr((sem.acquire(), sem.acquire(), sem.acquire(timeout=0.1))))
    rl = m.RLock()
    step("rlock", lambda: repr((rl.acquire(), rl.acquire(), rl.release(), rl.release())))

    c = m.Counter(5)
    step("counter_type", lambda: type(c).__name__)
    step("counter_incr", lambda: repr((c.incr(), c.incr(n=3), c.incr(10))))
    step("counter_get", lambda: repr((c.get(), c._getvalue())))

    def fail():
        try:
            c.fail()
        except Exception as e:
            return f"{type(e).__name__}: {e}"
        return "none"

    step("counter_fail", fail)
    h = c.history()
    step("history_type", lambda: type(h).__name__)
    step("history", lambda: repr(h._getvalue()))

    # What the C side checks while this process keeps its proxies alive.
    for key, proxy in (
        ("py_dict", pd),
        ("py_list", pl),
        ("py_ns", ns),
        ("py_value", v),
        ("py_queue", q),
        ("py_lock", lock),
        ("py_counter", c),
    ):
        d[key] = proxy
    print("STORED", flush=True)
    wait_for("exit")
    return 0


# ---- shutdown: a Python client that stops a C manager's serve_forever ---------------


def shutdown(address, key):
    m = ClientManager(address=address, authkey=key)
    m.connect()
    c = m.Counter(1)
    step("counter", lambda: repr((c.incr(), c.incr(n=2))))
    d = m.dict()
    d["x"] = [1, "y"]
    step("dict", lambda: repr(d["x"]))
    # Drop the references now, while the server runs (Python decrefs at exit too, but
    # the server will be gone then).
    del c, d
    conn = m._Client(m._address, authkey=m._authkey)
    try:
        managers.dispatch(conn, None, "shutdown")
    finally:
        conn.close()
    out("shutdown", "ok")
    print("END", flush=True)
    return 0


def main(argv):
    mode = argv[1]
    if mode == "serve":
        key = bytes.fromhex(argv[4])
        # Proxies rebuilt in this process (the C client's, stored in ROOT) use it.
        multiprocessing.current_process().authkey = key
        return serve(argv[2], argv[3], key)
    key = bytes.fromhex(argv[3])
    multiprocessing.current_process().authkey = key
    address = parse_address(argv[2])
    if mode == "client":
        return client(address, key, argv[4])
    if mode == "shutdown":
        return shutdown(address, key)
    print(f"manager_peer.py: unknown mode {mode!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
