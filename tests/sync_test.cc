// Synchronisation objects on every start method: Lock, RLock, Semaphore,
// BoundedSemaphore, Condition, Event, Barrier; children contending, owner death.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fixture.h"
#include "targets.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <dirent.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

using namespace mpt;

namespace {

// ---- plain shared memory for counters the tests check (Value comes later) ----

struct Counters {
    volatile int64_t plain; // incremented under a lock, without atomics
    std::atomic<int64_t> ready, woke, actions, inside, max_inside;
    std::atomic<int64_t> idx[8];
    volatile int64_t flag;
};

constexpr size_t kShmSize = 4096;

mp_os_handle shm_create() {
#ifdef _WIN32
    HANDLE h =
        CreateFileMappingW(INVALID_HANDLE_VALUE, nullptr, PAGE_READWRITE, 0, kShmSize, nullptr);
    return h ? (mp_os_handle)h : MP_INVALID_OS_HANDLE;
#else
    int fd = memfd_create("sync-test", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, kShmSize) != 0) return MP_INVALID_OS_HANDLE;
    return fd;
#endif
}

Counters *shm_map(mp_os_handle h) {
#ifdef _WIN32
    void *p = MapViewOfFile((HANDLE)h, FILE_MAP_ALL_ACCESS, 0, 0, kShmSize);
    return (Counters *)p;
#else
    void *p = mmap(nullptr, kShmSize, PROT_READ | PROT_WRITE, MAP_SHARED, (int)h, 0);
    return p == MAP_FAILED ? nullptr : (Counters *)p;
#endif
}

void shm_unmap(Counters *c) {
#ifdef _WIN32
    if (c) UnmapViewOfFile(c);
#else
    if (c) munmap(c, kShmSize);
#endif
}

struct Shared {
    mp_os_handle h = MP_INVALID_OS_HANDLE;
    Counters *c = nullptr;
    Shared() {
        h = shm_create();
        if (h != MP_INVALID_OS_HANDLE) c = shm_map(h);
    }
    ~Shared() {
        shm_unmap(c);
        if (h != MP_INVALID_OS_HANDLE) handle_close(h);
    }
};

enum { kOk = 0, kBad = 90, kFail = 1 };

// This process's open descriptors, listed ("" on Windows).
std::string open_fds() {
    std::string out;
#ifndef _WIN32
    std::set<int> fds;
    if (DIR *d = opendir("/proc/self/fd")) {
        int self = dirfd(d);
        while (struct dirent *e = readdir(d))
            if (e->d_name[0] != '.' && atoi(e->d_name) != self) fds.insert(atoi(e->d_name));
        closedir(d);
    }
    for (int fd : fds) out += std::to_string(fd) + " ";
#endif
    return out;
}

// ---- targets ----

// [0] lock, [1] shm, [2] iterations: increments plain under the lock.
int tgt_count_under_lock(mp_args *a) {
    mp_lock *l = mp_args_lock(a, 0);
    Counters *c = shm_map(mp_args_os_handle(a, 1));
    int64_t n = mp_args_int(a, 2);
    if (!l || !c) return kBad;
    int rc = kOk;
    for (int64_t i = 0; i < n && rc == kOk; i++) {
        if (mp_lock_acquire(l, kWait) != 0) {
            rc = kFail;
            break;
        }
        int64_t v = c->plain;
        if ((i & 63) == 0) std::this_thread::yield(); // widen the window a broken lock would show
        c->plain = v + 1;
        if (mp_lock_is_recursive(l)) { // a nested level must not change anything
            if (mp_lock_acquire(l, 0) != 0 || mp_lock_release(l) != 0) rc = kFail;
        }
        if (mp_lock_release(l) != 0) rc = kFail;
    }
    shm_unmap(c);
    return rc;
}

// [0] semaphore, [1] shm, [2] iterations: counts how many are inside at once.
int tgt_count_under_semaphore(mp_args *a) {
    mp_semaphore *s = mp_args_semaphore(a, 0);
    Counters *c = shm_map(mp_args_os_handle(a, 1));
    int64_t n = mp_args_int(a, 2);
    if (!s || !c) return kBad;
    int rc = kOk;
    for (int64_t i = 0; i < n; i++) {
        if (mp_semaphore_acquire(s, kWait) != 0) {
            rc = kFail;
            break;
        }
        int64_t in = ++c->inside;
        int64_t m = c->max_inside.load();
        while (in > m && !c->max_inside.compare_exchange_weak(m, in)) {}
        std::this_thread::yield();
        --c->inside;
        if (mp_semaphore_release(s) != 0) rc = kFail;
    }
    shm_unmap(c);
    return rc;
}

// [0] lock, [1] double timeout: acquire's result as 0 (acquired, then released),
// 2 (timed out), 3 (owner dead), 4 other.
int tgt_try_acquire(mp_args *a) {
    mp_lock *l = mp_args_lock(a, 0);
    if (!l) return kBad;
    int rc = mp_lock_acquire(l, mp_args_double(a, 1));
    if (rc == 0) return mp_lock_release(l) == 0 ? 0 : 4;
    return rc == MP_ETIMEDOUT ? 2 : rc == MP_EOWNERDEAD ? 3 : 4;
}

// [0] lock: releases it; 0, or 10 + the error's code negated.
int tgt_release(mp_args *a) {
    mp_lock *l = mp_args_lock(a, 0);
    if (!l) return kBad;
    int rc = mp_lock_release(l);
    return rc == 0 ? 0 : 10 - rc;
}

// [0] lock, [1] ready write end: acquires, writes 'R', sleeps until killed (cap kCap).
int tgt_hold_forever(mp_args *a) {
    mp_lock *l = mp_args_lock(a, 0);
    mp_os_handle ready = mp_args_os_handle(a, 1);
    if (!l || ready == MP_INVALID_OS_HANDLE) return kBad;
    if (mp_lock_acquire(l, kWait) != 0) return kFail;
    if (mp_lock_is_recursive(l) && mp_lock_acquire(l, 0) != 0) return kFail;
    char c = 'R';
    write_all(ready, &c, 1);
    sleep_for(kCap);
    return mpt::kTgtCapReached;
}

// [0] lock, [1] int expected: 0 when mp_lock_is_locked says expected and the lock is
// not this thread's.
int tgt_lock_locked(mp_args *a) {
    mp_lock *l = mp_args_lock(a, 0);
    if (!l) return kBad;
    if (mp_lock_is_mine(l)) return 2;
    return mp_lock_is_locked(l) == (mp_args_int(a, 1) != 0) ? 0 : kFail;
}

// [0] semaphore: releases it once.
int tgt_sem_release(mp_args *a) {
    mp_semaphore *s = mp_args_semaphore(a, 0);
    if (!s) return kBad;
    return mp_semaphore_release(s) == 0 ? 0 : kFail;
}

// [0] event, [1] double delay: sleeps, sets the event.
int tgt_event_set(mp_args *a) {
    mp_event *e = mp_args_event(a, 0);
    if (!e) return kBad;
    sleep_for(mp_args_double(a, 1));
    return mp_event_set(e) == 0 ? 0 : kFail;
}

