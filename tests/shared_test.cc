// Value, Array, RawValue, RawArray (multiprocessing.sharedctypes) on every start method:
// every typecode with its C size, accessors and their range checks, lock modes, copy and
// synchronized, children that share a counter and an array.
#include <atomic>
#include <cfloat>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "shm_fixture.h"

using namespace mpt;

namespace {

enum { kOk = 0, kBad = 90, kFail = 1 };

// A typecode with the C type Python gives it and the range of that type.
struct Code {
    char c;
    size_t size;
    bool is_float;
    int64_t lo;  // integer codes: the smallest value
    uint64_t hi; // integer codes: the largest value
};

const std::vector<Code> &codes() {
    static const std::vector<Code> v = {
        {'c', sizeof(char), false, CHAR_MIN, (uint64_t)CHAR_MAX},
        {'b', sizeof(signed char), false, SCHAR_MIN, SCHAR_MAX},
        {'B', sizeof(unsigned char), false, 0, UCHAR_MAX},
        {'h', sizeof(short), false, SHRT_MIN, SHRT_MAX},
        {'H', sizeof(unsigned short), false, 0, USHRT_MAX},
        {'i', sizeof(int), false, INT_MIN, INT_MAX},
        {'I', sizeof(unsigned int), false, 0, UINT_MAX},
        {'l', sizeof(long), false, LONG_MIN, (uint64_t)LONG_MAX},
        {'L', sizeof(unsigned long), false, 0, ULONG_MAX},
        {'q', sizeof(long long), false, LLONG_MIN, (uint64_t)LLONG_MAX},
        {'Q', sizeof(unsigned long long), false, 0, ULLONG_MAX},
        {'f', sizeof(float), true, 0, 0},
        {'d', sizeof(double), true, 0, 0},
    };
    return v;
}

// Item i of a sample for code k in the C type's bytes: small values every type holds,
// negative for signed codes, fractional for floats; salt makes a second, distinct sample.
std::vector<unsigned char> sample(const Code &k, size_t n, int salt = 0) {
    std::vector<unsigned char> out(n * k.size);
    for (size_t i = 0; i < n; i++) {
        int64_t v = (int64_t)(i * 3 + 1 + salt * 11);
        if (k.lo < 0 && (i % 2)) v = -v;
        unsigned char *p = out.data() + i * k.size;
        switch (k.c) {
        case 'c': {
            char x = (char)('A' + v % 26 + (v < 0 ? 26 : 0));
            memcpy(p, &x, 1);
            break;
        }
        case 'b': {
            signed char x = (signed char)v;
            memcpy(p, &x, sizeof x);
            break;
        }
        case 'B': {
            unsigned char x = (unsigned char)v;
            memcpy(p, &x, sizeof x);
            break;
        }
        case 'h': {
            short x = (short)(v * 100);
            memcpy(p, &x, sizeof x);
            break;
        }
        case 'H': {
            unsigned short x = (unsigned short)(v * 100);
            memcpy(p, &x, sizeof x);
            break;
        }
        case 'i': {
            int x = (int)(v * 100000);
            memcpy(p, &x, sizeof x);
            break;
        }
        case 'I': {
            unsigned x = (unsigned)(v * 100000);
            memcpy(p, &x, sizeof x);
            break;
        }
        case 'l': {
            long x = (long)(v * 100000);
            memcpy(p, &x, sizeof x);
            break;
        }
        case 'L': {
            unsigned long x = (unsigned long)(v * 100000);
            memcpy(p, &x, sizeof x);
            break;
        }
        case 'q': {
            long long x = v * 10000000000LL;
            memcpy(p, &x, sizeof x);
            break;
        }
        case 'Q': {
            unsigned long long x = (unsigned long long)v * 10000000000ULL;
            memcpy(p, &x, sizeof x);
            break;
        }
        case 'f': {
            float x = (float)v + 0.25f;
            memcpy(p, &x, sizeof x);
            break;
        }
        case 'd': {
            double x = (double)v + 0.1;
            memcpy(p, &x, sizeof x);
            break;
        }
        }
    }
    return out;
}

std::string hex(const void *p, size_t n) {
    static const char *d = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = static_cast<const unsigned char *>(p)[i];
        s += d[c >> 4];
        s += d[c & 15];
    }
    return s;
}

// Owns a mp_shared_array for the scope of a test.
struct SA {
    mp_shared_array *a = nullptr;
    SA() = default;
    SA(const SA &) = delete;
    SA &operator=(const SA &) = delete;
    ~SA() { mp_shared_array_free(a); }
};

struct Lock {
    mp_lock *l = nullptr;
    ~Lock() { mp_lock_free(l); }
};

// ---- targets ----

// [0] shared_array (a Value 'q'), [1] iterations, [2] 1: through get_obj under the
// lock (a plain Lock: the accessors would take it again), 0: get_int / set_int under
// get_lock (an RLock), [3] optional start event (so that the children overlap).
// Increments the value n times.
int tgt_increment(mp_args *a) {
    mp_shared_array *v = mp_args_shared_array(a, 0);
    int64_t n = mp_args_int(a, 1);
    bool raw = mp_args_int(a, 2) != 0;
    if (!v || mp_shared_array_typecode(v) != 'q' || mp_shared_array_len(v) != 1) return kBad;
    if (mp_args_count(a) > 3) {
        mp_event *go = mp_args_event(a, 3);
        if (!go || mp_event_wait(go, kWait) != 0) return kBad + 3;
    }
    mp_lock *l = mp_shared_array_get_lock(v);
    if (!l) return kBad + 1;
    volatile long long *obj = static_cast<volatile long long *>(mp_shared_array_get_obj(v));
    if (!obj) return kBad + 2;
    for (int64_t i = 0; i < n; i++) {
        if (mp_lock_acquire(l, kWait) != 0) return kFail;
        if (raw) {
            long long x = *obj;
            if ((i & 63) == 0)
                std::this_thread::yield(); // widen the window a broken lock would show
            *obj = x + 1;
        } else {
            int64_t x = 0;
            if (mp_shared_array_get_int(v, 0, &x) != 0) return kFail + 1;
            if ((i & 63) == 0) std::this_thread::yield();
            if (mp_shared_array_set_int(v, 0, x + 1) != 0) return kFail + 2;
        }
        if (mp_lock_release(l) != 0) return kFail + 3;
    }
    return kOk;
}

