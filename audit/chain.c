/* chain.c - the hash chain: each line's SHA-256 over its bytes up to prev, and checking a line */
#define OPENSSL_SUPPRESS_DEPRECATED  /* SHA256_Init/Update/Final: EVP allocates per digest in 3.0  \
                                      */
#include <string.h>

#include <openssl/sha.h>

#include "audit/audit_int.h"

static const char hexdig[] = "0123456789abcdef";

void audit_hex(char *out, const uint8_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexdig[in[i] >> 4];
        out[2 * i + 1] = hexdig[in[i] & 15];
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper case is not what the writer writes */
}

int audit_unhex(uint8_t *out, const char *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return WARD_EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

void audit_sha256(uint8_t out[AUDIT_HASH_LEN], const void *data, size_t len)
{
    SHA256_CTX c; /* on the stack: no allocation per record */
    SHA256_Init(&c);
    SHA256_Update(&c, data, len);
    SHA256_Final(out, &c);
}

int audit_chain_line(ward_buf *out, size_t start, uint8_t head[AUDIT_HASH_LEN])
{
    char tail[AUDIT_PREV_FIELD_LEN + AUDIT_HASH_FIELD_LEN + 1];
    uint8_t h[AUDIT_HASH_LEN];
    memcpy(tail, ",\"prev\":\"", 9);
    audit_hex(tail + 9, head, AUDIT_HASH_LEN);
    tail[9 + AUDIT_HASH_HEX] = '"';
    if (ward_buf_append(out, tail, AUDIT_PREV_FIELD_LEN) < 0)
        goto fail;
    audit_sha256(h, out->ptr + start, out->len - start);
    memcpy(tail, ",\"hash\":\"", 9);
    audit_hex(tail + 9, h, AUDIT_HASH_LEN);
    memcpy(tail + 9 + AUDIT_HASH_HEX, "\"}\n", 3);
    if (ward_buf_append(out, tail, AUDIT_HASH_FIELD_LEN + 1) < 0)
        goto fail;
    memcpy(head, h, AUDIT_HASH_LEN);
    return 0;
fail:
    out->len = start;
    if (out->ptr != NULL)
        out->ptr[start] = '\0';
    return WARD_ENOMEM;
}

audit_line_fault audit_line_check(const char *line, size_t len, uint64_t want_seq,
                                  const uint8_t *want_prev, uint64_t *seq_out,
                                  uint8_t prev[AUDIT_HASH_LEN], uint8_t hash[AUDIT_HASH_LEN])
{
    static const char head[] = "{\"v\":1,\"seq\":";
    const size_t hl = sizeof(head) - 1;
    if (len < hl + 2 + AUDIT_PREV_FIELD_LEN + AUDIT_HASH_FIELD_LEN || memcmp(line, head, hl) != 0)
        return AUDIT_LINE_SHAPE;
    /* seq: 1..2^63, no leading zero, followed by ',' */
    uint64_t seq = 0;
    size_t i = hl;
    if (line[i] < '1' || line[i] > '9')
        return AUDIT_LINE_SHAPE;
    for (; i < len && line[i] >= '0' && line[i] <= '9'; i++) {
        if (i - hl >= 19)
            return AUDIT_LINE_SHAPE;
        seq = seq * 10 + (uint64_t)(line[i] - '0');
    }
    if (line[i] != ',')
        return AUDIT_LINE_SHAPE;
    const char *t = line + len - AUDIT_HASH_FIELD_LEN, *p = t - AUDIT_PREV_FIELD_LEN;
    if (p < line + i || memcmp(p, ",\"prev\":\"", 9) != 0 || p[9 + AUDIT_HASH_HEX] != '"' ||
        memcmp(t, ",\"hash\":\"", 9) != 0 || memcmp(t + 9 + AUDIT_HASH_HEX, "\"}", 2) != 0 ||
        audit_unhex(prev, p + 9, AUDIT_HASH_LEN) < 0)
        return AUDIT_LINE_SHAPE;
    uint8_t stated[AUDIT_HASH_LEN];
    if (audit_unhex(stated, t + 9, AUDIT_HASH_LEN) < 0)
        return AUDIT_LINE_SHAPE;
    *seq_out = seq;
    audit_sha256(hash, line, (size_t)(t - line));
    if (memcmp(hash, stated, AUDIT_HASH_LEN) != 0)
        return AUDIT_LINE_HASH;
    if (want_seq != 0 && seq != want_seq)
        return AUDIT_LINE_SEQ;
    if (want_prev != NULL && memcmp(prev, want_prev, AUDIT_HASH_LEN) != 0)
        return AUDIT_LINE_PREV;
    return AUDIT_LINE_OK;
}

const char *audit_line_fault_name(audit_line_fault f)
{
    switch (f) {
    case AUDIT_LINE_OK: return "ok";
    case AUDIT_LINE_SHAPE: return "not a chained audit record";
    case AUDIT_LINE_HASH: return "its hash does not match its bytes (modified)";
    case AUDIT_LINE_SEQ: return "its seq is out of order (a record was deleted or reordered)";
    case AUDIT_LINE_PREV:
        return "its prev is not the hash of the record before (modified or re-chained)";
    }
    return "?";
}
