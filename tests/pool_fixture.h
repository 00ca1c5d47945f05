// The pool tests' fixture (pool_test.cc, pool_lifecycle_test.cc, pool_crash_test.cc):
// owning holders for pools, results and iterators, the objects tasks reach through the
// initializer (a gate, a report queue, a lock), callbacks and sources that record what
// they see, and PoolTest, the per-backend fixture. The task functions are in
// pool_tasks.h. Written against include/multiproc/pool.h alone.
#ifndef MP_TESTS_POOL_FIXTURE_H
#define MP_TESTS_POOL_FIXTURE_H

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "fixture.h"
#include "pool_tasks.h"

namespace mpt {

// ---- owning holders ----

struct AsyncFree {
    void operator()(mp_async_result *r) const { mp_async_result_free(r); }
};
using Async = std::unique_ptr<mp_async_result, AsyncFree>;
struct ImapFree {
    void operator()(mp_imap *it) const { mp_imap_free(it); }
};
using Imap = std::unique_ptr<mp_imap, ImapFree>;

// A pool freed with the scope, also when an assertion returns early. Before the free it
// runs the fixture's hook (which opens the gate, so that a worker thread of the dummy
// backend blocked in a task can end and be joined); after it, it checks that every worker
// process it saw has ended (on forkserver they are not our children, so the fixture's
// own check of its children cannot see them).
class PoolHolder {
  public:
    PoolHolder() = default;
    PoolHolder(mp_pool *p, bool processes, std::function<void()> before_free)
        : p_(p), processes_(processes), before_free_(std::move(before_free)) {}
    PoolHolder(PoolHolder &&o) noexcept { *this = std::move(o); }
    PoolHolder &operator=(PoolHolder &&o) noexcept;
    PoolHolder(const PoolHolder &) = delete;
    PoolHolder &operator=(const PoolHolder &) = delete;
    ~PoolHolder() { reset(); }

    mp_pool *get() const { return p_; }
    explicit operator bool() const { return p_ != nullptr; }
    // A worker pid seen by a task (workers replaced since are checked at the free too).
    void note_pid(int64_t pid);
    // Frees the pool now (see above); open_gate false skips the hook.
    void reset(bool open_gate = true);

  private:
    mp_pool *p_ = nullptr;
    bool processes_ = false;
    std::function<void()> before_free_;
    std::set<int64_t> seen_;
};

// Runs call, which must fail with one of codes and leave *out NULL; anything it hands
// out by mistake is freed with free_fn.
template <class T, class F>
void expect_fails(std::initializer_list<int> codes, T **out, void (*free_fn)(T *), F call,
                  const std::string &what) {
    *out = bogus<T>();
    int rc = call();
    std::string msg = mp_last_error_message();
    EXPECT_TRUE(std::find(codes.begin(), codes.end(), rc) != codes.end())
        << what << ": " << mp_err_name(rc) << " (" << msg << "), want "
        << mp_err_name(*codes.begin());
    EXPECT_EQ(nullptr, *out) << what << ": the out pointer is NULL on failure";
    if (*out && *out != bogus<T>()) free_fn(*out);
    *out = nullptr;
}

// ---- the test side ----

// A report a task put on the report queue: [kind, item, pid, thread id, tag].
struct Report {
    std::string kind;
    int64_t item = 0, pid = 0, tid = 0, tag = 0;
};

// Records what a call's callbacks saw (one object per call; opts() points them here).
// Callbacks of a whole test also check, through globals, that they never overlap.
struct CallLog {
    struct Progress {
        size_t done, total, failed;
    };
    std::mutex mu;
    int callbacks = 0, errors = 0;
    const mp_value *result = nullptr; // as given to the callback (borrowed)
    Value result_copy;                // a copy taken in the callback
    int error_code = 0;
    std::string error_message;
    std::vector<Progress> progress;
    std::set<int64_t> threads;

