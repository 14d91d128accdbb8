/* config.c - wardd's flags and YAML config file: strict keys, bounded numbers, durations */
#include "cmd/wardd/wardd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DURATION_MAX_NS ((uint64_t)10 * 365 * 24 * 3600 * 1000000000ull) /* ten years */

void wardd_usage(FILE *out)
{
    fputs("usage: wardd --trust-domain TD --data-dir DIR [options]\n"
          "\n"
          "The Ward identity service: a CA that signs SPIFFE X509-SVIDs from CSRs after\n"
          "join-token attestation, renews them over mTLS, issues JWT-SVIDs and serves the\n"
          "trust bundle (HTTPS, TLS 1.3). Admin operations (join tokens, issuance list)\n"
          "go through a Unix socket only the operator can reach.\n"
          "\n"
          "options:\n"
          "  --trust-domain TD        the trust domain served (required, here or in the\n"
          "                           config file)\n"
          "  --data-dir DIR           CA keys, state, tokens and the audit trail (required,\n"
          "                           here or in the config file; created with mode 0700)\n"
          "  --listen ADDR:PORT       the HTTPS workload API (default 127.0.0.1:8443)\n"
          "  --admin-socket PATH      the admin API (default DIR/admin.sock, mode 0600)\n"
          "  --config FILE            a YAML file with the keys below; flags win\n"
          "  --ca-ttl D               CA lifetime (default 24h); rotation prepares the next\n"
          "                           CA at 1/2 and activates it at 5/6 of it\n"
          "  --svid-ttl D             X509-SVID lifetime (default 1h)\n"
          "  --upstream-cert FILE     sign under this upstream CA certificate ...\n"
          "  --upstream-key FILE      ... and key (both or neither)\n"
          "  --audit-dir DIR          the audit trail of identity events (default DIR/audit)\n"
          "  -h, --help               this help\n"
          "\n"
          "An option's value may also follow an '=': --svid-ttl=30m.\n"
          "\n"
          "config file keys (one YAML mapping; unknown keys are errors): trust_domain,\n"
          "  data_dir, listen, admin_socket, ca_ttl, svid_ttl, svid_ttl_max (24h: the\n"
          "  longest TTL a workload may ask for), jwt_ttl (5m), upstream_cert,\n"
          "  upstream_key, header_timeout (10s), body_timeout (10s), idle_timeout (60s),\n"
          "  max_connections (4096),\n"
          "  attest_failures (10: failed join token attempts per peer address per minute),\n"
          "  audit: {dir (DIR/audit), key_file, overflow (deny|block), segment_size (64MiB),\n"
          "  segment_age (1h), checkpoint_records (10000), fsync_interval (100ms),\n"
          "  sink: {address, tls: {ca_file, cert_file, key_file, server_name}, facility,\n"
          "  app_name}}: the signed, hash-chained trail of identity events\n"
          "durations take units: 90s, 5m, 1h30m, 24h.\n"
          "\n"
          "Signals: SIGINT and SIGTERM stop accepting, finish what is in flight, exit 0.\n"
          "Exit status: 0 stopped cleanly, 1 could not start, 2 usage error.\n"
          "\n"
          "Examples:\n"
          "  wardd --trust-domain example.org --data-dir /var/lib/ward\n"
          "  wardd --config /etc/ward/wardd.yaml\n"
          "  WARD_ADMIN_SOCKET=/var/lib/ward/admin.sock wardctl identity token create \\\n"
          "      --spiffe-id spiffe://example.org/ns/shop/sa/payments\n"
          "See wardd(1); the API and the data directory: docs/identity-api.md.\n",
          out);
}

static int set_str(char **dst, const char *v)
{
    char *s = strdup(v);
    if (s == NULL)
        return WARD_ENOMEM;
    free(*dst);
    *dst = s;
    return 0;
}

static int duration_s(const char *what, const char *v, size_t len, uint64_t *out, ward_err *err)
{
    uint64_t ns;
    if (ward_parse_duration(v, len, DURATION_MAX_NS, &ns) < 0 || ns < 1000000000ull ||
        ns % 1000000000ull != 0) {
        ward_err_set(err, "%s: invalid duration \"%.*s\" (whole seconds with units: 90s, 5m, 1h)",
                     what, (int)(len > 64 ? 64 : len), v);
        return WARD_EINVAL;
    }
    *out = ns / 1000000000ull;
    return 0;
}

static int duration_ms(const char *what, const char *v, size_t len, uint64_t *out, ward_err *err)
{
    uint64_t ns;
    if (ward_parse_duration(v, len, (uint64_t)3600 * 1000000000ull, &ns) < 0 || ns < 1000000ull) {
        ward_err_set(err, "%s: invalid duration \"%.*s\" (1ms .. 1h, with units)", what,
                     (int)(len > 64 ? 64 : len), v);
        return WARD_EINVAL;
    }
    *out = ns / 1000000ull;
    return 0;
}

