/* config.c - ward-proxy's YAML configuration: strict keys, bounded values, secure defaults */
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_MAX_BYTES ((size_t)1 << 20)
#define TIMEOUT_MIN_NS   1000000ull                /* 1ms */
#define TIMEOUT_MAX_NS   (3600ull * 1000000000ull) /* 1h */
#define HEADER_BYTES_MIN ((uint64_t)1 << 10)       /* 1 KiB */
#define HEADER_BYTES_MAX ((uint64_t)1 << 20)       /* 1 MiB */
#define HEADERS_MAX      1000
#define BODY_MAX         ((uint64_t)1 << 40) /* 1 TiB */
#define CONNECTIONS_MAX  1000000
#define UPSTREAMS_MAX    10000
#define ENDPOINTS_MAX    1000
#define TCP_LISTENERS_MAX 64
#define POLICY_PATHS_MAX 1000
#define SERVICE_NAME_MAX 63

/* ---- the validation context: common/doccheck.c, plus the config's folder ----- */

typedef struct cctx {
    ward_docv v;
    char *base; /* folder of the config file, for relative paths ("" = cwd) */
} cctx;

#define cerr(c, at, ...) ward_docv_error(&(c)->v, (at), __VA_ARGS__)

static size_t push(cctx *c, const char *key)
{
    return ward_docv_push(&c->v, key);
}

static size_t push_idx(cctx *c, size_t i)
{
    return ward_docv_push_idx(&c->v, i);
}

static void pop(cctx *c, size_t old)
{
    ward_docv_pop(&c->v, old);
}

static bool expect_map(cctx *c, const ward_node *n)
{
    return ward_docv_expect_map(&c->v, n);
}

static bool expect_list(cctx *c, const ward_node *n)
{
    return ward_docv_expect_list(&c->v, n);
}

static void check_keys(cctx *c, const ward_node *map, const char *const *allowed)
{
    ward_docv_check_fields(&c->v, map, allowed, NULL);
}

static void missing(cctx *c, const ward_node *map, const char *key, const char *extra)
{
    ward_docv_missing(&c->v, map, key, extra);
}

/* A non-empty string without NUL bytes (numbers read as strings here). */
static bool get_str(cctx *c, const ward_node *n, const char **s)
{
    size_t len;
    if (!ward_docv_get_str(&c->v, n, s, &len))
        return false;
    if (len == 0) {
        cerr(c, n, "must not be empty");
        return false;
    }
    if (memchr(*s, '\0', len) != NULL) {
        cerr(c, n, "NUL byte in value");
        return false;
    }
    return true;
}

static char *cdup(cctx *c, const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        c->v.rc = WARD_ENOMEM;
    return p;
}

static bool key_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-';
}

/* The value of `key` in map, or NULL (also for an explicit null). */
static const ward_node *field(const ward_node *map, const char *key)
{
    const ward_node *v = ward_node_get(map, key);
    return v != NULL && ward_node_is_null(v) ? NULL : v;
}

/* ---- values -------------------------------------------------------------------- */

int proxy_size_parse(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {{"B", 1},
                 {"KiB", 1ull << 10},
                 {"MiB", 1ull << 20},
                 {"GiB", 1ull << 30},
                 {"TiB", 1ull << 40}};
    size_t i = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    if (i == 0 || i == len)
        return WARD_EINVAL; /* no digits, or no unit */
    uint64_t mult = 0;
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++)
        if (strlen(units[u].unit) == len - i && memcmp(units[u].unit, s + i, len - i) == 0)
            mult = units[u].mult;
    if (mult == 0)
        return WARD_EINVAL;
    uint64_t n;
    int rc = ward_parse_u64(s, i, UINT64_MAX, &n);
    if (rc < 0)
        return rc;
    if (n > UINT64_MAX / mult || n * mult > max)
        return WARD_ERANGE;
    *out = n * mult;
    return 0;
}

static void fmt_size(char *buf, size_t size, uint64_t v)
{
    if (v >= (1ull << 40) && v % (1ull << 40) == 0)
        snprintf(buf, size, "%lluTiB", (unsigned long long)(v >> 40));
    else if (v >= (1ull << 30) && v % (1ull << 30) == 0)
        snprintf(buf, size, "%lluGiB", (unsigned long long)(v >> 30));
    else if (v >= (1ull << 20) && v % (1ull << 20) == 0)
        snprintf(buf, size, "%lluMiB", (unsigned long long)(v >> 20));
    else if (v >= (1ull << 10) && v % (1ull << 10) == 0)
        snprintf(buf, size, "%lluKiB", (unsigned long long)(v >> 10));
    else
        snprintf(buf, size, "%lluB", (unsigned long long)v);
}

static void parse_size(cctx *c, const ward_node *n, uint64_t min, uint64_t max, uint64_t *out)
{
    const char *s;
    if (!get_str(c, n, &s))
        return;
    uint64_t v = 0;
    int rc = proxy_size_parse(s, n->len, UINT64_MAX, &v);
    char q[256], lo[32], hi[32];
    fmt_size(lo, sizeof(lo), min);
    fmt_size(hi, sizeof(hi), max);
    if (rc == WARD_EINVAL)
        cerr(c, n,
             "invalid size %s (a whole number with a unit: B, KiB, MiB, GiB, TiB; e.g. 60KiB)",
             ward_quote(q, sizeof(q), s, n->len));
    else if (rc < 0 || v < min || v > max)
        cerr(c, n, "size %s out of range (%s .. %s)", ward_quote(q, sizeof(q), s, n->len), lo, hi);
    else
        *out = v;
}

static void parse_timeout(cctx *c, const ward_node *n, uint64_t *out_ms)
{
    const char *s;
    if (!get_str(c, n, &s))
        return;
    uint64_t ns = 0;
    char q[256];
    int rc = ward_parse_duration(s, n->len, UINT64_MAX, &ns);
    if (rc == WARD_EINVAL)
        cerr(c, n, "invalid duration %s (a number with a unit: ms, s, m, h; e.g. 10s, 1m30s)",
             ward_quote(q, sizeof(q), s, n->len));
    else if (rc < 0 || ns < TIMEOUT_MIN_NS || ns > TIMEOUT_MAX_NS)
        cerr(c, n, "duration %s out of range (1ms .. 1h)", ward_quote(q, sizeof(q), s, n->len));
    else
        *out_ms = ns / 1000000ull;
}

/* A bounded integer (a plain YAML number). */
static void parse_uint(cctx *c, const ward_node *n, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n->kind != WARD_NODE_SCALAR || n->quoted || ward_node_is_null(n) || ward_node_is_bool(n, NULL)) {
        cerr(c, n, "expected a number, got %s", ward_node_describe(n));
        return;
    }
    if (ward_parse_u64(n->str, n->len, max, &v) < 0 || v < min) {
        char q[256];
        cerr(c, n, "invalid number %s (a whole number %llu..%llu)",
             ward_quote(q, sizeof(q), n->str, n->len), (unsigned long long)min, (unsigned long long)max);
        return;
    }
    *out = v;
}

/* A file name resolved against the config file's folder. */
static char *resolve(cctx *c, const char *s)
{
    if (s[0] == '/' || c->base[0] == '\0')
        return cdup(c, s);
    size_t need = strlen(c->base) + strlen(s) + 2;
    char *p = malloc(need);
    if (p == NULL) {
        c->v.rc = WARD_ENOMEM;
        return NULL;
    }
    snprintf(p, need, "%s/%s", c->base, s);
    return p;
}

typedef enum file_kind { FILE_ANY, FILE_SECRET, FILE_DIR, FILE_FILE_OR_DIR } file_kind;

/* A path that must exist: a regular file, or a folder; secrets must not be
 * open to group or others. Returns the resolved name (owned) or NULL. */
