/* test_client.c - workload client tests: CSRs, snapshots, HTTP parsing, schedules, TLS */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/ward.h"
#include "identity/client_int.h"
#include "identity/identity.h"

#define TD       "example.org"
#define WORKLOAD "spiffe://example.org/ns/test/sa/app"
#define MAX_BODY ((size_t)1 << 20)

/* ======================================================================== */
/* a test CA                                                                 */
/* ======================================================================== */

typedef struct test_ca {
    EVP_PKEY *key;
    X509 *cert;
    ident_bundle *bundle;
} test_ca;

static EVP_PKEY *new_key(void)
{
    EVP_PKEY *k = NULL;
    assert_int_equal(ident_client_key_new(&k, NULL), 0);
    return k;
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(cert, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/* A certificate for pub signed by (issuer, issuer_key); self-signed when issuer is NULL. */
static X509 *make_cert(EVP_PKEY *pub, const char *uri, bool ca, X509 *issuer, EVP_PKEY *issuer_key,
                       long nb_offset, long lifetime)
{
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    unsigned char rnd[9];
    RAND_bytes(rnd, sizeof(rnd));
    rnd[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(rnd, sizeof(rnd), NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(x), nb_offset);
    X509_gmtime_adj(X509_getm_notAfter(x), nb_offset + lifetime);
    X509_set_pubkey(x, pub);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)(ca ? "Test CA" : "W"),
                               -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509 *iss = issuer ? issuer : x;
    if (ca) {
        add_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, iss, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(x, iss, NID_key_usage, "critical,digitalSignature");
        add_ext(x, iss, NID_ext_key_usage, "serverAuth,clientAuth");
    }
    add_ext(x, iss, NID_subject_key_identifier, "hash");
    if (issuer != NULL)
        add_ext(x, iss, NID_authority_key_identifier, "keyid:always");
    char san[2200];
    snprintf(san, sizeof(san), "URI:%s", uri);
    add_ext(x, iss, NID_subject_alt_name, san);
    assert_true(X509_sign(x, issuer_key ? issuer_key : pub, EVP_sha256()) > 0);
    return x;
}

static void ca_init(test_ca *ca, const char *td)
{
    char uri[300];
    snprintf(uri, sizeof(uri), "spiffe://%s", td);
    ca->key = new_key();
    ca->cert = make_cert(ca->key, uri, true, NULL, NULL, -60, 86400);
    assert_int_equal(ident_bundle_new(td, &ca->bundle, NULL), 0);
    assert_int_equal(ident_bundle_add_x509(ca->bundle, ca->cert), 0);
    ident_bundle_set_sequence(ca->bundle, 7);
}

static void ca_dispose(test_ca *ca)
{
    ident_bundle_unref(ca->bundle);
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
}

static STACK_OF(X509) *
    leaf_chain(test_ca *ca, EVP_PKEY *key, const char *id, long nb_offset, long lifetime)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    sk_X509_push(chain, make_cert(key, id, false, ca->cert, ca->key, nb_offset, lifetime));
    return chain;
}

static char tmpdir[64];

static int setup_tmp(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ward-client-XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown_tmp(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ======================================================================== */
/* keys and CSRs                                                             */
/* ======================================================================== */

static X509_REQ *parse_csr(const ward_buf *pem)
{
    BIO *bio = BIO_new_mem_buf(pem->ptr, (int)pem->len);
    X509_REQ *req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
    BIO_free(bio);
    return req;
}

static void test_key_is_p256(void **state)
{
    EVP_PKEY *k = new_key();
    char group[32];
    size_t gl;
    assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_EC);
    assert_int_equal(EVP_PKEY_get_group_name(k, group, sizeof(group), &gl), 1);
    assert_string_equal(group, "prime256v1");
    EVP_PKEY *k2 = new_key();
    assert_int_not_equal(EVP_PKEY_eq(k, k2), 1); /* fresh every time */
    EVP_PKEY_free(k);
    EVP_PKEY_free(k2);
}

static void test_csr_parse_back(void **state)
{
    EVP_PKEY *k = new_key();
    ward_buf pem;
    ward_buf_init(&pem);
    assert_int_equal(ident_client_csr_new(k, WORKLOAD, &pem, NULL), 0);
    assert_non_null(strstr(pem.ptr, "-----BEGIN CERTIFICATE REQUEST-----"));
    X509_REQ *req = parse_csr(&pem);
    assert_non_null(req);
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    assert_int_equal(X509_REQ_verify(req, pub), 1);
    assert_int_equal(EVP_PKEY_eq(pub, k), 1);
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    assert_non_null(exts);
    GENERAL_NAMES *gens = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
    assert_non_null(gens);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 1);
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, 0);
    assert_int_equal(g->type, GEN_URI);
    assert_int_equal(g->d.uniformResourceIdentifier->length, (int)strlen(WORKLOAD));
    assert_memory_equal(g->d.uniformResourceIdentifier->data, WORKLOAD, strlen(WORKLOAD));
    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    ward_buf_dispose(&pem);
    EVP_PKEY_free(k);
}

static void test_csr_without_id_has_no_san(void **state)
{
    EVP_PKEY *k = new_key();
    ward_buf pem;
    ward_buf_init(&pem);
    assert_int_equal(ident_client_csr_new(k, NULL, &pem, NULL), 0);
    X509_REQ *req = parse_csr(&pem);
    assert_non_null(req);
    assert_int_equal(X509_REQ_verify(req, X509_REQ_get0_pubkey(req)), 1);
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    assert_int_equal(exts ? sk_X509_EXTENSION_num(exts) : 0, 0);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    ward_buf_dispose(&pem);
    EVP_PKEY_free(k);
}

static void test_csr_refuses_bad_id(void **state)
{
    EVP_PKEY *k = new_key();
    ward_buf pem;
    ward_buf_init(&pem);
    ward_err err;
    ward_err_clear(&err);
    assert_true(ident_client_csr_new(k, "spiffe://Example.org/x", &pem, &err) < 0);
    assert_true(ident_client_csr_new(k, "https://example.org/x", &pem, &err) < 0);
    assert_int_equal(pem.len, 0);
    ward_buf_dispose(&pem);
    EVP_PKEY_free(k);
}

/* ======================================================================== */
/* snapshots                                                                 */
/* ======================================================================== */

