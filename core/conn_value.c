/* Values over a connection: the pickle subset of mp_value_dumps/mp_value_loads in
 * one CPython frame, so a Python peer's send()/recv() talk to ours. */
#include "connection_internal.h"

int mp_connection_send(mp_connection *c, const mp_value *v) {
    if (!c || !v) return mp__err(MP_EINVAL, "mp_connection_send: NULL argument");
    void *buf = NULL;
    size_t len = 0;
    int rc = mp_value_dumps(v, &buf, &len);
    if (rc) return rc;
    rc = mp_connection_send_bytes(c, buf, len);
    mp_value_buf_free(buf);
    return rc;
}

int mp_connection_recv(mp_connection *c, mp_value **out) {
    if (out) *out = NULL;
    if (!c || !out) return mp__err(MP_EINVAL, "mp_connection_recv: NULL argument");
    void *buf = NULL;
    size_t len = 0;
    int rc = mp_connection_recv_bytes(c, 0, &buf, &len);
    if (rc) return rc;
    /* The whole message is in hand: a decoding error leaves the stream in step. */
    mp_value_limits lim = mp__connection_value_limits(c);
    uint64_t max = mp_connection_max_message(c);
    if (!lim.max_size) lim.max_size = (max && max < (uint64_t)SIZE_MAX) ? (size_t)max : 0;
    rc = mp_value_loads(buf, len, &lim, out);
    mp_connection_free_bytes(buf);
    return rc;
}
