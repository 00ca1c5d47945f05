// Shared arenas (issue 14): small objects are slots of shared arenas, so a program
// under a low descriptor limit makes a million Locks and Values; objects from many
// arenas work in children on every start method; freed slots are used again; running
// out of memory or descriptors is a clear error.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/arena_hook.h"
#include "fixture.h"

#ifndef _WIN32
#include <sys/resource.h>
#endif

using namespace mpt;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#else
constexpr bool kAsan = false;
#endif

#if defined(__SANITIZE_THREAD__)
constexpr bool kTsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool kTsan = true;
#else
constexpr bool kTsan = false;
#endif
#else
constexpr bool kTsan = false;
#endif

constexpr int kBad = 90;  // a child got what it did not expect
constexpr int kFail = 91; // a call failed in a child

void say(const char *what, int rc) {
    std::fprintf(stderr, "child: %s: %s (%s)\n", what, mp_err_name(rc), mp_last_error_message());
}

// Arenas of 64 KiB (about a thousand Locks each), so a test has many of them cheaply.
void small_arenas() { mp__arena_set_sizes((size_t)64 << 10, (size_t)64 << 10); }
void default_arenas() { mp__arena_set_sizes((size_t)256 << 10, (size_t)64 << 20); }

#ifndef _WIN32
bool lower_fd_limit(rlim_t n) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return false;
    rl.rlim_cur = n;
    return setrlimit(RLIMIT_NOFILE, &rl) == 0;
}
#endif

// [0] count: makes count Locks, then count Values (each with its own RLock), uses a
// few, frees them; on posix under a descriptor limit of 256.
int tgt_million(mp_args *a) {
    size_t n = (size_t)mp_args_int(a, 0);
#ifndef _WIN32
    if (!lower_fd_limit(256)) return kFail;
#endif
    std::vector<mp_lock *> locks(n, nullptr);
    for (size_t i = 0; i < n; i++) {
        int rc = mp_lock_new(nullptr, &locks[i]);
        if (rc) {
            std::fprintf(stderr, "child: lock %zu: ", i);
            say("mp_lock_new", rc);
            return kFail;
        }
    }
    for (size_t i : {(size_t)0, n / 2, n - 1}) {
        if (mp_lock_acquire(locks[i], 0) != 0 || !mp_lock_is_mine(locks[i])) return kBad;
        if (mp_lock_release(locks[i]) != 0) return kBad;
    }
    for (mp_lock *l : locks) mp_lock_free(l);
    locks.clear();
    locks.shrink_to_fit();
    std::vector<mp_shared_array *> values(n, nullptr);
    for (size_t i = 0; i < n; i++) {
        int64_t v = (int64_t)i;
        int rc = mp_shared_value_new(nullptr, 'q', &v, MP_LOCK_NEW, nullptr, &values[i]);
        if (rc) {
            std::fprintf(stderr, "child: value %zu: ", i);
            say("mp_shared_value_new", rc);
            return kFail;
        }
    }
    for (size_t i : {(size_t)0, n / 2, n - 1}) {
        int64_t v = -1;
        if (mp_shared_array_get_int(values[i], 0, &v) != 0 || v != (int64_t)i) return kBad;
        if (mp_shared_array_set_int(values[i], 0, v + 1) != 0) return kBad;
    }
    for (mp_shared_array *v : values) mp_shared_array_free(v);
    return 0;
}

// [0] nl, nl Locks, [nl+1] nv, nv Values, then a Lock the parent holds, a Semaphore,
// an Event, a Condition: each Lock taken and released, each Value raised by 1000 + its
// index, the held Lock not taken, the Semaphore released, the Event set, the
// Condition's lock taken and released.
int tgt_nothing(mp_args *) { return 0; }