static void test_snapshot_accessors_and_refs(void **state)
{
    test_ca ca;
    ca_init(&ca, TD);
    EVP_PKEY *k = new_key();
    STACK_OF(X509) *chain = leaf_chain(&ca, k, WORKLOAD, -5, 3600);
    ident_svid *s = NULL;
    ward_err err;
    ward_err_clear(&err);
    assert_int_equal(ident_svid_new(k, chain, ca.bundle, time(NULL), &s, &err), 0);
    /* the snapshot holds its own references: drop the caller's */
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(k);
    assert_string_equal(ident_svid_id(s), WORKLOAD);
    assert_int_equal(ident_svid_not_after(s) - ident_svid_not_before(s), 3600);
    assert_true(ident_svid_not_before(s) <= time(NULL));
    assert_int_equal(sk_X509_num(ident_svid_chain(s)), 1);
    assert_ptr_equal(ident_svid_bundle(s), ca.bundle);
    assert_non_null(ident_svid_key(s));
    ident_svid_ref(s);
    ident_svid_unref(s);
    assert_string_equal(ident_svid_id(s), WORKLOAD); /* still alive */
    ident_svid_unref(s);                             /* freed (ASan checks) */
    ident_svid_unref(NULL);
    ca_dispose(&ca);
}

static void *ref_storm(void *arg)
{
    ident_svid *s = arg;
    for (int i = 0; i < 20000; i++) {
        ident_svid_ref(s);
        ident_svid_unref(s);
    }
    return NULL;
}

static void test_snapshot_refs_across_threads(void **state)
{
    test_ca ca;
    ca_init(&ca, TD);
    EVP_PKEY *k = new_key();
    STACK_OF(X509) *chain = leaf_chain(&ca, k, WORKLOAD, -5, 3600);
    ident_svid *s = NULL;
    assert_int_equal(ident_svid_new(k, chain, ca.bundle, time(NULL), &s, NULL), 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, ref_storm, s), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_string_equal(ident_svid_id(s), WORKLOAD);
    ident_svid_unref(s);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(k);
    ca_dispose(&ca);
}

static void test_snapshot_refuses_wrong_key(void **state)
{
    test_ca ca;
    ca_init(&ca, TD);
    EVP_PKEY *k = new_key(), *other = new_key();
    STACK_OF(X509) *chain = leaf_chain(&ca, k, WORKLOAD, -5, 3600);
    ident_svid *s = NULL;
    ward_err err;
    ward_err_clear(&err);
    assert_true(ident_svid_new(other, chain, ca.bundle, time(NULL), &s, &err) < 0);
    assert_null(s);
    assert_non_null(strstr(err.msg, "does not match"));
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
    ca_dispose(&ca);
}

static void test_snapshot_refuses_expired_and_foreign(void **state)
{
    test_ca ca, other;
    ca_init(&ca, TD);
    ca_init(&other, "other.org");
    EVP_PKEY *k = new_key();
    STACK_OF(X509) *chain = leaf_chain(&ca, k, WORKLOAD, -7200, 3600);
    ident_svid *s = NULL;
    ward_err err;
    ward_err_clear(&err);
    assert_true(ident_svid_new(k, chain, ca.bundle, time(NULL), &s, &err) < 0);
    assert_non_null(strstr(err.msg, "expired"));
    sk_X509_pop_free(chain, X509_free);
    /* signed by another trust domain's CA */
    chain = leaf_chain(&other, k, WORKLOAD, -5, 3600);
    ward_err_clear(&err);
    assert_true(ident_svid_new(k, chain, ca.bundle, time(NULL), &s, &err) < 0);
    assert_true(err.msg[0] != '\0');
    sk_X509_pop_free(chain, X509_free);
    /* a CA certificate is not an SVID */
    chain = sk_X509_new_null();
    X509_up_ref(ca.cert);
    sk_X509_push(chain, ca.cert);
    ward_err_clear(&err);
    assert_true(ident_svid_new(ca.key, chain, ca.bundle, time(NULL), &s, &err) < 0);
    assert_null(s);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(k);
    ca_dispose(&ca);
    ca_dispose(&other);
}

static void test_write_dir_and_load(void **state)
{
    test_ca ca;
    ca_init(&ca, TD);
    EVP_PKEY *k = new_key();
    STACK_OF(X509) *chain = leaf_chain(&ca, k, WORKLOAD, -5, 3600);
    ident_svid *s = NULL, *back = NULL;
    ward_err err;
    ward_err_clear(&err);
    assert_int_equal(ident_svid_new(k, chain, ca.bundle, time(NULL), &s, &err), 0);
    mode_t old = umask(0); /* even with a permissive umask the key is 0600 */
    int rc = ident_svid_write_dir(s, tmpdir, &err);
    umask(old);
    assert_int_equal(rc, 0);
    char p[256], q[256], b[256];
    struct stat st;
    snprintf(p, sizeof(p), "%s/svid.key", tmpdir);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(ward_file_read(p, 0, &data, &len, NULL), 0);
    assert_non_null(strstr(data, "-----BEGIN PRIVATE KEY-----")); /* PKCS#8 */
    free(data);
    snprintf(q, sizeof(q), "%s/bundle.json", tmpdir);
    assert_int_equal(ward_file_read(q, 0, &data, &len, NULL), 0);
    assert_non_null(strstr(data, "spiffe_sequence"));
    free(data);
    snprintf(q, sizeof(q), "%s/svid.pem", tmpdir);
    snprintf(b, sizeof(b), "%s/bundle.pem", tmpdir);
    assert_int_equal(ident_svid_load_files(q, p, b, time(NULL), &back, &err), 0);
    assert_string_equal(ident_svid_id(back), WORKLOAD);
    assert_int_equal(EVP_PKEY_eq(ident_svid_key(back), k), 1);
    ident_svid_unref(back);
    snprintf(b, sizeof(b), "%s/bundle.json", tmpdir);
    assert_int_equal(ident_svid_load_files(q, p, b, time(NULL), &back, &err), 0);
    ident_svid_unref(back);
    /* a key that is not the certificate's */
    EVP_PKEY *other = new_key();
    ident_svid *o = NULL;
    STACK_OF(X509) *chain2 = leaf_chain(&ca, other, WORKLOAD, -5, 60);
    assert_int_equal(ident_svid_new(other, chain2, ca.bundle, time(NULL), &o, NULL), 0);
    sk_X509_pop_free(chain2, X509_free);
    char dir2[128];
    snprintf(dir2, sizeof(dir2), "%s/o", tmpdir);
    mkdir(dir2, 0700);
    assert_int_equal(ident_svid_write_dir(o, dir2, NULL), 0);
    snprintf(p, sizeof(p), "%s/svid.key", dir2);
    ward_err_clear(&err);
    assert_true(ident_svid_load_files(q, p, b, time(NULL), &back, &err) < 0);
    assert_non_null(strstr(err.msg, "does not match"));
    ident_svid_unref(o);
    EVP_PKEY_free(other);
    ident_svid_unref(s);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(k);
    ca_dispose(&ca);
}