static int number(const char *what, const char *v, size_t len, uint64_t max, uint64_t *out,
                  ward_err *err)
{
    if (ward_parse_u64(v, len, max, out) < 0 || *out == 0) {
        ward_err_set(err, "%s: expected a number 1..%llu", what, (unsigned long long)max);
        return WARD_EINVAL;
    }
    return 0;
}

static int size(const char *what, const char *v, size_t len, uint64_t *out, ward_err *err)
{
    if (proxy_size_parse(v, len, (uint64_t)64 << 30, out) < 0 || *out < ((uint64_t)1 << 20)) {
        ward_err_set(err, "%s: invalid size \"%.*s\" (1MiB .. 64GiB, with a unit: 64MiB)", what,
                     (int)(len > 64 ? 64 : len), v);
        return WARD_EINVAL;
    }
    return 0;
}

/* An audit.* key (audit.sink.tls.ca_file: nested maps of the file, dotted). */
static int apply_audit(wardd_config *c, const char *key, const char *v, size_t len, ward_err *err)
{
    if (strcmp(key, "audit.dir") == 0)
        return set_str(&c->audit.dir, v);
    if (strcmp(key, "audit.key_file") == 0)
        return set_str(&c->audit.key_file, v);
    if (strcmp(key, "audit.overflow") == 0) {
        audit_overflow o;
        /* drop has no meaning here: identity events are never dropped */
        if (audit_overflow_parse(v, len, &o) < 0 || o == AUDIT_OVERFLOW_DROP) {
            ward_err_set(err, "%s: expected deny or block", key);
            return WARD_EINVAL;
        }
        c->audit.overflow = o;
        return 0;
    }
    if (strcmp(key, "audit.segment_size") == 0)
        return size(key, v, len, &c->audit.segment_bytes, err);
    if (strcmp(key, "audit.segment_age") == 0) {
        uint64_t s;
        int rc = duration_s(key, v, len, &s, err);
        if (rc == 0)
            c->audit.segment_age_ms = s * 1000;
        return rc;
    }
    if (strcmp(key, "audit.checkpoint_records") == 0)
        return number(key, v, len, 1000000000, &c->audit.checkpoint_records, err);
    if (strcmp(key, "audit.fsync_interval") == 0)
        return duration_ms(key, v, len, &c->audit.fsync_ms, err);
    if (strcmp(key, "audit.sink.address") == 0) {
        char host[256];
        uint16_t port;
        int rc = audit_sink_address_parse(v, host, sizeof(host), &port, err);
        return rc < 0 ? rc : set_str(&c->audit.sink.address, v);
    }
    if (strcmp(key, "audit.sink.facility") == 0) {
        if (audit_syslog_facility_parse(v, len, &c->audit.sink.facility) < 0) {
            ward_err_set(err, "%s: expected a facility name (local0, auth, ...) or 0..23", key);
            return WARD_EINVAL;
        }
        return 0;
    }
    if (strcmp(key, "audit.sink.app_name") == 0)
        return set_str(&c->audit.sink.app_name, v);
    if (strncmp(key, "audit.sink.tls.", 15) == 0) {
        const char *k = key + 15;
        char **dst = strcmp(k, "ca_file") == 0       ? &c->audit.sink.ca_file
                     : strcmp(k, "cert_file") == 0   ? &c->audit.sink.cert_file
                     : strcmp(k, "key_file") == 0    ? &c->audit.sink.key_file
                     : strcmp(k, "server_name") == 0 ? &c->audit.sink.server_name
                                                     : NULL;
        if (dst != NULL) {
            c->audit.sink.tls = true;
            return set_str(dst, v);
        }
    }
    ward_err_set(err, "unknown key \"%s\"", key);
    return WARD_ENOENT;
}

