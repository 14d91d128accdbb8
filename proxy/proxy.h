/* proxy.h - the network base: HTTP/1.1 parsing, TLS over libuv streams, HTTP servers */
#ifndef PROXY_H
#define PROXY_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <uv.h>

#include "audit/audit.h"
#include "common/ward.h"
#include "identity/identity.h"

/* Bytes from the network: never NUL-terminated. ptr == NULL means absent. */
typedef struct proxy_slice {
    const char *ptr;
    size_t len;
} proxy_slice;

typedef struct proxy_header {
    proxy_slice name;  /* as sent (a token); compare case-insensitively */
    proxy_slice value; /* leading and trailing whitespace removed */
} proxy_header;

/* ==== HTTP/1.1 request heads (http_parse.c) ====================================
 * A strict, bounded, incremental parser of request heads (RFC 9112): the
 * request line, the header fields and the framing they imply. It never
 * guesses: what RFC 9112 lets a server reject is rejected (obs-fold, bare CR
 * or LF, NUL and other controls, whitespace before a colon, a missing or
 * duplicate Host, duplicate, listed or malformed Content-Length,
 * Transfer-Encoding with Content-Length or in HTTP/1.0, unknown versions). */

#define PROXY_HTTP_REQUEST_LINE_MAX ((size_t)8 << 10)  /* without its CRLF */
#define PROXY_HTTP_HEADER_BYTES_MAX ((size_t)60 << 10) /* all field lines, CRLFs included */
#define PROXY_HTTP_HEADERS_MAX      100
#define PROXY_HTTP_BODY_MAX         ((uint64_t)64 << 10)

typedef struct proxy_http_limits {
    size_t request_line_max; /* 0 = PROXY_HTTP_REQUEST_LINE_MAX (longer: 414) */
    size_t header_bytes_max; /* 0 = PROXY_HTTP_HEADER_BYTES_MAX (more: 431) */
    size_t headers_max;      /* 0 = PROXY_HTTP_HEADERS_MAX (more: 431) */
    uint64_t body_max;       /* 0 = PROXY_HTTP_BODY_MAX (a larger Content-Length: 413) */
    bool allow_chunked;      /* false: any Transfer-Encoding is 501 */
} proxy_http_limits;

typedef enum proxy_http_target_form {
    PROXY_TARGET_ORIGIN,    /* "/path?query" */
    PROXY_TARGET_ABSOLUTE,  /* "http://authority/path?query" */
    PROXY_TARGET_AUTHORITY, /* "host:port" (CONNECT only) */
    PROXY_TARGET_ASTERISK,  /* "*" (OPTIONS only) */
} proxy_http_target_form;

typedef enum proxy_http_body_kind {
    PROXY_BODY_NONE,    /* no Content-Length, no Transfer-Encoding */
    PROXY_BODY_LENGTH,  /* content_length bytes follow the head */
    PROXY_BODY_CHUNKED, /* only with limits.allow_chunked */
} proxy_http_body_kind;

/* A parsed head. Every slice points into the buffer given to the parser. */
typedef struct proxy_http_request {
    proxy_slice method;
    proxy_slice target; /* the request-target as sent */
    proxy_http_target_form target_form;
    proxy_slice authority; /* absolute- and authority-form, else absent */
    proxy_slice path;  /* origin- and absolute-form: up to '?' (may be empty in absolute-form) */
    proxy_slice query; /* after '?', absent if there is no '?' */
    int version_minor; /* HTTP/1.0 or HTTP/1.1 */
    proxy_slice host;  /* the Host field (required and unique in HTTP/1.1) */
    const proxy_header *headers;
    size_t n_headers;
    proxy_http_body_kind body_kind;
    uint64_t content_length; /* PROXY_BODY_LENGTH */
    bool keep_alive;         /* persistent per version and Connection */
    bool expect_continue;    /* "Expect: 100-continue" */
    size_t head_len;         /* bytes up to and including the empty line */
} proxy_http_request;

/* Why a head was refused: the status to answer with, and a static reason. */
typedef struct proxy_http_error {
    int status; /* 400, 414, 417, 431, 501 or 505 */
    const char *reason;
} proxy_http_error;

typedef struct proxy_http_parser proxy_http_parser;

int proxy_http_parser_new(const proxy_http_limits *limits, proxy_http_parser **out);
void proxy_http_parser_free(proxy_http_parser *p);
/* Forgets the current head: the next feed starts a new request. */
void proxy_http_parser_reset(proxy_http_parser *p);
/* buf[0..len) holds the bytes of one request so far, starting at its first
 * byte; each call may only append to what the previous call saw (each byte is
 * examined once). Returns 1 when the head is complete (req filled; its slices
 * and headers stay valid until the next feed or reset and while buf is
 * unchanged), 0 when more bytes are needed, and WARD_EINVAL / WARD_ELIMIT
 * with *err filled when the head must be refused (and the connection closed);
 * after an error every feed fails the same way until reset. */
int proxy_http_parser_feed(proxy_http_parser *p, const char *buf, size_t len,
                           proxy_http_request *req, proxy_http_error *err);

/* The first field named `name` (case-insensitive), absent if none. */
proxy_slice proxy_http_header_get(const proxy_http_request *req, const char *name);
/* Case-insensitive comparison of a slice with a C string. */
bool proxy_slice_eq_nocase(proxy_slice s, const char *lit);

/* ==== responses (http_write.c) ================================================= */

/* "OK", "Not Found", ... ("Unknown" for codes it does not know). */
const char *proxy_http_reason(int status);
/* Appends "HTTP/1.1 <status> <reason>" CRLF, the headers, Content-Length
 * (omitted for 1xx, 204 and 304), "Connection: close" when close is set (or
 * "Connection: keep-alive" when keep_alive_10: an HTTP/1.0 client asked for
 * it), and the empty line. Header names must be tokens and values must not
 * hold controls (WARD_EINVAL: no response splitting). */
int proxy_http_response_head(ward_buf *out, int status, const proxy_header *headers, size_t n,
                             uint64_t content_length, bool close, bool keep_alive_10);

/* ==== addresses ================================================================ */

/* "127.0.0.1:8443" or "[::1]:8443" (numeric only, port 0..65535). */
int proxy_addr_parse(const char *s, struct sockaddr_storage *out, ward_err *err);
/* "127.0.0.1:41234" / "[::1]:41234" into buf (at least PROXY_ADDR_STRLEN bytes). */
#define PROXY_ADDR_STRLEN 64
void proxy_addr_format(const struct sockaddr *sa, char *buf, size_t size);

/* ==== TLS contexts (tls.c) =====================================================
 * An immutable, reference-counted TLS configuration: our certificate chain and
 * key, how peers are checked, protocol versions. Swapped whole (a new context
 * for new connections) when the certificate or the bundle changes; a
 * connection keeps the context it started with. Peers are never checked
 * against system roots or host names: only by ident_svid_verify against a
 * SPIFFE bundle. Session resumption is off (every connection proves its
 * certificate). */

typedef enum proxy_tls_peer_mode {
    PROXY_TLS_PEER_NONE,     /* server: no client certificate asked; client: the server
                                is NOT verified (tests, bootstrap) */
    PROXY_TLS_PEER_OPTIONAL, /* server: a client certificate is asked for but not required
                                and not checked during the handshake: the application
                                checks it per request (proxy_peer_verify) */
    PROXY_TLS_PEER_REQUIRED, /* a valid X509-SVID of the bundle's trust domain is required
                                during the handshake (a client may also require an ID) */
} proxy_tls_peer_mode;

typedef struct proxy_tls_options {
    bool server;
    const char *chain_pem; /* our certificate, leaf first, then intermediates; NULL = none
                              (only for clients) */
    size_t chain_len;
    EVP_PKEY *key;        /* its private key (a reference is taken) */
    ident_bundle *bundle; /* trust anchors for peers (REQUIRED; a reference is taken) */
    proxy_tls_peer_mode peer;
    bool allow_tls12; /* false: TLS 1.3 only */
} proxy_tls_options;

typedef struct proxy_tls_ctx proxy_tls_ctx;

int proxy_tls_ctx_new(const proxy_tls_options *opts, proxy_tls_ctx **out, ward_err *err);
void proxy_tls_ctx_ref(proxy_tls_ctx *t);
void proxy_tls_ctx_unref(proxy_tls_ctx *t);

/* ==== peers ===================================================================== */

/* Who is on the other end of a connection. Filled when the connection is
 * accepted or made, and (TLS) when the handshake completes. */
typedef struct proxy_peer {
    char addr[PROXY_ADDR_STRLEN]; /* "127.0.0.1:41234", "[::1]:41234", or "unix" */
    bool is_unix;
    bool has_cred; /* Unix socket: SO_PEERCRED of the peer process */
    uid_t uid;
    gid_t gid;
    pid_t pid;
    bool tls;
    STACK_OF(X509) * chain; /* TLS: the certificates the peer presented, leaf first, or NULL */
    char *spiffe_id;        /* REQUIRED mode: the verified peer ID, else NULL */
    char cert_sha256[65];   /* TLS: SHA-256 of the peer's leaf certificate (hex), else "" */
} proxy_peer;

/* Checks the peer's certificate chain as an X509-SVID against `bundle` at
 * `now` (ident_svid_verify). WARD_ENOENT when the peer presented none. */
int proxy_peer_verify(const proxy_peer *peer, const ident_bundle *bundle, time_t now, char *id,
                      ward_err *why);

/* ==== streams: TCP or Unix connections, with or without TLS (stream.c) ==========
 * TLS runs over the libuv stream through two OpenSSL memory BIOs: ciphertext
 * read from the socket is written to one, the TLS engine's output is drained
 * from the other and written to the socket. The callbacks see plaintext only.
 * A stream is freed after its on_close callback returns (its libuv handles are
 * closed first); every other callback may call any stream function. */

typedef struct proxy_stream proxy_stream;

/* Client streams: connected (and TLS handshake done); accepted TLS streams:
 * handshake done. status < 0: it failed (proxy_stream_error says why) and the
 * stream is being closed. */
