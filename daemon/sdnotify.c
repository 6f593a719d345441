/* sdnotify.c - the sd_notify protocol: one datagram to $NOTIFY_SOCKET (a path or an abstract socket
 * starting with '@'). systemd documents the protocol as stable, so no libsystemd is needed for it. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"

int cp_sd_notify(const char *state)
{
        const char *path = getenv("NOTIFY_SOCKET");
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        size_t plen;
        socklen_t slen;
        ssize_t w;
        int fd;

        if (!path || !*path)
                return 0;
        plen = strlen(path);
        if ((path[0] != '/' && path[0] != '@') || plen >= sizeof(sa.sun_path))
                return -EINVAL;
        memcpy(sa.sun_path, path, plen);
        if (sa.sun_path[0] == '@')
                sa.sun_path[0] = '\0';
        slen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        w = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, slen);
        close(fd);
        return w < 0 ? -errno : 0;
}

uint64_t cp_sd_watchdog_usec(void)
{
        const char *us = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
        char *end;
        unsigned long long v;

        if (!us)
                return 0;
        if (pid && strtol(pid, NULL, 10) != (long)getpid())
                return 0;
        v = strtoull(us, &end, 10);
        return *end ? 0 : (uint64_t)v;
}