// [0] shared_array ('i', 10, raw), [1] start, [2] stop: checks item 0 is 77 (written by
// the parent before the start), then writes 1000 + j to items [start, stop) as a slice.
int tgt_write_slice(mp_args *a) {
    mp_shared_array *v = mp_args_shared_array(a, 0);
    size_t start = (size_t)mp_args_int(a, 1), stop = (size_t)mp_args_int(a, 2);
    if (!v || mp_shared_array_typecode(v) != 'i' || mp_shared_array_len(v) != 10 || stop < start)
        return kBad;
    if (mp_shared_array_get_lock(v) != nullptr) return kBad + 1;
    int first = 0;
    if (mp_shared_array_get(v, 0, &first) != 0 || first != 77) return kFail;
    std::vector<int> items;
    for (size_t j = start; j < stop; j++) items.push_back(1000 + (int)j);
    return mp_shared_array_set_slice(v, start, stop, items.data()) == 0 ? kOk : kFail + 1;
}

// [0] backend, [1] shared_array (a Value 'q' with an RLock), [2] n: passes the object
// on to a grandchild that increments it n times, increments it n times itself meanwhile,
// joins the grandchild. 0, or 50 + the grandchild's code, or 80 + a step that failed.
int tgt_relay_increment(mp_args *a) {
    const char *backend = mp_args_str(a, 0);
    mp_shared_array *v = mp_args_shared_array(a, 1);
    int64_t n = mp_args_int(a, 2);
    mp_context *ctx = backend ? mp_get_context(backend) : nullptr;
    mp_args *ga = nullptr;
    if (!ctx || !v || mp_args_new(&ga) != 0) return 80;
    if (mp_args_add_shared_array(ga, v) != 0 || mp_args_add_int(ga, n) != 0 ||
        mp_args_add_int(ga, 0) != 0) {
        mp_args_free(ga);
        return 81;
    }
    mp_process_opts o = {};
    o.target = tgt_increment;
    o.args = ga;
    mp_process *g = nullptr;
    if (mp_process_new(ctx, &o, &g) != 0 || mp_process_start(g) != 0) {
        mp_process_free(g);
        mp_args_free(ga);
        return 82;
    }
    mp_args *mine = nullptr;
    int rc = 83;
    if (mp_args_new(&mine) == 0 && mp_args_add_shared_array(mine, v) == 0 &&
        mp_args_add_int(mine, n) == 0 && mp_args_add_int(mine, 0) == 0)
        rc = tgt_increment(mine);
    int code = -1;
    if (mp_process_join(g, kWait) != 0 || mp_process_exitcode(g, &code) != 0)
        rc = 84;
    else if (code != 0)
        rc = 50 + code;
    mp_process_free(g);
    mp_args_free(ga);
    mp_args_free(mine);
    return rc;
}

} // namespace

class SharedArrayTest : public ShmFixture {
  protected:
    // 4 children increment the Value v 1000 times each under its lock (raw: through
    // get_obj, else with the accessors); the parent must see the exact sum.
    void children_increment(mp_shared_array *v, bool raw) {
        const int nchildren = 4;
        const int64_t iters = 1000;
        mp_event *go = nullptr;
        ASSERT_EQ(0, mp_event_new(ctx(), &go)) << err();
        std::vector<mp_process *> ps;
        for (int c = 0; c < nchildren; c++) {
            Args a;
            EXPECT_EQ(0, mp_args_add_shared_array(a.get(), v)) << err();
            a.i(iters).i(raw ? 1 : 0);
            EXPECT_EQ(0, mp_args_add_event(a.get(), go)) << err();
            mp_process *p = start(tgt_increment, a.get());
            if (!p) break;
            ps.push_back(p);
        }
        // All start counting together: a lock that does not exclude loses increments.
        EXPECT_EQ(0, mp_event_set(go)) << err();
        mp_event_free(go);
        ASSERT_EQ((size_t)nchildren, ps.size());
        for (mp_process *p : ps)
            EXPECT_EQ(0, join_code(p)) << "a child failed (see tgt_increment's codes)";
        int64_t total = -1;
        EXPECT_EQ(0, mp_shared_array_get_int(v, 0, &total)) << err();
        EXPECT_EQ(nchildren * iters, total) << "increments were lost: the children do not "
                                               "share the memory, or the lock did not exclude";
    }
};