typedef void (*proxy_stream_open_cb)(proxy_stream *s, int status, void *data);
/* Plaintext bytes (valid during the call only). */
typedef void (*proxy_stream_read_cb)(proxy_stream *s, const char *buf, size_t len, void *data);
/* No more bytes will come: 0 = the peer finished cleanly (FIN, after
 * close_notify under TLS), WARD_EIO = error or a TLS stream cut without
 * close_notify. The stream stays open for writing until closed. */
typedef void (*proxy_stream_eof_cb)(proxy_stream *s, int status, void *data);
/* The deadline set with proxy_stream_set_timeout passed. */
typedef void (*proxy_stream_timeout_cb)(proxy_stream *s, void *data);
/* Everything queued has been written (after the queue was non-empty). */
typedef void (*proxy_stream_drain_cb)(proxy_stream *s, void *data);
/* The last callback; the stream is freed when it returns. */
typedef void (*proxy_stream_close_cb)(proxy_stream *s, void *data);

typedef struct proxy_stream_cbs {
    proxy_stream_open_cb on_open; /* each may be NULL */
    proxy_stream_read_cb on_read;
    proxy_stream_eof_cb on_eof;
    proxy_stream_timeout_cb on_timeout;
    proxy_stream_drain_cb on_drain;
    proxy_stream_close_cb on_close;
} proxy_stream_cbs;

/* Accepts one connection from a listening TCP or pipe handle (tls NULL =
 * plaintext). */
int proxy_stream_accept(uv_stream_t *listener, proxy_tls_ctx *tls, const proxy_stream_cbs *cbs,
                        void *data, proxy_stream **out);
/* Connects to addr (tls NULL = plaintext). With expected_id non-NULL (only
 * with a REQUIRED-mode context, else WARD_EINVAL), the server's SPIFFE ID must
 * equal it byte for byte. */
int proxy_stream_connect(uv_loop_t *loop, const struct sockaddr *addr, proxy_tls_ctx *tls,
                         const char *expected_id, const proxy_stream_cbs *cbs, void *data,
                         proxy_stream **out);
/* Queues bytes (copied). Under TLS before the handshake completes they are
 * held and sent after it. WARD_EIO once the stream is closing. */
int proxy_stream_write(proxy_stream *s, const void *buf, size_t len);
/* Between cork and uncork (nested), small writes are gathered and sent as one
 * (one TLS record, one system call) at the outermost uncork, or before a
 * shutdown. Callbacks that write several pieces wrap themselves in it. */
void proxy_stream_cork(proxy_stream *s);
void proxy_stream_uncork(proxy_stream *s);
/* Bytes queued and not yet handed to the kernel. */
size_t proxy_stream_pending(const proxy_stream *s);
void proxy_stream_read_pause(proxy_stream *s);
void proxy_stream_read_resume(proxy_stream *s);
/* A one-shot deadline ms from now (0 = none); replaces the previous one. */
void proxy_stream_set_timeout(proxy_stream *s, uint64_t ms);
/* Graceful close: after what is queued, close_notify (TLS) and FIN; then
 * input is read and discarded until the peer closes or linger_ms pass (so a
 * response is not destroyed by a reset); then the stream closes. */
void proxy_stream_shutdown(proxy_stream *s, uint64_t linger_ms);
/* Half-close: after what is queued (and, on a stream not open yet, after it
 * opens and its held bytes are sent), close_notify (TLS) and FIN; reading goes
 * on as before (on_read, on_eof) and writes fail with WARD_EIO. The stream
 * stays until closed; a later proxy_stream_shutdown only lingers (it closes
 * once the FIN is out and the peer has finished, or at linger_ms). */
void proxy_stream_shutdown_write(proxy_stream *s);
/* TLS client streams, right after proxy_stream_connect (before the handshake
 * starts): the server name (SNI) to send. WARD_EINVAL otherwise. */
int proxy_stream_set_server_name(proxy_stream *s, const char *name);
/* Accepted TLS streams, once the handshake is done: the server name the client
 * sent (SNI; OpenSSL refuses one holding NUL or longer than 255 bytes; its
 * bytes are otherwise not checked), valid while the stream lives; else NULL. */
const char *proxy_stream_server_name(const proxy_stream *s);
/* Closes now; queued bytes are dropped. */
void proxy_stream_close(proxy_stream *s);
/* Closes now with a TCP reset, so that the peer sees an error rather than an
 * end (a plain close on a Unix socket, or while a FIN waits to be sent). */
void proxy_stream_reset(proxy_stream *s);
bool proxy_stream_is_closing(const proxy_stream *s);
bool proxy_stream_handshake_done(const proxy_stream *s); /* always true without TLS */
const proxy_peer *proxy_stream_peer(const proxy_stream *s);
/* Why the stream failed ("" if it did not). */
const char *proxy_stream_error(const proxy_stream *s);
void *proxy_stream_data(const proxy_stream *s);

/* ==== HTTP/1.1 servers (http_server.c) ============================================
 * One listener (TCP, optionally TLS, or a Unix socket) and its connections:
 * keep-alive, pipelining (answered in order, one request at a time),
 * deadlines, bounded buffering. Each complete request (head and body, the
 * body at most limits.body_max bytes) goes to the handler as an exchange,
 * which must be answered exactly once with proxy_http_respond, at once or
 * later. The server answers protocol errors itself (400, 408, 413, 414, 417,
 * 431, 501, 505) and closes those connections. */

typedef struct proxy_http_server proxy_http_server;
typedef struct proxy_http_exchange proxy_http_exchange;

typedef void (*proxy_http_handler_cb)(proxy_http_exchange *ex, void *data);
/* Renders the body of an error the server answers itself (body starts empty;
 * leave it empty for a plain-text reason). */
typedef void (*proxy_http_error_cb)(int status, const char *reason, const proxy_peer *peer,
                                    ward_buf *body, void *data);
typedef void (*proxy_done_cb)(void *data);
/* A TLS handshake failed (reason as proxy_stream_error gives it). */
typedef void (*proxy_http_tls_error_cb)(const proxy_peer *peer, const char *reason, void *data);

typedef struct proxy_http_server_options {
    proxy_http_limits limits;
    uint64_t header_timeout_ms; /* the TLS handshake and a whole request head, from its first
                                   byte: 0 = 10 s; then 408 (or a silent close before any byte) */
    uint64_t body_timeout_ms;   /* the whole body, from the end of the head: 0 = 10 s; then 408 */
    uint64_t idle_timeout_ms;   /* keep-alive wait for the next request: 0 = 60 s */
    uint64_t write_timeout_ms;  /* a peer that stops reading responses: 0 = 30 s */
    size_t max_connections;     /* 0 = 4096; beyond, new connections are closed at once */
    proxy_http_handler_cb handler;
    proxy_http_error_cb on_error;         /* optional */
    const char *error_content_type;       /* of bodies on_error renders; NULL = text/plain */
    proxy_http_tls_error_cb on_tls_error; /* optional */
    void *data;
} proxy_http_server_options;

int proxy_http_server_new(uv_loop_t *loop, const proxy_http_server_options *opts,
                          proxy_http_server **out);
/* "ADDR:PORT" (port 0 = any free port, see proxy_http_server_port). */
int proxy_http_server_listen_tcp(proxy_http_server *s, const char *addr_port, ward_err *err);
/* A Unix socket created with mode 0600 (a stale socket file is replaced;
 * another existing file is an error). */
int proxy_http_server_listen_unix(proxy_http_server *s, const char *path, ward_err *err);
int proxy_http_server_port(const proxy_http_server *s);
/* TLS for connections accepted from now on (a reference is taken; NULL =
 * plaintext). */
void proxy_http_server_set_tls(proxy_http_server *s, proxy_tls_ctx *tls);
size_t proxy_http_server_connections(const proxy_http_server *s);
/* Stops accepting; idle connections close now, busy ones after their current
 * response (or their deadline). cb runs once everything is closed and the
 * server freed. force: close every connection now. */
void proxy_http_server_close(proxy_http_server *s, bool force, proxy_done_cb cb, void *data);

const proxy_http_request *proxy_http_exchange_request(const proxy_http_exchange *ex);
proxy_slice proxy_http_exchange_body(const proxy_http_exchange *ex);
/* Who sent it (a copy that lives as long as the exchange). */
const proxy_peer *proxy_http_exchange_peer(const proxy_http_exchange *ex);
/* proxy_peer_verify on the exchange's peer, remembered by its connection:
 * later requests on the same connection, checked against the same bundle
 * snapshot while every certificate of the chain is still valid, get the same
 * answer without another signature check. Failures are not remembered. */
int proxy_http_exchange_verify_peer(proxy_http_exchange *ex, ident_bundle *bundle, time_t now,
                                    char *id, ward_err *why);
/* Close the connection after this response. */
void proxy_http_exchange_set_close(proxy_http_exchange *ex);
/* Answers and frees the exchange (also when its connection is already gone:
 * then nothing is sent). The body is not sent for HEAD requests. Invalid
 * headers answer 500 instead and return WARD_EINVAL. */
int proxy_http_respond(proxy_http_exchange *ex, int status, const proxy_header *headers, size_t n,
                       const void *body, size_t len);

/* ==== ward-proxy's configuration (config.c) ======================================
 * The YAML file of `ward-proxy --config FILE`, validated strictly (unknown
 * keys, wrong types, bad values and missing keys are all reported at once as
 * "file:line:col: field.path: message") into an immutable struct with every
 * default filled in. docs/proxy-config.md documents each key. Relative file
 * paths are resolved against the folder of the config file. */

#define PROXY_CONFIG_WORKERS_MAX 256
#define PROXY_CONFIG_UNLIMITED   UINT64_MAX /* limits.max_body: streamed, no cap */

/* Deadlines, in milliseconds, of one listener's traffic. */
typedef struct proxy_config_timeouts {
    uint64_t header_read_ms;      /* TLS handshake + request head: 10 s (then 408) */
    uint64_t idle_ms;             /* keep-alive wait for the next request: 60 s */
    uint64_t upstream_connect_ms; /* connecting (and TLS) to the app or an upstream: 5 s */
    uint64_t request_ms;          /* request head in .. response head out: 30 s (then 504) */
} proxy_config_timeouts;

