// The SyncManager typeids of a C manager used by a C client, one by one, on every start
// method: dict, list, Namespace, Value, Queue, JoinableQueue, the locks, semaphores and
// Event, and the Iterator a dict's __iter__ returns, with Python's semantics and errors
// (Condition, Barrier and Array: manager_sync_test.cc).
#include <string>
#include <thread>

#include "manager_fixture.h"

using namespace mpt;

namespace {

class ManagerTypes : public ManagerTest {};

INSTANTIATE_TEST_SUITE_P(Backends, ManagerTypes, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

// ---- the SyncManager typeids ----------------------------------------------------------

TEST_P(ManagerTypes, Dict) {
    mp_manager *m = launch();
    ASSERT_NE(nullptr, m);
    Val init(mp_value_dict_new());
    mp_value_dict_set_str(init.get(), "a", mp_value_int(1));
    Proxy d = dict(m, init.get());
    ASSERT_TRUE(d);
    mp_value_dict_set_str(init.get(), "later", mp_value_int(2)); // init was copied
    EXPECT_EQ(1u, len(d.get()));
    EXPECT_EQ("1", getitem(d.get(), S("a")));

    Val b = lst({mp_value_int(1), mp_value_str("x")});
    ASSERT_EQ(0, mp_proxy_setitem(d.get(), S("b").get(), b.get())) << err();
    ASSERT_EQ(0, mp_proxy_setitem(d.get(), I(7).get(), S("seven").get())) << err();
    EXPECT_EQ(3u, len(d.get()));
    EXPECT_EQ("[1, 'x']", getitem(d.get(), S("b")));
    EXPECT_EQ("'seven'", getitem(d.get(), I(7)));

    ASSERT_EQ(0, mp_proxy_delitem(d.get(), S("a").get())) << err();
    EXPECT_EQ(2u, len(d.get()));
    mp_value *out = junk<mp_value>();
    EXPECT_EQ(MP_ENOENT, mp_proxy_getitem(d.get(), S("a").get(), &out));
    std::string msg = last_msg();
    EXPECT_TRUE(has(msg, "KeyError")) << msg;
    EXPECT_TRUE(has(msg, "a")) << msg;
    EXPECT_EQ(nullptr, out) << "*out is NULL on failure";
    EXPECT_EQ(MP_ENOENT, mp_proxy_delitem(d.get(), S("a").get()));
    EXPECT_TRUE(has(last_msg(), "KeyError")) << last_msg();
    EXPECT_EQ(MP_EINVAL, mp_proxy_setitem(d.get(), lst({}).get(), I(1).get()))
        << "a list key is Python's TypeError";

    EXPECT_EQ("{'b': [1, 'x'], 7: 'seven'}", getvalue(d.get()));
    EXPECT_EQ("5", call(d.get(), "get", tup({mp_value_str("zz"), mp_value_int(5)})));
    EXPECT_EQ("True", call(d.get(), "__contains__", tup({mp_value_str("b")})));
    EXPECT_EQ("False", call(d.get(), "__contains__", tup({mp_value_str("a")})));
    Val upd(mp_value_dict_new());
    mp_value_dict_set_str(upd.get(), "c", mp_value_float(2.5));
    EXPECT_EQ("None", call(d.get(), "update", tup({upd.release()})));
    EXPECT_EQ("2.5", getitem(d.get(), S("c")));
    EXPECT_EQ("[1, 'x']", call(d.get(), "pop", tup({mp_value_str("b")})));
    EXPECT_EQ("{7: 'seven', 'c': 2.5}", getvalue(d.get()));
    EXPECT_TRUE(has(call(d.get(), "no_such_method"), "error MP_ENOENT"))
        << call(d.get(), "no_such_method") << " (not exposed: Python's AttributeError)";
    EXPECT_EQ("None", call(d.get(), "clear"));
    EXPECT_EQ(0u, len(d.get()));

    mp_value *exposed = nullptr;
    ASSERT_EQ(0, mp_proxy_exposed(d.get(), &exposed)) << err();
    Val ex(exposed);
    std::string es = repr(ex);
    EXPECT_EQ(MP_VALUE_TUPLE, mp_value_get_type(exposed)) << es;
    for (const char *name : {"'__getitem__'", "'__setitem__'", "'__len__'", "'get'", "'keys'"})
        EXPECT_TRUE(has(es, name)) << name << " in " << es;

    mp_proxy *bad = junk<mp_proxy>();
    EXPECT_EQ(MP_EINVAL, mp_manager_dict(m, I(5).get(), &bad)) << "dict(5) is a TypeError";
    EXPECT_EQ(nullptr, bad);
}

TEST_P(ManagerTypes, List) {
    mp_manager *m = launch();
    ASSERT_NE(nullptr, m);
    Val init = lst({mp_value_int(1), mp_value_int(2)});
    Proxy l = list(m, init.get());
    ASSERT_TRUE(l);
    EXPECT_STREQ("list", mp_proxy_typeid(l.get()));
    ASSERT_EQ(0, mp_proxy_append(l.get(), I(3).get())) << err();
    EXPECT_EQ(3u, len(l.get()));
    EXPECT_EQ("3", getitem(l.get(), I(2)));
    EXPECT_EQ("3", getitem(l.get(), I(-1)));
    mp_value *out = junk<mp_value>();
    EXPECT_EQ(MP_ENOENT, mp_proxy_getitem(l.get(), I(3).get(), &out)) << "index out of range";
    EXPECT_TRUE(has(last_msg(), "IndexError")) << last_msg();
    EXPECT_EQ(nullptr, out);
    EXPECT_EQ(MP_ENOENT, mp_proxy_setitem(l.get(), I(10).get(), I(0).get()));
    EXPECT_EQ(MP_EINVAL, mp_proxy_getitem(l.get(), S("x").get(), &out))
        << "a str index is Python's TypeError";
    ASSERT_EQ(0, mp_proxy_setitem(l.get(), I(0).get(), S("x").get())) << err();
    ASSERT_EQ(0, mp_proxy_delitem(l.get(), I(1).get())) << err();
    EXPECT_EQ("['x', 3]", getvalue(l.get()));
    EXPECT_EQ("1", call(l.get(), "index", tup({mp_value_int(3)})));
    EXPECT_TRUE(has(call(l.get(), "index", tup({mp_value_int(99)})), "error MP_EINVAL"))
        << "list.index of a missing item is Python's ValueError";
    EXPECT_EQ("None", call(l.get(), "extend", tup({list_of({mp_value_int(4), mp_value_int(5)})})));
    EXPECT_EQ("5", call(l.get(), "pop"));
    EXPECT_EQ("1", call(l.get(), "count", tup({mp_value_str("x")})));
    EXPECT_EQ("['x', 3, 4]", getvalue(l.get()));
    Proxy empty = list(m);
    ASSERT_TRUE(empty);
    EXPECT_EQ(0u, len(empty.get()));
    EXPECT_TRUE(has(call(empty.get(), "pop"), "error MP_ENOENT")) << "pop from an empty list";
}

TEST_P(ManagerTypes, Namespace) {
    mp_manager *m = launch();
    ASSERT_NE(nullptr, m);
    mp_proxy *np = nullptr;
    ASSERT_EQ(0, mp_manager_namespace(m, &np)) << err();
    Proxy ns(np);
    EXPECT_STREQ("Namespace", mp_proxy_typeid(ns.get()));
    ASSERT_EQ(0, mp_proxy_setattr(ns.get(), "x", I(1).get())) << err();
    ASSERT_EQ(0, mp_proxy_setattr(ns.get(), "name", S("two").get())) << err();
    ASSERT_EQ(0, mp_proxy_setattr(ns.get(), "x", I(3).get())) << err();
    mp_value *out = nullptr;
    ASSERT_EQ(0, mp_proxy_getattr(ns.get(), "x", &out)) << err();
    EXPECT_EQ("3", repr(Val(out)));
    out = nullptr;
    ASSERT_EQ(0, mp_proxy_getattr(ns.get(), "name", &out)) << err();
    EXPECT_EQ("'two'", repr(Val(out)));
    out = junk<mp_value>();
    EXPECT_EQ(MP_ENOENT, mp_proxy_getattr(ns.get(), "missing", &out));
    EXPECT_TRUE(has(last_msg(), "AttributeError")) << last_msg();
    EXPECT_EQ(nullptr, out);
    EXPECT_EQ("None", call(ns.get(), "__delattr__", tup({mp_value_str("x")})));
    out = junk<mp_value>();
    EXPECT_EQ(MP_ENOENT, mp_proxy_getattr(ns.get(), "x", &out)) << "deleted";
    EXPECT_EQ(nullptr, out);
}

TEST_P(ManagerTypes, Value) {
    mp_manager *m = launch();
    ASSERT_NE(nullptr, m);
    mp_proxy *vp = nullptr;
    ASSERT_EQ(0, mp_manager_value(m, "i", I(5).get(), &vp)) << err();
    Proxy v(vp);
    EXPECT_STREQ("Value", mp_proxy_typeid(v.get()));
    mp_value *out = nullptr;
    ASSERT_EQ(0, mp_proxy_get(v.get(), &out)) << err();
    EXPECT_EQ("5", repr(Val(out)));
    ASSERT_EQ(0, mp_proxy_set(v.get(), I(-7).get())) << err();
    out = nullptr;
    ASSERT_EQ(0, mp_proxy_get(v.get(), &out)) << err();
    EXPECT_EQ("-7", repr(Val(out)));

    ASSERT_EQ(0, mp_manager_value(m, "d", Val(mp_value_float(2.5)).get(), &vp)) << err();
    Proxy f(vp);
    out = nullptr;
    ASSERT_EQ(0, mp_proxy_get(f.get(), &out)) << err();
    EXPECT_EQ("2.5", repr(Val(out)));

    vp = junk<mp_proxy>();
    EXPECT_EQ(MP_EINVAL, mp_manager_value(m, "Z", I(1).get(), &vp)) << "an unknown typecode";
    EXPECT_EQ(nullptr, vp);
}

TEST_P(ManagerTypes, Queue) {
    mp_manager *m = launch();
    ASSERT_NE(nullptr, m);
    mp_proxy *qp = nullptr;
    ASSERT_EQ(0, mp_manager_queue(m, 0, false, &qp)) << err();
    Proxy q(qp);
    EXPECT_STREQ("Queue", mp_proxy_typeid(q.get()));
    mp_value *out = junk<mp_value>();
    EXPECT_EQ(MP_EEMPTY, mp_proxy_get_item(q.get(), 0.05, &out)) << why(MP_EEMPTY);
    EXPECT_EQ(nullptr, out);
    EXPECT_EQ(MP_EEMPTY, mp_proxy_get_item(q.get(), 0, &out)) << "timeout 0 tries once";
    EXPECT_EQ(MP_EEMPTY, mp_proxy_get_item(q.get(), -1, &out)) << "a negative timeout too";
    ASSERT_EQ(0, mp_proxy_put(q.get(), I(1).get(), kWait)) << err();
    ASSERT_EQ(0, mp_proxy_put(q.get(), S("two").get(), 0)) << err();
    ASSERT_EQ(0, mp_proxy_put(q.get(), lst({mp_value_int(3)}).get(), -1)) << err();
    EXPECT_EQ("3", call(q.get(), "qsize"));
    for (const char *want : {"1", "'two'", "[3]"}) {
        out = nullptr;
        ASSERT_EQ(0, mp_proxy_get_item(q.get(), kWait, &out)) << err();
        EXPECT_EQ(want, repr(Val(out))) << "FIFO order";
    }
    EXPECT_EQ("True", call(q.get(), "empty"));

    ASSERT_EQ(0, mp_manager_queue(m, 1, false, &qp)) << err();
    Proxy bounded(qp);
    ASSERT_EQ(0, mp_proxy_put(bounded.get(), I(1).get(), kWait)) << err();
    EXPECT_EQ(MP_EFULL, mp_proxy_put(bounded.get(), I(2).get(), 0));
    EXPECT_EQ(MP_EFULL, mp_proxy_put(bounded.get(), I(2).get(), 0.05));
    EXPECT_EQ("True", call(bounded.get(), "full"));
    out = nullptr;
    ASSERT_EQ(0, mp_proxy_get_item(bounded.get(), kWait, &out)) << err();
    EXPECT_EQ("1", repr(Val(out))) << "the refused puts added nothing";
    EXPECT_EQ(MP_EEMPTY, mp_proxy_get_item(bounded.get(), 0, &out));
}

TEST_P(ManagerTypes, JoinableQueue) {
    mp_manager *m = launch();
    ASSERT_NE(nullptr, m);
    mp_proxy *qp = nullptr;
    ASSERT_EQ(0, mp_manager_queue(m, 0, true, &qp)) << err();
    Proxy q(qp);
    EXPECT_STREQ("JoinableQueue", mp_proxy_typeid(q.get()));
    ASSERT_EQ(0, mp_proxy_put(q.get(), S("job").get(), kWait)) << err();
    mp_value *out = nullptr;
    ASSERT_EQ(0, mp_proxy_get_item(q.get(), kWait, &out)) << err();
    EXPECT_EQ("'job'", repr(Val(out)));
    EXPECT_EQ("None", call(q.get(), "task_done"));
    EXPECT_EQ("None", call(q.get(), "join")) << "every task is done: join returns";
    EXPECT_TRUE(has(call(q.get(), "task_done"), "error MP_EINVAL"))
        << "task_done once too often is Python's ValueError";
}

TEST_P(ManagerTypes, BlockedGetDoesNotBlockOtherThreads) {
    // A get waiting in the server must not hold up another thread's put on the same proxy
    // (each thread has a connection of its own, the server a thread per connection).
    mp_manager *m = launch();
    ASSERT_NE(nullptr, m);
    mp_proxy *qp = nullptr;
    ASSERT_EQ(0, mp_manager_queue(m, 0, false, &qp)) << err();
    Proxy q(qp);
    std::atomic<int> put_rc{1};
    std::thread t([&] {
        sleep_for(0.2); // most likely after the get below started waiting
        Val v(mp_value_str("late"));
        put_rc = mp_proxy_put(q.get(), v.get(), kWait);
    });
    mp_value *out = nullptr;
    int rc = mp_proxy_get_item(q.get(), kWait, &out);
    t.join();
    EXPECT_EQ(0, rc) << why(rc);
    EXPECT_EQ("'late'", repr(Val(out)));
    EXPECT_EQ(0, put_rc.load());
}

TEST_P(ManagerTypes, LocksSemaphoresEvent) {
    mp_manager *m = launch();
    ASSERT_NE(nullptr, m);
    Proxy l = sync(m, "Lock");
    ASSERT_TRUE(l);
    EXPECT_STREQ("Lock", mp_proxy_typeid(l.get()));
    bool acq = false;
    ASSERT_EQ(0, mp_proxy_acquire(l.get(), kWait, &acq)) << err();
    EXPECT_TRUE(acq);
    acq = true;
    ASSERT_EQ(0, mp_proxy_acquire(l.get(), 0, &acq)) << err();
    EXPECT_FALSE(acq) << "a Lock is not reentrant";
    acq = true;
    ASSERT_EQ(0, mp_proxy_acquire(l.get(), 0.05, &acq)) << err();
    EXPECT_FALSE(acq) << "held: the timeout runs out";
    ASSERT_EQ(0, mp_proxy_release(l.get())) << err();
    ASSERT_EQ(0, mp_proxy_acquire(l.get(), -1, &acq)) << err();
    EXPECT_TRUE(acq) << "free again";
    ASSERT_EQ(0, mp_proxy_release(l.get())) << err();
    EXPECT_NE(0, mp_proxy_release(l.get())) << "releasing an unlocked Lock is an error";

    Proxy r = sync(m, "RLock");
    ASSERT_TRUE(r);
    for (int i = 0; i < 2; i++) {
        acq = false;
        ASSERT_EQ(0, mp_proxy_acquire(r.get(), kWait, &acq)) << err();
        EXPECT_TRUE(acq) << "an RLock is reentrant, acquire " << i;
    }
    EXPECT_EQ(0, mp_proxy_release(r.get())) << err();
    EXPECT_EQ(0, mp_proxy_release(r.get())) << err();

    Proxy s = sync(m, "Semaphore", 2);
    ASSERT_TRUE(s);
    for (int i = 0; i < 2; i++) {
        acq = false;
        ASSERT_EQ(0, mp_proxy_acquire(s.get(), kWait, &acq)) << err();
        EXPECT_TRUE(acq) << i;
    }
    acq = true;
    ASSERT_EQ(0, mp_proxy_acquire(s.get(), 0, &acq)) << err();
    EXPECT_FALSE(acq) << "a Semaphore(2) acquired twice";
    ASSERT_EQ(0, mp_proxy_release(s.get())) << err();
    ASSERT_EQ(0, mp_proxy_acquire(s.get(), 0, &acq)) << err();
    EXPECT_TRUE(acq);

    Proxy bs = sync(m, "BoundedSemaphore", 1);
    ASSERT_TRUE(bs);
    EXPECT_EQ(MP_EINVAL, mp_proxy_release(bs.get()))
        << "released too many times: Python's ValueError " << err();

    Proxy e = sync(m, "Event");
    ASSERT_TRUE(e);
    EXPECT_EQ("False", call(e.get(), "is_set"));
    EXPECT_EQ("False", call(e.get(), "wait", tup({mp_value_float(0.05)})));
    EXPECT_EQ("None", call(e.get(), "set"));
    EXPECT_EQ("True", call(e.get(), "is_set"));
    EXPECT_EQ("True", call(e.get(), "wait", tup({mp_value_float(kWait)})));
    EXPECT_EQ("None", call(e.get(), "clear"));
    EXPECT_EQ("False", call(e.get(), "is_set"));

    mp_proxy *p = junk<mp_proxy>();
    EXPECT_NE(0, mp_manager_sync(m, "NoSuchSync", 0, &p));
    EXPECT_EQ(nullptr, p);
}

TEST_P(ManagerTypes, IteratorProxy) {
    mp_manager *m = launch();
    ASSERT_NE(nullptr, m);
    Val init(mp_value_dict_new());
    for (const char *k : {"a", "b", "c"}) mp_value_dict_set_str(init.get(), k, mp_value_int(1));
    Proxy d = dict(m, init.get());
    ASSERT_TRUE(d);
    mp_value *out = junk<mp_value>();
    EXPECT_EQ(MP_EINVAL, mp_proxy_call(d.get(), "__iter__", nullptr, nullptr, &out))
        << "__iter__ returns a proxy: mp_proxy_call refuses it";
    EXPECT_EQ(nullptr, out);
    mp_proxy *ip = nullptr;
    ASSERT_EQ(0, mp_proxy_call_proxy(d.get(), "__iter__", nullptr, nullptr, &ip)) << err();
    Proxy it(ip);
    EXPECT_STREQ("Iterator", mp_proxy_typeid(it.get()));
    EXPECT_EQ(2u, objects(m)) << "the dict and its iterator";
    std::string keys;
    for (int i = 0; i < 3; i++) keys += call(it.get(), "__next__") + " ";
    EXPECT_EQ("'a' 'b' 'c' ", keys);
    EXPECT_TRUE(has(call(it.get(), "__next__"), "error ")) << "StopIteration at the end";
    it.reset();
    EXPECT_EQ(1u, objects_become(m, 1)) << "the iterator went with its proxy";

    ip = junk<mp_proxy>();
    EXPECT_EQ(MP_EINVAL, mp_proxy_call_proxy(d.get(), "__len__", nullptr, nullptr, &ip))
        << "a plain value is not a proxy";
    EXPECT_EQ(nullptr, ip);
}

} // namespace
