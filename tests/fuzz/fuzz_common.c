/* fuzz_common.c - libFuzzer target: the shared base's parsers (SPIFFE IDs, IPs, CIDRs, numbers, durations) against reference models */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ward.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const char *s, size_t len)
{
    fprintf(stderr, "fuzz_common: %s: \"", what);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n");
    abort();
}

/* ---- the SPIFFE-ID standard, written as plainly as possible ---------------- */

static bool is_td_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static bool is_seg_char(char c)
{
    return is_td_char(c) || (c >= 'A' && c <= 'Z');
}

static bool model_spiffe_valid(const char *s, size_t len, size_t *td_len)
{
    if (len > 2048 || len < 9 || memcmp(s, "spiffe://", 9) != 0)
        return false;
    size_t i = 9;
    while (i < len && s[i] != '/') {
        if (!is_td_char(s[i]))
            return false;
        i++;
    }
    *td_len = i - 9;
    if (*td_len == 0 || *td_len > 255)
        return false;
    while (i < len) { /* s[i] == '/' */
        size_t start = ++i;
        while (i < len && s[i] != '/') {
            if (!is_seg_char(s[i]))
                return false;
            i++;
        }
        size_t n = i - start;
        if (n == 0 || (n == 1 && s[start] == '.') || (n == 2 && s[start] == '.' && s[start + 1] == '.'))
            return false;
    }
    return true;
}

static void check_spiffe(const char *s, size_t len)
{
    ward_spiffe_id id;
    ward_err err;
    ward_err_clear(&err);
    size_t td_len = 0;
    bool want = model_spiffe_valid(s, len, &td_len);
    int rc = ward_spiffe_id_parse(s, len, &id, &err);
    if (want && rc != 0)
        die("valid SPIFFE ID rejected", s, len);
    if (!want && rc == 0)
        die("invalid SPIFFE ID accepted", s, len);
    if (rc != 0) {
        if (err.msg[0] == '\0')
            die("SPIFFE ID rejected without a message", s, len);
        return;
    }
    if (id.td != s + 9 || id.td_len != td_len || id.path != s + 9 + td_len ||
        id.path_len != len - 9 - td_len)
        die("SPIFFE ID split wrongly", s, len);
    if (!ward_spiffe_td_valid(id.td, id.td_len))
        die("trust domain of a valid ID is not valid", s, len);
    const char *ns;
    size_t ns_len;
    if (ward_spiffe_id_namespace(&id, &ns, &ns_len)) {
        if (ns < id.path + 4 || ns + ns_len > id.path + id.path_len || ns_len == 0 ||
            memcmp(ns - 4, "/ns/", 4) != 0 || memchr(ns, '/', ns_len) != NULL)
            die("namespace outside a /ns/<ns> segment", s, len);
    }
}

/* ---- IP / CIDR ------------------------------------------------------------- */

static void check_cidr(const char *s, size_t len)
{
    ward_ip ip;
    if (ward_ip_parse(s, len, &ip) == 0 && ip.family != 4 && ip.family != 6)
        die("IP with a bad family", s, len);
    ward_cidr c;
    ward_err err;
    ward_err_clear(&err);
    if (ward_cidr_parse(s, len, &c, &err) != 0) {
        if (err.msg[0] == '\0')
            die("CIDR rejected without a message", s, len);
        return;
    }
    unsigned max = c.ip.family == 4 ? 32 : 128;
    if ((c.ip.family != 4 && c.ip.family != 6) || c.prefix_len > max)
        die("CIDR out of range", s, len);
    for (unsigned bit = c.prefix_len; bit < max; bit++)
        if (c.ip.addr[bit / 8] & (0x80u >> (bit % 8)))
            die("CIDR accepted with host bits", s, len);
    if (!ward_cidr_contains(&c, &c.ip))
        die("CIDR does not contain its own address", s, len);
    /* the last address of the block is inside, the one after it (if any) is not */
    ward_ip last = c.ip;
    for (unsigned bit = c.prefix_len; bit < max; bit++)
        last.addr[bit / 8] |= (uint8_t)(0x80u >> (bit % 8));
    if (!ward_cidr_contains(&c, &last))
        die("CIDR does not contain its last address", s, len);
    if (c.prefix_len > 0) {
        ward_ip other = c.ip;
        unsigned bit = c.prefix_len - 1;
        other.addr[bit / 8] ^= (uint8_t)(0x80u >> (bit % 8));
        if (ward_cidr_contains(&c, &other))
            die("CIDR contains an address outside its prefix", s, len);
    }
}