/* How an upstream's endpoint is chosen for each attempt (cluster.c). */
typedef enum proxy_balance {
    PROXY_BALANCE_LEAST_REQUEST,   /* "least_request": power of two choices (the default) */
    PROXY_BALANCE_ROUND_ROBIN,     /* "round_robin" */
    PROXY_BALANCE_CONSISTENT_HASH, /* "consistent_hash": a ring keyed by hash_key */
} proxy_balance;

/* What consistent_hash hashes. */
typedef enum proxy_hash_on {
    PROXY_HASH_SOURCE_PRINCIPAL, /* "source_principal": the caller's SPIFFE ID (the default) */
    PROXY_HASH_HEADER,           /* "header:<name>": the first field of that name */
} proxy_hash_on;

/* Defaults of an upstream's traffic keys (docs/proxy-config.md). The limits
 * hold for the whole proxy; proxy_cluster_new shares them out among workers. */
#define PROXY_CLUSTER_DEFAULT_MAX_CONNECTIONS  1024
#define PROXY_CLUSTER_DEFAULT_MAX_PENDING      1024
#define PROXY_CLUSTER_DEFAULT_MAX_REQUESTS     1024
#define PROXY_CLUSTER_DEFAULT_MAX_RETRIES      1024
#define PROXY_CLUSTER_DEFAULT_CONSECUTIVE      5      /* 5xx, and connect failures */
#define PROXY_CLUSTER_DEFAULT_BASE_EJECTION_MS 30000  /* 30 s */
#define PROXY_CLUSTER_DEFAULT_MAX_EJECTION_MS  300000 /* 5 min */
#define PROXY_CLUSTER_DEFAULT_MAX_EJECTION_PCT 50
#define PROXY_CLUSTER_DEFAULT_BUDGET_PERCENT   20
#define PROXY_CLUSTER_DEFAULT_BUDGET_MIN       3

/* A known upstream service of the outbound side (named by the Host header). */
typedef struct proxy_config_upstream {
    char *service;                  /* DNS-label-like, unique */
    char **endpoints;               /* "ADDR:PORT" as written */
    struct sockaddr_storage *addrs; /* the same, parsed */
    size_t n_endpoints;             /* >= 1 */
    char *spiffe_id;                /* the identity every endpoint must present */
    int line;                       /* where it is defined, for messages */
    /* traffic management (issue 6; cluster.c), every default filled in */
    proxy_balance balance;
    proxy_hash_on hash_on; /* consistent_hash only */
    char *hash_header;     /* PROXY_HASH_HEADER: the field name, lowercased; else NULL */
    struct {
        uint64_t max_connections; /* open (and opening) connections to all endpoints */
        uint64_t max_pending;     /* requests waiting for a connection */
        uint64_t max_requests;    /* attempts in flight, retries included */
        uint64_t max_retries;     /* retries in flight (0: no retries) */
    } circuit_breakers;
    struct {
        uint64_t consecutive_5xx;              /* 0 = never ejected for 5xx */
        uint64_t consecutive_connect_failures; /* 0 = never ejected for connect failures */
        uint64_t base_ejection_ms;             /* times the ejection count */
        uint64_t max_ejection_ms;              /* cap of one ejection (>= base) */
        uint64_t max_ejection_percent;         /* 0..100 of the endpoints at most */
    } outlier;
    struct {
        uint64_t percent;         /* retries in flight: at most this % of first attempts */
        uint64_t min_concurrency; /* ... or this many, whichever is more */
    } retry_budget;
} proxy_config_upstream;

/* A TCP listener (tcp.c): inbound (app set: mTLS from other proxies to the
 * local workload) or outbound (endpoints set: the workload's plaintext
 * connections, on loopback, to a remote service over mTLS). */
typedef struct proxy_config_tcp {
    char *name; /* unique; names it in audit records (request.host) and logs */
    char *listen;
    struct sockaddr_storage listen_addr;
    bool inbound;
    char *app; /* inbound */
    struct sockaddr_storage app_addr;
    char *service;                  /* outbound: destination.service */
    char **endpoints;               /* outbound: tried in turn */
    struct sockaddr_storage *addrs;
    size_t n_endpoints;
    char *spiffe_id;   /* outbound: what every endpoint must present */
    char *server_name; /* outbound: the SNI sent; NULL = the service */
    uint64_t connect_timeout_ms, idle_timeout_ms; /* 0 = the defaults of proxy_tcp_options */
    int line;
} proxy_config_tcp;

/* The record fields an audit.fields allow-list may leave out (written as
 * null); the others (who, what, the decision, the chain) are always written. */
enum {
    PROXY_AUDIT_OMIT_SOURCE_IP = 1u << 0,
    PROXY_AUDIT_OMIT_SOURCE_PORT = 1u << 1,
    PROXY_AUDIT_OMIT_DESTINATION_PORT = 1u << 2,
    PROXY_AUDIT_OMIT_REQUEST_HOST = 1u << 3,
    PROXY_AUDIT_OMIT_REQUEST_PATH = 1u << 4,
    PROXY_AUDIT_OMIT_REQUEST_HEADERS = 1u << 5,
    PROXY_AUDIT_OMIT_REASON = 1u << 6,
    PROXY_AUDIT_OMIT_TRACE_ID = 1u << 7,
    PROXY_AUDIT_OMIT_LATENCY = 1u << 8,
    PROXY_AUDIT_OMIT_PEER_CERT = 1u << 9,
};
#define PROXY_AUDIT_HEADERS_MAX 32

typedef enum proxy_config_identity_mode {
    PROXY_IDENTITY_WARDD,  /* attest to wardd with a join token, renew from it */
    PROXY_IDENTITY_STATIC, /* certificate, key and bundle read from files */
} proxy_config_identity_mode;

typedef struct proxy_config {
    char *file;    /* the name it was loaded from */
    char *service; /* this workload's service name (destination.service inbound) */
    struct {
        proxy_config_identity_mode mode;
        char *server;      /* WARDD: "https://host:port" */
        char *token_file;  /* WARDD: the join token (0600) */
        char *state_dir;   /* WARDD, optional: the current SVID is kept here (0700) so
                              that a restart needs no new join token */
        char *cert_file;   /* STATIC: leaf first, then intermediates */
        char *key_file;    /* STATIC: its private key (no group/other access) */
        char *bundle_file; /* both: trusted CA certificates (WARDD: pins wardd) */
    } identity;
    struct {
        char *listen; /* mTLS from other proxies */
        struct sockaddr_storage listen_addr;
        char *app; /* the local workload, plaintext */
        struct sockaddr_storage app_addr;
        proxy_config_timeouts timeouts;
    } inbound;
    struct {
        char *listen; /* NULL: no outbound listener; else loopback only */
        struct sockaddr_storage listen_addr;
        proxy_config_timeouts timeouts;
    } outbound;
    proxy_config_upstream *upstreams;
    size_t n_upstreams;
    proxy_config_tcp *tcp; /* TCP listeners */
    size_t n_tcp;
    struct {
        char **paths; /* files or folders of policies */
        size_t n_paths;
        bool default_allow; /* false (default): deny when no ALLOW policy selects us */
    } policy;
    struct {
        char *dir;
        audit_overflow overflow; /* a full audit queue: deny (default), block or drop */
        char *key_file;          /* checkpoint signing key; NULL = DIR/checkpoint.key */
        uint64_t segment_bytes;  /* 0 = the audit defaults (docs/audit.md) */
        uint64_t segment_age_ms;
        uint64_t checkpoint_records;
        uint64_t queue_records; /* per worker, rounded up to a power of two; 0 = 1,024 */
        uint64_t fsync_ms;
        struct {
            char *address; /* the syslog collector, "HOST:PORT"; NULL: no sink */
            bool tls;      /* audit.sink.tls given: ca_file is set */
            char *ca_file, *cert_file, *key_file, *server_name;
            int facility;   /* 0..23, default 16 (local0) */
            char *app_name; /* NULL: "ward-proxy" */
        } sink;
        char **headers; /* request fields recorded in request.headers (lowercased) */
        size_t n_headers;
        char **redact; /* more fields recorded as "[redacted]" (lowercased) */
        size_t n_redact;
        uint32_t omit; /* PROXY_AUDIT_OMIT_*: optional fields that audit.fields leaves out */
    } audit;
    struct {
        char *listen; /* loopback only; default 127.0.0.1:15000 */
        struct sockaddr_storage listen_addr;
    } admin;
    unsigned workers;  /* 1..PROXY_CONFIG_WORKERS_MAX (resolved when "auto") */
    bool workers_auto; /* "auto" (the default): one per online core */
    struct {
        uint64_t max_header_bytes; /* all field lines: 60 KiB (more: 431) */
        uint64_t max_headers;      /* field count: 100 (more: 431) */
        uint64_t max_body;         /* PROXY_CONFIG_UNLIMITED (default): streamed */
        uint64_t max_connections;  /* per listener and worker: 16384 */
    } limits;
    struct {
        bool allow_tls12; /* tls.min_version "1.2"; default "1.3": TLS 1.3 only */
    } tls;
    uint64_t drain_ms; /* timeouts.drain: graceful shutdown deadline, 30 s */
} proxy_config;

/* Reads and validates a config file. On failure returns WARD_EPOLICY (or
 * WARD_EIO / WARD_ENOMEM) with every problem in diag and *out NULL. */
int proxy_config_load(const char *path, proxy_config **out, ward_diag *diag);
/* The same from bytes; `name` is used in messages and, as a path, to resolve
 * relative file names. */
int proxy_config_load_buffer(const char *name, const char *data, size_t len, proxy_config **out,
                             ward_diag *diag);
void proxy_config_free(proxy_config *cfg);
/* "60KiB", "1MiB", "512B", "2GiB" -> bytes, value <= max (WARD_EINVAL / WARD_ERANGE). */
int proxy_size_parse(const char *s, size_t len, uint64_t max, uint64_t *out);

