// Managers beyond CPython, on every start method: the references of a client process
// that is killed (-9) or exits without freeing its proxies go with it (its lease); a
// SharedMemoryManager unlinks the blocks its clients made at shutdown, also a killed
// client's; the server closes idle connections, bounds their number and the time a
// handshake may take, and a proxy whose kept connection was closed while idle just
// reconnects.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "manager_fixture.h"
#include "shm_fixture.h"

using namespace mpt;

namespace {

size_t objects(mp_manager *m) {
    size_t n = SIZE_MAX;
    if (mp_manager_number_of_objects(m, &n) != 0) return SIZE_MAX;
    return n;
}

// [0] dict proxy, [1] pipe write end, [2] release pipe read end, [3] int: free what it
// made (1) or not (0). Takes an iterator over the dict (an object of its own, held by
// this process), reports 'R', then waits to be released (or killed).
int tgt_hold_iterator(mp_args *a) {
    mp_proxy *d = mp_args_proxy(a, 0);
    mp_proxy *it = nullptr;
    if (!d || mp_proxy_call_proxy(d, "__iter__", nullptr, nullptr, &it) != 0) return 2;
    char c = 'R';
    if (!write_all(mp_args_os_handle(a, 1), &c, 1)) return 3;
    read_exact(mp_args_os_handle(a, 2), &c, 1, kCap);
    if (mp_args_int(a, 3)) mp_proxy_free(it);
    return 0;
}

// [0] manager address, [1] pipe write end, [2] release pipe read end: makes a block and
// a ShareableList through the SharedMemoryManager at the address, reports their names,
// then waits to be released or killed, without unlinking anything.
int tgt_smm_blocks(mp_args *a) {
    mp_manager_opts o = {};
    o.address = mp_args_str(a, 0);
    o.timeout = kCap;
    mp_manager *m = nullptr;
    mp_shm *shm = nullptr;
    mp_shareable_list *sl = nullptr;
    mp_value *items = mp_value_list_new();
    mp_value_list_append(items, mp_value_int(7));
    int rc = mp_shared_memory_manager_new(nullptr, &o, &m);
    if (!rc) rc = mp_manager_connect(m);
    if (!rc) rc = mp_manager_shared_memory(m, 4096, &shm);
    if (!rc) rc = mp_manager_shareable_list(m, items, &sl);
    mp_value_free(items);
    if (rc) return 2;
    std::string names =
        std::string(mp_shm_name(shm)) + " " + mp_shm_name(mp_shareable_list_shm(sl));
    if (!write_msg(mp_args_os_handle(a, 1), names)) return 3;
    char c;
    read_exact(mp_args_os_handle(a, 2), &c, 1, kCap);
    mp_shm_free(shm);
    mp_shareable_list_free(sl);
    mp_manager_free(m);
    return 0;
}

class ManagerLife : public ShmFixture {
  protected:
    Manager sync_manager(const mp_manager_opts *o = nullptr) {
        mp_manager_opts d = {};
        d.timeout = kCap;
        mp_manager *m = nullptr;
        EXPECT_EQ(0, mp_sync_manager_new(ctx(), o ? o : &d, &m)) << err();
        if (m) {
            EXPECT_EQ(0, mp_manager_start(m)) << err();
        }
        return Manager(m);
    }

    // A child holding an iterator of d, killed (-9) or told to exit without freeing it.
    void child_holds_then(bool kill) {
        Manager m = sync_manager();
        ASSERT_TRUE(m);
        mp_proxy *raw = nullptr;
        ASSERT_EQ(0, mp_manager_dict(m.get(), nullptr, &raw)) << err();
        Proxy d(raw);
        ASSERT_EQ(1u, objects(m.get()));
        Pipe ready, release;
        ASSERT_TRUE(pipe_open(&ready) && pipe_open(&release));
        Args a;
        ASSERT_EQ(0, mp_args_add_proxy(a.get(), d.get())) << err();
        a.h(ready.w).h(release.r).i(0);
        mp_process *p = start(tgt_hold_iterator, a.get());
        ASSERT_NE(nullptr, p);
        char c = 0;
        ASSERT_TRUE(read_exact(ready.r, &c, 1, kWait)) << "the child did not take its iterator";
        EXPECT_EQ(2u, objects(m.get())) << "the dict and the child's iterator";
        if (kill) {
            ASSERT_EQ(0, mp_process_kill(p)) << err();
        } else {
            c = 'x';
            ASSERT_TRUE(write_all(release.w, &c, 1));
        }
        EXPECT_EQ(0, mp_process_join(p, kWait)) << err();
        EXPECT_TRUE(eventually([&] { return objects(m.get()) == 1u; }))
            << "the child's references stayed: " << objects(m.get()) << " objects";
        d.reset();
        EXPECT_EQ(0u, objects(m.get()));
        pipe_close(&ready);
        pipe_close(&release);
    }
};

INSTANTIATE_TEST_SUITE_P(Backends, ManagerLife, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &i) { return i.param; });

