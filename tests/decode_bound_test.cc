// Decoder amplification (issue 17, item 4): what decoding a pickle costs is bounded by
// a small multiple of its length. Values are trees, so a memo reference (BINGET,
// LONG_BINGET) is a deep copy: a pickle made of memo references to memo references
// ("memo bombs") would otherwise decode to millions of values from a few hundred
// bytes. These build such bombs from 200 bytes to 1 MiB and measure what decoding
// them costs (the values made and the bytes copied, walked in the decoded tree); and
// check that CPython's own pickles of ordinary data, shared references included,
// still decode. Not per start method: "common" label.
#include <multiproc.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "conn_helpers.h"
#include "core/pickle_hook.h"

namespace {

struct VFree {
    void operator()(mp_value *v) const { mp_value_free(v); }
};
using VP = std::unique_ptr<mp_value, VFree>;

// The amplification bound the decoder promises (value.h, mp_value_loads): at most
// 2 values per byte of the message + 2^17, and 4 str/bytes bytes per byte + 4 MiB.
constexpr size_t kValuesPerByte = 2, kValuesExtra = size_t(1) << 17;
constexpr size_t kBytesPerByte = 4, kBytesExtra = size_t(1) << 22;

size_t values_bound(size_t len) { return kValuesPerByte * len + kValuesExtra; }
size_t bytes_bound(size_t len) { return kBytesPerByte * len + kBytesExtra; }

// What a decoded tree holds: its values and the bytes of its strs, bytes and object
// names (what the decoder had to allocate, less the fixed size of each node).
struct Cost {
    size_t values = 0, bytes = 0;
};

void walk(const mp_value *v, Cost *c) {
    if (!v) return;
    c->values++;
    switch (mp_value_get_type(v)) {
    case MP_VALUE_STR:
    case MP_VALUE_BYTES:
        c->bytes += mp_value_len(v);
        break;
    case MP_VALUE_TUPLE:
    case MP_VALUE_LIST:
    case MP_VALUE_SET:
    case MP_VALUE_FROZENSET:
        for (size_t i = 0; i < mp_value_len(v); i++) walk(mp_value_item(v, i), c);
        break;
    case MP_VALUE_DICT:
        for (size_t i = 0; i < mp_value_len(v); i++) {
            walk(mp_value_dict_key(v, i), c);
            walk(mp_value_dict_value(v, i), c);
        }
        break;
    case MP_VALUE_OBJECT:
        c->bytes += strlen(mp_value_object_module(v)) + strlen(mp_value_object_name(v)) + 2;
        walk(mp_value_object_args(v), c);
        walk(mp_value_object_state(v), c);
        walk(mp_value_object_listitems(v), c);
        walk(mp_value_object_dictitems(v), c);
        break;
    default:
        break;
    }
}

// A memo reference to entry i, as CPython writes it (BINGET below 256, LONG_BINGET).
void get(std::string *p, size_t i) {
    if (i < 256) {
        *p += 'h';
        *p += char(i);
        return;
    }
    *p += 'j';
    for (int k = 0; k < 4; k++) *p += char((i >> (8 * k)) & 0xff);
}

// A bomb Python itself reads as a small shared structure: an outer list holding a
// leaf (memo 0), then levels 1..levels, each a list of fanout memo references to the
// level below, memoized in turn. Level k is fanout^k leaves once copied. With len set,
// levels are added until the pickle is about len bytes long instead.
std::string bomb(const std::string &leaf, size_t levels, size_t fanout, size_t len = 0) {
    std::string p = "\x80\x05]";
    p += leaf;
    p += "\x94"
         "a"; // MEMOIZE, APPEND
    for (size_t l = 1; len ? p.size() + (l < 256 ? 2 : 5) * fanout + 5 < len : l <= levels; l++) {
        p += '(';
        for (size_t f = 0; f < fanout; f++) get(&p, l - 1);
        p += "l\x94"
             "a"; // LIST, MEMOIZE, APPEND
    }
    return p + ".";
}

// A str leaf of n bytes (BINUNICODE).
std::string str_leaf(size_t n) {
    std::string p = "X";
    for (int k = 0; k < 4; k++) p += char((n >> (8 * k)) & 0xff);
    return p + std::string(n, 'x');
}

// As many levels of fanout references as fit in about len bytes.
std::string sized_bomb(const std::string &leaf, size_t len, size_t fanout) {
    return bomb(leaf, 0, fanout, len);
}

struct Outcome {
    int rc;
    Cost tree;   // what the decoded value holds (rc 0)
    double secs; // how long decoding took
    std::string msg;
};

Outcome decode(const std::string &p) {
    Outcome o{};
    mp_value *v = nullptr;
    auto t0 = std::chrono::steady_clock::now();
    o.rc = mp_value_loads(p.data(), p.size(), nullptr, &v);
    o.secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o.rc) o.msg = mp_last_error_message();
    walk(v, &o.tree);
    mp_value_free(v);
    return o;
}

