/* Helpers shared by the files of the Linux OS layer; nothing outside linux/ includes
 * this (backends reach the layer through core/os*.h). */
#ifndef MP_LINUX_LINUX_H
#define MP_LINUX_LINUX_H

#include <sys/types.h>

#include "../core/os.h"

/** Milliseconds for poll() until deadline (an mp__deadline): -1 for none, rounded up
 *  so a wait never ends early. */
int mp__linux_poll_ms(double deadline);
/** poll() for readability: 0, MP_ETIMEDOUT (not recorded), or an error. */
int mp__linux_poll_in(int fd, double timeout);
/** pidfd_open with close-on-exec; -1 and errno on failure. */
int mp__linux_pidfd_open(pid_t pid);

#endif
