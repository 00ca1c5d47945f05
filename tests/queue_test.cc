// Queues on every start method: Queue, SimpleQueue, JoinableQueue; bytes and values,
// FIFO order, nowait/timeouts, maxsize, close, task_done/join, items from 0 bytes to
// far more than the ring, queues handed to children, a child that exits right after a
// big put (CPython gh-73983), and processes killed in the middle of a put or a get.
// The 8 x 8 load test is in queue_load_test.cc.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fixture.h"
#include "targets.h"

// The implementation's fault-injection hook (the tests link the static library).
#include "core/queue_fault.h"

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
#else
#include <dirent.h>
#include <csignal>
#endif

using namespace mpt;

namespace {

constexpr size_t KiB = 1024, MiB = 1024 * 1024;
// A small ring, so that items bigger than it are cheap to make.
constexpr size_t kSmallRing = 64 * KiB;

// ---- items: deterministic content, checked byte for byte ----

uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void fill_pattern(uint64_t seed, uint8_t *p, size_t n) {
    uint64_t s = seed;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w = splitmix(&s);
        memcpy(p + i, &w, 8);
    }
    if (i < n) {
        uint64_t w = splitmix(&s);
        memcpy(p + i, &w, n - i);
    }
}

// Offset of the first byte that differs from the pattern, n when none does.
size_t pattern_mismatch(uint64_t seed, const uint8_t *p, size_t n) {
    uint64_t s = seed;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w = splitmix(&s);
        if (memcmp(p + i, &w, 8) != 0)
            break;
    }
    for (; i < n; i += 8) { // the first differing word, or the tail
        uint64_t w = splitmix(&s);
        const uint8_t *e = (const uint8_t *)&w;
        for (size_t k = 0; k < 8 && i + k < n; k++)
            if (p[i + k] != e[k])
                return i + k;
    }
    return n;
}

// An item of >= 32 bytes names its producer and sequence number in a header with its
// own check, followed by a pattern seeded by both: a torn or spliced item fails.
struct Hdr {
    uint32_t magic, producer;
    uint64_t seq, len, check;
};
constexpr uint32_t kMagic = 0x51554555; // "QUEU"

uint64_t seed_of(uint32_t producer, uint64_t seq, size_t len) {
    uint64_t s = ((uint64_t)producer << 48) ^ (seq * 0x100000001B3ull) ^ ((uint64_t)len << 20);
    return splitmix(&s);
}

uint64_t hdr_check(const Hdr &h) {
    uint64_t s = h.magic ^ ((uint64_t)h.producer << 32) ^ h.seq * 31 ^ h.len * 131;
    return splitmix(&s);
}

std::vector<uint8_t> make_item(uint32_t producer, uint64_t seq, size_t len) {
    std::vector<uint8_t> v(len);
    if (len < sizeof(Hdr)) {
        fill_pattern(seed_of(producer, seq, len), v.data(), len);
        return v;
    }
    Hdr h{kMagic, producer, seq, len, 0};
    h.check = hdr_check(h);
    memcpy(v.data(), &h, sizeof h);
    fill_pattern(seed_of(producer, seq, len), v.data() + sizeof h, len - sizeof h);
    return v;
}

// A whole item of >= 32 bytes: its producer and seq; false and why otherwise.
bool parse_item(const void *p, size_t n, uint32_t *producer, uint64_t *seq, std::string *why) {
    Hdr h;
    if (n < sizeof h) {
        *why = "item of " + std::to_string(n) + " bytes is shorter than a header";
        return false;
    }
    memcpy(&h, p, sizeof h);
    if (h.magic != kMagic || h.check != hdr_check(h)) {
        *why = "bad header";
        return false;
    }
    if (h.len != n) {
        *why = "length " + std::to_string(n) + " but the header says " + std::to_string(h.len);
        return false;
    }
    size_t bad = pattern_mismatch(seed_of(h.producer, h.seq, n), (const uint8_t *)p + sizeof h,
                                  n - sizeof h);
    if (bad != n - sizeof h) {
        *why = "item p" + std::to_string(h.producer) + "/" + std::to_string(h.seq) +
               " differs at byte " + std::to_string(bad + sizeof h) + " of " + std::to_string(n);
        return false;
    }
    *producer = h.producer;
    *seq = h.seq;
    return true;
}

// The item make_item(producer, seq, len) exactly; "" or what differs.
std::string item_diff(const void *p, size_t n, uint32_t producer, uint64_t seq, size_t len) {
    if (n != len)
        return "length " + std::to_string(n) + ", expected " + std::to_string(len);
    if (len < sizeof(Hdr)) {
        size_t bad = pattern_mismatch(seed_of(producer, seq, len), (const uint8_t *)p, n);
        return bad == n ? "" : "differs at byte " + std::to_string(bad);
    }
    uint32_t pr = 0;
    uint64_t sq = 0;
    std::string why;
    if (!parse_item(p, n, &pr, &sq, &why))
        return why;
    if (pr != producer || sq != seq)
        return "item p" + std::to_string(pr) + "/" + std::to_string(sq) + ", expected p" +
               std::to_string(producer) + "/" + std::to_string(seq);
    return "";
}

std::string id_str(uint32_t producer, uint64_t seq) {
    return std::to_string(producer) + ":" + std::to_string(seq);
}

// A list of sizes as an args bytes value.
std::string pack_sizes(const std::vector<uint64_t> &v) {
    return std::string((const char *)v.data(), v.size() * sizeof(uint64_t));
}
std::vector<uint64_t> unpack_sizes(const mp_args *a, size_t i) {
    size_t n = 0;
    const void *p = mp_args_bytes(a, i, &n);
    std::vector<uint64_t> v(n / sizeof(uint64_t));
    if (p && n)
        memcpy(v.data(), p, v.size() * sizeof(uint64_t));
    return v;
}

// A nested value exercising every type the codec carries.
mp_value *nested_value(int64_t tag) {
    mp_value *d = mp_value_dict_new();
    mp_value_dict_set_str(d, "tag", mp_value_int(tag));
    mp_value_dict_set_str(d, "none", mp_value_none());
    mp_value_dict_set_str(d, "yes", mp_value_bool(true));
    mp_value_dict_set_str(d, "big", mp_value_int(INT64_MIN + 3));
    mp_value_dict_set_str(d, "pi", mp_value_float(3.141592653589793));
    mp_value_dict_set_str(d, "text", mp_value_str("gr\xc3\xbc\xc3\x9f dich, queue"));
    std::vector<uint8_t> raw = make_item(7, (uint64_t)tag, 3000);
    mp_value_dict_set_str(d, "raw", mp_value_bytes(raw.data(), raw.size()));
    mp_value *l = mp_value_list_new();
    for (int i = 0; i < 50; i++) {
        mp_value *t = mp_value_tuple_new();
        mp_value_list_append(t, mp_value_int(i));
        mp_value_list_append(t, mp_value_str(std::to_string(i * i).c_str()));
        mp_value *inner = mp_value_list_new();
        mp_value_list_append(inner, mp_value_tuple_new());
        mp_value_list_append(inner, mp_value_dict_new());
        mp_value_list_append(t, inner);
        mp_value_list_append(l, t);
    }
    mp_value_dict_set(d, mp_value_int(42), l);
    mp_value *deep = mp_value_list_new();
    mp_value *cur = deep;
    for (int i = 0; i < 100; i++) { // nesting well inside the codec's limit
        mp_value *next = mp_value_list_new();
        mp_value_list_append(cur, next);
        cur = next;
    }
    mp_value_list_append(cur, mp_value_str("bottom"));
    mp_value_dict_set_str(d, "deep", deep);
    return d;
}

// ---- child side ----

enum { kOk = 0, kBad = 90, kFail = 1, kHookNotReached = 77 };

// In a child: reports on stderr (the test output) and returns code.
int child_fail(int code, const char *what, int rc = 0) {
    fprintf(stderr, "[queue child %lld] %s: %s %s\n", (long long)mp_getpid(), what,
            rc ? mp_err_name(rc) : "", rc ? mp_last_error_message() : "");
    fflush(stderr);
    return code;
}

// [0] queue, [1] int producer, [2] int first seq, [3] int count, [4] bytes sizes
// (cycled), [5] double delay before the first put: puts make_item(producer, seq, size).
int tgt_put_items(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    uint32_t producer = (uint32_t)mp_args_int(a, 1);
    int64_t first = mp_args_int(a, 2), count = mp_args_int(a, 3);
    std::vector<uint64_t> sizes = unpack_sizes(a, 4);
    if (!q || sizes.empty())
        return kBad;
    sleep_for(mp_args_double(a, 5));
    for (int64_t i = 0; i < count; i++) {
        std::vector<uint8_t> it = make_item(producer, (uint64_t)(first + i), sizes[(size_t)i % sizes.size()]);
        int rc = mp_queue_put_bytes(q, it.data(), it.size(), kWait);
        if (rc != 0)
            return child_fail(kFail, "put", rc);
    }
    return kOk;
}