// The bomb is refused, or what it decoded to is within the bound.
void expect_bounded(const char *what, const std::string &p) {
    Outcome o = decode(p);
    std::printf("%s: %zu bytes -> rc %d (%s), tree %zu values %zu bytes, %.3f s%s%s\n", what,
                p.size(), o.rc, o.rc ? mp_err_name(o.rc) : "ok", o.tree.values, o.tree.bytes,
                o.secs, o.rc ? ": " : "", o.msg.c_str());
    // what the decoder made before it returned, refused or not
    size_t values = 0, bytes = 0;
    mp__pickle_last_cost(&values, &bytes);
    std::printf("  charged %zu values, %zu bytes (bound %zu, %zu)\n", values, bytes,
                values_bound(p.size()), bytes_bound(p.size()));
    EXPECT_LE(values, values_bound(p.size())) << what;
    EXPECT_LE(bytes, bytes_bound(p.size())) << what;
    if (o.rc) {
        EXPECT_EQ(MP_ETOOBIG, o.rc) << what << ": " << o.msg;
        EXPECT_NE(std::string::npos, o.msg.find("times the message's size")) << o.msg;
        return;
    }
    EXPECT_LE(o.tree.values, values_bound(p.size())) << what << " (" << p.size() << " bytes)";
    EXPECT_LE(o.tree.bytes, bytes_bound(p.size())) << what << " (" << p.size() << " bytes)";
}

} // namespace

// Small bombs that fit under the default limits (4 M values, 1 GiB): before the bound,
// a 230-byte one decoded to 3.4 M values and a 1.2 KB one to 100 MB of strs.
TEST(DecodeBound, SmallMemoBombsAreRefused) {
    expect_bounded("nodes 20^5", bomb("]", 5, 20));
    expect_bounded("strs 10^5 x 1000 B", bomb(str_leaf(1000), 5, 10));
    expect_bounded("nodes 1.2 KB", sized_bomb("]", 1200, 3));
}

// Bombs up to 1 MiB: refused, and quickly (before the bound, the 1 MiB str bomb copied
// 1 GiB before the default max_size stopped it).
TEST(DecodeBound, LargeMemoBombsAreRefused) {
    expect_bounded("nodes 64 KiB", sized_bomb("]", 64 << 10, 1000));
    expect_bounded("nodes 1 MiB", sized_bomb("]", 1 << 20, 1000));
    expect_bounded("strs 1 MiB", bomb(str_leaf(512 << 10), 1, (512 << 10) / 2));
    expect_bounded("strs 64 KiB", bomb(str_leaf(60 << 10), 2, 1000));
}

// ---- CPython's pickles of ordinary data decode ------------------------------------

#ifndef _WIN32
namespace {

bool have_python() { return std::system("python3 -c 'import pickle' >/dev/null 2>&1") == 0; }

// Runs a python3 script that writes one pickle per line in hex.
std::vector<std::string> python_pickles(const std::string &script) {
    std::string base = ::testing::TempDir() + "mp_bound_" + std::to_string((long long)mp_getpid());
    std::string sp = base + "_script.py", op = base + "_out.txt";
    std::ofstream(sp) << script;
    std::string cmd = "python3 " + sp + " > " + op;
    EXPECT_EQ(0, std::system(cmd.c_str())) << cmd;
    std::ifstream in(op);
    std::vector<std::string> out;
    std::string line;
    while (std::getline(in, line)) {
        std::string bin;
        for (size_t i = 0; i + 1 < line.size(); i += 2)
            bin += char(std::stoi(line.substr(i, 2), nullptr, 16));
        out.push_back(bin);
    }
    std::remove(sp.c_str());
    std::remove(op.c_str());
    return out;
}

} // namespace
#endif

