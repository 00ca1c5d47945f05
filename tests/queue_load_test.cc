// Queue load test on every start method: 8 producers x 8 consumers share one queue;
// every item carries its producer, sequence number and a content pattern, and the
// consumers check each one whole and record it in a shared bitmap, so a torn, lost or
// duplicated item fails. Items per producer: MP_QUEUE_LOAD_ITEMS (the full
// size is 1000000; the default keeps CI short).
#include <atomic>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fixture.h"
#include "targets.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <sys/mman.h>
#include <unistd.h>
#endif

using namespace mpt;

namespace {

constexpr int kProducers = 8, kConsumers = 8;
constexpr int64_t kDefaultItems = 25000;

int64_t items_per_producer() {
    const char *e = getenv("MP_QUEUE_LOAD_ITEMS");
    long long n = e ? atoll(e) : 0;
    return n > 0 ? (int64_t)n : kDefaultItems;
}

// ---- what the consumers record, in shared memory ----

struct Tally {
    std::atomic<uint64_t> bad, dup;
    std::atomic<uint64_t> got[kConsumers][kProducers];
    std::atomic<uint64_t> seq_sum[kProducers];
    std::atomic<uint64_t> bytes;
    std::atomic<int> why_taken;
    char why[240];                 // the first bad item, for the failure message
    std::atomic<uint64_t> seen[1]; // bitmap: kProducers * items bits
};

size_t tally_size(int64_t items) {
    size_t words = ((size_t)items * kProducers + 63) / 64;
    return sizeof(Tally) + words * sizeof(uint64_t);
}

struct Shm {
    mp_os_handle h = MP_INVALID_OS_HANDLE;
    Tally *t = nullptr;
    size_t size = 0;
    bool owner = false;
    // Creates (owner) or maps the handle a child received.
    explicit Shm(size_t n) : size(n), owner(true) {
#ifdef _WIN32
        HANDLE m = CreateFileMappingW(INVALID_HANDLE_VALUE, nullptr, PAGE_READWRITE,
                                      (DWORD)((uint64_t)n >> 32), (DWORD)n, nullptr);
        if (!m) return;
        h = (mp_os_handle)m;
#else
        int fd = memfd_create("queue-load-test", MFD_CLOEXEC);
        if (fd < 0) return;
        h = fd;
        if (ftruncate(fd, (off_t)n) != 0) return;
#endif
        map();
    }
    Shm(mp_os_handle hh, size_t n) : h(hh), size(n) { map(); }
    ~Shm() {
#ifdef _WIN32
        if (t) UnmapViewOfFile(t);
#else
        if (t) munmap(t, size);
#endif
        if (owner && h != MP_INVALID_OS_HANDLE) handle_close(h);
    }
    Shm(const Shm &) = delete;
    Shm &operator=(const Shm &) = delete;

  private:
    void map() {
#ifdef _WIN32
        t = (Tally *)MapViewOfFile((HANDLE)h, FILE_MAP_ALL_ACCESS, 0, 0, size);
#else
        void *p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, (int)h, 0);
        t = p == MAP_FAILED ? nullptr : (Tally *)p;
#endif
    }
};

// ---- items ----

uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

struct Hdr {
    uint64_t magic, producer, seq, len;
};
constexpr uint64_t kMagic = 0x4c4f414451554555ull;

uint64_t seed_of(uint64_t producer, uint64_t seq) {
    uint64_t s = producer * 0x9E3779B97F4A7C15ull ^ seq;
    return splitmix(&s);
}

// Mostly small and varied; now and then one far bigger than a typical ring.
size_t item_len(uint64_t producer, uint64_t seq) {
    uint64_t s = seed_of(producer, seq);
    uint64_t r = splitmix(&s);
    if (seq % 4096 == 4095) return 256 * 1024 + (size_t)(r % 65536);
    return sizeof(Hdr) + (size_t)(r % 480);
}

void make_item(uint64_t producer, uint64_t seq, std::vector<uint8_t> *out) {
    size_t n = item_len(producer, seq);
    out->resize(n);
    Hdr h{kMagic, producer, seq, n};
    memcpy(out->data(), &h, sizeof h);
    uint64_t s = seed_of(producer, seq) ^ n;
    size_t i = sizeof h;
    for (; i + 8 <= n; i += 8) {
        uint64_t w = splitmix(&s);
        memcpy(out->data() + i, &w, 8);
    }
    uint64_t w = splitmix(&s);
    memcpy(out->data() + i, &w, n - i);
}