// [0] queue, [1] int count, [2] out (write end), [3] double delay: gets count items
// (each must parse whole) and writes "p:seq p:seq ..." to out, ending in "bad: why"
// at the first failure.
int tgt_get_items(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    int64_t count = mp_args_int(a, 1);
    mp_os_handle out = mp_args_os_handle(a, 2);
    if (!q || out == MP_INVALID_OS_HANDLE)
        return kBad;
    sleep_for(mp_args_double(a, 3));
    std::string report;
    for (int64_t i = 0; i < count; i++) {
        void *p = nullptr;
        size_t n = 0;
        int rc = mp_queue_get_bytes(q, &p, &n, kWait);
        if (rc != 0) {
            report += std::string(report.empty() ? "" : " ") + "bad: get " + mp_err_name(rc) +
                      " after " + std::to_string(i);
            break;
        }
        uint32_t pr = 0;
        uint64_t sq = 0;
        std::string why;
        bool ok = parse_item(p, n, &pr, &sq, &why);
        mp_queue_free_bytes(p);
        report += (report.empty() ? "" : " ") + (ok ? id_str(pr, sq) : "bad: " + why);
        if (!ok)
            break;
    }
    return write_msg(out, report) ? (int)kOk : (int)kTgtIoError;
}

// [0] queue, [1] bytes sizes, [2] int producer: gets one item per size and checks it
// is make_item(producer, index, size) exactly.
int tgt_get_sizes(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    std::vector<uint64_t> sizes = unpack_sizes(a, 1);
    uint32_t producer = (uint32_t)mp_args_int(a, 2);
    if (!q || sizes.empty())
        return kBad;
    for (size_t i = 0; i < sizes.size(); i++) {
        void *p = nullptr;
        size_t n = 0;
        int rc = mp_queue_get_bytes(q, &p, &n, kWait);
        if (rc != 0)
            return child_fail(kFail, "get", rc);
        std::string d = item_diff(p, n, producer, i, sizes[i]);
        mp_queue_free_bytes(p);
        if (!d.empty())
            return child_fail(2, ("item " + std::to_string(i) + ": " + d).c_str());
    }
    return kOk;
}

// [0] work queue, [1] results queue, [2] int consumer id: takes items until an empty
// one; for each puts the value (consumer, producer, seq) or (consumer, -1, why).
int tgt_consume_until_stop(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0), *res = mp_args_queue(a, 1);
    int64_t me = mp_args_int(a, 2);
    if (!q || !res)
        return kBad;
    for (;;) {
        void *p = nullptr;
        size_t n = 0;
        int rc = mp_queue_get_bytes(q, &p, &n, kWait);
        if (rc != 0)
            return child_fail(kFail, "get", rc);
        if (n == 0) {
            mp_queue_free_bytes(p);
            return kOk;
        }
        uint32_t pr = 0;
        uint64_t sq = 0;
        std::string why;
        bool ok = parse_item(p, n, &pr, &sq, &why);
        mp_queue_free_bytes(p);
        mp_value *t = mp_value_tuple_new();
        mp_value_list_append(t, mp_value_int(me));
        mp_value_list_append(t, mp_value_int(ok ? (int64_t)pr : -1));
        mp_value_list_append(t, ok ? mp_value_int((int64_t)sq) : mp_value_str(why.c_str()));
        rc = mp_queue_put(res, t, kWait);
        mp_value_free(t);
        if (rc != 0)
            return child_fail(kFail, "put result", rc);
    }
}

// [0] queue in, [1] queue out, [2] int tag: gets a value, which must equal
// nested_value(tag), and puts back nested_value(tag + 1).
int tgt_value_echo(mp_args *a) {
    mp_queue *in = mp_args_queue(a, 0), *out = mp_args_queue(a, 1);
    int64_t tag = mp_args_int(a, 2);
    if (!in || !out)
        return kBad;
    mp_value *v = nullptr;
    int rc = mp_queue_get(in, &v, kWait);
    if (rc != 0)
        return child_fail(kFail, "get value", rc);
    mp_value *want = nested_value(tag);
    bool same = mp_value_equal(v, want);
    mp_value_free(v);
    mp_value_free(want);
    if (!same)
        return child_fail(2, "the value differs");
    mp_value *reply = nested_value(tag + 1);
    rc = mp_queue_put(out, reply, kWait);
    mp_value_free(reply);
    return rc == 0 ? kOk : child_fail(kFail, "put value", rc);
}

// Waits until the test says go: 'R' on ready, then one byte from go (kWait).
bool ready_set_go(mp_os_handle ready, mp_os_handle go) {
    char c = 'R';
    return write_all(ready, &c, 1) && read_exact(go, &c, 1, kWait);
}

// [0] queue, [1] int producer, [2] int count, [3] ready (write end), [4] go (read
// end): after the go, puts count items of 32..231 bytes as fast as it can.
int tgt_put_on_go(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    uint32_t producer = (uint32_t)mp_args_int(a, 1);
    int64_t count = mp_args_int(a, 2);
    if (!q || !ready_set_go(mp_args_os_handle(a, 3), mp_args_os_handle(a, 4)))
        return kBad;
    for (int64_t i = 0; i < count; i++) {
        std::vector<uint8_t> it = make_item(producer, (uint64_t)i, 32 + (size_t)(i * 37 % 200));
        int rc = mp_queue_put_bytes(q, it.data(), it.size(), kWait);
        if (rc != 0)
            return child_fail(kFail, "put", rc);
    }
    return kOk;
}

// [0] queue, [1] out (write end), [2] ready, [3] go: after the go, takes items as fast
// as it can until an empty one, then writes what it got as (producer, seq) u32 pairs;
// a bad item is the pair (0xffffffff, 0).
int tgt_drain_on_go(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    mp_os_handle out = mp_args_os_handle(a, 1);
    if (!q || out == MP_INVALID_OS_HANDLE || !ready_set_go(mp_args_os_handle(a, 2), mp_args_os_handle(a, 3)))
        return kBad;
    std::vector<uint32_t> got;
    int code = kOk;
    for (;;) {
        void *p = nullptr;
        size_t n = 0;
        int rc = mp_queue_get_bytes(q, &p, &n, kWait);
        if (rc != 0) {
            code = child_fail(kFail, "get", rc);
            break;
        }
        uint32_t pr = 0xffffffffu;
        uint64_t sq = 0;
        std::string why;
        bool stop = n == 0, ok = stop || parse_item(p, n, &pr, &sq, &why);
        mp_queue_free_bytes(p);
        if (stop)
            break;
        if (!ok)
            child_fail(0, why.c_str());
        got.push_back(ok ? pr : 0xffffffffu);
        got.push_back(ok ? (uint32_t)sq : 0);
    }
    std::string msg((const char *)got.data(), got.size() * sizeof(uint32_t));
    return write_msg(out, msg) ? code : (int)kTgtIoError;
}

// [0] queue, [1] int count, [2] double delay: sleeps, then gets count items (whole).
int tgt_take(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    int64_t count = mp_args_int(a, 1);
    if (!q)
        return kBad;
    sleep_for(mp_args_double(a, 2));
    for (int64_t i = 0; i < count; i++) {
        void *p = nullptr;
        size_t n = 0;
        int rc = mp_queue_get_bytes(q, &p, &n, kWait);
        if (rc != 0)
            return child_fail(kFail, "get", rc);
        uint32_t pr = 0;
        uint64_t sq = 0;
        std::string why;
        bool ok = parse_item(p, n, &pr, &sq, &why);
        mp_queue_free_bytes(p);
        if (!ok)
            return child_fail(2, why.c_str());
    }
    return kOk;
}

// [0] joinable queue, [1] int count, [2] release (read end), [3] ready (write end):
// gets count items, marks all but the last done, writes 'R', waits for a byte on
// release (kCap), marks the last done.
int tgt_joinable_worker(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    int64_t count = mp_args_int(a, 1);
    mp_os_handle rel = mp_args_os_handle(a, 2), ready = mp_args_os_handle(a, 3);
    if (!q || count < 1 || rel == MP_INVALID_OS_HANDLE || ready == MP_INVALID_OS_HANDLE)
        return kBad;
    if (mp_queue_get_kind(q) != MP_JOINABLE_QUEUE)
        return child_fail(3, "the child's queue is not joinable");
    for (int64_t i = 0; i < count; i++) {
        void *p = nullptr;
        size_t n = 0;
        int rc = mp_queue_get_bytes(q, &p, &n, kWait);
        mp_queue_free_bytes(p);
        if (rc != 0)
            return child_fail(kFail, "get", rc);
        if (i + 1 < count && (rc = mp_queue_task_done(q)) != 0)
            return child_fail(kFail, "task_done", rc);
    }
    char c = 'R';
    if (!write_all(ready, &c, 1))
        return kTgtIoError;
    if (!read_exact(rel, &c, 1, kCap))
        return kTgtCapReached;
    int rc = mp_queue_task_done(q);
    return rc == 0 ? kOk : child_fail(kFail, "last task_done", rc);
}

// [0] queue: its kind, + 10 when mp_args_object_type says "queue".
int tgt_kind(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    const char *t = mp_args_object_type(a, 0);
    if (!q)
        return kBad;
    return (int)mp_queue_get_kind(q) + (t && strcmp(t, "queue") == 0 ? 10 : 0);
}