// [0] event: waits for it (kWait).
int tgt_event_wait(mp_args *a) {
    mp_event *e = mp_args_event(a, 0);
    if (!e) return kBad;
    return mp_event_wait(e, kWait) == 0 ? 0 : kFail;
}

// [0] condition, [1] shm: ready++, waits (kWait), woke++; 0 when notified.
int tgt_cond_waiter(mp_args *a) {
    mp_condition *cv = mp_args_condition(a, 0);
    Counters *c = shm_map(mp_args_os_handle(a, 1));
    if (!cv || !c) return kBad;
    if (mp_condition_acquire(cv, kWait) != 0) return kFail;
    c->ready++;
    int rc = mp_condition_wait(cv, kWait);
    c->woke++;
    bool mine = mp_lock_is_mine(mp_condition_lock(cv));
    mp_condition_release(cv);
    shm_unmap(c);
    return rc == 0 && mine ? 0 : kFail;
}

thread_local Counters *g_counters; // for the predicate (per thread: dummy children are threads)

bool flag_is_set(void *) { return g_counters->flag != 0; }
bool flag_is_set_never(void *) { return false; }

// [0] condition, [1] shm: sets flag under the lock and notifies.
int tgt_cond_setter(mp_args *a) {
    mp_condition *cv = mp_args_condition(a, 0);
    Counters *c = shm_map(mp_args_os_handle(a, 1));
    if (!cv || !c) return kBad;
    sleep_for(0.05);
    if (mp_condition_acquire(cv, kWait) != 0) return kFail;
    c->flag = 1;
    int rc = mp_condition_notify_all(cv);
    mp_condition_release(cv);
    shm_unmap(c);
    return rc == 0 ? 0 : kFail;
}

// The action's arguments: [0] shm. Counts its runs in the shared counters (the state
// travels in the arguments: each process's action has its own copy of the handle).
int barrier_action(mp_args *a) {
    Counters *c = shm_map(mp_args_os_handle(a, 0));
    if (!c) return 1;
    c->actions++;
    shm_unmap(c);
    return 0;
}

int failing_action(mp_args *) { return 7; }

// With no arguments given, the action gets an empty list.
int empty_args_action(mp_args *a) { return a && mp_args_count(a) == 0 ? 0 : 1; }

// What the parties and the action of BarrierActionRunsWhereTheLastPartyArrived report.
struct BarrierReport {
    int32_t kind; // 1: a party, 2: the action
    int32_t id;   // the party (0, 1: children, 2: the test)
    int32_t round, idx;
    int64_t pid, tag;
};

bool put_report(mp_queue *q, const BarrierReport &r) {
    return mp_queue_put_bytes(q, &r, sizeof r, kWait) == 0;
}

// The action's arguments: [0] queue, [1] int tag, [2] lock. Takes the lock and
// reports where it runs.
int reporting_action(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    mp_lock *l = mp_args_lock(a, 2);
    if (!q || !l || mp_args_count(a) != 3) return 1;
    if (mp_lock_acquire(l, kWait) != 0 || mp_lock_release(l) != 0) return 1;
    BarrierReport r = {2, -1, -1, -1, mp_getpid(), mp_args_int(a, 1)};
    return put_report(q, r) ? 0 : 1;
}

// [0] barrier, [1] queue, [2] id, [3] rounds, [4] event: waits for the barrier each
// round and reports its index; party 1 waits for the event before round 1.
int tgt_barrier_rounds(mp_args *a) {
    mp_barrier *b = mp_args_barrier(a, 0);
    mp_queue *q = mp_args_queue(a, 1);
    int64_t id = mp_args_int(a, 2), rounds = mp_args_int(a, 3);
    mp_event *e = mp_args_event(a, 4);
    if (!b || !q || !e) return kBad;
    for (int64_t r = 0; r < rounds; r++) {
        if (id == 1 && r == 1 && mp_event_wait(e, kWait) != 0) return kFail;
        int idx = -1;
        if (mp_barrier_wait_timeout(b, kWait, &idx) != 0) return kFail;
        if (!put_report(q, {1, (int32_t)id, (int32_t)r, idx, mp_getpid(), 0})) return kFail;
    }
    return kOk;
}

// [0] barrier, [1] shm, [2] slot: waits, records the index in idx[slot].
int tgt_barrier_wait(mp_args *a) {
    mp_barrier *b = mp_args_barrier(a, 0);
    Counters *c = shm_map(mp_args_os_handle(a, 1));
    int64_t slot = mp_args_int(a, 2);
    if (!b || !c || slot < 0 || slot >= 8) return kBad;
    int idx = -1;
    int rc = mp_barrier_wait_timeout(b, kWait, &idx);
    c->idx[slot] = idx;
    shm_unmap(c);
    if (rc == MP_EBROKEN) return 2;
    return rc == 0 ? 0 : kFail;
}

// [0] barrier: waits (kWait); 2 when broken (MP_EBROKEN, index -1), 3 timed out.
int tgt_barrier_expect_broken(mp_args *a) {
    mp_barrier *b = mp_args_barrier(a, 0);
    if (!b) return kBad;
    int idx = 5;
    int rc = mp_barrier_wait_timeout(b, kWait, &idx);
    if (idx != -1) return kFail;
    return rc == MP_EBROKEN ? 2 : rc == MP_ETIMEDOUT ? 3 : kFail;
}

} // namespace

class SyncTest : public ProcessTest {
  public:
    // For the helpers shared by several tests.
    mp_process *start_public(mp_target_fn f, const mp_args *a) { return start(f, a); }
    int join_public(mp_process *p) { return join_code(p); }
    mp_context *ctx_public() const { return ctx(); }
    Pipe &pipe_public() { return pipe(); }
};