TEST(DecodeBound, CPythonPicklesOfOrdinaryDataDecode) {
#ifdef _WIN32
    GTEST_SKIP() << "no python3 beside the Windows build (Wine)";
#else
    if (!have_python()) GTEST_SKIP() << "python3 not found";
    // Each case at protocols 2 and 5 (protocol 2 memoizes with BINPUT, 5 with MEMOIZE).
    const char *names[] = {"list of 100k small ints",
                           "dict of 10k strs",
                           "nested lists",
                           "[x]*1000, x a list of 10 ints",
                           "[[0]*100]*1000",
                           "records sharing their keys",
                           "['a'*10000]*100",
                           "objects sharing their class",
                           "a 1 MiB str",
                           "tuples sharing strs"};
    std::vector<std::string> pickles = python_pickles(R"(import pickle, sys, collections, datetime
x = list(range(10))
cases = [
    list(range(100000)),
    {'key%d' % i: 'value%d' % i for i in range(10000)},
    [[i, [i, str(i), [float(i)]]] for i in range(2000)],
    [x] * 1000,
    [[0] * 100] * 1000,
    [{'name': 'n%d' % i, 'id': i, 'tags': ['a', 'b']} for i in range(5000)],
    ['a' * 10000] * 100,
    [collections.OrderedDict(a=i) for i in range(1000)] + [datetime.date(2020, 1, 1 + i % 28) for i in range(1000)],
    'x' * (1 << 20),
    [('alpha', 'beta', i) for i in range(10000)],
]
for c in cases:
    for proto in (2, 5):
        print(pickle.dumps(c, proto).hex())
)");
    ASSERT_EQ(2 * (sizeof names / sizeof names[0]), pickles.size());
    for (size_t i = 0; i < pickles.size(); i++) {
        const std::string &p = pickles[i];
        Outcome o = decode(p);
        std::printf("%s (protocol %d): %zu bytes -> %zu values %zu bytes\n", names[i / 2],
                    i % 2 ? 5 : 2, p.size(), o.tree.values, o.tree.bytes);
        EXPECT_EQ(0, o.rc) << names[i / 2] << " protocol " << (i % 2 ? 5 : 2) << ": " << o.msg;
    }
#endif
}

// ---- caller limits on a connection and a queue, the sender another process ---------

namespace {

using namespace mpt;

// What the child sends, in order: an object (a GLOBAL), a list of 100 ints, a str of
// 10,000 bytes, then [1, 2], which the limits below accept.
std::vector<mp_value *> untrusted_values() {
    mp_value *obj = mp_value_object_new("os", "system", mp_value_tuple_new());
    mp_value_list_append(mp_value_object_args(obj), mp_value_str("true"));
    mp_value *many = mp_value_list_new();
    for (int i = 0; i < 100; i++) mp_value_list_append(many, mp_value_int(i));
    mp_value *ok = mp_value_list_new();
    mp_value_list_append(ok, mp_value_int(1));
    mp_value_list_append(ok, mp_value_int(2));
    return {obj, many, mp_value_str(std::string(10000, 's').c_str()), ok};
}

// The limits the receiving end sets: no objects, 50 values, 4 KiB.
mp_value_limits strict_limits() {
    mp_value_limits lim = {};
    lim.refuse_objects = true;
    lim.max_items = 50;
    lim.max_size = 4096;
    return lim;
}

// Sends the values, then a 227-byte memo bomb as raw bytes.
int tgt_send_untrusted(mp_args *a) {
    mp_connection *c = mp_args_connection(a, 0);
    if (!c) return 30;
    int code = 0;
    for (mp_value *v : untrusted_values()) {
        if (!code && mp_connection_send(c, v)) code = 31;
        mp_value_free(v);
    }
    std::string b = bomb("]", 5, 20);
    if (!code && mp_connection_send_bytes(c, b.data(), b.size())) code = 32;
    return code;
}

int tgt_put_untrusted(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    if (!q) return 30;
    int code = 0;
    for (mp_value *v : untrusted_values()) {
        if (!code && mp_queue_put(q, v, kCap)) code = 31;
        mp_value_free(v);
    }
    return code;
}

int recv_value(mp_connection *c, mp_value **v) {
    bool ready = false;
    int rc = mp_connection_poll(c, kWait, &ready);
    if (rc) return rc;
    if (!ready) return MP_ETIMEDOUT;
    return mp_connection_recv(c, v);
}

class DecodeLimitsProcess : public ProcessTest {};

} // namespace