/* ======================================================================== */
/* HTTP responses                                                            */
/* ======================================================================== */

static int parse(const char *s, bool eof, ident_http_resp *r, ward_err *err)
{
    ward_err_clear(err);
    return ident_http_parse_response(s, strlen(s), eof, MAX_BODY, r, err);
}

static void test_http_content_length(void **state)
{
    ident_http_resp r;
    ident_http_resp_init(&r);
    ward_err err;
    const char *s = "HTTP/1.1 200 OK\r\nContent-Type: Application/JSON; charset=utf-8\r\n"
                    "Content-Length: 7\r\nConnection: close\r\n\r\n{\"a\":1}";
    assert_int_equal(parse(s, false, &r, &err), 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "application/json");
    assert_int_equal(r.body_len, 7);
    assert_memory_equal(r.body, "{\"a\":1}", 7);
    assert_true(r.conn_close);
    /* every proper prefix needs more bytes */
    for (size_t i = 0; i < strlen(s); i++) {
        ward_err_clear(&err);
        assert_int_equal(ident_http_parse_response(s, i, false, MAX_BODY, &r, &err), 0);
    }
    /* ... and is an error when the peer closed there */
    for (size_t i = 0; i < strlen(s); i++) {
        ward_err_clear(&err);
        assert_true(ident_http_parse_response(s, i, true, MAX_BODY, &r, &err) < 0);
        assert_true(err.msg[0] != '\0');
    }
    ident_http_resp_dispose(&r);
}

static void test_http_chunked(void **state)
{
    ident_http_resp r;
    ident_http_resp_init(&r);
    ward_err err;
    const char *s = "HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n"
                    "Content-Type: application/json\r\n\r\n"
                    "5;ext=1\r\n{\"err\r\nA\r\nor\":\"x\"}  \r\n0\r\nX-Trailer: y\r\n\r\n";
    assert_int_equal(parse(s, false, &r, &err), 1);
    assert_int_equal(r.status, 401);
    assert_int_equal(r.body_len, 15);
    assert_memory_equal(r.body, "{\"error\":\"x\"}  ", 15);
    for (size_t i = 0; i < strlen(s); i++) {
        ward_err_clear(&err);
        assert_int_equal(ident_http_parse_response(s, i, false, MAX_BODY, &r, &err), 0);
    }
    assert_true(
        parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc", true, &r, &err) < 0);
    assert_true(
        parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false, &r, &err) < 0);
    assert_true(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", false,
                      &r, &err) < 0);
    assert_true(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "11111111111111111\r\n",
                      false, &r, &err) < 0);
    ident_http_resp_dispose(&r);
}

static void test_http_close_delimited(void **state)
{
    ident_http_resp r;
    ident_http_resp_init(&r);
    ward_err err;
    const char *s = "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{}";
    assert_int_equal(parse(s, false, &r, &err), 0);
    assert_int_equal(parse(s, true, &r, &err), 1);
    assert_int_equal(r.body_len, 2);
    assert_true(r.conn_close);
    assert_int_equal(parse("HTTP/1.1 204 No Content\r\n\r\n", false, &r, &err), 1);
    assert_int_equal(r.body_len, 0);
    ident_http_resp_dispose(&r);
}

static void test_http_malformed(void **state)
{
    static const char *bad[] = {
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "HTTP/1.1 200\r\n\r\n",
        "HTTP/1.1 600 Nope\r\n\r\n",
        "HTTP/1.1 099 Nope\r\n\r\n",
        "http/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n\r\n",
        "HTTP/1.1 200 OK\r\n Content-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: 1\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: empty\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
        "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-Ctl: a\x01z\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy",
        "HTTP/1.1 204 No Content\r\n\r\nextra",
    };
    ident_http_resp r;
    ident_http_resp_init(&r);
    ward_err err;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i], false, &r, &err);
        if (rc >= 0)
            fail_msg("accepted malformed response #%zu: %s", i, bad[i]);
        assert_true(err.msg[0] != '\0');
    }
    /* NUL inside the head */
    const char nul[] = "HTTP/1.1 200 OK\r\nX: a\0b\r\nContent-Length: 0\r\n\r\n";
    assert_true(ident_http_parse_response(nul, sizeof(nul) - 1, false, MAX_BODY, &r, &err) < 0);
    ident_http_resp_dispose(&r);
}

static void test_http_oversized(void **state)
{
    ident_http_resp r;
    ident_http_resp_init(&r);
    ward_err err;
    /* a declared body over the limit is refused before it arrives */
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Length: 1048577\r\n\r\n", false, &r, &err),
                     WARD_ELIMIT);
    assert_non_null(strstr(err.msg, "exceeds the limit"));
    /* headers: no end within 16 KiB */
    size_t n = IDENT_HTTP_HEAD_MAX + 10;
    char *big = malloc(n + 1);
    memcpy(big, "HTTP/1.1 200 OK\r\nX-Pad: ", 24);
    memset(big + 24, 'a', n - 24);
    big[n] = '\0';
    assert_int_equal(parse(big, false, &r, &err), WARD_ELIMIT);
    free(big);
    /* too many header lines */
    ward_buf b;
    ward_buf_init(&b);
    ward_buf_puts(&b, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i <= IDENT_HTTP_HEADERS_MAX; i++)
        ward_buf_printf(&b, "X-H%d: v\r\n", i);
    ward_buf_puts(&b, "Content-Length: 0\r\n\r\n");
    assert_int_equal(parse(b.ptr, false, &r, &err), WARD_ELIMIT);
    /* chunked and close-delimited bodies past the limit */
    ward_buf_reset(&b);
    ward_buf_puts(&b, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; i++) {
        ward_buf_printf(&b, "%x\r\n", 400000);
        for (int j = 0; j < 400000; j++)
            ward_buf_putc(&b, 'x');
        ward_buf_puts(&b, "\r\n");
    }
    assert_int_equal(ident_http_parse_response(b.ptr, b.len, false, MAX_BODY, &r, &err),
                     WARD_ELIMIT);
    ward_buf_reset(&b);
    ward_buf_puts(&b, "HTTP/1.0 200 OK\r\n\r\n");
    for (size_t j = 0; j <= MAX_BODY; j++)
        ward_buf_putc(&b, 'x');
    assert_int_equal(ident_http_parse_response(b.ptr, b.len, false, MAX_BODY, &r, &err),
                     WARD_ELIMIT);
    ward_buf_dispose(&b);
    ident_http_resp_dispose(&r);
}

