/* netaddr.h - "host:port" listen addresses: 127.0.0.1:8080, [::1]:8080, localhost:8080. */
#ifndef CP_NETADDR_H
#define CP_NETADDR_H

#include <netinet/in.h>
#include <sys/socket.h>

struct cp_netaddr {
        struct sockaddr_storage ss;
        socklen_t len;
};

/* Parses numeric addresses only ("localhost" means 127.0.0.1): a listen address never waits on DNS.
 * Returns 0 or -EINVAL. */
int cp_netaddr_parse(const char *s, struct cp_netaddr *ret);

#endif