INSTANTIATE_TEST_SUITE_P(Backends, SharedArrayTest, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

TEST(SharedTypes, TypecodeSizesAreTheCTypes) {
    for (const Code &k : codes()) EXPECT_EQ(k.size, mp_typecode_size(k.c)) << "typecode " << k.c;
    for (char bad : {'x', 'u', 'C', 'D', 'F', '\0', '?', 'n', 'N', 'P', 'e'})
        EXPECT_EQ(0u, mp_typecode_size(bad)) << "code " << (int)bad;
}

TEST_P(SharedArrayTest, ValueEveryTypecode) {
    for (const Code &k : codes()) {
        SCOPED_TRACE(std::string("typecode ") + k.c);
        std::vector<unsigned char> init = sample(k, 1), other = sample(k, 1, 1);
        for (int raw = 0; raw < 2; raw++) {
            SA v;
            if (raw)
                ASSERT_EQ(0, mp_raw_value_new(ctx(), k.c, init.data(), &v.a)) << err();
            else
                ASSERT_EQ(0,
                          mp_shared_value_new(ctx(), k.c, init.data(), MP_LOCK_NEW, nullptr, &v.a))
                    << err();
            EXPECT_EQ(k.c, mp_shared_array_typecode(v.a));
            EXPECT_EQ(1u, mp_shared_array_len(v.a));
            EXPECT_EQ(raw != 0, mp_shared_array_get_lock(v.a) == nullptr);
            void *obj = mp_shared_array_get_obj(v.a);
            ASSERT_NE(nullptr, obj);
            EXPECT_EQ(hex(init.data(), k.size), hex(obj, k.size)) << "the memory holds the C item";
            unsigned char got[16] = {0};
            EXPECT_EQ(0, mp_shared_array_get(v.a, 0, got)) << err();
            EXPECT_EQ(hex(init.data(), k.size), hex(got, k.size));
            EXPECT_EQ(0, mp_shared_array_set(v.a, 0, other.data())) << err();
            EXPECT_EQ(hex(other.data(), k.size), hex(obj, k.size))
                << "set writes the shared memory";
            EXPECT_EQ(MP_EINVAL, mp_shared_array_get(v.a, 1, got)) << "index 1 of a Value";
            EXPECT_EQ(MP_EINVAL, mp_shared_array_set(v.a, 1, other.data()));
            EXPECT_EQ(hex(other.data(), k.size), hex(obj, k.size)) << "a refused set wrote";
        }
        // No initialiser: zero.
        SA z;
        ASSERT_EQ(0, mp_shared_value_new(ctx(), k.c, nullptr, MP_LOCK_NONE, nullptr, &z.a))
            << err();
        std::vector<unsigned char> zero(k.size, 0);
        EXPECT_EQ(hex(zero.data(), k.size), hex(mp_shared_array_get_obj(z.a), k.size));
    }
    // Values live in unnamed memory: nothing of theirs is in /dev/shm.
    EXPECT_TRUE(self_dev_shm_mappings().empty()) << self_dev_shm_mappings()[0];
}

TEST_P(SharedArrayTest, ArrayEveryTypecodeAndSlices) {
    const size_t n = 7;
    for (const Code &k : codes()) {
        SCOPED_TRACE(std::string("typecode ") + k.c);
        std::vector<unsigned char> init = sample(k, n), other = sample(k, n, 1);
        for (int raw = 0; raw < 2; raw++) {
            SA v;
            if (raw)
                ASSERT_EQ(0, mp_raw_array_new(ctx(), k.c, n, init.data(), &v.a)) << err();
            else
                ASSERT_EQ(
                    0, mp_shared_array_new(ctx(), k.c, n, init.data(), MP_LOCK_NEW, nullptr, &v.a))
                    << err();
            EXPECT_EQ(k.c, mp_shared_array_typecode(v.a));
            EXPECT_EQ(n, mp_shared_array_len(v.a));
            unsigned char *obj = static_cast<unsigned char *>(mp_shared_array_get_obj(v.a));
            ASSERT_NE(nullptr, obj);
            EXPECT_EQ(hex(init.data(), n * k.size), hex(obj, n * k.size))
                << "n items of the C type, contiguous";
            unsigned char item[16];
            for (size_t i = 0; i < n; i++) {
                ASSERT_EQ(0, mp_shared_array_get(v.a, i, item)) << err();
                EXPECT_EQ(hex(init.data() + i * k.size, k.size), hex(item, k.size)) << "item " << i;
            }
            // Slices: [2, 5) from the other sample, then read back whole.
            ASSERT_EQ(0, mp_shared_array_set_slice(v.a, 2, 5, other.data() + 2 * k.size)) << err();
            std::vector<unsigned char> all(n * k.size), want = init;
            memcpy(want.data() + 2 * k.size, other.data() + 2 * k.size, 3 * k.size);
            ASSERT_EQ(0, mp_shared_array_get_slice(v.a, 0, n, all.data())) << err();
            EXPECT_EQ(hex(want.data(), want.size()), hex(all.data(), all.size()));
            std::vector<unsigned char> part(3 * k.size, 0xEE);
            ASSERT_EQ(0, mp_shared_array_get_slice(v.a, 4, 7, part.data())) << err();
            EXPECT_EQ(hex(want.data() + 4 * k.size, 3 * k.size), hex(part.data(), part.size()));
            EXPECT_EQ(0, mp_shared_array_get_slice(v.a, 3, 3, part.data())) << "an empty slice";
            EXPECT_EQ(0, mp_shared_array_set_slice(v.a, n, n, part.data()))
                << "an empty slice at the end";
            // Errors: nothing is written.
            EXPECT_EQ(MP_EINVAL, mp_shared_array_get(v.a, n, item));
            EXPECT_EQ(MP_EINVAL, mp_shared_array_set(v.a, n, item));
            EXPECT_EQ(MP_EINVAL, mp_shared_array_set(v.a, SIZE_MAX, item));
            EXPECT_EQ(MP_EINVAL, mp_shared_array_get_slice(v.a, 5, 4, all.data()))
                << "start > stop";
            EXPECT_EQ(MP_EINVAL, mp_shared_array_get_slice(v.a, 0, n + 1, all.data()))
                << "stop > len";
            EXPECT_EQ(MP_EINVAL, mp_shared_array_set_slice(v.a, 6, 2, other.data()));
            EXPECT_EQ(MP_EINVAL, mp_shared_array_set_slice(v.a, 1, n + 1, other.data()));
            EXPECT_EQ(MP_EINVAL,
                      mp_shared_array_set_slice(v.a, SIZE_MAX - 1, SIZE_MAX, other.data()))
                << "stop far past len (an overflow of stop * size must not pass the check)";
            EXPECT_EQ(MP_EINVAL, mp_shared_array_get_slice(v.a, 0, 2, nullptr)) << "NULL buffer";
            EXPECT_EQ(MP_EINVAL, mp_shared_array_set_slice(v.a, 0, 2, nullptr)) << "NULL buffer";
            EXPECT_EQ(MP_EINVAL, mp_shared_array_get(v.a, 0, nullptr));
            EXPECT_EQ(MP_EINVAL, mp_shared_array_set(v.a, 0, nullptr));
            EXPECT_EQ(hex(want.data(), want.size()), hex(obj, want.size()))
                << "a refused call wrote";
        }
        // No initialiser: n zeros.
        SA z;
        ASSERT_EQ(0, mp_raw_array_new(ctx(), k.c, n, nullptr, &z.a)) << err();
        std::vector<unsigned char> zero(n * k.size, 0);
        EXPECT_EQ(hex(zero.data(), zero.size()), hex(mp_shared_array_get_obj(z.a), zero.size()));
    }
    EXPECT_TRUE(self_dev_shm_mappings().empty()) << self_dev_shm_mappings()[0];
}

TEST_P(SharedArrayTest, BigArrayIsWholeAndZeroed) {
    // Past one page and not a multiple of it: every byte is there and zero.
    const size_t n = 300000;
    SA v;
    ASSERT_EQ(0, mp_raw_array_new(ctx(), 'd', n, nullptr, &v.a)) << err();
    double *d = static_cast<double *>(mp_shared_array_get_obj(v.a));
    ASSERT_NE(nullptr, d);
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += d[i];
    EXPECT_EQ(0.0, sum);
    d[n - 1] = 2.5;
    double last = 0;
    EXPECT_EQ(0, mp_shared_array_get_double(v.a, n - 1, &last)) << err();
    EXPECT_EQ(2.5, last);
}

TEST_P(SharedArrayTest, IntAccessorsCheckTheRange) {
    for (const Code &k : codes()) {
        if (k.is_float || k.c == 'c') continue;
        SCOPED_TRACE(std::string("typecode ") + k.c);
        SA v;
        ASSERT_EQ(0, mp_shared_array_new(ctx(), k.c, 2, nullptr, MP_LOCK_NEW, nullptr, &v.a))
            << err();
        int64_t got = 12345;
        // The smallest value.
        ASSERT_EQ(0, mp_shared_array_set_int(v.a, 1, k.lo)) << err();
        ASSERT_EQ(0, mp_shared_array_get_int(v.a, 1, &got)) << err();
        EXPECT_EQ(k.lo, got);
        if (k.lo > INT64_MIN) {
            EXPECT_EQ(MP_EINVAL, mp_shared_array_set_int(v.a, 1, k.lo - 1))
                << "below the type's range";
            EXPECT_EQ(0, mp_shared_array_get_int(v.a, 1, &got));
            EXPECT_EQ(k.lo, got) << "a refused set changed the item";
        }
        // The largest value that int64 can carry.
        int64_t top = k.hi > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)k.hi;
        ASSERT_EQ(0, mp_shared_array_set_int(v.a, 0, top)) << err();
        ASSERT_EQ(0, mp_shared_array_get_int(v.a, 0, &got)) << err();
        EXPECT_EQ(top, got);
        if (k.hi < (uint64_t)INT64_MAX) {
            EXPECT_EQ(MP_EINVAL, mp_shared_array_set_int(v.a, 0, (int64_t)k.hi + 1))
                << "above the type's range";
            EXPECT_EQ(MP_EINVAL, mp_shared_array_set_int(v.a, 0, INT64_MAX));
            EXPECT_EQ(0, mp_shared_array_get_int(v.a, 0, &got));
            EXPECT_EQ(top, got) << "a refused set changed the item";
        }
        EXPECT_EQ(MP_EINVAL, mp_shared_array_get_int(v.a, 2, &got)) << "index == len";
        EXPECT_EQ(MP_EINVAL, mp_shared_array_set_int(v.a, 2, 0)) << "index == len";
        EXPECT_EQ(MP_EINVAL, mp_shared_array_get_int(v.a, 0, nullptr));
    }
    // The examples of the brief, spelled out.
    SA b;
    ASSERT_EQ(0, mp_shared_value_new(ctx(), 'b', nullptr, MP_LOCK_NEW, nullptr, &b.a)) << err();
    EXPECT_EQ(0, mp_shared_array_set_int(b.a, 0, 127));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_set_int(b.a, 0, 128));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_set_int(b.a, 0, -129));
    SA ub;
    ASSERT_EQ(0, mp_raw_value_new(ctx(), 'B', nullptr, &ub.a)) << err();
    EXPECT_EQ(0, mp_shared_array_set_int(ub.a, 0, 255));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_set_int(ub.a, 0, 256));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_set_int(ub.a, 0, -1));
    // An unsigned 64-bit item above INT64_MAX does not fit the int view.
    SA q;
    unsigned long long big = ULLONG_MAX;
    ASSERT_EQ(0, mp_raw_value_new(ctx(), 'Q', &big, &q.a)) << err();
    int64_t got = 7;
    EXPECT_EQ(MP_EINVAL, mp_shared_array_get_int(q.a, 0, &got));
    unsigned long long back = 0;
    EXPECT_EQ(0, mp_shared_array_get(q.a, 0, &back));
    EXPECT_EQ(ULLONG_MAX, back) << "the raw accessor carries the whole range";
    // 'c': a char item through the int view.
    SA c;
    char init = 'A';
    ASSERT_EQ(0, mp_raw_value_new(ctx(), 'c', &init, &c.a)) << err();
    EXPECT_EQ(0, mp_shared_array_get_int(c.a, 0, &got)) << err();
    EXPECT_EQ('A', got);
    EXPECT_EQ(0, mp_shared_array_set_int(c.a, 0, 'z'));
    EXPECT_EQ('z', *static_cast<char *>(mp_shared_array_get_obj(c.a)));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_set_int(c.a, 0, 300)) << "300 is no char";
}