/* ======================================================================== */
/* addresses, answers, schedules                                             */
/* ======================================================================== */

static void test_url_parse(void **state)
{
    char h[256], p[8];
    assert_int_equal(ident_client_url_parse("https://127.0.0.1:8443", h, sizeof(h), p, 8, NULL), 0);
    assert_string_equal(h, "127.0.0.1");
    assert_string_equal(p, "8443");
    assert_int_equal(ident_client_url_parse("https://[::1]:9/", h, sizeof(h), p, 8, NULL), 0);
    assert_string_equal(h, "::1");
    assert_string_equal(p, "9");
    assert_int_equal(ident_client_url_parse("https://wardd.internal", h, sizeof(h), p, 8, NULL), 0);
    assert_string_equal(p, "443");
    static const char *bad[] = {
        "http://127.0.0.1:8443", "https://",         "https://:8443",     "https://h:0",
        "https://h:65536",       "https://h:84x",    "https://h:8443/v1", "https://u@h:1",
        "https://[::1:1",        "https://h:8443?x", "127.0.0.1:8443",    "https://h h:1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ward_err err;
        ward_err_clear(&err);
        if (ident_client_url_parse(bad[i], h, sizeof(h), p, 8, &err) == 0)
            fail_msg("accepted %s", bad[i]);
        assert_true(err.msg[0] != '\0');
    }
}

static void test_describe_error(void **state)
{
    ward_err err;
    const char *b = "{\"error\": \"token_used\", \"message\": \"join token already used\"}";
    ident_client_describe_error(401, b, strlen(b), &err);
    assert_string_equal(err.msg, "401 token_used: join token already used");
    ident_client_describe_error(502, "<html>\x01", 7, &err);
    assert_string_equal(err.msg, "502 (unexpected answer: <html>.)");
    ident_client_describe_error(500, "", 0, &err);
    assert_string_equal(err.msg, "500 (unexpected answer)");
}

static void test_backoff_schedule(void **state)
{
    /* the middle of the jitter: 1, 2, 4, ... 32 s, then capped at 60 s */
    static const uint64_t mid[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};
    for (unsigned a = 0; a < 8; a++)
        assert_int_equal(ident_client_backoff_ms(a, 0.5), mid[a]);
    uint64_t prev = 0;
    for (unsigned a = 0; a < 100; a++) {
        for (double u = 0.0; u < 1.0; u += 0.125) {
            uint64_t d = ident_client_backoff_ms(a, u);
            assert_true(d >= 1000 && d <= 60000);
        }
        uint64_t lo = ident_client_backoff_ms(a, 0.0), hi = ident_client_backoff_ms(a, 0.999);
        assert_true(lo <= hi);
        assert_true(ident_client_backoff_ms(a, 0.5) >= prev); /* never shrinks */
        prev = ident_client_backoff_ms(a, 0.5);
    }
    /* jitter is real: +-20% around the base */
    assert_int_equal(ident_client_backoff_ms(3, 0.0), 6400);
    assert_int_equal(ident_client_backoff_ms(3, 0.999), 9596);
    assert_int_equal(ident_client_backoff_ms(UINT32_MAX, 0.5), 60000);
    assert_int_equal(ident_client_backoff_ms(2, -1.0), 4000); /* bad u: no jitter */
}

static void test_renew_schedule(void **state)
{
    time_t nb = 1000000, na = nb + 3600;
    int64_t at_nb = (int64_t)nb * 1000;
    assert_int_equal(ident_client_renew_delay_ms(nb, na, at_nb, 0.5), 1800000);
    assert_int_equal(ident_client_renew_delay_ms(nb, na, at_nb, 0.0), 1620000);
    uint64_t hi = ident_client_renew_delay_ms(nb, na, at_nb, 0.9999);
    assert_true(hi > 1979000 && hi <= 1980000);
    assert_int_equal(ident_client_renew_delay_ms(nb, na, at_nb + 600000, 0.5), 1200000);
    assert_int_equal(ident_client_renew_delay_ms(nb, na, at_nb + 1900000, 0.5), 0);
    assert_int_equal(ident_client_renew_delay_ms(nb, nb, at_nb, 0.5), 0);
    assert_int_equal(ident_client_renew_delay_ms(na, nb, at_nb, 0.5), 0);
}

/* An svid_response as wardd writes it, for key. */
static char *svid_answer(test_ca *ca, EVP_PKEY *key, const char *id)
{
    STACK_OF(X509) *chain = leaf_chain(ca, key, id, -5, 3600);
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, sk_X509_value(chain, 0));
    char *pem;
    long n = BIO_get_mem_data(bio, &pem);
    ward_buf bj;
    ward_buf_init(&bj);
    assert_int_equal(ident_bundle_to_json(ca->bundle, &bj), 0);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "spiffe_id", id);
    char *pemz = strndup(pem, (size_t)n);
    cJSON_AddStringToObject(root, "svid", pemz);
    cJSON_AddStringToObject(root, "expires_at", "2030-01-01T00:00:00Z");
    cJSON_AddItemToObject(root, "bundle", cJSON_Parse(bj.ptr));
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    free(pemz);
    ward_buf_dispose(&bj);
    BIO_free(bio);
    sk_X509_pop_free(chain, X509_free);
    return out;
}