// ---- owner death (not on dummy: the hook is per process) ----

int g_fault_point;                                   // the point to die at
mp_os_handle g_fault_ready = MP_INVALID_OS_HANDLE;   // hold mode: 'R' here, then wait

void die_now() {
    disable_crash_reports();
#ifdef _WIN32
    TerminateProcess(GetCurrentProcess(), 9);
#else
    raise(SIGKILL);
#endif
}

void fault_hook(int point) {
    if (point != g_fault_point)
        return;
    if (g_fault_ready == MP_INVALID_OS_HANDLE)
        die_now();
    // Hold the queue's put or get side until the test kills this process.
    char c = 'R';
    write_all(g_fault_ready, &c, 1);
    sleep_for(kCap);
    die_now();
}

// [0] queue, [1] int point, [2] int len, [3] int seq, [4] ready (write end) or an int:
// dies at the fault point while putting make_item(99, seq, len) (put points) or
// getting (the get point). With a ready handle it says 'R' there and waits to be
// killed. kHookNotReached when the call returned instead.
int tgt_die_at(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    if (!q)
        return kBad;
    g_fault_point = (int)mp_args_int(a, 1);
    size_t len = (size_t)mp_args_int(a, 2);
    uint64_t seq = (uint64_t)mp_args_int(a, 3);
    if (mp_args_type(a, 4) == MP_ARG_OS_HANDLE)
        g_fault_ready = mp_args_os_handle(a, 4);
    mp__queue_fault_hook = fault_hook;
    int rc;
    if (g_fault_point == MP__QFAULT_GET_PARTIAL) {
        void *p = nullptr;
        size_t n = 0;
        rc = mp_queue_get_bytes(q, &p, &n, kWait);
        mp_queue_free_bytes(p);
    } else {
        std::vector<uint8_t> it = make_item(99, seq, len);
        rc = mp_queue_put_bytes(q, it.data(), it.size(), kWait);
    }
    mp__queue_fault_hook = nullptr;
    fprintf(stderr, "[queue child] fault point %d not reached (the call gave %s)\n",
            g_fault_point, mp_err_name(rc));
    return kHookNotReached;
}

// The exit code of a child that killed itself in fault_hook.
int self_killed_code() { return kWindows ? 9 : exitcode_killed(); }


} // namespace

class QueueTest : public ProcessTest {
protected:
    mp_queue *make_queue(mp_queue_kind kind, int64_t maxsize = 0, size_t ring = 0) {
        mp_queue_opts o = {};
        o.kind = kind;
        o.maxsize = maxsize;
        o.ring_bytes = ring;
        mp_queue *q = nullptr;
        int rc = mp_queue_new_opts(ctx(), &o, &q);
        EXPECT_EQ(0, rc) << "kind " << kind << " maxsize " << maxsize << " ring " << ring << " "
                         << err();
        if (q)
            queues_.push_back(q);
        return q;
    }
    void TearDown() override {
        ProcessTest::TearDown();
        for (mp_queue *q : queues_)
            mp_queue_free(q);
        queues_.clear();
    }
    // Puts make_item(producer, seq, len) from this process.
    void put_item(mp_queue *q, uint32_t producer, uint64_t seq, size_t len, double t = kWait) {
        std::vector<uint8_t> it = make_item(producer, seq, len);
        EXPECT_EQ(0, mp_queue_put_bytes(q, it.data(), it.size(), t)) << err();
    }
    // Gets one item in this process and checks it is make_item(producer, seq, len).
    void expect_item(mp_queue *q, uint32_t producer, uint64_t seq, size_t len) {
        void *p = nullptr;
        size_t n = 0;
        int rc = mp_queue_get_bytes(q, &p, &n, kWait);
        EXPECT_EQ(0, rc) << "expected item " << id_str(producer, seq) << " " << err();
        if (rc == 0) {
            EXPECT_NE(nullptr, p);
            EXPECT_EQ("", item_diff(p, n, producer, seq, len)) << "item " << id_str(producer, seq);
        }
        mp_queue_free_bytes(p);
    }
    void expect_empty_now(mp_queue *q) {
        void *p = nullptr;
        size_t n = 0;
        EXPECT_EQ(MP_EEMPTY, mp_queue_get_bytes(q, &p, &n, 0)) << "an item is left, of " << n << " bytes";
        mp_queue_free_bytes(p);
    }
    // A child that gets count items and reports them; the report (read before the join,
    // so a long one cannot block the child) and the child's exit code.
    std::string child_get_report(mp_queue *q, int64_t count, int *code) {
        Pipe &out = pipe();
        Args a;
        EXPECT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
        a.i(count).h(out.w).d(0.0);
        mp_process *p = start(tgt_get_items, a.get());
        if (!p)
            return "start failed";
        std::string report = "(no report)";
        read_msg(out.r, &report, kWait);
        *code = join_code(p);
        return report;
    }
    int child_put(mp_queue *q, uint32_t producer, int64_t first, int64_t count,
                  const std::vector<uint64_t> &sizes) {
        Args a;
        EXPECT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
        std::string s = pack_sizes(sizes);
        a.i(producer).i(first).i(count).b(s.data(), s.size()).d(0.0);
        mp_process *p = start(tgt_put_items, a.get());
        return p ? join_code(p) : -1000;
    }
    void owner_death(int point, size_t len, bool hold);

    std::vector<mp_queue *> queues_;
};

INSTANTIATE_TEST_SUITE_P(Backends, QueueTest, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) { return info.param; });

// ---- creation and bad input ----

TEST_P(QueueTest, KindsAndConstructors) {
    mp_queue *q = nullptr, *s = nullptr, *j = nullptr, *d = nullptr;
    ASSERT_EQ(0, mp_queue_new(ctx(), 5, &q)) << err();
    ASSERT_EQ(0, mp_simple_queue_new(ctx(), &s)) << err();
    ASSERT_EQ(0, mp_joinable_queue_new(ctx(), 0, &j)) << err();
    ASSERT_EQ(0, mp_queue_new_opts(ctx(), nullptr, &d)) << err();
    EXPECT_EQ(MP_QUEUE, mp_queue_get_kind(q));
    EXPECT_EQ(MP_SIMPLE_QUEUE, mp_queue_get_kind(s));
    EXPECT_EQ(MP_JOINABLE_QUEUE, mp_queue_get_kind(j));
    EXPECT_EQ(MP_QUEUE, mp_queue_get_kind(d)) << "opts NULL is a Queue";
    mp_queue *dflt = nullptr;
    ASSERT_EQ(0, mp_queue_new(nullptr, -3, &dflt)) << "ctx NULL = default; maxsize < 0 = unbounded " << err();
    for (int i = 0; i < 20; i++)
        EXPECT_EQ(0, mp_queue_put_bytes(dflt, "x", 1, 0)) << "an unbounded queue is never full";
    EXPECT_FALSE(mp_queue_full(dflt));
    for (mp_queue *x : {q, s, j, d, dflt})
        mp_queue_free(x);
    mp_queue_free(nullptr);
}