/* ==== request paths (http_path.c) ==============================================
 * The path is matched by policy and forwarded in one normal form (DESIGN.md,
 * "Policy language"). proxy_http_path_normalize takes an origin-form target
 * ("/path?query"), splits the query off (returned as is, as a slice of the
 * input) and rewrites the path:
 *   - %XX of an unreserved character (ALPHA DIGIT - . _ ~) is decoded; every
 *     other %XX is kept encoded, its hex in uppercase (RFC 3986 6.2.2);
 *   - dot-segments are removed (RFC 3986 5.2.4) AFTER that decoding, so
 *     "%2e%2e" counts as ".."; a ".." that would climb above the root is
 *     refused, never clamped (a client sending it is probing, and clamping
 *     would make "/../admin" an alias of "/admin");
 *   - runs of '/' are merged into one; a trailing '/' is kept.
 * Refused (status 400, WARD_EINVAL): a path not starting with '/', an encoded
 * '/' or '\' (%2F %5C), a literal '\', NUL, %00 and any other control
 * character, literal or encoded (%01-%1F, %7F), bytes outside RFC 3986
 * (space, '"', '#', '<', non-ASCII, ...), invalid percent-encoding, and the
 * dot-segments with parameters ".;x" and "..;x" (Tomcat and Jetty read them
 * as "." and ".."). Refused with 414 (WARD_ELIMIT): a path longer than
 * PROXY_HTTP_PATH_MAX bytes. The result is idempotent: normalizing it again
 * gives the same bytes. */

#define PROXY_HTTP_PATH_MAX ((size_t)8 << 10)

/* target[0..len): an origin-form request target. out gets the normalized
 * path, NUL-terminated, in at most out_size bytes (len + 1 always suffice,
 * PROXY_HTTP_PATH_MAX + 1 suffice for any accepted path); *out_len its
 * length. query (may be NULL): the bytes after the first '?', absent when
 * there is none. On error, *err (may be NULL) gets the status and a static
 * reason (500 for an out_size too small: a caller bug); out is then
 * unspecified. */
int proxy_http_path_normalize(const char *target, size_t len, char *out, size_t out_size,
                              size_t *out_len, proxy_slice *query, proxy_http_error *err);

/* ==== chunked bodies (http_chunked.c) ===========================================
 * An incremental decoder of the chunked transfer coding (RFC 9112 7.1) that
 * examines each byte once and keeps no copy: chunk data is handed out as
 * slices of the caller's input. Strict: the chunk size is 1 to 16 hex digits
 * and nothing else (no whitespace, sign or "0x"); extensions are
 * ";name[=token|quoted-string]" without any whitespace (RFC 9112 allows BWS,
 * which desync attacks use, so it is refused), bounded in length and
 * ignored; every line ends in CRLF (a bare CR or LF is refused) and the data
 * of a chunk is followed by CRLF exactly. Trailer fields are checked with the
 * request parser's rules (token name, no whitespace before the colon, no
 * obs-fold, no controls but HTAB), bounded in bytes and count, and DROPPED:
 * nothing in them is ever handed on. The total of the chunk sizes is bounded
 * by body_max (413). Errors carry status 400 or 413 and are sticky. */

#define PROXY_CHUNK_EXT_MAX       ((size_t)256)     /* per chunk line, from the first ';' */
#define PROXY_CHUNK_TRAILER_BYTES ((size_t)8 << 10) /* all trailer lines, CRLFs included */
#define PROXY_CHUNK_TRAILERS_MAX  32
#define PROXY_CHUNK_SIZE_LINE_MAX 19 /* 16 hex digits, CRLF, NUL */

typedef struct proxy_chunked_limits {
    uint64_t body_max;        /* 0 = PROXY_HTTP_BODY_MAX */
    size_t ext_max;           /* 0 = PROXY_CHUNK_EXT_MAX */
    size_t trailer_bytes_max; /* 0 = PROXY_CHUNK_TRAILER_BYTES */
    size_t trailers_max;      /* 0 = PROXY_CHUNK_TRAILERS_MAX */
} proxy_chunked_limits;

/* Embeddable (no allocation); the fields are private. */
typedef struct proxy_chunked_decoder {
    proxy_chunked_limits lim;
    int state;
    unsigned digits;
    uint64_t size;      /* the current chunk's size, then what is left of its data */
    uint64_t total;     /* sum of the chunk sizes so far */
    uint64_t chunks;    /* chunks whose data and closing CRLF were checked */
    size_t ext_len;     /* extension bytes on the current size line */
    size_t trailer_bytes;
    size_t trailers;
    proxy_http_error err;
} proxy_chunked_decoder;

enum {
    PROXY_CHUNKED_MORE = 0, /* every byte given was consumed; feed more */
    PROXY_CHUNKED_DATA = 1, /* *data holds body bytes (a slice of the input, never empty) */
    PROXY_CHUNKED_DONE = 2, /* the body ended; *consumed stops after its final CRLF */
};

void proxy_chunked_init(proxy_chunked_decoder *d, const proxy_chunked_limits *limits);
/* Ready for the next body, with the same limits. */
void proxy_chunked_reset(proxy_chunked_decoder *d);
/* Decodes from in[0..len): *consumed gets how many bytes were used (the
 * caller continues at in + *consumed). Returns a PROXY_CHUNKED_* value, or
 * WARD_EINVAL / WARD_ELIMIT with *err (may be NULL) filled. After DONE every
 * call returns DONE consuming nothing, after an error the same error. */
int proxy_chunked_decode(proxy_chunked_decoder *d, const char *in, size_t len, size_t *consumed,
                         proxy_slice *data, proxy_http_error *err);
/* The sum of the chunk sizes seen so far. */
uint64_t proxy_chunked_total(const proxy_chunked_decoder *d);
/* Chunks (not counting the last, empty one) whose data and closing CRLF were checked. */
uint64_t proxy_chunked_chunks(const proxy_chunked_decoder *d);

/* Writes "<size in lowercase hex>\r\n" into buf (at least
 * PROXY_CHUNK_SIZE_LINE_MAX bytes, NUL-terminated); returns its length. For
 * writing a chunk's data without copying it (size must be > 0). */
size_t proxy_chunked_size_line(char *buf, uint64_t size);
/* Appends one chunk holding data[0..len) (nothing when len is 0: an empty
 * chunk would end the body). */
int proxy_chunked_encode(ward_buf *out, const void *data, size_t len);
/* Appends the last chunk and the empty trailer section: "0\r\n\r\n". */
int proxy_chunked_encode_last(ward_buf *out);

/* ==== HTTP/1.1 response heads (http_response.c) ==================================
 * A strict, bounded, incremental parser of the response heads that apps and
 * upstreams send, with the request parser's rules for header fields (no
 * obs-fold, bare CR/LF, NUL or controls, no whitespace before a colon) and
 * RFC 9112 6.3 for framing. Refused (status 502 for the client): a malformed
 * status line or version other than HTTP/1.0 or 1.1, duplicate, listed or
 * malformed Content-Length, Content-Length with Transfer-Encoding, any
 * Transfer-Encoding but exactly "chunked" (or any in HTTP/1.0),
 * Content-Length or Transfer-Encoding in a 1xx or 204, empty lines before the
 * status line, heads beyond the limits. */

typedef enum proxy_http_resp_body {
    PROXY_RESP_BODY_NONE,    /* HEAD, 1xx, 204, 304: no body whatever the fields say */
    PROXY_RESP_BODY_LENGTH,  /* content_length bytes */
    PROXY_RESP_BODY_CHUNKED, /* chunked (proxy_chunked_decode) */
    PROXY_RESP_BODY_CLOSE,   /* until the connection closes (keep_alive is false) */
} proxy_http_resp_body;

typedef struct proxy_http_response {
    int version_minor;
    int status; /* 100..599 */
    proxy_slice reason;
    const proxy_header *headers;
    size_t n_headers;
    proxy_http_resp_body body;
    uint64_t content_length; /* PROXY_RESP_BODY_LENGTH (also kept for HEAD and 304) */
    bool keep_alive;         /* the connection may carry another request */
    bool upgrade;            /* 101 Switching Protocols: the connection becomes a tunnel */
    size_t head_len;         /* bytes up to and including the empty line */
} proxy_http_response;

typedef struct proxy_http_response_parser proxy_http_response_parser;

/* limits: request_line_max bounds the status line, header_bytes_max and
 * headers_max the fields (0 = the request defaults); body_max and
 * allow_chunked are not used. */
int proxy_http_response_parser_new(const proxy_http_limits *limits,
                                   proxy_http_response_parser **out);
void proxy_http_response_parser_free(proxy_http_response_parser *p);
/* Forgets the current head (after a 1xx, before the next response). */
void proxy_http_response_parser_reset(proxy_http_response_parser *p);
/* As proxy_http_parser_feed: buf[0..len) holds the response so far, each call
 * only appends. head_request: the request was HEAD (no body follows).
 * Returns 1 (resp filled; slices valid while buf is unchanged and until the
 * next feed or reset), 0 (more bytes needed) or WARD_EINVAL / WARD_ELIMIT
 * with *err filled; errors are sticky until reset. */
int proxy_http_response_parser_feed(proxy_http_response_parser *p, const char *buf, size_t len,
                                    bool head_request, proxy_http_response *resp,
                                    proxy_http_error *err);

