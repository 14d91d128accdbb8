/* http_write.c - HTTP/1.1 response heads: status line, validated headers, framing */
#include "proxy/proxy.h"

#include <string.h>

const char *proxy_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static bool valid_name(proxy_slice s)
{
    if (s.ptr == NULL || s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (c == '\0' || strchr("!#$%&'*+-.^_`|~", c) == NULL))
            return false;
    }
    return true;
}

static bool valid_value(proxy_slice s)
{
    if (s.ptr == NULL && s.len != 0)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

int proxy_http_response_head(ward_buf *out, int status, const proxy_header *headers, size_t n,
                             uint64_t content_length, bool close, bool keep_alive_10)
{
    int rc = 0;
    if (status < 100 || status > 599)
        return WARD_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!valid_name(headers[i].name) || !valid_value(headers[i].value))
            return WARD_EINVAL;
    WARD_TRY(ward_buf_printf(out, "HTTP/1.1 %d %s\r\n", status, proxy_http_reason(status)));
    for (size_t i = 0; i < n; i++) {
        WARD_TRY(ward_buf_append(out, headers[i].name.ptr, headers[i].name.len));
        WARD_TRY(ward_buf_append(out, ": ", 2));
        if (headers[i].value.len > 0)
            WARD_TRY(ward_buf_append(out, headers[i].value.ptr, headers[i].value.len));
        WARD_TRY(ward_buf_append(out, "\r\n", 2));
    }
    if (status >= 200 && status != 204 && status != 304)
        WARD_TRY(
            ward_buf_printf(out, "Content-Length: %llu\r\n", (unsigned long long)content_length));
    if (close)
        WARD_TRY(ward_buf_puts(out, "Connection: close\r\n"));
    else if (keep_alive_10)
        WARD_TRY(ward_buf_puts(out, "Connection: keep-alive\r\n"));
    WARD_TRY(ward_buf_append(out, "\r\n", 2));
    return 0;
fail:
    return rc;
}