static void test_svid_response(void **state)
{
    test_ca ca;
    ca_init(&ca, TD);
    EVP_PKEY *k = new_key(), *other = new_key();
    char *ans = svid_answer(&ca, k, WORKLOAD);
    ident_svid *s = NULL;
    ward_err err;
    ward_err_clear(&err);
    assert_int_equal(
        ident_client_svid_response(ans, strlen(ans), k, TD, NULL, time(NULL), &s, &err), 0);
    assert_string_equal(ident_svid_id(s), WORKLOAD);
    assert_int_equal(ident_bundle_sequence(ident_svid_bundle(s)), 7);
    ident_svid_unref(s);
    assert_int_equal(
        ident_client_svid_response(ans, strlen(ans), k, NULL, WORKLOAD, time(NULL), &s, &err), 0);
    ident_svid_unref(s);
    /* another trust domain than the pinned one */
    assert_true(ident_client_svid_response(ans, strlen(ans), k, "other.org", NULL, time(NULL), &s,
                                           &err) < 0);
    assert_non_null(strstr(err.msg, "trust domain example.org, expected other.org"));
    /* renewal must give the same ID back */
    assert_true(ident_client_svid_response(ans, strlen(ans), k, TD, "spiffe://example.org/x/y",
                                           time(NULL), &s, &err) < 0);
    /* an SVID for somebody else's key */
    assert_true(
        ident_client_svid_response(ans, strlen(ans), other, TD, NULL, time(NULL), &s, &err) < 0);
    assert_non_null(strstr(err.msg, "does not match"));
    /* malformed answers */
    static const char *bad[] = {
        "",
        "[]",
        "{\"spiffe_id\": 1}",
        "{\"spiffe_id\": \"" WORKLOAD "\", \"svid\": \"x\"}",
        "{\"spiffe_id\": \"" WORKLOAD "\", \"svid\": \"junk\", \"bundle\": {}}",
        "{\"spiffe_id\": \"spiffe://EX/x\", \"svid\": \"\", \"bundle\": {}}",
        "{\"spiffe_id\":",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ward_err_clear(&err);
        assert_true(ident_client_svid_response(bad[i], strlen(bad[i]), k, TD, NULL, time(NULL), &s,
                                               &err) < 0);
        assert_null(s);
        assert_true(err.msg[0] != '\0');
    }
    /* the answer's ID must be the certificate's */
    char *lie = svid_answer(&ca, k, WORKLOAD);
    char *pos = strstr(lie, "sa/app\"");
    memcpy(pos, "sa/ap2", 6);
    ward_err_clear(&err);
    assert_true(ident_client_svid_response(lie, strlen(lie), k, TD, NULL, time(NULL), &s, &err) <
                0);
    free(lie);
    free(ans);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
    ca_dispose(&ca);
}

/* ======================================================================== */
/* a small wardd stand-in over TLS 1.3                                       */
/* ======================================================================== */

typedef struct fake_wardd {
    test_ca ca;
    EVP_PKEY *key;
    X509 *cert; /* spiffe://TD/ward/server */
    SSL_CTX *ctx;
    int lfd;
    int port;
    pthread_t th;
    atomic_bool stop;
    atomic_int attests, renews, bundles;
    long svid_ttl;
    const char *server_id;
    bool oversized; /* answer with a body over the client's limit */
    bool token_used;
} fake_wardd;

static int accept_any(int ok, X509_STORE_CTX *ctx)
{
    return 1;
}

static void fake_reply(SSL *ssl, int status, const char *body)
{
    char head[256];
    snprintf(head, sizeof(head),
             "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n",
             status, strlen(body));
    SSL_write(ssl, head, (int)strlen(head));
    SSL_write(ssl, body, (int)strlen(body));
}

static void fake_serve(fake_wardd *w, SSL *ssl)
{
    char req[65536];
    size_t len = 0;
    char *hend = NULL;
    while (len < sizeof(req) - 1) {
        int n = SSL_read(ssl, req + len, (int)(sizeof(req) - 1 - len));
        if (n <= 0)
            return;
        len += (size_t)n;
        req[len] = '\0';
        hend = strstr(req, "\r\n\r\n");
        if (hend != NULL) {
            const char *cl = strcasestr(req, "Content-Length: ");
            size_t want = cl ? (size_t)atol(cl + 16) : 0;
            if (len >= (size_t)(hend + 4 - req) + want)
                break;
        }
    }
    if (hend == NULL)
        return;
    const char *body = hend + 4;
    if (w->oversized) {
        const char *head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                           "Content-Length: 5000000\r\n\r\n";
        SSL_write(ssl, head, (int)strlen(head));
        return;
    }
    if (strncmp(req, "GET /v1/bundle ", 15) == 0) {
        atomic_fetch_add(&w->bundles, 1);
        ward_buf b;
        ward_buf_init(&b);
        ident_bundle_to_json(w->ca.bundle, &b);
        fake_reply(ssl, 200, b.ptr);
        ward_buf_dispose(&b);
        return;
    }
    bool attest = strncmp(req, "POST /v1/attest ", 16) == 0;
    bool renew = strncmp(req, "POST /v1/renew ", 15) == 0;
    if (!attest && !renew) {
        fake_reply(ssl, 404, "{\"error\":\"not_found\",\"message\":\"no such endpoint\"}");
        return;
    }
    cJSON *j = cJSON_Parse(body);
    const cJSON *csr = cJSON_GetObjectItem(j, "csr");
    char id[IDENT_ID_MAX] = WORKLOAD;
    if (attest) {
        const cJSON *tok = cJSON_GetObjectItem(j, "token");
        if (w->token_used || !cJSON_IsString(tok) || strcmp(tok->valuestring, "good-token") != 0) {
            fake_reply(ssl, 401,
                       "{\"error\":\"token_used\",\"message\":\"join token already used\"}");
            cJSON_Delete(j);
            return;
        }
        atomic_fetch_add(&w->attests, 1);
    } else {
        X509 *peer = SSL_get1_peer_certificate(ssl);
        if (peer == NULL || ident_svid_check_leaf(peer, id, NULL) < 0) {
            fake_reply(ssl, 401, "{\"error\":\"client_certificate_required\"}");
            X509_free(peer);
            cJSON_Delete(j);
            return;
        }
        X509_free(peer);
        atomic_fetch_add(&w->renews, 1);
    }
    BIO *in = BIO_new_mem_buf(csr->valuestring, -1);
    X509_REQ *r = PEM_read_bio_X509_REQ(in, NULL, NULL, NULL);
    BIO_free(in);
    EVP_PKEY *pub = X509_REQ_get0_pubkey(r);
    X509 *leaf = make_cert(pub, id, false, w->ca.cert, w->ca.key, -1, w->svid_ttl);
    BIO *out = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(out, leaf);
    char *pem;
    long n = BIO_get_mem_data(out, &pem);
    char *pemz = strndup(pem, (size_t)n);
    ward_buf bj;
    ward_buf_init(&bj);
    ident_bundle_to_json(w->ca.bundle, &bj);
    cJSON *ans = cJSON_CreateObject();
    cJSON_AddStringToObject(ans, "spiffe_id", id);
    cJSON_AddStringToObject(ans, "svid", pemz);
    cJSON_AddItemToObject(ans, "bundle", cJSON_Parse(bj.ptr));
    char *s = cJSON_PrintUnformatted(ans);
    fake_reply(ssl, 200, s);
    free(s);
    cJSON_Delete(ans);
    ward_buf_dispose(&bj);
    free(pemz);
    BIO_free(out);
    X509_free(leaf);
    X509_REQ_free(r);
    cJSON_Delete(j);
}