/* ==== metrics and admin (metrics.c, admin.c) =====================================
 * Metrics: one proxy_metrics per worker, updated by the request path without
 * locks or system calls, rendered in the Prometheus text format 0.0.4.
 * Threads: every update function is called by ONE thread, the worker that
 * owns the struct (a single writer: counters are relaxed atomic stores, new
 * label sets are appended to a fixed-size table and published with a release
 * store); the admin thread reads every worker's metrics at any time and sums
 * them (a scrape sees each counter at some recent value, never a torn one).
 * Label sets with principals are unbounded in theory: a worker keeps at most
 * PROXY_METRICS_SERIES_MAX request label sets (and PROXY_METRICS_UPSTREAMS_MAX
 * upstream services); later new ones are counted under PROXY_METRICS_OTHER in
 * place of the principals and the service. Label values are cut at
 * PROXY_METRICS_LABEL_MAX bytes (so a worker's label sets hold at most about
 * 6 MiB, whatever its peers send); in the output `\`, `"` and newline are
 * escaped and bytes that are not UTF-8 become U+FFFD.
 *
 * Families: ward_requests_total{direction,decision,code,source_principal,
 * destination_service,destination_principal}, ward_decision_duration_seconds
 * and ward_request_duration_seconds{direction} (histograms, buckets 1us..10s),
 * ward_tls_handshake_failures_total{direction,reason},
 * per Route entry (labels direction, route "ns/name", entry: its name, or
 * "http[i]") ward_route_requests_total{code_class}, ward_route_retries_total,
 * ward_route_rate_limited_total, ward_route_mirrored_total and ward_route_request_duration_seconds (at
 * most PROXY_METRICS_ROUTES_MAX entries per worker, later ones as "_other_"),
 * ward_connections_active{listener}, ward_upstream_connect_failures_total
 * {direction,service}, and from the admin state ward_svid_expiry_timestamp_seconds,
 * ward_policy_info{revision}, ward_policy_reloads_total,
 * ward_policy_reload_failures_total. */

#define PROXY_METRICS_SERIES_MAX    1024 /* request label sets per worker */
#define PROXY_METRICS_UPSTREAMS_MAX 256  /* services with connect failures per worker */
#define PROXY_METRICS_ROUTES_MAX    1024 /* Route entries per worker */
#define PROXY_METRICS_LABEL_MAX     2048 /* bytes of one label value (a SPIFFE ID's maximum) */
#define PROXY_METRICS_OTHER         "_other_"
#define PROXY_METRICS_CONTENT_TYPE  "text/plain; version=0.0.4; charset=utf-8"

typedef struct proxy_metrics proxy_metrics;

/* One finished request (or one refused before the decision: a deny). */
typedef struct proxy_metrics_request_info {
    bool inbound; /* from another proxy (else: from our workload, outbound) */
    bool allow;   /* the decision */
    int status;   /* the response status sent; 0 (or anything outside 100..599): none */
    const char *source_principal;      /* borrowed; NULL = "" */
    const char *destination_service;   /* borrowed; NULL = "" */
    const char *destination_principal; /* borrowed; NULL = "" */
    uint64_t decision_ns; /* time the policy engine took; 0 = it did not run (not observed) */
    uint64_t request_ns;  /* request head in .. response out */
} proxy_metrics_request_info;

/* What a failed TLS handshake is counted as (the reason label). */
typedef enum proxy_tls_failure {
    PROXY_TLS_FAILURE_NO_CERTIFICATE,     /* "no_certificate": the peer presented none */
    PROXY_TLS_FAILURE_UNTRUSTED,          /* "untrusted": unknown CA, bad signature, not an
                                             X509-SVID, not the expected ID */
    PROXY_TLS_FAILURE_EXPIRED,            /* "expired": expired or not yet valid */
    PROXY_TLS_FAILURE_WRONG_TRUST_DOMAIN, /* "wrong_trust_domain" */
    PROXY_TLS_FAILURE_PROTOCOL,           /* "protocol": versions, ciphers, alerts, not TLS */
    PROXY_TLS_FAILURE_OTHER,              /* "other": resets, closes, anything else */
} proxy_tls_failure;
#define PROXY_TLS_FAILURE_CLASSES 6

/* The class of a free-text reason (proxy_stream_error, ident_svid_verify,
 * OpenSSL's strings; case-insensitive; NULL = other). */
proxy_tls_failure proxy_tls_failure_classify(const char *reason);
/* "no_certificate", "untrusted", ... */
const char *proxy_tls_failure_name(proxy_tls_failure f);

int proxy_metrics_new(proxy_metrics **out);
/* Only once no thread uses it any more (after proxy_admin_stop). */
void proxy_metrics_free(proxy_metrics *m);
void proxy_metrics_request(proxy_metrics *m, const proxy_metrics_request_info *info);
void proxy_metrics_tls_failure(proxy_metrics *m, bool inbound, const char *reason);

/* One finished request that a Route entry served (or refused: rate limited). */
typedef struct proxy_metrics_route_info {
    bool inbound;
    const char *route; /* "ns/name", borrowed */
    const char *entry; /* the entry's name or "http[i]", borrowed */
    int status;        /* the response status; 0: none */
    unsigned retries;  /* retries the request took */
    bool rate_limited;
    bool mirrored; /* a copy went to the entry's mirror */
    uint64_t request_ns;
} proxy_metrics_route_info;
void proxy_metrics_route(proxy_metrics *m, const proxy_metrics_route_info *info);
/* A connection of the inbound or outbound listener opened (+1) or closed (-1). */
void proxy_metrics_connections(proxy_metrics *m, bool inbound, int delta);
/* Connecting failed: inbound = to our workload (service: ours), outbound = to
 * an endpoint of an upstream service. */
void proxy_metrics_upstream_failure(proxy_metrics *m, bool inbound, const char *service);

/* What the proxy tells the admin endpoint: its SVID, its policy, its audit
 * trail's health. Setters may be called from any thread (a mutex). */
typedef struct proxy_admin_state proxy_admin_state;

int proxy_admin_state_new(proxy_admin_state **out);
void proxy_admin_state_free(proxy_admin_state *st);
/* The SVID in use (spiffe_id NULL: none) and when it expires. */
void proxy_admin_state_set_svid(proxy_admin_state *st, const char *spiffe_id, time_t not_after);
/* A policy set is in force: its revision and its policies ("ns/name"). The
 * first call is the initial load, each later one a reload; it clears the
 * last reload error. On WARD_ENOMEM nothing changes. */
int proxy_admin_state_policy_loaded(proxy_admin_state *st, const char *revision,
                                    const char *const *policies, size_t n);
/* A reload failed; the policy in force stays. */
void proxy_admin_state_policy_failed(proxy_admin_state *st, const char *error);
/* A fatal audit error (no record can be written; NULL clears it). */
void proxy_admin_state_set_audit_error(proxy_admin_state *st, const char *error);

#define PROXY_ADMIN_REVISION_MAX 256
#define PROXY_ADMIN_ERROR_MAX    1024

/* A consistent copy of the state (strings cut to their buffers). */
typedef struct proxy_admin_status {
    bool has_svid;
    char svid_id[IDENT_ID_MAX];
    time_t svid_expiry;
    bool has_policy; /* a policy set was loaded */
    char policy_revision[PROXY_ADMIN_REVISION_MAX];
    char **policies; /* owned */
    size_t n_policies;
    time_t policy_loaded_at;
    uint64_t policy_reloads;
    uint64_t policy_reload_failures;
    char policy_error[PROXY_ADMIN_ERROR_MAX]; /* of the last reload if it failed, else "" */
    char audit_error[PROXY_ADMIN_ERROR_MAX];  /* "" = none */
} proxy_admin_status;

int proxy_admin_state_get(proxy_admin_state *st, proxy_admin_status *out);
void proxy_admin_status_dispose(proxy_admin_status *s);
/* Ready: an SVID that has not expired at now, a policy set, no fatal audit
 * error. If not, why ("no SVID; no policy loaded") goes into why. */
bool proxy_admin_status_ready(const proxy_admin_status *s, time_t now, char *why, size_t size);

/* Appends every family, summed over the workers' metrics, to out; st (may be
 * NULL) gives the SVID and policy families. */
int proxy_metrics_render(proxy_metrics *const *workers, size_t n, proxy_admin_state *st,
                         ward_buf *out);

/* The admin listener: an HTTP server on loopback, on its own thread and
 * loop. GET (or HEAD) /ready (200 "ready", else 503 and why), /healthz (200
 * "ok"), /metrics, /config (the effective configuration as JSON: file names,
 * never their contents), /policy (JSON), /clusters (upstream endpoints'
 * health, JSON). Other paths 404, other methods 405. */
typedef struct proxy_admin proxy_admin;

typedef struct proxy_admin_options {
    proxy_metrics *const *metrics; /* every worker's metrics */
    size_t n_metrics;
    const proxy_config *config; /* NULL: /config answers 404 */
    proxy_admin_state *state;   /* required */
    struct proxy_cluster *const *clusters; /* every worker's upstream clusters (/clusters) */
    size_t n_clusters;
    /* more families for /metrics (may be NULL), called on the admin thread */
    int (*more_metrics)(ward_buf *out, void *data);
    void *more_metrics_data;
    /* all borrowed: they must outlive the admin (until proxy_admin_stop returns) */
} proxy_admin_options;

/* listen_addr: "ADDR:PORT" of a loopback address (127.0.0.0/8 or [::1];
 * port 0 = any free one), anything else WARD_EINVAL. Listens, then starts
 * the thread. */
int proxy_admin_start(const char *listen_addr, const proxy_admin_options *opts, proxy_admin **out,
                      ward_err *err);
int proxy_admin_port(const proxy_admin *a);
/* Closes every connection, stops and joins the thread, frees. */
void proxy_admin_stop(proxy_admin *a);

/* ==== the HTTP/1.1 relay (relay.c) ===============================================
 * A listener and its client connections that hand each request on to an
 * upstream, streamed both ways with backpressure: nothing is buffered whole.
 * Per request the relay parses the head strictly (proxy_http_parser_feed),
 * refuses absolute-form targets whose authority is not the Host and CONNECT,
 * normalizes the path (proxy_http_path_normalize) and calls the route
 * callback, which must, before it returns, either forward the request
 * (proxy_relay_forward) or answer it (proxy_relay_respond); if it does
 * neither the relay answers 503 (fail closed). A forwarded request goes out
 * in origin-form with the normalized path, without hop-by-hop fields (and the
 * fields Connection names), without any X-Forwarded-Client-Cert from the
 * client, with X-Forwarded-For extended by the client's address, a valid
 * traceparent kept (else a new one) and its own framing: chunked bodies are
 * decoded and encoded again, so only well-formed chunks ever reach the
 * upstream. "Expect: 100-continue" is answered by the relay once the request
 * is forwarded. Responses are parsed strictly too (proxy_http_response_parser)
 * and re-framed for the client. An upgrade (WebSocket) that the upstream
 * accepts with 101 turns the connection into a byte tunnel. Pipelined
 * requests are handled one after another. Upstream connections come from a
 * per-loop pool keyed by address and expected SPIFFE ID. A failure before the
 * response head is a local 502 (TLS, identity, reset), 503 (connect) or 504
 * (request timeout) with the reason in X-Ward-Reason; after it, the client
 * connection is cut. One loop only: nothing here is thread-safe. */