/* One setting, from a flag or a config key (both spelled with '_' here). */
static int apply(wardd_config *c, const char *key, const char *v, size_t len, ward_err *err)
{
    if (memchr(v, '\0', len) != NULL) {
        ward_err_set(err, "%s: NUL byte in value", key);
        return WARD_EINVAL;
    }
    if (strcmp(key, "trust_domain") == 0)
        return set_str(&c->trust_domain, v);
    if (strcmp(key, "data_dir") == 0)
        return set_str(&c->data_dir, v);
    if (strcmp(key, "listen") == 0)
        return set_str(&c->listen, v);
    if (strcmp(key, "admin_socket") == 0)
        return set_str(&c->admin_socket, v);
    if (strcmp(key, "upstream_cert") == 0)
        return set_str(&c->upstream_cert, v);
    if (strcmp(key, "upstream_key") == 0)
        return set_str(&c->upstream_key, v);
    if (strcmp(key, "ca_ttl") == 0)
        return duration_s(key, v, len, &c->ca_ttl_s, err);
    if (strcmp(key, "svid_ttl") == 0)
        return duration_s(key, v, len, &c->svid_ttl_s, err);
    if (strcmp(key, "svid_ttl_max") == 0)
        return duration_s(key, v, len, &c->svid_ttl_max_s, err);
    if (strcmp(key, "jwt_ttl") == 0)
        return duration_s(key, v, len, &c->jwt_ttl_s, err);
    if (strcmp(key, "header_timeout") == 0)
        return duration_ms(key, v, len, &c->header_timeout_ms, err);
    if (strcmp(key, "body_timeout") == 0)
        return duration_ms(key, v, len, &c->body_timeout_ms, err);
    if (strcmp(key, "idle_timeout") == 0)
        return duration_ms(key, v, len, &c->idle_timeout_ms, err);
    if (strcmp(key, "max_connections") == 0)
        return number(key, v, len, 1000000, &c->max_connections, err);
    if (strcmp(key, "attest_failures") == 0)
        return number(key, v, len, 1000000, &c->attest_failures, err);
    if (strncmp(key, "audit.", 6) == 0)
        return apply_audit(c, key, v, len, err);
    ward_err_set(err, "unknown key \"%s\"", key);
    return WARD_ENOENT;
}

/* The settings of a mapping; the maps under "audit" nest (audit.sink.tls.ca_file). */
static int load_map(wardd_config *c, const char *path, const ward_node *m, const char *prefix,
                    int depth, ward_err *err)
{
    for (size_t i = 0; i < m->n; i++) {
        const ward_node *k = m->pairs[i].key, *v = m->pairs[i].value;
        char key[128];
        if ((size_t)snprintf(key, sizeof(key), "%s%s", prefix, k->str) >= sizeof(key)) {
            ward_err_set(err, "%s:%d:%d: key too long", path, k->line, k->col);
            return WARD_EINVAL;
        }
        if (v->kind == WARD_NODE_MAP && depth < 3 &&
            (strcmp(key, "audit") == 0 || strncmp(key, "audit.", 6) == 0)) {
            char sub[130];
            snprintf(sub, sizeof(sub), "%s.", key);
            int r = load_map(c, path, v, sub, depth + 1, err);
            if (r < 0)
                return r;
            continue;
        }
        if (v->kind != WARD_NODE_SCALAR) {
            ward_err_set(err, "%s:%d:%d: %s: expected a scalar", path, v->line, v->col, key);
            return WARD_EINVAL;
        }
        ward_err e;
        int r = apply(c, key, v->str, v->len, &e);
        if (r < 0) {
            const ward_node *at = r == WARD_ENOENT ? k : v;
            ward_err_set(err, "%s:%d:%d: %.900s", path, at->line, at->col, e.msg);
            return WARD_EINVAL;
        }
    }
    return 0;
}

static int load_file(wardd_config *c, const char *path, ward_err *err)
{
    int rc = 0;
    char *text = NULL;
    size_t len = 0;
    ward_docs docs = {0};
    ward_diag diag;
    ward_diag_init(&diag);
    WARD_TRY(ward_file_read(path, (size_t)1 << 20, &text, &len, err));
    if (ward_docs_parse(path, text, len, &docs, &diag) < 0) {
        ward_err_set(err, "%s", diag.n ? diag.msgs[0] : "invalid YAML");
        rc = WARD_EINVAL;
        goto fail;
    }
    if (docs.n != 1 || docs.docs[0]->kind != WARD_NODE_MAP) {
        ward_err_set(err, "%s: expected one mapping of settings", path);
        rc = WARD_EINVAL;
        goto fail;
    }
    rc = load_map(c, path, docs.docs[0], "", 0, err);
fail:
    ward_docs_dispose(&docs);
    ward_diag_dispose(&diag);
    free(text);
    return rc;
}

static const struct {
    const char *flag;
    const char *key;
} flags[] = {
    {"--trust-domain", "trust_domain"},
    {"--data-dir", "data_dir"},
    {"--listen", "listen"},
    {"--admin-socket", "admin_socket"},
    {"--ca-ttl", "ca_ttl"},
    {"--svid-ttl", "svid_ttl"},
    {"--upstream-cert", "upstream_cert"},
    {"--upstream-key", "upstream_key"},
    {"--audit-dir", "audit.dir"},
};

