/* test_tokens.c - join tokens: single use, expiry, rate limit, persistence, hashed storage */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/identity/pki.h"

typedef struct fx {
    char *dir;
    ident_tokens *t;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    f->dir = pki_tmpdir();
    ward_err err;
    assert_int_equal(ident_tokens_open(f->dir, &f->t, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    ident_tokens_free(f->t);
    pki_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void create(fx *f, uint64_t ttl, char *tok)
{
    ward_err err;
    assert_int_equal(ident_tokens_create(f->t, PKI_ID, ttl, T0, tok, &err), 0);
}

static int redeem(fx *f, const char *tok, time_t now, char *id, ward_err *why)
{
    id[0] = '\0';
    ward_err_clear(why);
    return ident_tokens_redeem(f->t, tok, now, id, why);
}

static char *file_text(fx *f)
{
    char path[512], *data;
    size_t len;
    snprintf(path, sizeof(path), "%s/tokens.json", f->dir);
    assert_int_equal(ward_file_read(path, 0, &data, &len, NULL), 0);
    return data;
}

static void reopen(fx *f)
{
    ward_err err;
    ident_tokens_free(f->t);
    assert_int_equal(ident_tokens_open(f->dir, &f->t, &err), 0);
}

static void test_token_is_random_base64url(void **state)
{
    fx *f = *state;
    char a[IDENT_TOKEN_MAX], b[IDENT_TOKEN_MAX];
    create(f, 0, a);
    create(f, 0, b);
    assert_int_equal(strlen(a), 43); /* 256 bits */
    assert_int_equal(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                     43);
    assert_string_not_equal(a, b);
}

static void test_redeem_once(void **state)
{
    fx *f = *state;
    char tok[IDENT_TOKEN_MAX], id[IDENT_ID_MAX];
    ward_err why;
    create(f, 0, tok);
    assert_int_equal(redeem(f, tok, T0 + 1, id, &why), 0);
    assert_string_equal(id, PKI_ID);
}

static void test_reuse_refused(void **state)
{
    fx *f = *state;
    char tok[IDENT_TOKEN_MAX], id[IDENT_ID_MAX];
    ward_err why;
    create(f, 0, tok);
    assert_int_equal(redeem(f, tok, T0 + 1, id, &why), 0);
    assert_int_equal(redeem(f, tok, T0 + 2, id, &why), WARD_EINVAL);
    assert_true(contains(why.msg, "already used"));
    assert_string_equal(id, "");
}

static void test_expired_refused(void **state)
{
    fx *f = *state;
    char tok[IDENT_TOKEN_MAX], id[IDENT_ID_MAX];
    ward_err why;
    create(f, 60, tok);
    assert_int_equal(redeem(f, tok, T0 + 60, id, &why), WARD_ERANGE);
    assert_true(contains(why.msg, "expired at 2027-01-15T08:01:00Z"));
}

static void test_default_ttl_ten_minutes(void **state)
{
    fx *f = *state;
    char a[IDENT_TOKEN_MAX], b[IDENT_TOKEN_MAX], id[IDENT_ID_MAX];
    ward_err why;
    create(f, 0, a);
    create(f, 0, b);
    assert_int_equal(redeem(f, a, T0 + 599, id, &why), 0);
    assert_int_equal(redeem(f, b, T0 + 600, id, &why), WARD_ERANGE);
}

static void test_unknown_refused(void **state)
{
    fx *f = *state;
    char tok[IDENT_TOKEN_MAX], id[IDENT_ID_MAX];
    ward_err why;
    create(f, 0, tok);
    tok[5] = tok[5] == 'A' ? 'B' : 'A';
    assert_int_equal(redeem(f, tok, T0, id, &why), WARD_ENOENT);
    assert_true(contains(why.msg, "unknown join token"));
    assert_int_equal(redeem(f, "", T0, id, &why), WARD_ENOENT);
    char longtok[200];
    memset(longtok, 'A', sizeof(longtok) - 1);
    longtok[sizeof(longtok) - 1] = '\0';
    assert_int_equal(redeem(f, longtok, T0, id, &why), WARD_ENOENT);
}

static void test_rate_limited_after_ten_failures(void **state)
{
    fx *f = *state;
    char tok[IDENT_TOKEN_MAX], id[IDENT_ID_MAX];
    ward_err why;
    create(f, 3600, tok);
    for (int i = 0; i < 10; i++)
        assert_int_equal(redeem(f, "guess", T0 + i, id, &why), WARD_ENOENT);
    /* now even the right token is refused ... */
    assert_int_equal(redeem(f, tok, T0 + 10, id, &why), WARD_ELIMIT);
    assert_true(contains(why.msg, "rate limited"));
    assert_int_equal(redeem(f, tok, T0 + 9 + 29, id, &why), WARD_ELIMIT);
    /* ... for 30 s, and it was not consumed */
    assert_int_equal(redeem(f, tok, T0 + 9 + 30, id, &why), 0);
    assert_string_equal(id, PKI_ID);
}

static void test_slow_failures_not_limited(void **state)
{
    fx *f = *state;
    char tok[IDENT_TOKEN_MAX], id[IDENT_ID_MAX];
    ward_err why;
    create(f, 3600, tok);
    for (int i = 0; i < 20; i++) /* one every 7 s: at most 9 in any minute */
        assert_int_equal(redeem(f, "guess", T0 + 7 * i, id, &why), WARD_ENOENT);
    assert_int_equal(redeem(f, tok, T0 + 140, id, &why), 0);
}

static void test_persists_across_reopen(void **state)
{
    fx *f = *state;
    char a[IDENT_TOKEN_MAX], b[IDENT_TOKEN_MAX], id[IDENT_ID_MAX];
    ward_err why;
    create(f, 0, a);
    create(f, 0, b);
    assert_int_equal(redeem(f, a, T0 + 1, id, &why), 0);
    reopen(f);
    assert_int_equal(redeem(f, a, T0 + 2, id, &why), WARD_EINVAL); /* used survives */
    assert_int_equal(redeem(f, b, T0 + 2, id, &why), 0);           /* unused survives */
    assert_string_equal(id, PKI_ID);
}

static void test_stored_hashed_only(void **state)
{
    fx *f = *state;
    char tok[IDENT_TOKEN_MAX];
    create(f, 0, tok);
    char *text = file_text(f);
    assert_null(strstr(text, tok));
    unsigned char h[32];
    char hex[65];
    EVP_Digest(tok, strlen(tok), h, NULL, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", h[i]);
    assert_true(contains(text, hex));
    assert_true(contains(text, PKI_ID));
    free(text);
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/tokens.json", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_revoke(void **state)
{
    fx *f = *state;
    char tok[IDENT_TOKEN_MAX], id[IDENT_ID_MAX];
    ward_err why;
    create(f, 0, tok);
    assert_int_equal(ident_tokens_revoke(f->t, tok, &why), 0);
    assert_int_equal(ident_tokens_revoke(f->t, tok, &why), WARD_ENOENT);
    reopen(f);
    assert_int_equal(redeem(f, tok, T0, id, &why), WARD_ENOENT);
}

static void test_create_refuses_bad_input(void **state)
{
    fx *f = *state;
    char tok[IDENT_TOKEN_MAX];
    ward_err err;
    assert_int_equal(ident_tokens_create(f->t, "spiffe://example.org/a/", 0, T0, tok, &err),
                     WARD_EINVAL);
    assert_int_equal(ident_tokens_create(f->t, "spiffe://example.org", 0, T0, tok, &err),
                     WARD_EINVAL);
    assert_int_equal(ident_tokens_create(f->t, PKI_ID, 31 * 86400, T0, tok, &err), WARD_ERANGE);
    assert_string_equal(tok, "");
}

static void test_corrupted_file_refused(void **state)
{
    fx *f = *state;
    char path[512];
    snprintf(path, sizeof(path), "%s/tokens.json", f->dir);
    FILE *fp = fopen(path, "w");
    fputs("{\"version\":1,\"tokens\":[{\"sha256\":\"zz\"}]}", fp);
    fclose(fp);
    ident_tokens *t = NULL;
    ward_err err;
    assert_int_not_equal(ident_tokens_open(f->dir, &t, &err), 0);
    assert_null(t);
    assert_true(contains(err.msg, "tokens[0] is malformed"));
}

static void test_old_entries_forgotten(void **state)
{
    fx *f = *state;
    char a[IDENT_TOKEN_MAX], b[IDENT_TOKEN_MAX], id[IDENT_ID_MAX];
    ward_err why, err;
    create(f, 60, a);
    /* a day after a's expiry, creating another token forgets a */
    assert_int_equal(ident_tokens_create(f->t, PKI_ID, 60, T0 + 86400 + 61, b, &err), 0);
    assert_int_equal(redeem(f, a, T0 + 86400 + 62, id, &why), WARD_ENOENT);
    assert_int_equal(redeem(f, b, T0 + 86400 + 62, id, &why), 0);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_token_is_random_base64url),
        T(test_redeem_once),
        T(test_reuse_refused),
        T(test_expired_refused),
        T(test_default_ttl_ten_minutes),
        T(test_unknown_refused),
        T(test_rate_limited_after_ten_failures),
        T(test_slow_failures_not_limited),
        T(test_persists_across_reopen),
        T(test_stored_hashed_only),
        T(test_revoke),
        T(test_create_refuses_bad_input),
        T(test_corrupted_file_refused),
        T(test_old_entries_forgotten),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