INSTANTIATE_TEST_SUITE_P(Backends, SyncTest, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

// ---- Lock ----

TEST_P(SyncTest, LockMethodsAndErrors) {
    mp_lock *l = nullptr;
    ASSERT_EQ(0, mp_lock_new(ctx(), &l)) << err();
    EXPECT_FALSE(mp_lock_is_recursive(l));
    EXPECT_FALSE(mp_lock_is_mine(l));
    EXPECT_EQ(MP_ESTATE, mp_lock_release(l)) << "release of an unheld lock";
    EXPECT_EQ(0, mp_lock_acquire(l, 0));
    EXPECT_TRUE(mp_lock_is_mine(l));
    EXPECT_EQ(MP_ETIMEDOUT, mp_lock_acquire(l, 0)) << "a Lock is not re-entrant";
    EXPECT_EQ(MP_ETIMEDOUT, mp_lock_acquire(l, 0.05)) << "a timeout that expires";
    EXPECT_EQ(0, mp_lock_release(l));
    EXPECT_EQ(MP_ESTATE, mp_lock_release(l));
    EXPECT_EQ(0, mp_lock_acquire(l, MP_FOREVER));
    // Another thread may release a Lock (Python's semantics).
    int rc = 1;
    std::thread t([&] { rc = mp_lock_release(l); });
    t.join();
    EXPECT_EQ(0, rc);
    EXPECT_FALSE(mp_lock_is_mine(l));
    EXPECT_EQ(0, mp_lock_acquire(l, kWait));
    EXPECT_EQ(0, mp_lock_release(l));
    mp_lock_free(l);
    mp_lock_free(nullptr);
    EXPECT_EQ(MP_EINVAL, mp_lock_acquire(nullptr, 0));
    EXPECT_EQ(MP_EINVAL, mp_lock_release(nullptr));
    EXPECT_EQ(MP_EINVAL, mp_lock_new(ctx(), nullptr));
}

// Python 3.14's Lock.locked() and RLock.locked(): whether anyone holds it, seen from
// this process and from a child (SemLock._is_zero: not only the owner sees it).
TEST_P(SyncTest, LockedSaysWhetherAnyoneHoldsIt) {
    for (bool recursive : {false, true}) {
        SCOPED_TRACE(recursive ? "RLock" : "Lock");
        mp_lock *l = nullptr;
        ASSERT_EQ(0, (recursive ? mp_rlock_new : mp_lock_new)(ctx(), &l)) << err();
        EXPECT_FALSE(mp_lock_is_locked(l));
        ASSERT_EQ(0, mp_lock_acquire(l, kWait)) << err();
        EXPECT_TRUE(mp_lock_is_locked(l));
        if (recursive) {
            ASSERT_EQ(0, mp_lock_acquire(l, kWait)) << err();
            ASSERT_EQ(0, mp_lock_release(l)) << err();
            EXPECT_TRUE(mp_lock_is_locked(l)) << "one level is still held";
        }
        for (int held = 1; held >= 0; held--) {
            Args a;
            EXPECT_EQ(0, mp_args_add_lock(a.get(), l)) << err();
            a.i(held);
            mp_process *p = start(tgt_lock_locked, a.get());
            ASSERT_NE(nullptr, p);
            EXPECT_EQ(0, join_code(p)) << (held ? "held by the parent" : "free");
            if (held) {
                ASSERT_EQ(0, mp_lock_release(l)) << err();
                EXPECT_FALSE(mp_lock_is_locked(l));
            }
        }
        // Held by another thread.
        std::atomic<int> phase{0};
        std::thread t([&] {
            EXPECT_EQ(0, mp_lock_acquire(l, kWait));
            phase = 1;
            EXPECT_TRUE(eventually([&] { return phase.load() == 2; }));
            EXPECT_EQ(0, mp_lock_release(l));
        });
        EXPECT_TRUE(eventually([&] { return phase.load() == 1; }));
        EXPECT_TRUE(mp_lock_is_locked(l));
        EXPECT_FALSE(mp_lock_is_mine(l));
        phase = 2;
        t.join();
        EXPECT_FALSE(mp_lock_is_locked(l));
        mp_lock_free(l);
    }
    EXPECT_FALSE(mp_lock_is_locked(nullptr));
}

TEST_P(SyncTest, LockTimeoutThatDoesNotExpire) {
    mp_lock *l = nullptr;
    ASSERT_EQ(0, mp_lock_new(ctx(), &l)) << err();
    ASSERT_EQ(0, mp_lock_acquire(l, 0));
    std::atomic<int> rc{1};
    std::thread t([&] { rc = mp_lock_acquire(l, kWait); });
    sleep_for(0.1);
    EXPECT_EQ(0, mp_lock_release(l));
    t.join();
    EXPECT_EQ(0, rc.load());
    EXPECT_EQ(0, mp_lock_release(l)); // released by another thread than the acquirer
    mp_lock_free(l);
}

TEST_P(SyncTest, LockAcrossProcesses) {
    mp_lock *l = nullptr;
    ASSERT_EQ(0, mp_lock_new(ctx(), &l)) << err();
    ASSERT_EQ(0, mp_lock_acquire(l, 0));
    {
        // Held by us: the child's short timeout expires.
        Args a;
        EXPECT_EQ(0, mp_args_add_lock(a.get(), l)) << err();
        a.d(0.1);
        mp_process *p = start(tgt_try_acquire, a.get());
        ASSERT_NE(nullptr, p);
        EXPECT_EQ(2, join_code(p));
    }
    {
        // A child releases the lock this process acquired.
        Args a;
        EXPECT_EQ(0, mp_args_add_lock(a.get(), l)) << err();
        mp_process *p = start(tgt_release, a.get());
        ASSERT_NE(nullptr, p);
        EXPECT_EQ(0, join_code(p));
        EXPECT_EQ(0, mp_lock_acquire(l, 0)) << "the child's release did not free the lock";
    }
    {
        // A child waits (long timeout) until we release.
        Args a;
        EXPECT_EQ(0, mp_args_add_lock(a.get(), l)) << err();
        a.d(kWait);
        mp_process *p = start(tgt_try_acquire, a.get());
        ASSERT_NE(nullptr, p);
        sleep_for(0.2);
        EXPECT_EQ(0, mp_lock_release(l));
        EXPECT_EQ(0, join_code(p));
    }
    {
        // Releasing an unheld lock in a child is an error there too.
        Args a;
        EXPECT_EQ(0, mp_args_add_lock(a.get(), l)) << err();
        mp_process *p = start(tgt_release, a.get());
        ASSERT_NE(nullptr, p);
        EXPECT_EQ(10 - MP_ESTATE, join_code(p));
    }
    mp_lock_free(l);
}

static void contend(SyncTest *t, mp_lock *l, int nchildren, int64_t iters) {
    Shared sh;
    ASSERT_NE(nullptr, sh.c);
    std::vector<mp_process *> ps;
    for (int i = 0; i < nchildren; i++) {
        Args a;
        EXPECT_EQ(0, mp_args_add_lock(a.get(), l)) << err();
        a.h(sh.h).i(iters);
        mp_process *p = t->start_public(tgt_count_under_lock, a.get());
        ASSERT_NE(nullptr, p);
        ps.push_back(p);
    }
    for (mp_process *p : ps) EXPECT_EQ(0, t->join_public(p));
    EXPECT_EQ(nchildren * iters, sh.c->plain) << "increments were lost: the lock did not exclude";
}

TEST_P(SyncTest, LockChildrenContend) {
    mp_lock *l = nullptr;
    ASSERT_EQ(0, mp_lock_new(ctx(), &l)) << err();
    contend(this, l, 4, kWindows ? 2000 : 20000);
    mp_lock_free(l);
}

TEST_P(SyncTest, RLockChildrenContend) {
    mp_lock *l = nullptr;
    ASSERT_EQ(0, mp_rlock_new(ctx(), &l)) << err();
    contend(this, l, 3, kWindows ? 2000 : 10000);
    mp_lock_free(l);
}

// ---- RLock ----

TEST_P(SyncTest, RLockMethodsAndErrors) {
    mp_lock *l = nullptr;
    ASSERT_EQ(0, mp_rlock_new(ctx(), &l)) << err();
    EXPECT_TRUE(mp_lock_is_recursive(l));
    EXPECT_EQ(MP_ESTATE, mp_lock_release(l));
    EXPECT_EQ(0, mp_lock_acquire(l, 0));
    EXPECT_EQ(0, mp_lock_acquire(l, 0));
    EXPECT_EQ(0, mp_lock_acquire(l, MP_FOREVER));
    EXPECT_TRUE(mp_lock_is_mine(l));
    int rc_release = 0, rc_acquire = 0;
    std::thread t([&] {
        rc_release = mp_lock_release(l);
        rc_acquire = mp_lock_acquire(l, 0.05);
    });
    t.join();
    EXPECT_EQ(MP_EPERM, rc_release) << "another thread released the rlock";
    EXPECT_EQ(MP_ETIMEDOUT, rc_acquire);
    {
        Args a;
        EXPECT_EQ(0, mp_args_add_lock(a.get(), l)) << err();
        mp_process *p = start(tgt_release, a.get());
        ASSERT_NE(nullptr, p);
        EXPECT_EQ(10 - MP_EPERM, join_code(p)) << "another process released the rlock";
    }
    EXPECT_EQ(0, mp_lock_release(l));
    EXPECT_EQ(0, mp_lock_release(l));
    EXPECT_TRUE(mp_lock_is_mine(l));
    EXPECT_EQ(0, mp_lock_release(l));
    EXPECT_FALSE(mp_lock_is_mine(l));
    EXPECT_EQ(MP_ESTATE, mp_lock_release(l));
    std::thread t2([&] {
        rc_acquire = mp_lock_acquire(l, kWait);
        if (rc_acquire == 0) rc_release = mp_lock_release(l);
    });
    t2.join();
    EXPECT_EQ(0, rc_acquire);
    EXPECT_EQ(0, rc_release);
    mp_lock_free(l);
}

// ---- owner death ----

static void owner_death(SyncTest *t, bool recursive, bool waiting_first) {
    mp_lock *l = nullptr;
    ASSERT_EQ(0, (recursive ? mp_rlock_new : mp_lock_new)(t->ctx_public(), &l)) << err();
    Pipe &ready = t->pipe_public();
    Args a;
    EXPECT_EQ(0, mp_args_add_lock(a.get(), l)) << err();
    a.h(ready.w);
    mp_process *p = t->start_public(tgt_hold_forever, a.get());
    ASSERT_NE(nullptr, p);
    char c = 0;
    ASSERT_TRUE(read_exact(ready.r, &c, 1, kWait)) << "the child did not take the lock";
    EXPECT_EQ(MP_ETIMEDOUT, mp_lock_acquire(l, 0.1)) << "held by a live child";
    int rc = 1;
    if (waiting_first) {
        // Blocked in acquire when the holder dies.
        std::thread w([&] { rc = mp_lock_acquire(l, kWait); });
        sleep_for(0.1);
        EXPECT_EQ(0, mp_process_kill(p)) << err();
        w.join();
    } else {
        EXPECT_EQ(0, mp_process_kill(p)) << err();
        EXPECT_EQ(0, mp_process_join(p, kWait));
        rc = mp_lock_acquire(l, kWait);
    }
    EXPECT_EQ(MP_EOWNERDEAD, rc) << err();
    if (rc == MP_EOWNERDEAD && !waiting_first) {
        EXPECT_TRUE(mp_lock_is_mine(l));
        EXPECT_EQ(0, mp_lock_release(l)) << "the lock is held normally after EOWNERDEAD";
        EXPECT_EQ(MP_ESTATE, mp_lock_release(l));
        EXPECT_EQ(0, mp_lock_acquire(l, 0));
    } else if (rc == MP_EOWNERDEAD) {
        EXPECT_EQ(recursive ? MP_EPERM : 0, mp_lock_release(l)) << "taken over by the other thread";
    }
    mp_lock_free(l);
}

TEST_P(SyncTest, LockOwnerDeath) {
    if (dummy()) GTEST_SKIP() << "a dummy child is a thread: it cannot be killed";
    owner_death(this, false, false);
}

TEST_P(SyncTest, LockOwnerDeathWhileWaiting) {
    if (dummy()) GTEST_SKIP() << "a dummy child is a thread: it cannot be killed";
    owner_death(this, false, true);
}

TEST_P(SyncTest, RLockOwnerDeath) {
    if (dummy()) GTEST_SKIP() << "a dummy child is a thread: it cannot be killed";
    owner_death(this, true, false);
}

TEST_P(SyncTest, ConditionLockOwnerDeath) {
    if (dummy()) GTEST_SKIP() << "a dummy child is a thread: it cannot be killed";
    mp_condition *cv = nullptr;
    ASSERT_EQ(0, mp_condition_new(ctx(), nullptr, &cv)) << err();
    Pipe &ready = pipe();
    Args a;
    EXPECT_EQ(0, mp_args_add_lock(a.get(), mp_condition_lock(cv))) << err();
    a.h(ready.w);
    ASSERT_EQ(0, mp_condition_acquire(cv, 0));
    mp_process *p = start(tgt_hold_forever, a.get());
    ASSERT_NE(nullptr, p);
    std::atomic<bool> killed{false};
    std::thread killer([&] {
        char c = 0;
        if (read_exact(ready.r, &c, 1, kWait)) {
            mp_process_kill(p);
            killed = true;
        }
    });
    // Each wait lets the child take the lock; the wait that ends while the child is
    // dead gets the lock back with MP_EOWNERDEAD.
    int rc = 0;
    double end = now() + kWait;
    do {
        rc = mp_condition_wait(cv, 0.2);
    } while (rc == MP_ETIMEDOUT && now() < end);
    killer.join();
    EXPECT_TRUE(killed.load());
    EXPECT_EQ(MP_EOWNERDEAD, rc) << err();
    EXPECT_TRUE(mp_lock_is_mine(mp_condition_lock(cv)));
    EXPECT_EQ(0, mp_condition_release(cv));
    mp_condition_free(cv);
}

// ---- Semaphore ----

TEST_P(SyncTest, SemaphoreMethodsAndErrors) {
    mp_semaphore *s = nullptr;
    ASSERT_EQ(0, mp_semaphore_new(ctx(), 2, &s)) << err();
    int v = -1;
    EXPECT_FALSE(mp_semaphore_is_bounded(s));
    EXPECT_EQ(0, mp_semaphore_get_value(s, &v));
    EXPECT_EQ(2, v);
    EXPECT_EQ(0, mp_semaphore_acquire(s, 0));
    EXPECT_EQ(0, mp_semaphore_acquire(s, MP_FOREVER));
    EXPECT_EQ(MP_ETIMEDOUT, mp_semaphore_acquire(s, 0));
    EXPECT_EQ(MP_ETIMEDOUT, mp_semaphore_acquire(s, 0.05));
    EXPECT_EQ(0, mp_semaphore_get_value(s, &v));
    EXPECT_EQ(0, v);
    std::atomic<int> rc{1};
    std::thread t([&] { rc = mp_semaphore_acquire(s, kWait); });
    sleep_for(0.05);
    EXPECT_EQ(0, mp_semaphore_release(s));
    t.join();
    EXPECT_EQ(0, rc.load());
    for (int i = 0; i < 5; i++)
        EXPECT_EQ(0, mp_semaphore_release(s)) << "an unbounded semaphore goes past its start";
    EXPECT_EQ(0, mp_semaphore_get_value(s, &v));
    EXPECT_EQ(5, v);
    mp_semaphore_free(s);

    ASSERT_EQ(0, mp_bounded_semaphore_new(ctx(), 1, &s)) << err();
    EXPECT_TRUE(mp_semaphore_is_bounded(s));
    EXPECT_EQ(MP_ESTATE, mp_semaphore_release(s)) << "past the bound";
    EXPECT_EQ(0, mp_semaphore_acquire(s, 0));
    EXPECT_EQ(0, mp_semaphore_release(s));
    EXPECT_EQ(MP_ESTATE, mp_semaphore_release(s));
    mp_semaphore_free(s);
    mp_semaphore_free(nullptr);
    EXPECT_EQ(MP_EINVAL, mp_semaphore_acquire(nullptr, 0));
    EXPECT_EQ(MP_EINVAL, mp_semaphore_get_value(nullptr, &v));
    EXPECT_EQ(MP_EINVAL, mp_semaphore_new(ctx(), 0x80000000u, &s));
    EXPECT_EQ(nullptr, s);
}

TEST_P(SyncTest, SemaphoreAcrossProcesses) {
    mp_semaphore *s = nullptr;
    ASSERT_EQ(0, mp_bounded_semaphore_new(ctx(), 2, &s)) << err();
    Shared sh;
    ASSERT_NE(nullptr, sh.c);
    std::vector<mp_process *> ps;
    for (int i = 0; i < 4; i++) {
        Args a;
        EXPECT_EQ(0, mp_args_add_semaphore(a.get(), s)) << err();
        a.h(sh.h).i(kWindows ? 200 : 2000);
        mp_process *p = start(tgt_count_under_semaphore, a.get());
        ASSERT_NE(nullptr, p);
        ps.push_back(p);
    }
    for (mp_process *p : ps) EXPECT_EQ(0, join_code(p));
    EXPECT_LE(sh.c->max_inside.load(), 2) << "more holders than the value allows";
    int v = -1;
    EXPECT_EQ(0, mp_semaphore_get_value(s, &v));
    EXPECT_EQ(2, v);
    // A child's release wakes a waiter here.
    EXPECT_EQ(0, mp_semaphore_acquire(s, 0));
    EXPECT_EQ(0, mp_semaphore_acquire(s, 0));
    Args a;
    EXPECT_EQ(0, mp_args_add_semaphore(a.get(), s)) << err();
    EXPECT_STREQ("bounded_semaphore", mp_args_object_type(a.get(), 0));
    mp_process *p = start(tgt_sem_release, a.get());
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(0, mp_semaphore_acquire(s, kWait));
    EXPECT_EQ(0, join_code(p));
    mp_semaphore_free(s);
}

// ---- Event ----

TEST_P(SyncTest, EventMethods) {
    mp_event *e = nullptr;
    ASSERT_EQ(0, mp_event_new(ctx(), &e)) << err();
    EXPECT_FALSE(mp_event_is_set(e));
    EXPECT_EQ(MP_ETIMEDOUT, mp_event_wait(e, 0));
    EXPECT_EQ(MP_ETIMEDOUT, mp_event_wait(e, 0.05));
    EXPECT_EQ(0, mp_event_set(e));
    EXPECT_TRUE(mp_event_is_set(e));
    EXPECT_EQ(0, mp_event_set(e));
    EXPECT_EQ(0, mp_event_wait(e, 0));
    EXPECT_EQ(0, mp_event_wait(e, MP_FOREVER));
    EXPECT_EQ(0, mp_event_clear(e));
    EXPECT_FALSE(mp_event_is_set(e));
    std::atomic<int> rc{1};
    std::thread t([&] { rc = mp_event_wait(e, kWait); });
    sleep_for(0.05);
    EXPECT_EQ(0, mp_event_set(e));
    t.join();
    EXPECT_EQ(0, rc.load());
    mp_event_free(e);
    mp_event_free(nullptr);
    EXPECT_EQ(MP_EINVAL, mp_event_set(nullptr));
    EXPECT_FALSE(mp_event_is_set(nullptr));
}

TEST_P(SyncTest, EventAcrossProcesses) {
    mp_event *e = nullptr;
    ASSERT_EQ(0, mp_event_new(ctx(), &e)) << err();
    std::vector<mp_process *> waiters;
    for (int i = 0; i < 3; i++) {
        Args a;
        EXPECT_EQ(0, mp_args_add_event(a.get(), e)) << err();
        mp_process *p = start(tgt_event_wait, a.get());
        ASSERT_NE(nullptr, p);
        waiters.push_back(p);
    }
    Args a;
    EXPECT_EQ(0, mp_args_add_event(a.get(), e)) << err();
    a.d(0.1);
    mp_process *setter = start(tgt_event_set, a.get());
    ASSERT_NE(nullptr, setter);
    EXPECT_EQ(0, mp_event_wait(e, kWait));
    EXPECT_EQ(0, join_code(setter));
    for (mp_process *p : waiters) EXPECT_EQ(0, join_code(p));
    mp_event_free(e);
}

// ---- Condition ----

TEST_P(SyncTest, ConditionMethodsAndErrors) {
    mp_lock *l = nullptr;
    ASSERT_EQ(0, mp_lock_new(ctx(), &l)) << err();
    mp_condition *cv = nullptr;
    ASSERT_EQ(0, mp_condition_new(ctx(), l, &cv)) << err();
    mp_lock_free(l); // the condition keeps its lock alive
    l = mp_condition_lock(cv);
    EXPECT_FALSE(mp_lock_is_recursive(l));
    EXPECT_EQ(MP_EPERM, mp_condition_wait(cv, 0.01)) << "wait without the lock";
    EXPECT_EQ(MP_EPERM, mp_condition_notify(cv, 1));
    EXPECT_EQ(MP_EPERM, mp_condition_notify_all(cv));
    EXPECT_EQ(0, mp_condition_acquire(cv, 0));
    EXPECT_EQ(0, mp_condition_notify(cv, 1)) << "nobody waits: fine";
    EXPECT_EQ(MP_ETIMEDOUT, mp_condition_wait(cv, 0.05));
    EXPECT_TRUE(mp_lock_is_mine(l)) << "the lock is held again after a timeout";
    EXPECT_EQ(MP_ETIMEDOUT, mp_condition_wait(cv, 0));
    EXPECT_EQ(MP_ETIMEDOUT, mp_condition_wait_for(cv, flag_is_set_never, nullptr, 0.05));
    // Another thread holding the lock is not us.
    int rc = 0;
    std::thread t([&] { rc = mp_condition_wait(cv, 0.01); });
    t.join();
    EXPECT_EQ(MP_EPERM, rc);
    EXPECT_EQ(0, mp_condition_release(cv));
    mp_condition_free(cv);
    mp_condition_free(nullptr);
    EXPECT_EQ(MP_EINVAL, mp_condition_wait(nullptr, 0));
}

TEST_P(SyncTest, ConditionOverRLockReleasesEveryLevel) {
    mp_condition *cv = nullptr;
    ASSERT_EQ(0, mp_condition_new(ctx(), nullptr, &cv)) << err();
    mp_lock *l = mp_condition_lock(cv);
    EXPECT_TRUE(mp_lock_is_recursive(l));
    ASSERT_EQ(0, mp_condition_acquire(cv, 0));
    ASSERT_EQ(0, mp_condition_acquire(cv, 0));
    std::atomic<int> got{1};
    std::thread t([&] {
        got = mp_condition_acquire(cv, kWait);
        if (got == 0) {
            mp_condition_notify(cv, 1);
            mp_condition_release(cv);
        }
    });
    EXPECT_EQ(0, mp_condition_wait(cv, kWait));
    t.join();
    EXPECT_EQ(0, got.load());
    EXPECT_EQ(0, mp_condition_release(cv));
    EXPECT_TRUE(mp_lock_is_mine(l)) << "both levels came back";
    EXPECT_EQ(0, mp_condition_release(cv));
    EXPECT_EQ(MP_ESTATE, mp_condition_release(cv));
    mp_condition_free(cv);
}

TEST_P(SyncTest, ConditionNotifyCountsAcrossProcesses) {
    mp_condition *cv = nullptr;
    ASSERT_EQ(0, mp_condition_new(ctx(), nullptr, &cv)) << err();
    Shared sh;
    ASSERT_NE(nullptr, sh.c);
    std::vector<mp_process *> ps;
    for (int i = 0; i < 3; i++) {
        Args a;
        EXPECT_EQ(0, mp_args_add_condition(a.get(), cv)) << err();
        EXPECT_STREQ("condition", mp_args_object_type(a.get(), 0));
        a.h(sh.h);
        mp_process *p = start(tgt_cond_waiter, a.get());
        ASSERT_NE(nullptr, p);
        ps.push_back(p);
    }
    // Waiting means: counted ready under the lock, and the lock is free again.
    ASSERT_TRUE(eventually([&] {
        if (mp_condition_acquire(cv, kWait) != 0) return false;
        bool all = sh.c->ready.load() == 3;
        mp_condition_release(cv);
        return all;
    })) << "the children did not all wait";
    ASSERT_EQ(0, mp_condition_acquire(cv, kWait));
    EXPECT_EQ(0, mp_condition_notify(cv, 1));
    EXPECT_EQ(0, mp_condition_release(cv));
    EXPECT_TRUE(eventually([&] { return sh.c->woke.load() >= 1; }));
    sleep_for(0.2);
    EXPECT_EQ(1, sh.c->woke.load()) << "notify(1) woke more than one";
    ASSERT_EQ(0, mp_condition_acquire(cv, kWait));
    EXPECT_EQ(0, mp_condition_notify_all(cv));
    EXPECT_EQ(0, mp_condition_release(cv));
    for (mp_process *p : ps) EXPECT_EQ(0, join_code(p));
    EXPECT_EQ(3, sh.c->woke.load());
    mp_condition_free(cv);
}

TEST_P(SyncTest, ConditionWaitFor) {
    mp_lock *l = nullptr;
    ASSERT_EQ(0, mp_lock_new(ctx(), &l)) << err();
    mp_condition *cv = nullptr;
    ASSERT_EQ(0, mp_condition_new(ctx(), l, &cv)) << err();
    Shared sh;
    ASSERT_NE(nullptr, sh.c);
    g_counters = sh.c;
    Args a;
    EXPECT_EQ(0, mp_args_add_condition(a.get(), cv)) << err();
    a.h(sh.h);
    ASSERT_EQ(0, mp_condition_acquire(cv, 0));
    mp_process *p = start(tgt_cond_setter, a.get());
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(0, mp_condition_wait_for(cv, flag_is_set, nullptr, kWait)) << err();
    EXPECT_EQ(1, sh.c->flag);
    EXPECT_EQ(0, mp_condition_wait_for(cv, flag_is_set, nullptr, 0)) << "true at once";
    EXPECT_EQ(0, mp_condition_release(cv));
    EXPECT_EQ(0, join_code(p));
    g_counters = nullptr;
    mp_condition_free(cv);
    mp_lock_free(l);
}

// ---- Barrier ----

TEST_P(SyncTest, BarrierAcrossProcesses) {
    Shared sh;
    ASSERT_NE(nullptr, sh.c);
    mp_barrier *b = nullptr;
    {
        Args act;
        act.h(sh.h);
        ASSERT_EQ(0, mp_barrier_new(ctx(), 3, barrier_action, act.get(), MP_FOREVER, &b)) << err();
    }
    EXPECT_EQ(3, mp_barrier_parties(b));
    EXPECT_EQ(0, mp_barrier_n_waiting(b));
    EXPECT_FALSE(mp_barrier_broken(b));
    for (int round = 0; round < 2; round++) {
        std::vector<mp_process *> ps;
        for (int i = 0; i < 2; i++) {
            Args a;
            EXPECT_EQ(0, mp_args_add_barrier(a.get(), b)) << err();
            a.h(sh.h).i(i);
            mp_process *p = start(tgt_barrier_wait, a.get());
            ASSERT_NE(nullptr, p);
            ps.push_back(p);
        }
        int idx = -1;
        EXPECT_EQ(0, mp_barrier_wait_timeout(b, kWait, &idx)) << err();
        for (mp_process *p : ps) EXPECT_EQ(0, join_code(p));
        std::set<int64_t> seen = {idx, sh.c->idx[0].load(), sh.c->idx[1].load()};
        EXPECT_EQ((std::set<int64_t>{0, 1, 2}), seen) << "arrival indexes";
        EXPECT_EQ(round + 1, sh.c->actions.load()) << "the action runs once per round";
    }
    mp_barrier_free(b);
}

// The action gets arguments, copied with the barrier into every process that has it:
// the last party to arrive runs it in its own process, with that process's copy (here
// a queue over the same shared state, and an int). The creator's list and the objects
// in it may go right after mp_barrier_new.
TEST_P(SyncTest, BarrierActionRunsWhereTheLastPartyArrived) {
    mp_queue *q = nullptr;
    ASSERT_EQ(0, mp_queue_new(ctx(), 0, &q)) << err();
    mp_lock *l = nullptr;
    ASSERT_EQ(0, mp_lock_new(ctx(), &l)) << err();
    mp_event *ev = nullptr;
    ASSERT_EQ(0, mp_event_new(ctx(), &ev)) << err();
    mp_barrier *b = nullptr;
    {
        Args act;
        EXPECT_EQ(0, mp_args_add_queue(act.get(), q)) << err();
        act.i(42);
        EXPECT_EQ(0, mp_args_add_lock(act.get(), l)) << err();
        ASSERT_EQ(0, mp_barrier_new(ctx(), 3, reporting_action, act.get(), MP_FOREVER, &b))
            << err();
    }
    mp_lock_free(l); // the barrier's copy has a lock object of its own
    std::vector<mp_process *> ps;
    for (int id = 0; id < 2; id++) {
        Args a;
        EXPECT_EQ(0, mp_args_add_barrier(a.get(), b)) << err();
        EXPECT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
        a.i(id).i(2);
        EXPECT_EQ(0, mp_args_add_event(a.get(), ev)) << err();
        mp_process *p = start(tgt_barrier_rounds, a.get());
        ASSERT_NE(nullptr, p);
        ps.push_back(p);
    }
    std::vector<BarrierReport> reports;
    // Round 0: this process arrives last (both children wait already).
    ASSERT_TRUE(eventually([&] { return mp_barrier_n_waiting(b) == 2; }))
        << "the children did not arrive";
    int idx = -1;
    ASSERT_EQ(0, mp_barrier_wait_timeout(b, kWait, &idx)) << err();
    EXPECT_EQ(2, idx);
    reports.push_back({1, 2, 0, idx, mp_getpid(), 0});
    // Round 1: child 1 arrives last (it waits for the event, set once the others wait).
    std::thread setter([&] {
        EXPECT_TRUE(eventually([&] { return mp_barrier_n_waiting(b) == 2; }));
        EXPECT_EQ(0, mp_event_set(ev));
    });
    idx = -1;
    EXPECT_EQ(0, mp_barrier_wait_timeout(b, kWait, &idx)) << err();
    setter.join();
    reports.push_back({1, 2, 1, idx, mp_getpid(), 0});
    for (mp_process *p : ps) EXPECT_EQ(0, join_code(p));
    // 2 rounds x (2 children + the action); the action reports no round: it runs
    // before anyone of its round is released, so it comes first among that round's.
    std::vector<BarrierReport> actions;
    for (int i = 0; i < 6; i++) {
        BarrierReport r = {};
        size_t len = 0;
        ASSERT_EQ(0, mp_queue_get_bytes_into(q, &r, sizeof r, &len, kWait)) << err();
        ASSERT_EQ(sizeof r, len);
        (r.kind == 2 ? actions : reports).push_back(r);
    }
    ASSERT_EQ(2u, actions.size()) << "the action runs once per round";
    for (int round = 0; round < 2; round++) {
        const BarrierReport *last = nullptr;
        for (const BarrierReport &r : reports)
            if (r.round == round && r.idx == 2) last = &r;
        ASSERT_NE(nullptr, last) << "round " << round << " has no last party";
        EXPECT_EQ(round == 0 ? 2 : 1, last->id) << "round " << round;
        EXPECT_EQ(42, actions[round].tag);
        // Each round's action ran in the process of its last party.
        bool where = false;
        for (const BarrierReport &a : actions) where |= a.pid == last->pid;
        EXPECT_TRUE(where) << "round " << round << ": no action ran in pid " << last->pid;
    }
    if (!dummy()) {
        EXPECT_NE(actions[0].pid, actions[1].pid) << "the second round's action ran in the child";
    }
    mp_barrier_free(b);
    mp_event_free(ev);
    mp_queue_free(q);
}

// Python's Barrier: a broken barrier raises BrokenBarrierError in every party: the
// one whose timeout expired, the others, later waits, and waits cut short by abort or
// reset (MP_EBROKEN for all).
TEST_P(SyncTest, BarrierBrokenIsEBrokenForEveryParty) {
    mp_barrier *b = nullptr;
    ASSERT_EQ(0, mp_barrier_new(ctx(), 4, nullptr, nullptr, MP_FOREVER, &b)) << err();
    std::vector<mp_process *> ps;
    for (int i = 0; i < 2; i++) {
        Args a;
        EXPECT_EQ(0, mp_args_add_barrier(a.get(), b)) << err();
        mp_process *p = start(tgt_barrier_expect_broken, a.get());
        ASSERT_NE(nullptr, p);
        ps.push_back(p);
    }
    ASSERT_TRUE(eventually([&] { return mp_barrier_n_waiting(b) == 2; }));
    int idx = 9;
    EXPECT_EQ(MP_EBROKEN, mp_barrier_wait_timeout(b, 0.05, &idx))
        << "the party whose timeout expired";
    EXPECT_EQ(-1, idx);
    for (mp_process *p : ps)
        EXPECT_EQ(2, join_code(p)) << "a party waiting when another's timeout broke the barrier";
    EXPECT_TRUE(mp_barrier_broken(b));
    EXPECT_EQ(MP_EBROKEN, mp_barrier_wait_timeout(b, kWait, &idx)) << "a wait on a broken barrier";
    EXPECT_EQ(MP_EBROKEN, mp_barrier_wait_timeout(b, 0, &idx));
    EXPECT_EQ(MP_EBROKEN, mp_barrier_wait_timeout(b, -1, &idx));
    EXPECT_EQ(0, mp_barrier_reset(b));
    EXPECT_EQ(MP_EBROKEN, mp_barrier_wait_timeout(b, 0, &idx)) << "timeout 0 on a filling barrier";
    EXPECT_TRUE(mp_barrier_broken(b));
    EXPECT_EQ(0, mp_barrier_reset(b));
    EXPECT_EQ(0, mp_barrier_abort(b));
    EXPECT_EQ(MP_EBROKEN, mp_barrier_wait(b, &idx)) << "after abort";
    mp_barrier_free(b);
}

TEST_P(SyncTest, BarrierAbortResetTimeout) {
    mp_barrier *b = nullptr;
    ASSERT_EQ(0, mp_barrier_new(ctx(), 3, nullptr, nullptr, 0.1, &b)) << err();
    // Default timeout: expires, breaks the barrier.
    int idx = 9;
    EXPECT_EQ(MP_EBROKEN, mp_barrier_wait(b, &idx));
    EXPECT_EQ(-1, idx);
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), "timed out")) << mp_last_error_message();
    EXPECT_TRUE(mp_barrier_broken(b));
    EXPECT_EQ(MP_EBROKEN, mp_barrier_wait(b, &idx)) << "broken until reset";
    EXPECT_EQ(0, mp_barrier_reset(b));
    EXPECT_FALSE(mp_barrier_broken(b));
    // abort wakes a child waiting with a long timeout.
    Args a;
    EXPECT_EQ(0, mp_args_add_barrier(a.get(), b)) << err();
    EXPECT_STREQ("barrier", mp_args_object_type(a.get(), 0));
    mp_process *p = start(tgt_barrier_expect_broken, a.get());
    ASSERT_NE(nullptr, p);
    EXPECT_TRUE(eventually([&] { return mp_barrier_n_waiting(b) == 1; }));
    EXPECT_EQ(0, mp_barrier_abort(b));
    EXPECT_EQ(2, join_code(p));
    EXPECT_TRUE(mp_barrier_broken(b));
    EXPECT_EQ(0, mp_barrier_n_waiting(b));
    EXPECT_EQ(0, mp_barrier_reset(b));
    // reset while a party waits: it leaves with MP_EBROKEN, the barrier is usable.
    p = start(tgt_barrier_expect_broken, a.get());
    ASSERT_NE(nullptr, p);
    EXPECT_TRUE(eventually([&] { return mp_barrier_n_waiting(b) == 1; }));
    EXPECT_EQ(0, mp_barrier_reset(b));
    EXPECT_EQ(2, join_code(p));
    EXPECT_FALSE(mp_barrier_broken(b));
    mp_barrier_free(b);

    // One party: returns at once with index 0; a failing action breaks it, and the
    // party that ran it gets MP_EBROKEN too.
    ASSERT_EQ(0, mp_barrier_new(ctx(), 1, nullptr, nullptr, MP_FOREVER, &b)) << err();
    EXPECT_EQ(0, mp_barrier_wait(b, &idx));
    EXPECT_EQ(0, idx);
    mp_barrier_free(b);
    ASSERT_EQ(0, mp_barrier_new(ctx(), 1, failing_action, nullptr, MP_FOREVER, &b)) << err();
    EXPECT_EQ(MP_EBROKEN, mp_barrier_wait(b, &idx));
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), "returned 7")) << mp_last_error_message();
    EXPECT_TRUE(mp_barrier_broken(b));
    mp_barrier_free(b);
    ASSERT_EQ(0, mp_barrier_new(ctx(), 1, empty_args_action, nullptr, MP_FOREVER, &b)) << err();
    EXPECT_EQ(0, mp_barrier_wait(b, &idx)) << "an action given no arguments gets an empty list";
    mp_barrier_free(b);
    EXPECT_EQ(MP_EINVAL, mp_barrier_new(ctx(), 0, nullptr, nullptr, MP_FOREVER, &b));
    EXPECT_EQ(nullptr, b);
    {
        Args act;
        act.i(1);
        EXPECT_EQ(MP_EINVAL, mp_barrier_new(ctx(), 2, nullptr, act.get(), MP_FOREVER, &b))
            << "arguments without an action";
        EXPECT_EQ(nullptr, b);
    }
    mp_barrier_free(nullptr);
    EXPECT_EQ(0, mp_barrier_parties(nullptr));
}

