/* Symbol export for the m2pt shared library (built with hidden visibility). */
#ifndef M2PT_EXPORT_H
#define M2PT_EXPORT_H

#if defined(_WIN32) && defined(M2PT_BUILDING_LIBRARY)
#  define M2PT_API __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#  define M2PT_API __attribute__((visibility("default")))
#else
#  define M2PT_API
#endif

#endif
