/* http_chunked.c - the chunked transfer coding: a strict incremental decoder and an encoder */
#include "proxy/proxy.h"

#include <stdio.h>
#include <string.h>

enum {
    CK_SIZE,       /* chunk-size hex digits */
    CK_EXT_START,  /* after ';': the first byte of an extension name */
    CK_EXT_NAME,   /* in an extension name */
    CK_EXT_VSTART, /* after '=' */
    CK_EXT_TOKEN,  /* in a token value */
    CK_EXT_QUOTED, /* in a quoted-string value */
    CK_EXT_QPAIR,  /* after '\' in a quoted-string */
    CK_EXT_QEND,   /* after the closing quote */
    CK_SIZE_LF,    /* after the CR of the size line */
    CK_DATA,       /* chunk data */
    CK_DATA_CR,    /* the CR after the data */
    CK_DATA_LF,    /* the LF after the data */
    CK_TR_START,   /* the start of a trailer line, or of the final empty line */
    CK_TR_NAME,    /* in a trailer field name */
    CK_TR_VALUE,   /* in a trailer field value */
    CK_TR_LF,      /* after the CR of a trailer line */
    CK_FINAL_LF,   /* after the CR of the final empty line */
    CK_DONE,
    CK_ERROR,
};

static bool ck_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int ck_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void proxy_chunked_init(proxy_chunked_decoder *d, const proxy_chunked_limits *limits)
{
    memset(d, 0, sizeof(*d));
    if (limits != NULL)
        d->lim = *limits;
    if (d->lim.body_max == 0)
        d->lim.body_max = PROXY_HTTP_BODY_MAX;
    if (d->lim.ext_max == 0)
        d->lim.ext_max = PROXY_CHUNK_EXT_MAX;
    if (d->lim.trailer_bytes_max == 0)
        d->lim.trailer_bytes_max = PROXY_CHUNK_TRAILER_BYTES;
    if (d->lim.trailers_max == 0)
        d->lim.trailers_max = PROXY_CHUNK_TRAILERS_MAX;
    d->state = CK_SIZE;
}

void proxy_chunked_reset(proxy_chunked_decoder *d)
{
    proxy_chunked_limits lim = d->lim;
    proxy_chunked_init(d, &lim);
}

uint64_t proxy_chunked_chunks(const proxy_chunked_decoder *d)
{
    return d->chunks;
}

uint64_t proxy_chunked_total(const proxy_chunked_decoder *d)
{
    return d->total;
}

static int ck_refuse(proxy_chunked_decoder *d, int status, const char *reason)
{
    d->state = CK_ERROR;
    d->err.status = status;
    d->err.reason = reason;
    return status == 413 ? WARD_ELIMIT : WARD_EINVAL;
}