typedef struct proxy_relay proxy_relay;
typedef struct proxy_relay_pool proxy_relay_pool;
typedef struct proxy_relay_request proxy_relay_request;

/* Where a request goes. */
typedef struct proxy_relay_target {
    const struct sockaddr *addr;
    proxy_tls_ctx *tls;      /* NULL: plaintext (a reference is taken) */
    const char *expected_id; /* with tls: the SPIFFE ID the server must present */
    const proxy_header *add_headers; /* appended to the forwarded head (checked by the caller) */
    size_t n_add_headers;
    const char *path; /* forwarded in place of the normalized path (a route's rewrite; the
                         query is kept), NULL = the normalized path */
    const char *const *remove_headers; /* request fields not forwarded (case-insensitive) */
    size_t n_remove_headers;
    uint64_t timeout_ms; /* of each attempt (no response head: 504); 0 = timeouts.request */
    const proxy_header *response_add; /* appended to the response head (copied) */
    size_t n_response_add;
    const char *const *response_remove; /* response fields not passed on (copied) */
    size_t n_response_remove;
    /* A copy of the request sent fire-and-forget (shadow traffic; its answer
     * is read and dropped, its failures only end it): only for a request
     * without a body, with the head as forwarded but for Host (mirror_host)
     * and two fields added, "X-Ward-Mirror: 1" and "Connection: close"; over
     * tls to mirror_addr, the server's SPIFFE ID must be mirror_expected_id.
     * At most PROXY_RELAY_MIRRORS_MAX copies are in flight per thread (more
     * are not sent); each is cut after PROXY_RELAY_MIRROR_TIMEOUT_MS. */
    const struct sockaddr *mirror_addr; /* NULL: no copy */
    const char *mirror_expected_id;
    const char *mirror_host;
    /* The cluster and endpoint of addr (NULL: none): a new connection must be
     * admitted by its max_connections and max_pending breakers (else the
     * request is answered 503 with X-Ward-Reason "circuit breaker: ..." and
     * the result's error says it), and is counted while it opens (pending)
     * and lives (connections). */
    struct proxy_cluster *cluster;
    size_t endpoint;
} proxy_relay_target;

#define PROXY_RELAY_MIRRORS_MAX       256
#define PROXY_RELAY_MIRROR_TIMEOUT_MS 5000

/* How a request ended (for metrics and audit). */
typedef struct proxy_relay_result {
    int status;           /* sent to the client; 0 when none was */
    bool local;           /* answered by the proxy, not the upstream */
    bool upstream_reused; /* went over a pooled connection */
    const char *error;    /* what failed (static), or NULL */
    unsigned attempts;    /* retries made (proxy_relay_retarget) */
    bool mirrored;        /* a copy was sent (proxy_relay_target.mirror_addr) */
    uint64_t bytes_in;    /* request body bytes forwarded */
    uint64_t bytes_out;   /* response body bytes sent */
    uint64_t duration_ns; /* from the complete head to the end of the response */
} proxy_relay_result;

typedef void (*proxy_relay_route_cb)(proxy_relay_request *r, void *data);
typedef void (*proxy_relay_done_cb)(proxy_relay_request *r, const proxy_relay_result *res,
                                    void *data);
/* A head refused before routing (400, 408, 413, 414, 431, 501, 505 ...). */
typedef void (*proxy_relay_reject_cb)(const proxy_peer *peer, int status, const char *reason,
                                      void *data);
typedef void (*proxy_relay_connection_cb)(bool opened, void *data);
/* An attempt failed before anything reached the client, for a request
 * without a body: status is the relay's 502/503/504 (why: the reason) or,
 * with from_upstream, the upstream's own 5xx. Return true after calling
 * proxy_relay_retarget to try again; false lets the failure through. */
typedef bool (*proxy_relay_retry_cb)(proxy_relay_request *r, int status, bool from_upstream,
                                     const char *why, void *data);

typedef struct proxy_relay_options {
    proxy_http_limits limits;       /* chunked is always allowed; body_max bounds bodies */
    proxy_config_timeouts timeouts; /* 0 = the proxy_config defaults */
    size_t max_connections;         /* 0 = 16384 */
    proxy_relay_pool *pool;         /* upstream connections of this loop (may be NULL) */
    proxy_relay_route_cb route;     /* required */
    proxy_relay_done_cb done;       /* optional: after each routed request */
    proxy_relay_reject_cb on_reject;       /* optional */
    proxy_http_tls_error_cb on_tls_error;  /* optional */
    proxy_relay_connection_cb on_connection; /* optional */
    proxy_relay_retry_cb retry;              /* optional: no retries without it */
    void *data;
} proxy_relay_options;

int proxy_relay_new(uv_loop_t *loop, const proxy_relay_options *opts, proxy_relay **out);
/* Listens on addr; reuseport sets SO_REUSEPORT so that several loops can share it. */
int proxy_relay_listen(proxy_relay *r, const struct sockaddr *addr, bool reuseport, ward_err *err);
int proxy_relay_port(const proxy_relay *r);
/* TLS for connections accepted from now on (a reference is taken; NULL = plaintext). */
void proxy_relay_set_tls(proxy_relay *r, proxy_tls_ctx *tls);
size_t proxy_relay_connections(const proxy_relay *r);
/* Stops accepting; idle connections close now, busy ones after their response;
 * after drain_ms (0: at once) the rest are cut. cb runs once all is closed
 * and the relay freed. */
void proxy_relay_close(proxy_relay *r, uint64_t drain_ms, proxy_done_cb cb, void *data);

/* idle_ms: how long an idle upstream connection is kept (0 = 30 s);
 * max_idle: per address and identity (0 = 128); max_tls_connecting: TLS
 * connects in progress per address and identity before bodiless requests wait
 * for a free connection or a slot (0 = no cap). */
int proxy_relay_pool_new(uv_loop_t *loop, uint64_t idle_ms, size_t max_idle,
                         size_t max_tls_connecting, proxy_relay_pool **out);
/* Closes the idle connections; call after the relays using it are closed. */
void proxy_relay_pool_free(proxy_relay_pool *p);

/* During the route callback only: the parsed head (slices into the relay's buffer). */
const proxy_http_request *proxy_relay_request_head(const proxy_relay_request *r);
/* The normalized path ("*" for OPTIONS *), valid while the request lives. */
const char *proxy_relay_request_path(const proxy_relay_request *r, size_t *len);
const proxy_peer *proxy_relay_request_peer(const proxy_relay_request *r);
/* The W3C trace id (32 hex digits): the client's traceparent's, or a new one. */
const char *proxy_relay_request_trace_id(const proxy_relay_request *r);
void proxy_relay_request_set_data(proxy_relay_request *r, void *data);
void *proxy_relay_request_data(const proxy_relay_request *r);
/* Forwards (only inside the route callback). On failure the relay has already
 * answered 503. */
int proxy_relay_forward(proxy_relay_request *r, const proxy_relay_target *t);
/* Only inside the retry callback: the next attempt goes to t (the previous
 * upstream connection is closed, what it said is dropped). */
int proxy_relay_retarget(proxy_relay_request *r, const proxy_relay_target *t);
/* Answers locally (only inside the route callback); a request body that was
 * not read closes the connection after the answer. */
int proxy_relay_respond(proxy_relay_request *r, int status, const proxy_header *headers, size_t n,
                        const void *body, size_t len);

/* ==== upstream clusters (cluster.c) ===============================================
 * One upstream service's endpoints as ONE worker sees them, and what decides
 * where the next attempt goes: load balancing, circuit breakers, outlier
 * detection and the retry budget. One instance per worker loop and upstream:
 * every function but the stats and render ones is called by that worker only
 * (no locks). The stats and render functions may run on any thread (the
 * admin's) while the worker runs: counters are single-writer relaxed atomics,
 * so a reader sees each at some recent value; the instance must outlive them.
 * Nothing here reads a clock: time comes in as now_ms (any monotonic
 * milliseconds), so behaviour is deterministic under test.
 *
 * Per attempt, the caller:
 *   1. proxy_cluster_admit(c, is_retry, &why): false = overflow (counted
 *      here); answer 503 with X-Ward-Reason: why;
 *   2. proxy_cluster_pick(...): WARD_ENOENT = every endpoint ejected or
 *      unhealthy; answer 503 with PROXY_CLUSTER_REASON_NO_ENDPOINT;
 *   3. proxy_cluster_request_start(c, ep, is_retry); if it must open a new
 *      connection: proxy_cluster_connect_admit, then pending_start,
 *      connection_start ... pending_end once connected (or failed);
 *   4. proxy_cluster_request_end(c, ep, is_retry, status, now_ms) exactly once
 *      per start; connection_end when a connection closes or fails.
 *
 * Outlier detection: an endpoint is ejected after consecutive_5xx 5xx answers
 * (PROXY_CLUSTER_RESET counts as one) or consecutive_connect_failures failed
 * connects in a row; any answer below 500 resets both runs. It stays out for
 * base_ejection_ms x its ejection count (capped at max_ejection_ms), the count
 * dropping by one for every base_ejection_ms spent back in rotation; an
 * ejection that would put more than max_ejection_percent of the endpoints out
 * does not happen. An endpoint back from ejection starts with fresh runs.
 *
 * Retry budget: a retry may start while retries in flight <
 * max(min_concurrency, percent% of first attempts in flight), so a failing
 * service gets at most ~percent% more load from retries, plus a floor. */

