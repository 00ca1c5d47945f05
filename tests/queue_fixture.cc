// The queue tests' items and the targets their children run (declared, with what
// each does, in queue_fixture.h).
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "queue_fixture.h"
#include "targets.h"

namespace mpt {

namespace {

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
        if (memcmp(p + i, &w, 8) != 0) break;
    }
    for (; i < n; i += 8) { // the first differing word, or the tail
        uint64_t w = splitmix(&s);
        const uint8_t *e = (const uint8_t *)&w;
        for (size_t k = 0; k < 8 && i + k < n; k++)
            if (p[i + k] != e[k]) return i + k;
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

// The list pack_sizes made, from args[i].
std::vector<uint64_t> unpack_sizes(const mp_args *a, size_t i) {
    size_t n = 0;
    const void *p = mp_args_bytes(a, i, &n);
    std::vector<uint64_t> v(n / sizeof(uint64_t));
    if (p && n) memcpy(v.data(), p, v.size() * sizeof(uint64_t));
    return v;
}

// In a child: reports on stderr (the test output) and returns code.
int child_fail(int code, const char *what, int rc = 0) {
    fprintf(stderr, "[queue child %lld] %s: %s %s\n", (long long)mp_getpid(), what,
            rc ? mp_err_name(rc) : "", rc ? mp_last_error_message() : "");
    fflush(stderr);
    return code;
}

// Waits until the test says go: 'R' on ready, then one byte from go (kWait).
bool ready_set_go(mp_os_handle ready, mp_os_handle go) {
    char c = 'R';
    return write_all(ready, &c, 1) && read_exact(go, &c, 1, kWait);
}

} // namespace

// ---- items ----

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

std::string item_diff(const void *p, size_t n, uint32_t producer, uint64_t seq, size_t len) {
    if (n != len) return "length " + std::to_string(n) + ", expected " + std::to_string(len);
    if (len < sizeof(Hdr)) {
        size_t bad = pattern_mismatch(seed_of(producer, seq, len), (const uint8_t *)p, n);
        return bad == n ? "" : "differs at byte " + std::to_string(bad);
    }
    uint32_t pr = 0;
    uint64_t sq = 0;
    std::string why;
    if (!parse_item(p, n, &pr, &sq, &why)) return why;
    if (pr != producer || sq != seq)
        return "item p" + std::to_string(pr) + "/" + std::to_string(sq) + ", expected p" +
               std::to_string(producer) + "/" + std::to_string(seq);
    return "";
}

std::string id_str(uint32_t producer, uint64_t seq) {
    return std::to_string(producer) + ":" + std::to_string(seq);
}

std::string pack_sizes(const std::vector<uint64_t> &v) {
    return std::string((const char *)v.data(), v.size() * sizeof(uint64_t));
}

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

int tgt_put_items(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    uint32_t producer = (uint32_t)mp_args_int(a, 1);
    int64_t first = mp_args_int(a, 2), count = mp_args_int(a, 3);
    std::vector<uint64_t> sizes = unpack_sizes(a, 4);
    if (!q || sizes.empty()) return kBad;
    sleep_for(mp_args_double(a, 5));
    for (int64_t i = 0; i < count; i++) {
        std::vector<uint8_t> it =
            make_item(producer, (uint64_t)(first + i), sizes[(size_t)i % sizes.size()]);
        int rc = mp_queue_put_bytes(q, it.data(), it.size(), kWait);
        if (rc != 0) return child_fail(kFail, "put", rc);
    }
    return kOk;
}

int tgt_get_items(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    int64_t count = mp_args_int(a, 1);
    mp_os_handle out = mp_args_os_handle(a, 2);
    if (!q || out == MP_INVALID_OS_HANDLE) return kBad;
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
        if (!ok) break;
    }
    return write_msg(out, report) ? (int)kOk : (int)kTgtIoError;
}

int tgt_get_sizes(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    std::vector<uint64_t> sizes = unpack_sizes(a, 1);
    uint32_t producer = (uint32_t)mp_args_int(a, 2);
    if (!q || sizes.empty()) return kBad;
    for (size_t i = 0; i < sizes.size(); i++) {
        void *p = nullptr;
        size_t n = 0;
        int rc = mp_queue_get_bytes(q, &p, &n, kWait);
        if (rc != 0) return child_fail(kFail, "get", rc);
        std::string d = item_diff(p, n, producer, i, sizes[i]);
        mp_queue_free_bytes(p);
        if (!d.empty()) return child_fail(2, ("item " + std::to_string(i) + ": " + d).c_str());
    }
    return kOk;
}

