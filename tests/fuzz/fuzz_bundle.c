/* fuzz_bundle.c - libFuzzer target: bytes -> SPIFFE bundle (JSON and PEM); whatever is accepted survives a round trip unchanged */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "common/ward.h"
#include "identity/identity.h"

/*
 * Each input is read as SPIFFE bundle JSON (ident_bundle_from_json) and as
 * PEM certificates (ident_bundle_from_pem). When either accepts it, the
 * bundle must round-trip: J1 = to_json(B), B2 = from_json(J1) must succeed
 * and to_json(B2) must be byte-identical to J1, with the same authorities
 * in the same order and the same sequence; likewise through to_pem/from_pem
 * when it has X.509 authorities. A refusal must carry a message. Any
 * violation abort()s.
 *
 * The seeds in tests/fuzz/corpus/fuzz_bundle/ are written by this target:
 *   WARD_FUZZ_WRITE_SEEDS=tests/fuzz/corpus/fuzz_bundle build/fuzz/fuzz_bundle -runs=0
 * (a real CA's bundle as JSON and PEM, the same after a rotation was
 * prepared, one with JWT keys of every supported kind, and edge cases),
 * except two made by hand: duplicate.pem (ca_bundle.pem twice) and
 * explicit_curve.pem (a P-256 key with explicit curve parameters:
 * openssl ecparam -name prime256v1 -param_enc explicit -genkey, then
 * openssl req -x509 -addext basicConstraints=critical,CA:TRUE).
 */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TRUST_DOMAIN "example.org"
#define NOW          ((time_t)1767225600) /* 2026-01-01T00:00:00Z */

static bool g_verbose; /* WARD_FUZZ_VERBOSE=1: print each verdict (to check seeds) */

static void die(const char *what, const char *detail, const ward_buf *a, const ward_buf *b)
{
    fprintf(stderr, "fuzz_bundle: %s: %s\n", what, detail ? detail : "");
    if (a != NULL && a->ptr != NULL)
        fprintf(stderr, "---- first (%zu bytes) ----\n%.*s\n", a->len, (int)a->len, a->ptr);
    if (b != NULL && b->ptr != NULL)
        fprintf(stderr, "---- second (%zu bytes) ----\n%.*s\n", b->len, (int)b->len, b->ptr);
    abort();
}

static bool buf_eq(const ward_buf *a, const ward_buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0);
}

/* Same trust domain, sequence and X.509 authorities (in order). */
static bool bundle_same(const ident_bundle *a, const ident_bundle *b, bool sequence)
{
    if (strcmp(ident_bundle_trust_domain(a), ident_bundle_trust_domain(b)) != 0 ||
        (sequence && ident_bundle_sequence(a) != ident_bundle_sequence(b)) ||
        ident_bundle_x509_count(a) != ident_bundle_x509_count(b))
        return false;
    for (size_t i = 0; i < ident_bundle_x509_count(a); i++)
        if (X509_cmp(ident_bundle_x509(a, i), ident_bundle_x509(b, i)) != 0)
            return false;
    return true;
}

static void json_round_trip(const ident_bundle *b, const char *from)
{
    ward_buf j1, j2;
    ward_err err;
    ident_bundle *b2 = NULL;
    ward_buf_init(&j1);
    ward_buf_init(&j2);
    ward_err_clear(&err);
    int rc = ident_bundle_to_json(b, &j1);
    if (rc == WARD_ENOMEM)
        goto out;
    if (rc != 0)
        die("a bundle accepted from this input cannot be written as JSON", from, NULL, NULL);
    rc = ident_bundle_from_json(TRUST_DOMAIN, j1.ptr, j1.len, &b2, &err);
    if (rc == WARD_ENOMEM)
        goto out;
    if (rc != 0)
        die("our own bundle JSON is refused", err.msg, &j1, NULL);
    rc = ident_bundle_to_json(b2, &j2);
    if (rc == WARD_ENOMEM)
        goto out;
    if (rc != 0 || !buf_eq(&j1, &j2))
        die("bundle JSON changes on a round trip", from, &j1, &j2);
    if (!bundle_same(b, b2, true))
        die("bundle authorities or sequence change on a JSON round trip", from, &j1, NULL);
out:
    ident_bundle_unref(b2);
    ward_buf_dispose(&j1);
    ward_buf_dispose(&j2);
}

