/* What the connection module offers the rest of the library (listeners, queues,
 * managers): a connection made around an OS handle it then owns. */
#ifndef MP_CORE_CONNECTION_INTERNAL_H
#define MP_CORE_CONNECTION_INTERNAL_H

#include "os.h"

/** Wraps h (owned by the connection on success, untouched on failure). */
int mp__connection_from_os_handle(mp_os_handle h, int kind, bool readable, bool writable,
                                  mp_connection **out);

/** The limits mp_connection_set_value_limits gave c (zeros: the defaults). */
mp_value_limits mp__connection_value_limits(const mp_connection *c);

/** The connection's handle and kind (MP_INVALID_OS_HANDLE once closed). */
mp_os_handle mp__connection_handle(const mp_connection *c, int *kind);

/* ---- CPython's framing (core/connection.c) ----
 * A message is a 4-byte big-endian signed length and the payload; above 0x7fffffff
 * bytes the length is -1 followed by an 8-byte big-endian unsigned length. */
#define MP__FRAME_MAX_HEADER 12

/** Writes the header for an n-byte message to hdr; returns its length (4 or 12). */
size_t mp__conn_frame_encode(uint64_t n, unsigned char hdr[MP__FRAME_MAX_HEADER]);
/** Decodes a header from p[0..avail): 0 with *size and *hdrlen; MP_EAGAIN when more
 *  bytes are needed (*hdrlen says how many in all); MP_EPROTO for a negative length
 *  other than -1. */
int mp__conn_frame_decode(const unsigned char *p, size_t avail, uint64_t *size, size_t *hdrlen);

/** The "connection" object type: connections passed as process arguments. */
extern const mp__objtype mp__connection_objtype;

#endif