// "" for a whole item (and its producer and seq), else what is wrong.
std::string check_item(const uint8_t *p, size_t n, uint64_t items, uint64_t *producer,
                       uint64_t *seq) {
    Hdr h;
    if (n < sizeof h) return "an item of " + std::to_string(n) + " bytes";
    memcpy(&h, p, sizeof h);
    if (h.magic != kMagic || h.producer >= (uint64_t)kProducers || h.seq >= items)
        return "bad header";
    if (h.len != n || item_len(h.producer, h.seq) != n)
        return "item " + std::to_string(h.producer) + "/" + std::to_string(h.seq) + " has " +
               std::to_string(n) + " bytes, expected " +
               std::to_string(item_len(h.producer, h.seq));
    uint64_t s = seed_of(h.producer, h.seq) ^ n;
    size_t i = sizeof h;
    for (; i + 8 <= n; i += 8) {
        uint64_t w = splitmix(&s);
        if (memcmp(p + i, &w, 8) != 0) break;
    }
    if (i < n) {
        uint64_t w = splitmix(&s);
        if (i + 8 <= n || memcmp(p + i, &w, n - i) != 0)
            return "item " + std::to_string(h.producer) + "/" + std::to_string(h.seq) +
                   " differs near byte " + std::to_string(i) + " of " + std::to_string(n);
    }
    *producer = h.producer;
    *seq = h.seq;
    return "";
}

// ---- targets ----

// [0] queue, [1] int producer, [2] int items.
int tgt_load_producer(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    int64_t me = mp_args_int(a, 1), items = mp_args_int(a, 2);
    if (!q || me < 0 || me >= kProducers) return 90;
    std::vector<uint8_t> it;
    for (int64_t s = 0; s < items; s++) {
        make_item((uint64_t)me, (uint64_t)s, &it);
        int rc = mp_queue_put_bytes(q, it.data(), it.size(), kWait);
        if (rc != 0) {
            fprintf(stderr, "[load producer %d] put %" PRId64 ": %s %s\n", (int)me, s,
                    mp_err_name(rc), mp_last_error_message());
            return 1;
        }
    }
    return 0;
}

void record_bad(Tally *t, const std::string &why) {
    t->bad++;
    if (t->why_taken.exchange(1) == 0) snprintf(t->why, sizeof t->why, "%s", why.c_str());
}

// [0] queue, [1] shm, [2] shm size, [3] int consumer, [4] int items: takes items until
// an empty one, half the consumers into a small buffer that grows on MP_ETOOBIG.
int tgt_load_consumer(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    Shm shm(mp_args_os_handle(a, 1), (size_t)mp_args_int(a, 2));
    int64_t me = mp_args_int(a, 3), items = mp_args_int(a, 4);
    Tally *t = shm.t;
    if (!q || !t || me < 0 || me >= kConsumers) return 90;
    bool into = me % 2 == 1;
    std::vector<uint8_t> buf(256);
    for (;;) {
        void *p = nullptr;
        size_t n = 0;
        int rc;
        if (into) {
            rc = mp_queue_get_bytes_into(q, buf.data(), buf.size(), &n, kWait);
            if (rc == MP_ETOOBIG) {
                if (n <= buf.size()) {
                    record_bad(t, "MP_ETOOBIG for an item that fits");
                    return 2;
                }
                buf.resize(n); // the item stays in the queue; another consumer may take it
                continue;
            }
        } else {
            rc = mp_queue_get_bytes(q, &p, &n, kWait);
        }
        if (rc != 0) {
            record_bad(t, std::string("get: ") + mp_err_name(rc) + " " + mp_last_error_message());
            return 1;
        }
        const uint8_t *d = into ? buf.data() : (const uint8_t *)p;
        if (n == 0) { // stop
            mp_queue_free_bytes(p);
            return 0;
        }
        uint64_t pr = 0, sq = 0;
        std::string why = check_item(d, n, (uint64_t)items, &pr, &sq);
        mp_queue_free_bytes(p);
        if (!why.empty()) {
            record_bad(t, why);
            continue;
        }
        uint64_t bit = pr * (uint64_t)items + sq;
        uint64_t mask = 1ull << (bit % 64);
        if (t->seen[bit / 64].fetch_or(mask) & mask) t->dup++;
        t->got[me][pr]++;
        t->seq_sum[pr] += sq;
        t->bytes += n;
    }
}