static void *fake_run(void *arg)
{
    fake_wardd *w = arg;
    while (!atomic_load(&w->stop)) {
        struct pollfd pfd = {w->lfd, POLLIN, 0};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        int fd = accept(w->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        SSL *ssl = SSL_new(w->ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) == 1)
            fake_serve(w, ssl);
        SSL_shutdown(ssl);
        SSL_free(ssl);
        close(fd);
        ERR_clear_error();
    }
    return NULL;
}

static void fake_start(fake_wardd *w, const char *server_id)
{
    memset(w, 0, sizeof(*w));
    ca_init(&w->ca, TD);
    w->svid_ttl = 3600;
    w->key = new_key();
    w->cert = make_cert(w->key, server_id, false, w->ca.cert, w->ca.key, -5, 3600);
    w->ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(w->ctx, TLS1_3_VERSION);
    SSL_CTX_use_certificate(w->ctx, w->cert);
    SSL_CTX_use_PrivateKey(w->ctx, w->key);
    SSL_CTX_set_verify(w->ctx, SSL_VERIFY_PEER, accept_any);
    w->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(w->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(w->lfd, 16), 0);
    socklen_t sl = sizeof(sa);
    getsockname(w->lfd, (struct sockaddr *)&sa, &sl);
    w->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&w->th, NULL, fake_run, w), 0);
}

static void fake_stop(fake_wardd *w)
{
    atomic_store(&w->stop, true);
    pthread_join(w->th, NULL);
    close(w->lfd);
    SSL_CTX_free(w->ctx);
    X509_free(w->cert);
    EVP_PKEY_free(w->key);
    ca_dispose(&w->ca);
}

static void fake_conf(fake_wardd *w, ident_client_conf *conf, char *url, size_t size)
{
    snprintf(url, size, "https://127.0.0.1:%d", w->port);
    memset(conf, 0, sizeof(*conf));
    conf->server = url;
    conf->bundle = w->ca.bundle;
    conf->timeout_ms = 5000;
}

static void test_attest_renew_over_tls(void **state)
{
    fake_wardd w;
    fake_start(&w, "spiffe://" TD "/ward/server");
    ident_client_conf conf;
    char url[64];
    fake_conf(&w, &conf, url, sizeof(url));
    ident_svid *s = NULL, *r = NULL;
    ward_err err;
    ward_err_clear(&err);
    assert_int_equal(ident_client_attest(&conf, "good-token", &s, &err), 0);
    assert_string_equal(ident_svid_id(s), WORKLOAD);
    /* renewal: mTLS with the SVID, a new key, the same ID */
    assert_int_equal(ident_client_renew(&conf, s, &r, &err), 0);
    assert_string_equal(ident_svid_id(r), WORKLOAD);
    assert_int_not_equal(EVP_PKEY_eq(ident_svid_key(r), ident_svid_key(s)), 1);
    assert_int_equal(atomic_load(&w.renews), 1);
    /* the bundle */
    ward_buf json;
    ward_buf_init(&json);
    ident_bundle *b = NULL;
    assert_int_equal(ident_client_fetch_bundle(&conf, &json, &b, &err), 0);
    assert_non_null(strstr(json.ptr, "spiffe_sequence"));
    assert_int_equal(ident_bundle_sequence(b), 7);
    ident_bundle_unref(b);
    ward_buf_dispose(&json);
    /* a refused token: the server's reason comes through */
    ward_err_clear(&err);
    ident_svid *x = NULL;
    assert_true(ident_client_attest(&conf, "bad-token", &x, &err) < 0);
    assert_null(x);
    assert_non_null(strstr(err.msg, "401 token_used: join token already used"));
    /* the pin as file data (PEM, trust domain learned from wardd's SVID) */
    ward_buf pem;
    ward_buf_init(&pem);
    assert_int_equal(ident_bundle_to_pem(w.ca.bundle, &pem), 0);
    conf.bundle = NULL;
    conf.bundle_data = pem.ptr;
    conf.bundle_len = pem.len;
    assert_int_equal(ident_client_attest(&conf, "good-token", &x, &err), 0);
    ident_svid_unref(x);
    ward_buf_dispose(&pem);
    ident_svid_unref(s);
    ident_svid_unref(r);
    fake_stop(&w);
}

static void test_wrong_pin_refuses_connection(void **state)
{
    fake_wardd w;
    fake_start(&w, "spiffe://" TD "/ward/server");
    test_ca other;
    ca_init(&other, TD); /* same trust domain, another CA (another wardd) */
    ident_client_conf conf;
    char url[64];
    fake_conf(&w, &conf, url, sizeof(url));
    conf.bundle = other.bundle;
    ident_svid *s = NULL;
    ward_err err;
    ward_err_clear(&err);
    assert_true(ident_client_attest(&conf, "good-token", &s, &err) < 0);
    assert_null(s);
    assert_non_null(strstr(err.msg, "does not verify against the pinned bundle"));
    assert_int_equal(atomic_load(&w.attests), 0); /* the token never left */
    /* another trust domain's bundle */
    test_ca foreign;
    ca_init(&foreign, "other.org");
    conf.bundle = foreign.bundle;
    ward_err_clear(&err);
    assert_true(ident_client_attest(&conf, "good-token", &s, &err) < 0);
    assert_int_equal(atomic_load(&w.attests), 0);
    /* no pin at all is refused unless insecure bootstrap is asked for */
    conf.bundle = NULL;
    ward_err_clear(&err);
    assert_true(ident_client_attest(&conf, "good-token", &s, &err) < 0);
    assert_non_null(strstr(err.msg, "no pinned bundle"));
    conf.insecure_bootstrap = true;
    assert_int_equal(ident_client_attest(&conf, "good-token", &s, &err), 0);
    ident_svid_unref(s);
    ca_dispose(&other);
    ca_dispose(&foreign);
    fake_stop(&w);
}