static char *parse_file(cctx *c, const ward_node *n, file_kind kind)
{
    const char *s;
    if (!get_str(c, n, &s))
        return NULL;
    char *p = resolve(c, s);
    if (p == NULL)
        return NULL;
    char q[256];
    struct stat st;
    if (stat(p, &st) != 0) {
        cerr(c, n, "%s: %s", ward_quote(q, sizeof(q), p, strlen(p)), strerror(errno));
        goto bad;
    }
    bool is_dir = S_ISDIR(st.st_mode), is_reg = S_ISREG(st.st_mode);
    if (kind == FILE_DIR && !is_dir) {
        cerr(c, n, "%s is not a folder", ward_quote(q, sizeof(q), p, strlen(p)));
        goto bad;
    }
    if (kind == FILE_FILE_OR_DIR && !is_dir && !is_reg) {
        cerr(c, n, "%s is neither a file nor a folder", ward_quote(q, sizeof(q), p, strlen(p)));
        goto bad;
    }
    if ((kind == FILE_ANY || kind == FILE_SECRET) && !is_reg) {
        cerr(c, n, "%s is not a regular file", ward_quote(q, sizeof(q), p, strlen(p)));
        goto bad;
    }
    if (kind == FILE_SECRET && (st.st_mode & 077) != 0) {
        cerr(c, n,
             "%s is a secret but has mode %04o (group or others may access it); run "
             "chmod 600 on it",
             ward_quote(q, sizeof(q), p, strlen(p)), (unsigned)(st.st_mode & 07777));
        goto bad;
    }
    return p;
bad:
    free(p);
    return NULL;
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)ss;
        return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)ss;
        return IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
    }
    return false;
}

static uint16_t addr_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

typedef enum addr_rule {
    ADDR_LISTEN,          /* any address, port 0 = any free port */
    ADDR_LISTEN_LOOPBACK, /* loopback only, port 0 = any free port */
    ADDR_CONNECT,         /* any address, port 1..65535 */
} addr_rule;

static char *parse_addr(cctx *c, const ward_node *n, addr_rule rule, const char *why,
                        struct sockaddr_storage *out)
{
    const char *s;
    if (!get_str(c, n, &s))
        return NULL;
    ward_err e;
    if (proxy_addr_parse(s, out, &e) < 0) {
        cerr(c, n, "%s", e.msg);
        return NULL;
    }
    char q[256];
    if (rule == ADDR_CONNECT && addr_port(out) == 0) {
        cerr(c, n, "%s: port 0 cannot be connected to", ward_quote(q, sizeof(q), s, n->len));
        return NULL;
    }
    if (rule == ADDR_LISTEN_LOOPBACK && !is_loopback(out)) {
        cerr(c, n, "%s is not a loopback address (127.0.0.0/8 or [::1]): %s",
             ward_quote(q, sizeof(q), s, n->len), why);
        return NULL;
    }
    return cdup(c, s);
}

/* Lowercase letters, digits and '-', 1..63 bytes, starting and ending with a
 * letter or digit: a DNS label, so that a Host header can name it. */
static bool service_name_valid(const char *s, size_t len)
{
    if (len == 0 || len > SERVICE_NAME_MAX || s[0] == '-' || s[len - 1] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
            return false;
    }
    return true;
}

static char *parse_service(cctx *c, const ward_node *n)
{
    const char *s;
    if (!get_str(c, n, &s))
        return NULL;
    if (!service_name_valid(s, n->len)) {
        char q[256];
        cerr(c, n,
             "invalid service name %s (a DNS label: 1..63 of [a-z0-9-], starting and ending "
             "with a letter or digit)",
             ward_quote(q, sizeof(q), s, n->len));
        return NULL;
    }
    return cdup(c, s);
}

/* A TLS server name: DNS labels of [a-z0-9-] (lowercase, as SNI compares them)
 * joined by dots, at most 253 bytes. */
static char *parse_server_name(cctx *c, const ward_node *n)
{
    const char *s;
    if (!get_str(c, n, &s))
        return NULL;
    bool ok = n->len > 0 && n->len <= 253;
    for (size_t b = 0; ok && b <= n->len;) {
        const char *dot = memchr(s + b, '.', n->len - b);
        size_t e = dot != NULL ? (size_t)(dot - s) : n->len;
        ok = service_name_valid(s + b, e - b);
        b = e + 1;
        if (dot == NULL)
            break;
    }
    if (!ok) {
        char q[300];
        cerr(c, n,
             "invalid server name %s (a DNS name: labels of 1..63 of [a-z0-9-] joined by dots, "
             "at most 253 bytes)",
             ward_quote(q, sizeof(q), s, n->len));
        return NULL;
    }
    return cdup(c, s);
}

/* ---- sections ------------------------------------------------------------------------ */

static void parse_wardd_server(cctx *c, const ward_node *n, char **out)
{
    const char *s;
    if (!get_str(c, n, &s))
        return;
    char q[256];
    const char *hint = "expected https://HOST:PORT";
    if (strncmp(s, "https://", 8) != 0) {
        cerr(c, n, "%s: %s (wardd is only reached over TLS)", ward_quote(q, sizeof(q), s, n->len), hint);
        return;
    }
    const char *host = s + 8, *end = s + n->len;
    const char *colon;
    if (host < end && *host == '[') {
        const char *rb = memchr(host, ']', (size_t)(end - host));
        colon = rb != NULL && rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
        if (rb != NULL && rb == host + 1)
            colon = NULL;
    } else {
        colon = memchr(host, ':', (size_t)(end - host));
        if (colon == host)
            colon = NULL;
        for (const char *p = host; colon != NULL && p < colon; p++)
            if (!(key_char(*p) || *p == '.'))
                colon = NULL;
    }
    uint64_t port;
    if (colon == NULL || ward_parse_u64(colon + 1, (size_t)(end - colon - 1), 65535, &port) < 0 ||
        port == 0) {
        cerr(c, n, "%s: %s (no path, query or user info)", ward_quote(q, sizeof(q), s, n->len), hint);
        return;
    }
    *out = cdup(c, s);
}

/* A folder created at start if absent; anything else in its place is an error. */
static char *parse_folder(cctx *c, const ward_node *v)
{
    const char *s;
    if (!get_str(c, v, &s))
        return NULL;
    char *p = resolve(c, s);
    struct stat st;
    char q[256];
    if (p != NULL && stat(p, &st) == 0 && !S_ISDIR(st.st_mode)) {
        cerr(c, v, "%s exists and is not a folder", ward_quote(q, sizeof(q), p, strlen(p)));
        free(p);
        return NULL;
    }
    return p;
}

static void parse_identity(cctx *c, const ward_node *n, proxy_config *cfg)
{
    static const char *const keys[] = {"server",   "token_file", "bundle_file", "state_dir",
                                       "cert_file", "key_file",  NULL};
    if (!expect_map(c, n))
        return;
    check_keys(c, n, keys);
    const ward_node *server = field(n, "server"), *token = field(n, "token_file"),
                    *bundle = field(n, "bundle_file"), *cert = field(n, "cert_file"),
                    *key = field(n, "key_file"), *state = field(n, "state_dir");
    bool wardd = server != NULL || token != NULL, stat_files = cert != NULL || key != NULL;
    if (wardd && stat_files) {
        const ward_node *at = cert != NULL ? cert : key;
        cerr(c, at,
             "give either server + token_file + bundle_file (attest to wardd) or cert_file + "
             "key_file + bundle_file (static files), not both");
        return;
    }
    if (!wardd && !stat_files) {
        cerr(c, n,
             "no identity source: give server + token_file + bundle_file (attest to wardd) or "
             "cert_file + key_file + bundle_file (static files)");
        return;
    }
    size_t old;
    if (wardd) {
        cfg->identity.mode = PROXY_IDENTITY_WARDD;
        if (server == NULL)
            missing(c, n, "server", " (https://HOST:PORT of wardd)");
        if (token == NULL)
            missing(c, n, "token_file", " (the join token for the first attestation)");
        if (server != NULL) {
            old = push(c, "server");
            parse_wardd_server(c, server, &cfg->identity.server);
            pop(c, old);
        }
        if (token != NULL) {
            old = push(c, "token_file");
            cfg->identity.token_file = parse_file(c, token, FILE_SECRET);
            pop(c, old);
        }
        if (state != NULL) {
            old = push(c, "state_dir");
            cfg->identity.state_dir = parse_folder(c, state);
            pop(c, old);
        }
    } else {
        cfg->identity.mode = PROXY_IDENTITY_STATIC;
        if (state != NULL) {
            old = push(c, "state_dir");
            cerr(c, state, "state_dir keeps SVIDs from wardd: it goes with server and token_file");
            pop(c, old);
        }
        if (cert == NULL)
            missing(c, n, "cert_file", " (with key_file and bundle_file)");
        if (key == NULL)
            missing(c, n, "key_file", " (with cert_file and bundle_file)");
        if (cert != NULL) {
            old = push(c, "cert_file");
            cfg->identity.cert_file = parse_file(c, cert, FILE_ANY);
            pop(c, old);
        }
        if (key != NULL) {
            old = push(c, "key_file");
            cfg->identity.key_file = parse_file(c, key, FILE_SECRET);
            pop(c, old);
        }
    }
    if (bundle == NULL) {
        missing(c, n, "bundle_file",
                wardd ? " (the CA certificates that pin wardd on first contact)"
                      : " (the CA certificates peers are checked against)");
    } else {
        old = push(c, "bundle_file");
        cfg->identity.bundle_file = parse_file(c, bundle, FILE_ANY);
        pop(c, old);
    }
}

