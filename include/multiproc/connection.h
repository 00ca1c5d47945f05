/* multiproc connections: Pipe, Connection, wait, Listener/Client with authkeys,
 * wire-compatible with CPython's multiprocessing.connection. Included by multiproc.h. */
#ifndef MULTIPROC_CONNECTION_H
#define MULTIPROC_CONNECTION_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_connection mp_connection;

/* (filled in by the connections issue) */

#ifdef __cplusplus
}
#endif
#endif