TEST_P(ManagerLife, KilledChildDropsItsReferences) {
    if (dummy()) GTEST_SKIP() << "a dummy child is a thread: it cannot be killed";
    child_holds_then(true);
}

TEST_P(ManagerLife, ChildExitingWithoutFreeingDropsItsReferences) {
    if (dummy()) GTEST_SKIP() << "a dummy child is a thread: its process does not exit";
    child_holds_then(false);
}

// The same with a child that frees what it made: nothing is released twice (the
// dict, still held by the parent, survives the child's exit).
TEST_P(ManagerLife, ChildFreeingItsProxiesReleasesOnce) {
    Manager m = sync_manager();
    ASSERT_TRUE(m);
    mp_proxy *raw = nullptr;
    ASSERT_EQ(0, mp_manager_dict(m.get(), nullptr, &raw)) << err();
    Proxy d(raw);
    Pipe ready, release;
    ASSERT_TRUE(pipe_open(&ready) && pipe_open(&release));
    Args a;
    ASSERT_EQ(0, mp_args_add_proxy(a.get(), d.get())) << err();
    a.h(ready.w).h(release.r).i(1);
    mp_process *p = start(tgt_hold_iterator, a.get());
    ASSERT_NE(nullptr, p);
    char c = 0;
    ASSERT_TRUE(read_exact(ready.r, &c, 1, kWait));
    c = 'x';
    ASSERT_TRUE(write_all(release.w, &c, 1));
    EXPECT_EQ(0, join_code(p));
    EXPECT_TRUE(eventually([&] { return objects(m.get()) == 1u; })) << objects(m.get());
    Val k(mp_value_str("k")), v(mp_value_int(1));
    EXPECT_EQ(0, mp_proxy_setitem(d.get(), k.get(), v.get()))
        << "the dict went with the child: " << err();
    pipe_close(&ready);
    pipe_close(&release);
}

TEST_P(ManagerLife, SharedMemoryManagerUnlinksAtShutdown) {
    mp_manager_opts o = {};
    o.timeout = kCap;
    mp_manager *raw = nullptr;
    ASSERT_EQ(0, mp_shared_memory_manager_new(ctx(), &o, &raw)) << err();
    Manager m(raw);
    ASSERT_EQ(0, mp_manager_start(m.get())) << err();
    mp_shm *shm = nullptr;
    ASSERT_EQ(0, mp_manager_shared_memory(m.get(), 1000, &shm)) << err();
    std::string mine = mp_shm_name(shm);
    learn(mine);
    memcpy(mp_shm_buf(shm), "hello", 5);
    // A child makes two more and is killed (or, on dummy, ends without unlinking).
    Pipe names, release;
    ASSERT_TRUE(pipe_open(&names) && pipe_open(&release));
    Args a;
    a.s(mp_manager_address(m.get())).h(names.w).h(release.r);
    mp_process *p = start(tgt_smm_blocks, a.get());
    ASSERT_NE(nullptr, p);
    std::string theirs;
    ASSERT_TRUE(read_msg(names.r, &theirs, kWait)) << "the child made no blocks";
    size_t sp = theirs.find(' ');
    ASSERT_NE(std::string::npos, sp);
    std::vector<std::string> all = {mine, theirs.substr(0, sp), theirs.substr(sp + 1)};
    for (const std::string &n : all) learn(n);
    if (dummy()) {
        char c = 'x';
        ASSERT_TRUE(write_all(release.w, &c, 1));
    } else {
        ASSERT_EQ(0, mp_process_kill(p)) << err();
    }
    EXPECT_EQ(0, mp_process_join(p, kWait));
    mp_value *segs = nullptr;
    ASSERT_EQ(0, mp_manager_list_segments(m.get(), &segs)) << err();
    Val hold(segs);
    EXPECT_EQ(3u, mp_value_len(segs));
    // (The killed child's blocks may be gone already: the library's tracker unlinks
    // what a dead process made. This process's block stays until the shutdown.)
    if (kPosixShm) {
        EXPECT_TRUE(dev_shm_has(mine)) << mine << " went before the shutdown";
    }
    // Release one now, the others at shutdown.
    EXPECT_EQ(0, mp_manager_release_segment(m.get(), all[1].c_str())) << err();
    if (kPosixShm) {
        EXPECT_FALSE(dev_shm_has(all[1])) << "released but not unlinked";
    }
    EXPECT_EQ(0, mp_manager_shutdown(m.get())) << err();
    for (const std::string &n : all)
        if (kPosixShm) {
            EXPECT_FALSE(dev_shm_has(n)) << n << " is still there after shutdown";
        }
    EXPECT_EQ(0, memcmp(mp_shm_buf(shm), "hello", 5)) << "the mapping must outlive the name";
    mp_shm_free(shm);
    pipe_close(&names);
    pipe_close(&release);
}