int wardd_config_parse(int argc, char **argv, wardd_config *cfg, ward_err *err)
{
    int rc = 0;
    memset(cfg, 0, sizeof(*cfg));
    cfg->audit.sink.facility = -1; /* local0 unless set */
    const char *config_file = NULL;
    /* the file first, so that flags override it */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                ward_err_set(err, "--config needs a value");
                return WARD_EINVAL;
            }
            config_file = argv[++i];
        }
    }
    if (config_file != NULL)
        WARD_TRY(load_file(cfg, config_file, err));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        const char *key = NULL;
        for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++) {
            size_t n = strlen(flags[f].flag);
            if (strncmp(a, flags[f].flag, n) == 0 && (a[n] == '\0' || a[n] == '='))
                key = flags[f].key;
        }
        if (key == NULL) {
            ward_err_set(err, "unknown option '%.200s'", a);
            rc = WARD_EINVAL;
            goto fail;
        }
        const char *v = strchr(a, '=');
        if (v != NULL) {
            v++;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            ward_err_set(err, "%.200s needs a value", a);
            rc = WARD_EINVAL;
            goto fail;
        }
        ward_err e;
        if (apply(cfg, key, v, strlen(v), &e) < 0) {
            ward_err_set(err, "%.900s", e.msg);
            rc = WARD_EINVAL;
            goto fail;
        }
    }
    if (cfg->trust_domain == NULL || cfg->data_dir == NULL) {
        ward_err_set(err, "--trust-domain and --data-dir are required");
        rc = WARD_EINVAL;
        goto fail;
    }
    if (!ward_spiffe_td_valid(cfg->trust_domain, strlen(cfg->trust_domain))) {
        ward_err_set(err, "invalid trust domain \"%.255s\" (lowercase [a-z0-9._-], 1..255 bytes)",
                     cfg->trust_domain);
        rc = WARD_EINVAL;
        goto fail;
    }
    if ((cfg->upstream_cert == NULL) != (cfg->upstream_key == NULL)) {
        ward_err_set(err, "--upstream-cert and --upstream-key go together");
        rc = WARD_EINVAL;
        goto fail;
    }
    if (cfg->listen == NULL)
        WARD_TRY(set_str(&cfg->listen, "127.0.0.1:8443"));
    struct sockaddr_storage ss;
    ward_err e;
    if (proxy_addr_parse(cfg->listen, &ss, &e) < 0) {
        ward_err_set(err, "--listen: %.900s", e.msg);
        rc = WARD_EINVAL;
        goto fail;
    }
    if (cfg->admin_socket == NULL) {
        size_t n = strlen(cfg->data_dir) + sizeof("/admin.sock");
        cfg->admin_socket = malloc(n);
        if (cfg->admin_socket == NULL) {
            rc = WARD_ENOMEM;
            goto fail;
        }
        snprintf(cfg->admin_socket, n, "%s/admin.sock", cfg->data_dir);
    }
    if (strlen(cfg->admin_socket) >= 100) {
        ward_err_set(err, "admin socket path too long (at most 99 bytes): %.200s",
                     cfg->admin_socket);
        rc = WARD_EINVAL;
        goto fail;
    }
    if (cfg->attest_failures == 0)
        cfg->attest_failures = 10;
    if (cfg->audit.dir == NULL) {
        size_t n = strlen(cfg->data_dir) + sizeof("/audit");
        cfg->audit.dir = malloc(n);
        if (cfg->audit.dir == NULL) {
            rc = WARD_ENOMEM;
            goto fail;
        }
        snprintf(cfg->audit.dir, n, "%s/audit", cfg->data_dir);
    }
    if (cfg->audit.sink.tls && cfg->audit.sink.ca_file == NULL) {
        ward_err_set(err, "audit.sink.tls needs ca_file (the CAs of the collector's certificate)");
        rc = WARD_EINVAL;
        goto fail;
    }
    if ((cfg->audit.sink.cert_file == NULL) != (cfg->audit.sink.key_file == NULL)) {
        ward_err_set(err, "audit.sink.tls: a client certificate needs both cert_file and key_file");
        rc = WARD_EINVAL;
        goto fail;
    }
    if ((cfg->audit.sink.tls || cfg->audit.sink.facility >= 0 ||
         cfg->audit.sink.app_name != NULL) && cfg->audit.sink.address == NULL) {
        ward_err_set(err, "audit.sink needs an address (HOST:PORT of the syslog collector)");
        rc = WARD_EINVAL;
        goto fail;
    }
    return 0;
fail:
    wardd_config_dispose(cfg);
    return rc;
}

void wardd_config_dispose(wardd_config *cfg)
{
    free(cfg->trust_domain);
    free(cfg->data_dir);
    free(cfg->listen);
    free(cfg->admin_socket);
    free(cfg->upstream_cert);
    free(cfg->upstream_key);
    free(cfg->audit.dir);
    free(cfg->audit.key_file);
    free(cfg->audit.sink.address);
    free(cfg->audit.sink.ca_file);
    free(cfg->audit.sink.cert_file);
    free(cfg->audit.sink.key_file);
    free(cfg->audit.sink.server_name);
    free(cfg->audit.sink.app_name);
    memset(cfg, 0, sizeof(*cfg));
}
