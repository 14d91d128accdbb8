/* test_config.c - unit tests of ward-proxy's configuration: keys, types, defaults, errors */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/ward.h"
#include "proxy/proxy.h"

/* The tests run inside a temporary folder holding the files configs name. */
static char tmpdir[] = "/tmp/ward-proxy-config-XXXXXX";
static char example[4096];
static size_t example_len;

/* Lines 1..8 of most configs below; what a test adds starts at line 9. */
#define BASE                                                                                       \
    "service: payments\n"                                                                          \
    "identity:\n"                                                                                  \
    "  server: https://127.0.0.1:8443\n"                                                           \
    "  token_file: payments.token\n"                                                               \
    "  bundle_file: bundle.pem\n"                                                                  \
    "inbound: {listen: 0.0.0.0:15006, app: 127.0.0.1:8080}\n"                                      \
    "audit: {dir: audit}\n"                                                                        \
    "policy: {paths: [policies]}\n"

/* BASE with its audit map open at line 8, for keys of audit from line 9. */
#define BASE_AUDIT                                                                                 \
    "service: payments\n"                                                                          \
    "identity:\n"                                                                                  \
    "  server: https://127.0.0.1:8443\n"                                                           \
    "  token_file: payments.token\n"                                                               \
    "  bundle_file: bundle.pem\n"                                                                  \
    "inbound: {listen: 0.0.0.0:15006, app: 127.0.0.1:8080}\n"                                      \
    "audit:\n"                                                                                     \
    "  dir: audit\n"

/* A static identity in place of lines 2..5 (4 lines as well). */
#define STATIC_ID                                                                                  \
    "identity:\n"                                                                                  \
    "  cert_file: svid.pem\n"                                                                      \
    "  key_file: svid.key\n"                                                                       \
    "  bundle_file: bundle.pem\n"
#define REST                                                                                       \
    "inbound: {listen: 0.0.0.0:15006, app: 127.0.0.1:8080}\n"                                      \
    "audit: {dir: audit}\n"

typedef struct loaded {
    proxy_config *cfg;
    ward_diag d;
    int rc;
} loaded;

static void load_n(loaded *l, const char *text, size_t len)
{
    ward_diag_init(&l->d);
    l->rc = proxy_config_load_buffer("proxy.yaml", text, len, &l->cfg, &l->d);
}

static void load(loaded *l, const char *text)
{
    load_n(l, text, strlen(text));
}

static void unload(loaded *l)
{
    proxy_config_free(l->cfg);
    ward_diag_dispose(&l->d);
}

static void dump_diag(const ward_diag *d)
{
    for (size_t i = 0; i < d->n; i++)
        fprintf(stderr, "  %s\n", d->msgs[i]);
}

static void assert_diag(const ward_diag *d, const char *msg)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->msgs[i], msg) == 0)
            return;
    fprintf(stderr, "expected diagnostic: %s\ngot %zu:\n", msg, d->n);
    dump_diag(d);
    fail();
}

/* text must load without any diagnostic. */
static proxy_config *ok(loaded *l, const char *text)
{
    load(l, text);
    if (l->rc != 0 || l->d.n != 0) {
        fprintf(stderr, "unexpected rc %d:\n", l->rc);
        dump_diag(&l->d);
    }
    assert_int_equal(l->rc, 0);
    assert_int_equal(l->d.n, 0);
    assert_non_null(l->cfg);
    return l->cfg;
}

/* text must be refused with exactly this one diagnostic. */
static void check_error(const char *text, const char *msg)
{
    loaded l;
    load(&l, text);
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_null(l.cfg);
    assert_diag(&l.d, msg);
    if (l.d.n != 1) {
        fprintf(stderr, "expected one diagnostic, got %zu:\n", l.d.n);
        dump_diag(&l.d);
    }
    assert_int_equal(l.d.n, 1);
    unload(&l);
}

static void write_file(const char *name, const char *text, mode_t mode)
{
    FILE *f = fopen(name, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(name, mode), 0);
}