INSTANTIATE_TEST_SUITE_P(Backends, DecodeLimitsProcess, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

TEST_P(DecodeLimitsProcess, ConnectionRefusesWhatItsLimitsRefuse) {
    PipePair pp;
    mp_value_limits lim = strict_limits();
    EXPECT_EQ(MP_EINVAL, mp_connection_set_value_limits(nullptr, &lim));
    ASSERT_EQ(0, mp_connection_set_value_limits(pp.a, &lim)) << err();
    Args a;
    ASSERT_EQ(0, mp_args_add_connection(a.get(), pp.b)) << err();
    mp_process *p = start(tgt_send_untrusted, a.get());
    ASSERT_NE(nullptr, p);
    mp_value *v = nullptr;
    EXPECT_EQ(MP_EPROTO, recv_value(pp.a, &v)) << err();
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), "refused")) << err();
    EXPECT_EQ(MP_ETOOBIG, recv_value(pp.a, &v)) << err();
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), "number of values")) << err();
    EXPECT_EQ(MP_ETOOBIG, recv_value(pp.a, &v)) << err(); // beyond max_size
    ASSERT_EQ(0, recv_value(pp.a, &v)) << err();          // the connection is still in step
    EXPECT_EQ(2u, mp_value_len(v));
    mp_value_free(v);
    // Back to the defaults: the bomb meets the amplification bound, whatever the limits.
    ASSERT_EQ(0, mp_connection_set_value_limits(pp.a, nullptr)) << err();
    v = nullptr;
    EXPECT_EQ(MP_ETOOBIG, recv_value(pp.a, &v)) << err();
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), "times the message's size")) << err();
    EXPECT_EQ(nullptr, v);
    EXPECT_EQ(0, join_code(p));
}

TEST_P(DecodeLimitsProcess, QueueRefusesWhatItsLimitsRefuse) {
    mp_queue *q = nullptr;
    ASSERT_EQ(0, mp_queue_new(ctx(), 0, &q)) << err();
    mp_value_limits lim = strict_limits();
    EXPECT_EQ(MP_EINVAL, mp_queue_set_value_limits(nullptr, &lim));
    ASSERT_EQ(0, mp_queue_set_value_limits(q, &lim)) << err();
    Args a;
    ASSERT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
    mp_process *p = start(tgt_put_untrusted, a.get());
    ASSERT_NE(nullptr, p);
    const char *why[] = {"refused", "number of values", "exceed the limit"};
    for (const char *w : why) {
        mp_value *v = nullptr;
        EXPECT_EQ(MP_EPROTO, mp_queue_get(q, &v, kWait)) << err();
        EXPECT_NE(nullptr, strstr(mp_last_error_message(), w)) << w << " " << err();
        EXPECT_EQ(nullptr, v);
    }
    mp_value *v = nullptr;
    ASSERT_EQ(0, mp_queue_get(q, &v, kWait)) << err();
    EXPECT_EQ(2u, mp_value_len(v));
    mp_value_free(v);
    EXPECT_EQ(0, join_code(p));
    // The defaults again: the same items decode.
    ASSERT_EQ(0, mp_queue_set_value_limits(q, nullptr)) << err();
    std::vector<mp_value *> vs = untrusted_values();
    for (mp_value *x : vs) {
        ASSERT_EQ(0, mp_queue_put(q, x, kWait)) << err();
        mp_value *y = nullptr;
        ASSERT_EQ(0, mp_queue_get(q, &y, kWait)) << err();
        EXPECT_TRUE(mp_value_equal(x, y));
        mp_value_free(y);
    }
    for (mp_value *x : vs) mp_value_free(x);
    mp_queue_free(q);
}
