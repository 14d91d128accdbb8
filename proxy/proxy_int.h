/* proxy_int.h - internals shared inside proxy/: the OpenSSL side of TLS contexts */
#ifndef PROXY_INT_H
#define PROXY_INT_H

#include <openssl/ssl.h>

#include "proxy/proxy.h"

/* Nothing outside proxy/ includes this header. */

/* What one TLS connection's certificate check needs and finds; the stream
 * attaches it to its SSL with SSL_set_app_data. */
typedef struct proxy_tls_check {
    const char *expected_id; /* clients: the server's required SPIFFE ID, or NULL */
    char *peer_id;           /* set when a REQUIRED check passed (malloc'ed) */
    char reason[512];        /* why the check failed */
} proxy_tls_check;

/* A new SSL for one connection of this context (accept or connect state). */
SSL *proxy_tls_ctx_ssl_new(proxy_tls_ctx *t);
bool proxy_tls_ctx_is_server(const proxy_tls_ctx *t);
proxy_tls_peer_mode proxy_tls_ctx_peer_mode(const proxy_tls_ctx *t);

/* limits (may be NULL) with every zero field given its default. */
proxy_http_limits proxy_http_limits_with_defaults(const proxy_http_limits *limits);

#endif
