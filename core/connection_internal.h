/* What the connection module offers the rest of the library (listeners, queues,
 * managers): a connection made around an OS handle it then owns. */
#ifndef MP_CORE_CONNECTION_INTERNAL_H
#define MP_CORE_CONNECTION_INTERNAL_H

#include "internal.h"

enum mp__conn_kind {
    MP__CONN_SOCKET = 1, /* a socket (socketpair, AF_INET, AF_UNIX; a SOCKET on Windows) */
    MP__CONN_PIPE = 2,   /* a pipe end (posix pipe; a named pipe HANDLE on Windows) */
};

/** Wraps h (owned by the connection on success, untouched on failure). */
int mp__connection_from_os_handle(mp_os_handle h, int kind, bool readable, bool writable,
                                  mp_connection **out);

#endif