/* ---- numbers and durations --------------------------------------------------- */

static void check_numbers(const char *s, size_t len, uint64_t max)
{
    /* reference: 128-bit arithmetic, saturating */
    unsigned __int128 v = 0;
    bool digits = len > 0, big = false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            digits = false;
            break;
        }
        v = v * 10 + (unsigned)(s[i] - '0');
        if (v > UINT64_MAX)
            big = true, v = (unsigned __int128)UINT64_MAX + 1;
    }
    uint64_t got = 7;
    int rc = ward_parse_u64(s, len, max, &got);
    int want = !digits ? WARD_EINVAL : (big || v > max) ? WARD_ERANGE : 0;
    if (rc != want || (rc == 0 && got != (uint64_t)v) || (rc != 0 && got != 7))
        die("ward_parse_u64 disagrees with the model", s, len);

    static const struct {
        const char *u;
        uint64_t ns;
    } units[] = {{"ns", 1}, {"us", 1000}, {"ms", 1000000}, {"s", 1000000000ULL},
                 {"m", 60000000000ULL}, {"h", 3600000000000ULL}};
    unsigned __int128 total = 0;
    int dwant = len == 0 ? WARD_EINVAL : 0;
    size_t i = 0;
    while (dwant == 0 && i < len) {
        size_t a = i;
        unsigned __int128 n = 0;
        bool nbig = false;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            n = n * 10 + (unsigned)(s[i] - '0');
            if (n > UINT64_MAX)
                nbig = true, n = (unsigned __int128)UINT64_MAX + 1;
            i++;
        }
        size_t u = i;
        while (i < len && s[i] >= 'a' && s[i] <= 'z')
            i++;
        uint64_t mult = 0;
        for (size_t k = 0; k < sizeof(units) / sizeof(units[0]); k++)
            if (strlen(units[k].u) == i - u && memcmp(units[k].u, s + u, i - u) == 0)
                mult = units[k].ns;
        if (u == a) {
            dwant = WARD_EINVAL; /* no number */
        } else if (nbig) {
            dwant = WARD_ERANGE; /* the number alone overflows (checked before the unit) */
        } else if (mult == 0) {
            dwant = WARD_EINVAL;
        } else {
            total += n * mult;
            if (total > UINT64_MAX)
                dwant = WARD_ERANGE;
        }
    }
    if (dwant == 0 && total > max)
        dwant = WARD_ERANGE;
    uint64_t ns = 7;
    rc = ward_parse_duration(s, len, max, &ns);
    if (rc != dwant || (rc == 0 && ns != (uint64_t)total) || (rc != 0 && ns != 7))
        die("ward_parse_duration disagrees with the model", s, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first byte picks a `max` for the bounded parsers; the rest is the text.
     * Copy to an exact-size heap block so ASan sees any over-read. */
    uint64_t max = UINT64_MAX;
    if (size > 0) {
        max = data[0] < 128 ? UINT64_MAX : ((uint64_t)1 << (data[0] % 64)) - 1;
        data++;
        size--;
    }
    char *s = malloc(size ? size : 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    check_spiffe(s, size);
    check_cidr(s, size);
    check_numbers(s, size, max);
    /* also as a SPIFFE ID with the scheme supplied, to reach the path rules quickly */
    if (size <= 4096) {
        char *id = malloc(size + 9);
        if (id != NULL) {
            memcpy(id, "spiffe://", 9);
            memcpy(id + 9, s, size);
            check_spiffe(id, size + 9);
            free(id);
        }
    }
    free(s);
    return 0;
}