int tgt_use_many(mp_args *a) {
    size_t k = 0;
    int64_t nl = mp_args_int(a, k++);
    for (int64_t i = 0; i < nl; i++) {
        mp_lock *l = mp_args_lock(a, k++);
        if (!l) return kBad;
        int rc = mp_lock_acquire(l, kWait);
        if (rc) {
            say("mp_lock_acquire", rc);
            return kFail;
        }
        if (mp_lock_release(l) != 0) return kFail;
    }
    int64_t nv = mp_args_int(a, k++);
    for (int64_t i = 0; i < nv; i++) {
        mp_shared_array *v = mp_args_shared_array(a, k++);
        int64_t x = 0;
        if (!v || mp_shared_array_get_int(v, 0, &x) != 0) return kBad;
        if (mp_shared_array_set_int(v, 0, x + 1000 + i) != 0) return kFail;
    }
    mp_lock *held = mp_args_lock(a, k++);
    mp_semaphore *s = mp_args_semaphore(a, k++);
    mp_event *e = mp_args_event(a, k++);
    mp_condition *c = mp_args_condition(a, k++);
    if (!held || !s || !e || !c) return kBad;
    if (mp_lock_acquire(held, 0) != MP_ETIMEDOUT) return kBad;
    if (mp_semaphore_release(s) != 0 || mp_event_set(e) != 0) return kFail;
    if (mp_condition_acquire(c, kWait) != 0 || mp_condition_release(c) != 0) return kFail;
#ifdef __linux__
    // One descriptor per arena, not one per object (fork inherits all of the parent's).
    if (mp_args_int(a, k) && open_handles() > 100) {
        std::fprintf(stderr, "child: %ld descriptors open\n", open_handles());
        return kBad;
    }
#endif
    return 0;
}

#ifndef _WIN32
// Bytes of address space this process has mapped.
uint64_t vm_size() {
    std::string s = read_file("/proc/self/statm");
    return std::strtoull(s.c_str(), nullptr, 10) * 4096u;
}

// Makes Locks under an address-space limit 48 MiB above what is mapped now, until one
// fails: 0 when that is MP_ENOMEM with a message about memory.
int tgt_until_no_memory(mp_args *) {
    std::vector<mp_lock *> locks;
    locks.reserve((size_t)8 << 20);
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0) return kFail;
    rl.rlim_cur = vm_size() + ((uint64_t)48 << 20);
    if (setrlimit(RLIMIT_AS, &rl) != 0) return kFail;
    int rc = 0;
    while (locks.size() < locks.capacity()) {
        mp_lock *l = nullptr;
        if ((rc = mp_lock_new(nullptr, &l)) != 0) break;
        locks.push_back(l);
    }
    std::string msg = mp_last_error_message();
    for (mp_lock *l : locks) mp_lock_free(l);
    if (rc != MP_ENOMEM || msg.find("memory") == std::string::npos || locks.size() < 1000) {
        std::fprintf(stderr, "child: after %zu locks: %s (%s)\n", locks.size(), mp_err_name(rc),
                     msg.c_str());
        return kBad;
    }
    return 0;
}

// Makes Locks in 64 KiB arenas under a descriptor limit a few above what is open, until
// one fails: 0 when that is MP_ELIMIT with a message about descriptors.
int tgt_until_no_fds(mp_args *) {
    small_arenas();
    std::vector<mp_lock *> locks;
    locks.reserve((size_t)1 << 20);
    if (!lower_fd_limit((rlim_t)open_handles() + 8)) return kFail;
    int rc = 0;
    while (locks.size() < locks.capacity()) {
        mp_lock *l = nullptr;
        if ((rc = mp_lock_new(nullptr, &l)) != 0) break;
        locks.push_back(l);
    }
    std::string msg = mp_last_error_message();
    for (mp_lock *l : locks) mp_lock_free(l);
    if (rc != MP_ELIMIT || msg.find("descriptors") == std::string::npos || locks.size() < 1000) {
        std::fprintf(stderr, "child: after %zu locks: %s (%s)\n", locks.size(), mp_err_name(rc),
                     msg.c_str());
        return kBad;
    }
    return 0;
}
#endif

// Starts fn with args on ctx, joins and frees it: its exit code (INT32_MIN on error).
int run_in(mp_context *ctx, mp_target_fn fn, const mp_args *args) {
    mp_process *p = nullptr;
    int code = INT32_MIN;
    mp_process_opts o = {};
    o.target = fn;
    o.args = args;
    if (!ctx || mp_process_new(ctx, &o, &p) != 0) return code;
    if (mp_process_start(p) == 0 && mp_process_join(p, kTestLimit) == 0)
        mp_process_exitcode(p, &code);
    if (mp_process_is_alive(p)) mp_process_kill(p);
    mp_process_join(p, kWait);
    mp_process_free(p);
    return code;
}