static const char *const timeout_keys[] = {"header_read", "idle", "upstream_connect", "request",
                                           NULL};

/* A timeouts map; `top` also allows drain. */
static void parse_timeouts(cctx *c, const ward_node *n, proxy_config_timeouts *t, uint64_t *drain)
{
    static const char *const top_keys[] = {"header_read", "idle",  "upstream_connect",
                                           "request",     "drain", NULL};
    if (!expect_map(c, n))
        return;
    check_keys(c, n, drain != NULL ? top_keys : timeout_keys);
    uint64_t *slots[] = {&t->header_read_ms, &t->idle_ms, &t->upstream_connect_ms, &t->request_ms};
    for (size_t i = 0; timeout_keys[i] != NULL; i++) {
        const ward_node *v = field(n, timeout_keys[i]);
        if (v == NULL)
            continue;
        size_t old = push(c, timeout_keys[i]);
        parse_timeout(c, v, slots[i]);
        pop(c, old);
    }
    const ward_node *v = drain != NULL ? field(n, "drain") : NULL;
    if (v != NULL) {
        size_t old = push(c, "drain");
        parse_timeout(c, v, drain);
        pop(c, old);
    }
}

static void parse_inbound(cctx *c, const ward_node *n, proxy_config *cfg)
{
    static const char *const keys[] = {"listen", "app", "timeouts", NULL};
    if (!expect_map(c, n))
        return;
    check_keys(c, n, keys);
    const ward_node *v;
    size_t old;
    if ((v = field(n, "listen")) == NULL) {
        missing(c, n, "listen", " (ADDR:PORT for mTLS from other proxies)");
    } else {
        old = push(c, "listen");
        cfg->inbound.listen = parse_addr(c, v, ADDR_LISTEN, NULL, &cfg->inbound.listen_addr);
        pop(c, old);
    }
    if ((v = field(n, "app")) == NULL) {
        missing(c, n, "app", " (ADDR:PORT of the local workload)");
    } else {
        old = push(c, "app");
        cfg->inbound.app = parse_addr(c, v, ADDR_CONNECT, NULL, &cfg->inbound.app_addr);
        pop(c, old);
    }
    if ((v = field(n, "timeouts")) != NULL) {
        old = push(c, "timeouts");
        parse_timeouts(c, v, &cfg->inbound.timeouts, NULL);
        pop(c, old);
    }
}

static void parse_outbound(cctx *c, const ward_node *n, proxy_config *cfg)
{
    static const char *const keys[] = {"listen", "timeouts", NULL};
    if (!expect_map(c, n))
        return;
    check_keys(c, n, keys);
    const ward_node *v;
    size_t old;
    if ((v = field(n, "listen")) == NULL) {
        missing(c, n, "listen", " (loopback ADDR:PORT for the workload's calls)");
    } else {
        old = push(c, "listen");
        cfg->outbound.listen =
            parse_addr(c, v, ADDR_LISTEN_LOOPBACK,
                       "the outbound listener is plaintext and lends this workload's identity "
                       "to whoever connects",
                       &cfg->outbound.listen_addr);
        pop(c, old);
    }
    if ((v = field(n, "timeouts")) != NULL) {
        old = push(c, "timeouts");
        parse_timeouts(c, v, &cfg->outbound.timeouts, NULL);
        pop(c, old);
    }
}

/* ---- an upstream's traffic keys (cluster.c uses them) ----------------------------------- */

static bool tchar(char ch)
{
    return key_char(ch) || (ch != '\0' && strchr("!#$%&'*+.^`|~", ch) != NULL);
}

static bool parse_balance(cctx *c, const ward_node *v, proxy_config_upstream *u)
{
    const char *s;
    if (!get_str(c, v, &s))
        return false;
    static const struct {
        const char *name;
        proxy_balance b;
    } names[] = {{"round_robin", PROXY_BALANCE_ROUND_ROBIN},
                 {"least_request", PROXY_BALANCE_LEAST_REQUEST},
                 {"consistent_hash", PROXY_BALANCE_CONSISTENT_HASH}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (ward_node_is(v, names[i].name)) {
            u->balance = names[i].b;
            return true;
        }
    }
    char q[256];
    cerr(c, v, "invalid balance %s; allowed: round_robin, least_request, consistent_hash",
         ward_quote(q, sizeof(q), s, v->len));
    return false;
}

#define HASH_HEADER_MAX 256

