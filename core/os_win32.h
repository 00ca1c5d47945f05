/* What the win32 start method (backends/win32.c) needs of the Windows OS layer beyond
 * core/os.h. The Windows layer implements it; a Linux build leaves it out. Include
 * <windows.h> first. */
#ifndef MP_CORE_OS_WIN32_H
#define MP_CORE_OS_WIN32_H

#include <wchar.h>

#include "os.h"

#define MP__H(h) ((HANDLE)(h))
#define MP__OSH(h) ((mp_os_handle)(h))

/** Records the Win32 error code (as given, not re-read: a DWORD) as an MP_E* code with
 *  the message "what: <system text>"; returns the code. */
int mp__win_err(unsigned long code, const char *what);
/** UTF-8 to a freshly allocated wide string (mp__free); NULL with an error recorded. */
wchar_t *mp__win_to_wide(const char *s);

#endif