static void test_server_must_be_ward_server(void **state)
{
    fake_wardd w;
    fake_start(&w, "spiffe://" TD "/ns/evil/sa/impostor"); /* a valid SVID, not wardd's */
    ident_client_conf conf;
    char url[64];
    fake_conf(&w, &conf, url, sizeof(url));
    ident_svid *s = NULL;
    ward_err err;
    ward_err_clear(&err);
    assert_true(ident_client_attest(&conf, "good-token", &s, &err) < 0);
    assert_non_null(strstr(err.msg, "expected spiffe://example.org/ward/server"));
    assert_int_equal(atomic_load(&w.attests), 0);
    fake_stop(&w);
}

static void test_oversized_answer_refused(void **state)
{
    fake_wardd w;
    fake_start(&w, "spiffe://" TD "/ward/server");
    w.oversized = true;
    ident_client_conf conf;
    char url[64];
    fake_conf(&w, &conf, url, sizeof(url));
    ward_buf json;
    ward_buf_init(&json);
    ward_err err;
    ward_err_clear(&err);
    assert_true(ident_client_fetch_bundle(&conf, &json, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "exceeds the limit"));
    ward_buf_dispose(&json);
    fake_stop(&w);
}

static void test_unreachable_server_times_out(void **state)
{
    /* a listening socket that never answers: the read deadline fires */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    listen(lfd, 4);
    socklen_t sl = sizeof(sa);
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    char url[64];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d", ntohs(sa.sin_port));
    ident_client_conf conf = {.server = url, .insecure_bootstrap = true, .timeout_ms = 300};
    ward_err err;
    ward_err_clear(&err);
    time_t t0 = time(NULL);
    assert_true(ident_client_fetch_bundle(&conf, NULL, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "timed out"));
    assert_true(time(NULL) - t0 <= 2);
    close(lfd);
    /* nobody listening: connection refused */
    conf.server = "https://127.0.0.1:1";
    ward_err_clear(&err);
    assert_true(ident_client_fetch_bundle(&conf, NULL, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "connecting to 127.0.0.1:1"));
}

typedef struct cb_log {
    atomic_int ok, failed;
} cb_log;

static void count_cb(ident_svid *svid, const ward_err *why, void *data)
{
    cb_log *log = data;
    if (svid != NULL)
        atomic_fetch_add(&log->ok, 1);
    else
        atomic_fetch_add(&log->failed, 1);
}

static void test_renewal_loop(void **state)
{
    fake_wardd w;
    fake_start(&w, "spiffe://" TD "/ward/server");
    w.svid_ttl = 4; /* renewed about every 2 s */
    cb_log log = {0};
    ident_client_options o;
    memset(&o, 0, sizeof(o));
    char url[64];
    fake_conf(&w, &o.conf, url, sizeof(url));
    o.token = "good-token";
    o.state_dir = tmpdir;
    o.cb = count_cb;
    o.data = &log;
    ident_client *c = NULL;
    ward_err err;
    ward_err_clear(&err);
    assert_int_equal(ident_client_start(&o, &c, &err), 0);
    ident_svid *first = ident_client_wait(c, 5000);
    assert_non_null(first);
    assert_string_equal(ident_svid_id(first), WORKLOAD);
    /* after a renewal the current snapshot is another one; the old stays valid for its holder */
    ident_svid *later = NULL;
    for (int i = 0; i < 60; i++) {
        usleep(100000);
        later = ident_client_current(c);
        if (later != NULL && later != first)
            break;
        ident_svid_unref(later);
        later = NULL;
    }
    assert_non_null(later);
    assert_ptr_not_equal(later, first);
    assert_string_equal(ident_svid_id(first), WORKLOAD);
    assert_int_equal(atomic_load(&w.attests), 1);
    assert_true(atomic_load(&w.renews) >= 1);
    assert_true(atomic_load(&log.ok) >= 2);
    /* the state dir holds the newest SVID */
    char p[256];
    struct stat st;
    snprintf(p, sizeof(p), "%s/svid.key", tmpdir);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    ident_svid_unref(first);
    ident_svid_unref(later);
    ident_client_stop(c);
    fake_stop(&w);
}

static void test_renewal_loop_keeps_old_svid_while_down(void **state)
{
    /* An SVID at its renewal time, and wardd gone: the loop retries with
     * backoff and current() keeps returning the old snapshot. */
    test_ca ca;
    ca_init(&ca, TD);
    EVP_PKEY *k = new_key();
    STACK_OF(X509) *chain = leaf_chain(&ca, k, WORKLOAD, -100, 130);
    ident_svid *s = NULL;
    assert_int_equal(ident_svid_new(k, chain, ca.bundle, time(NULL), &s, NULL), 0);
    cb_log log = {0};
    ident_client_options o;
    memset(&o, 0, sizeof(o));
    o.conf.server = "https://127.0.0.1:1";
    o.conf.timeout_ms = 500;
    o.initial = s;
    o.cb = count_cb;
    o.data = &log;
    ident_client *c = NULL;
    ward_err err;
    ward_err_clear(&err);
    assert_int_equal(ident_client_start(&o, &c, &err), 0);
    for (int i = 0; i < 40 && atomic_load(&log.failed) < 2; i++)
        usleep(100000);
    /* first try at once, the retry after ~1 s */
    assert_true(atomic_load(&log.failed) >= 2);
    assert_int_equal(atomic_load(&log.ok), 0);
    ident_svid *cur = ident_client_current(c);
    assert_ptr_equal(cur, s);
    ident_svid_unref(cur);
    time_t t0 = time(NULL);
    ident_client_stop(c); /* interrupts the backoff sleep */
    assert_true(time(NULL) - t0 <= 1);
    ident_svid_unref(s);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(k);
    ca_dispose(&ca);
}

