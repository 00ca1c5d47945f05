// Queues on every start method: Queue, SimpleQueue, JoinableQueue; bytes and values,
// FIFO order, nowait/timeouts, maxsize, close, task_done/join, items from 0 bytes to
// far more than the ring, queues handed to children and a child that exits right after a
// big put (CPython gh-73983). Processes killed in the middle of a put or a get are in
// queue_death_test.cc, the 8 x 8 load test in queue_load_test.cc, the fixture in
// queue_fixture.h.
#include <atomic>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "queue_fixture.h"

using namespace mpt;

INSTANTIATE_TEST_SUITE_P(Backends, QueueTest, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

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
    ASSERT_EQ(0, mp_queue_new(nullptr, -3, &dflt))
        << "ctx NULL = default; maxsize < 0 = unbounded " << err();
    for (int i = 0; i < 20; i++)
        EXPECT_EQ(0, mp_queue_put_bytes(dflt, "x", 1, 0)) << "an unbounded queue is never full";
    EXPECT_FALSE(mp_queue_full(dflt));
    for (mp_queue *x : {q, s, j, d, dflt}) mp_queue_free(x);
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
        if (q && q != (mp_queue *)&o) mp_queue_free(q);
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
    for (size_t i = 0; i < sizes.size(); i++) put_item(q, 1, i, sizes[i], 0);
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
    ASSERT_EQ(0, mp_queue_get_bytes_into(q, buf, 0, &len, kWait))
        << "an empty item fits in 0 bytes " << err();
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
    EXPECT_EQ(MP_EFULL, mp_queue_put_bytes(q, it.data(), it.size(), 0.1))
        << "a timed put that expires";
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
    for (int i = 0; i < count; i++) want += (i ? " " : "") + id_str(6, (uint64_t)i);
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
    for (int i = 0; i < count; i++) put_item(q, 1, (uint64_t)i, 64, 0);
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
    ASSERT_EQ(0, mp_queue_get_bytes_into(q, buf.data(), 1000, &len, 0))
        << "exactly the size " << err();
    EXPECT_EQ("", item_diff(buf.data(), len, 1, 0, 1000));
    EXPECT_EQ(MP_ETOOBIG, mp_queue_get_bytes_into(q, buf.data(), big - 1, &len, 0))
        << "an item bigger than the ring";
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
            if (c >= 0 && c < consumers) per_consumer[(size_t)c]++;
        }
        mp_value_free(v);
    }
    for (mp_process *p : prods) EXPECT_EQ(0, join_code(p));
    for (int c = 0; c < consumers; c++)
        EXPECT_EQ(0, mp_queue_put_bytes(work, nullptr, 0, kWait)) << err(); // stop
    for (mp_process *p : cons) EXPECT_EQ(0, join_code(p));
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
    for (mp_process *p : prods) EXPECT_EQ(0, join_code(p));
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
        EXPECT_TRUE(read_msg(outs[(size_t)i]->r, &m, kWait))
            << "consumer " << i << " reported nothing";
        std::vector<uint32_t> v(m.size() / sizeof(uint32_t));
        if (!v.empty()) memcpy(v.data(), m.data(), v.size() * sizeof(uint32_t));
        for (size_t k = 0; k + 1 < v.size(); k += 2) {
            if (v[k] == 0xffffffffu)
                bad++;
            else if (v[k] < 20 || v[k] >= 20u + nproc || v[k + 1] >= (uint32_t)per)
                foreign++;
            else
                seen[v[k] - 20][v[k + 1]]++;
        }
    }
    for (mp_process *p : cons) EXPECT_EQ(0, join_code(p));
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
        EXPECT_EQ(10 + (int)k, join_code(p))
            << "kind " << k << " (10 + kind: the child saw a \"queue\")";
    }
}

// Items from 1 byte to far more than the ring, in both directions, arrive whole.
TEST_P(QueueTest, ItemSizesUpToBeyondTheRing) {
    mp_queue *q = make_queue(MP_QUEUE, 0, kSmallRing);
    ASSERT_NE(nullptr, q);
    std::vector<uint64_t> sizes = {1, 2, 7, 8, 9, 31, 32, 33, 63, 64, 65, 4095, 4096, 4097};
    for (int64_t d = -72; d <= 72; d += 8)
        for (int64_t e : {-1, 0, 1}) sizes.push_back((uint64_t)((int64_t)kSmallRing + d + e));
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
        for (size_t i = 0; i < sizes.size(); i++) expect_item(q, 4, i, sizes[i]);
        EXPECT_EQ(0, join_code(p));
    }
    // Parent -> child.
    {
        for (size_t i = 0; i < sizes.size(); i++) put_item(q, 5, i, sizes[i]);
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
    for (size_t i = 0; i < sizes.size(); i++) put_item(q, 6, i, sizes[i]);
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