TEST_P(SharedArrayTest, DoubleAccessors) {
    SA d, f;
    ASSERT_EQ(0, mp_shared_array_new(ctx(), 'd', 3, nullptr, MP_LOCK_NEW, nullptr, &d.a)) << err();
    ASSERT_EQ(0, mp_raw_array_new(ctx(), 'f', 3, nullptr, &f.a)) << err();
    double got = 0;
    EXPECT_EQ(0, mp_shared_array_set_double(d.a, 2, 0.1)) << err();
    EXPECT_EQ(0, mp_shared_array_get_double(d.a, 2, &got)) << err();
    EXPECT_EQ(0.1, got);
    EXPECT_EQ(0.1, static_cast<double *>(mp_shared_array_get_obj(d.a))[2]);
    EXPECT_EQ(0, mp_shared_array_set_double(d.a, 0, -DBL_MAX));
    EXPECT_EQ(0, mp_shared_array_get_double(d.a, 0, &got));
    EXPECT_EQ(-DBL_MAX, got);
    EXPECT_EQ(0, mp_shared_array_set_double(f.a, 1, 1.5)) << err();
    EXPECT_EQ(0, mp_shared_array_get_double(f.a, 1, &got)) << err();
    EXPECT_EQ(1.5, got);
    EXPECT_EQ(1.5f, static_cast<float *>(mp_shared_array_get_obj(f.a))[1]) << "stored as a C float";
    EXPECT_EQ(0, mp_shared_array_set_double(f.a, 0, 0.1));
    EXPECT_EQ(0, mp_shared_array_get_double(f.a, 0, &got));
    EXPECT_EQ((double)0.1f, got) << "a float item rounds to float";
    EXPECT_EQ(MP_EINVAL, mp_shared_array_get_double(d.a, 3, &got));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_set_double(f.a, 3, 1.0));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_get_double(d.a, 0, nullptr));
}