#define PROXY_CLUSTER_NONE               SIZE_MAX /* no endpoint (pick's avoid) */
#define PROXY_CLUSTER_VNODES             100      /* ring points per endpoint, at least */
#define PROXY_CLUSTER_REASON_NO_ENDPOINT "no healthy endpoint"

/* proxy_cluster_request_end's status besides 100..599. */
enum {
    PROXY_CLUSTER_CANCELLED = 0,        /* no answer, not the endpoint's fault (client left) */
    PROXY_CLUSTER_CONNECT_FAILURE = -1, /* connecting (or the TLS handshake) failed */
    PROXY_CLUSTER_RESET = -2,           /* connected, then reset, timed out or answered
                                           garbage before a response head: counts as a 5xx */
};

/* Why admit refused: the circuit breaker (or budget) that overflowed. */
typedef enum proxy_cluster_overflow {
    PROXY_OVERFLOW_CONNECTIONS,  /* "max_connections" */
    PROXY_OVERFLOW_PENDING,      /* "max_pending" */
    PROXY_OVERFLOW_REQUESTS,     /* "max_requests" */
    PROXY_OVERFLOW_RETRIES,      /* "max_retries" */
    PROXY_OVERFLOW_RETRY_BUDGET, /* "retry_budget" */
} proxy_cluster_overflow;
#define PROXY_OVERFLOW_KINDS 5

/* "max_connections", "max_pending", ... (the keys of the breakers). */
const char *proxy_cluster_overflow_name(proxy_cluster_overflow kind);
/* "least_request", "round_robin", "consistent_hash". */
const char *proxy_balance_name(proxy_balance b);

/* A small, fast generator (xorshift64*): per worker or per instance, never
 * shared between threads; not for anything secret. */
typedef struct proxy_rng {
    uint64_t s;
} proxy_rng;

/* Any seed (0 included) gives a valid, seed-dependent sequence. */
void proxy_rng_seed(proxy_rng *r, uint64_t seed);
uint64_t proxy_rng_next(proxy_rng *r);

/* Traffic split: the index in 0..n-1 of the destination that a uniform
 * 64-bit random number `rand` selects, with probability weights[i] / sum.
 * Zero weights are never chosen; n when every weight is 0 (or n is 0). */
size_t proxy_weighted_pick(const uint32_t *weights, size_t n, uint64_t rand);

typedef struct proxy_cluster proxy_cluster;

/* An instance for one worker of `workers` (0 is taken as 1): the upstream's
 * endpoints, spiffe_id and traffic keys are copied (u may go after). The
 * circuit breakers and the budget's min_concurrency hold for the whole
 * proxy: each instance gets ceil(limit / workers) (at least 1 where the
 * limit is not 0). seed: of the instance's generator (least_request). */
int proxy_cluster_new(const proxy_config_upstream *u, unsigned workers, uint64_t seed,
                      proxy_cluster **out);
void proxy_cluster_free(proxy_cluster *c);
/* Sets u's traffic keys to their defaults (the PROXY_CLUSTER_DEFAULT_* values,
 * least_request, hash on source_principal); other fields are untouched. */
void proxy_config_upstream_defaults(proxy_config_upstream *u);

const char *proxy_cluster_service(const proxy_cluster *c);
const char *proxy_cluster_spiffe_id(const proxy_cluster *c);
size_t proxy_cluster_endpoint_count(const proxy_cluster *c);
/* "ADDR:PORT" as configured, and parsed. */
const char *proxy_cluster_endpoint_name(const proxy_cluster *c, size_t ep);
const struct sockaddr *proxy_cluster_endpoint_addr(const proxy_cluster *c, size_t ep);

/* What consistent_hash hashes for this request: the first field named
 * hash_header, or source_principal (may be NULL); absent (ptr NULL) for the
 * other policies or when missing. Slices point into req or source_principal. */
proxy_slice proxy_cluster_hash_key(const proxy_cluster *c, const proxy_http_request *req,
                                   const char *source_principal);

/* May an attempt start? Checks max_requests, and for a retry max_retries and
 * the retry budget. On false, *why (may be NULL) gets a
 * static reason for X-Ward-Reason ("circuit breaker: max_requests", "retry
 * budget exhausted", ...) and the overflow is counted: ask once per attempt. */
bool proxy_cluster_admit(proxy_cluster *c, bool is_retry, const char **why);
/* May a request open a new connection and wait for it (connections open and
 * opening < max_connections, requests waiting < max_pending)? On false the
 * overflow is counted and *why set as for admit. */
bool proxy_cluster_connect_admit(proxy_cluster *c, const char **why);

/* The endpoint for the next attempt, in *ep, among those healthy and not
 * ejected at now_ms (ejections that ended are undone first). key: the
 * consistent_hash key (proxy_cluster_hash_key); absent, or another policy:
 * ignored (consistent_hash without a key falls back to least_request).
 * avoid: an endpoint not to use if any other can be (the previous attempt's,
 * for a retry), else PROXY_CLUSTER_NONE. WARD_ENOENT: none can be used. */
int proxy_cluster_pick(proxy_cluster *c, proxy_slice key, size_t avoid, uint64_t now_ms,
                       size_t *ep);

/* Reports. Each _start is matched by exactly one _end (extra ends are
 * ignored, never wrap). */
void proxy_cluster_request_start(proxy_cluster *c, size_t ep, bool is_retry);
/* status: the endpoint's response status (100..599) or a PROXY_CLUSTER_*
 * outcome above; feeds outlier detection (may eject ep at now_ms). */
void proxy_cluster_request_end(proxy_cluster *c, size_t ep, bool is_retry, int status,
                               uint64_t now_ms);
void proxy_cluster_pending_start(proxy_cluster *c); /* a request waits for a connection */
void proxy_cluster_pending_end(proxy_cluster *c);
void proxy_cluster_connection_start(proxy_cluster *c, size_t ep); /* connecting (counts) */
void proxy_cluster_connection_end(proxy_cluster *c, size_t ep);   /* closed or failed */
/* Health from elsewhere (an active check, a drain): an unhealthy endpoint is
 * never picked. All are healthy at first. */
void proxy_cluster_set_healthy(proxy_cluster *c, size_t ep, bool healthy);

typedef struct proxy_cluster_endpoint_stats {
    const char *name;          /* "ADDR:PORT" (lives as long as the cluster) */
    bool healthy;              /* as set with proxy_cluster_set_healthy */
    bool ejected;              /* at now_ms */
    uint64_t ejected_until_ms; /* when ejected, else 0 */
    uint64_t requests;         /* attempts started, retries included */
    uint64_t active;           /* attempts in flight */
    uint64_t connections;      /* open and opening */
    uint64_t errors_5xx;       /* 5xx answers and resets */
    uint64_t connect_failures;
    uint64_t ejections; /* times ejected */
} proxy_cluster_endpoint_stats;

typedef struct proxy_cluster_stats {
    const char *service;
    proxy_balance balance;
    size_t endpoints;
    size_t available; /* healthy and not ejected at now_ms */
    uint64_t connections, pending, active_requests, active_retries; /* now */
    uint64_t requests, retries;                                     /* started, total */
    uint64_t overflows[PROXY_OVERFLOW_KINDS];
    /* the effective (per instance) limits */
    uint64_t max_connections, max_pending, max_requests, max_retries, budget_min_concurrency;
} proxy_cluster_stats;

void proxy_cluster_get_stats(const proxy_cluster *c, uint64_t now_ms, proxy_cluster_stats *out);
void proxy_cluster_endpoint_get_stats(const proxy_cluster *c, size_t ep, uint64_t now_ms,
                                      proxy_cluster_endpoint_stats *out);

/* Appends the JSON of /clusters: {"clusters": [...]}, one object per service
 * in order of first appearance in cs[0..n) (every worker's instances, any
 * order; instances of one service are summed: counters add up, an endpoint
 * is "ejected" if any worker ejects it, "ejected_in" says how many do,
 * "ejected_until_ms" is the latest end, "healthy" false if any worker marks
 * it so). Instances of one service must come from the same configuration. */
int proxy_cluster_render_json(proxy_cluster *const *cs, size_t n, uint64_t now_ms, ward_buf *out);
/* The same numbers in the Prometheus text format (families ward_cluster_*,
 * labels service and endpoint), to append to /metrics. */
int proxy_cluster_render_metrics(proxy_cluster *const *cs, size_t n, uint64_t now_ms,
                                 ward_buf *out);

/* ==== local rate limits (ratelimit.c) ============================================
 * Token buckets: a limiter allows `requests` per `per_ms` milliseconds with
 * bursts of up to `burst` (default: requests), as one bucket (a route's) or
 * one bucket per key (a source principal, a header value). Time is the
 * caller's: now_ms from any monotonic millisecond clock (uv_now), so tests are
 * exact. The arithmetic is in integers and never drifts: a token is
 * per_ms * workers units, a bucket gains `requests` units per millisecond and
 * holds burst * per_ms units (at least one token). A new bucket starts full;
 * a denied take costs nothing.
 *
 * Workers: a limiter belongs to ONE worker thread (no locks, no atomics), and
 * the proxy's rate is split evenly among the workers: each of a route's
 * `workers` limiters allows requests / workers per per_ms with a burst of
 * burst / workers (but at least one token, so the proxy-wide burst is at
 * least `workers`). The proxy never allows more than the configured rate
 * overall; it allows all of it when the traffic spreads over the workers, as
 * the kernel spreads connections (SO_REUSEPORT). The cost: a client whose
 * requests all ride one connection lands on one worker and gets 1/workers of
 * its rate. A bucket shared by the workers (atomics) would be exact, but
 * bounces a cache line between cores on every request and, keyed, needs a
 * table shared under locks; the split is the simpler of the two correct ones.
 *
 * Keyed limiters keep at most max_keys buckets (default 10,000): the table
 * grows on demand up to there, then a new key takes over the bucket of the
 * least recently used key, so memory stays bounded whatever keys arrive (at
 * most about 48 bytes per key). The cost: under a flood of more distinct keys
 * than max_keys, a key seen again after its eviction starts with a full
 * bucket. Keys are not stored, only their 64-bit SipHash-2-4 under a random
 * secret per limiter: two keys that collide (about 1 in 2^64 per pair, not
 * steerable without the secret) would share one bucket, which only makes
 * both stricter. Key bytes are compared as given: callers lowercase what is
 * case-insensitive. */