static void pem_round_trip(const ident_bundle *b, const char *from)
{
    ward_buf p1, p2;
    ward_err err;
    ident_bundle *b2 = NULL;
    ward_buf_init(&p1);
    ward_buf_init(&p2);
    ward_err_clear(&err);
    if (ident_bundle_x509_count(b) == 0)
        goto out; /* a PEM bundle has at least one certificate */
    int rc = ident_bundle_to_pem(b, &p1);
    if (rc == WARD_ENOMEM)
        goto out;
    if (rc != 0)
        die("a bundle accepted from this input cannot be written as PEM", from, NULL, NULL);
    rc = ident_bundle_from_pem(TRUST_DOMAIN, p1.ptr, p1.len, &b2, &err);
    if (rc == WARD_ENOMEM)
        goto out;
    if (rc != 0)
        die("our own bundle PEM is refused", err.msg, &p1, NULL);
    rc = ident_bundle_to_pem(b2, &p2);
    if (rc == WARD_ENOMEM)
        goto out;
    if (rc != 0 || !buf_eq(&p1, &p2))
        die("bundle PEM changes on a round trip", from, &p1, &p2);
    if (!bundle_same(b, b2, false))
        die("bundle authorities change on a PEM round trip", from, &p1, NULL);
out:
    ident_bundle_unref(b2);
    ward_buf_dispose(&p1);
    ward_buf_dispose(&p2);
}

typedef int (*bundle_parse_fn)(const char *td, const char *s, size_t len, ident_bundle **out,
                               ward_err *err);

static void check_one(bundle_parse_fn parse, const char *from, const uint8_t *data, size_t size)
{
    ident_bundle *b = NULL;
    ward_err err;
    ward_err_clear(&err);
    int rc = parse(TRUST_DOMAIN, (const char *)data, size, &b, &err);
    if (g_verbose && rc == 0)
        fprintf(stderr, "fuzz_bundle: %s: accepted, %zu X.509 authorities\n", from,
                ident_bundle_x509_count(b));
    else if (g_verbose)
        fprintf(stderr, "fuzz_bundle: %s: %s\n", from, err.msg);
    if (rc == 0) {
        if (b == NULL || strcmp(ident_bundle_trust_domain(b), TRUST_DOMAIN) != 0)
            die("accepted bundle has another trust domain", from, NULL, NULL);
        json_round_trip(b, from);
        pem_round_trip(b, from);
    } else if (b != NULL) {
        die("a refused bundle was returned anyway", from, NULL, NULL);
    } else if (rc != WARD_ENOMEM && err.msg[0] == '\0') {
        die("bundle refused without a message", from, NULL, NULL);
    }
    ident_bundle_unref(b);
    ERR_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_one(ident_bundle_from_json, "JSON", data, size);
    check_one(ident_bundle_from_pem, "PEM", data, size);
    return 0;
}

/* ---- seeds (WARD_FUZZ_WRITE_SEEDS=DIR) ---------------------------------------------- */

static char g_dir[] = "/tmp/ward-fuzz-bundle-XXXXXX";

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void seed_write(const char *dir, const char *name, const char *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0)
        die("cannot write a seed", path, NULL, NULL);
    fprintf(stderr, "fuzz_bundle: wrote %s (%zu bytes)\n", path, len);
}

static void seed_bundle(const char *dir, const char *name, const ident_bundle *b, bool pem)
{
    ward_buf out;
    ward_buf_init(&out);
    if ((pem ? ident_bundle_to_pem(b, &out) : ident_bundle_to_json(b, &out)) != 0)
        die("cannot serialize a seed bundle", name, NULL, NULL);
    seed_write(dir, name, out.ptr, out.len);
    ward_buf_dispose(&out);
}