TEST_P(SharedArrayTest, WrongTypecodeOrSize) {
    for (char bad : {'x', 'u', 'C', '\0', '?'}) {
        SCOPED_TRACE("code " + std::to_string((int)bad));
        mp_shared_array *a = nullptr;
        EXPECT_EQ(MP_EINVAL, mp_shared_value_new(ctx(), bad, nullptr, MP_LOCK_NEW, nullptr, &a));
        EXPECT_EQ(MP_EINVAL, mp_raw_value_new(ctx(), bad, nullptr, &a));
        EXPECT_EQ(MP_EINVAL,
                  mp_shared_array_new(ctx(), bad, 4, nullptr, MP_LOCK_NONE, nullptr, &a));
        EXPECT_EQ(MP_EINVAL, mp_raw_array_new(ctx(), bad, 4, nullptr, &a));
        EXPECT_EQ(nullptr, a) << "a failed call stored a pointer";
    }
    // n * item size overflows size_t: a clear error, not a tiny allocation.
    mp_shared_array *a = nullptr;
    EXPECT_EQ(MP_EINVAL, mp_raw_array_new(ctx(), 'q', SIZE_MAX / 4, nullptr, &a));
    EXPECT_EQ(nullptr, a);
    EXPECT_EQ(MP_EINVAL,
              mp_shared_array_new(ctx(), 'd', SIZE_MAX, nullptr, MP_LOCK_NEW, nullptr, &a));
    EXPECT_EQ(nullptr, a);
    // An empty array is Python's Array('i', 0): allowed or refused, but never a crash.
    int rc = mp_raw_array_new(ctx(), 'i', 0, nullptr, &a);
    EXPECT_TRUE(rc == 0 || rc == MP_EINVAL) << mp_err_name(rc);
    if (rc == 0) {
        EXPECT_EQ(0u, mp_shared_array_len(a));
        int x = 0;
        EXPECT_EQ(MP_EINVAL, mp_shared_array_get(a, 0, &x));
        mp_shared_array_free(a);
    }
}

