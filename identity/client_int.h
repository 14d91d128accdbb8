/* client_int.h - workload client internals shared with its tests: HTTP parsing, schedules */
#ifndef IDENTITY_CLIENT_INT_H
#define IDENTITY_CLIENT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/ward.h"
#include "identity/identity.h"

/* Bounds of what wardd may answer. */
#define IDENT_HTTP_HEAD_MAX    ((size_t)16 << 10) /* status line + headers */
#define IDENT_HTTP_HEADERS_MAX 64                 /* header lines */

/* ---- HTTP/1.1 responses ---------------------------------------------------------- */

typedef struct ident_http_resp {
    int status;      /* 200..599 */
    size_t head_len; /* bytes of status line + headers + the empty line */
    bool chunked;
    bool has_length;
    uint64_t content_length;
    bool conn_close;        /* "Connection: close" */
    char content_type[128]; /* media type, lowercased, parameters dropped; "" if absent */
    const char *body;       /* points into the input, or into `decoded` (chunked) */
    size_t body_len;
    ward_buf decoded;
} ident_http_resp;

void ident_http_resp_init(ident_http_resp *r);
void ident_http_resp_dispose(ident_http_resp *r);

/* Parses one response held in buf[0..len). eof: the peer closed after these
 * bytes. Strict: "HTTP/1.x DDD reason" CRLF, token header names, no obs-fold,
 * no bare LF, at most IDENT_HTTP_HEADERS_MAX headers in IDENT_HTTP_HEAD_MAX
 * bytes, one consistent Content-Length, only the "chunked" transfer coding and
 * never together with a length, 1xx refused, a body of at most max_body bytes
 * (Content-Length, chunked, or delimited by the close).
 * Returns 1 when complete, 0 when more bytes are needed, <0 on error (err says
 * why). */
int ident_http_parse_response(const char *buf, size_t len, bool eof, size_t max_body,
                              ident_http_resp *r, ward_err *err);

/* ---- schedules ----------------------------------------------------------------------- */

/* Backoff before retry number `attempt` (0 = the first retry): 1 s doubling up
 * to 60 s, times a jitter factor 0.8 + 0.4u (u in [0, 1)), kept within
 * [1 s, 60 s]. */
uint64_t ident_client_backoff_ms(unsigned attempt, double u);
/* Milliseconds from `now_ms` (Unix ms) until the renewal of an SVID valid
 * [not_before, not_after): at (0.45 + 0.1u) of its lifetime; 0 if that passed. */
uint64_t ident_client_renew_delay_ms(time_t not_before, time_t not_after, int64_t now_ms, double u);

/* ---- wardd's answers ----------------------------------------------------------------- */

/* An error body {"error": "...", "message": "..."} (or anything else) as one
 * human line: "401 token_used: join token already used". */
void ident_client_describe_error(int status, const char *body, size_t len, ward_err *err);

/* A 200 svid_response to /v1/attest or /v1/renew for `key`: the chain parsed,
 * the bundle parsed for the trust domain of the returned ID (which must equal
 * want_td when want_td is non-NULL), the ID must equal want_id when non-NULL,
 * and the whole must pass ident_svid_new at now. */
int ident_client_svid_response(const char *json, size_t len, EVP_PKEY *key, const char *want_td,
                               const char *want_id, time_t now, ident_svid **out, ward_err *err);

/* PEM certificates -> a chain, leaf first (at most 16, at least 1). */
int ident_client_chain_parse(const char *pem, size_t len, STACK_OF(X509) * *out, ward_err *err);

#endif