// The action's arguments travel inside the barrier's description: when one of their
// objects cannot be rebuilt in the child (a SharedMemory block unlinked before the
// start), the start fails with that error, on every method, and every handle the
// barrier brought is closed once (dummy: nothing is left open in this process).
TEST_P(SyncTest, BarrierActionArgumentsThatCannotBeRebuiltFailTheStart) {
    if (kWindows) GTEST_SKIP() << "Windows: a named mapping cannot be removed while it is held";
    mp_shm_opts so = {};
    so.create = true;
    so.size = 4096;
    mp_shm *s = nullptr;
    ASSERT_EQ(0, mp_shm_open(&so, &s)) << err();
    mp_lock *l = nullptr;
    ASSERT_EQ(0, mp_lock_new(ctx(), &l)) << err();
    mp_barrier *b = nullptr;
    {
        Args act;
        EXPECT_EQ(0, mp_args_add_shm(act.get(), s)) << err();
        EXPECT_EQ(0, mp_args_add_lock(act.get(), l)) << err(); // not reached in the child
        ASSERT_EQ(0, mp_barrier_new(ctx(), 2, barrier_action, act.get(), MP_FOREVER, &b)) << err();
    }
    ASSERT_EQ(0, mp_shm_unlink(s)) << err();
    Args a;
    EXPECT_EQ(0, mp_args_add_barrier(a.get(), b)) << err();
    a.i(0);
    mp_process *p = make(tgt_return_arg, a.get());
    ASSERT_NE(nullptr, p);
    if (dummy()) {
        // The first start of a program opens the program's own sentinel, kept for its
        // life: one start that succeeds first, so the count below sees only this one.
        Args none;
        none.i(0);
        mp_process *w = start(tgt_return_arg, none.get());
        ASSERT_NE(nullptr, w);
        EXPECT_EQ(0, join_code(w));
    }
    std::string fds_before = open_fds();
    EXPECT_EQ(MP_ENOENT, mp_process_start(p)) << err();
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), mp_shm_name(s))) << err();
    if (dummy()) {
        EXPECT_EQ(fds_before, open_fds())
            << "descriptors the failed rebuild left open (or closed twice)";
    }
    mp_barrier_free(b);
    mp_lock_free(l);
    mp_shm_free(s);
}