TEST_P(SharedArrayTest, LockModes) {
    int init = 5;
    {
        SA v;
        ASSERT_EQ(0, mp_shared_value_new(ctx(), 'i', &init, MP_LOCK_NEW, nullptr, &v.a)) << err();
        mp_lock *l = mp_shared_array_get_lock(v.a);
        ASSERT_NE(nullptr, l) << "lock=True gives a lock";
        EXPECT_TRUE(mp_lock_is_recursive(l)) << "lock=True is an RLock, as in Python";
        // The accessors work while the caller holds the RLock (re-entrant).
        ASSERT_EQ(0, mp_lock_acquire(l, kWait));
        EXPECT_EQ(0, mp_shared_array_set_int(v.a, 0, 6));
        int64_t got = 0;
        EXPECT_EQ(0, mp_shared_array_get_int(v.a, 0, &got));
        EXPECT_EQ(6, got);
        EXPECT_EQ(0, mp_lock_release(l));
        EXPECT_EQ(MP_ESTATE, mp_lock_release(l)) << "the accessors left a level held";
    }
    {
        SA v, w;
        ASSERT_EQ(0, mp_shared_value_new(ctx(), 'i', &init, MP_LOCK_NONE, nullptr, &v.a)) << err();
        EXPECT_EQ(nullptr, mp_shared_array_get_lock(v.a)) << "lock=False is raw";
        ASSERT_EQ(0, mp_shared_array_new(ctx(), 'i', 3, nullptr, MP_LOCK_NONE, nullptr, &w.a))
            << err();
        EXPECT_EQ(nullptr, mp_shared_array_get_lock(w.a));
    }
    {
        SA rv, ra;
        ASSERT_EQ(0, mp_raw_value_new(ctx(), 'i', &init, &rv.a)) << err();
        ASSERT_EQ(0, mp_raw_array_new(ctx(), 'i', 3, nullptr, &ra.a)) << err();
        EXPECT_EQ(nullptr, mp_shared_array_get_lock(rv.a)) << "RawValue has no lock";
        EXPECT_EQ(nullptr, mp_shared_array_get_lock(ra.a)) << "RawArray has no lock";
    }
    for (int recursive = 0; recursive < 2; recursive++) {
        SCOPED_TRACE(recursive ? "given RLock" : "given Lock");
        mp_lock *given = nullptr;
        ASSERT_EQ(0, recursive ? mp_rlock_new(ctx(), &given) : mp_lock_new(ctx(), &given)) << err();
        SA v, a;
        ASSERT_EQ(0, mp_shared_value_new(ctx(), 'd', nullptr, MP_LOCK_GIVEN, given, &v.a)) << err();
        ASSERT_EQ(0, mp_shared_array_new(ctx(), 'd', 4, nullptr, MP_LOCK_GIVEN, given, &a.a))
            << err();
        EXPECT_EQ(given, mp_shared_array_get_lock(v.a)) << "get_lock returns the given lock";
        EXPECT_EQ(given, mp_shared_array_get_lock(a.a));
        // Held by us: a plain Lock must not be taken again by a thread of this process
        // (the accessors take it: another thread blocks until we release).
        ASSERT_EQ(0, mp_lock_acquire(given, kWait));
        std::atomic<int> rc{1};
        std::thread t([&] { rc = mp_shared_array_set_double(v.a, 0, 3.5); });
        sleep_for(0.1);
        EXPECT_EQ(0.0, *static_cast<double *>(mp_shared_array_get_obj(v.a)))
            << "set wrote without the lock";
        EXPECT_EQ(0, mp_lock_release(given));
        t.join();
        EXPECT_EQ(0, rc.load());
        EXPECT_EQ(3.5, *static_cast<double *>(mp_shared_array_get_obj(v.a)));
        // The object keeps the given lock alive: ours may go first.
        mp_lock_free(given);
        mp_lock *l = mp_shared_array_get_lock(a.a);
        ASSERT_NE(nullptr, l);
        EXPECT_EQ(0, mp_lock_acquire(l, kWait)) << "the given lock died with our reference";
        EXPECT_EQ(0, mp_lock_release(l));
        EXPECT_EQ(0, mp_shared_array_set_double(a.a, 3, 1.0));
    }
    // Wrong lock arguments.
    mp_shared_array *a = nullptr;
    EXPECT_EQ(MP_EINVAL, mp_shared_value_new(ctx(), 'i', nullptr, MP_LOCK_GIVEN, nullptr, &a))
        << "MP_LOCK_GIVEN without a lock";
    EXPECT_EQ(MP_EINVAL, mp_shared_array_new(ctx(), 'i', 2, nullptr, MP_LOCK_GIVEN, nullptr, &a));
    EXPECT_EQ(MP_EINVAL, mp_shared_value_new(ctx(), 'i', nullptr, (mp_lock_mode)7, nullptr, &a))
        << "an unknown lock mode";
    EXPECT_EQ(nullptr, a);
}

TEST_P(SharedArrayTest, CopyIsIndependentAndRaw) {
    const int init[5] = {1, 2, 3, 4, 13};
    SA orig, cp;
    ASSERT_EQ(0, mp_shared_array_new(ctx(), 'i', 5, init, MP_LOCK_NEW, nullptr, &orig.a)) << err();
    ASSERT_EQ(0, mp_shared_array_copy(orig.a, &cp.a)) << err();
    EXPECT_EQ('i', mp_shared_array_typecode(cp.a));
    EXPECT_EQ(5u, mp_shared_array_len(cp.a));
    EXPECT_EQ(nullptr, mp_shared_array_get_lock(cp.a)) << "copy() gives a raw object";
    EXPECT_NE(mp_shared_array_get_obj(orig.a), mp_shared_array_get_obj(cp.a));
    EXPECT_EQ(hex(init, sizeof init), hex(mp_shared_array_get_obj(cp.a), sizeof init));
    // Writes to one do not show in the other.
    EXPECT_EQ(0, mp_shared_array_set_int(orig.a, 0, 999));
    EXPECT_EQ(0, mp_shared_array_set_int(cp.a, 4, -999));
    int64_t x = 0;
    EXPECT_EQ(0, mp_shared_array_get_int(cp.a, 0, &x));
    EXPECT_EQ(1, x) << "the copy shares memory with the original";
    EXPECT_EQ(0, mp_shared_array_get_int(orig.a, 4, &x));
    EXPECT_EQ(13, x) << "the original shares memory with the copy";
    // The copy outlives the original.
    mp_shared_array_free(orig.a);
    orig.a = nullptr;
    EXPECT_EQ(0, mp_shared_array_get_int(cp.a, 4, &x));
    EXPECT_EQ(-999, x);
    mp_shared_array *bad = nullptr;
    EXPECT_EQ(MP_EINVAL, mp_shared_array_copy(nullptr, &bad));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_copy(cp.a, nullptr));
}

