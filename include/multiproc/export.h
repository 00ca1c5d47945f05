/* Symbol visibility for multiproc. MP_STATIC is defined for users of the static
 * library (the CMake target does it); MP_BUILDING while the library is compiled. */
#ifndef MULTIPROC_EXPORT_H
#define MULTIPROC_EXPORT_H

#if defined(MP_STATIC)
#define MP_API
#elif defined(_WIN32)
#if defined(MP_BUILDING)
#define MP_API __declspec(dllexport)
#else
#define MP_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define MP_API __attribute__((visibility("default")))
#else
#define MP_API
#endif

#endif
