// What the pool tests' workers run (pool_tasks.cc): task functions, record functions
// and initializers, and what they compute, for the checks. Plain functions of the test
// binary: workers of every start method reach them (spawn, forkserver and win32 workers
// re-execute this binary). No GoogleTest here.
#ifndef MP_TESTS_POOL_TASKS_H
#define MP_TESTS_POOL_TASKS_H

#include <multiproc.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace mpt {

struct ValueFree {
    void operator()(mp_value *v) const { mp_value_free(v); }
};
using Value = std::unique_ptr<mp_value, ValueFree>;

// A non-NULL pointer for out-parameters that a call must overwrite (NULL on failure).
template <class T> T *bogus() {
    static char c;
    return reinterpret_cast<T *>(&c);
}

// ---- what the tasks compute ----

// task_affine of an int item x.
inline int64_t affine(int64_t x) { return 7 * x + 3; }
// task_weighted of an argument tuple: the sum of (i + 1) * a[i] (order matters).
int64_t weighted(const std::vector<int64_t> &args);
// The ints [first, first + n) as a list.
Value int_list(size_t n, int64_t first = 0);
// The argument tuples starmap gets in the tests: (i, (i * i) % 1000, 5).
Value starmap_args(size_t n);
int64_t starmap_expected(size_t i);
// A tuple (or list) of ints, for apply's argument tuples and the like.
Value ints(std::initializer_list<int64_t> v, bool tuple = true);
// "" when results is a list of exactly want (ints), else what differs first.
std::string diff_ints(const mp_value *results, const std::vector<int64_t> &want);

// ---- value tasks ----

// Crash kinds of task_crash (and kCrashSegv for rec_crash).
enum CrashKind {
    kCrashSegv = 1,   // writes to address 16
    kCrashAbort = 2,  // abort()
    kCrashExit = 3,   // exit(3) from the task
    kCrashKilled = 4, // reports, then waits for the test to SIGKILL (TerminateProcess) it
    kCrashOom = 5     // allocates and touches 64 MiB, then raises SIGKILL on itself: it
                      // stands for the OOM killer (Windows: ends itself with
                      // STATUS_NO_MEMORY, 0xC0000017)
};
const char *crash_name(int kind);
// The exit code the test gives a worker it kills on Windows (TerminateProcess).
constexpr unsigned kWindowsKillCode = 9;
// A salt that makes rec_crash segfault.
constexpr int64_t kCrashSalt = -4242;

// An int item (or the first of an argument tuple): x -> affine(x).
int task_affine(const mp_value *arg, mp_value **result);
// A copy of the item.
int task_echo(const mp_value *arg, mp_value **result);
// None (NULL).
int task_none(const mp_value *arg, mp_value **result);
// An argument tuple of ints -> weighted(); anything else: MP_EINVAL.
int task_weighted(const mp_value *arg, mp_value **result);
// [the argument tuple's length (0 for NULL), its mp_value_type (-1 for NULL)].
int task_argc(const mp_value *arg, mp_value **result);
// fails(x): mp_task_error(MP_EINVAL, "bad item <x>"); else affine(x).
int task_fail_some(const mp_value *arg, mp_value **result);
inline bool fails(int64_t x) { return ((x % 7) + 7) % 7 == 3; }
// MP_EIO with no detail of its own.
int task_fail_plain(const mp_value *arg, mp_value **result);
// [pid, thread id, tasks run so far on this thread (this one included), the env's tag
// or -1, the number of times the initializer ran on this worker].
int task_where(const mp_value *arg, mp_value **result);
// Reports ("started", x), waits for the gate (kCap at most), returns affine(x).
int task_gated(const mp_value *arg, mp_value **result);
// Reports ("ran", x) through the queue it got from the initializer, returns affine(x).
int task_report(const mp_value *arg, mp_value **result);
// Through the lock from the initializer: mode 0 tries it without waiting (1: taken and
// released, 0: held elsewhere), mode 1 takes it (kWait) and releases it (1).
int task_lock(const mp_value *arg, mp_value **result);
// [x, seconds]: reports ("sleep", x), then sleeps that long (cut short by the test's
// release, which only a thread of the test process can see), returns affine(x).
int task_sleep(const mp_value *arg, mp_value **result);
// [x, kind, target]: x == target reports ("crash", x) and dies the way kind says;
// else affine(x).
int task_crash(const mp_value *arg, mp_value **result);

// ---- record tasks: Rec in, int64_t out ----

struct Rec {
    int64_t x;
    int64_t salt;
    uint8_t pad[16];
};
static_assert(sizeof(Rec) == 32, "Rec is 32 bytes");
inline int64_t rec_expected(const Rec &r) { return affine(r.x) ^ r.salt; }
// out = affine(x) ^ salt.
int rec_affine(const void *in, void *out);
// x == 13: MP_EINVAL; else as rec_affine.
int rec_fail(const void *in, void *out);
// 0 when out is NULL, else MP_EINVAL (for out_size 0).
int rec_no_out(const void *in, void *out);
// 64 KiB in, 8 bytes out: the FNV-1a hash of the record.
constexpr size_t kBigRec = 64 * 1024;
int rec_hash64k(const void *in, void *out);
// salt == kCrashSalt: reports ("crash", x) and segfaults; else as rec_affine.
int rec_crash(const void *in, void *out);

// ---- initializers ----

// [0] int tag, [1] gate (event) or an int, [2] report queue or an int, [3] lock or an
// int: keeps them for the tasks of this worker, reports ("init", tag), returns 0.
int init_env(mp_args *a);
// [0] int code: fails with mp_task_error(code, "init refused <code>").
int init_fail(mp_args *a);
// [0] int kind: dies that way (die()), every time.
int init_crash(mp_args *a);
// [0] event: waits until it is set (kWait at most), then returns 0.
int init_wait(mp_args *a);

// ---- the test's side ----

// task_sleep's release: open (only threads of this very process, the dummy backend's
// workers, see it) or closed.
void set_sleep_release(bool open);
// Forgets the env a dummy worker thread left for the fallback (see pool_tasks.cc).
void forget_worker_env();

} // namespace mpt

#endif