int tgt_consume_until_stop(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0), *res = mp_args_queue(a, 1);
    int64_t me = mp_args_int(a, 2);
    if (!q || !res) return kBad;
    for (;;) {
        void *p = nullptr;
        size_t n = 0;
        int rc = mp_queue_get_bytes(q, &p, &n, kWait);
        if (rc != 0) return child_fail(kFail, "get", rc);
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
        if (rc != 0) return child_fail(kFail, "put result", rc);
    }
}

int tgt_value_echo(mp_args *a) {
    mp_queue *in = mp_args_queue(a, 0), *out = mp_args_queue(a, 1);
    int64_t tag = mp_args_int(a, 2);
    if (!in || !out) return kBad;
    mp_value *v = nullptr;
    int rc = mp_queue_get(in, &v, kWait);
    if (rc != 0) return child_fail(kFail, "get value", rc);
    mp_value *want = nested_value(tag);
    bool same = mp_value_equal(v, want);
    mp_value_free(v);
    mp_value_free(want);
    if (!same) return child_fail(2, "the value differs");
    mp_value *reply = nested_value(tag + 1);
    rc = mp_queue_put(out, reply, kWait);
    mp_value_free(reply);
    return rc == 0 ? kOk : child_fail(kFail, "put value", rc);
}

int tgt_put_on_go(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    uint32_t producer = (uint32_t)mp_args_int(a, 1);
    int64_t count = mp_args_int(a, 2);
    if (!q || !ready_set_go(mp_args_os_handle(a, 3), mp_args_os_handle(a, 4))) return kBad;
    for (int64_t i = 0; i < count; i++) {
        std::vector<uint8_t> it = make_item(producer, (uint64_t)i, 32 + (size_t)(i * 37 % 200));
        int rc = mp_queue_put_bytes(q, it.data(), it.size(), kWait);
        if (rc != 0) return child_fail(kFail, "put", rc);
    }
    return kOk;
}

int tgt_drain_on_go(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    mp_os_handle out = mp_args_os_handle(a, 1);
    if (!q || out == MP_INVALID_OS_HANDLE ||
        !ready_set_go(mp_args_os_handle(a, 2), mp_args_os_handle(a, 3)))
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
        if (stop) break;
        if (!ok) child_fail(0, why.c_str());
        got.push_back(ok ? pr : 0xffffffffu);
        got.push_back(ok ? (uint32_t)sq : 0);
    }
    std::string msg((const char *)got.data(), got.size() * sizeof(uint32_t));
    return write_msg(out, msg) ? code : (int)kTgtIoError;
}

int tgt_take(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    int64_t count = mp_args_int(a, 1);
    if (!q) return kBad;
    sleep_for(mp_args_double(a, 2));
    for (int64_t i = 0; i < count; i++) {
        void *p = nullptr;
        size_t n = 0;
        int rc = mp_queue_get_bytes(q, &p, &n, kWait);
        if (rc != 0) return child_fail(kFail, "get", rc);
        uint32_t pr = 0;
        uint64_t sq = 0;
        std::string why;
        bool ok = parse_item(p, n, &pr, &sq, &why);
        mp_queue_free_bytes(p);
        if (!ok) return child_fail(2, why.c_str());
    }
    return kOk;
}

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
        if (rc != 0) return child_fail(kFail, "get", rc);
        if (i + 1 < count && (rc = mp_queue_task_done(q)) != 0)
            return child_fail(kFail, "task_done", rc);
    }
    char c = 'R';
    if (!write_all(ready, &c, 1)) return kTgtIoError;
    if (!read_exact(rel, &c, 1, kCap)) return kTgtCapReached;
    int rc = mp_queue_task_done(q);
    return rc == 0 ? kOk : child_fail(kFail, "last task_done", rc);
}

int tgt_kind(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    const char *t = mp_args_object_type(a, 0);
    if (!q) return kBad;
    return (int)mp_queue_get_kind(q) + (t && strcmp(t, "queue") == 0 ? 10 : 0);
}

} // namespace mpt