/* "source_principal" or "header:<field name>" (a token, kept lowercased). */
static void parse_hash_key(cctx *c, const ward_node *v, proxy_config_upstream *u)
{
    const char *s;
    if (!get_str(c, v, &s))
        return;
    char q[256];
    if (ward_node_is(v, "source_principal")) {
        u->hash_on = PROXY_HASH_SOURCE_PRINCIPAL;
        return;
    }
    if (v->len < 7 || memcmp(s, "header:", 7) != 0) {
        cerr(c, v, "invalid hash key %s; allowed: header:<name>, source_principal",
             ward_quote(q, sizeof(q), s, v->len));
        return;
    }
    size_t len = v->len - 7;
    bool ok = len > 0 && len <= HASH_HEADER_MAX;
    for (size_t i = 0; ok && i < len; i++)
        ok = tchar(s[7 + i]);
    if (!ok) {
        cerr(c, v, "invalid header name in %s (1..%d token characters, e.g. header:x-user-id)",
             ward_quote(q, sizeof(q), s, v->len), HASH_HEADER_MAX);
        return;
    }
    char *name = cdup(c, s + 7);
    if (name == NULL)
        return;
    for (char *p = name; *p != '\0'; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    u->hash_on = PROXY_HASH_HEADER;
    u->hash_header = name;
}

/* A map of bounded numbers: keys[i] goes to slots[i] within min[i]..max[i]. */
static void parse_numbers(cctx *c, const ward_node *n, const char *const *keys,
                          uint64_t *const *slots, const uint64_t *min, const uint64_t *max)
{
    if (!expect_map(c, n))
        return;
    check_keys(c, n, keys);
    for (size_t i = 0; keys[i] != NULL; i++) {
        const ward_node *v = field(n, keys[i]);
        if (v == NULL || slots[i] == NULL)
            continue;
        size_t old = push(c, keys[i]);
        parse_uint(c, v, min[i], max[i], slots[i]);
        pop(c, old);
    }
}

static void parse_circuit_breakers(cctx *c, const ward_node *n, proxy_config_upstream *u)
{
    static const char *const keys[] = {"max_connections", "max_pending", "max_requests",
                                       "max_retries", NULL};
    uint64_t *const slots[] = {&u->circuit_breakers.max_connections,
                               &u->circuit_breakers.max_pending, &u->circuit_breakers.max_requests,
                               &u->circuit_breakers.max_retries};
    static const uint64_t min[] = {1, 1, 1, 0};
    static const uint64_t max[] = {CONNECTIONS_MAX, CONNECTIONS_MAX, CONNECTIONS_MAX,
                                   CONNECTIONS_MAX};
    parse_numbers(c, n, keys, slots, min, max);
}

static void parse_retry_budget(cctx *c, const ward_node *n, proxy_config_upstream *u)
{
    static const char *const keys[] = {"percent", "min_concurrency", NULL};
    uint64_t *const slots[] = {&u->retry_budget.percent, &u->retry_budget.min_concurrency};
    static const uint64_t min[] = {0, 0};
    static const uint64_t max[] = {100, CONNECTIONS_MAX};
    parse_numbers(c, n, keys, slots, min, max);
}

static void parse_outlier_detection(cctx *c, const ward_node *n, proxy_config_upstream *u)
{
    static const char *const keys[] = {"consecutive_5xx",      "consecutive_connect_failures",
                                       "base_ejection_time",   "max_ejection_time",
                                       "max_ejection_percent", NULL};
    uint64_t *const slots[] = {&u->outlier.consecutive_5xx,
                               &u->outlier.consecutive_connect_failures, NULL, NULL,
                               &u->outlier.max_ejection_percent};
    static const uint64_t min[] = {0, 0, 0, 0, 0};
    static const uint64_t max[] = {1000, 1000, 0, 0, 100};
    parse_numbers(c, n, keys, slots, min, max);
    if (n->kind != WARD_NODE_MAP)
        return;
    const ward_node *base = field(n, "base_ejection_time"), *top = field(n, "max_ejection_time");
    size_t old;
    bool base_ok = true, top_ok = true;
    if (base != NULL) {
        old = push(c, "base_ejection_time");
        size_t before = c->v.n_probs;
        parse_timeout(c, base, &u->outlier.base_ejection_ms);
        base_ok = c->v.n_probs == before;
        pop(c, old);
    }
    if (top != NULL) {
        old = push(c, "max_ejection_time");
        size_t before = c->v.n_probs;
        parse_timeout(c, top, &u->outlier.max_ejection_ms);
        top_ok = c->v.n_probs == before;
        if (base_ok && top_ok && u->outlier.max_ejection_ms < u->outlier.base_ejection_ms) {
            char q[256];
            cerr(c, top, "%s is shorter than base_ejection_time (%llums)",
                 ward_quote(q, sizeof(q), top->str, top->len),
                 (unsigned long long)u->outlier.base_ejection_ms);
        }
        pop(c, old);
    } else if (u->outlier.max_ejection_ms < u->outlier.base_ejection_ms) {
        u->outlier.max_ejection_ms = u->outlier.base_ejection_ms; /* the default cap, raised */
    }
}

/* The map's "endpoints": a list of ADDR:PORT (required). */
static void parse_endpoints(cctx *c, const ward_node *n, char ***endpoints,
                            struct sockaddr_storage **addrs, size_t *count)
{
    const ward_node *v = field(n, "endpoints");
    if (v == NULL) {
        missing(c, n, "endpoints", " (a list of ADDR:PORT)");
        return;
    }
    size_t old = push(c, "endpoints");
    if (expect_list(c, v)) {
        if (v->n == 0) {
            cerr(c, v, "at least one endpoint is needed");
        } else if (v->n > ENDPOINTS_MAX) {
            cerr(c, v, "too many endpoints (at most %d)", ENDPOINTS_MAX);
        } else {
            *endpoints = calloc(v->n, sizeof(**endpoints));
            *addrs = calloc(v->n, sizeof(**addrs));
            if (*endpoints == NULL || *addrs == NULL) {
                c->v.rc = WARD_ENOMEM;
            } else {
                *count = v->n;
                for (size_t i = 0; i < v->n; i++) {
                    size_t o2 = push_idx(c, i);
                    (*endpoints)[i] = parse_addr(c, v->items[i], ADDR_CONNECT, NULL, &(*addrs)[i]);
                    pop(c, o2);
                }
            }
        }
    }
    pop(c, old);
}

/* The map's "spiffe_id": the workload ID every endpoint must present (required). */
static char *parse_endpoint_id(cctx *c, const ward_node *n)
{
    const ward_node *v = field(n, "spiffe_id");
    if (v == NULL) {
        missing(c, n, "spiffe_id", " (the SPIFFE ID its endpoints must present)");
        return NULL;
    }
    size_t old = push(c, "spiffe_id");
    const char *s;
    char *out = NULL;
    if (get_str(c, v, &s)) {
        ward_spiffe_id id;
        ward_err e;
        char q[256];
        if (ward_spiffe_id_parse(s, v->len, &id, &e) < 0)
            cerr(c, v, "invalid SPIFFE ID %s: %s", ward_quote(q, sizeof(q), s, v->len), e.msg);
        else if (id.path_len == 0)
            cerr(c, v, "%s names a trust domain, not a workload (add a path)",
                 ward_quote(q, sizeof(q), s, v->len));
        else
            out = cdup(c, s);
    }
    pop(c, old);
    return out;
}

static void parse_upstream(cctx *c, const ward_node *n, proxy_config_upstream *u)
{
    static const char *const keys[] = {"service",           "endpoints",    "spiffe_id",
                                       "balance",           "hash_key",     "circuit_breakers",
                                       "outlier_detection", "retry_budget", NULL};
    proxy_config_upstream_defaults(u);
    if (!expect_map(c, n))
        return;
    check_keys(c, n, keys);
    u->line = n->line;
    const ward_node *v;
    size_t old;
    if ((v = field(n, "service")) == NULL) {
        missing(c, n, "service", " (the name the Host header gives)");
    } else {
        old = push(c, "service");
        u->service = parse_service(c, v);
        pop(c, old);
    }
    parse_endpoints(c, n, &u->endpoints, &u->addrs, &u->n_endpoints);
    u->spiffe_id = parse_endpoint_id(c, n);
    bool balance_ok = true; /* a bad balance is reported once, not again at hash_key */
    if ((v = field(n, "balance")) != NULL) {
        old = push(c, "balance");
        balance_ok = parse_balance(c, v, u);
        pop(c, old);
    }
    if ((v = field(n, "hash_key")) != NULL) {
        old = push(c, "hash_key");
        if (balance_ok && u->balance != PROXY_BALANCE_CONSISTENT_HASH)
            cerr(c, v, "hash_key goes with balance: consistent_hash (balance is %s)",
                 proxy_balance_name(u->balance));
        else
            parse_hash_key(c, v, u);
        pop(c, old);
    }
    static const struct {
        const char *key;
        void (*parse)(cctx *, const ward_node *, proxy_config_upstream *);
    } maps[] = {{"circuit_breakers", parse_circuit_breakers},
                {"outlier_detection", parse_outlier_detection},
                {"retry_budget", parse_retry_budget}};
    for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
        if ((v = field(n, maps[i].key)) == NULL)
            continue;
        old = push(c, maps[i].key);
        maps[i].parse(c, v, u);
        pop(c, old);
    }
}

static void parse_upstreams(cctx *c, const ward_node *n, proxy_config *cfg)
{
    if (!expect_list(c, n))
        return;
    if (n->n > UPSTREAMS_MAX) {
        cerr(c, n, "too many upstreams (at most %d)", UPSTREAMS_MAX);
        return;
    }
    if (n->n == 0)
        return;
    cfg->upstreams = calloc(n->n, sizeof(*cfg->upstreams));
    if (cfg->upstreams == NULL) {
        c->v.rc = WARD_ENOMEM;
        return;
    }
    cfg->n_upstreams = n->n;
    for (size_t i = 0; i < n->n; i++) {
        size_t old = push_idx(c, i);
        proxy_config_upstream *u = &cfg->upstreams[i];
        parse_upstream(c, n->items[i], u);
        for (size_t j = 0; u->service != NULL && j < i; j++) {
            if (cfg->upstreams[j].service != NULL &&
                strcmp(cfg->upstreams[j].service, u->service) == 0) {
                size_t o2 = push(c, "service");
                cerr(c, ward_node_get(n->items[i], "service"),
                     "duplicate upstream service \"%s\" (first defined at line %d)", u->service,
                     cfg->upstreams[j].line);
                pop(c, o2);
                break;
            }
        }
        pop(c, old);
    }
}

/* A TCP listener: inbound (mTLS from other proxies to `app`) or outbound (the
 * workload's plaintext connections, on loopback, to `endpoints` over mTLS). */