bool join_within(mp_process *p, double timeout, int *code) {
    if (mp_process_join(p, timeout) != 0 || mp_process_is_alive(p)) return false;
    return mp_process_exitcode(p, code) == 0;
}

} // namespace

class QueueLoadTest : public ProcessTest {};

INSTANTIATE_TEST_SUITE_P(Backends, QueueLoadTest, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

TEST_P(QueueLoadTest, EightProducersEightConsumers) {
    const int64_t items = items_per_producer();
    const size_t shm_size = tally_size(items);
    Shm shm(shm_size);
    ASSERT_NE(nullptr, shm.t) << "shared memory for the tally";
    Tally *t = shm.t;
    mp_queue_opts o = {};
    o.kind = MP_QUEUE;
    o.maxsize = 1024; // bounded, so producers also wait for consumers
    mp_queue *q = nullptr;
    ASSERT_EQ(0, mp_queue_new_opts(ctx(), &o, &q)) << err();

    double t0 = now();
    std::vector<mp_process *> cons, prods;
    for (int c = 0; c < kConsumers; c++) {
        Args a;
        EXPECT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
        a.h(shm.h).i((int64_t)shm_size).i(c).i(items);
        mp_process *p = start(tgt_load_consumer, a.get());
        ASSERT_NE(nullptr, p);
        cons.push_back(p);
    }
    for (int pi = 0; pi < kProducers; pi++) {
        Args a;
        EXPECT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
        a.i(pi).i(items);
        mp_process *p = start(tgt_load_producer, a.get());
        ASSERT_NE(nullptr, p);
        prods.push_back(p);
    }
    // The fixture's watchdog bounds the whole test; these bound each wait below it.
    const double limit = kTestLimit - 10;
    for (mp_process *p : prods) {
        int code = -1;
        EXPECT_TRUE(join_within(p, limit - (now() - t0), &code))
            << "a producer did not finish " << err();
        EXPECT_EQ(0, code) << "producer exit code";
    }
    for (int c = 0; c < kConsumers; c++)
        EXPECT_EQ(0, mp_queue_put_bytes(q, nullptr, 0, kWait)) << "stop item " << err();
    for (mp_process *p : cons) {
        int code = -1;
        EXPECT_TRUE(join_within(p, limit - (now() - t0), &code))
            << "a consumer did not finish " << err();
        EXPECT_EQ(0, code) << "consumer exit code";
    }
    double secs = now() - t0;

    EXPECT_EQ(0u, t->bad.load()) << "torn or failed items; the first: " << t->why;
    EXPECT_EQ(0u, t->dup.load()) << "items delivered more than once";
    uint64_t total = 0;
    const uint64_t want_sum = (uint64_t)items * (uint64_t)(items - 1) / 2;
    for (int pi = 0; pi < kProducers; pi++) {
        uint64_t n = 0;
        for (int c = 0; c < kConsumers; c++) n += t->got[c][pi].load();
        total += n;
        EXPECT_EQ((uint64_t)items, n) << "items of producer " << pi;
        EXPECT_EQ(want_sum, t->seq_sum[pi].load()) << "sum of producer " << pi << "'s sequence ids";
    }
    size_t words = ((size_t)items * kProducers + 63) / 64;
    uint64_t set = 0;
    for (size_t w = 0; w < words; w++) {
        uint64_t v = t->seen[w].load();
        while (v) {
            v &= v - 1;
            set++;
        }
    }
    EXPECT_EQ((uint64_t)items * kProducers, set) << "distinct items seen";
    void *p = nullptr;
    size_t n = 0;
    EXPECT_EQ(MP_EEMPTY, mp_queue_get_bytes(q, &p, &n, 0)) << "left in the queue";
    mp_queue_free_bytes(p);
    std::string spread;
    for (int c = 0; c < kConsumers; c++) {
        uint64_t k = 0;
        for (int pi = 0; pi < kProducers; pi++) k += t->got[c][pi].load();
        spread += (c ? " " : "") + std::to_string(k);
    }
    printf("[ load     ] %s: %d x %d x %" PRId64
           " items, %.1f MiB in %.2f s (%.0f items/s); per consumer: %s\n",
           backend().c_str(), kProducers, kConsumers, items, (double)t->bytes.load() / (1 << 20),
           secs, (double)total / secs, spread.c_str());
    mp_queue_free(q);
}
