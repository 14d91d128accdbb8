/* net.c - IPv4/IPv6 address and CIDR block parsing and matching */
#include "common/ward.h"

#include <arpa/inet.h>
#include <string.h>

int ward_ip_parse(const char *s, size_t len, ward_ip *out)
{
    char tmp[INET6_ADDRSTRLEN + 1];
    if (len == 0 || len >= sizeof(tmp) || memchr(s, '\0', len) != NULL)
        return WARD_EINVAL;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    memset(out, 0, sizeof(*out));
    if (memchr(tmp, ':', len) == NULL) {
        if (inet_pton(AF_INET, tmp, out->addr) != 1)
            return WARD_EINVAL;
        out->family = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, tmp, out->addr) != 1)
        return WARD_EINVAL;
    out->family = 6;
    /* ::ffff:a.b.c.d is an IPv4 peer: match it as one, so IPv4 rules can't be sidestepped */
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(out->addr, mapped, sizeof(mapped)) == 0) {
        memmove(out->addr, out->addr + 12, 4);
        memset(out->addr + 4, 0, 12);
        out->family = 4;
    }
    return 0;
}

int ward_cidr_parse(const char *s, size_t len, ward_cidr *out, ward_err *err)
{
    const char *slash = memchr(s, '/', len);
    size_t addr_len = slash ? (size_t)(slash - s) : len;
    if (ward_ip_parse(s, addr_len, &out->ip) < 0) {
        ward_err_set(err, "invalid IP address \"%.*s\"", (int)(addr_len > 64 ? 64 : addr_len), s);
        return WARD_EINVAL;
    }
    unsigned max = out->ip.family == 4 ? 32 : 128;
    /* ::ffff:a.b.c.d/N (N >= 96) is the IPv4 block a.b.c.d/(N-96) */
    bool mapped = out->ip.family == 4 && memchr(s, ':', addr_len) != NULL;
    unsigned min_text = mapped ? 96 : 0, max_text = mapped ? 128 : max;
    uint64_t plen = max_text;
    if (slash != NULL) {
        size_t n = len - addr_len - 1;
        /* decimal, no sign, no leading zeros (as netip.ParsePrefix) */
        if (n == 0 || n > 3 || (n > 1 && slash[1] == '0') ||
            ward_parse_u64(slash + 1, n, max_text, &plen) < 0 || plen < min_text) {
            ward_err_set(err, "invalid prefix length (%u..%u)", min_text, max_text);
            return WARD_EINVAL;
        }
    }
    unsigned text_plen = (unsigned)plen;
    plen -= min_text;
    out->prefix_len = (uint8_t)plen;
    for (unsigned bit = (unsigned)plen; bit < max; bit++) {
        if (out->ip.addr[bit / 8] & (0x80u >> (bit % 8))) {
            ward_err_set(err, "host bits set after the /%u prefix", text_plen);
            return WARD_EINVAL;
        }
    }
    return 0;
}

bool ward_cidr_contains(const ward_cidr *c, const ward_ip *ip)
{
    if (c->ip.family != ip->family)
        return false;
    unsigned full = c->prefix_len / 8, rest = c->prefix_len % 8;
    if (memcmp(c->ip.addr, ip->addr, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xFFu << (8 - rest));
    return (c->ip.addr[full] & mask) == (ip->addr[full] & mask);
}