TEST_P(SyncTest, BarrierThreads) {
    mp_barrier *b = nullptr;
    ASSERT_EQ(0, mp_barrier_new(ctx(), 4, nullptr, nullptr, MP_FOREVER, &b)) << err();
    std::vector<int> idx(4, -1), rc(4, 1);
    std::vector<std::thread> ts;
    for (int i = 0; i < 4; i++)
        ts.emplace_back([&, i] {
            for (int round = 0; round < 20 && rc[i] != 99; round++) {
                rc[i] = mp_barrier_wait_timeout(b, kWait, &idx[i]);
                if (rc[i] != 0) rc[i] = 99;
            }
        });
    for (auto &t : ts) t.join();
    std::set<int> seen(idx.begin(), idx.end());
    EXPECT_EQ((std::set<int>{0, 1, 2, 3}), seen);
    for (int r : rc) EXPECT_EQ(0, r);
    mp_barrier_free(b);
}

// ---- arguments and clean-up ----

TEST_P(SyncTest, ArgumentTypes) {
    mp_lock *l = nullptr, *r = nullptr;
    mp_semaphore *s = nullptr;
    mp_event *e = nullptr;
    ASSERT_EQ(0, mp_lock_new(ctx(), &l));
    ASSERT_EQ(0, mp_rlock_new(ctx(), &r));
    ASSERT_EQ(0, mp_semaphore_new(ctx(), 1, &s));
    ASSERT_EQ(0, mp_event_new(ctx(), &e));
    Args a;
    EXPECT_EQ(0, mp_args_add_lock(a.get(), l));
    EXPECT_EQ(0, mp_args_add_lock(a.get(), r));
    EXPECT_EQ(0, mp_args_add_semaphore(a.get(), s));
    EXPECT_EQ(0, mp_args_add_event(a.get(), e));
    EXPECT_EQ(MP_EINVAL, mp_args_add_lock(a.get(), nullptr));
    EXPECT_EQ(MP_EINVAL, mp_args_add_event(nullptr, e));
    EXPECT_STREQ("lock", mp_args_object_type(a.get(), 0));
    EXPECT_STREQ("rlock", mp_args_object_type(a.get(), 1));
    EXPECT_STREQ("semaphore", mp_args_object_type(a.get(), 2));
    EXPECT_STREQ("event", mp_args_object_type(a.get(), 3));
    EXPECT_EQ(l, mp_args_lock(a.get(), 0));
    EXPECT_EQ(r, mp_args_lock(a.get(), 1));
    EXPECT_EQ(nullptr, mp_args_lock(a.get(), 2));
    EXPECT_EQ(nullptr, mp_args_event(a.get(), 0));
    EXPECT_EQ(nullptr, mp_args_barrier(a.get(), 9));
    a.reset();
    mp_lock_free(l);
    mp_lock_free(r);
    mp_semaphore_free(s);
    mp_event_free(e);
}

TEST_P(SyncTest, NothingLeftInDevShm) {
#ifdef _WIN32
    GTEST_SKIP() << "no /dev/shm on Windows";
#else
    // The objects' memory is unnamed (memfd): neither this process nor the child holds a
    // /dev/shm file for them. (This process's files, not a listing of /dev/shm: ctest runs
    // other backends' shared-memory tests alongside.)
    mp_lock *l = nullptr;
    mp_condition *cv = nullptr;
    mp_barrier *b = nullptr;
    ASSERT_EQ(0, mp_lock_new(ctx(), &l));
    ASSERT_EQ(0, mp_condition_new(ctx(), l, &cv));
    ASSERT_EQ(0, mp_barrier_new(ctx(), 2, nullptr, nullptr, MP_FOREVER, &b));
    Args a;
    EXPECT_EQ(0, mp_args_add_lock(a.get(), l));
    a.d(0.0);
    mp_process *p = start(tgt_try_acquire, a.get());
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(0, join_code(p));
    EXPECT_EQ("", dev_shm_files_in_use());
    mp_barrier_free(b);
    mp_condition_free(cv);
    mp_lock_free(l);
    EXPECT_EQ("", dev_shm_files_in_use());
#endif
}
