/* multiproc listeners and clients: Listener/Client over AF_INET, AF_UNIX and AF_PIPE,
 * with CPython's authkey handshake. Included by multiproc.h. */
#ifndef MULTIPROC_LISTENER_H
#define MULTIPROC_LISTENER_H

#ifdef __cplusplus
extern "C" {
#endif

/* (filled in by the connections issue) */

#ifdef __cplusplus
}
#endif
#endif