static void add_jwt_key(ident_bundle *b, const char *kid, EVP_PKEY *key)
{
    if (key == NULL || ident_bundle_add_jwt(b, kid, key) != 0)
        die("cannot add a seed JWT key", kid, NULL, NULL);
    EVP_PKEY_free(key);
}

static void write_seeds(const char *dir)
{
    static const char *const edge[][2] = {
        {"empty_keys.json", "{\"keys\":[]}"},
        {"no_x5c.json", "{\"keys\":[{\"use\":\"x509-svid\",\"kty\":\"EC\",\"crv\":\"P-256\","
                        "\"x5c\":[]}],\"spiffe_sequence\":0}"},
        {"unknown_kinds.json",
         "{\"keys\":[{\"use\":\"jwt-svid\",\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"ed\","
         "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"},{\"use\":\"other\",\"kty\":"
         "\"EC\"},{\"use\":\"jwt-svid\",\"kty\":\"EC\",\"crv\":\"P-192\",\"kid\":\"p192\"}],"
         "\"spiffe_sequence\":9007199254740992,\"spiffe_refresh_hint\":1e3}"},
        {"not_object.json", "[{\"keys\":[]}]"},
        {"bad_sequence.json", "{\"keys\":[],\"spiffe_sequence\":-1.5}"},
    };
    ward_err err;
    ward_err_clear(&err);
    ident_ca *ca = NULL;
    if (mkdtemp(g_dir) == NULL)
        die("mkdtemp failed", g_dir, NULL, NULL);
    ident_ca_options opts = {.trust_domain = TRUST_DOMAIN, .data_dir = g_dir};
    if (ident_ca_open(&opts, NOW, &ca, &err) != 0)
        die("ident_ca_open failed", err.msg, NULL, NULL);
    ident_bundle *b = ident_ca_bundle(ca);
    seed_bundle(dir, "ca_bundle.json", b, false);
    seed_bundle(dir, "ca_bundle.pem", b, true);

    /* Every JWT key kind a bundle carries, beside the CA's authority. */
    ident_bundle *all = NULL;
    if (ident_bundle_new(TRUST_DOMAIN, &all, &err) != 0 ||
        ident_bundle_add_x509(all, ident_bundle_x509(b, 0)) != 0)
        die("cannot build the seed bundle", err.msg, NULL, NULL);
    add_jwt_key(all, "p256", EVP_EC_gen("P-256"));
    add_jwt_key(all, "p384", EVP_EC_gen("P-384"));
    add_jwt_key(all, "p521", EVP_EC_gen("P-521"));
    add_jwt_key(all, "rsa-2048", EVP_RSA_gen(2048));
    ident_bundle_set_sequence(all, 9007199254740992ull);
    ident_bundle_set_refresh_hint(all, 0);
    seed_bundle(dir, "all_key_kinds.json", all, false);
    ident_bundle_unref(all);
    ident_bundle_unref(b);

    /* Half-way through the CA's lifetime the next CA is prepared: two of each. */
    if (ident_ca_tick(ca, NOW + 12 * 3600 + 60, &err) != 1)
        die("the CA did not prepare its successor", err.msg, NULL, NULL);
    b = ident_ca_bundle(ca);
    seed_bundle(dir, "ca_rotating.json", b, false);
    seed_bundle(dir, "ca_rotating.pem", b, true);
    ident_bundle_unref(b);
    ident_ca_free(ca);
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);

    for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]); i++)
        seed_write(dir, edge[i][0], edge[i][1], strlen(edge[i][1]));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = getenv("WARD_FUZZ_WRITE_SEEDS");
    g_verbose = getenv("WARD_FUZZ_VERBOSE") != NULL;
    if (dir != NULL && dir[0] != '\0')
        write_seeds(dir);
    return 0;
}