TEST_P(SharedArrayTest, SynchronizedSharesTheMemory) {
    SA raw, s1, s2;
    ASSERT_EQ(0, mp_raw_array_new(ctx(), 'q', 4, nullptr, &raw.a)) << err();
    ASSERT_EQ(0, mp_shared_array_synchronized(raw.a, nullptr, &s1.a)) << err();
    mp_lock *l1 = mp_shared_array_get_lock(s1.a);
    ASSERT_NE(nullptr, l1) << "synchronized(obj) adds a new lock";
    EXPECT_TRUE(mp_lock_is_recursive(l1)) << "the default lock is an RLock";
    EXPECT_EQ('q', mp_shared_array_typecode(s1.a));
    EXPECT_EQ(4u, mp_shared_array_len(s1.a));
    EXPECT_EQ(nullptr, mp_shared_array_get_lock(raw.a)) << "the raw object stays raw";
    EXPECT_EQ(0, mp_shared_array_set_int(s1.a, 1, 41));
    int64_t x = 0;
    EXPECT_EQ(0, mp_shared_array_get_int(raw.a, 1, &x));
    EXPECT_EQ(41, x) << "synchronized() copied instead of sharing";
    Lock given;
    ASSERT_EQ(0, mp_lock_new(ctx(), &given.l)) << err();
    ASSERT_EQ(0, mp_shared_array_synchronized(raw.a, given.l, &s2.a)) << err();
    EXPECT_EQ(given.l, mp_shared_array_get_lock(s2.a));
    EXPECT_EQ(0, mp_shared_array_set_int(raw.a, 3, -7));
    EXPECT_EQ(0, mp_shared_array_get_int(s2.a, 3, &x));
    EXPECT_EQ(-7, x);
    // The synchronized objects outlive the raw one.
    mp_shared_array_free(raw.a);
    raw.a = nullptr;
    EXPECT_EQ(0, mp_shared_array_get_int(s2.a, 1, &x));
    EXPECT_EQ(41, x);
    mp_shared_array *bad = nullptr;
    EXPECT_EQ(MP_EINVAL, mp_shared_array_synchronized(nullptr, nullptr, &bad));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_synchronized(s1.a, nullptr, nullptr));
}

TEST_P(SharedArrayTest, NullArguments) {
    mp_shared_array *a = nullptr;
    EXPECT_EQ(MP_EINVAL, mp_shared_value_new(ctx(), 'i', nullptr, MP_LOCK_NEW, nullptr, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_raw_value_new(ctx(), 'i', nullptr, nullptr));
    EXPECT_EQ(MP_EINVAL,
              mp_shared_array_new(ctx(), 'i', 2, nullptr, MP_LOCK_NEW, nullptr, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_raw_array_new(ctx(), 'i', 2, nullptr, nullptr));
    int x = 0;
    int64_t i = 0;
    double d = 0;
    EXPECT_EQ(MP_EINVAL, mp_shared_array_get(nullptr, 0, &x));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_set(nullptr, 0, &x));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_get_slice(nullptr, 0, 0, &x));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_set_slice(nullptr, 0, 0, &x));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_get_int(nullptr, 0, &i));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_set_int(nullptr, 0, 1));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_get_double(nullptr, 0, &d));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_set_double(nullptr, 0, 1));
    EXPECT_EQ(0, mp_shared_array_typecode(nullptr));
    EXPECT_EQ(0u, mp_shared_array_len(nullptr));
    EXPECT_EQ(nullptr, mp_shared_array_get_lock(nullptr));
    EXPECT_EQ(nullptr, mp_shared_array_get_obj(nullptr));
    mp_shared_array_free(nullptr);
    Args args;
    EXPECT_EQ(MP_EINVAL, mp_args_add_shared_array(args.get(), nullptr));
    EXPECT_EQ(MP_EINVAL, mp_args_add_shared_array(nullptr, nullptr));
    args.i(3);
    EXPECT_EQ(nullptr, mp_args_shared_array(args.get(), 0)) << "an int is no shared array";
    EXPECT_EQ(nullptr, mp_args_shared_array(args.get(), 5)) << "past the end";
    EXPECT_EQ(nullptr, mp_args_shared_array(nullptr, 0));
    EXPECT_EQ(nullptr, a);
}

TEST_P(SharedArrayTest, ChildrenShareACounterUnderTheNewLock) {
    SA v;
    ASSERT_EQ(0, mp_shared_value_new(ctx(), 'q', nullptr, MP_LOCK_NEW, nullptr, &v.a)) << err();
    children_increment(v.a, false);
}

TEST_P(SharedArrayTest, ChildrenShareACounterUnderAGivenLock) {
    Lock l;
    ASSERT_EQ(0, mp_lock_new(ctx(), &l.l)) << err();
    SA v;
    ASSERT_EQ(0, mp_shared_value_new(ctx(), 'q', nullptr, MP_LOCK_GIVEN, l.l, &v.a)) << err();
    children_increment(v.a, true);
}

TEST_P(SharedArrayTest, SynchronizedRawArrayInChildren) {
    SA raw, s;
    ASSERT_EQ(0, mp_raw_value_new(ctx(), 'q', nullptr, &raw.a)) << err();
    ASSERT_EQ(0, mp_shared_array_synchronized(raw.a, nullptr, &s.a)) << err();
    children_increment(s.a, false);
    int64_t total = 0;
    EXPECT_EQ(0, mp_shared_array_get_int(raw.a, 0, &total));
    EXPECT_EQ(4000, total) << "the raw object does not see what the synchronized one got";
}

TEST_P(SharedArrayTest, ChildWritesASliceTheParentReads) {
    SA a;
    ASSERT_EQ(0, mp_raw_array_new(ctx(), 'i', 10, nullptr, &a.a)) << err();
    ASSERT_EQ(0, mp_shared_array_set_int(a.a, 0, 77));
    Args args;
    EXPECT_EQ(0, mp_args_add_shared_array(args.get(), a.a)) << err();
    args.i(3).i(7);
    mp_process *p = start(tgt_write_slice, args.get());
    ASSERT_NE(nullptr, p);
    ASSERT_EQ(0, join_code(p)) << "1: the child did not see the parent's 77; 90/91: its "
                                  "object lost the typecode, length or rawness";
    int got[10];
    ASSERT_EQ(0, mp_shared_array_get_slice(a.a, 0, 10, got)) << err();
    for (int j = 0; j < 10; j++) {
        int want = j == 0 ? 77 : (j >= 3 && j < 7) ? 1000 + j : 0;
        EXPECT_EQ(want, got[j]) << "item " << j;
    }
    // The args (and the child's object) are gone; the memory lives on with ours.
    args.reset();
    EXPECT_EQ(0, mp_shared_array_set_int(a.a, 9, 9));
}