TEST_P(ManagerLife, BadSegmentNamesAreRefused) {
    mp_manager *raw = nullptr;
    mp_manager_opts o = {};
    o.timeout = kCap;
    ASSERT_EQ(0, mp_shared_memory_manager_new(ctx(), &o, &raw)) << err();
    Manager m(raw);
    ASSERT_EQ(0, mp_manager_start(m.get())) << err();
    EXPECT_EQ(MP_EINVAL, mp_manager_release_segment(m.get(), "../../etc/passwd"));
    EXPECT_NE(std::string::npos, err().find("ValueError")) << err();
    EXPECT_EQ(MP_EINVAL, mp_manager_release_segment(m.get(), nullptr));
    // A sync manager has no segments at all: Python's server says it does not know it.
    Manager s = sync_manager();
    ASSERT_TRUE(s);
    mp_value *out = nullptr;
    EXPECT_NE(0, mp_manager_list_segments(s.get(), &out));
    EXPECT_EQ(nullptr, out);
}

// A server whose socket file was removed cannot be asked to shut down: a process is
// terminated, and a dummy server (a thread of this process) is told directly, so that
// free returns instead of waiting for a thread nothing would end.
TEST_P(ManagerLife, ShutdownOfAnUnreachableServerEnds) {
#ifdef _WIN32
    GTEST_SKIP() << "a named pipe has no file to remove";
#else
    Manager m = sync_manager();
    ASSERT_TRUE(m);
    std::string path = mp_manager_address(m.get());
    ASSERT_EQ('/', path[0]) << path;
    ASSERT_EQ(0, unlink(path.c_str()));
    mp_proxy *p = nullptr;
    EXPECT_NE(0, mp_manager_dict(m.get(), nullptr, &p)) << "the server was still reachable";
    m.reset(); // mp_manager_free: shutdown, then join (a hang here fails at the watchdog)
    EXPECT_TRUE(eventually([] {
        mp_process *kids[8];
        size_t n = 0;
        return mp_active_children(kids, 8, &n) == 0 && n == 0;
    })) << "the server is still running";
#endif
}

TEST_P(ManagerLife, IdleConnectionsCloseAndProxiesReconnect) {
    mp_manager_opts o = {};
    o.timeout = kCap;
    o.idle_timeout = 0.3;
    Manager m = sync_manager(&o);
    ASSERT_TRUE(m);
    mp_proxy *raw = nullptr;
    ASSERT_EQ(0, mp_manager_list(m.get(), nullptr, &raw)) << err();
    Proxy l(raw);
    Val one(mp_value_int(1));
    ASSERT_EQ(0, mp_proxy_append(l.get(), one.get())) << err();
    // An authenticated connection that never asks anything is closed by the server.
    mp_connection *idle = nullptr;
    ASSERT_EQ(0, mp_client_connect(mp_manager_address(m.get()), nullptr, kWait, &idle)) << err();
    bool ready = false;
    EXPECT_EQ(0, mp_connection_poll(idle, kWait, &ready));
    EXPECT_TRUE(ready) << "the idle connection was not closed";
    void *buf = nullptr;
    size_t n = 0;
    EXPECT_EQ(MP_EOF, mp_connection_recv_bytes(idle, 0, &buf, &n));
    mp_connection_free(idle);
    // The proxy's own connection idled out as well: the next call reconnects.
    sleep_for(1.0);
    ASSERT_EQ(0, mp_proxy_append(l.get(), one.get())) << err();
    size_t len = 0;
    EXPECT_EQ(0, mp_proxy_len(l.get(), &len)) << err();
    EXPECT_EQ(2u, len);
    // A lease does not idle out: the list is still there, held by this process.
    EXPECT_EQ(1u, objects(m.get()));
}