static void parse_tcp_listener(cctx *c, const ward_node *n, proxy_config_tcp *t)
{
    static const char *const keys[] = {"name",      "listen",          "app",
                                       "service",   "endpoints",       "spiffe_id",
                                       "server_name", "connect_timeout", "idle_timeout", NULL};
    if (!expect_map(c, n))
        return;
    check_keys(c, n, keys);
    t->line = n->line;
    const ward_node *v;
    size_t old;
    if ((v = field(n, "name")) == NULL) {
        missing(c, n, "name", " (names the listener in audit records and logs)");
    } else {
        old = push(c, "name");
        t->name = parse_service(c, v);
        pop(c, old);
    }
    const ward_node *app = field(n, "app"), *eps = field(n, "endpoints");
    t->inbound = app != NULL;
    if ((app == NULL) == (eps == NULL)) {
        cerr(c, n, "give either app (an inbound listener: mTLS from other proxies to the local "
                   "workload) or endpoints (an outbound one: the workload's connections to a "
                   "remote service)");
        return;
    }
    if ((v = field(n, "listen")) == NULL) {
        missing(c, n, "listen", " (ADDR:PORT)");
    } else {
        old = push(c, "listen");
        t->listen = t->inbound ? parse_addr(c, v, ADDR_LISTEN, NULL, &t->listen_addr)
                               : parse_addr(c, v, ADDR_LISTEN_LOOPBACK,
                                            "an outbound listener is plaintext and lends this "
                                            "workload's identity to whoever connects",
                                            &t->listen_addr);
        pop(c, old);
    }
    if (t->inbound) {
        static const char *const outbound_only[] = {"service", "spiffe_id", "server_name", NULL};
        for (size_t i = 0; outbound_only[i] != NULL; i++)
            if ((v = field(n, outbound_only[i])) != NULL) {
                old = push(c, outbound_only[i]);
                cerr(c, v, "%s is for outbound listeners (with endpoints)", outbound_only[i]);
                pop(c, old);
            }
        old = push(c, "app");
        t->app = parse_addr(c, app, ADDR_CONNECT, NULL, &t->app_addr);
        pop(c, old);
    } else {
        if ((v = field(n, "service")) == NULL) {
            missing(c, n, "service", " (the remote service: destination.service to policies)");
        } else {
            old = push(c, "service");
            t->service = parse_service(c, v);
            pop(c, old);
        }
        parse_endpoints(c, n, &t->endpoints, &t->addrs, &t->n_endpoints);
        t->spiffe_id = parse_endpoint_id(c, n);
        if ((v = field(n, "server_name")) != NULL) {
            old = push(c, "server_name");
            t->server_name = parse_server_name(c, v);
            pop(c, old);
        }
    }
    static const struct {
        const char *key;
        size_t off;
    } timeouts[] = {{"connect_timeout", offsetof(proxy_config_tcp, connect_timeout_ms)},
                    {"idle_timeout", offsetof(proxy_config_tcp, idle_timeout_ms)}};
    for (size_t i = 0; i < 2; i++)
        if ((v = field(n, timeouts[i].key)) != NULL) {
            old = push(c, timeouts[i].key);
            parse_timeout(c, v, (uint64_t *)((char *)t + timeouts[i].off));
            pop(c, old);
        }
}

static void parse_tcp(cctx *c, const ward_node *n, proxy_config *cfg)
{
    if (!expect_list(c, n) || n->n == 0)
        return;
    if (n->n > TCP_LISTENERS_MAX) {
        cerr(c, n, "too many TCP listeners (at most %d)", TCP_LISTENERS_MAX);
        return;
    }
    if ((cfg->tcp = calloc(n->n, sizeof(*cfg->tcp))) == NULL) {
        c->v.rc = WARD_ENOMEM;
        return;
    }
    cfg->n_tcp = n->n;
    for (size_t i = 0; i < n->n; i++) {
        size_t old = push_idx(c, i);
        proxy_config_tcp *t = &cfg->tcp[i];
        parse_tcp_listener(c, n->items[i], t);
        for (size_t j = 0; t->name != NULL && j < i; j++)
            if (cfg->tcp[j].name != NULL && strcmp(cfg->tcp[j].name, t->name) == 0) {
                size_t o2 = push(c, "name");
                cerr(c, ward_node_get(n->items[i], "name"),
                     "duplicate TCP listener \"%s\" (first defined at line %d)", t->name,
                     cfg->tcp[j].line);
                pop(c, o2);
                break;
            }
        pop(c, old);
    }
}

static void parse_policy(cctx *c, const ward_node *n, proxy_config *cfg)
{
    static const char *const keys[] = {"paths", "default", NULL};
    if (!expect_map(c, n))
        return;
    check_keys(c, n, keys);
    const ward_node *v;
    size_t old;
    if ((v = field(n, "paths")) != NULL) {
        old = push(c, "paths");
        if (expect_list(c, v)) {
            if (v->n > POLICY_PATHS_MAX) {
                cerr(c, v, "too many paths (at most %d)", POLICY_PATHS_MAX);
            } else if (v->n > 0) {
                cfg->policy.paths = calloc(v->n, sizeof(*cfg->policy.paths));
                if (cfg->policy.paths == NULL) {
                    c->v.rc = WARD_ENOMEM;
                } else {
                    cfg->policy.n_paths = v->n;
                    for (size_t i = 0; i < v->n; i++) {
                        size_t o2 = push_idx(c, i);
                        cfg->policy.paths[i] = parse_file(c, v->items[i], FILE_FILE_OR_DIR);
                        pop(c, o2);
                    }
                }
            }
        }
        pop(c, old);
    }
    if ((v = field(n, "default")) != NULL) {
        old = push(c, "default");
        const char *s;
        if (get_str(c, v, &s)) {
            char q[256];
            if (ward_node_is(v, "deny"))
                cfg->policy.default_allow = false;
            else if (ward_node_is(v, "allow"))
                cfg->policy.default_allow = true;
            else if (strcasecmp(s, "deny") == 0 || strcasecmp(s, "allow") == 0)
                cerr(c, v, "invalid value %s (values are lowercase); allowed: allow, deny",
                     ward_quote(q, sizeof(q), s, v->len));
            else
                cerr(c, v, "invalid value %s; allowed: allow, deny",
                     ward_quote(q, sizeof(q), s, v->len));
        }
        pop(c, old);
    }
}

/* A name for RFC 5424 (APP-NAME) or TLS (server_name): printable ASCII, no spaces. */
static char *parse_token(cctx *c, const ward_node *v, size_t max, const char *what)
{
    const char *s;
    if (!get_str(c, v, &s))
        return NULL;
    bool ok = v->len <= max;
    for (size_t i = 0; ok && i < v->len; i++)
        ok = (unsigned char)s[i] >= 33 && (unsigned char)s[i] <= 126;
    if (!ok) {
        char q[256];
        cerr(c, v, "invalid %s %s (1..%zu printable ASCII characters, no spaces)", what,
             ward_quote(q, sizeof(q), s, v->len), max);
        return NULL;
    }
    return cdup(c, s);
}

static void parse_sink_tls(cctx *c, const ward_node *n, proxy_config *cfg)
{
    static const char *const keys[] = {"ca_file", "cert_file", "key_file", "server_name", NULL};
    if (!expect_map(c, n))
        return;
    check_keys(c, n, keys);
    cfg->audit.sink.tls = true;
    const ward_node *v, *cert = field(n, "cert_file"), *key = field(n, "key_file");
    size_t old;
    if ((v = field(n, "ca_file")) == NULL) {
        missing(c, n, "ca_file", " (the CA certificates the collector's certificate must chain to)");
    } else {
        old = push(c, "ca_file");
        cfg->audit.sink.ca_file = parse_file(c, v, FILE_ANY);
        pop(c, old);
    }
    if ((cert == NULL) != (key == NULL)) {
        cerr(c, cert != NULL ? cert : key,
             "a client certificate needs both cert_file and key_file");
    } else if (cert != NULL) {
        old = push(c, "cert_file");
        cfg->audit.sink.cert_file = parse_file(c, cert, FILE_ANY);
        pop(c, old);
        old = push(c, "key_file");
        cfg->audit.sink.key_file = parse_file(c, key, FILE_SECRET);
        pop(c, old);
    }
    if ((v = field(n, "server_name")) != NULL) {
        old = push(c, "server_name");
        cfg->audit.sink.server_name = parse_token(c, v, 253, "server name");
        pop(c, old);
    }
}

