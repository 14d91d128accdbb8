/* json.c - JSON string escaping and the YAML node -> JSON conversion used by policy test */
#include <string.h>

#include "cmd/wardctl/wardctl.h"

int wctl_json_str(ward_buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    int rc = 0;
    WARD_TRY(ward_buf_putc(out, '"'));
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': WARD_TRY(ward_buf_puts(out, "\\\"")); break;
        case '\\': WARD_TRY(ward_buf_puts(out, "\\\\")); break;
        case '\n': WARD_TRY(ward_buf_puts(out, "\\n")); break;
        case '\r': WARD_TRY(ward_buf_puts(out, "\\r")); break;
        case '\t': WARD_TRY(ward_buf_puts(out, "\\t")); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                char esc[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
                WARD_TRY(ward_buf_puts(out, esc));
            } else {
                WARD_TRY(ward_buf_putc(out, (char)c));
            }
        }
    }
    WARD_TRY(ward_buf_putc(out, '"'));
    return 0;
fail:
    return rc;
}

static bool scalar_is(const ward_node *n, const char *const *words)
{
    for (; *words != NULL; words++)
        if (strlen(*words) == n->len && memcmp(*words, n->str, n->len) == 0)
            return true;
    return false;
}

bool wctl_node_is_null(const ward_node *n)
{
    static const char *const nulls[] = {"null", "Null", "NULL", "~", "", NULL};
    return n->kind == WARD_NODE_SCALAR && !n->quoted && scalar_is(n, nulls);
}

int wctl_node_bool(const ward_node *n, bool *out)
{
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    if (n->kind != WARD_NODE_SCALAR || n->quoted)
        return WARD_EINVAL;
    if (scalar_is(n, trues))
        *out = true;
    else if (scalar_is(n, falses))
        *out = false;
    else
        return WARD_EINVAL;
    return 0;
}

/* The JSON number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool is_json_number(const char *s, size_t len)
{
    size_t i = 0;
    if (i < len && s[i] == '-')
        i++;
    if (i >= len)
        return false;
    if (s[i] == '0') {
        i++;
    } else if (s[i] >= '1' && s[i] <= '9') {
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
    } else {
        return false;
    }
    if (i < len && s[i] == '.') {
        size_t start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return false;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return false;
    }
    return i == len;
}

int wctl_node_int(const ward_node *n, long long *out)
{
    if (n->kind != WARD_NODE_SCALAR || n->quoted || n->len == 0)
        return WARD_EINVAL;
    bool neg = n->str[0] == '-';
    uint64_t v;
    if (ward_parse_u64(n->str + neg, n->len - neg, (uint64_t)1 << 53, &v) < 0)
        return WARD_EINVAL;
    *out = neg ? -(long long)v : (long long)v;
    return 0;
}

int wctl_node_to_json(const ward_node *n, ward_buf *out)
{
    int rc = 0;
    bool b;
    switch (n->kind) {
    case WARD_NODE_SCALAR:
        if (n->quoted)
            return wctl_json_str(out, n->str, n->len);
        if (wctl_node_is_null(n))
            return ward_buf_puts(out, "null");
        if (wctl_node_bool(n, &b) == 0)
            return ward_buf_puts(out, b ? "true" : "false");
        if (is_json_number(n->str, n->len))
            return ward_buf_append(out, n->str, n->len);
        return wctl_json_str(out, n->str, n->len);
    case WARD_NODE_SEQ:
        WARD_TRY(ward_buf_putc(out, '['));
        for (size_t i = 0; i < n->n; i++) {
            if (i > 0)
                WARD_TRY(ward_buf_putc(out, ','));
            WARD_TRY(wctl_node_to_json(n->items[i], out));
        }
        return ward_buf_putc(out, ']');
    case WARD_NODE_MAP:
        WARD_TRY(ward_buf_putc(out, '{'));
        for (size_t i = 0; i < n->n; i++) {
            if (i > 0)
                WARD_TRY(ward_buf_putc(out, ','));
            WARD_TRY(wctl_json_str(out, n->pairs[i].key->str, n->pairs[i].key->len));
            WARD_TRY(ward_buf_putc(out, ':'));
            WARD_TRY(wctl_node_to_json(n->pairs[i].value, out));
        }
        return ward_buf_putc(out, '}');
    }
    return WARD_EINVAL;
fail:
    return rc;
}