TEST_P(SharedArrayTest, GrandchildrenShareTheValueTheirParentReceived) {
    // A child passes the Value it received on to its own child: all four processes
    // (threads on dummy) share one counter and one lock.
    SA v;
    ASSERT_EQ(0, mp_shared_value_new(ctx(), 'q', nullptr, MP_LOCK_NEW, nullptr, &v.a)) << err();
    std::vector<mp_process *> ps;
    for (int c = 0; c < 2; c++) {
        Args a;
        a.s(backend().c_str());
        EXPECT_EQ(0, mp_args_add_shared_array(a.get(), v.a)) << err();
        a.i(500);
        mp_process *p = start(tgt_relay_increment, a.get());
        ASSERT_NE(nullptr, p);
        ps.push_back(p);
    }
    for (mp_process *p : ps)
        EXPECT_EQ(0, join_code(p)) << "50+: the grandchild failed; 80-84: a step of the child";
    int64_t total = -1;
    EXPECT_EQ(0, mp_shared_array_get_int(v.a, 0, &total)) << err();
    EXPECT_EQ(2000, total) << "the grandchildren do not share the counter (or the lock)";
}

TEST_P(SharedArrayTest, ConversionsAcrossKindsAndLimits) {
    // 'c' through the int view is its byte value 0..255.
    SA c;
    ASSERT_EQ(0, mp_raw_value_new(ctx(), 'c', nullptr, &c.a)) << err();
    int64_t i = 0;
    EXPECT_EQ(0, mp_shared_array_set_int(c.a, 0, 255)) << err();
    EXPECT_EQ(0, mp_shared_array_get_int(c.a, 0, &i));
    EXPECT_EQ(255, i) << "'c' reads as an unsigned byte";
    EXPECT_EQ(MP_EINVAL, mp_shared_array_set_int(c.a, 0, -1));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_set_int(c.a, 0, 256));
    // The int calls on a float code, the double calls on an integer code: MP_EINVAL,
    // except set_int on 'f' / 'd', which converts (Python: c_double.value = 7).
    SA d, f, n;
    ASSERT_EQ(0, mp_raw_value_new(ctx(), 'd', nullptr, &d.a)) << err();
    ASSERT_EQ(0, mp_raw_value_new(ctx(), 'f', nullptr, &f.a)) << err();
    ASSERT_EQ(0, mp_raw_value_new(ctx(), 'i', nullptr, &n.a)) << err();
    double x = 0;
    EXPECT_EQ(0, mp_shared_array_set_int(d.a, 0, 7)) << err();
    EXPECT_EQ(0, mp_shared_array_get_double(d.a, 0, &x));
    EXPECT_EQ(7.0, x);
    EXPECT_EQ(0, mp_shared_array_set_int(f.a, 0, -3)) << err();
    EXPECT_EQ(-3.0f, *static_cast<float *>(mp_shared_array_get_obj(f.a)));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_get_int(d.a, 0, &i));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_get_double(n.a, 0, &x));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_set_double(n.a, 0, 1.0));
    EXPECT_EQ(0, *static_cast<int *>(mp_shared_array_get_obj(n.a))) << "a refused set wrote";
    // A finite double beyond float's range does not fit 'f' (Python's struct 'f').
    EXPECT_EQ(MP_EINVAL, mp_shared_array_set_double(f.a, 0, 1e300));
    EXPECT_EQ(-3.0f, *static_cast<float *>(mp_shared_array_get_obj(f.a)));
    // At most 1 GiB of items.
    mp_shared_array *big = nullptr;
    EXPECT_EQ(MP_EINVAL, mp_raw_array_new(ctx(), 'B', ((size_t)1 << 30) + 1, nullptr, &big));
    EXPECT_EQ(MP_EINVAL, mp_shared_array_new(ctx(), 'd', ((size_t)1 << 27) + 1, nullptr,
                                             MP_LOCK_NEW, nullptr, &big));
    EXPECT_EQ(nullptr, big);
}

TEST_P(SharedArrayTest, AHeldPlainLockIsAnErrorNotADeadlock) {
    // Python would deadlock; the library says MP_ESTATE for every accessor.
    Lock l;
    ASSERT_EQ(0, mp_lock_new(ctx(), &l.l)) << err();
    SA v;
    ASSERT_EQ(0, mp_shared_array_new(ctx(), 'i', 4, nullptr, MP_LOCK_GIVEN, l.l, &v.a)) << err();
    ASSERT_EQ(0, mp_lock_acquire(l.l, kWait));
    int buf[4] = {1, 2, 3, 4};
    int64_t i = 0;
    EXPECT_EQ(MP_ESTATE, mp_shared_array_get(v.a, 0, buf));
    EXPECT_EQ(MP_ESTATE, mp_shared_array_set(v.a, 0, buf));
    EXPECT_EQ(MP_ESTATE, mp_shared_array_get_slice(v.a, 0, 4, buf));
    EXPECT_EQ(MP_ESTATE, mp_shared_array_set_slice(v.a, 0, 4, buf));
    EXPECT_EQ(MP_ESTATE, mp_shared_array_get_int(v.a, 0, &i));
    EXPECT_EQ(MP_ESTATE, mp_shared_array_set_int(v.a, 0, 5));
    mp_shared_array *cp = nullptr;
    EXPECT_EQ(MP_ESTATE, mp_shared_array_copy(v.a, &cp)) << "copy reads under the lock too";
    mp_shared_array_free(cp);
    EXPECT_EQ(0, mp_lock_release(l.l)) << "an accessor released the caller's lock";
    EXPECT_EQ(0, mp_shared_array_set_int(v.a, 0, 5)) << err();
    const int zero[4] = {5, 0, 0, 0};
    EXPECT_EQ(hex(zero, sizeof zero), hex(mp_shared_array_get_obj(v.a), sizeof zero))
        << "a refused call wrote";
}
