/* netaddr.c - parsing of listen addresses. */
#include "netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int cp_netaddr_parse(const char *s, struct cp_netaddr *ret)
{
        char host[64];
        const char *colon, *port_s;
        char *end;
        size_t hl;
        long port;

        memset(ret, 0, sizeof(*ret));
        if (s[0] == '[') {
                const char *rb = strchr(s, ']');
                if (!rb || rb[1] != ':')
                        return -EINVAL;
                hl = (size_t)(rb - s - 1);
                if (hl == 0 || hl >= sizeof(host))
                        return -EINVAL;
                memcpy(host, s + 1, hl);
                port_s = rb + 2;
        } else {
                colon = strrchr(s, ':');
                if (!colon || strchr(s, ':') != colon)
                        return -EINVAL;
                hl = (size_t)(colon - s);
                if (hl == 0 || hl >= sizeof(host))
                        return -EINVAL;
                memcpy(host, s, hl);
                port_s = colon + 1;
        }
        host[hl] = '\0';
        if (!*port_s || *port_s == '-' || *port_s == '+')
                return -EINVAL;
        errno = 0;
        port = strtol(port_s, &end, 10);
        if (errno || *end || port < 1 || port > 65535)
                return -EINVAL;
        if (strcmp(host, "localhost") == 0)
                strcpy(host, "127.0.0.1");
        if (s[0] == '[') {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ret->ss;
                if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
                        return -EINVAL;
                a->sin6_family = AF_INET6;
                a->sin6_port = htons((uint16_t)port);
                ret->len = sizeof(*a);
        } else {
                struct sockaddr_in *a = (struct sockaddr_in *)&ret->ss;
                if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
                        return -EINVAL;
                a->sin_family = AF_INET;
                a->sin_port = htons((uint16_t)port);
                ret->len = sizeof(*a);
        }
        return 0;
}