/* A one-shot admin socket server answering with a canned response. */
typedef struct fake_admin {
    int lfd;
    pthread_t th;
    const char *answer;
    char request[4096];
} fake_admin;

static void *admin_run(void *arg)
{
    fake_admin *a = arg;
    int fd = accept(a->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, a->request + len, sizeof(a->request) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        a->request[len] = '\0';
        char *h = strstr(a->request, "\r\n\r\n");
        const char *cl = strcasestr(a->request, "Content-Length: ");
        if (h != NULL && cl != NULL && len >= (size_t)(h + 4 - a->request) + (size_t)atol(cl + 16))
            break;
    }
    ssize_t w = write(fd, a->answer, strlen(a->answer));
    (void)w;
    close(fd);
    return NULL;
}

static void admin_start(fake_admin *a, const char *path, const char *answer)
{
    memset(a, 0, sizeof(*a));
    a->answer = answer;
    a->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    unlink(path);
    assert_int_equal(bind(a->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(a->lfd, 1), 0);
    assert_int_equal(pthread_create(&a->th, NULL, admin_run, a), 0);
}

static void admin_stop(fake_admin *a)
{
    pthread_join(a->th, NULL);
    close(a->lfd);
}

static void test_token_create_over_admin_socket(void **state)
{
    char path[128], token[IDENT_TOKEN_MAX];
    snprintf(path, sizeof(path), "%s/admin.sock", tmpdir);
    fake_admin a;
    ward_buf json;
    ward_buf_init(&json);
    ward_err err;
    ward_err_clear(&err);
    admin_start(&a, path,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 88\r\n\r\n"
                "{\"token\":\"tok-123\",\"spiffe_id\":\"" WORKLOAD "\",\"expires_at\":\"x\"}  ");
    assert_int_equal(ident_client_token_create(path, WORKLOAD, "5m", 2000, token, &json, &err), 0);
    admin_stop(&a);
    assert_string_equal(token, "tok-123");
    assert_non_null(strstr(a.request, "POST /v1/admin/tokens HTTP/1.1\r\n"));
    assert_non_null(strstr(a.request, "Content-Type: application/json\r\n"));
    assert_non_null(strstr(a.request, "\"spiffe_id\":\"" WORKLOAD "\""));
    assert_non_null(strstr(a.request, "\"ttl\":\"5m\""));
    assert_non_null(strstr(json.ptr, "expires_at"));
    /* a refusal is explained */
    admin_start(
        &a, path,
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 47\r\n\r\n"
        "{\"error\":\"forbidden\",\"message\":\"not the owner\"}");
    ward_err_clear(&err);
    assert_true(ident_client_token_create(path, WORKLOAD, NULL, 2000, token, NULL, &err) < 0);
    admin_stop(&a);
    assert_string_equal(err.msg, "wardd refused to create the token: 403 forbidden: not the owner");
    /* an answer without a token */
    admin_start(&a, path, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
    ward_err_clear(&err);
    assert_true(ident_client_token_create(path, WORKLOAD, NULL, 2000, token, NULL, &err) < 0);
    admin_stop(&a);
    assert_non_null(strstr(err.msg, "no usable \"token\""));
    /* a malformed answer */
    admin_start(&a, path, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}");
    ward_err_clear(&err);
    assert_true(ident_client_token_create(path, WORKLOAD, NULL, 2000, token, NULL, &err) < 0);
    admin_stop(&a);
    assert_non_null(strstr(err.msg, "conflicting Content-Length"));
    /* a bad ID never leaves; nobody listening */
    assert_true(ident_client_token_create(path, "spiffe://x/../y", NULL, 2000, token, NULL, &err) <
                0);
    unlink(path);
    ward_err_clear(&err);
    assert_true(ident_client_token_create(path, WORKLOAD, NULL, 2000, token, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "admin.sock"));
    ward_buf_dispose(&json);
}

static void test_client_start_needs_svid_or_token(void **state)
{
    ident_client_options o;
    memset(&o, 0, sizeof(o));
    o.conf.server = "https://127.0.0.1:8443";
    ident_client *c = NULL;
    ward_err err;
    ward_err_clear(&err);
    assert_true(ident_client_start(&o, &c, &err) < 0);
    assert_null(c);
    assert_non_null(strstr(err.msg, "no usable SVID and no join token"));
    o.token = "t";
    ward_err_clear(&err);
    assert_true(ident_client_start(&o, &c, &err) < 0); /* nor a pin */
    assert_non_null(strstr(err.msg, "pinned bundle"));
    o.conf.server = "http://127.0.0.1:8443";
    o.conf.insecure_bootstrap = true;
    assert_true(ident_client_start(&o, &c, &err) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_is_p256),
        cmocka_unit_test(test_csr_parse_back),
        cmocka_unit_test(test_csr_without_id_has_no_san),
        cmocka_unit_test(test_csr_refuses_bad_id),
        cmocka_unit_test(test_snapshot_accessors_and_refs),
        cmocka_unit_test(test_snapshot_refs_across_threads),
        cmocka_unit_test(test_snapshot_refuses_wrong_key),
        cmocka_unit_test(test_snapshot_refuses_expired_and_foreign),
        cmocka_unit_test_setup_teardown(test_write_dir_and_load, setup_tmp, teardown_tmp),
        cmocka_unit_test(test_http_content_length),
        cmocka_unit_test(test_http_chunked),
        cmocka_unit_test(test_http_close_delimited),
        cmocka_unit_test(test_http_malformed),
        cmocka_unit_test(test_http_oversized),
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_describe_error),
        cmocka_unit_test(test_backoff_schedule),
        cmocka_unit_test(test_renew_schedule),
        cmocka_unit_test(test_svid_response),
        cmocka_unit_test(test_attest_renew_over_tls),
        cmocka_unit_test(test_wrong_pin_refuses_connection),
        cmocka_unit_test(test_server_must_be_ward_server),
        cmocka_unit_test(test_oversized_answer_refused),
        cmocka_unit_test(test_unreachable_server_times_out),
        cmocka_unit_test_setup_teardown(test_renewal_loop, setup_tmp, teardown_tmp),
        cmocka_unit_test(test_renewal_loop_keeps_old_svid_while_down),
        cmocka_unit_test_setup_teardown(test_token_create_over_admin_socket, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test(test_client_start_needs_svid_or_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
