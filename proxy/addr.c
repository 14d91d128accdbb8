/* addr.c - numeric "ADDR:PORT" socket addresses: parsing and formatting */
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

int proxy_addr_parse(const char *s, struct sockaddr_storage *out, ward_err *err)
{
    size_t len = strlen(s);
    const char *host = s, *port;
    size_t host_len;
    if (len > 0 && s[0] == '[') {
        const char *end = memchr(s, ']', len);
        if (end == NULL || end[1] != ':') {
            ward_err_set(err, "\"%.80s\": expected [IPv6]:PORT", s);
            return WARD_EINVAL;
        }
        host = s + 1;
        host_len = (size_t)(end - host);
        port = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL) {
            ward_err_set(err, "\"%.80s\": expected ADDR:PORT (IPv6 in brackets)", s);
            return WARD_EINVAL;
        }
        host_len = (size_t)(colon - s);
        port = colon + 1;
    }
    uint64_t p;
    if (ward_parse_u64(port, strlen(port), 65535, &p) < 0) {
        ward_err_set(err, "\"%.80s\": invalid port", s);
        return WARD_EINVAL;
    }
    char tmp[INET6_ADDRSTRLEN + 1];
    if (host_len == 0 || host_len >= sizeof(tmp)) {
        ward_err_set(err, "\"%.80s\": invalid address", s);
        return WARD_EINVAL;
    }
    memcpy(tmp, host, host_len);
    tmp[host_len] = '\0';
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (s[0] != '[' && inet_pton(AF_INET, tmp, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)p);
        return 0;
    }
    if (s[0] == '[' && inet_pton(AF_INET6, tmp, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)p);
        return 0;
    }
    ward_err_set(err, "\"%.80s\": invalid address (numeric IPv4 or [IPv6] expected)", s);
    return WARD_EINVAL;
}

void proxy_addr_format(const struct sockaddr *sa, char *buf, size_t size)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof(ip));
        snprintf(buf, size, "%s:%u", ip, (unsigned)ntohs(v4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, size, "[%s]:%u", ip, (unsigned)ntohs(v6->sin6_port));
    } else {
        snprintf(buf, size, "unix");
    }
}