    mp_call_opts opts(size_t chunksize = 0, bool with_progress = true);
    // Waits (kWait at most) until callback + error_callback calls reach n.
    bool wait_calls(int n);
    // Waits (kWait at most) until a progress call says done + failed == total, or done ==
    // total, with total > 0 (see pool_lifecycle_test.cc for why both).
    bool wait_progress_end();
    int calls() {
        std::lock_guard<std::mutex> lk(mu);
        return callbacks + errors;
    }
};
// Set when two callbacks (of any call) ran at once; reset by the fixture.
extern std::atomic<bool> g_callbacks_overlapped;

// A source of ints 0, 1, 2 ... (limit < 0: endless); fail_after >= 0 makes it fail with
// fail_code once that many items were given. Counts what it gave, notes the threads it
// ran on and whether two calls overlapped.
struct CountingSource {
    int64_t limit = -1;
    int64_t fail_after = -1;
    int fail_code = MP_EIO;
    std::atomic<int64_t> pulled{0};
    std::atomic<int> inside{0};
    std::atomic<bool> overlapped{false};
    std::atomic<bool> ended{false};
    std::mutex mu;
    std::set<int64_t> threads;
};
int counting_source(void *ctx, mp_value **item);

// The chunk sizes under test: 1, 7, larger than any input, Python's rule and 0
// (adaptive).
constexpr size_t kBigChunk = 100000;
const std::vector<size_t> &all_chunksizes();
// Input sizes: 0, 1, a prime, and thousands (also prime).
const std::vector<size_t> &all_sizes();
std::string chunk_name(size_t c);

// The calls that map a function over items, for the matrices of the tests.
enum class Method {
    Map,
    MapAsync,
    Starmap,
    StarmapAsync,
    Imap,
    ImapUnordered,
    MapSource,
    ImapSource,
    ImapSourceUnordered,
    MapRecords,
    MapRecordsAsync
};
const char *method_name(Method m);

// Every pool test runs once per backend ("Backends/PoolTest.X/<backend>") and once more
// on Python's ThreadPool ("ThreadPool/PoolTest.X/dummy", every pool made with
// mp_thread_pool_new; named after dummy so that it runs with that backend's ctest).
class PoolTest : public ProcessTest {
  protected:
    void SetUp() override;
    void TearDown() override;

    // A pool of `processes` workers on this backend (mp_thread_pool_new on the ThreadPool
    // instantiation); opts as given otherwise. An empty holder (and a failure) on error.
    PoolHolder make_pool(int processes, mp_pool_opts o = mp_pool_opts());
    // The same with init_env(tag, gate, report queue, lock) as the initializer.
    PoolHolder make_env_pool(int processes, int64_t tag = 42, mp_pool_opts o = mp_pool_opts());
    // Workers are processes (not threads): not on dummy, not a ThreadPool.
    bool process_workers() const { return !dummy() && !thread_pool_; }

    // The objects tasks reach through init_env (made on first use, freed at teardown).
    void add_env_args(Args &a, int64_t tag);
    mp_event *gate();
    mp_queue *report_queue();
    mp_lock *env_lock();
    // Opens the gate (task_gated) and task_sleep's release; the holders and the teardown
    // do it too, so that no worker thread stays blocked.
    void open_gate();
    // The first report of kind (and item, if item >= 0) within timeout; the others met
    // on the way are kept for later. false on timeout.
    bool take_report(const std::string &kind, int64_t item, Report *out, double timeout = kWait);
    // Every report now in the queue or kept (without waiting), in arrival order.
    std::vector<Report> drain_reports();

    // The workers' pids (thread ids on dummy) now; a failure on error.
    std::vector<int64_t> worker_pids(mp_pool *p);
    // Waits (kWait at most) until the pool has n workers, all running (processes) and
    // none of them in `gone`: the worker count is restored. "" or what is wrong.
    std::string wait_workers(mp_pool *p, int n, const std::vector<int64_t> &gone = {});

    // Runs method over n items with chunksize and checks every result exactly (and the
    // order where the method keeps it). Failures name the method, n and chunksize.
    void check_method(mp_pool *p, Method m, size_t n, size_t chunksize);
    // Takes n results of an imap and checks them (ordered: affine(first + i) in order;
    // unordered: each of affine(first .. first + n) once), then MP_EOF.
    void check_imap(mp_imap *it, size_t n, bool ordered, int64_t first = 0);
    // check_method for every input size and chunk size, on a pool of 3 workers (sources
    // skip MP_CHUNKSIZE_PYTHON, which needs the length Python's rule divides).
    void check_matrix(Method m);

    bool thread_pool_ = false; // the ThreadPool instantiation

  private:
    mp_event *gate_ = nullptr;
    mp_queue *reports_q_ = nullptr;
    mp_lock *lock_ = nullptr;
    std::vector<Report> kept_;
};

// True when msg names the number n as a word of its own ("exit code 3", "signal 11",
// "-11"), not inside a longer number.
bool names_number(const std::string &msg, long long n);
// What a worker's death of this kind must be named by in the message of its
// MP_EWORKERDIED: "" when msg does, else what was expected.
std::string death_named(int kind, const std::string &msg);

} // namespace mpt

#endif
