/* Helpers shared by the files of the Windows OS layer; nothing outside win32/
 * includes this (the win32 backend reaches the layer through core/os_win32.h). */
#ifndef MP_WIN32_WIN32_H
#define MP_WIN32_WIN32_H

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
/* Windows 8: GetActiveProcessorCount, InitOnce, handle lists and nested jobs. */
#if !defined(_WIN32_WINNT) || _WIN32_WINNT < 0x0602
#undef _WIN32_WINNT
#define _WIN32_WINNT 0x0602
#endif
#include <windows.h>

#include "../core/os_win32.h"

/** Wide to a freshly allocated UTF-8 string (mp__free); NULL with an error recorded. */
char *mp__win_to_utf8(const wchar_t *w);
/** Full path of a loaded module (NULL: this executable), freshly allocated. */
wchar_t *mp__win_module_path(HMODULE mod);
/** A timeout in seconds as milliseconds for the Wait functions: MP_FOREVER is
 *  INFINITE, a negative one 0, anything else rounds up so a wait never ends early. */
DWORD mp__win_timeout_ms(double seconds);

#endif