static void parse_sink(cctx *c, const ward_node *n, proxy_config *cfg)
{
    static const char *const keys[] = {"address", "tls", "facility", "app_name", NULL};
    if (!expect_map(c, n))
        return;
    check_keys(c, n, keys);
    cfg->audit.sink.facility = AUDIT_SYSLOG_FACILITY;
    const ward_node *v;
    size_t old;
    char q[256];
    if ((v = field(n, "address")) == NULL) {
        missing(c, n, "address", " (the syslog collector, HOST:PORT)");
    } else {
        old = push(c, "address");
        const char *s;
        char host[256];
        uint16_t port;
        ward_err e;
        if (get_str(c, v, &s)) {
            if (audit_sink_address_parse(s, host, sizeof(host), &port, &e) < 0)
                cerr(c, v, "%s", e.msg);
            else
                cfg->audit.sink.address = cdup(c, s);
        }
        pop(c, old);
    }
    if ((v = field(n, "tls")) != NULL) {
        old = push(c, "tls");
        parse_sink_tls(c, v, cfg);
        pop(c, old);
    }
    if ((v = field(n, "facility")) != NULL) {
        old = push(c, "facility");
        if (v->kind != WARD_NODE_SCALAR || ward_node_is_bool(v, NULL) ||
            audit_syslog_facility_parse(v->str, v->len, &cfg->audit.sink.facility) < 0)
            cerr(c, v, "invalid facility %s: kern, user, mail, daemon, auth, syslog, lpr, news, "
                 "uucp, cron, authpriv, ftp, ntp, audit, alert, clock, local0..local7, or 0..23",
                 v->kind == WARD_NODE_SCALAR ? ward_quote(q, sizeof(q), v->str, v->len)
                                             : ward_node_describe(v));
        pop(c, old);
    }
    if ((v = field(n, "app_name")) != NULL) {
        old = push(c, "app_name");
        cfg->audit.sink.app_name = parse_token(c, v, 48, "app_name");
        pop(c, old);
    }
}

/* A list of header field names (tokens), lowercased. */
static void parse_header_names(cctx *c, const ward_node *n, char ***out, size_t *count)
{
    if (!expect_list(c, n))
        return;
    if (n->n > PROXY_AUDIT_HEADERS_MAX) {
        cerr(c, n, "too many header names (at most %d)", PROXY_AUDIT_HEADERS_MAX);
        return;
    }
    if (n->n == 0)
        return;
    if ((*out = calloc(n->n, sizeof(**out))) == NULL) {
        c->v.rc = WARD_ENOMEM;
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        size_t old = push_idx(c, i);
        const ward_node *v = n->items[i];
        const char *s;
        bool ok = get_str(c, v, &s) && v->len > 0 && v->len <= 64;
        for (size_t k = 0; ok && k < v->len; k++)
            ok = tchar(s[k]);
        if (ok && (s = cdup(c, s)) != NULL) {
            char *low = (char *)s;
            for (size_t k = 0; k < v->len; k++)
                low[k] = (char)tolower((unsigned char)low[k]);
            (*out)[(*count)++] = low;
        } else if (v->kind == WARD_NODE_SCALAR) {
            char q[128];
            cerr(c, v, "%s is not a header field name (a token of 1..64 characters)",
                 ward_quote(q, sizeof(q), v->str, v->len));
        }
        pop(c, old);
    }
}

/* audit.fields: the allow-list of record fields. What it leaves out of the
 * optional ones is written as null; the rest cannot be left out. */
static void parse_audit_fields(cctx *c, const ward_node *n, uint32_t *omit)
{
    static const struct {
        const char *name;
        uint32_t bit; /* 0: always written */
    } known[] = {
        {"source.ip", PROXY_AUDIT_OMIT_SOURCE_IP},
        {"source.port", PROXY_AUDIT_OMIT_SOURCE_PORT},
        {"destination.port", PROXY_AUDIT_OMIT_DESTINATION_PORT},
        {"request.host", PROXY_AUDIT_OMIT_REQUEST_HOST},
        {"request.path", PROXY_AUDIT_OMIT_REQUEST_PATH},
        {"request.headers", PROXY_AUDIT_OMIT_REQUEST_HEADERS},
        {"reason", PROXY_AUDIT_OMIT_REASON},
        {"trace_id", PROXY_AUDIT_OMIT_TRACE_ID},
        {"latency_ns", PROXY_AUDIT_OMIT_LATENCY},
        {"peer_cert_sha256", PROXY_AUDIT_OMIT_PEER_CERT},
        {"v", 0}, {"seq", 0}, {"ts", 0}, {"id", 0}, {"node", 0}, {"direction", 0},
        {"decision", 0}, {"policy", 0}, {"rule", 0}, {"audit", 0}, {"dry_run", 0},
        {"source.principal", 0}, {"destination.service", 0}, {"destination.principal", 0},
        {"request.method", 0}, {"request.protocol", 0}, {"response", 0}, {"connection", 0},
        {"bundle", 0}, {"prev", 0}, {"hash", 0},
    };
    if (!expect_list(c, n))
        return;
    uint32_t listed = 0;
    for (size_t i = 0; i < n->n; i++) {
        size_t old = push_idx(c, i);
        const ward_node *v = n->items[i];
        const char *s;
        size_t k = 0, nk = sizeof(known) / sizeof(known[0]);
        if (get_str(c, v, &s)) {
            while (k < nk && strcmp(known[k].name, s) != 0)
                k++;
            if (k == nk) {
                char q[128];
                cerr(c, v,
                     "%s is not a record field; the optional ones: source.ip, source.port, "
                     "destination.port, request.host, request.path, request.headers, reason, "
                     "trace_id, latency_ns, peer_cert_sha256 (the others are always written)",
                     ward_quote(q, sizeof(q), s, v->len));
            } else {
                listed |= known[k].bit;
            }
        }
        pop(c, old);
    }
    uint32_t all = 0;
    for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
        all |= known[k].bit;
    *omit = all & ~listed;
}

static void parse_audit(cctx *c, const ward_node *n, proxy_config *cfg)
{
    static const char *const keys[] = {"dir", "overflow", "key_file", "segment_size", "segment_age",
                                       "checkpoint_records", "queue_records", "fsync_interval",
                                       "sink", "headers", "redact", "fields", NULL};
    if (!expect_map(c, n))
        return;
    check_keys(c, n, keys);
    const ward_node *v;
    size_t old;
    if ((v = field(n, "key_file")) != NULL) {
        old = push(c, "key_file");
        cfg->audit.key_file = parse_file(c, v, FILE_SECRET);
        pop(c, old);
    }
    if ((v = field(n, "segment_size")) != NULL) {
        old = push(c, "segment_size");
        parse_size(c, v, (uint64_t)1 << 20, (uint64_t)64 << 30, &cfg->audit.segment_bytes);
        pop(c, old);
    }
    if ((v = field(n, "segment_age")) != NULL) {
        old = push(c, "segment_age");
        parse_timeout(c, v, &cfg->audit.segment_age_ms);
        pop(c, old);
    }
    if ((v = field(n, "checkpoint_records")) != NULL) {
        old = push(c, "checkpoint_records");
        parse_uint(c, v, 1, 10000000, &cfg->audit.checkpoint_records);
        pop(c, old);
    }
    if ((v = field(n, "queue_records")) != NULL) {
        old = push(c, "queue_records");
        parse_uint(c, v, 64, 1048576, &cfg->audit.queue_records);
        while (cfg->audit.queue_records & (cfg->audit.queue_records - 1))
            cfg->audit.queue_records++; /* the queue's size: a power of two */
        pop(c, old);
    }
    if ((v = field(n, "fsync_interval")) != NULL) {
        old = push(c, "fsync_interval");
        parse_timeout(c, v, &cfg->audit.fsync_ms);
        pop(c, old);
    }
    if ((v = field(n, "sink")) != NULL) {
        old = push(c, "sink");
        parse_sink(c, v, cfg);
        pop(c, old);
    }
    if ((v = field(n, "headers")) != NULL) {
        old = push(c, "headers");
        parse_header_names(c, v, &cfg->audit.headers, &cfg->audit.n_headers);
        pop(c, old);
    }
    if ((v = field(n, "redact")) != NULL) {
        old = push(c, "redact");
        parse_header_names(c, v, &cfg->audit.redact, &cfg->audit.n_redact);
        pop(c, old);
    }
    if ((v = field(n, "fields")) != NULL) {
        old = push(c, "fields");
        parse_audit_fields(c, v, &cfg->audit.omit);
        pop(c, old);
    }
    const ward_node *ov = field(n, "overflow");
    if (ov != NULL) {
        old = push(c, "overflow");
        const char *s;
        char q[64];
        if (get_str(c, ov, &s) && audit_overflow_parse(s, strlen(s), &cfg->audit.overflow) < 0)
            cerr(c, ov, "%s is not an overflow policy: deny (fail closed), block or drop",
                 ward_quote(q, sizeof(q), s, strlen(s)));
        pop(c, old);
    }
    v = field(n, "dir");
    if (v == NULL) {
        missing(c, n, "dir", " (the folder of the audit trail)");
        return;
    }
    old = push(c, "dir");
    cfg->audit.dir = parse_folder(c, v);
    pop(c, old);
}

