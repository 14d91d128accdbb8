/* spiffe.c - strict SPIFFE ID parsing (the SPIFFE-ID standard; never normalizes) */
#include "common/ward.h"

#include <string.h>

static bool td_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static bool path_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-' || c == '_';
}

bool ward_spiffe_td_valid(const char *s, size_t len)
{
    if (len == 0 || len > WARD_SPIFFE_TD_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!td_char(s[i]))
            return false;
    return true;
}

/* Names the first offending character of a trust domain, for error messages. */
static const char *td_problem(char c)
{
    if (c >= 'A' && c <= 'Z')
        return "trust domain must be lowercase";
    if (c == ':')
        return "trust domain must not include a port";
    if (c == '@')
        return "trust domain must not include userinfo";
    if (c == '?')
        return "SPIFFE ID must not have a query";
    if (c == '#')
        return "SPIFFE ID must not have a fragment";
    if (c == '%')
        return "SPIFFE ID must not be percent-encoded";
    return "trust domain has a character outside [a-z0-9._-]";
}

int ward_spiffe_id_parse(const char *s, size_t len, ward_spiffe_id *out, ward_err *err)
{
    static const char scheme[] = "spiffe://";
    const size_t slen = sizeof(scheme) - 1;
    if (len > WARD_SPIFFE_ID_MAX) {
        ward_err_set(err, "SPIFFE ID longer than %d bytes", WARD_SPIFFE_ID_MAX);
        return WARD_EINVAL;
    }
    if (len < slen || memcmp(s, scheme, slen) != 0) {
        ward_err_set(err, "SPIFFE ID must start with \"spiffe://\"");
        return WARD_EINVAL;
    }
    size_t i = slen;
    size_t td_start = i;
    while (i < len && s[i] != '/') {
        if (!td_char(s[i])) {
            ward_err_set(err, "%s", td_problem(s[i]));
            return WARD_EINVAL;
        }
        i++;
    }
    size_t td_len = i - td_start;
    if (td_len == 0) {
        ward_err_set(err, "SPIFFE ID has an empty trust domain");
        return WARD_EINVAL;
    }
    if (td_len > WARD_SPIFFE_TD_MAX) {
        ward_err_set(err, "trust domain longer than %d bytes", WARD_SPIFFE_TD_MAX);
        return WARD_EINVAL;
    }
    size_t path_start = i;
    while (i < len) {
        /* s[i] == '/' here: one segment follows */
        size_t seg = ++i;
        while (i < len && s[i] != '/') {
            char c = s[i];
            if (!path_char(c)) {
                if (c == '?')
                    ward_err_set(err, "SPIFFE ID must not have a query");
                else if (c == '#')
                    ward_err_set(err, "SPIFFE ID must not have a fragment");
                else if (c == '%')
                    ward_err_set(err, "SPIFFE ID must not be percent-encoded");
                else
                    ward_err_set(err, "path segment has a character outside [A-Za-z0-9._-]");
                return WARD_EINVAL;
            }
            i++;
        }
        size_t seg_len = i - seg;
        if (seg_len == 0) {
            ward_err_set(err, i == len ? "SPIFFE ID must not end with a slash"
                                       : "SPIFFE ID path has an empty segment");
            return WARD_EINVAL;
        }
        if ((seg_len == 1 && s[seg] == '.') || (seg_len == 2 && s[seg] == '.' && s[seg + 1] == '.')) {
            ward_err_set(err, "SPIFFE ID path has a dot segment");
            return WARD_EINVAL;
        }
    }
    if (out != NULL) {
        out->td = s + td_start;
        out->td_len = td_len;
        out->path = s + path_start;
        out->path_len = len - path_start;
    }
    return 0;
}

bool ward_spiffe_id_namespace(const ward_spiffe_id *id, const char **ns, size_t *ns_len)
{
    const char *p = id->path, *end = id->path + id->path_len;
    /* walk segments; the one after a literal "ns" segment is the namespace */
    while (p < end) {
        const char *seg = p + 1;
        const char *next = memchr(seg, '/', (size_t)(end - seg));
        if (next == NULL)
            next = end;
        if (next - seg == 2 && seg[0] == 'n' && seg[1] == 's' && next < end) {
            const char *nseg = next + 1;
            const char *nend = memchr(nseg, '/', (size_t)(end - nseg));
            if (nend == NULL)
                nend = end;
            *ns = nseg;
            *ns_len = (size_t)(nend - nseg);
            return true;
        }
        p = next;
    }
    return false;
}