TEST_P(QueueTest, BadInput) {
    mp_queue *q = nullptr;
    EXPECT_EQ(MP_EINVAL, mp_queue_new(ctx(), 0, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_simple_queue_new(ctx(), nullptr));
    EXPECT_EQ(MP_EINVAL, mp_joinable_queue_new(ctx(), 0, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_queue_new_opts(ctx(), nullptr, nullptr));
    for (int kind : {-1, 4, 99}) {
        mp_queue_opts o = {};
        o.kind = (mp_queue_kind)kind;
        q = (mp_queue *)&o; // must be reset to NULL on failure
        EXPECT_EQ(MP_EINVAL, mp_queue_new_opts(ctx(), &o, &q)) << "kind " << kind;
        EXPECT_EQ(nullptr, q) << "the out pointer is NULL on failure";
        if (q && q != (mp_queue *)&o)
            mp_queue_free(q);
    }

    // A NULL queue.
    void *p = nullptr;
    size_t n = 0;
    char buf[8];
    mp_value *v = nullptr;
    mp_value *none = mp_value_none();
    EXPECT_EQ(MP_EINVAL, mp_queue_put_bytes(nullptr, "x", 1, 0));
    EXPECT_EQ(MP_EINVAL, mp_queue_put(nullptr, none, 0));
    EXPECT_EQ(MP_EINVAL, mp_queue_get_bytes(nullptr, &p, &n, 0));
    EXPECT_EQ(MP_EINVAL, mp_queue_get_bytes_into(nullptr, buf, sizeof buf, &n, 0));
    EXPECT_EQ(MP_EINVAL, mp_queue_get(nullptr, &v, 0));
    EXPECT_EQ(MP_EINVAL, mp_queue_qsize(nullptr, &n));
    EXPECT_EQ(MP_EINVAL, mp_queue_close(nullptr));
    EXPECT_EQ(MP_EINVAL, mp_queue_task_done(nullptr));
    EXPECT_EQ(MP_EINVAL, mp_queue_join(nullptr, 0));
    (void)mp_queue_empty(nullptr); // a bool: no error to give, but no crash
    (void)mp_queue_full(nullptr);
    (void)mp_queue_get_kind(nullptr);
    mp_queue_free_bytes(nullptr);

    // NULL out pointers and buffers: an error, and the item is not lost.
    q = make_queue(MP_JOINABLE_QUEUE);
    ASSERT_NE(nullptr, q);
    EXPECT_EQ(MP_EINVAL, mp_queue_put_bytes(q, nullptr, 5, 0)) << "NULL buffer with a length";
    EXPECT_EQ(MP_EINVAL, mp_queue_put(q, nullptr, 0)) << "NULL value";
    put_item(q, 1, 0, 100);
    EXPECT_EQ(MP_EINVAL, mp_queue_get_bytes(q, nullptr, &n, 0));
    EXPECT_EQ(MP_EINVAL, mp_queue_get_bytes(q, &p, nullptr, 0));
    EXPECT_EQ(MP_EINVAL, mp_queue_get_bytes_into(q, nullptr, 100, &n, 0));
    EXPECT_EQ(MP_EINVAL, mp_queue_get_bytes_into(q, buf, sizeof buf, nullptr, 0));
    EXPECT_EQ(MP_EINVAL, mp_queue_get(q, nullptr, 0));
    EXPECT_EQ(MP_EINVAL, mp_queue_qsize(q, nullptr));
    size_t qs = 99;
    EXPECT_EQ(0, mp_queue_qsize(q, &qs)) << err();
    EXPECT_EQ(1u, qs) << "bad calls must neither add nor take an item";
    expect_item(q, 1, 0, 100);
    expect_empty_now(q);
    EXPECT_EQ(0, mp_queue_task_done(q)) << err();

    // Values the codec cannot encode are refused before anything is queued.
    mp_value *bad = mp_value_strn("\xff\xfe", 2);
    EXPECT_NE(0, mp_queue_put(q, bad, 0)) << "a str that is not UTF-8";
    mp_value_free(bad);
    EXPECT_TRUE(mp_queue_empty(q));
    EXPECT_EQ(0, mp_queue_join(q, 0)) << "a refused put is not an unfinished task";

    // Arguments.
    Args a;
    EXPECT_EQ(MP_EINVAL, mp_args_add_queue(a.get(), nullptr));
    EXPECT_EQ(MP_EINVAL, mp_args_add_queue(nullptr, q));
    a.i(5);
    EXPECT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
    EXPECT_EQ(nullptr, mp_args_queue(a.get(), 0)) << "an int is not a queue";
    EXPECT_EQ(q, mp_args_queue(a.get(), 1));
    EXPECT_EQ(nullptr, mp_args_queue(a.get(), 9));
    EXPECT_EQ(nullptr, mp_args_queue(nullptr, 0));
    EXPECT_STREQ("queue", mp_args_object_type(a.get(), 1));
    mp_value_free(none);
}

TEST_P(QueueTest, OperationsAKindDoesNotHave) {
    mp_queue *q = make_queue(MP_QUEUE), *s = make_queue(MP_SIMPLE_QUEUE);
    ASSERT_TRUE(q && s);
    size_t n = 0;
    EXPECT_EQ(MP_ENOTSUP, mp_queue_task_done(q));
    EXPECT_EQ(MP_ENOTSUP, mp_queue_join(q, 0));
    EXPECT_EQ(MP_ENOTSUP, mp_queue_task_done(s));
    EXPECT_EQ(MP_ENOTSUP, mp_queue_join(s, 0));
    EXPECT_EQ(MP_ENOTSUP, mp_queue_qsize(s, &n)) << "SimpleQueue has no qsize";
}

// ---- bytes and values in one process ----

TEST_P(QueueTest, BytesRoundTripFifo) {
    mp_queue *q = make_queue(MP_QUEUE, 0, kSmallRing);
    ASSERT_NE(nullptr, q);
    std::vector<size_t> sizes = {32, 100, 1, 0, 5000, kSmallRing / 2, 33, kSmallRing * 3, 64, 7};
    for (size_t i = 0; i < sizes.size(); i++)
        put_item(q, 1, i, sizes[i], 0);
    size_t n = 0;
    EXPECT_EQ(0, mp_queue_qsize(q, &n)) << err();
    EXPECT_EQ(sizes.size(), n);
    // The three ways of taking an item, in turn, see the same FIFO.
    for (size_t i = 0; i < sizes.size(); i++) {
        if (i % 3 == 0) {
            expect_item(q, 1, i, sizes[i]);
        } else if (i % 3 == 1) {
            std::vector<uint8_t> buf(kSmallRing * 4);
            size_t len = 12345;
            ASSERT_EQ(0, mp_queue_get_bytes_into(q, buf.data(), buf.size(), &len, kWait)) << err();
            EXPECT_EQ("", item_diff(buf.data(), len, 1, i, sizes[i])) << "item " << i;
        } else {
            mp_value *v = nullptr;
            ASSERT_EQ(0, mp_queue_get(q, &v, kWait)) << err();
            ASSERT_EQ(MP_VALUE_BYTES, mp_value_get_type(v)) << "a bytes item is a bytes value";
            size_t len = 0;
            const void *p = mp_value_as_bytes(v, &len);
            EXPECT_EQ("", item_diff(p, len, 1, i, sizes[i])) << "item " << i;
            mp_value_free(v);
        }
    }
    expect_empty_now(q);
    EXPECT_TRUE(mp_queue_empty(q));
}

TEST_P(QueueTest, EmptyItems) {
    mp_queue *q = make_queue(MP_QUEUE);
    ASSERT_NE(nullptr, q);
    EXPECT_EQ(0, mp_queue_put_bytes(q, nullptr, 0, 0)) << err();
    EXPECT_EQ(0, mp_queue_put_bytes(q, "ignored", 0, 0)) << err();
    put_item(q, 2, 1, 40);
    EXPECT_EQ(0, mp_queue_put_bytes(q, nullptr, 0, 0)) << err();
    EXPECT_EQ(0, mp_queue_put_bytes(q, nullptr, 0, 0)) << err();
    size_t n = 0;
    EXPECT_EQ(0, mp_queue_qsize(q, &n));
    EXPECT_EQ(5u, n) << "empty items count";
    void *p = nullptr;
    size_t len = 99;
    ASSERT_EQ(0, mp_queue_get_bytes(q, &p, &len, kWait)) << err();
    EXPECT_NE(nullptr, p) << "an empty item gives a non-NULL buffer";
    EXPECT_EQ(0u, len);
    mp_queue_free_bytes(p);
    char buf[1];
    len = 99;
    ASSERT_EQ(0, mp_queue_get_bytes_into(q, buf, 0, &len, kWait)) << "an empty item fits in 0 bytes " << err();
    EXPECT_EQ(0u, len);
    expect_item(q, 2, 1, 40);
    mp_value *v = nullptr;
    ASSERT_EQ(0, mp_queue_get(q, &v, kWait)) << err();
    EXPECT_EQ(MP_VALUE_BYTES, mp_value_get_type(v));
    EXPECT_EQ(0u, mp_value_len(v));
    mp_value_free(v);
    ASSERT_EQ(0, mp_queue_get_bytes(q, &p, &len, kWait)) << err();
    EXPECT_EQ(0u, len);
    mp_queue_free_bytes(p);
    expect_empty_now(q);
}

TEST_P(QueueTest, ValuesRoundTrip) {
    mp_queue *q = make_queue(MP_QUEUE, 0, kSmallRing);
    ASSERT_NE(nullptr, q);
    mp_value *v = nested_value(1);
    ASSERT_NE(nullptr, v);
    mp_value *i = mp_value_int(-7);
    mp_value *big = mp_value_list_new(); // encodes to more than the small ring
    for (int k = 0; k < 40; k++) {
        std::vector<uint8_t> raw = make_item(8, (uint64_t)k, 4000);
        mp_value_list_append(big, mp_value_bytes(raw.data(), raw.size()));
    }
    EXPECT_EQ(0, mp_queue_put(q, v, 0)) << err();
    EXPECT_EQ(0, mp_queue_put(q, i, 0)) << err();
    EXPECT_EQ(0, mp_queue_put(q, big, 0)) << err();
    EXPECT_EQ(0, mp_queue_put(q, v, 0)) << err();
    for (mp_value *want : {v, i, big}) {
        mp_value *got = nullptr;
        ASSERT_EQ(0, mp_queue_get(q, &got, kWait)) << err();
        EXPECT_TRUE(mp_value_equal(want, got)) << "a value changed on its way through the queue";
        mp_value_free(got);
    }
    // A value item taken as bytes gives its encoding.
    void *enc = nullptr;
    size_t enc_len = 0;
    ASSERT_EQ(0, mp_value_dumps(v, &enc, &enc_len));
    void *p = nullptr;
    size_t len = 0;
    ASSERT_EQ(0, mp_queue_get_bytes(q, &p, &len, kWait)) << err();
    ASSERT_EQ(enc_len, len);
    EXPECT_EQ(0, memcmp(enc, p, len));
    mp_value *back = nullptr;
    EXPECT_EQ(0, mp_value_loads(p, len, nullptr, &back));
    EXPECT_TRUE(mp_value_equal(v, back));
    mp_value_free(back);
    mp_queue_free_bytes(p);
    mp_value_buf_free(enc);
    expect_empty_now(q);
    mp_value_free(v);
    mp_value_free(i);
    mp_value_free(big);
}

TEST_P(QueueTest, ValuesAcrossProcesses) {
    mp_queue *in = make_queue(MP_QUEUE), *out = make_queue(MP_SIMPLE_QUEUE);
    ASSERT_TRUE(in && out);
    Args a;
    ASSERT_EQ(0, mp_args_add_queue(a.get(), in)) << err();
    ASSERT_EQ(0, mp_args_add_queue(a.get(), out)) << err();
    a.i(10);
    mp_process *p = start(tgt_value_echo, a.get());
    ASSERT_NE(nullptr, p);
    mp_value *v = nested_value(10);
    EXPECT_EQ(0, mp_queue_put(in, v, kWait)) << err();
    mp_value_free(v);
    mp_value *got = nullptr;
    EXPECT_EQ(0, mp_queue_get(out, &got, kWait)) << err();
    mp_value *want = nested_value(11);
    EXPECT_TRUE(mp_value_equal(want, got)) << "the child's value arrived changed";
    mp_value_free(want);
    mp_value_free(got);
    EXPECT_EQ(0, join_code(p));
}

// ---- nowait, timeouts, maxsize, qsize ----

TEST_P(QueueTest, NowaitAndTimeouts) {
    mp_queue *q = make_queue(MP_QUEUE, 2);
    ASSERT_NE(nullptr, q);
    void *p = nullptr;
    size_t n = 0;
    char buf[64];
    mp_value *v = nullptr;
    EXPECT_EQ(MP_EEMPTY, mp_queue_get_bytes(q, &p, &n, 0)) << "get_nowait on empty";
    EXPECT_EQ(nullptr, p);
    EXPECT_EQ(MP_EEMPTY, mp_queue_get_bytes_into(q, buf, sizeof buf, &n, 0));
    EXPECT_EQ(MP_EEMPTY, mp_queue_get(q, &v, 0));
    EXPECT_EQ(nullptr, v);
    EXPECT_EQ(MP_EEMPTY, mp_queue_get_bytes(q, &p, &n, 0.1)) << "a timed get that expires";
    EXPECT_EQ(MP_EEMPTY, mp_queue_get(q, &v, 0.05));
    put_item(q, 3, 0, 50, 0);
    put_item(q, 3, 1, 50, 0);
    std::vector<uint8_t> it = make_item(3, 2, 50);
    EXPECT_EQ(MP_EFULL, mp_queue_put_bytes(q, it.data(), it.size(), 0)) << "put_nowait on full";
    EXPECT_EQ(MP_EFULL, mp_queue_put_bytes(q, it.data(), it.size(), 0.1)) << "a timed put that expires";
    mp_value *iv = mp_value_int(1);
    EXPECT_EQ(MP_EFULL, mp_queue_put(q, iv, 0));
    mp_value_free(iv);
    EXPECT_TRUE(mp_queue_full(q));
    expect_item(q, 3, 0, 50);
    EXPECT_FALSE(mp_queue_full(q));
    EXPECT_EQ(0, mp_queue_put_bytes(q, it.data(), it.size(), 0)) << err();
    expect_item(q, 3, 1, 50);
    expect_item(q, 3, 2, 50);
    expect_empty_now(q);
}

TEST_P(QueueTest, QsizeEmptyFull) {
    mp_queue *q = make_queue(MP_QUEUE, 3, kSmallRing);
    ASSERT_NE(nullptr, q);
    size_t n = 99;
    EXPECT_EQ(0, mp_queue_qsize(q, &n)) << err();
    EXPECT_EQ(0u, n);
    EXPECT_TRUE(mp_queue_empty(q));
    EXPECT_FALSE(mp_queue_full(q));
    put_item(q, 4, 0, 40, 0);
    EXPECT_EQ(0, mp_queue_qsize(q, &n));
    EXPECT_EQ(1u, n);
    EXPECT_FALSE(mp_queue_empty(q));
    put_item(q, 4, 1, kSmallRing * 2, 0); // a big item counts as one
    put_item(q, 4, 2, 0, 0);
    EXPECT_EQ(0, mp_queue_qsize(q, &n));
    EXPECT_EQ(3u, n);
    EXPECT_TRUE(mp_queue_full(q));
    expect_item(q, 4, 0, 40);
    EXPECT_EQ(0, mp_queue_qsize(q, &n));
    EXPECT_EQ(2u, n);
    EXPECT_FALSE(mp_queue_full(q));
    // Items a child put count here too.
    EXPECT_EQ(0, child_put(q, 5, 0, 1, {100}));
    EXPECT_EQ(0, mp_queue_qsize(q, &n));
    EXPECT_EQ(3u, n);
    EXPECT_TRUE(mp_queue_full(q));
    expect_item(q, 4, 1, kSmallRing * 2);
    expect_item(q, 4, 2, 0);
    expect_item(q, 5, 0, 100);
    EXPECT_TRUE(mp_queue_empty(q));
    mp_queue *j = make_queue(MP_JOINABLE_QUEUE, 0);
    ASSERT_NE(nullptr, j);
    put_item(j, 4, 0, 40, 0);
    EXPECT_EQ(0, mp_queue_qsize(j, &n));
    EXPECT_EQ(1u, n);
}

TEST_P(QueueTest, UnboundedQueuePutNeverWaits) {
    // Unbounded: put_nowait succeeds however much is queued, far beyond the ring.
    mp_queue *q = make_queue(MP_QUEUE, 0, kSmallRing);
    ASSERT_NE(nullptr, q);
    const int count = 3000; // x 300 bytes: ~14 rings
    for (int i = 0; i < count; i++) {
        std::vector<uint8_t> it = make_item(6, (uint64_t)i, 300);
        int rc = mp_queue_put_bytes(q, it.data(), it.size(), 0);
        ASSERT_EQ(0, rc) << "put_nowait " << i << " on an unbounded queue " << err();
    }
    int code = 0;
    std::string r = child_get_report(q, count, &code);
    EXPECT_EQ(0, code);
    std::string want;
    for (int i = 0; i < count; i++)
        want += (i ? " " : "") + id_str(6, (uint64_t)i);
    EXPECT_TRUE(r == want) << "the child saw: " << r.substr(0, 300);
    expect_empty_now(q);
}

TEST_P(QueueTest, FullQueuePutWaitsForAChildsGet) {
    mp_queue *q = make_queue(MP_QUEUE, 2);
    ASSERT_NE(nullptr, q);
    put_item(q, 1, 0, 64, 0);
    put_item(q, 1, 1, 64, 0);
    Args a;
    ASSERT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
    a.i(1).d(0.3);
    mp_process *p = start(tgt_take, a.get());
    ASSERT_NE(nullptr, p);
    // Blocks (the queue is full) until the child took one.
    put_item(q, 1, 2, 64, kWait);
    EXPECT_EQ(0, join_code(p));
    expect_item(q, 1, 1, 64);
    expect_item(q, 1, 2, 64);
    expect_empty_now(q);
}

TEST_P(QueueTest, GetWaitsForAChildsPut) {
    mp_queue *q = make_queue(MP_QUEUE, 0, kSmallRing);
    ASSERT_NE(nullptr, q);
    Args a;
    ASSERT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
    std::string s = pack_sizes({200, kSmallRing * 2});
    a.i(2).i(0).i(2).b(s.data(), s.size()).d(0.3);
    mp_process *p = start(tgt_put_items, a.get());
    ASSERT_NE(nullptr, p);
    expect_item(q, 2, 0, 200); // waits for the child
    expect_item(q, 2, 1, kSmallRing * 2);
    EXPECT_EQ(0, join_code(p));
}

// ---- close ----

TEST_P(QueueTest, CloseThenClosed) {
    mp_queue *q = make_queue(MP_QUEUE, 0, kSmallRing);
    ASSERT_NE(nullptr, q);
    Pipe &out = pipe();
    Args a;
    ASSERT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
    a.i(2).h(out.w).d(0.3);
    mp_process *p = start(tgt_get_items, a.get()); // has its own object before the close
    ASSERT_NE(nullptr, p);
    put_item(q, 1, 0, 100, 0);
    put_item(q, 1, 1, kSmallRing * 2, 0);
    EXPECT_EQ(0, mp_queue_close(q)) << err();
    EXPECT_EQ(0, mp_queue_close(q)) << "closing twice is fine";
    void *b = nullptr;
    size_t n = 0;
    char buf[16];
    mp_value *v = nullptr, *iv = mp_value_int(1);
    EXPECT_EQ(MP_ECLOSED, mp_queue_put_bytes(q, "x", 1, 0));
    EXPECT_EQ(MP_ECLOSED, mp_queue_put(q, iv, 0));
    EXPECT_EQ(MP_ECLOSED, mp_queue_get_bytes(q, &b, &n, 0));
    EXPECT_EQ(MP_ECLOSED, mp_queue_get_bytes_into(q, buf, sizeof buf, &n, 0));
    EXPECT_EQ(MP_ECLOSED, mp_queue_get(q, &v, 0));
    mp_value_free(iv);
    std::string r;
    EXPECT_TRUE(read_msg(out.r, &r, kWait));
    EXPECT_EQ("1:0 1:1", r) << "items put before the close stay for the other processes";
    EXPECT_EQ(0, join_code(p));
}

// ---- SimpleQueue ----

TEST_P(QueueTest, SimpleQueue) {
    mp_queue *q = make_queue(MP_SIMPLE_QUEUE);
    ASSERT_NE(nullptr, q);
    EXPECT_TRUE(mp_queue_empty(q));
    put_item(q, 1, 0, 77, 0);
    EXPECT_FALSE(mp_queue_empty(q));
    expect_item(q, 1, 0, 77);
    EXPECT_TRUE(mp_queue_empty(q));
    expect_empty_now(q);
    // Across processes: a child puts, we get; we put, a child gets.
    EXPECT_EQ(0, child_put(q, 2, 0, 3, {40, 5000, 33}));
    expect_item(q, 2, 0, 40);
    expect_item(q, 2, 1, 5000);
    expect_item(q, 2, 2, 33);
    put_item(q, 3, 0, 64, 0);
    put_item(q, 3, 1, 3 * MiB, 0);
    int code = 0;
    EXPECT_EQ("3:0 3:1", child_get_report(q, 2, &code));
    EXPECT_EQ(0, code);
    EXPECT_TRUE(mp_queue_empty(q));
    EXPECT_EQ(0, mp_queue_close(q));
    EXPECT_EQ(MP_ECLOSED, mp_queue_put_bytes(q, "x", 1, 0));
}

// ---- JoinableQueue ----

TEST_P(QueueTest, JoinableTaskDoneAndJoin) {
    mp_queue *q = make_queue(MP_JOINABLE_QUEUE, 0);
    ASSERT_NE(nullptr, q);
    EXPECT_EQ(0, mp_queue_join(q, 0)) << "nothing put: nothing to wait for";
    EXPECT_EQ(MP_ESTATE, mp_queue_task_done(q)) << "task_done with nothing put";
    const int count = 3;
    for (int i = 0; i < count; i++)
        put_item(q, 1, (uint64_t)i, 64, 0);
    EXPECT_EQ(MP_ETIMEDOUT, mp_queue_join(q, 0.1)) << "three unfinished tasks";
    Blocker &b = blocker();
    Args a;
    ASSERT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
    a.i(count).h(b.release.r).h(b.ready.w);
    mp_process *p = start(tgt_joinable_worker, a.get());
    ASSERT_NE(nullptr, p);
    ASSERT_TRUE(b.wait_ready()) << "the child did not take the items";
    EXPECT_TRUE(mp_queue_empty(q));
    EXPECT_EQ(MP_ETIMEDOUT, mp_queue_join(q, 0.1)) << "one task is still not done";
    b.release_now();
    EXPECT_EQ(0, mp_queue_join(q, kWait)) << "the child marked every task done " << err();
    EXPECT_EQ(0, join_code(p));
    EXPECT_EQ(MP_ESTATE, mp_queue_task_done(q)) << "task_done more often than items were put";
    EXPECT_EQ(0, mp_queue_join(q, 0));
    // And in one process, with a waiter in another thread.
    put_item(q, 1, 9, 64, 0);
    std::atomic<int> jrc{1};
    std::thread t([&] { jrc = mp_queue_join(q, kWait); });
    expect_item(q, 1, 9, 64);
    sleep_for(0.05);
    EXPECT_EQ(0, mp_queue_task_done(q)) << err();
    t.join();
    EXPECT_EQ(0, jrc.load());
    EXPECT_EQ(MP_ESTATE, mp_queue_task_done(q));
}

// ---- get_bytes_into ----

TEST_P(QueueTest, GetBytesIntoTooSmallKeepsTheItemFirst) {
    mp_queue *q = make_queue(MP_QUEUE, 0, kSmallRing);
    ASSERT_NE(nullptr, q);
    const size_t big = kSmallRing * 3;
    put_item(q, 1, 0, 1000, 0);
    put_item(q, 1, 1, big, 0);
    put_item(q, 1, 2, 40, 0);
    std::vector<uint8_t> buf(big);
    size_t len = 0;
    EXPECT_EQ(MP_ETOOBIG, mp_queue_get_bytes_into(q, buf.data(), 999, &len, kWait));
    EXPECT_EQ(1000u, len) << "ETOOBIG gives the size needed";
    EXPECT_EQ(MP_ETOOBIG, mp_queue_get_bytes_into(q, buf.data(), 0, &len, 0));
    EXPECT_EQ(1000u, len);
    ASSERT_EQ(0, mp_queue_get_bytes_into(q, buf.data(), 1000, &len, 0)) << "exactly the size " << err();
    EXPECT_EQ("", item_diff(buf.data(), len, 1, 0, 1000));
    EXPECT_EQ(MP_ETOOBIG, mp_queue_get_bytes_into(q, buf.data(), big - 1, &len, 0)) << "an item bigger than the ring";
    EXPECT_EQ(big, len);
    size_t n = 0;
    EXPECT_EQ(0, mp_queue_qsize(q, &n));
    EXPECT_EQ(2u, n) << "the item that did not fit is still there";
    ASSERT_EQ(0, mp_queue_get_bytes_into(q, buf.data(), buf.size(), &len, 0)) << err();
    EXPECT_EQ("", item_diff(buf.data(), len, 1, 1, big));
    expect_item(q, 1, 2, 40);
    // A value item that does not fit stays too.
    mp_value *v = nested_value(3);
    EXPECT_EQ(0, mp_queue_put(q, v, 0));
    EXPECT_EQ(MP_ETOOBIG, mp_queue_get_bytes_into(q, buf.data(), 10, &len, 0));
    mp_value *got = nullptr;
    EXPECT_EQ(0, mp_queue_get(q, &got, 0)) << err();
    EXPECT_TRUE(mp_value_equal(v, got));
    mp_value_free(got);
    mp_value_free(v);
}

// ---- across processes ----

TEST_P(QueueTest, FifoFromOneProducerChild) {
    // A bounded queue and a small ring: the producer blocks often, on count and on
    // ring space, and big items interleave with small ones.
    mp_queue *q = make_queue(MP_QUEUE, 16, kSmallRing);
    ASSERT_NE(nullptr, q);
    const int count = kWindows ? 600 : 2000;
    std::vector<uint64_t> sizes = {40, 300, 32, 4000, 100, kSmallRing + 5, 64, kSmallRing / 2 + 3};
    Args a;
    ASSERT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
    std::string s = pack_sizes(sizes);
    a.i(3).i(0).i(count).b(s.data(), s.size()).d(0.0);
    mp_process *p = start(tgt_put_items, a.get());
    ASSERT_NE(nullptr, p);
    for (int i = 0; i < count; i++) {
        void *b = nullptr;
        size_t n = 0;
        int rc = mp_queue_get_bytes(q, &b, &n, kWait);
        ASSERT_EQ(0, rc) << "item " << i << " " << err();
        std::string d = item_diff(b, n, 3, (uint64_t)i, sizes[(size_t)i % sizes.size()]);
        mp_queue_free_bytes(b);
        ASSERT_EQ("", d) << "item " << i << " (FIFO from one producer)";
    }
    EXPECT_EQ(0, join_code(p));
    expect_empty_now(q);
}

TEST_P(QueueTest, QueuesAsArgsManyProducersAndConsumers) {
    const int producers = 3, consumers = 3, per = kWindows ? 100 : 300;
    mp_queue *work = make_queue(MP_QUEUE, 8, kSmallRing);
    mp_queue *res = make_queue(MP_QUEUE);
    ASSERT_TRUE(work && res);
    std::vector<mp_process *> cons, prods;
    for (int c = 0; c < consumers; c++) {
        Args a;
        EXPECT_EQ(0, mp_args_add_queue(a.get(), work)) << err();
        EXPECT_EQ(0, mp_args_add_queue(a.get(), res)) << err();
        a.i(c);
        cons.push_back(start(tgt_consume_until_stop, a.get()));
        ASSERT_NE(nullptr, cons.back());
    }
    std::vector<uint64_t> sizes = {32, 200, 1000, kSmallRing + 1, 77};
    std::string s = pack_sizes(sizes);
    for (int pi = 0; pi < producers; pi++) {
        Args a;
        EXPECT_EQ(0, mp_args_add_queue(a.get(), work)) << err();
        a.i(100 + pi).i(0).i(per).b(s.data(), s.size()).d(0.0);
        prods.push_back(start(tgt_put_items, a.get()));
        ASSERT_NE(nullptr, prods.back());
    }
    // Drain the results while the children run (the results queue is unbounded, but a
    // reader keeps it short).
    std::set<std::string> seen;
    std::vector<int> per_consumer(consumers, 0);
    int total = producers * per, dups = 0;
    for (int i = 0; i < total; i++) {
        mp_value *v = nullptr;
        int rc = mp_queue_get(res, &v, kWait);
        ASSERT_EQ(0, rc) << "result " << i << " of " << total << " " << err();
        ASSERT_EQ(MP_VALUE_TUPLE, mp_value_get_type(v));
        int64_t c = mp_value_as_int(mp_value_item(v, 0)), pr = mp_value_as_int(mp_value_item(v, 1));
        if (pr < 0) {
            size_t wl = 0;
            const char *why = mp_value_as_str(mp_value_item(v, 2), &wl);
            ADD_FAILURE() << "consumer " << c << " got a bad item: " << (why ? why : "?");
        } else {
            std::string id = id_str((uint32_t)pr, (uint64_t)mp_value_as_int(mp_value_item(v, 2)));
            dups += !seen.insert(id).second;
            if (c >= 0 && c < consumers)
                per_consumer[(size_t)c]++;
        }
        mp_value_free(v);
    }
    for (mp_process *p : prods)
        EXPECT_EQ(0, join_code(p));
    for (int c = 0; c < consumers; c++)
        EXPECT_EQ(0, mp_queue_put_bytes(work, nullptr, 0, kWait)) << err(); // stop
    for (mp_process *p : cons)
        EXPECT_EQ(0, join_code(p));
    EXPECT_EQ(0, dups) << "items delivered twice";
    EXPECT_EQ((size_t)total, seen.size()) << "items lost";
    for (int pi = 0; pi < producers; pi++)
        for (int k = 0; k < per; k++)
            if (!seen.count(id_str((uint32_t)(100 + pi), (uint64_t)k))) {
                ADD_FAILURE() << "missing " << id_str((uint32_t)(100 + pi), (uint64_t)k);
                pi = producers;
                break;
            }
    expect_empty_now(work);
    expect_empty_now(res);
}

// Every producer puts at once (nobody takes), then every consumer takes at once: the
// put side and the get side each contended by several processes, far beyond the ring.
TEST_P(QueueTest, PuttersContendThenGettersContend) {
    const int nproc = 4, per = kWindows ? 2000 : 5000;
    mp_queue *q = make_queue(MP_QUEUE, 0, kSmallRing);
    ASSERT_NE(nullptr, q);
    Pipe &ready = pipe(), &go = pipe();
    auto start_all = [&](std::vector<mp_process *> &ps) {
        char c = 0;
        for (size_t i = 0; i < ps.size(); i++)
            ASSERT_TRUE(read_exact(ready.r, &c, 1, kWait)) << "a child did not get ready";
        std::string gos(ps.size(), 'g');
        ASSERT_TRUE(write_all(go.w, gos.data(), gos.size()));
    };
    std::vector<mp_process *> prods, cons;
    for (int i = 0; i < nproc; i++) {
        Args a;
        ASSERT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
        a.i(20 + i).i(per).h(ready.w).h(go.r);
        prods.push_back(start(tgt_put_on_go, a.get()));
        ASSERT_NE(nullptr, prods.back());
    }
    start_all(prods);
    for (mp_process *p : prods)
        EXPECT_EQ(0, join_code(p));
    size_t n = 0;
    EXPECT_EQ(0, mp_queue_qsize(q, &n)) << err();
    EXPECT_EQ((size_t)(nproc * per), n);
    for (int i = 0; i < nproc; i++)
        EXPECT_EQ(0, mp_queue_put_bytes(q, nullptr, 0, 0)) << "stop " << err();
    std::vector<Pipe *> outs;
    for (int i = 0; i < nproc; i++) {
        outs.push_back(&pipe());
        Args a;
        ASSERT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
        a.h(outs.back()->w).h(ready.w).h(go.r);
        cons.push_back(start(tgt_drain_on_go, a.get()));
        ASSERT_NE(nullptr, cons.back());
    }
    start_all(cons);
    std::vector<std::vector<int>> seen(nproc, std::vector<int>(per, 0));
    int bad = 0, foreign = 0;
    for (int i = 0; i < nproc; i++) {
        std::string m;
        EXPECT_TRUE(read_msg(outs[(size_t)i]->r, &m, kWait)) << "consumer " << i << " reported nothing";
        std::vector<uint32_t> v(m.size() / sizeof(uint32_t));
        if (!v.empty())
            memcpy(v.data(), m.data(), v.size() * sizeof(uint32_t));
        for (size_t k = 0; k + 1 < v.size(); k += 2) {
            if (v[k] == 0xffffffffu)
                bad++;
            else if (v[k] < 20 || v[k] >= 20u + nproc || v[k + 1] >= (uint32_t)per)
                foreign++;
            else
                seen[v[k] - 20][v[k + 1]]++;
        }
    }
    for (mp_process *p : cons)
        EXPECT_EQ(0, join_code(p));
    EXPECT_EQ(0, bad) << "torn items";
    EXPECT_EQ(0, foreign) << "items nobody put";
    int lost = 0, dup = 0;
    for (const auto &row : seen)
        for (int c : row) {
            lost += c == 0;
            dup += c > 1;
        }
    EXPECT_EQ(0, lost) << "items lost";
    EXPECT_EQ(0, dup) << "items taken twice";
    expect_empty_now(q);
}

TEST_P(QueueTest, QueueKeepsItsKindInAChild) {
    for (mp_queue_kind k : {MP_QUEUE, MP_SIMPLE_QUEUE, MP_JOINABLE_QUEUE}) {
        mp_queue *q = make_queue(k);
        ASSERT_NE(nullptr, q);
        Args a;
        ASSERT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
        mp_process *p = start(tgt_kind, a.get());
        ASSERT_NE(nullptr, p);
        EXPECT_EQ(10 + (int)k, join_code(p)) << "kind " << k << " (10 + kind: the child saw a \"queue\")";
    }
}

// Items from 1 byte to far more than the ring, in both directions, arrive whole.
TEST_P(QueueTest, ItemSizesUpToBeyondTheRing) {
    mp_queue *q = make_queue(MP_QUEUE, 0, kSmallRing);
    ASSERT_NE(nullptr, q);
    std::vector<uint64_t> sizes = {1, 2, 7, 8, 9, 31, 32, 33, 63, 64, 65, 4095, 4096, 4097};
    for (int64_t d = -72; d <= 72; d += 8)
        for (int64_t e : {-1, 0, 1})
            sizes.push_back((uint64_t)((int64_t)kSmallRing + d + e));
    for (uint64_t s : {kSmallRing / 2, kSmallRing * 2, kSmallRing * 2 + 1, MiB + 3, 8 * MiB})
        sizes.push_back(s);
    // Child -> parent.
    {
        Args a;
        ASSERT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
        // tgt_put_items numbers items from `first`; the parent checks index i.
        std::string s = pack_sizes(sizes);
        a.i(4).i(0).i((int64_t)sizes.size()).b(s.data(), s.size()).d(0.0);
        mp_process *p = start(tgt_put_items, a.get());
        ASSERT_NE(nullptr, p);
        for (size_t i = 0; i < sizes.size(); i++)
            expect_item(q, 4, i, sizes[i]);
        EXPECT_EQ(0, join_code(p));
    }
    // Parent -> child.
    {
        for (size_t i = 0; i < sizes.size(); i++)
            put_item(q, 5, i, sizes[i]);
        Args a;
        ASSERT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
        std::string s = pack_sizes(sizes);
        a.b(s.data(), s.size()).i(5);
        mp_process *p = start(tgt_get_sizes, a.get());
        ASSERT_NE(nullptr, p);
        EXPECT_EQ(0, join_code(p));
    }
    expect_empty_now(q);
}

TEST_P(QueueTest, HugeItemsWithTheDefaultRing) {
    mp_queue *q = make_queue(MP_QUEUE);
    ASSERT_NE(nullptr, q);
    std::vector<uint64_t> sizes = {64 * MiB, 3, 8 * MiB + 1, 64 * MiB + 7};
    Args a;
    ASSERT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
    std::string s = pack_sizes(sizes);
    a.b(s.data(), s.size()).i(6);
    mp_process *p = start(tgt_get_sizes, a.get());
    ASSERT_NE(nullptr, p);
    for (size_t i = 0; i < sizes.size(); i++)
        put_item(q, 6, i, sizes[i]);
    EXPECT_EQ(0, join_code(p));
    expect_empty_now(q);
}

// CPython gh-73983: a child puts an item bigger than the ring and exits; the parent
// joins it first and only then reads. put is synchronous, so the join must not wait
// for a reader and the item must be there, whole.
TEST_P(QueueTest, ChildExitsAfterBigPutParentJoinsFirst) {
    for (size_t ring : {kSmallRing, (size_t)0}) {
        mp_queue *q = make_queue(MP_QUEUE, 0, ring);
        ASSERT_NE(nullptr, q);
        std::vector<uint64_t> sizes = {ring ? 8 * MiB : 64 * MiB, 100};
        Args a;
        ASSERT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
        std::string s = pack_sizes(sizes);
        a.i(7).i(0).i(2).b(s.data(), s.size()).d(0.0);
        mp_process *p = start(tgt_put_items, a.get());
        ASSERT_NE(nullptr, p);
        EXPECT_EQ(0, join_code(p)) << "joining a child that put a big item must not deadlock";
        expect_item(q, 7, 0, sizes[0]);
        expect_item(q, 7, 1, 100);
        expect_empty_now(q);
    }
}

TEST_P(QueueTest, ChildExitsAfterManySmallPutsParentJoinsFirst) {
    // More than a ring's worth of small items, none read before the child ended.
    mp_queue *q = make_queue(MP_QUEUE, 0, kSmallRing);
    ASSERT_NE(nullptr, q);
    const int count = 2000; // x 100 bytes: ~3 rings
    EXPECT_EQ(0, child_put(q, 8, 0, count, {100}));
    size_t n = 0;
    EXPECT_EQ(0, mp_queue_qsize(q, &n));
    EXPECT_EQ((size_t)count, n);
    for (int i = 0; i < count; i++) {
        void *b = nullptr;
        size_t len = 0;
        ASSERT_EQ(0, mp_queue_get_bytes(q, &b, &len, kWait)) << "item " << i << " " << err();
        std::string d = item_diff(b, len, 8, (uint64_t)i, 100);
        mp_queue_free_bytes(b);
        ASSERT_EQ("", d) << "item " << i;
    }
    expect_empty_now(q);
}

// ---- owner death ----

// A process dies at `point` while putting or getting an item of len bytes; afterwards
// we and other processes put and get normally and see only whole items.
void QueueTest::owner_death(int point, size_t len, bool hold) {
    mp_queue *q = make_queue(MP_QUEUE, 0, kSmallRing);
    ASSERT_NE(nullptr, q);
    bool get = point == MP__QFAULT_GET_PARTIAL;
    put_item(q, 1, 0, len); // the item a dying consumer takes, or one before the dying put
    if (get)
        put_item(q, 1, 1, 100);
    Pipe &ready = pipe();
    Args a;
    ASSERT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
    a.i(point).i((int64_t)len).i(50);
    if (hold)
        a.h(ready.w);
    else
        a.i(0);
    mp_process *p = start(tgt_die_at, a.get());
    ASSERT_NE(nullptr, p);
    std::atomic<int> wrc{1};
    if (hold) {
        char c = 0;
        ASSERT_TRUE(read_exact(ready.r, &c, 1, kWait)) << "the child did not reach fault point " << point;
        // Another putter waits on the side the child holds when it is killed.
        std::thread t([&] {
            std::vector<uint8_t> it = make_item(1, 2, 300);
            wrc = mp_queue_put_bytes(q, it.data(), it.size(), kWait);
        });
        sleep_for(0.2);
        EXPECT_EQ(0, mp_process_kill(p)) << err();
        t.join();
        EXPECT_EQ(0, wrc.load()) << "a put waiting when the holder died " << err();
        EXPECT_EQ(exitcode_killed(), join_code(p));
    } else {
        int code = join_code(p);
        ASSERT_NE(kHookNotReached, code) << "fault point " << point << " was never reached";
        EXPECT_EQ(self_killed_code(), code) << "the child should have died at fault point " << point;
    }
    // Survivors: a child puts a small and a big item, we put one.
    EXPECT_EQ(0, child_put(q, 2, 0, 2, {64, kSmallRing * 2})) << "a put after the death";
    put_item(q, 1, 3, 200);
    std::string want = get ? "1:1" : "1:0";
    if (hold)
        want += " 1:2";
    want += " 2:0 2:1 1:3";
    size_t count = (size_t)std::count(want.begin(), want.end(), ' ') + 1;
    size_t before = 99;
    EXPECT_EQ(0, mp_queue_qsize(q, &before)) << err();
    // Nobody else puts or gets now: exact, except that the dead process's lost item may
    // still count until a get passes its place (queue.h).
    EXPECT_GE(before, count) << "qsize after the death";
    EXPECT_LE(before, count + 1) << "qsize after the death";
    int code = 0;
    EXPECT_EQ(want, child_get_report(q, (int64_t)count, &code))
        << (get ? "the dying consumer's item is gone, the rest is whole and in order"
                : "the dying producer's item (99:50) is dropped, the rest is whole and in order");
    EXPECT_EQ(0, code);
    expect_empty_now(q);
    size_t n = 99;
    EXPECT_EQ(0, mp_queue_qsize(q, &n)) << err();
    EXPECT_EQ(0u, n) << "qsize once the survivors took everything (the lost item must not count)";
    // And it keeps working in this process.
    put_item(q, 1, 4, kSmallRing * 3);
    put_item(q, 1, 5, 10);
    expect_item(q, 1, 4, kSmallRing * 3);
    expect_item(q, 1, 5, 10);
}

TEST_P(QueueTest, ProducerKilledInTheMiddleOfAPut) {
    if (dummy())
        GTEST_SKIP() << "a dummy child is a thread: the fault hook is per process and a thread cannot be killed";
    owner_death(MP__QFAULT_PUT_PARTIAL, 3000, false);
}

TEST_P(QueueTest, ProducerKilledInTheMiddleOfAPutWhileAnotherWaits) {
    if (dummy())
        GTEST_SKIP() << "a dummy child is a thread: the fault hook is per process and a thread cannot be killed";
    owner_death(MP__QFAULT_PUT_PARTIAL, 3000, true);
}

TEST_P(QueueTest, ProducerKilledPlacingAnItemBiggerThanTheRing) {
    if (dummy())
        GTEST_SKIP() << "a dummy child is a thread: the fault hook is per process and a thread cannot be killed";
    owner_death(MP__QFAULT_PUT_SPILL, kSmallRing * 4, false);
}

TEST_P(QueueTest, ConsumerKilledInTheMiddleOfAGet) {
    if (dummy())
        GTEST_SKIP() << "a dummy child is a thread: the fault hook is per process and a thread cannot be killed";
    owner_death(MP__QFAULT_GET_PARTIAL, 3000, false);
}

TEST_P(QueueTest, ConsumerKilledInTheMiddleOfAGetOfABigItem) {
    if (dummy())
        GTEST_SKIP() << "a dummy child is a thread: the fault hook is per process and a thread cannot be killed";
    owner_death(MP__QFAULT_GET_PARTIAL, kSmallRing * 4, false);
}

// A JoinableQueue item that is never delivered (its producer died placing it) is no
// task: join must not wait for it forever.
TEST_P(QueueTest, JoinableJoinReturnsAfterAProducerDied) {
    if (dummy())
        GTEST_SKIP() << "a dummy child is a thread: the fault hook is per process and a thread cannot be killed";
    for (int point : {(int)MP__QFAULT_PUT_PARTIAL, (int)MP__QFAULT_PUT_SPILL}) {
        SCOPED_TRACE(point == MP__QFAULT_PUT_SPILL ? "killed placing a big item" : "killed mid-put");
        size_t len = point == MP__QFAULT_PUT_SPILL ? kSmallRing * 4 : 3000;
        mp_queue *q = make_queue(MP_JOINABLE_QUEUE, 0, kSmallRing);
        ASSERT_NE(nullptr, q);
        Args a;
        ASSERT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
        a.i(point).i((int64_t)len).i(50).i(0);
        mp_process *p = start(tgt_die_at, a.get());
        ASSERT_NE(nullptr, p);
        int code = join_code(p);
        ASSERT_NE(kHookNotReached, code) << "fault point " << point << " was never reached";
        put_item(q, 1, 0, 100);
        expect_item(q, 1, 0, 100); // passes (drops) the dead producer's item if it shows
        EXPECT_EQ(0, mp_queue_task_done(q)) << err();
        EXPECT_EQ(0, mp_queue_join(q, kWait)) << "the dead producer's item counted as a task " << err();
        EXPECT_EQ(MP_ESTATE, mp_queue_task_done(q)) << "one task was put, one is done";
    }
}

// ---- clean-up ----

TEST_P(QueueTest, NothingLeftInDevShm) {
#ifdef _WIN32
    GTEST_SKIP() << "no /dev/shm on Windows";
#else
    // Queue memory (ring, arena, spill blocks) is unnamed: this process holds no /dev/shm
    // file for it, also after a child handed it big items. (This process's files, not a
    // listing of /dev/shm: ctest runs other backends' shared-memory tests alongside.)
    mp_queue *q = nullptr, *s = nullptr, *j = nullptr;
    ASSERT_EQ(0, mp_queue_new(ctx(), 4, &q)) << err();
    ASSERT_EQ(0, mp_simple_queue_new(ctx(), &s)) << err();
    ASSERT_EQ(0, mp_joinable_queue_new(ctx(), 0, &j)) << err();
    std::vector<uint8_t> big = make_item(1, 0, 8 * MiB);
    EXPECT_EQ(0, mp_queue_put_bytes(q, big.data(), big.size(), 0)) << err();
    EXPECT_EQ(0, mp_queue_put_bytes(s, big.data(), 100, 0)) << err();
    EXPECT_EQ(0, child_put(j, 2, 0, 2, {8 * MiB, 50}));
    std::vector<uint8_t> got(8 * MiB);
    size_t len = 0;
    EXPECT_EQ(0, mp_queue_get_bytes_into(j, got.data(), got.size(), &len, 30.0)) << err();
    EXPECT_EQ("", dev_shm_files_in_use());
    mp_queue_free(q); // items left in the queues go with the last holder
    mp_queue_free(s);
    mp_queue_free(j);
    EXPECT_EQ("", dev_shm_files_in_use());
#endif
}