#define PROXY_RATELIMIT_REQUESTS_MAX 1000000000u /* requests and burst */
#define PROXY_RATELIMIT_PER_MAX_MS   86400000u   /* 24 h */
#define PROXY_RATELIMIT_WORKERS_MAX  65536u
#define PROXY_RATELIMIT_KEYS_DEFAULT 10000u
#define PROXY_RATELIMIT_KEYS_MAX     (1u << 24)

typedef struct proxy_ratelimit_options {
    uint64_t requests; /* for the whole proxy: 1..PROXY_RATELIMIT_REQUESTS_MAX ... */
    uint64_t per_ms;   /* ... per this many ms: 1..PROXY_RATELIMIT_PER_MAX_MS */
    uint64_t burst;    /* the bucket's size, for the whole proxy: 0 = requests */
    unsigned workers;  /* requests and burst are split among this many limiters: 0 = 1 */
    bool keyed;        /* one bucket per key (else one for every take) */
    size_t max_keys;   /* keyed: buckets kept, 0 = PROXY_RATELIMIT_KEYS_DEFAULT */
} proxy_ratelimit_options;

typedef struct proxy_ratelimit proxy_ratelimit;

/* Values out of range: WARD_EINVAL, err says which. */
int proxy_ratelimit_new(const proxy_ratelimit_options *o, proxy_ratelimit **out, ward_err *err);
void proxy_ratelimit_free(proxy_ratelimit *l);
/* Takes a token at now_ms from the limiter's bucket or, keyed, from key's
 * (any bytes; absent and empty are the same key). true: allowed. false:
 * denied, and *retry_after_s (may be NULL) gets the seconds until a token is
 * there, rounded up (at least 1): the Retry-After of the 429. Never fails
 * (a new key that finds no room evicts the least recently used one). */
bool proxy_ratelimit_take(proxy_ratelimit *l, proxy_slice key, uint64_t now_ms,
                          uint64_t *retry_after_s);
/* Keyed: buckets in use (at most max_keys). */
size_t proxy_ratelimit_keys(const proxy_ratelimit *l);
/* Bytes the limiter holds (its struct, buckets and hash slots). */
size_t proxy_ratelimit_memory(const proxy_ratelimit *l);

/* ==== TCP mode (tcp.c) =============================================================
 * A listener for non-HTTP services (databases, caches): each connection is
 * authorized ONCE, when it opens, from what is known then (the client's
 * verified SPIFFE ID, its address, the port it came to, the TLS server name
 * it asked for), then connected to an upstream and relayed opaquely both ways.
 *
 * Plaintext, or TLS with a REQUIRED-mode server context: the client's
 * X509-SVID is checked during the handshake, as on the relay's inbound side,
 * and a TLS connection without a verified ID, or whose SNI is not a DNS name,
 * is denied without reaching the callback. The authorize callback runs on the
 * loop and decides at once: it fills the target and returns true, or returns
 * false; a target without an address is a denial too (fail closed). A denied
 * connection is never connected to any upstream. Bytes the client sends while
 * the upstream is being connected are held (bounded as below) and sent once
 * it is open.
 *
 * Relaying: what one side sends is written to the other; a side with more
 * than PROXY_TCP_QUEUE_HIGH bytes queued stops the other side's reading until
 * its queue drains, so a slow reader holds at most about that much (plus one
 * read) per direction. Half-close: a clean end from one side (FIN; under TLS
 * close_notify then FIN) is passed on as a FIN to the other
 * (proxy_stream_shutdown_write) while the other direction goes on; the
 * connection ends when both directions have ended, once the last bytes and
 * FINs are out (a peer that does not take them within idle_timeout_ms is
 * cut). Any other end (denied; the client's handshake, the upstream's connect
 * or TLS failing; a reset, a TLS stream cut without close_notify or a write
 * error on either side; a timeout; the listener closing) RESETS both sides
 * at once, so that neither ever takes a cut for a complete stream. Deadlines:
 * the client's TLS handshake (handshake_timeout_ms); connecting to the
 * upstream, its TLS handshake included (connect_timeout_ms); no byte either
 * way, a queue draining counting as traffic (idle_timeout_ms).
 *
 * Every accepted connection (but those over max_connections, closed at once)
 * ends with one call of the done callback, after both sides are closed: bytes
 * each way, duration, why it ended (the per-connection audit record). One loop
 * only: nothing here is thread-safe; each worker has its own listener
 * (SO_REUSEPORT). */

#define PROXY_TCP_QUEUE_HIGH ((size_t)256 << 10)

typedef struct proxy_tcp proxy_tcp;
typedef struct proxy_tcp_conn proxy_tcp_conn;

/* What the authorization sees (valid during the callbacks only). */
typedef struct proxy_tcp_info {
    const proxy_peer *peer;  /* addr; TLS: spiffe_id (verified), chain, cert_sha256 */
    int dest_port;           /* the listener's port the client connected to */
    const char *server_name; /* TLS: the SNI the client sent, lowercased: a DNS name
                                (labels of 1..63 letters, digits, '-' or '_', joined by
                                dots, at most 253 bytes); NULL when none was sent */
} proxy_tcp_info;

/* Where an allowed connection goes (everything is copied). */
typedef struct proxy_tcp_target {
    const struct sockaddr *addr; /* required */
    proxy_tls_ctx *tls;          /* NULL: plaintext; else a client context (a reference is taken) */
    const char *expected_id;     /* with tls (REQUIRED mode): the SPIFFE ID the upstream must
                                    present, byte for byte; NULL: any of the bundle's */
    const char *server_name;     /* with tls: the SNI to send; NULL: none */
} proxy_tcp_target;

/* Why a connection ended. */
typedef enum proxy_tcp_end {
    PROXY_TCP_END_DONE,           /* "done": both directions finished cleanly */
    PROXY_TCP_END_DENIED,         /* "denied": by the callback, or before it (no ID, bad SNI) */
    PROXY_TCP_END_HANDSHAKE,      /* "handshake": the client's TLS handshake failed or timed out */
    PROXY_TCP_END_CONNECT,        /* "connect": the upstream refused, or timed out */
    PROXY_TCP_END_UPSTREAM_TLS,   /* "upstream_tls": the upstream's TLS or identity failed */
    PROXY_TCP_END_IDLE,           /* "idle": no byte either way for idle_timeout_ms */
    PROXY_TCP_END_CLIENT_ERROR,   /* "client_error": reset, cut, or a write to it failed */
    PROXY_TCP_END_UPSTREAM_ERROR, /* "upstream_error": the same on the upstream side */
    PROXY_TCP_END_SHUTDOWN,       /* "shutdown": cut when the listener closed */
    PROXY_TCP_END_INTERNAL,       /* "internal": out of memory and the like */
} proxy_tcp_end;

typedef struct proxy_tcp_result {
    proxy_tcp_end end;
    const char *reason;   /* a detail for logs ("" if none) */
    bool authorized;      /* the callback allowed it */
    uint64_t bytes_in;    /* read from the client and handed to the upstream */
    uint64_t bytes_out;   /* read from the upstream and handed to the client */
    uint64_t duration_ns; /* accepted .. ended */
} proxy_tcp_result;

/* Fills *target and returns true to allow; false denies. */
typedef bool (*proxy_tcp_authorize_cb)(proxy_tcp_conn *c, const proxy_tcp_info *info,
                                       proxy_tcp_target *target, void *data);
/* Once per connection, after both sides are closed. */
typedef void (*proxy_tcp_done_cb)(proxy_tcp_conn *c, const proxy_tcp_info *info,
                                  const proxy_tcp_result *res, void *data);

typedef struct proxy_tcp_options {
    uint64_t handshake_timeout_ms;    /* the client's TLS handshake: 0 = 10 s */
    uint64_t connect_timeout_ms;      /* the upstream's connect and TLS handshake: 0 = 5 s */
    uint64_t idle_timeout_ms;         /* no byte either way: 0 = 1 h (database pools idle long) */
    size_t max_connections;           /* 0 = 16384; beyond, new ones are closed at once */
    proxy_tcp_authorize_cb authorize; /* required */
    proxy_tcp_done_cb done;           /* optional */
    void *data;
} proxy_tcp_options;

int proxy_tcp_new(uv_loop_t *loop, const proxy_tcp_options *opts, proxy_tcp **out);
/* Listens on addr; reuseport sets SO_REUSEPORT so that several loops can share it. */
int proxy_tcp_listen(proxy_tcp *t, const struct sockaddr *addr, bool reuseport, ward_err *err);
int proxy_tcp_port(const proxy_tcp *t);
/* TLS for connections accepted from now on: a server context in REQUIRED mode
 * (else WARD_EINVAL); a reference is taken; NULL = plaintext. */
int proxy_tcp_set_tls(proxy_tcp *t, proxy_tls_ctx *tls);
size_t proxy_tcp_connections(const proxy_tcp *t);
/* Bytes queued for writing on every connection's two sides (both ways). */
size_t proxy_tcp_queued(const proxy_tcp *t);
/* Stops accepting; open connections go on for drain_ms (0: cut at once) and
 * are then cut (PROXY_TCP_END_SHUTDOWN). cb runs once all is closed and the
 * listener freed. */
void proxy_tcp_close(proxy_tcp *t, uint64_t drain_ms, proxy_done_cb cb, void *data);

/* A pointer of the caller's, from the authorize callback to the done callback. */
void proxy_tcp_conn_set_data(proxy_tcp_conn *c, void *data);
void *proxy_tcp_conn_data(const proxy_tcp_conn *c);
/* "done", "denied", ... */
const char *proxy_tcp_end_name(proxy_tcp_end e);

#endif
