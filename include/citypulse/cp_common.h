/* cp_common.h - small macros shared by the daemon and the drivers. */
#ifndef CP_COMMON_H
#define CP_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define CP_UNUSED            __attribute__((unused))
#define CP_ARRAY_LEN(a)      (sizeof(a) / sizeof((a)[0]))
#define CP_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define CP_WUR               __attribute__((warn_unused_result))
#define CP_MIN(a, b)         ((a) < (b) ? (a) : (b))
#define CP_MAX(a, b)         ((a) > (b) ? (a) : (b))

#define cp_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#endif
