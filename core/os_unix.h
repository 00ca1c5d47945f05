/* What the Unix start methods (backends/fork.c, spawn.c, forkserver.c, apr.c and
 * their helpers in backends/unix.c) need of the OS layer beyond core/os.h. The Linux
 * layer implements it; a Windows build has no such backend and leaves it out. */
#ifndef MP_CORE_OS_UNIX_H
#define MP_CORE_OS_UNIX_H

#include "os.h"

/** A pidfd for process pid (close-on-exec): pollable, ready once it ends, and tied to
 *  that very process (no pid reuse). */
int mp__os_pidfd_open(int64_t pid, int *fd);
/** Sends signo through a pidfd: 0 also when the process has ended already. */
int mp__os_pidfd_signal(int pidfd, int signo);
/** Closes every fd >= 3 except those in keep (a child that must hold only what it was
 *  given). */
void mp__os_close_fds_except(const int *keep, size_t n);

#endif