static void parse_admin(cctx *c, const ward_node *n, proxy_config *cfg)
{
    static const char *const keys[] = {"listen", NULL};
    if (!expect_map(c, n))
        return;
    check_keys(c, n, keys);
    const ward_node *v = field(n, "listen");
    if (v == NULL)
        return;
    size_t old = push(c, "listen");
    cfg->admin.listen =
        parse_addr(c, v, ADDR_LISTEN_LOOPBACK,
                   "the admin endpoint exposes metrics and configuration and is never served "
                   "to the network",
                   &cfg->admin.listen_addr);
    pop(c, old);
}

static void parse_workers(cctx *c, const ward_node *n, proxy_config *cfg)
{
    if (ward_node_is(n, "auto"))
        return;
    char q[256];
    uint64_t v = 0;
    if (n->kind != WARD_NODE_SCALAR || ward_node_is_null(n) || ward_node_is_bool(n, NULL)) {
        cerr(c, n, "expected a number or \"auto\", got %s", ward_node_describe(n));
        return;
    }
    if (ward_parse_u64(n->str, n->len, PROXY_CONFIG_WORKERS_MAX, &v) < 0 || v == 0) {
        cerr(c, n, "invalid worker count %s (1..%d, or auto for one per core)",
             ward_quote(q, sizeof(q), n->str, n->len), PROXY_CONFIG_WORKERS_MAX);
        return;
    }
    cfg->workers = (unsigned)v;
    cfg->workers_auto = false;
}

static void parse_limits(cctx *c, const ward_node *n, proxy_config *cfg)
{
    static const char *const keys[] = {"max_header_bytes", "max_headers", "max_body",
                                       "max_connections", NULL};
    if (!expect_map(c, n))
        return;
    check_keys(c, n, keys);
    const ward_node *v;
    size_t old;
    if ((v = field(n, "max_header_bytes")) != NULL) {
        old = push(c, "max_header_bytes");
        parse_size(c, v, HEADER_BYTES_MIN, HEADER_BYTES_MAX, &cfg->limits.max_header_bytes);
        pop(c, old);
    }
    if ((v = field(n, "max_headers")) != NULL) {
        old = push(c, "max_headers");
        parse_uint(c, v, 1, HEADERS_MAX, &cfg->limits.max_headers);
        pop(c, old);
    }
    if ((v = field(n, "max_body")) != NULL) {
        old = push(c, "max_body");
        if (ward_node_is(v, "unlimited"))
            cfg->limits.max_body = PROXY_CONFIG_UNLIMITED;
        else
            parse_size(c, v, 1, BODY_MAX, &cfg->limits.max_body);
        pop(c, old);
    }
    if ((v = field(n, "max_connections")) != NULL) {
        old = push(c, "max_connections");
        parse_uint(c, v, 1, CONNECTIONS_MAX, &cfg->limits.max_connections);
        pop(c, old);
    }
}

static void parse_tls(cctx *c, const ward_node *n, proxy_config *cfg)
{
    static const char *const keys[] = {"min_version", NULL};
    if (!expect_map(c, n))
        return;
    check_keys(c, n, keys);
    const ward_node *v = field(n, "min_version");
    if (v == NULL)
        return;
    size_t old = push(c, "min_version");
    const char *s;
    if (get_str(c, v, &s)) {
        char q[256];
        if (ward_node_is(v, "1.3"))
            cfg->tls.allow_tls12 = false;
        else if (ward_node_is(v, "1.2"))
            cfg->tls.allow_tls12 = true;
        else
            cerr(c, v, "unsupported TLS version %s; allowed: \"1.3\" (default), \"1.2\"",
                 ward_quote(q, sizeof(q), s, v->len));
    }
    pop(c, old);
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family || addr_port(a) == 0 || addr_port(a) != addr_port(b))
        return false;
    if (a->ss_family == AF_INET) {
        uint32_t x = ((const struct sockaddr_in *)a)->sin_addr.s_addr;
        uint32_t y = ((const struct sockaddr_in *)b)->sin_addr.s_addr;
        return x == y || x == htonl(INADDR_ANY) || y == htonl(INADDR_ANY);
    }
    const struct in6_addr *x = &((const struct sockaddr_in6 *)a)->sin6_addr;
    const struct in6_addr *y = &((const struct sockaddr_in6 *)b)->sin6_addr;
    return memcmp(x, y, sizeof(*x)) == 0 || IN6_IS_ADDR_UNSPECIFIED(x) ||
           IN6_IS_ADDR_UNSPECIFIED(y);
}

static const ward_node *listen_node(const ward_node *root, const char *section)
{
    const ward_node *sec = ward_node_get(root, section);
    return sec != NULL && sec->kind == WARD_NODE_MAP ? ward_node_get(sec, "listen") : NULL;
}

/* Two listeners on one address and port cannot both bind. */
static void check_listeners(cctx *c, const ward_node *root, proxy_config *cfg)
{
    struct {
        const char *name; /* for messages */
        const char *section;
        const char *value;
        const struct sockaddr_storage *addr;
    } l[] = {
        {"inbound.listen", "inbound", cfg->inbound.listen, &cfg->inbound.listen_addr},
        {"outbound.listen", "outbound", cfg->outbound.listen, &cfg->outbound.listen_addr},
        {"admin.listen", "admin", cfg->admin.listen, &cfg->admin.listen_addr},
    };
    for (size_t i = 1; i < sizeof(l) / sizeof(l[0]); i++) {
        for (size_t j = 0; j < i; j++) {
            if (l[i].value == NULL || l[j].value == NULL || !same_addr(l[i].addr, l[j].addr))
                continue;
            size_t a = i, b = j; /* report on the later one, written in the file */
            const ward_node *at = listen_node(root, l[a].section);
            if (at == NULL) { /* the default admin address */
                a = j;
                b = i;
                at = listen_node(root, l[a].section);
            }
            size_t old = push(c, l[a].section);
            push(c, "listen");
            cerr(c, at, "\"%s\" is also used by %s%s", l[a].value, l[b].name,
                 listen_node(root, l[b].section) != NULL ? "" : " (its default)");
            pop(c, old);
        }
    }
}

/* A TCP listener's address is no other listener's. */
static void check_tcp_listeners(cctx *c, const ward_node *root, proxy_config *cfg)
{
    const ward_node *list = ward_node_get(root, "tcp");
    for (size_t i = 0; list != NULL && i < cfg->n_tcp && i < list->n; i++) {
        const proxy_config_tcp *t = &cfg->tcp[i];
        if (t->listen == NULL)
            continue;
        const char *other = NULL;
        if (cfg->inbound.listen && same_addr(&t->listen_addr, &cfg->inbound.listen_addr))
            other = "inbound.listen";
        else if (cfg->outbound.listen && same_addr(&t->listen_addr, &cfg->outbound.listen_addr))
            other = "outbound.listen";
        else if (cfg->admin.listen && same_addr(&t->listen_addr, &cfg->admin.listen_addr))
            other = "admin.listen";
        for (size_t j = 0; other == NULL && j < i; j++)
            if (cfg->tcp[j].listen && same_addr(&t->listen_addr, &cfg->tcp[j].listen_addr))
                other = cfg->tcp[j].name;
        if (other == NULL)
            continue;
        size_t old = push(c, "tcp");
        push_idx(c, i);
        push(c, "listen");
        cerr(c, ward_node_get(list->items[i], "listen"), "\"%s\" is also used by %s", t->listen,
             other);
        pop(c, old);
    }
}

static const proxy_config_timeouts default_timeouts = {
    .header_read_ms = 10000,
    .idle_ms = 60000,
    .upstream_connect_ms = 5000,
    .request_ms = 30000,
};

/* Listener timeouts not set keep the top-level ones. */
static void merge_timeouts(proxy_config_timeouts *t, const proxy_config_timeouts *top)
{
    if (t->header_read_ms == 0)
        t->header_read_ms = top->header_read_ms;
    if (t->idle_ms == 0)
        t->idle_ms = top->idle_ms;
    if (t->upstream_connect_ms == 0)
        t->upstream_connect_ms = top->upstream_connect_ms;
    if (t->request_ms == 0)
        t->request_ms = top->request_ms;
}