int run_on(const char *name, mp_target_fn fn, const mp_args *args) {
    return run_in(mp_get_context(name), fn, args);
}

const char *child_backend() { return kWindows ? "win32" : "fork"; }

} // namespace

// A million Locks, then a million Values (each with its RLock), in a child whose
// descriptor limit is 256. Smaller counts under ASan (slow) and on Windows (no such
// limit; Wine is slow), said in the output.
TEST(ArenaTest, MillionLocksAndValuesUnderLowDescriptorLimit) {
    int64_t n = kAsan ? 100000 : kWindows ? 200000 : 1000000;
    std::printf("[          ] %lld Locks and %lld Values%s\n", (long long)n, (long long)n,
                kAsan      ? " (fewer under ASan)"
                : kWindows ? " (fewer on Windows)"
                           : "");
    Args a;
    a.i(n);
    EXPECT_EQ(0, run_on(child_backend(), tgt_million, a.get()));
}

// Objects of many arenas, made before the child, work there on every start method; the
// child gets one handle per arena; once all are freed, every process included, the
// arenas go but the newest, and no descriptor or /dev/shm file is left.
class ArenaTest : public ProcessTest {};
INSTANTIATE_TEST_SUITE_P(Backends, ArenaTest, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

TEST_P(ArenaTest, ObjectsOfManyArenasInChildren) {
    small_arenas();
    { // the first arena: the allocator keeps its newest one
        mp_lock *l = nullptr;
        ASSERT_EQ(0, mp_lock_new(ctx(), &l)) << err();
        mp_lock_free(l);
    }
    { // the first start makes lazy state (the forkserver, this process's sentinel)
        ASSERT_EQ(0, run_in(ctx(), tgt_nothing, nullptr));
    }
    // Windows: handles are probed one by one under Wine (slow); the arenas are counted.
    long fds_before = kWindows ? 0 : open_handles();
    const size_t kLocks = 20000, kValues = 5000, kStep = 100;
    std::vector<mp_lock *> locks(kLocks, nullptr);
    std::vector<mp_shared_array *> values(kValues, nullptr);
    for (auto &l : locks) ASSERT_EQ(0, mp_lock_new(ctx(), &l)) << err();
    for (size_t i = 0; i < kValues; i++) {
        int64_t v = (int64_t)i;
        ASSERT_EQ(0, mp_shared_value_new(ctx(), 'q', &v, MP_LOCK_NEW, nullptr, &values[i]))
            << err();
    }
    size_t mapped = 0, own = 0;
    uint64_t live = 0;
    mp__arena_stats(&mapped, &own, &live);
    EXPECT_GE(own, 30u) << "many arenas";
    EXPECT_EQ(kLocks + 2 * kValues, live);

    mp_lock *held = nullptr;
    mp_semaphore *s = nullptr;
    mp_event *e = nullptr;
    mp_condition *c = nullptr;
    ASSERT_EQ(0, mp_lock_new(ctx(), &held));
    ASSERT_EQ(0, mp_semaphore_new(ctx(), 0, &s));
    ASSERT_EQ(0, mp_event_new(ctx(), &e));
    ASSERT_EQ(0, mp_condition_new(ctx(), nullptr, &c));
    ASSERT_EQ(0, mp_lock_acquire(held, 0));
    {
        Args a;
        a.i((int64_t)(kLocks / kStep));
        for (size_t i = 0; i < kLocks; i += kStep)
            ASSERT_EQ(0, mp_args_add_lock(a.get(), locks[i])) << err();
        a.i((int64_t)(kValues / (kStep / 4)));
        for (size_t i = 0; i < kValues; i += kStep / 4)
            ASSERT_EQ(0, mp_args_add_shared_array(a.get(), values[i])) << err();
        ASSERT_EQ(0, mp_args_add_lock(a.get(), held));
        ASSERT_EQ(0, mp_args_add_semaphore(a.get(), s));
        ASSERT_EQ(0, mp_args_add_event(a.get(), e));
        ASSERT_EQ(0, mp_args_add_condition(a.get(), c));
        a.i(backend() != "fork" && backend() != "dummy");
        EXPECT_EQ(0, run_in(ctx(), tgt_use_many, a.get()));
    }
    for (size_t i = 0, k = 0; i < kValues; i += kStep / 4, k++) {
        int64_t v = -1;
        ASSERT_EQ(0, mp_shared_array_get_int(values[i], 0, &v));
        EXPECT_EQ((int64_t)(i + 1000 + k), v) << "value " << i;
    }
    int sv = -1;
    EXPECT_EQ(0, mp_semaphore_get_value(s, &sv));
    EXPECT_EQ(1, sv);
    EXPECT_TRUE(mp_event_is_set(e));
    EXPECT_EQ(0, mp_lock_release(held));

    for (mp_lock *l : locks) mp_lock_free(l);
    for (mp_shared_array *v : values) mp_shared_array_free(v);
    mp_lock_free(held);
    mp_semaphore_free(s);
    mp_event_free(e);
    mp_condition_free(c);
    mp__arena_stats(&mapped, &own, &live);
    EXPECT_EQ(0u, live) << "the child gave its objects back";
    EXPECT_EQ(1u, own) << "only the newest arena stays";
    EXPECT_EQ(1u, mapped);
    if (!kWindows) {
        EXPECT_EQ(fds_before, open_handles()) << "no descriptor left";
    }
    EXPECT_EQ("", dev_shm_files_in_use());
    default_arenas();
}

// Freed slots are used again: no new arena while freed room fits.
TEST(ArenaTest, FreedSlotsAreUsedAgain) {
    small_arenas();
    const size_t kN = 10000;
    std::vector<mp_lock *> locks(kN, nullptr);
    // A first round, so that the arena kept (the newest) is a small one too.
    for (auto &l : locks) ASSERT_EQ(0, mp_lock_new(nullptr, &l)) << err();
    for (mp_lock *l : locks) mp_lock_free(l);
    for (auto &l : locks) ASSERT_EQ(0, mp_lock_new(nullptr, &l)) << err();
    size_t mapped = 0, own = 0, own_full = 0;
    uint64_t live = 0;
    mp__arena_stats(&mapped, &own_full, &live);
    EXPECT_GE(own_full, 8u);
    EXPECT_EQ(kN, live);
    for (size_t i = 0; i < kN; i += 2) {
        mp_lock_free(locks[i]);
        locks[i] = nullptr;
    }
    mp__arena_stats(&mapped, &own, &live);
    EXPECT_EQ(own_full, own) << "half-used arenas stay";
    EXPECT_EQ(kN / 2, live);
    for (size_t i = 0; i < kN; i += 2) ASSERT_EQ(0, mp_lock_new(nullptr, &locks[i])) << err();
    mp__arena_stats(&mapped, &own, &live);
    EXPECT_EQ(own_full, own) << "the freed slots were used again";
    EXPECT_EQ(kN, live);
    // A freed slot holds a fresh object: free, zeroed, not the old one's state.
    ASSERT_EQ(0, mp_lock_acquire(locks[1], 0));
    mp_lock_free(locks[1]);
    ASSERT_EQ(0, mp_lock_new(nullptr, &locks[1]));
    EXPECT_FALSE(mp_lock_is_locked(locks[1]));
    for (mp_lock *l : locks) mp_lock_free(l);
    mp__arena_stats(&mapped, &own, &live);
    EXPECT_EQ(0u, live);
    EXPECT_EQ(1u, own) << "empty arenas go, but the newest";
    for (auto &l : locks) ASSERT_EQ(0, mp_lock_new(nullptr, &l)) << err();
    mp__arena_stats(&mapped, &own, &live);
    EXPECT_LE(own, own_full + 1);
    for (mp_lock *l : locks) mp_lock_free(l);
    default_arenas();
}

#ifndef _WIN32
// Out of address space: MP_ENOMEM saying memory ran out, not MP_ESYS.
TEST(ArenaTest, OutOfMemoryIsClear) {
    if (kAsan) GTEST_SKIP() << "ASan reserves terabytes of address space: RLIMIT_AS cannot work";
    if (kTsan) GTEST_SKIP() << "TSan's own allocator fails first under RLIMIT_AS (it aborts)";
    EXPECT_EQ(0, run_on("fork", tgt_until_no_memory, nullptr));
}

// Out of descriptors: MP_ELIMIT saying descriptors ran out, not MP_ESYS.
TEST(ArenaTest, OutOfDescriptorsIsClear) {
    EXPECT_EQ(0, run_on("fork", tgt_until_no_fds, nullptr));
}
#endif
