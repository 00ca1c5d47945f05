// Managers and a real python3 (multiprocessing.managers), both ways (issue 13):
//  - our client on a Python SyncManager: its dict, list, Namespace, Value, Queue, Lock,
//    Semaphore, an object it registered ("root") and proxies it made, Python's
//    exceptions as our codes; the peer then checks what we left in its objects;
//  - Python's SyncManager client on our sync manager: the same types, a C type
//    (Counter) through an AutoProxy, a proxy we pickled, proxies stored in a dict both
//    ways, and the references Python drops when it exits; and a Python client stopping
//    our serve_forever with the shutdown request.
// The peer is tests/interop/manager_peer.py. Every call is bounded (kWait); a failed
// test kills the peer (PyPeer) and shuts our manager down (Mgr).
#include <multiproc.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#ifndef _WIN32
#include <unistd.h>
#endif

#include "manager_fixture.h"
#include "python_peer.h"

using namespace mpt;

namespace {

#ifndef _WIN32

// ---- small owners -----------------------------------------------------------------

struct Px {
    mp_proxy *p = nullptr;
    Px() = default;
    Px(const Px &) = delete;
    Px &operator=(const Px &) = delete;
    ~Px() { mp_proxy_free(p); }
};

struct Mgr {
    mp_manager *m = nullptr;
    Mgr() = default;
    Mgr(const Mgr &) = delete;
    Mgr &operator=(const Mgr &) = delete;
    ~Mgr() { mp_manager_free(m); }
};

std::string hex_of(const void *p, size_t n) {
    std::string h;
    char b[3];
    for (size_t i = 0; i < n; i++) {
        snprintf(b, sizeof b, "%02x", static_cast<const unsigned char *>(p)[i]);
        h += b;
    }
    return h;
}
std::string hex_of(const std::string &s) { return hex_of(s.data(), s.size()); }

// A Python-ish rendering of a value, for failure messages.
std::string show(const mp_value *v) {
    void *buf = nullptr;
    size_t n = 0;
    std::string s = mp_value_type_name(mp_value_get_type(v));
    if (mp_value_get_type(v) == MP_VALUE_STR)
        return "'" + std::string(mp_value_as_str(v, nullptr)) + "'";
    if (mp_value_get_type(v) == MP_VALUE_INT) return std::to_string(mp_value_as_int(v));
    if (mp_value_dumps(v, &buf, &n) == 0) s += " pickle " + hex_of(buf, n);
    mp_value_buf_free(buf);
    return s;
}

// The detail of the last error, taken right after the call.
std::string last() {
    const char *m = mp_last_error_message();
    return m ? m : "";
}

// key must outlive the options (they point into it).
mp_manager_opts opts(const char *address, const std::string &key) {
    mp_manager_opts o = {};
    o.address = address;
    o.authkey = key.data();
    o.authkey_len = key.size();
    o.timeout = kWait; // every call and connect of the client side is bounded
    return o;
}

bool python_usable(std::string *why) {
    static int state = 0; // 0 unknown, 1 yes, 2 no
    if (state == 0) state = python_runs("import multiprocessing.managers") ? 1 : 2;
    *why = "python3 with multiprocessing.managers is not available";
    return state == 1;
}

#define REQUIRE_PYTHON()                                 \
    do {                                                 \
        std::string why_;                                \
        if (!python_usable(&why_)) GTEST_SKIP() << why_; \
    } while (0)

// Reads the peer's "key=value" lines until a line equal to `until`; false (and a
// failure) when a line does not come within kWait or the peer ends first.
bool read_results(PyPeer &py, const char *until, std::map<std::string, std::string> *kv,
                  std::string *transcript) {
    for (;;) {
        std::string line;
        if (!py.line(&line, kWait)) {
            ADD_FAILURE() << "the python peer said nothing more within " << kWait
                          << " s (waiting for " << until << "); it said:\n"
                          << *transcript;
            return false;
        }
        if (line == until) return true;
        *transcript += line + "\n";
        size_t eq = line.find('=');
        if (eq != std::string::npos) (*kv)[line.substr(0, eq)] = line.substr(eq + 1);
    }
}

void expect_results(const std::map<std::string, std::string> &got,
                    const std::vector<std::pair<std::string, std::string>> &want) {
    for (auto &w : want) {
        auto it = got.find(w.first);
        if (it == got.end())
            ADD_FAILURE() << "the python peer printed no " << w.first;
        else
            EXPECT_EQ(w.second, it->second) << "python's " << w.first;
    }
}

std::string unix_address() {
    char buf[256];
    EXPECT_EQ(0, mp_arbitrary_address(MP_AF_UNIX, buf, sizeof buf)) << err();
    return buf;
}

// ---- our client on a Python SyncManager ---------------------------------------------

// What manager_peer.py's check prints once the C client below has run.
const std::vector<std::pair<std::string, std::string>> kPythonSeesOurWrites = {
    {"from_c", "(1, 'two', 3.5, None, True, b'\\x00\\xff', [-7], {'k': 'v'})"},
    {"big", "-9223372036854775808"},
    {"c_dict_type", "DictProxy"},
    {"c_dict", "{'b': 2, 'c': [3]}"},
    {"c_list_type", "ListProxy"},
    {"c_list", "[10, 'two', 3.5]"},
    {"c_ns_type", "NamespaceProxy"},
    {"c_ns", "(1, 'c')"},
    {"c_value_type", "ValueProxy"},
    {"c_value", "42"},
    {"c_queue_type", "AutoProxy[Queue]"},
    {"c_queue", "'left for python'"},
    {"c_lock_type", "AcquirerProxy"},
    {"c_lock_free", "True"},
    {"py_list", "['from python', 'from C']"},
    {"py_queue_empty", "True"},
};

// Stores p in root[key] as a pickled proxy (Python rebuilds it in its server).
void store_proxy(mp_proxy *root, const char *key, mp_proxy *p) {
    mp_value *pv = nullptr;
    ASSERT_EQ(0, mp_proxy_to_value(p, &pv)) << err();
    Val owned(pv);
    EXPECT_TRUE(mp_value_is_proxy(pv));
    EXPECT_EQ(0, mp_proxy_setitem(root, S(key).get(), pv)) << key << " " << err();
}

// Uses the objects of the peer's server; leaves in root what the peer then checks.
void use_python_objects(mp_manager *m, mp_proxy *root) {
    // What Python put in root.
    mp_value *v = nullptr;
    ASSERT_EQ(0, mp_proxy_getitem(root, S("greeting").get(), &v)) << err();
    EXPECT_STREQ("hello from python", mp_value_as_str(v, nullptr)) << show(v);
    mp_value_free(v);
    v = nullptr;
    ASSERT_EQ(0, mp_proxy_getitem(root, S("n").get(), &v)) << err();
    EXPECT_EQ(MP_VALUE_INT, mp_value_get_type(v));
    EXPECT_EQ(41, mp_value_as_int(v));
    mp_value_free(v);
    v = nullptr;
    ASSERT_EQ(0, mp_proxy_getitem(root, S("nested").get(), &v)) << err();
    Val nested(v);
    Val want_a = lst({mp_value_int(1), mp_value_float(2.5), mp_value_none(), mp_value_bool(true)});
    EXPECT_TRUE(mp_value_equal(want_a.get(), mp_value_dict_get_str(v, "a"))) << show(v);
    Val want_b(mp_value_bytes("\0\1", 2));
    EXPECT_TRUE(mp_value_equal(want_b.get(), mp_value_dict_get_str(v, "b"))) << show(v);

    // Python's KeyError is our MP_ENOENT, with its name and the key in the detail.
    v = nullptr;
    EXPECT_EQ(MP_ENOENT, mp_proxy_getitem(root, S("missing").get(), &v));
    std::string msg = last();
    EXPECT_NE(std::string::npos, msg.find("KeyError")) << msg;
    EXPECT_NE(std::string::npos, msg.find("missing")) << msg;
    EXPECT_EQ(nullptr, v);
    mp_value_free(v);

    // Values that Python checks by their repr.
    Val from_c = tup({mp_value_int(1), mp_value_str("two"), mp_value_float(3.5), mp_value_none(),
                      mp_value_bool(true), mp_value_bytes("\0\xff", 2),
                      lst({mp_value_int(-7)}).release(), mp_value_dict_new()});
    mp_value_dict_set_str(mp_value_item(from_c.get(), 7), "k", mp_value_str("v"));
    EXPECT_EQ(0, mp_proxy_setitem(root, S("from_c").get(), from_c.get())) << err();
    EXPECT_EQ(0, mp_proxy_setitem(root, S("big").get(), I(INT64_MIN).get())) << err();

    // dict, and its iterator (a '#PROXY' answer of typeid "Iterator").
    Px d;
    Val init(mp_value_dict_new());
    mp_value_dict_set_str(init.get(), "a", mp_value_int(1));
    ASSERT_EQ(0, mp_manager_dict(m, init.get(), &d.p)) << err();
    EXPECT_STREQ("dict", mp_proxy_typeid(d.p));
    v = nullptr;
    EXPECT_EQ(0, mp_proxy_getitem(d.p, S("a").get(), &v)) << err();
    EXPECT_EQ(1, mp_value_as_int(v));
    mp_value_free(v);
    EXPECT_EQ(0, mp_proxy_setitem(d.p, S("b").get(), I(2).get())) << err();
    EXPECT_EQ(0, mp_proxy_setitem(d.p, S("c").get(), lst({mp_value_int(3)}).get())) << err();
    EXPECT_EQ(0, mp_proxy_delitem(d.p, S("a").get())) << err();
    EXPECT_EQ(MP_ENOENT, mp_proxy_delitem(d.p, S("a").get()));
    size_t n = 0;
    EXPECT_EQ(0, mp_proxy_len(d.p, &n)) << err();
    EXPECT_EQ(2u, n);
    v = nullptr;
    ASSERT_EQ(0, mp_proxy_getvalue(d.p, &v)) << err();
    Val dv(v);
    Val want_d(mp_value_dict_new());
    mp_value_dict_set_str(want_d.get(), "b", mp_value_int(2));
    mp_value_dict_set_str(want_d.get(), "c", lst({mp_value_int(3)}).release());
    EXPECT_TRUE(mp_value_equal(want_d.get(), v)) << show(v);
    {
        Px it;
        ASSERT_EQ(0, mp_proxy_call_proxy(d.p, "__iter__", nullptr, nullptr, &it.p)) << err();
        EXPECT_STREQ("Iterator", mp_proxy_typeid(it.p));
        for (const char *want : {"b", "c"}) {
            v = nullptr;
            EXPECT_EQ(0, mp_proxy_call(it.p, "__next__", nullptr, nullptr, &v)) << err();
            EXPECT_STREQ(want, mp_value_as_str(v, nullptr)) << show(v);
            mp_value_free(v);
        }
        v = nullptr;
        EXPECT_GT(0, mp_proxy_call(it.p, "__next__", nullptr, nullptr, &v));
        msg = last();
        EXPECT_NE(std::string::npos, msg.find("StopIteration")) << msg;
        mp_value_free(v);
    }
    store_proxy(root, "c_dict", d.p);

    // list
    Px l;
    Val linit = lst({mp_value_int(1)});
    ASSERT_EQ(0, mp_manager_list(m, linit.get(), &l.p)) << err();
    EXPECT_STREQ("list", mp_proxy_typeid(l.p));
    EXPECT_EQ(0, mp_proxy_append(l.p, S("two").get())) << err();
    Val f35(mp_value_float(3.5));
    EXPECT_EQ(0, mp_proxy_append(l.p, f35.get())) << err();
    n = 0;
    EXPECT_EQ(0, mp_proxy_len(l.p, &n)) << err();
    EXPECT_EQ(3u, n);
    v = nullptr;
    EXPECT_EQ(0, mp_proxy_getitem(l.p, I(1).get(), &v)) << err();
    EXPECT_STREQ("two", mp_value_as_str(v, nullptr)) << show(v);
    mp_value_free(v);
    v = nullptr;
    EXPECT_EQ(0, mp_proxy_getitem(l.p, I(-1).get(), &v)) << err();
    EXPECT_EQ(3.5, mp_value_as_float(v)) << show(v);
    mp_value_free(v);
    v = nullptr;
    EXPECT_EQ(MP_ENOENT, mp_proxy_getitem(l.p, I(10).get(), &v));
    msg = last();
    EXPECT_NE(std::string::npos, msg.find("IndexError")) << msg;
    EXPECT_EQ(nullptr, v);
    mp_value_free(v);
    EXPECT_EQ(0, mp_proxy_setitem(l.p, I(0).get(), I(10).get())) << err();
    store_proxy(root, "c_list", l.p);

    // Namespace
    Px ns;
    ASSERT_EQ(0, mp_manager_namespace(m, &ns.p)) << err();
    EXPECT_EQ(0, mp_proxy_setattr(ns.p, "x", I(1).get())) << err();
    EXPECT_EQ(0, mp_proxy_setattr(ns.p, "name", S("c").get())) << err();
    v = nullptr;
    EXPECT_EQ(0, mp_proxy_getattr(ns.p, "x", &v)) << err();
    EXPECT_EQ(1, mp_value_as_int(v));
    mp_value_free(v);
    v = nullptr;
    EXPECT_EQ(MP_ENOENT, mp_proxy_getattr(ns.p, "nope", &v));
    msg = last();
    EXPECT_NE(std::string::npos, msg.find("AttributeError")) << msg;
    EXPECT_EQ(nullptr, v);
    mp_value_free(v);
    store_proxy(root, "c_ns", ns.p);

    // Value
    Px val, vd;
    ASSERT_EQ(0, mp_manager_value(m, "i", I(7).get(), &val.p)) << err();
    v = nullptr;
    EXPECT_EQ(0, mp_proxy_get(val.p, &v)) << err();
    EXPECT_EQ(7, mp_value_as_int(v));
    mp_value_free(v);
    EXPECT_EQ(0, mp_proxy_set(val.p, I(42).get())) << err();
    v = nullptr;
    EXPECT_EQ(0, mp_proxy_get(val.p, &v)) << err();
    EXPECT_EQ(42, mp_value_as_int(v));
    mp_value_free(v);
    Val f25(mp_value_float(2.5));
    ASSERT_EQ(0, mp_manager_value(m, "d", f25.get(), &vd.p)) << err();
    v = nullptr;
    EXPECT_EQ(0, mp_proxy_get(vd.p, &v)) << err();
    EXPECT_EQ(MP_VALUE_FLOAT, mp_value_get_type(v));
    EXPECT_EQ(2.5, mp_value_as_float(v));
    mp_value_free(v);
    store_proxy(root, "c_value", val.p);

    // Queue: items in order, Empty and Full as our codes, one item left for Python.
    Px q, bq;
    ASSERT_EQ(0, mp_manager_queue(m, 0, false, &q.p)) << err();
    EXPECT_EQ(0, mp_proxy_put(q.p, I(1).get(), MP_FOREVER)) << err();
    EXPECT_EQ(0, mp_proxy_put(q.p, S("two").get(), kWait)) << err();
    v = nullptr;
    EXPECT_EQ(0, mp_proxy_get_item(q.p, kWait, &v)) << err();
    EXPECT_EQ(1, mp_value_as_int(v)) << show(v);
    mp_value_free(v);
    v = nullptr;
    EXPECT_EQ(0, mp_proxy_get_item(q.p, MP_FOREVER, &v)) << err();
    EXPECT_STREQ("two", mp_value_as_str(v, nullptr)) << show(v);
    mp_value_free(v);
    v = nullptr;
    EXPECT_EQ(MP_EEMPTY, mp_proxy_get_item(q.p, 0.2, &v)) << err();
    EXPECT_EQ(MP_EEMPTY, mp_proxy_get_item(q.p, -1, &v)) << err();
    EXPECT_EQ(nullptr, v);
    mp_value_free(v);
    EXPECT_EQ(0, mp_proxy_put(q.p, S("left for python").get(), kWait)) << err();
    store_proxy(root, "c_queue", q.p);
    ASSERT_EQ(0, mp_manager_queue(m, 1, false, &bq.p)) << err();
    EXPECT_EQ(0, mp_proxy_put(bq.p, I(1).get(), kWait)) << err();
    EXPECT_EQ(MP_EFULL, mp_proxy_put(bq.p, I(2).get(), 0.2)) << err();
    EXPECT_EQ(MP_EFULL, mp_proxy_put(bq.p, I(2).get(), -1)) << err();

    // Lock (not reentrant), and Python's RuntimeError as MP_EREMOTE; a Semaphore.
    Px lock, sem;
    ASSERT_EQ(0, mp_manager_sync(m, "Lock", 0, &lock.p)) << err();
    bool got = false;
    EXPECT_EQ(0, mp_proxy_acquire(lock.p, MP_FOREVER, &got)) << err();
    EXPECT_TRUE(got);
    got = true;
    EXPECT_EQ(0, mp_proxy_acquire(lock.p, 0.1, &got)) << err();
    EXPECT_FALSE(got) << "a second acquire of a held Lock succeeded";
    EXPECT_EQ(0, mp_proxy_release(lock.p)) << err();
    EXPECT_EQ(MP_EREMOTE, mp_proxy_release(lock.p)) << "releasing an unlocked lock";
    msg = last();
    EXPECT_NE(std::string::npos, msg.find("RuntimeError")) << msg;
    store_proxy(root, "c_lock", lock.p);
    ASSERT_EQ(0, mp_manager_sync(m, "Semaphore", 1, &sem.p)) << err();
    got = false;
    EXPECT_EQ(0, mp_proxy_acquire(sem.p, kWait, &got)) << err();
    EXPECT_TRUE(got);
    got = true;
    EXPECT_EQ(0, mp_proxy_acquire(sem.p, -1, &got)) << err();
    EXPECT_FALSE(got);
    EXPECT_EQ(0, mp_proxy_release(sem.p)) << err();

    // Proxies Python made and stored in root: as a value (then rebuilt), and directly.
    v = nullptr;
    ASSERT_EQ(0, mp_proxy_getitem(root, S("py_queue").get(), &v)) << err();
    Val pqv(v);
    ASSERT_TRUE(mp_value_is_proxy(v)) << show(v);
    Px pq;
    {
        // With the process's authkey (not the manager's) the proxy cannot authenticate:
        // when it takes its reference, or at the latest at its first call.
        Px wrong;
        int rc = mp_proxy_from_value(v, nullptr, 0, &wrong.p);
        mp_value *none = nullptr;
        if (rc == 0) rc = mp_proxy_get_item(wrong.p, kWait, &none);
        EXPECT_EQ(MP_EAUTH, rc) << err();
        EXPECT_EQ(nullptr, none);
        mp_value_free(none);
    }
    const std::string key = "py manager key";
    ASSERT_EQ(0, mp_proxy_from_value(v, key.data(), key.size(), &pq.p)) << err();
    EXPECT_STREQ("Queue", mp_proxy_typeid(pq.p));
    v = nullptr;
    EXPECT_EQ(0, mp_proxy_get_item(pq.p, kWait, &v)) << err();
    EXPECT_STREQ("from python", mp_value_as_str(v, nullptr)) << show(v);
    mp_value_free(v);
    Px pl;
    Val plargs = tup({mp_value_str("py_list")});
    ASSERT_EQ(0, mp_proxy_call_proxy(root, "__getitem__", plargs.get(), nullptr, &pl.p)) << err();
    EXPECT_STREQ("list", mp_proxy_typeid(pl.p));
    EXPECT_EQ(0, mp_proxy_append(pl.p, S("from C").get())) << err();
    n = 0;
    EXPECT_EQ(0, mp_proxy_len(pl.p, &n)) << err();
    EXPECT_EQ(2u, n);

    // root, the peer's two, and ours: d, l, ns, val, vd, q, bq, lock, sem.
    n = 0;
    EXPECT_EQ(0, mp_manager_number_of_objects(m, &n)) << err();
    EXPECT_GE(n, 12u);
}

void c_client_on_python(mp_family fam) {
    const std::string key = "py manager key";
    std::string bind = fam == MP_AF_INET ? "127.0.0.1:0" : unix_address();
    PyPeer py;
    ASSERT_TRUE(
        py.start({MP_TEST_MANAGER_PEER, "serve", mp_family_name(fam), bind, hex_of(key)}, true));
    std::string line;
    ASSERT_TRUE(py.line(&line, kWait)) << "the python manager did not start";
    ASSERT_EQ(0u, line.find("ADDRESS ")) << line;
    std::string address = line.substr(8);
    if (fam == MP_AF_INET) {
        EXPECT_EQ(0u, address.find("127.0.0.1:")) << address;
    }

    {
        // A wrong key is refused when connecting.
        Mgr bad;
        const std::string wrong = "not the key";
        mp_manager_opts o = opts(address.c_str(), wrong);
        ASSERT_EQ(0, mp_sync_manager_new(nullptr, &o, &bad.m)) << err();
        EXPECT_EQ(MP_EAUTH, mp_manager_connect(bad.m)) << err();
    }
    {
        Mgr m;
        mp_manager_opts o = opts(address.c_str(), key);
        ASSERT_EQ(0, mp_sync_manager_new(nullptr, &o, &m.m)) << err();
        ASSERT_EQ(0, mp_manager_connect(m.m)) << err();
        ASSERT_NE(nullptr, mp_manager_address(m.m));
        EXPECT_EQ(address, mp_manager_address(m.m));
        {
            // A typeid only the server knows (Python's register("root") without a
            // callable on the client's side).
            Px root;
            ASSERT_EQ(0, mp_manager_create(m.m, "root", nullptr, nullptr, &root.p)) << err();
            EXPECT_STREQ("root", mp_proxy_typeid(root.p));
            use_python_objects(m.m, root.p);
            Px nope;
            EXPECT_NE(0, mp_manager_create(m.m, "no such typeid", nullptr, nullptr, &nope.p));
            EXPECT_EQ(nullptr, nope.p);
        }
        // Every reference we held is dropped: what remains are the peer's own (its
        // queue and list); ours live on in root, as Python's server holds them.
        size_t n = 0;
        EXPECT_TRUE(eventually([&] {
            return mp_manager_number_of_objects(m.m, &n) == 0 && n == 2;
        })) << n
            << " objects in the python manager, 2 expected " << err();
    }
    ASSERT_TRUE(py.send("check\n"));
    std::map<std::string, std::string> got;
    std::string transcript;
    if (read_results(py, "END", &got, &transcript)) expect_results(got, kPythonSeesOurWrites);
    ASSERT_TRUE(py.send("quit\n"));
    EXPECT_EQ(0, py.wait(kWait));
    if (fam == MP_AF_UNIX) unlink(bind.c_str());
}

TEST(ManagerInterop, CClientOnPythonManagerInet) {
    REQUIRE_PYTHON();
    c_client_on_python(MP_AF_INET);
}

TEST(ManagerInterop, CClientOnPythonManagerUnix) {
    REQUIRE_PYTHON();
    c_client_on_python(MP_AF_UNIX);
}

// ---- Python's client on our manager ---------------------------------------------------

// A C type served to Python: Counter(start=0) with incr(n=1), get(), fail() (raises
// ValueError), and history() (the values after each incr, as a new managed list).
struct Counter {
    int64_t value = 0;
    std::vector<int64_t> history;
};

int arg_int(const mp_value *args, const mp_value *kwds, size_t i, const char *name, int64_t dflt,
            int64_t *out) {
    const mp_value *a = mp_value_item(args, i);
    if (!a) a = mp_value_dict_get_str(kwds, name);
    if (!a) {
        *out = dflt;
        return 0;
    }
    if (mp_value_get_type(a) != MP_VALUE_INT)
        return mp_manager_raise(MP_EINVAL, "TypeError", "%s must be an int, not %s", name,
                                mp_value_type_name(mp_value_get_type(a)));
    *out = mp_value_as_int(a);
    return 0;
}

int counter_create(const mp_value *args, const mp_value *kwds, void **obj) {
    int64_t start = 0;
    int rc = arg_int(args, kwds, 0, "start", 0, &start);
    if (rc) return rc;
    Counter *c = new Counter;
    c->value = start;
    *obj = c;
    return 0;
}

void counter_free(void *obj) { delete static_cast<Counter *>(obj); }

int counter_getvalue(void *obj, mp_value **out) {
    *out = mp_value_int(static_cast<Counter *>(obj)->value);
    return *out ? 0 : MP_ENOMEM;
}

int counter_incr(void *obj, const mp_value *args, const mp_value *kwds, mp_value **result) {
    Counter *c = static_cast<Counter *>(obj);
    int64_t n = 1;
    int rc = arg_int(args, kwds, 0, "n", 1, &n);
    if (rc) return rc;
    c->value += n;
    c->history.push_back(c->value);
    *result = mp_value_int(c->value);
    return *result ? 0 : MP_ENOMEM;
}

int counter_get(void *obj, const mp_value *, const mp_value *, mp_value **result) {
    return counter_getvalue(obj, result);
}

int counter_fail(void *obj, const mp_value *, const mp_value *, mp_value **) {
    return mp_manager_raise(MP_EINVAL, "ValueError", "counter says no %lld",
                            static_cast<long long>(static_cast<Counter *>(obj)->value));
}

int counter_history(void *obj, const mp_value *, const mp_value *, mp_value **result) {
    mp_value *l = mp_value_list_new();
    for (int64_t x : static_cast<Counter *>(obj)->history) mp_value_list_append(l, mp_value_int(x));
    *result = l;
    return l ? 0 : MP_ENOMEM;
}

const mp_manager_method kCounterMethods[] = {
    {"incr", counter_incr, nullptr},
    {"get", counter_get, nullptr},
    {"fail", counter_fail, nullptr},
    {"history", counter_history, "list"},
};

const mp_manager_type kCounterType = {
    "Counter",                                          // type_id
    counter_create,                                     // create
    counter_free,                                       // free
    counter_getvalue,                                   // getvalue
    kCounterMethods,                                    // methods
    sizeof kCounterMethods / sizeof kCounterMethods[0], // nmethods
    false,                                              // concurrent
};

// What manager_peer.py's client mode prints on our manager (a CPython SyncManager
// serving the same objects prints the same).
const std::vector<std::pair<std::string, std::string>> kPythonClientResults = {
    {"wrong_key", "AuthenticationError"},
    {"d_type", "DictProxy"},
    {"from_c", "'hello from C'"},
    {"n", "41"},
    {"t", "(1, 2.5, None, True, b'\\x00\\x01', [3], {'k': 'v'})"},
    {"d_missing", "KeyError"},
    {"d_get_default", "'dflt'"},
    {"d_contains", "(True, False)"},
    {"inner_type", "ListProxy"},
    {"inner_append", "None"},
    {"inner", "[1, 2, 'from python']"},
    {"c_counter_type", "AutoProxy[Counter]"},
    {"c_counter_incr", "101"},
    {"py_dict_type", "DictProxy"},
    {"py_dict_items", "[('k', 'v'), ('k2', 2)]"},
    {"py_dict_keys", "['k', 'k2']"},
    {"py_dict_len", "2"},
    {"py_dict_value", "{'k': 'v', 'k2': 2}"},
    {"py_list_type", "ListProxy"},
    {"py_list_iter", "[1, 2, 3, 4, 5]"},
    {"py_list_neg", "5"},
    {"py_list_len", "5"},
    {"py_list_pop", "5"},
    {"py_list_index_error", "IndexError"},
    {"py_list", "[1, 2, 3, 4]"},
    {"ns_type", "NamespaceProxy"},
    {"ns", "(5, 'py')"},
    {"ns_missing", "AttributeError"},
    {"value_type", "ValueProxy"},
    {"value", "(9, 9, 2.5)"},
    {"queue_type", "AutoProxy[Queue]"},
    {"qsize", "2"},
    {"q_get", "('a', ['b', 1])"},
    {"q_empty", "Empty"},
    {"q_get_nowait", "Empty"},
    {"q_is_empty", "True"},
    {"q_full", "Full"},
    {"lock_type", "AcquirerProxy"},
    {"lock", "(True, False)"},
    {"lock_with", "False"},
    {"lock_held", "True"},
    {"event", "(False, False, None, True, True)"},
    {"semaphore", "(True, True, False)"},
    {"rlock", "(True, True, None, None)"},
    {"counter_type", "AutoProxy[Counter]"},
    {"counter_incr", "(6, 9, 19)"},
    {"counter_get", "(19, 19)"},
    {"counter_fail", "ValueError: counter says no 19"},
    {"history_type", "ListProxy"},
    {"history", "[6, 9, 19]"},
};

// d[key] as a proxy (Python stored its proxy there).
void proxy_at(mp_proxy *d, const char *key, mp_proxy **out) {
    Val args = tup({mp_value_str(key)});
    ASSERT_EQ(0, mp_proxy_call_proxy(d, "__getitem__", args.get(), nullptr, out))
        << key << " " << err();
}

// Checks, while the peer keeps them alive, the objects Python made and stored in d.
void check_python_objects(mp_proxy *d) {
    mp_value *v = nullptr;
    Px pd, pl, pns, pv, pq, plock, pc;
    proxy_at(d, "py_dict", &pd.p);
    if (pd.p) {
        EXPECT_STREQ("dict", mp_proxy_typeid(pd.p));
        v = nullptr;
        EXPECT_EQ(0, mp_proxy_getvalue(pd.p, &v)) << err();
        Val want(mp_value_dict_new());
        mp_value_dict_set_str(want.get(), "k", mp_value_str("v"));
        mp_value_dict_set_str(want.get(), "k2", mp_value_int(2));
        EXPECT_TRUE(mp_value_equal(want.get(), v)) << show(v);
        mp_value_free(v);
    }
    proxy_at(d, "py_list", &pl.p);
    if (pl.p) {
        EXPECT_STREQ("list", mp_proxy_typeid(pl.p));
        v = nullptr;
        EXPECT_EQ(0, mp_proxy_getvalue(pl.p, &v)) << err();
        Val want = lst({mp_value_int(1), mp_value_int(2), mp_value_int(3), mp_value_int(4)});
        EXPECT_TRUE(mp_value_equal(want.get(), v)) << show(v);
        mp_value_free(v);
    }
    proxy_at(d, "py_ns", &pns.p);
    if (pns.p) {
        v = nullptr;
        EXPECT_EQ(0, mp_proxy_getattr(pns.p, "x", &v)) << err();
        EXPECT_EQ(5, mp_value_as_int(v)) << show(v);
        mp_value_free(v);
    }
    proxy_at(d, "py_value", &pv.p);
    if (pv.p) {
        v = nullptr;
        EXPECT_EQ(0, mp_proxy_get(pv.p, &v)) << err();
        EXPECT_EQ(9, mp_value_as_int(v)) << show(v);
        mp_value_free(v);
    }
    proxy_at(d, "py_queue", &pq.p);
    if (pq.p) {
        EXPECT_STREQ("Queue", mp_proxy_typeid(pq.p));
        v = nullptr;
        EXPECT_EQ(0, mp_proxy_get_item(pq.p, kWait, &v)) << err();
        EXPECT_STREQ("for C", mp_value_as_str(v, nullptr)) << show(v);
        mp_value_free(v);
    }
    proxy_at(d, "py_lock", &plock.p);
    if (plock.p) {
        bool got = true;
        EXPECT_EQ(0, mp_proxy_acquire(plock.p, 0.1, &got)) << err();
        EXPECT_FALSE(got) << "python holds this lock";
    }
    proxy_at(d, "py_counter", &pc.p);
    if (pc.p) {
        EXPECT_STREQ("Counter", mp_proxy_typeid(pc.p));
        v = nullptr;
        EXPECT_EQ(0, mp_proxy_call(pc.p, "get", nullptr, nullptr, &v)) << err();
        EXPECT_EQ(19, mp_value_as_int(v)) << show(v);
        mp_value_free(v);
    }
}

void python_client_on_c(const char *bind) {
    const std::string key = "c manager key";
    Mgr srv;
    mp_manager_opts o = opts(bind, key);
    ASSERT_EQ(0, mp_sync_manager_new(nullptr, &o, &srv.m)) << err();
    ASSERT_EQ(0, mp_manager_register(srv.m, &kCounterType)) << err();
    ASSERT_EQ(0, mp_manager_start(srv.m)) << err();
    ASSERT_NE(nullptr, mp_manager_address(srv.m));
    std::string address = mp_manager_address(srv.m);

    Px d, l, c;
    Val init(mp_value_dict_new());
    mp_value_dict_set_str(init.get(), "from_c", mp_value_str("hello from C"));
    mp_value_dict_set_str(init.get(), "n", mp_value_int(41));
    Val kv(mp_value_dict_new());
    mp_value_dict_set_str(kv.get(), "k", mp_value_str("v"));
    mp_value_dict_set_str(
        init.get(), "t",
        tup({mp_value_int(1), mp_value_float(2.5), mp_value_none(), mp_value_bool(true),
             mp_value_bytes("\0\1", 2), lst({mp_value_int(3)}).release(), kv.release()})
            .release());
    ASSERT_EQ(0, mp_manager_dict(srv.m, init.get(), &d.p)) << err();
    Val linit = lst({mp_value_int(1), mp_value_int(2)});
    ASSERT_EQ(0, mp_manager_list(srv.m, linit.get(), &l.p)) << err();
    Val cargs = tup({mp_value_int(100)});
    ASSERT_EQ(0, mp_manager_create(srv.m, "Counter", cargs.get(), nullptr, &c.p)) << err();
    EXPECT_STREQ("Counter", mp_proxy_typeid(c.p));
    mp_value *pv = nullptr;
    ASSERT_EQ(0, mp_proxy_to_value(l.p, &pv)) << err();
    EXPECT_EQ(0, mp_proxy_setitem(d.p, S("inner").get(), Val(pv).get())) << err();
    pv = nullptr;
    ASSERT_EQ(0, mp_proxy_to_value(c.p, &pv)) << err();
    EXPECT_EQ(0, mp_proxy_setitem(d.p, S("c_counter").get(), Val(pv).get())) << err();

    // The dict goes to Python as its pickled proxy.
    pv = nullptr;
    ASSERT_EQ(0, mp_proxy_to_value(d.p, &pv)) << err();
    Val dv(pv);
    ASSERT_TRUE(mp_value_is_proxy(pv));
    void *buf = nullptr;
    size_t len = 0;
    ASSERT_EQ(0, mp_value_dumps(pv, &buf, &len)) << err();
    std::string pickled = hex_of(buf, len);
    mp_value_buf_free(buf);

    PyPeer py;
    ASSERT_TRUE(py.start({MP_TEST_MANAGER_PEER, "client", address, hex_of(key), pickled}, true));
    std::map<std::string, std::string> got;
    std::string transcript;
    bool stored = read_results(py, "STORED", &got, &transcript);
    expect_results(got, kPythonClientResults);
    if (stored) {
        mp_value *v = nullptr;
        EXPECT_EQ(0, mp_proxy_getitem(d.p, S("from_py").get(), &v)) << err();
        Val want(mp_value_dict_new());
        mp_value_dict_set_str(want.get(), "a", lst({mp_value_int(1), mp_value_int(2)}).release());
        mp_value_dict_set_str(want.get(), "b", tup({mp_value_int(3)}).release());
        EXPECT_TRUE(mp_value_equal(want.get(), v)) << show(v);
        mp_value_free(v);
        v = nullptr;
        EXPECT_EQ(0, mp_proxy_getvalue(l.p, &v)) << err();
        Val lwant = lst({mp_value_int(1), mp_value_int(2), mp_value_str("from python")});
        EXPECT_TRUE(mp_value_equal(lwant.get(), v)) << show(v);
        mp_value_free(v);
        check_python_objects(d.p);
    }
    ASSERT_TRUE(py.send("exit\n"));
    EXPECT_EQ(0, py.wait(kWait));

    // Python incremented our Counter once through the proxy it unpickled.
    mp_value *v = nullptr;
    EXPECT_EQ(0, mp_proxy_call(c.p, "get", nullptr, nullptr, &v)) << err();
    EXPECT_EQ(101, mp_value_as_int(v)) << show(v);
    mp_value_free(v);
    // Python dropped its references when it exited: only our three objects remain
    // (the proxies stored in d hold none of their own, as in Python).
    size_t n = 0;
    EXPECT_TRUE(eventually([&] { return mp_manager_number_of_objects(srv.m, &n) == 0 && n == 3; }))
        << n << " objects in our manager, 3 expected " << err();
}

TEST(ManagerInterop, PythonClientOnCManagerInet) {
    REQUIRE_PYTHON();
    python_client_on_c("127.0.0.1:0");
}

TEST(ManagerInterop, PythonClientOnCManagerUnix) {
    REQUIRE_PYTHON();
    python_client_on_c(unix_address().c_str());
}

// Our serve_forever on a thread, stopped by a Python client's shutdown request.
TEST(ManagerInterop, PythonClientShutsDownServeForever) {
    REQUIRE_PYTHON();
    const std::string key = "serve forever key";
    std::string address = unix_address();
    mp_manager_opts o = opts(address.c_str(), key);
    mp_manager *srv = nullptr;
    ASSERT_EQ(0, mp_sync_manager_new(nullptr, &o, &srv)) << err();
    ASSERT_EQ(0, mp_manager_register(srv, &kCounterType)) << err();
    // Shared with the thread, which may outlive this test if serve_forever never ends.
    struct State {
        std::atomic<bool> done{false};
        std::atomic<int> served{1};
    };
    auto st = std::make_shared<State>();
    std::thread t([st, srv] {
        st->served = mp_manager_serve_forever(srv);
        st->done = true;
    });
    // Once a client of ours gets in, the server listens.
    bool up = eventually([&] {
        Mgr probe;
        mp_manager_opts po = opts(address.c_str(), key);
        return st->done || (mp_sync_manager_new(nullptr, &po, &probe.m) == 0 &&
                            mp_manager_connect(probe.m) == 0);
    });
    EXPECT_TRUE(up && !st->done) << "serve_forever: " << mp_strerror(st->served) << " " << err();

    if (up && !st->done) {
        // No ASSERT from here to the join: the thread must be joined or left behind.
        PyPeer py;
        std::map<std::string, std::string> got;
        std::string transcript;
        bool started = py.start({MP_TEST_MANAGER_PEER, "shutdown", address, hex_of(key)});
        EXPECT_TRUE(started) << "python3 did not start";
        if (started && read_results(py, "END", &got, &transcript))
            expect_results(got, {{"counter", "(2, 4)"}, {"dict", "[1, 'y']"}, {"shutdown", "ok"}});
        if (started) {
            EXPECT_EQ(0, py.wait(kWait));
        }
    }
    if (!eventually([&] { return st->done.load(); })) {
        // Ask it ourselves; if it still serves, the thread cannot be stopped: leave it
        // (and srv) alone rather than free what it uses.
        ADD_FAILURE() << "serve_forever still runs after python's shutdown request";
        Mgr stopper;
        mp_manager_opts so = opts(address.c_str(), key);
        if (mp_sync_manager_new(nullptr, &so, &stopper.m) == 0 &&
            mp_manager_connect(stopper.m) == 0)
            mp_manager_shutdown(stopper.m);
        if (!eventually([&] { return st->done.load(); })) {
            t.detach();
            return;
        }
    }
    t.join();
    EXPECT_EQ(0, st->served.load()) << mp_strerror(st->served);
    mp_manager_free(srv);
    // It no longer serves.
    Mgr after;
    mp_manager_opts ao = opts(address.c_str(), key);
    ASSERT_EQ(0, mp_sync_manager_new(nullptr, &ao, &after.m)) << err();
    EXPECT_NE(0, mp_manager_connect(after.m)) << "a client got in after the shutdown";
    unlink(address.c_str());
}

#else

TEST(ManagerInterop, PythonPeers) {
    GTEST_SKIP() << "interop with python3 runs on Linux only (no python under Wine)";
}

#endif

} // namespace