static unsigned online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > PROXY_CONFIG_WORKERS_MAX ? PROXY_CONFIG_WORKERS_MAX : (unsigned)n;
}

static void parse_root(cctx *c, const ward_node *root, proxy_config *cfg)
{
    static const char *const keys[] = {"service", "identity", "inbound", "outbound", "upstreams",
                                       "policy",  "audit",    "admin",   "workers",  "timeouts",
                                       "limits",  "tls",      "tcp",      NULL};
    if (root->kind != WARD_NODE_MAP) {
        cerr(c, root, "expected a map of settings, got %s", ward_node_describe(root));
        return;
    }
    check_keys(c, root, keys);
    proxy_config_timeouts top = {0};
    const ward_node *v;
    size_t old;
    if ((v = field(root, "service")) == NULL) {
        missing(c, root, "service", " (this workload's service name)");
    } else {
        old = push(c, "service");
        cfg->service = parse_service(c, v);
        pop(c, old);
    }
    if ((v = field(root, "timeouts")) != NULL) {
        old = push(c, "timeouts");
        parse_timeouts(c, v, &top, &cfg->drain_ms);
        pop(c, old);
    }
    /* the sections that parse into cfg; `required` explains a missing one */
    static const struct {
        const char *key;
        void (*parse)(cctx *, const ward_node *, proxy_config *);
        const char *required;
    } sections[] = {
        {"identity", parse_identity, " (wardd server + token_file, or cert_file + key_file)"},
        {"inbound", parse_inbound, " (listen and app)"},
        {"outbound", parse_outbound, NULL},
        {"upstreams", parse_upstreams, NULL},
        {"policy", parse_policy, NULL},
        {"audit", parse_audit, " (every decision is recorded: give audit.dir)"},
        {"admin", parse_admin, NULL},
        {"workers", parse_workers, NULL},
        {"limits", parse_limits, NULL},
        {"tls", parse_tls, NULL},
        {"tcp", parse_tcp, NULL},
    };
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
        if ((v = field(root, sections[i].key)) == NULL) {
            if (sections[i].required != NULL)
                missing(c, root, sections[i].key, sections[i].required);
            continue;
        }
        old = push(c, sections[i].key);
        sections[i].parse(c, v, cfg);
        pop(c, old);
    }
    /* defaults */
    merge_timeouts(&top, &default_timeouts);
    merge_timeouts(&cfg->inbound.timeouts, &top);
    merge_timeouts(&cfg->outbound.timeouts, &top);
    if (cfg->drain_ms == 0)
        cfg->drain_ms = 30000;
    if (cfg->admin.listen == NULL && c->v.rc == 0) {
        cfg->admin.listen = cdup(c, "127.0.0.1:15000");
        ward_err e;
        if (cfg->admin.listen != NULL)
            proxy_addr_parse(cfg->admin.listen, &cfg->admin.listen_addr, &e);
    }
    if (cfg->workers_auto)
        cfg->workers = online_cores();
    check_listeners(c, root, cfg);
    check_tcp_listeners(c, root, cfg);
}

/* ---- loading ---------------------------------------------------------------------------- */

void proxy_config_free(proxy_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->file);
    free(cfg->service);
    free(cfg->identity.server);
    free(cfg->identity.token_file);
    free(cfg->identity.state_dir);
    free(cfg->identity.cert_file);
    free(cfg->identity.key_file);
    free(cfg->identity.bundle_file);
    free(cfg->inbound.listen);
    free(cfg->inbound.app);
    free(cfg->outbound.listen);
    for (size_t i = 0; i < cfg->n_tcp; i++) {
        proxy_config_tcp *t = &cfg->tcp[i];
        free(t->name);
        free(t->listen);
        free(t->app);
        free(t->service);
        for (size_t j = 0; j < t->n_endpoints; j++)
            free(t->endpoints[j]);
        free(t->endpoints);
        free(t->addrs);
        free(t->spiffe_id);
        free(t->server_name);
    }
    free(cfg->tcp);
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        proxy_config_upstream *u = &cfg->upstreams[i];
        free(u->service);
        for (size_t j = 0; j < u->n_endpoints; j++)
            free(u->endpoints[j]);
        free(u->endpoints);
        free(u->addrs);
        free(u->spiffe_id);
        free(u->hash_header);
    }
    free(cfg->upstreams);
    for (size_t i = 0; i < cfg->policy.n_paths; i++)
        free(cfg->policy.paths[i]);
    free(cfg->policy.paths);
    free(cfg->audit.dir);
    free(cfg->audit.key_file);
    free(cfg->audit.sink.address);
    free(cfg->audit.sink.ca_file);
    free(cfg->audit.sink.cert_file);
    free(cfg->audit.sink.key_file);
    free(cfg->audit.sink.server_name);
    free(cfg->audit.sink.app_name);
    for (size_t i = 0; i < cfg->audit.n_headers; i++)
        free(cfg->audit.headers[i]);
    free(cfg->audit.headers);
    for (size_t i = 0; i < cfg->audit.n_redact; i++)
        free(cfg->audit.redact[i]);
    free(cfg->audit.redact);
    free(cfg->admin.listen);
    free(cfg);
}

int proxy_config_load_buffer(const char *name, const char *data, size_t len, proxy_config **out,
                             ward_diag *diag)
{
    int rc = 0;
    ward_docs docs = {0};
    proxy_config *cfg = NULL;
    cctx c = {.v = {.file = name, .noun = "key"}};
    *out = NULL;
    rc = ward_docs_parse(name, data, len, &docs, diag);
    if (rc < 0) {
        rc = rc == WARD_ENOMEM ? rc : WARD_EPOLICY; /* the syntax error is in diag */
        goto fail;
    }
    if (docs.n != 1) {
        ward_diag_add(diag, name, docs.n ? docs.docs[1]->line : 0, docs.n ? docs.docs[1]->col : 0,
                      "document: %s",
                      docs.n ? "expected one YAML document, got several" : "empty configuration");
        rc = WARD_EPOLICY;
        goto fail;
    }
    const char *slash = strrchr(name, '/');
    c.base = slash == NULL ? strdup("") : strndup(name, (size_t)(slash - name));
    cfg = calloc(1, sizeof(*cfg));
    if (c.base == NULL || cfg == NULL || (cfg->file = strdup(name)) == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    if (c.base[0] == '\0' && slash == name) {
        free(c.base); /* "/file.yaml": the root folder */
        if ((c.base = strdup("/")) == NULL) {
            rc = WARD_ENOMEM;
            goto fail;
        }
    }
    cfg->policy.default_allow = false;
    cfg->workers_auto = true;
    cfg->limits.max_header_bytes = PROXY_HTTP_HEADER_BYTES_MAX;
    cfg->limits.max_headers = PROXY_HTTP_HEADERS_MAX;
    cfg->limits.max_body = PROXY_CONFIG_UNLIMITED;
    cfg->limits.max_connections = 16384;
    parse_root(&c, docs.docs[0], cfg);
    if (c.v.rc < 0) {
        rc = c.v.rc;
        goto fail;
    }
    if (c.v.n_probs > 0) {
        rc = WARD_EPOLICY;
        goto fail;
    }
    ward_docv_flush(&c.v, diag);
    free(c.base);
    ward_docs_dispose(&docs);
    *out = cfg;
    return 0;
fail:
    ward_docv_flush(&c.v, diag);
    free(c.base);
    ward_docs_dispose(&docs);
    proxy_config_free(cfg);
    return rc;
}

int proxy_config_load(const char *path, proxy_config **out, ward_diag *diag)
{
    int rc = 0;
    char *text = NULL;
    size_t len = 0;
    ward_err err;
    *out = NULL;
    rc = ward_file_read(path, CONFIG_MAX_BYTES, &text, &len, &err);
    if (rc < 0) {
        ward_diag_add(diag, NULL, 0, 0, "%s", err.msg); /* it names the file */
        rc = rc == WARD_ENOMEM ? rc : WARD_EIO;
        goto fail;
    }
    rc = proxy_config_load_buffer(path, text, len, out, diag);
fail:
    free(text);
    return rc;
}
