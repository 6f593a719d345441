/* cp_err.h - errno names for log lines (err=EPROTO), libuv's UV_ERRNO_MAP pattern. */
#ifndef CP_ERR_H
#define CP_ERR_H

#include <errno.h>

#define CP_ERRNO_MAP(X)                                                                                      \
        X(EPERM)                                                                                             \
        X(ENOENT)                                                                                            \
        X(EIO)                                                                                               \
        X(EBADF)                                                                                             \
        X(EAGAIN)                                                                                            \
        X(ENOMEM)                                                                                            \
        X(EACCES)                                                                                            \
        X(EEXIST)                                                                                            \
        X(EINVAL)                                                                                            \
        X(ENOSPC)                                                                                            \
        X(EROFS)                                                                                             \
        X(ERANGE)                                                                                            \
        X(ENODATA)                                                                                           \
        X(EPROTO)                                                                                            \
        X(EMSGSIZE)                                                                                          \
        X(ENOTSUP)                                                                                           \
        X(ECONNREFUSED)                                                                                      \
        X(ECONNRESET)                                                                                        \
        X(ETIMEDOUT)                                                                                         \
        X(EBUSY)                                                                                             \
        X(EILSEQ)                                                                                            \
        X(E2BIG)                                                                                             \
        X(ENAMETOOLONG)                                                                                      \
        X(EADDRINUSE)                                                                                        \
        X(ENOTCONN)

/* Returns a static name for a negative (or positive) errno value, "E?" when unknown. */
const char *cp_err_name(int err);

#endif