/* One byte of a size line, extension or trailer: 0 or an error. */
static int ck_byte(proxy_chunked_decoder *d, unsigned char c)
{
    if (d->state >= CK_EXT_START && d->state <= CK_EXT_QEND && ++d->ext_len > d->lim.ext_max)
        return ck_refuse(d, 400, "chunk extension too long");
    if (d->state >= CK_TR_START && d->state <= CK_FINAL_LF &&
        ++d->trailer_bytes > d->lim.trailer_bytes_max)
        return ck_refuse(d, 400, "chunked trailer section too large");
    switch (d->state) {
    case CK_SIZE: {
        int v = ck_hex(c);
        if (v >= 0) {
            if (d->digits == 16)
                return ck_refuse(d, 400, "chunk size has more than 16 hex digits");
            if (d->size > (UINT64_MAX >> 4))
                return ck_refuse(d, 400, "chunk size overflows");
            d->size = d->size << 4 | (uint64_t)v;
            d->digits++;
            return 0;
        }
        if (d->digits == 0)
            return ck_refuse(d, 400, "malformed chunk size");
        if (c == ';') {
            d->ext_len = 1;
            d->state = CK_EXT_START;
            return 0;
        }
        if (c == '\r') {
            d->state = CK_SIZE_LF;
            return 0;
        }
        if (c == '\n')
            return ck_refuse(d, 400, "bare LF after chunk size");
        return ck_refuse(d, 400, "malformed chunk size");
    }
    case CK_EXT_START:
        if (!ck_tchar(c))
            return ck_refuse(d, 400, "malformed chunk extension");
        d->state = CK_EXT_NAME;
        return 0;
    case CK_EXT_NAME:
    case CK_EXT_TOKEN:
    case CK_EXT_QEND:
        if (d->state != CK_EXT_QEND && ck_tchar(c))
            return 0;
        if (d->state == CK_EXT_NAME && c == '=') {
            d->state = CK_EXT_VSTART;
            return 0;
        }
        if (c == ';') {
            d->state = CK_EXT_START;
            return 0;
        }
        if (c == '\r') {
            d->state = CK_SIZE_LF;
            return 0;
        }
        return ck_refuse(d, 400, "malformed chunk extension");
    case CK_EXT_VSTART:
        if (c == '"')
            d->state = CK_EXT_QUOTED;
        else if (ck_tchar(c))
            d->state = CK_EXT_TOKEN;
        else
            return ck_refuse(d, 400, "malformed chunk extension value");
        return 0;
    case CK_EXT_QUOTED:
        if (c == '"')
            d->state = CK_EXT_QEND;
        else if (c == '\\')
            d->state = CK_EXT_QPAIR;
        else if ((c < 0x20 && c != '\t') || c == 0x7f)
            return ck_refuse(d, 400, "control character in chunk extension");
        return 0;
    case CK_EXT_QPAIR:
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return ck_refuse(d, 400, "control character in chunk extension");
        d->state = CK_EXT_QUOTED;
        return 0;
    case CK_SIZE_LF:
        if (c != '\n')
            return ck_refuse(d, 400, "bare CR in chunk size line");
        if (d->size == 0) {
            d->state = CK_TR_START;
            return 0;
        }
        if (d->size > d->lim.body_max || d->total > d->lim.body_max - d->size)
            return ck_refuse(d, 413, "chunked body too large");
        d->total += d->size;
        d->state = CK_DATA;
        return 0;
    case CK_DATA_CR:
        if (c != '\r')
            return ck_refuse(d, 400, "chunk data not followed by CRLF");
        d->state = CK_DATA_LF;
        return 0;
    case CK_DATA_LF:
        if (c != '\n')
            return ck_refuse(d, 400, "chunk data not followed by CRLF");
        d->state = CK_SIZE;
        d->size = 0;
        d->digits = 0;
        d->ext_len = 0;
        d->chunks++;
        return 0;
    case CK_TR_START:
        if (c == '\r') {
            d->state = CK_FINAL_LF;
            return 0;
        }
        if (c == ' ' || c == '\t')
            return ck_refuse(d, 400, "obs-fold or whitespace in chunked trailer");
        if (!ck_tchar(c))
            return ck_refuse(d, 400, "malformed chunked trailer field");
        if (d->trailers == d->lim.trailers_max)
            return ck_refuse(d, 400, "too many chunked trailer fields");
        d->trailers++;
        d->state = CK_TR_NAME;
        return 0;
    case CK_TR_NAME:
        if (ck_tchar(c))
            return 0;
        if (c == ':') {
            d->state = CK_TR_VALUE;
            return 0;
        }
        if (c == ' ' || c == '\t')
            return ck_refuse(d, 400, "whitespace before colon in chunked trailer");
        return ck_refuse(d, 400, "malformed chunked trailer field");
    case CK_TR_VALUE:
        if (c == '\r') {
            d->state = CK_TR_LF;
            return 0;
        }
        if (c == '\n')
            return ck_refuse(d, 400, "bare LF in chunked trailer");
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return ck_refuse(d, 400, "control character in chunked trailer");
        return 0;
    case CK_TR_LF:
    case CK_FINAL_LF:
        if (c != '\n')
            return ck_refuse(d, 400, "bare CR in chunked trailer");
        d->state = d->state == CK_TR_LF ? CK_TR_START : CK_DONE;
        return 0;
    default: return ck_refuse(d, 400, "chunked decoder misuse");
    }
}

int proxy_chunked_decode(proxy_chunked_decoder *d, const char *in, size_t len, size_t *consumed,
                         proxy_slice *data, proxy_http_error *err)
{
    size_t i = 0;
    int rc = PROXY_CHUNKED_MORE;
    data->ptr = NULL;
    data->len = 0;
    while (d->state != CK_ERROR && d->state != CK_DONE && i < len) {
        if (d->state == CK_DATA) {
            size_t n = len - i;
            if ((uint64_t)n > d->size)
                n = (size_t)d->size;
            data->ptr = in + i;
            data->len = n;
            d->size -= n;
            i += n;
            if (d->size == 0)
                d->state = CK_DATA_CR;
            rc = PROXY_CHUNKED_DATA;
            break;
        }
        if (ck_byte(d, (unsigned char)in[i]) < 0)
            break;
        i++;
    }
    *consumed = i;
    if (d->state == CK_ERROR) {
        *consumed = 0;
        if (err != NULL)
            *err = d->err;
        return d->err.status == 413 ? WARD_ELIMIT : WARD_EINVAL;
    }
    if (rc == PROXY_CHUNKED_DATA)
        return rc;
    return d->state == CK_DONE ? PROXY_CHUNKED_DONE : PROXY_CHUNKED_MORE;
}

size_t proxy_chunked_size_line(char *buf, uint64_t size)
{
    int n = snprintf(buf, PROXY_CHUNK_SIZE_LINE_MAX, "%llx\r\n", (unsigned long long)size);
    return n > 0 ? (size_t)n : 0;
}

int proxy_chunked_encode(ward_buf *out, const void *data, size_t len)
{
    int rc = 0;
    char line[PROXY_CHUNK_SIZE_LINE_MAX];
    if (len == 0)
        return 0;
    size_t n = proxy_chunked_size_line(line, len);
    WARD_TRY(ward_buf_append(out, line, n));
    WARD_TRY(ward_buf_append(out, data, len));
    WARD_TRY(ward_buf_append(out, "\r\n", 2));
    return 0;
fail:
    return rc;
}

int proxy_chunked_encode_last(ward_buf *out)
{
    return ward_buf_append(out, "0\r\n\r\n", 5);
}