static int setup(void **state)
{
    char cwd[1024];
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        return -1;
    char path[1200];
    snprintf(path, sizeof(path), "%s/examples/proxy/payments.yaml", cwd);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "run from the repository root: %s missing\n", path);
        return -1;
    }
    example_len = fread(example, 1, sizeof(example) - 1, f);
    fclose(f);
    example[example_len] = '\0';
    if (mkdtemp(tmpdir) == NULL || chdir(tmpdir) != 0)
        return -1;
    write_file("payments.token", "token\n", 0600);
    write_file("bundle.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
    write_file("svid.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
    write_file("svid.key", "-----BEGIN PRIVATE KEY-----\n", 0600);
    write_file("open.key", "-----BEGIN PRIVATE KEY-----\n", 0640);
    write_file("open.token", "token\n", 0604);
    if (mkdir("policies", 0700) != 0 || mkdir("audit", 0700) != 0 || mkdir("sub", 0700) != 0)
        return -1;
    write_file("sub/proxy.yaml", BASE, 0644);
    write_file("sub/payments.token", "token\n", 0600);
    write_file("sub/bundle.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
    if (mkdir("sub/policies", 0700) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    const char *files[] = {"payments.token", "bundle.pem",         "svid.pem",
                           "svid.key",       "open.key",           "open.token",
                           "sub/proxy.yaml", "sub/payments.token", "sub/bundle.pem"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(files[i]);
    rmdir("policies");
    rmdir("audit");
    rmdir("sub/policies");
    rmdir("sub");
    if (chdir("/") != 0)
        return -1;
    rmdir(tmpdir);
    return 0;
}

/* ---- valid configs and defaults ------------------------------------------------- */

static void test_minimal_config_gets_secure_defaults(void **state)
{
    loaded l;
    proxy_config *c = ok(&l, BASE);
    assert_string_equal(c->service, "payments");
    assert_int_equal(c->identity.mode, PROXY_IDENTITY_WARDD);
    assert_string_equal(c->identity.server, "https://127.0.0.1:8443");
    assert_string_equal(c->identity.token_file, "payments.token");
    assert_string_equal(c->identity.bundle_file, "bundle.pem");
    assert_null(c->identity.key_file);
    assert_string_equal(c->inbound.listen, "0.0.0.0:15006");
    assert_string_equal(c->inbound.app, "127.0.0.1:8080");
    assert_int_equal(c->inbound.app_addr.ss_family, AF_INET);
    assert_null(c->outbound.listen);
    assert_int_equal(c->n_upstreams, 0);
    assert_int_equal(c->policy.n_paths, 1);
    assert_string_equal(c->policy.paths[0], "policies");
    assert_false(c->policy.default_allow);
    assert_string_equal(c->audit.dir, "audit");
    assert_string_equal(c->admin.listen, "127.0.0.1:15000");
    assert_true(c->workers_auto);
    assert_int_equal(c->workers, (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
    assert_int_equal(c->inbound.timeouts.header_read_ms, 10000);
    assert_int_equal(c->inbound.timeouts.idle_ms, 60000);
    assert_int_equal(c->inbound.timeouts.upstream_connect_ms, 5000);
    assert_int_equal(c->inbound.timeouts.request_ms, 30000);
    assert_memory_equal(&c->outbound.timeouts, &c->inbound.timeouts, sizeof(c->inbound.timeouts));
    assert_int_equal(c->drain_ms, 30000);
    assert_int_equal(c->limits.max_header_bytes, 60 * 1024);
    assert_int_equal(c->limits.max_headers, 100);
    assert_true(c->limits.max_body == PROXY_CONFIG_UNLIMITED);
    assert_int_equal(c->limits.max_connections, 16384);
    assert_false(c->tls.allow_tls12);
    unload(&l);
}

static void test_static_identity_is_accepted(void **state)
{
    loaded l;
    proxy_config *c = ok(&l, "service: payments\n" STATIC_ID REST);
    assert_int_equal(c->identity.mode, PROXY_IDENTITY_STATIC);
    assert_string_equal(c->identity.cert_file, "svid.pem");
    assert_string_equal(c->identity.key_file, "svid.key");
    assert_string_equal(c->identity.bundle_file, "bundle.pem");
    assert_null(c->identity.server);
    assert_null(c->identity.token_file);
    assert_int_equal(c->policy.n_paths, 0);
    unload(&l);
}

static void test_upstreams_are_parsed(void **state)
{
    loaded l;
    proxy_config *c = ok(&l, BASE "outbound: {listen: '[::1]:15001'}\n"
                                  "upstreams:\n"
                                  "  - service: inventory\n"
                                  "    endpoints: [127.0.0.1:16006, '[::1]:16007']\n"
                                  "    spiffe_id: spiffe://example.org/ns/shop/sa/inventory\n");
    assert_string_equal(c->outbound.listen, "[::1]:15001");
    assert_int_equal(c->n_upstreams, 1);
    assert_string_equal(c->upstreams[0].service, "inventory");
    assert_int_equal(c->upstreams[0].n_endpoints, 2);
    assert_string_equal(c->upstreams[0].endpoints[1], "[::1]:16007");
    assert_int_equal(c->upstreams[0].addrs[1].ss_family, AF_INET6);
    assert_string_equal(c->upstreams[0].spiffe_id, "spiffe://example.org/ns/shop/sa/inventory");
    assert_int_equal(c->upstreams[0].line, 11);
    unload(&l);
}

static void test_listener_timeouts_override_the_top_level_ones(void **state)
{
    loaded l;
    proxy_config *c = ok(&l, "service: payments\n" STATIC_ID
                             "inbound: {listen: 0.0.0.0:15006, app: 127.0.0.1:8080,\n"
                             "          timeouts: {request: 2s}}\n"
                             "outbound: {listen: 127.0.0.1:15001, timeouts: {idle: 500ms}}\n"
                             "audit: {dir: audit}\n"
                             "timeouts: {idle: 90s, upstream_connect: 1s, drain: 1m}\n");
    assert_int_equal(c->inbound.timeouts.request_ms, 2000);
    assert_int_equal(c->inbound.timeouts.idle_ms, 90000);
    assert_int_equal(c->inbound.timeouts.upstream_connect_ms, 1000);
    assert_int_equal(c->inbound.timeouts.header_read_ms, 10000);
    assert_int_equal(c->outbound.timeouts.idle_ms, 500);
    assert_int_equal(c->outbound.timeouts.request_ms, 30000);
    assert_int_equal(c->drain_ms, 60000);
    unload(&l);
}

static void test_limits_workers_tls_and_default_are_set(void **state)
{
    loaded l;
    proxy_config *c = ok(&l, "service: payments\n" STATIC_ID REST
                             "limits: {max_header_bytes: 1MiB, max_headers: 50, "
                             "max_body: 10MiB, max_connections: 100}\n"
                             "workers: 4\n"
                             "tls: {min_version: 1.2}\n"
                             "policy: {default: allow}\n");
    assert_int_equal(c->limits.max_header_bytes, 1 << 20);
    assert_int_equal(c->limits.max_headers, 50);
    assert_int_equal(c->limits.max_body, 10 << 20);
    assert_int_equal(c->limits.max_connections, 100);
    assert_int_equal(c->workers, 4);
    assert_false(c->workers_auto);
    assert_true(c->tls.allow_tls12);
    assert_true(c->policy.default_allow);
    unload(&l);
}

static void test_relative_files_resolve_against_the_config_folder(void **state)
{
    proxy_config *c = NULL;
    ward_diag d;
    ward_diag_init(&d);
    int rc = proxy_config_load("sub/proxy.yaml", &c, &d);
    dump_diag(&d);
    assert_int_equal(rc, 0);
    assert_string_equal(c->identity.token_file, "sub/payments.token");
    assert_string_equal(c->policy.paths[0], "sub/policies");
    assert_string_equal(c->audit.dir, "sub/audit"); /* absent: created at start */
    proxy_config_free(c);
    ward_diag_dispose(&d);
}

static void test_missing_config_file_is_an_io_error(void **state)
{
    proxy_config *c = NULL;
    ward_diag d;
    ward_diag_init(&d);
    assert_int_equal(proxy_config_load("nope.yaml", &c, &d), WARD_EIO);
    assert_null(c);
    assert_int_equal(d.n, 1);
    assert_non_null(strstr(d.msgs[0], "nope.yaml"));
    ward_diag_dispose(&d);
}

/* The commented example of examples/proxy, with its /etc and /var files
 * pointed at the test folder. */
static void test_example_payments_config_loads(void **state)
{
    char text[4096];
    size_t o = 0;
    for (size_t i = 0; i < example_len;) {
        if (strncmp(example + i, "/etc/ward/", 10) == 0) {
            i += 10;
        } else if (strncmp(example + i, "/var/lib/ward/", 14) == 0) {
            i += 14;
        } else {
            assert_true(o + 1 < sizeof(text));
            text[o++] = example[i++];
        }
    }
    text[o] = '\0';
    loaded l;
    proxy_config *c = ok(&l, text);
    assert_string_equal(c->service, "payments");
    assert_int_equal(c->identity.mode, PROXY_IDENTITY_WARDD);
    assert_int_equal(c->n_upstreams, 2);
    assert_string_equal(c->upstreams[1].service, "ledger");
    assert_int_equal(c->upstreams[1].n_endpoints, 2);
    assert_int_equal(c->inbound.timeouts.request_ms, 10000);
    assert_int_equal(c->outbound.timeouts.request_ms, 30000);
    assert_string_equal(c->outbound.listen, "127.0.0.1:15001");
    assert_false(c->policy.default_allow);
    assert_false(c->tls.allow_tls12);
    unload(&l);
}

/* ---- keys and types ------------------------------------------------------------- */

static void test_unknown_top_level_key_suggests_the_near_miss(void **state)
{
    check_error(BASE "worker: 2\n",
                "proxy.yaml:9:1: worker: unknown key (did you mean \"workers\"?); allowed: "
                "service, identity, inbound, outbound, upstreams, policy, audit, admin, workers, "
                "timeouts, limits, tls, tcp");
}

static void test_unknown_nested_key_names_its_path(void **state)
{
    check_error(BASE "outbound: {lisen: 127.0.0.1:15001, listen: 127.0.0.1:15002}\n",
                "proxy.yaml:9:12: outbound.lisen: unknown key (did you mean \"listen\"?); "
                "allowed: listen, timeouts");
}

static void test_unknown_key_without_near_miss_lists_the_allowed_ones(void **state)
{
    check_error(BASE "limits: {bandwidth: 1MiB}\n",
                "proxy.yaml:9:10: limits.bandwidth: unknown key; allowed: max_header_bytes, "
                "max_headers, max_body, max_connections");
}

static void test_wrong_type_is_an_error(void **state)
{
    check_error(BASE "upstreams: {service: inventory}\n",
                "proxy.yaml:9:12: upstreams: expected a list, got a map");
}

static void test_list_given_a_scalar_suggests_brackets(void **state)
{
    check_error("service: payments\n" STATIC_ID REST "policy: {paths: policies}\n",
                "proxy.yaml:8:17: policy.paths: expected a list, got a string (write [value] "
                "for a single value)");
}

static void test_document_must_be_a_map(void **state)
{
    check_error("- service: payments\n", "proxy.yaml:1:1: document: expected a map of settings, "
                                         "got a list");
}

static void test_empty_document_is_an_error(void **state)
{
    check_error("", "proxy.yaml: document: empty configuration");
}

static void test_yaml_syntax_error_names_its_position(void **state)
{
    loaded l;
    load(&l, "service: payments\ninbound: {listen: 0.0.0.0:1\n");
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_null(l.cfg);
    assert_int_equal(l.d.n, 1);
    assert_true(strncmp(l.d.msgs[0], "proxy.yaml:3:1: ", 16) == 0);
    unload(&l);
}

static void test_missing_required_keys_are_all_reported(void **state)
{
    loaded l;
    load(&l, "workers: 2\n");
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_null(l.cfg);
    assert_int_equal(l.d.n, 4);
    assert_diag(&l.d, "proxy.yaml:1:1: service: required key is missing (this workload's service "
                      "name)");
    assert_diag(&l.d, "proxy.yaml:1:1: identity: required key is missing (wardd server + "
                      "token_file, or cert_file + key_file)");
    assert_diag(&l.d, "proxy.yaml:1:1: inbound: required key is missing (listen and app)");
    assert_diag(&l.d, "proxy.yaml:1:1: audit: required key is missing (every decision is "
                      "recorded: give audit.dir)");
    unload(&l);
}

static void test_missing_inbound_app_is_an_error(void **state)
{
    check_error("service: payments\n" STATIC_ID "inbound: {listen: 0.0.0.0:15006}\n"
                "audit: {dir: audit}\n",
                "proxy.yaml:6:10: inbound.app: required key is missing (ADDR:PORT of the local "
                "workload)");
}

static void test_all_errors_are_reported_in_document_order(void **state)
{
    loaded l;
    load(&l, BASE "workers: 0\nadmin: {listen: 10.0.0.1:15000}\ntls: {min_version: 1.1}\n");
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_int_equal(l.d.n, 3);
    assert_true(strncmp(l.d.msgs[0], "proxy.yaml:9:", 13) == 0);
    assert_true(strncmp(l.d.msgs[1], "proxy.yaml:10:", 14) == 0);
    assert_true(strncmp(l.d.msgs[2], "proxy.yaml:11:", 14) == 0);
    unload(&l);
}

/* ---- service ------------------------------------------------------------------------ */

static void test_service_must_be_a_dns_label(void **state)
{
    check_error("service: Pay_ments\n" STATIC_ID REST,
                "proxy.yaml:1:10: service: invalid service name \"Pay_ments\" (a DNS label: "
                "1..63 of [a-z0-9-], starting and ending with a letter or digit)");
}

static void test_service_must_not_be_empty(void **state)
{
    check_error("service: ''\n" STATIC_ID REST, "proxy.yaml:1:10: service: must not be empty");
}

/* ---- identity ---------------------------------------------------------------------- */

static void test_both_identity_forms_are_refused(void **state)
{
    check_error("service: payments\n"
                "identity:\n"
                "  server: https://127.0.0.1:8443\n"
                "  token_file: payments.token\n"
                "  cert_file: svid.pem\n"
                "  key_file: svid.key\n"
                "  bundle_file: bundle.pem\n" REST,
                "proxy.yaml:5:14: identity: give either server + token_file + bundle_file "
                "(attest to wardd) or cert_file + key_file + bundle_file (static files), not "
                "both");
}

static void test_no_identity_form_is_refused(void **state)
{
    check_error("service: payments\nidentity: {bundle_file: bundle.pem}\n" REST,
                "proxy.yaml:2:11: identity: no identity source: give server + token_file + "
                "bundle_file (attest to wardd) or cert_file + key_file + bundle_file (static "
                "files)");
}

static void test_static_identity_needs_its_key(void **state)
{
    check_error(
        "service: payments\nidentity: {cert_file: svid.pem, bundle_file: bundle.pem}\n" REST,
        "proxy.yaml:2:11: identity.key_file: required key is missing (with cert_file "
        "and bundle_file)");
}

static void test_identity_needs_a_bundle(void **state)
{
    check_error("service: payments\nidentity: {cert_file: svid.pem, key_file: svid.key}\n" REST,
                "proxy.yaml:2:11: identity.bundle_file: required key is missing (the CA "
                "certificates peers are checked against)");
}

static void test_group_readable_key_file_is_refused(void **state)
{
    check_error(
        "service: payments\n"
        "identity: {cert_file: svid.pem, key_file: open.key, bundle_file: bundle.pem}\n" REST,
        "proxy.yaml:2:43: identity.key_file: \"open.key\" is a secret but has mode 0640 "
        "(group or others may access it); run chmod 600 on it");
}

static void test_world_readable_token_file_is_refused(void **state)
{
    check_error("service: payments\n"
                "identity: {server: 'https://wardd.example:8443', token_file: open.token,\n"
                "           bundle_file: bundle.pem}\n" REST,
                "proxy.yaml:2:62: identity.token_file: \"open.token\" is a secret but has mode "
                "0604 (group or others may access it); run chmod 600 on it");
}

static void test_missing_identity_file_is_refused(void **state)
{
    check_error(
        "service: payments\n"
        "identity: {cert_file: nope.pem, key_file: svid.key, bundle_file: bundle.pem}\n" REST,
        "proxy.yaml:2:23: identity.cert_file: \"nope.pem\": No such file or directory");
}

static void test_folder_as_identity_file_is_refused(void **state)
{
    check_error("service: payments\n"
                "identity: {cert_file: svid.pem, key_file: svid.key, bundle_file: policies}\n" REST,
                "proxy.yaml:2:66: identity.bundle_file: \"policies\" is not a regular file");
}

static void test_wardd_server_must_be_https_with_a_port(void **state)
{
    check_error("service: payments\n"
                "identity: {server: 'http://127.0.0.1:8443', token_file: payments.token,\n"
                "           bundle_file: bundle.pem}\n" REST,
                "proxy.yaml:2:20: identity.server: \"http://127.0.0.1:8443\": expected "
                "https://HOST:PORT (wardd is only reached over TLS)");
    check_error("service: payments\n"
                "identity: {server: 'https://wardd/api', token_file: payments.token,\n"
                "           bundle_file: bundle.pem}\n" REST,
                "proxy.yaml:2:20: identity.server: \"https://wardd/api\": expected "
                "https://HOST:PORT (no path, query or user info)");
}

/* ---- listeners and addresses --------------------------------------------------------- */

static void test_admin_on_a_non_loopback_address_is_refused(void **state)
{
    check_error(BASE "admin: {listen: 0.0.0.0:15000}\n",
                "proxy.yaml:9:17: admin.listen: \"0.0.0.0:15000\" is not a loopback address "
                "(127.0.0.0/8 or [::1]): the admin endpoint exposes metrics and configuration "
                "and is never served to the network");
}

static void test_outbound_on_a_non_loopback_address_is_refused(void **state)
{
    check_error(BASE "outbound: {listen: '[::]:15001'}\n",
                "proxy.yaml:9:20: outbound.listen: \"[::]:15001\" is not a loopback address "
                "(127.0.0.0/8 or [::1]): the outbound listener is plaintext and lends this "
                "workload's identity to whoever connects");
}

static void test_bad_address_is_refused(void **state)
{
    check_error("service: payments\n" STATIC_ID
                "inbound: {listen: 'localhost:15006', app: 127.0.0.1:8080}\n"
                "audit: {dir: audit}\n",
                "proxy.yaml:6:19: inbound.listen: \"localhost:15006\": invalid address (numeric "
                "IPv4 or [IPv6] expected)");
}

static void test_app_port_zero_is_refused(void **state)
{
    check_error("service: payments\n" STATIC_ID
                "inbound: {listen: 0.0.0.0:15006, app: 127.0.0.1:0}\n"
                "audit: {dir: audit}\n",
                "proxy.yaml:6:39: inbound.app: \"127.0.0.1:0\": port 0 cannot be connected to");
}

static void test_two_listeners_on_one_port_are_refused(void **state)
{
    check_error(BASE "admin: {listen: 127.0.0.1:15006}\n",
                "proxy.yaml:9:17: admin.listen: \"127.0.0.1:15006\" is also used by "
                "inbound.listen");
}

static void test_outbound_on_the_default_admin_port_is_refused(void **state)
{
    check_error(BASE "outbound: {listen: 127.0.0.1:15000}\n",
                "proxy.yaml:9:20: outbound.listen: \"127.0.0.1:15000\" is also used by "
                "admin.listen (its default)");
}

/* ---- upstreams ---------------------------------------------------------------------- */

#define UPSTREAM(svc, id)                                                                          \
    "  - {service: " svc ", endpoints: [127.0.0.1:16006], spiffe_id: " id "}\n"

static void test_bad_spiffe_id_is_refused(void **state)
{
    loaded l;
    load(&l, BASE "upstreams:\n" UPSTREAM("inventory", "'spiffe://Example.org/sa/x'"));
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_int_equal(l.d.n, 1);
    const char *want = "proxy.yaml:10:67: upstreams[0].spiffe_id: invalid SPIFFE ID "
                       "\"spiffe://Example.org/sa/x\": ";
    if (strncmp(l.d.msgs[0], want, strlen(want)) != 0)
        dump_diag(&l.d);
    assert_true(strncmp(l.d.msgs[0], want, strlen(want)) == 0);
    unload(&l);
}

static void test_spiffe_id_must_name_a_workload(void **state)
{
    check_error(BASE "upstreams:\n" UPSTREAM("inventory", "spiffe://example.org"),
                "proxy.yaml:10:67: upstreams[0].spiffe_id: \"spiffe://example.org\" names a "
                "trust domain, not a workload (add a path)");
}

static void test_upstream_spiffe_id_is_required(void **state)
{
    check_error(BASE "upstreams:\n  - {service: inventory, endpoints: [127.0.0.1:16006]}\n",
                "proxy.yaml:10:5: upstreams[0].spiffe_id: required key is missing (the SPIFFE "
                "ID its endpoints must present)");
}

/* ---- what the audit records hold ----------------------------------------------------- */

static void test_audit_headers_redact_and_fields(void **state)
{
    loaded l;
    proxy_config *c = ok(&l, "service: payments\n" STATIC_ID
                             "inbound: {listen: 0.0.0.0:15006, app: 127.0.0.1:8080}\n"
                             "audit:\n"
                             "  dir: audit\n"
                             "  headers: [X-Request-Id, user-agent, x-api-key]\n"
                             "  redact: [X-API-Key]\n"
                             "  fields: [source.principal, request.path, request.headers, reason]\n");
    assert_int_equal(c->audit.n_headers, 3);
    assert_string_equal(c->audit.headers[0], "x-request-id");
    assert_int_equal(c->audit.n_redact, 1);
    assert_string_equal(c->audit.redact[0], "x-api-key");
    uint32_t kept = PROXY_AUDIT_OMIT_REQUEST_PATH | PROXY_AUDIT_OMIT_REQUEST_HEADERS |
                    PROXY_AUDIT_OMIT_REASON;
    assert_int_equal(c->audit.omit & kept, 0);
    assert_int_equal(c->audit.omit & PROXY_AUDIT_OMIT_SOURCE_IP, PROXY_AUDIT_OMIT_SOURCE_IP);
    assert_int_equal(c->audit.omit & PROXY_AUDIT_OMIT_TRACE_ID, PROXY_AUDIT_OMIT_TRACE_ID);
    unload(&l);
    /* without fields: everything is written */
    c = ok(&l, BASE);
    assert_int_equal(c->audit.omit, 0);
    unload(&l);
}

static void test_audit_fields_unknown_name(void **state)
{
    check_error(BASE_AUDIT "  fields: [source.principal, request.query]\n",
                "proxy.yaml:9:30: audit.fields[1]: \"request.query\" is not a record field; the "
                "optional ones: source.ip, source.port, destination.port, request.host, "
                "request.path, request.headers, reason, trace_id, latency_ns, peer_cert_sha256 (the "
                "others are always written)");
}

static void test_audit_header_name_must_be_a_token(void **state)
{
    check_error(BASE_AUDIT "  headers: [\"x request\"]\n",
                "proxy.yaml:9:13: audit.headers[0]: \"x request\" is not a header field name (a "
                "token of 1..64 characters)");
}

/* ---- TCP listeners ----------------------------------------------------------------- */

static void test_tcp_listeners_load(void **state)
{
    loaded l;
    proxy_config *c = ok(&l, BASE "tcp:\n"
                                  "  - {name: postgres, listen: 0.0.0.0:15432, app: 127.0.0.1:5432,\n"
                                  "     idle_timeout: 30m}\n"
                                  "  - name: orders-db\n"
                                  "    listen: 127.0.0.1:5433\n"
                                  "    service: postgres\n"
                                  "    endpoints: [10.0.2.5:15432, 10.0.2.6:15432]\n"
                                  "    spiffe_id: spiffe://example.org/ns/data/sa/postgres\n"
                                  "    server_name: db.internal\n"
                                  "    connect_timeout: 2s\n");
    assert_int_equal(c->n_tcp, 2);
    assert_string_equal(c->tcp[0].name, "postgres");
    assert_true(c->tcp[0].inbound);
    assert_string_equal(c->tcp[0].app, "127.0.0.1:5432");
    assert_int_equal(c->tcp[0].idle_timeout_ms, 1800000);
    assert_int_equal(c->tcp[0].connect_timeout_ms, 0); /* the default of proxy_tcp */
    assert_false(c->tcp[1].inbound);
    assert_string_equal(c->tcp[1].service, "postgres");
    assert_int_equal(c->tcp[1].n_endpoints, 2);
    assert_string_equal(c->tcp[1].endpoints[1], "10.0.2.6:15432");
    assert_string_equal(c->tcp[1].spiffe_id, "spiffe://example.org/ns/data/sa/postgres");
    assert_string_equal(c->tcp[1].server_name, "db.internal");
    assert_int_equal(c->tcp[1].connect_timeout_ms, 2000);
    unload(&l);
}

static void test_tcp_listener_needs_app_or_endpoints(void **state)
{
    check_error(BASE "tcp:\n  - {name: x, listen: 127.0.0.1:0}\n",
                "proxy.yaml:10:5: tcp[0]: give either app (an inbound listener: mTLS from other "
                "proxies to the local workload) or endpoints (an outbound one: the workload's "
                "connections to a remote service)");
}

static void test_tcp_outbound_listener_is_loopback_only(void **state)
{
    loaded l;
    load(&l, BASE "tcp:\n  - {name: x, listen: 0.0.0.0:5433, service: db, endpoints: "
                  "[10.0.0.1:1], spiffe_id: spiffe://example.org/db}\n");
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_int_equal(l.d.n, 1);
    assert_non_null(strstr(l.d.msgs[0], "tcp[0].listen:"));
    assert_non_null(strstr(l.d.msgs[0], "loopback"));
    unload(&l);
}

static void test_tcp_inbound_listener_refuses_outbound_keys(void **state)
{
    check_error(BASE "tcp:\n  - {name: x, listen: 0.0.0.0:1, app: 127.0.0.1:2, server_name: y}\n",
                "proxy.yaml:10:65: tcp[0].server_name: server_name is for outbound listeners "
                "(with endpoints)");
}

static void test_tcp_server_name_is_a_dns_name(void **state)
{
    check_error(BASE "tcp:\n  - {name: x, listen: 127.0.0.1:1, service: db, endpoints: [10.0.0.1:1],"
                     " spiffe_id: spiffe://example.org/db, server_name: db..internal}\n",
                "proxy.yaml:10:123: tcp[0].server_name: invalid server name \"db..internal\" (a DNS "
                "name: labels of 1..63 of [a-z0-9-] joined by dots, at most 253 bytes)");
}

static void test_tcp_listener_address_must_be_free(void **state)
{
    check_error(BASE "tcp:\n  - {name: x, listen: 0.0.0.0:15006, app: 127.0.0.1:2}\n",
                "proxy.yaml:10:23: tcp[0].listen: \"0.0.0.0:15006\" is also used by "
                "inbound.listen");
}

static void test_duplicate_upstream_service_is_refused(void **state)
{
    check_error(BASE "upstreams:\n" UPSTREAM("inventory", "spiffe://example.org/a")
                    UPSTREAM("inventory", "spiffe://example.org/b"),
                "proxy.yaml:11:15: upstreams[1].service: duplicate upstream service "
                "\"inventory\" (first defined at line 10)");
}

static void test_upstream_needs_endpoints(void **state)
{
    check_error(BASE "upstreams:\n"
                     "  - {service: inventory, endpoints: [], spiffe_id: spiffe://e.org/a}\n",
                "proxy.yaml:10:37: upstreams[0].endpoints: at least one endpoint is needed");
}

/* ---- values with units and bounds --------------------------------------------------- */

static void test_bad_duration_unit_is_refused(void **state)
{
    check_error(BASE "timeouts: {idle: 60sec}\n",
                "proxy.yaml:9:18: timeouts.idle: invalid duration \"60sec\" (a number with a "
                "unit: ms, s, m, h; e.g. 10s, 1m30s)");
}

static void test_duration_without_unit_is_refused(void **state)
{
    check_error(BASE "timeouts: {request: 30}\n",
                "proxy.yaml:9:21: timeouts.request: invalid duration \"30\" (a number with a "
                "unit: ms, s, m, h; e.g. 10s, 1m30s)");
}

static void test_duration_out_of_range_is_refused(void **state)
{
    check_error(BASE "timeouts: {header_read: 2h}\n",
                "proxy.yaml:9:25: timeouts.header_read: duration \"2h\" out of range (1ms .. "
                "1h)");
}

static void test_drain_only_at_the_top_level(void **state)
{
    check_error("service: payments\n" STATIC_ID
                "inbound: {listen: 0.0.0.0:15006, app: 127.0.0.1:8080, timeouts: {drain: 1s}}\n"
                "audit: {dir: audit}\n",
                "proxy.yaml:6:66: inbound.timeouts.drain: unknown key; allowed: header_read, "
                "idle, upstream_connect, request");
}

static void test_size_needs_a_binary_unit(void **state)
{
    check_error(BASE "limits: {max_header_bytes: 60KB}\n",
                "proxy.yaml:9:28: limits.max_header_bytes: invalid size \"60KB\" (a whole number "
                "with a unit: B, KiB, MiB, GiB, TiB; e.g. 60KiB)");
}

static void test_size_out_of_range_is_refused(void **state)
{
    check_error(BASE "limits: {max_header_bytes: 512B}\n",
                "proxy.yaml:9:28: limits.max_header_bytes: size \"512B\" out of range (1KiB .. "
                "1MiB)");
}

static void test_size_parser_is_bounded(void **state)
{
    uint64_t v = 0;
    assert_int_equal(proxy_size_parse("60KiB", 5, UINT64_MAX, &v), 0);
    assert_int_equal(v, 61440);
    assert_int_equal(proxy_size_parse("1MiB", 4, UINT64_MAX, &v), 0);
    assert_int_equal(v, 1048576);
    assert_int_equal(proxy_size_parse("7B", 2, UINT64_MAX, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(proxy_size_parse("2GiB", 4, 1 << 30, &v), WARD_ERANGE);
    assert_int_equal(proxy_size_parse("99999999999999999999TiB", 23, UINT64_MAX, &v), WARD_ERANGE);
    assert_int_equal(proxy_size_parse("100", 3, UINT64_MAX, &v), WARD_EINVAL);
    assert_int_equal(proxy_size_parse("KiB", 3, UINT64_MAX, &v), WARD_EINVAL);
    assert_int_equal(proxy_size_parse("1 KiB", 5, UINT64_MAX, &v), WARD_EINVAL);
    assert_int_equal(proxy_size_parse("1kib", 4, UINT64_MAX, &v), WARD_EINVAL);
    assert_int_equal(proxy_size_parse("-1B", 3, UINT64_MAX, &v), WARD_EINVAL);
}

static void test_max_headers_out_of_range_is_refused(void **state)
{
    check_error(BASE "limits: {max_headers: 0}\n",
                "proxy.yaml:9:23: limits.max_headers: invalid number \"0\" (a whole number "
                "1..1000)");
}

static void test_workers_out_of_range_is_refused(void **state)
{
    check_error(BASE "workers: 257\n",
                "proxy.yaml:9:10: workers: invalid worker count \"257\" (1..256, or auto for one "
                "per core)");
    check_error(BASE "workers: 0\n",
                "proxy.yaml:9:10: workers: invalid worker count \"0\" (1..256, or auto for one "
                "per core)");
    check_error(BASE "workers: many\n",
                "proxy.yaml:9:10: workers: invalid worker count \"many\" (1..256, or auto for one "
                "per core)");
}

static void test_workers_auto_is_one_per_core(void **state)
{
    loaded l;
    proxy_config *c = ok(&l, BASE "workers: auto\n");
    assert_true(c->workers_auto);
    assert_true(c->workers >= 1 && c->workers <= PROXY_CONFIG_WORKERS_MAX);
    unload(&l);
}

static void test_workers_as_a_boolean_is_a_type_error(void **state)
{
    check_error(BASE "workers: yes\n",
                "proxy.yaml:9:10: workers: expected a number or \"auto\", got a boolean");
}

static void test_json_config_is_accepted(void **state)
{
    loaded l;
    proxy_config *c =
        ok(&l, "{\"service\": \"payments\", \"identity\": {\"cert_file\": \"svid.pem\", "
               "\"key_file\": \"svid.key\", \"bundle_file\": \"bundle.pem\"}, \"inbound\": "
               "{\"listen\": \"[::]:15006\", \"app\": \"[::1]:8080\"}, \"audit\": {\"dir\": "
               "\"audit\"}, \"workers\": 2, \"limits\": {\"max_body\": \"unlimited\"}}");
    assert_int_equal(c->workers, 2);
    assert_int_equal(c->inbound.listen_addr.ss_family, AF_INET6);
    assert_true(c->limits.max_body == PROXY_CONFIG_UNLIMITED);
    unload(&l);
}

static void test_policy_default_is_allow_or_deny(void **state)
{
    check_error("service: payments\n" STATIC_ID REST "policy: {default: Deny}\n",
                "proxy.yaml:8:19: policy.default: invalid value \"Deny\" (values are lowercase); "
                "allowed: allow, deny");
}

static void test_missing_policy_path_is_refused(void **state)
{
    check_error("service: payments\n" STATIC_ID REST "policy: {paths: [policies, nope]}\n",
                "proxy.yaml:8:28: policy.paths[1]: \"nope\": No such file or directory");
}

static void test_unsupported_tls_version_is_refused(void **state)
{
    check_error(BASE "tls: {min_version: 1.1}\n",
                "proxy.yaml:9:20: tls.min_version: unsupported TLS version \"1.1\"; allowed: "
                "\"1.3\" (default), \"1.2\"");
}

static void test_audit_dir_must_be_a_folder(void **state)
{
    check_error("service: payments\n" STATIC_ID
                "inbound: {listen: 0.0.0.0:15006, app: 127.0.0.1:8080}\n"
                "audit: {dir: bundle.pem}\n",
                "proxy.yaml:7:14: audit.dir: \"bundle.pem\" exists and is not a folder");
}

static void test_audit_overflow_policy(void **state)
{
    loaded l;
    load(&l, BASE);
    assert_int_equal(l.rc, 0);
    assert_int_equal(l.cfg->audit.overflow, AUDIT_OVERFLOW_DENY); /* fail closed by default */
    unload(&l);
    load(&l, "service: payments\n" STATIC_ID
             "inbound: {listen: 0.0.0.0:15006, app: 127.0.0.1:8080}\n"
             "audit: {dir: audit, overflow: drop}\n");
    assert_int_equal(l.rc, 0);
    assert_int_equal(l.cfg->audit.overflow, AUDIT_OVERFLOW_DROP);
    unload(&l);
    check_error("service: payments\n" STATIC_ID
                "inbound: {listen: 0.0.0.0:15006, app: 127.0.0.1:8080}\n"
                "audit: {dir: audit, overflow: ignore}\n",
                "proxy.yaml:7:31: audit.overflow: \"ignore\" is not an overflow policy: deny (fail "
                "closed), block or drop");
}

static void test_audit_trail_options(void **state)
{
    loaded l;
    load(&l, "service: payments\n" STATIC_ID
             "inbound: {listen: 0.0.0.0:15006, app: 127.0.0.1:8080}\n"
             "audit: {dir: audit, segment_size: 8MiB, segment_age: 10m, checkpoint_records: 500,\n"
             "        fsync_interval: 20ms, queue_records: 5000}\n");
    if (l.rc != 0)
        dump_diag(&l.d);
    assert_int_equal(l.rc, 0);
    assert_int_equal(l.cfg->audit.segment_bytes, 8u << 20);
    assert_int_equal(l.cfg->audit.segment_age_ms, 600000);
    assert_int_equal(l.cfg->audit.checkpoint_records, 500);
    assert_int_equal(l.cfg->audit.fsync_ms, 20);
    assert_int_equal(l.cfg->audit.queue_records, 8192); /* rounded up to a power of two */
    assert_null(l.cfg->audit.key_file);
    unload(&l);
    check_error("service: payments\n" STATIC_ID
                "inbound: {listen: 0.0.0.0:15006, app: 127.0.0.1:8080}\n"
                "audit: {dir: audit, queue_records: 16}\n",
                "proxy.yaml:7:36: audit.queue_records: invalid number \"16\" "
                "(a whole number 64..1048576)");
    check_error("service: payments\n" STATIC_ID
                "inbound: {listen: 0.0.0.0:15006, app: 127.0.0.1:8080}\n"
                "audit: {dir: audit, segment_size: 1KiB}\n",
                "proxy.yaml:7:35: audit.segment_size: size \"1KiB\" out of range (1MiB .. 64GiB)");
}

static void test_state_dir_only_with_wardd(void **state)
{
    loaded l;
    load(&l, "service: payments\n"
             "identity: {server: https://127.0.0.1:8443, token_file: payments.token,\n"
             "           bundle_file: bundle.pem, state_dir: state}\n" REST);
    if (l.rc != 0)
        dump_diag(&l.d);
    assert_int_equal(l.rc, 0);
    assert_string_equal(l.cfg->identity.state_dir, "state");
    unload(&l);
    check_error("service: payments\n"
                "identity: {cert_file: svid.pem, key_file: svid.key, bundle_file: bundle.pem,\n"
                "           state_dir: state}\n" REST,
                "proxy.yaml:3:23: identity.state_dir: state_dir keeps SVIDs from wardd: it goes "
                "with server and token_file");
}

/* ---- upstream traffic keys (balance, circuit breakers, outlier detection, retry budget) -- */

/* Lines 10..12: one upstream in block style; its traffic keys start at line 13. */
#define UP_HEAD                                                                                    \
    "upstreams:\n"                                                                                 \
    "  - service: inventory\n"                                                                     \
    "    endpoints: [127.0.0.1:16006, 127.0.0.1:16007]\n"                                          \
    "    spiffe_id: spiffe://example.org/sa/inventory\n"

static void test_upstream_traffic_defaults(void **state)
{
    loaded l;
    proxy_config *c = ok(&l, BASE UP_HEAD);
    const proxy_config_upstream *u = &c->upstreams[0];
    assert_int_equal(u->balance, PROXY_BALANCE_LEAST_REQUEST);
    assert_int_equal(u->hash_on, PROXY_HASH_SOURCE_PRINCIPAL);
    assert_null(u->hash_header);
    assert_int_equal(u->circuit_breakers.max_connections, 1024);
    assert_int_equal(u->circuit_breakers.max_pending, 1024);
    assert_int_equal(u->circuit_breakers.max_requests, 1024);
    assert_int_equal(u->circuit_breakers.max_retries, 1024);
    assert_int_equal(u->outlier.consecutive_5xx, 5);
    assert_int_equal(u->outlier.consecutive_connect_failures, 5);
    assert_int_equal(u->outlier.base_ejection_ms, 30000);
    assert_int_equal(u->outlier.max_ejection_ms, 300000);
    assert_int_equal(u->outlier.max_ejection_percent, 50);
    assert_int_equal(u->retry_budget.percent, 20);
    assert_int_equal(u->retry_budget.min_concurrency, 3);
    unload(&l);
}

static void test_upstream_traffic_keys_are_parsed(void **state)
{
    loaded l;
    proxy_config *c =
        ok(&l, BASE UP_HEAD
           "    balance: round_robin\n"
           "    circuit_breakers: {max_connections: 100, max_pending: 10, max_requests: 200,\n"
           "                       max_retries: 0}\n"
           "    outlier_detection:\n"
           "      consecutive_5xx: 3\n"
           "      consecutive_connect_failures: 0\n"
           "      base_ejection_time: 10s\n"
           "      max_ejection_time: 1m30s\n"
           "      max_ejection_percent: 100\n"
           "    retry_budget: {percent: 10, min_concurrency: 0}\n");
    const proxy_config_upstream *u = &c->upstreams[0];
    assert_int_equal(u->balance, PROXY_BALANCE_ROUND_ROBIN);
    assert_int_equal(u->circuit_breakers.max_connections, 100);
    assert_int_equal(u->circuit_breakers.max_pending, 10);
    assert_int_equal(u->circuit_breakers.max_requests, 200);
    assert_int_equal(u->circuit_breakers.max_retries, 0);
    assert_int_equal(u->outlier.consecutive_5xx, 3);
    assert_int_equal(u->outlier.consecutive_connect_failures, 0);
    assert_int_equal(u->outlier.base_ejection_ms, 10000);
    assert_int_equal(u->outlier.max_ejection_ms, 90000);
    assert_int_equal(u->outlier.max_ejection_percent, 100);
    assert_int_equal(u->retry_budget.percent, 10);
    assert_int_equal(u->retry_budget.min_concurrency, 0);
    /* and the cluster built from it uses them */
    proxy_cluster *cl;
    assert_int_equal(proxy_cluster_new(u, 1, 1, &cl), 0);
    assert_false(proxy_cluster_admit(cl, true, NULL)); /* max_retries: 0 */
    size_t ep;
    assert_int_equal(proxy_cluster_pick(cl, (proxy_slice){NULL, 0}, PROXY_CLUSTER_NONE, 0, &ep), 0);
    assert_int_equal(ep, 0);
    assert_int_equal(proxy_cluster_pick(cl, (proxy_slice){NULL, 0}, PROXY_CLUSTER_NONE, 0, &ep), 0);
    assert_int_equal(ep, 1); /* round robin */
    proxy_cluster_free(cl);
    unload(&l);
}

static void test_upstream_consistent_hash_on_a_header(void **state)
{
    loaded l;
    proxy_config *c = ok(&l, BASE UP_HEAD "    balance: consistent_hash\n"
                                          "    hash_key: header:X-User-Id\n");
    assert_int_equal(c->upstreams[0].balance, PROXY_BALANCE_CONSISTENT_HASH);
    assert_int_equal(c->upstreams[0].hash_on, PROXY_HASH_HEADER);
    assert_string_equal(c->upstreams[0].hash_header, "x-user-id");
    unload(&l);
}

static void test_upstream_consistent_hash_defaults_to_the_source_principal(void **state)
{
    loaded l;
    proxy_config *c = ok(&l, BASE UP_HEAD "    balance: consistent_hash\n");
    assert_int_equal(c->upstreams[0].hash_on, PROXY_HASH_SOURCE_PRINCIPAL);
    assert_null(c->upstreams[0].hash_header);
    unload(&l);
    c = ok(&l, BASE UP_HEAD "    balance: consistent_hash\n"
                            "    hash_key: source_principal\n");
    assert_int_equal(c->upstreams[0].hash_on, PROXY_HASH_SOURCE_PRINCIPAL);
    unload(&l);
}

static void test_upstream_max_ejection_time_rises_to_a_long_base(void **state)
{
    loaded l;
    proxy_config *c = ok(&l, BASE UP_HEAD "    outlier_detection: {base_ejection_time: 10m}\n");
    assert_int_equal(c->upstreams[0].outlier.base_ejection_ms, 600000);
    assert_int_equal(c->upstreams[0].outlier.max_ejection_ms, 600000);
    unload(&l);
}

static void test_upstream_unknown_balance_is_refused(void **state)
{
    check_error(BASE UP_HEAD "    balance: random\n",
                "proxy.yaml:13:14: upstreams[0].balance: invalid balance \"random\"; allowed: "
                "round_robin, least_request, consistent_hash");
}

static void test_upstream_hash_key_needs_consistent_hash(void **state)
{
    check_error(BASE UP_HEAD "    hash_key: source_principal\n",
                "proxy.yaml:13:15: upstreams[0].hash_key: hash_key goes with balance: "
                "consistent_hash (balance is least_request)");
    /* a bad balance is reported once */
    check_error(BASE UP_HEAD "    balance: consistent-hash\n"
                             "    hash_key: source_principal\n",
                "proxy.yaml:13:14: upstreams[0].balance: invalid balance \"consistent-hash\"; "
                "allowed: round_robin, least_request, consistent_hash");
}

static void test_upstream_bad_hash_key_is_refused(void **state)
{
    check_error(BASE UP_HEAD "    balance: consistent_hash\n"
                             "    hash_key: cookie:session\n",
                "proxy.yaml:14:15: upstreams[0].hash_key: invalid hash key \"cookie:session\"; "
                "allowed: header:<name>, source_principal");
    check_error(BASE UP_HEAD "    balance: consistent_hash\n"
                             "    hash_key: 'header:x user'\n",
                "proxy.yaml:14:15: upstreams[0].hash_key: invalid header name in "
                "\"header:x user\" (1..256 token characters, e.g. header:x-user-id)");
    check_error(BASE UP_HEAD "    balance: consistent_hash\n"
                             "    hash_key: 'header:'\n",
                "proxy.yaml:14:15: upstreams[0].hash_key: invalid header name in \"header:\" "
                "(1..256 token characters, e.g. header:x-user-id)");
}

static void test_upstream_unknown_breaker_suggests_the_near_miss(void **state)
{
    check_error(BASE UP_HEAD "    circuit_breakers: {max_request: 10}\n",
                "proxy.yaml:13:24: upstreams[0].circuit_breakers.max_request: unknown key (did "
                "you mean \"max_requests\"?); allowed: max_connections, max_pending, "
                "max_requests, max_retries");
}

static void test_upstream_unknown_traffic_key_is_refused(void **state)
{
    check_error(BASE UP_HEAD "    retries: 3\n",
                "proxy.yaml:13:5: upstreams[0].retries: unknown key; allowed: service, "
                "endpoints, spiffe_id, balance, hash_key, circuit_breakers, outlier_detection, "
                "retry_budget");
}

static void test_upstream_breaker_out_of_range_is_refused(void **state)
{
    check_error(BASE UP_HEAD "    circuit_breakers: {max_requests: 0}\n",
                "proxy.yaml:13:38: upstreams[0].circuit_breakers.max_requests: invalid number "
                "\"0\" (a whole number 1..1000000)");
    check_error(BASE UP_HEAD "    circuit_breakers: {max_connections: 1000001}\n",
                "proxy.yaml:13:41: upstreams[0].circuit_breakers.max_connections: invalid "
                "number \"1000001\" (a whole number 1..1000000)");
    check_error(BASE UP_HEAD "    circuit_breakers: {max_pending: '10'}\n",
                "proxy.yaml:13:37: upstreams[0].circuit_breakers.max_pending: expected a "
                "number, got a string");
    check_error(BASE UP_HEAD "    circuit_breakers: [10]\n",
                "proxy.yaml:13:23: upstreams[0].circuit_breakers: expected a map, got a list");
}

static void test_upstream_outlier_values_are_bounded(void **state)
{
    check_error(BASE UP_HEAD "    outlier_detection: {max_ejection_percent: 101}\n",
                "proxy.yaml:13:47: upstreams[0].outlier_detection.max_ejection_percent: "
                "invalid number \"101\" (a whole number 0..100)");
    check_error(BASE UP_HEAD "    outlier_detection: {consecutive_5xx: -1}\n",
                "proxy.yaml:13:42: upstreams[0].outlier_detection.consecutive_5xx: invalid "
                "number \"-1\" (a whole number 0..1000)");
    check_error(BASE UP_HEAD "    outlier_detection: {base_ejection_time: 30}\n",
                "proxy.yaml:13:45: upstreams[0].outlier_detection.base_ejection_time: invalid "
                "duration \"30\" (a number with a unit: ms, s, m, h; e.g. 10s, 1m30s)");
    check_error(BASE UP_HEAD "    outlier_detection: {base_ejection_time: 2h}\n",
                "proxy.yaml:13:45: upstreams[0].outlier_detection.base_ejection_time: duration "
                "\"2h\" out of range (1ms .. 1h)");
}

static void test_upstream_max_ejection_time_below_base_is_refused(void **state)
{
    check_error(BASE UP_HEAD "    outlier_detection: {base_ejection_time: 1m, max_ejection_time: "
                             "30s}\n",
                "proxy.yaml:13:68: upstreams[0].outlier_detection.max_ejection_time: \"30s\" is "
                "shorter than base_ejection_time (60000ms)");
}

static void test_upstream_retry_budget_is_bounded(void **state)
{
    check_error(BASE UP_HEAD "    retry_budget: {percent: 150}\n",
                "proxy.yaml:13:29: upstreams[0].retry_budget.percent: invalid number \"150\" (a "
                "whole number 0..100)");
    check_error(BASE UP_HEAD "    retry_budget: {percent: 20%}\n",
                "proxy.yaml:13:29: upstreams[0].retry_budget.percent: invalid number \"20%\" (a "
                "whole number 0..100)");
}

static void test_upstream_traffic_errors_are_all_reported(void **state)
{
    loaded l;
    load(&l, BASE UP_HEAD "    balance: fastest\n"
                          "    circuit_breakers: {max_retries: lots}\n"
                          "    retry_budget: {min_concurency: 3}\n");
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_null(l.cfg);
    assert_int_equal(l.d.n, 3);
    assert_true(strncmp(l.d.msgs[0], "proxy.yaml:13:14: upstreams[0].balance:", 39) == 0);
    assert_true(strncmp(l.d.msgs[1],
                        "proxy.yaml:14:37: upstreams[0].circuit_breakers.max_retries:", 60) == 0);
    assert_true(strncmp(l.d.msgs[2],
                        "proxy.yaml:15:20: upstreams[0].retry_budget.min_concurency: unknown key "
                        "(did you mean \"min_concurrency\"?)",
                        103) == 0);
    unload(&l);
}

/* ---- audit.sink --------------------------------------------------------------------- */

#define SINK_HEAD "service: payments\n" STATIC_ID "inbound: {listen: 0.0.0.0:15006, app: 127.0.0.1:8080}\n"

static void test_audit_sink_is_parsed(void **state)
{
    loaded l;
    ok(&l, SINK_HEAD "audit:\n"
                     "  dir: audit\n"
                     "  sink:\n"
                     "    address: logs.example.org:6514\n"
                     "    tls: {ca_file: bundle.pem, cert_file: svid.pem, key_file: svid.key,\n"
                     "          server_name: collector.example.org}\n"
                     "    facility: local3\n"
                     "    app_name: ward-payments\n");
    assert_string_equal(l.cfg->audit.sink.address, "logs.example.org:6514");
    assert_true(l.cfg->audit.sink.tls);
    assert_string_equal(l.cfg->audit.sink.ca_file, "bundle.pem");
    assert_string_equal(l.cfg->audit.sink.cert_file, "svid.pem");
    assert_string_equal(l.cfg->audit.sink.key_file, "svid.key");
    assert_string_equal(l.cfg->audit.sink.server_name, "collector.example.org");
    assert_int_equal(l.cfg->audit.sink.facility, 19);
    assert_string_equal(l.cfg->audit.sink.app_name, "ward-payments");
    unload(&l);
}

static void test_audit_sink_defaults(void **state)
{
    loaded l;
    ok(&l, BASE);
    assert_null(l.cfg->audit.sink.address); /* no sink unless asked for */
    unload(&l);
    ok(&l, SINK_HEAD "audit: {dir: audit, sink: {address: \"[::1]:514\"}}\n");
    assert_string_equal(l.cfg->audit.sink.address, "[::1]:514");
    assert_false(l.cfg->audit.sink.tls);
    assert_null(l.cfg->audit.sink.ca_file);
    assert_int_equal(l.cfg->audit.sink.facility, 16); /* local0 */
    assert_null(l.cfg->audit.sink.app_name);
    unload(&l);
    ok(&l, SINK_HEAD "audit: {dir: audit, sink: {address: 10.0.0.5:514, facility: 13}}\n");
    assert_int_equal(l.cfg->audit.sink.facility, 13);
    unload(&l);
}

static void test_audit_sink_needs_an_address(void **state)
{
    check_error(SINK_HEAD "audit: {dir: audit, sink: {facility: local0}}\n",
                "proxy.yaml:7:27: audit.sink.address: required key is missing (the syslog "
                "collector, HOST:PORT)");
    check_error(SINK_HEAD "audit: {dir: audit, sink: {address: logs.example.org}}\n",
                "proxy.yaml:7:37: audit.sink.address: \"logs.example.org\": expected HOST:PORT (a "
                "DNS name or an IPv4 address) or [IPv6]:PORT");
    check_error(SINK_HEAD "audit: {dir: audit, sink: {address: \"logs:0\"}}\n",
                "proxy.yaml:7:37: audit.sink.address: \"logs:0\": invalid port (1..65535)");
    check_error(SINK_HEAD "audit: {dir: audit, sink: logs:514}\n",
                "proxy.yaml:7:27: audit.sink: expected a map, got a string");
}

static void test_audit_sink_unknown_keys_are_refused(void **state)
{
    check_error(SINK_HEAD "audit: {dir: audit, sink: {address: logs:514, adress: x}}\n",
                "proxy.yaml:7:47: audit.sink.adress: unknown key (did you mean \"address\"?); allowed: "
                "address, tls, facility, app_name");
    check_error(SINK_HEAD "audit: {dir: audit, sink: {address: logs:514, tls: {ca_file: bundle.pem, "
                          "verify: false}}}\n",
                "proxy.yaml:7:74: audit.sink.tls.verify: unknown key; allowed: ca_file, "
                "cert_file, key_file, server_name");
}

static void test_audit_sink_tls_is_checked(void **state)
{
    check_error(SINK_HEAD "audit: {dir: audit, sink: {address: logs:6514, tls: {server_name: logs}}}\n",
                "proxy.yaml:7:53: audit.sink.tls.ca_file: required key is missing (the CA "
                "certificates the collector's certificate must chain to)");
    check_error(SINK_HEAD "audit: {dir: audit, sink: {address: logs:6514, tls: {ca_file: nope.pem}}}\n",
                "proxy.yaml:7:63: audit.sink.tls.ca_file: \"nope.pem\": No such file or directory");
    check_error(SINK_HEAD "audit: {dir: audit, sink: {address: logs:6514,\n"
                          "  tls: {ca_file: bundle.pem, cert_file: svid.pem}}}\n",
                "proxy.yaml:8:41: audit.sink.tls: a client certificate needs both cert_file and "
                "key_file");
    check_error(SINK_HEAD "audit: {dir: audit, sink: {address: logs:6514,\n"
                          "  tls: {ca_file: bundle.pem, cert_file: svid.pem, key_file: open.key}}}\n",
                "proxy.yaml:8:61: audit.sink.tls.key_file: \"open.key\" is a secret but has mode "
                "0640 (group or others may access it); run chmod 600 on it");
    check_error(SINK_HEAD "audit: {dir: audit, sink: {address: logs:6514,\n"
                          "  tls: {ca_file: bundle.pem, server_name: \"two words\"}}}\n",
                "proxy.yaml:8:43: audit.sink.tls.server_name: invalid server name \"two words\" "
                "(1..253 printable ASCII characters, no spaces)");
}

static void test_audit_sink_facility_and_app_name_are_checked(void **state)
{
    check_error(SINK_HEAD "audit: {dir: audit, sink: {address: logs:514, facility: local8}}\n",
                "proxy.yaml:7:57: audit.sink.facility: invalid facility \"local8\": kern, user, "
                "mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, ntp, audit, "
                "alert, clock, local0..local7, or 0..23");
    check_error(SINK_HEAD "audit: {dir: audit, sink: {address: logs:514, facility: 24}}\n",
                "proxy.yaml:7:57: audit.sink.facility: invalid facility \"24\": kern, user, "
                "mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, ntp, audit, "
                "alert, clock, local0..local7, or 0..23");
    check_error(SINK_HEAD "audit: {dir: audit, sink: {address: logs:514, facility: [16]}}\n",
                "proxy.yaml:7:57: audit.sink.facility: invalid facility a list: kern, user, "
                "mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, ntp, audit, "
                "alert, clock, local0..local7, or 0..23");
    check_error(SINK_HEAD "audit: {dir: audit, sink: {address: logs:514, app_name: \"ward proxy\"}}\n",
                "proxy.yaml:7:57: audit.sink.app_name: invalid app_name \"ward proxy\" (1..48 "
                "printable ASCII characters, no spaces)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_config_gets_secure_defaults),
        cmocka_unit_test(test_audit_overflow_policy),
        cmocka_unit_test(test_state_dir_only_with_wardd),
        cmocka_unit_test(test_audit_trail_options),
        cmocka_unit_test(test_static_identity_is_accepted),
        cmocka_unit_test(test_upstreams_are_parsed),
        cmocka_unit_test(test_listener_timeouts_override_the_top_level_ones),
        cmocka_unit_test(test_limits_workers_tls_and_default_are_set),
        cmocka_unit_test(test_relative_files_resolve_against_the_config_folder),
        cmocka_unit_test(test_missing_config_file_is_an_io_error),
        cmocka_unit_test(test_example_payments_config_loads),
        cmocka_unit_test(test_unknown_top_level_key_suggests_the_near_miss),
        cmocka_unit_test(test_unknown_nested_key_names_its_path),
        cmocka_unit_test(test_unknown_key_without_near_miss_lists_the_allowed_ones),
        cmocka_unit_test(test_wrong_type_is_an_error),
        cmocka_unit_test(test_list_given_a_scalar_suggests_brackets),
        cmocka_unit_test(test_document_must_be_a_map),
        cmocka_unit_test(test_empty_document_is_an_error),
        cmocka_unit_test(test_yaml_syntax_error_names_its_position),
        cmocka_unit_test(test_missing_required_keys_are_all_reported),
        cmocka_unit_test(test_missing_inbound_app_is_an_error),
        cmocka_unit_test(test_all_errors_are_reported_in_document_order),
        cmocka_unit_test(test_service_must_be_a_dns_label),
        cmocka_unit_test(test_service_must_not_be_empty),
        cmocka_unit_test(test_both_identity_forms_are_refused),
        cmocka_unit_test(test_no_identity_form_is_refused),
        cmocka_unit_test(test_static_identity_needs_its_key),
        cmocka_unit_test(test_identity_needs_a_bundle),
        cmocka_unit_test(test_group_readable_key_file_is_refused),
        cmocka_unit_test(test_world_readable_token_file_is_refused),
        cmocka_unit_test(test_missing_identity_file_is_refused),
        cmocka_unit_test(test_folder_as_identity_file_is_refused),
        cmocka_unit_test(test_wardd_server_must_be_https_with_a_port),
        cmocka_unit_test(test_admin_on_a_non_loopback_address_is_refused),
        cmocka_unit_test(test_outbound_on_a_non_loopback_address_is_refused),
        cmocka_unit_test(test_bad_address_is_refused),
        cmocka_unit_test(test_app_port_zero_is_refused),
        cmocka_unit_test(test_two_listeners_on_one_port_are_refused),
        cmocka_unit_test(test_outbound_on_the_default_admin_port_is_refused),
        cmocka_unit_test(test_bad_spiffe_id_is_refused),
        cmocka_unit_test(test_spiffe_id_must_name_a_workload),
        cmocka_unit_test(test_upstream_spiffe_id_is_required),
        cmocka_unit_test(test_duplicate_upstream_service_is_refused),
        cmocka_unit_test(test_audit_headers_redact_and_fields),
        cmocka_unit_test(test_audit_fields_unknown_name),
        cmocka_unit_test(test_audit_header_name_must_be_a_token),
        cmocka_unit_test(test_tcp_listeners_load),
        cmocka_unit_test(test_tcp_listener_needs_app_or_endpoints),
        cmocka_unit_test(test_tcp_outbound_listener_is_loopback_only),
        cmocka_unit_test(test_tcp_inbound_listener_refuses_outbound_keys),
        cmocka_unit_test(test_tcp_server_name_is_a_dns_name),
        cmocka_unit_test(test_tcp_listener_address_must_be_free),
        cmocka_unit_test(test_upstream_needs_endpoints),
        cmocka_unit_test(test_bad_duration_unit_is_refused),
        cmocka_unit_test(test_duration_without_unit_is_refused),
        cmocka_unit_test(test_duration_out_of_range_is_refused),
        cmocka_unit_test(test_drain_only_at_the_top_level),
        cmocka_unit_test(test_size_needs_a_binary_unit),
        cmocka_unit_test(test_size_out_of_range_is_refused),
        cmocka_unit_test(test_size_parser_is_bounded),
        cmocka_unit_test(test_max_headers_out_of_range_is_refused),
        cmocka_unit_test(test_workers_out_of_range_is_refused),
        cmocka_unit_test(test_workers_auto_is_one_per_core),
        cmocka_unit_test(test_workers_as_a_boolean_is_a_type_error),
        cmocka_unit_test(test_json_config_is_accepted),
        cmocka_unit_test(test_policy_default_is_allow_or_deny),
        cmocka_unit_test(test_missing_policy_path_is_refused),
        cmocka_unit_test(test_unsupported_tls_version_is_refused),
        cmocka_unit_test(test_audit_dir_must_be_a_folder),
        cmocka_unit_test(test_upstream_traffic_defaults),
        cmocka_unit_test(test_upstream_traffic_keys_are_parsed),
        cmocka_unit_test(test_upstream_consistent_hash_on_a_header),
        cmocka_unit_test(test_upstream_consistent_hash_defaults_to_the_source_principal),
        cmocka_unit_test(test_upstream_max_ejection_time_rises_to_a_long_base),
        cmocka_unit_test(test_upstream_unknown_balance_is_refused),
        cmocka_unit_test(test_upstream_hash_key_needs_consistent_hash),
        cmocka_unit_test(test_upstream_bad_hash_key_is_refused),
        cmocka_unit_test(test_upstream_unknown_breaker_suggests_the_near_miss),
        cmocka_unit_test(test_upstream_unknown_traffic_key_is_refused),
        cmocka_unit_test(test_upstream_breaker_out_of_range_is_refused),
        cmocka_unit_test(test_upstream_outlier_values_are_bounded),
        cmocka_unit_test(test_upstream_max_ejection_time_below_base_is_refused),
        cmocka_unit_test(test_upstream_retry_budget_is_bounded),
        cmocka_unit_test(test_upstream_traffic_errors_are_all_reported),
        cmocka_unit_test(test_audit_sink_is_parsed),
        cmocka_unit_test(test_audit_sink_defaults),
        cmocka_unit_test(test_audit_sink_needs_an_address),
        cmocka_unit_test(test_audit_sink_unknown_keys_are_refused),
        cmocka_unit_test(test_audit_sink_tls_is_checked),
        cmocka_unit_test(test_audit_sink_facility_and_app_name_are_checked),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