TEST_P(ManagerLife, SilentPeerIsDroppedAtTheHandshake) {
    mp_manager_opts o = {};
    o.timeout = kCap;
    o.idle_timeout = 0.3; // bounds the handshake too
    Manager m = sync_manager(&o);
    ASSERT_TRUE(m);
    mp_listener_opts lo = {};
    lo.no_auth = true;
    mp_connection *c = nullptr;
    ASSERT_EQ(0, mp_client_connect(mp_manager_address(m.get()), &lo, kWait, &c)) << err();
    // The server's challenge arrives; the peer never answers; the server hangs up.
    void *buf = nullptr;
    size_t n = 0;
    bool ready = false;
    ASSERT_EQ(0, mp_connection_poll(c, kWait, &ready));
    ASSERT_EQ(0, mp_connection_recv_bytes(c, 0, &buf, &n)) << err();
    EXPECT_EQ(0, memcmp(buf, "#CHALLENGE#", 11));
    mp_connection_free_bytes(buf);
    ASSERT_EQ(0, mp_connection_poll(c, kWait, &ready));
    EXPECT_TRUE(ready);
    EXPECT_EQ(MP_EOF, mp_connection_recv_bytes(c, 0, &buf, &n)) << "still connected";
    mp_connection_free(c);
}

TEST_P(ManagerLife, ConnectionLimitMakesRoomForRealClients) {
    mp_manager_opts o = {};
    o.timeout = kCap;
    o.max_connections = 3;
    Manager m = sync_manager(&o);
    ASSERT_TRUE(m);
    // A flood of idle connections, each authenticated and accepted for method calls (so
    // nothing but the limit closes them: there is no idle timeout).
    std::vector<mp_connection *> flood;
    for (int i = 0; i < 8; i++) {
        mp_connection *c = nullptr;
        ASSERT_EQ(0, mp_client_connect(mp_manager_address(m.get()), nullptr, kWait, &c)) << err();
        flood.push_back(c);
        Val req(mp_value_tuple_new());
        mp_value_list_append(req.get(), mp_value_none());
        mp_value_list_append(req.get(), mp_value_str("accept_connection"));
        mp_value *args = mp_value_tuple_new();
        mp_value_list_append(args, mp_value_str("flood"));
        mp_value_list_append(req.get(), args);
        mp_value_list_append(req.get(), mp_value_dict_new());
        ASSERT_EQ(0, mp_connection_send(c, req.get())) << err();
        bool ready = false;
        ASSERT_EQ(0, mp_connection_poll(c, kWait, &ready));
        mp_value *reply = nullptr;
        ASSERT_EQ(0, mp_connection_recv(c, &reply)) << err();
        Val hold(reply);
        EXPECT_STREQ("#RETURN", mp_value_as_str(mp_value_item(reply, 0), nullptr));
    }
    // A real client still gets through.
    mp_proxy *raw = nullptr;
    ASSERT_EQ(0, mp_manager_dict(m.get(), nullptr, &raw)) << err();
    Proxy d(raw);
    Val k(mp_value_int(1));
    EXPECT_EQ(0, mp_proxy_setitem(d.get(), k.get(), k.get())) << err();
    // The flood was cut back: most of it is closed by the server.
    int closed = 0;
    EXPECT_TRUE(eventually([&] {
        closed = 0;
        for (mp_connection *c : flood) {
            bool r = false;
            if (mp_connection_poll(c, 0, &r) == 0 && r) closed++;
        }
        return closed >= 5;
    })) << closed
        << " of 8 closed";
    for (mp_connection *c : flood) mp_connection_free(c);
}

} // namespace
