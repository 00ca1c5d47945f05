// The queue tests' fixture (queue_test.cc, queue_death_test.cc): items with deterministic
// content, checked byte for byte, the targets the tests' children run (queue_fixture.cc),
// and QueueTest, the per-backend fixture with its queue helpers.
#ifndef MP_TESTS_QUEUE_FIXTURE_H
#define MP_TESTS_QUEUE_FIXTURE_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fixture.h"

namespace mpt {

constexpr size_t KiB = 1024, MiB = 1024 * 1024;
// A small ring, so that items bigger than it are cheap to make.
constexpr size_t kSmallRing = 64 * KiB;

// ---- items: deterministic content, checked byte for byte ----

// Item seq of producer: len bytes of deterministic content; from 32 bytes on it starts
// with a checked header naming both, so a torn or spliced item fails.
std::vector<uint8_t> make_item(uint32_t producer, uint64_t seq, size_t len);
// The item make_item(producer, seq, len) exactly; "" or what differs.
std::string item_diff(const void *p, size_t n, uint32_t producer, uint64_t seq, size_t len);
std::string id_str(uint32_t producer, uint64_t seq);
// A list of sizes as an args bytes value.
std::string pack_sizes(const std::vector<uint64_t> &v);
// A nested value exercising every type the codec carries.
mp_value *nested_value(int64_t tag);

// ---- child side ----

// Exit codes of the targets.
enum { kOk = 0, kBad = 90, kFail = 1, kHookNotReached = 77 };

// [0] queue, [1] int producer, [2] int first seq, [3] int count, [4] bytes sizes
// (cycled), [5] double delay before the first put: puts make_item(producer, seq, size).
int tgt_put_items(mp_args *a);
// [0] queue, [1] int count, [2] out (write end), [3] double delay: gets count items
// (each must parse whole) and writes "p:seq p:seq ..." to out, ending in "bad: why"
// at the first failure.
int tgt_get_items(mp_args *a);
// [0] queue, [1] bytes sizes, [2] int producer: gets one item per size and checks it
// is make_item(producer, index, size) exactly.
int tgt_get_sizes(mp_args *a);
// [0] work queue, [1] results queue, [2] int consumer id: takes items until an empty
// one; for each puts the value (consumer, producer, seq) or (consumer, -1, why).
int tgt_consume_until_stop(mp_args *a);
// [0] queue in, [1] queue out, [2] int tag: gets a value, which must equal
// nested_value(tag), and puts back nested_value(tag + 1).
int tgt_value_echo(mp_args *a);
// [0] queue, [1] int producer, [2] int count, [3] ready (write end), [4] go (read
// end): after the go, puts count items of 32..231 bytes as fast as it can.
int tgt_put_on_go(mp_args *a);
// [0] queue, [1] out (write end), [2] ready, [3] go: after the go, takes items as fast
// as it can until an empty one, then writes what it got as (producer, seq) u32 pairs;
// a bad item is the pair (0xffffffff, 0).
int tgt_drain_on_go(mp_args *a);
// [0] queue, [1] int count, [2] double delay: sleeps, then gets count items (whole).
int tgt_take(mp_args *a);
// [0] joinable queue, [1] int count, [2] release (read end), [3] ready (write end):
// gets count items, marks all but the last done, writes 'R', waits for a byte on
// release (kCap), marks the last done.
int tgt_joinable_worker(mp_args *a);
// [0] queue: its kind, + 10 when mp_args_object_type says "queue".
int tgt_kind(mp_args *a);

// Every queue test, once per backend: the queues it makes are freed at teardown.
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
        if (q) queues_.push_back(q);
        return q;
    }
    void TearDown() override {
        ProcessTest::TearDown();
        for (mp_queue *q : queues_) mp_queue_free(q);
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
        EXPECT_EQ(MP_EEMPTY, mp_queue_get_bytes(q, &p, &n, 0))
            << "an item is left, of " << n << " bytes";
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
        if (!p) return "start failed";
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
    // queue_death_test.cc
    void owner_death(int point, size_t len, bool hold);

    std::vector<mp_queue *> queues_;
};

} // namespace mpt

#endif
