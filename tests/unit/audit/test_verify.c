/* test_verify.c - unit tests of audit verification: clean trails, every tampering kind, keys, torn
 * lines, the segment reader */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "audit/audit.h"
#include "common/ward.h"

#define NODE "spiffe://example.org/ns/shop/sa/proxy"

/* ---- a minimal writer of docs/audit.md trails, independent of audit/log.c -------------- */

typedef struct trail {
    char dir[64];
    EVP_PKEY *key;
    char prev[65]; /* hash of the last record */
    uint64_t seq;  /* of the last record */
    FILE *seg;
    char seg_name[64];
    const char *node; /* NULL: "node":null */
    int salt;         /* != 0: records differ from another trail's */
} trail;

static void hex(char *out, const unsigned char *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", in[i]);
}

static void sha256_hex(char out[65], const void *data, size_t n)
{
    unsigned char h[32];
    unsigned hl;
    assert_int_equal(EVP_Digest(data, n, h, &hl, EVP_sha256(), NULL), 1);
    hex(out, h, 32);
}

static EVP_PKEY *keygen(void)
{
    EVP_PKEY *k = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    assert_non_null(c);
    assert_int_equal(EVP_PKEY_keygen_init(c), 1);
    assert_int_equal(EVP_PKEY_keygen(c, &k), 1);
    EVP_PKEY_CTX_free(c);
    return k;
}

static void write_pub(EVP_PKEY *k, const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PUBKEY(f, k), 1);
    fclose(f);
}

static void key_id_of(EVP_PKEY *k, char out[17])
{
    unsigned char raw[32];
    size_t len = 32;
    char h[65];
    assert_int_equal(EVP_PKEY_get_raw_public_key(k, raw, &len), 1);
    sha256_hex(h, raw, len);
    memcpy(out, h, 16);
    out[16] = '\0';
}

static void path_of(const trail *t, const char *name, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", t->dir, name);
}

static void trail_open(trail *t)
{
    char p[128];
    memset(t, 0, sizeof(*t));
    strcpy(t->dir, "/tmp/ward-verify-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    t->key = keygen();
    memset(t->prev, '0', 64);
    t->node = NODE;
    path_of(t, "checkpoint.pub", p, sizeof(p));
    write_pub(t->key, p);
}

static void trail_segment(trail *t)
{
    char p[128];
    if (t->seg != NULL)
        fclose(t->seg);
    snprintf(t->seg_name, sizeof(t->seg_name), "segment-%020" PRIu64 ".jsonl", t->seq + 1);
    path_of(t, t->seg_name, p, sizeof(p));
    t->seg = fopen(p, "w");
    assert_non_null(t->seg);
}

/* One record (a gap record when gap > 0). */
static void trail_record_gap(trail *t, int gap)
{
    char body[1024], hashed[1200];
    uint64_t seq = ++t->seq;
    if (gap > 0)
        snprintf(body, sizeof(body),
                 "{\"v\":1,\"seq\":%" PRIu64 ",\"ts\":\"2026-11-26T02:00:%02d.000000Z\","
                 "\"node\":\"" NODE "\",\"gap\":%d,\"reason\":\"dropped\"",
                 seq, (int)(seq % 60), gap);
    else
        snprintf(body, sizeof(body),
                 "{\"v\":1,\"seq\":%" PRIu64 ",\"ts\":\"2026-11-26T02:00:%02d.000000Z\","
                 "\"id\":\"%032" PRIx64 "\",\"node\":\"" NODE "\",\"direction\":\"inbound\","
                 "\"decision\":\"%s\",\"policy\":\"shop/p\",\"rule\":0,\"reason\":\"r%.0d\","
                 "\"audit\":false,\"dry_run\":null,\"source\":{\"principal\":\"spiffe://"
                 "example.org/ns/shop/sa/c%d\",\"ip\":\"10.0.0.1\",\"port\":4000},"
                 "\"destination\":{\"service\":\"payments\",\"principal\":null,\"port\":8443},"
                 "\"request\":{\"method\":\"GET\",\"host\":\"payments\",\"path\":\"/v1/items\","
                 "\"protocol\":\"HTTP/1.1\"},\"response\":{\"status\":200},\"bundle\":\"b\","
                 "\"trace_id\":null,\"latency_ns\":100,\"peer_cert_sha256\":null",
                 seq, (int)(seq % 60), seq, seq % 3 ? "allow" : "deny", t->salt, (int)(seq % 4));
    snprintf(hashed, sizeof(hashed), "%s,\"prev\":\"%s\"", body, t->prev);
    sha256_hex(t->prev, hashed, strlen(hashed));
    fprintf(t->seg, "%s,\"hash\":\"%s\"}\n", hashed, t->prev);
}

static void trail_record(trail *t)
{
    trail_record_gap(t, 0);
}

/* A signed checkpoint for the last record; head NULL = the real one. */
static void trail_checkpoint_head(trail *t, const char *head, EVP_PKEY *signer)
{
    char p[128], msg[512], kid[17], ts[] = "2026-11-26T02:01:00.000000Z";
    unsigned char sig[64], b64[100];
    size_t siglen = sizeof(sig);
    head = head != NULL ? head : t->prev;
    fflush(t->seg);
    snprintf(msg, sizeof(msg), "ward-audit-checkpoint/1\n%s\n%" PRIu64 "\n%s\n%s\n",
             t->node ? t->node : "", t->seq, head, ts);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(md, NULL, NULL, NULL, signer ? signer : t->key), 1);
    assert_int_equal(EVP_DigestSign(md, sig, &siglen, (unsigned char *)msg, strlen(msg)), 1);
    EVP_MD_CTX_free(md);
    EVP_EncodeBlock(b64, sig, 64);
    key_id_of(t->key, kid);
    path_of(t, "checkpoints.jsonl", p, sizeof(p));
    FILE *f = fopen(p, "a");
    assert_non_null(f);
    if (t->node)
        fprintf(f,
                "{\"v\":1,\"seq\":%" PRIu64 ",\"head\":\"%s\",\"ts\":\"%s\",\"node\":\"%s\","
                "\"segment\":\"%s\",\"key\":\"%s\",\"sig\":\"%s\"}\n",
                t->seq, head, ts, t->node, t->seg_name, kid, b64);
    else
        fprintf(f,
                "{\"v\":1,\"seq\":%" PRIu64 ",\"head\":\"%s\",\"ts\":\"%s\",\"node\":null,"
                "\"segment\":\"%s\",\"key\":\"%s\",\"sig\":\"%s\"}\n",
                t->seq, head, ts, t->seg_name, kid, b64);
    fclose(f);
}

static void trail_checkpoint(trail *t)
{
    trail_checkpoint_head(t, NULL, NULL);
}

/* 3 segments of 50 records, a checkpoint every 20 and at each segment's end. */
static void trail_standard(trail *t)
{
    trail_open(t);
    for (int s = 0; s < 3; s++) {
        trail_segment(t);
        for (int i = 0; i < 50; i++) {
            trail_record(t);
            if (t->seq % 20 == 0 || i == 49)
                trail_checkpoint(t);
        }
    }
    fclose(t->seg);
    t->seg = NULL;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void trail_dispose(trail *t)
{
    if (t->seg != NULL)
        fclose(t->seg);
    EVP_PKEY_free(t->key);
    nftw(t->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- editing files ------------------------------------------------------------------------ */

typedef struct lines {
    char *data;
    char *v[512];
    size_t n;
} lines;

static void lines_read(const trail *t, const char *name, lines *l)
{
    char p[128];
    size_t len;
    ward_err err;
    path_of(t, name, p, sizeof(p));
    assert_int_equal(ward_file_read(p, 0, &l->data, &len, &err), 0);
    l->n = 0;
    for (char *s = l->data; *s != '\0';) {
        char *nl = strchr(s, '\n');
        assert_non_null(nl);
        *nl = '\0';
        l->v[l->n++] = s;
        s = nl + 1;
    }
}

static void lines_write(const trail *t, const char *name, lines *l, bool last_newline)
{
    char p[128];
    path_of(t, name, p, sizeof(p));
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    for (size_t i = 0; i < l->n; i++)
        fprintf(f, "%s%s", l->v[i], i + 1 < l->n || last_newline ? "\n" : "");
    fclose(f);
    free(l->data);
}

static const char *seg1 = "segment-00000000000000000001.jsonl";
static const char *seg2 = "segment-00000000000000000051.jsonl";
static const char *seg3 = "segment-00000000000000000101.jsonl";

static audit_verify_report rep;

static int verify(const trail *t, const char *key)
{
    audit_verify_options o = {t->dir, key, NULL, NULL};
    ward_err err;
    ward_err_clear(&err);
    return audit_verify(&o, &rep, &err);
}

static void expect_first(audit_finding_kind kind, const char *file, uint64_t line, uint64_t seq)
{
    assert_true(rep.n_findings >= 1);
    const audit_finding *f = &rep.findings[0];
    if (f->kind != kind || strcmp(f->file, file) != 0 || f->line != line || f->seq != seq)
        fail_msg("expected %s %s:%" PRIu64 " seq %" PRIu64 ", got %s %s:%" PRIu64 " seq %" PRIu64
                 " (%s)",
                 audit_finding_kind_name(kind), file, line, seq, audit_finding_kind_name(f->kind),
                 f->file, f->line, f->seq, f->detail);
}

static bool has_note(const char *needle)
{
    for (size_t i = 0; i < rep.n_notes; i++)
        if (strstr(rep.notes[i], needle) != NULL)
            return true;
    return false;
}

/* ---- clean trails -----------------------------------------------------------------------------
 */

static void test_clean_trail_verifies(void **state)
{
    trail t;
    trail_standard(&t);
    assert_int_equal(verify(&t, NULL), 0);
    assert_int_equal(rep.n_findings, 0);
    assert_int_equal(rep.records, 150);
    assert_int_equal(rep.segments, 3);
    assert_int_equal(rep.checkpoints, 9); /* 20 40 50 60 80 100 120 140 150 */
    assert_int_equal(rep.first_seq, 1);
    assert_int_equal(rep.last_seq, 150);
    assert_int_equal(rep.checkpoint_seq, 150);
    assert_true(rep.key_from_dir);
    char kid[17];
    key_id_of(t.key, kid);
    assert_string_equal(rep.key_id, kid);
    trail_dispose(&t);
}

static void test_clean_trail_with_given_key(void **state)
{
    trail t;
    char p[128];
    trail_standard(&t);
    path_of(&t, "checkpoint.pub", p, sizeof(p));
    assert_int_equal(verify(&t, p), 0);
    assert_int_equal(rep.n_findings, 0);
    assert_false(rep.key_from_dir);
    trail_dispose(&t);
}

static void test_gap_records_are_chained_and_counted(void **state)
{
    trail t;
    trail_open(&t);
    trail_segment(&t);
    trail_record(&t);
    trail_record_gap(&t, 5);
    trail_record(&t);
    trail_checkpoint(&t);
    fclose(t.seg);
    t.seg = NULL;
    assert_int_equal(verify(&t, NULL), 0);
    assert_int_equal(rep.n_findings, 0);
    assert_int_equal(rep.records, 3);
    assert_int_equal(rep.gaps, 1);
    trail_dispose(&t);
}

static void test_checkpoint_without_node_signs_an_empty_line(void **state)
{
    trail t;
    trail_open(&t);
    t.node = NULL;
    trail_segment(&t);
    trail_record(&t);
    trail_checkpoint(&t);
    fclose(t.seg);
    t.seg = NULL;
    assert_int_equal(verify(&t, NULL), 0);
    assert_int_equal(rep.n_findings, 0);
    trail_dispose(&t);
}

static void test_torn_last_line_is_a_note_not_tampering(void **state)
{
    trail t;
    trail_standard(&t);
    char p[128];
    path_of(&t, seg3, p, sizeof(p));
    FILE *f = fopen(p, "a");
    fputs("{\"v\":1,\"seq\":151,\"ts\":\"2026-11-26T02:0", f); /* a crash mid-write */
    fclose(f);
    assert_int_equal(verify(&t, NULL), 0);
    assert_int_equal(rep.n_findings, 0);
    assert_int_equal(rep.records, 150);
    assert_true(has_note("torn last line"));
    trail_dispose(&t);
}

static void test_records_after_the_last_checkpoint(void **state)
{
    trail t;
    trail_standard(&t);
    char p[128];
    path_of(&t, seg3, p, sizeof(p));
    t.seg = fopen(p, "a");
    trail_record(&t);
    trail_record(&t);
    fflush(t.seg);
    assert_int_equal(verify(&t, NULL), 0);
    assert_int_equal(rep.n_findings, 0);
    assert_int_equal(rep.last_seq, 152);
    assert_int_equal(rep.checkpoint_seq, 150);
    trail_dispose(&t);
}

static void test_no_checkpoints_is_a_note(void **state)
{
    trail t;
    char p[128];
    trail_standard(&t);
    path_of(&t, "checkpoints.jsonl", p, sizeof(p));
    unlink(p);
    assert_int_equal(verify(&t, NULL), 0);
    assert_int_equal(rep.n_findings, 0);
    assert_true(has_note("no checkpoints.jsonl"));
    trail_dispose(&t);
}

/* ---- every kind of tampering -------------------------------------------------------------------
 */

static void test_modified_byte(void **state)
{
    trail t;
    lines l;
    trail_standard(&t);
    lines_read(&t, seg2, &l);
    char *d = strstr(l.v[6], "\"decision\":\"") + 12; /* seq 57 */
    *d = *d == 'a' ? 'b' : 'a';
    lines_write(&t, seg2, &l, true);
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_MODIFIED, seg2, 7, 57);
    assert_int_equal(rep.records, 56); /* the chain stops at the first bad record */
    trail_dispose(&t);
}

static void test_modified_hash_field(void **state)
{
    trail t;
    lines l;
    trail_standard(&t);
    lines_read(&t, seg1, &l);
    char *h = strstr(l.v[9], "\"hash\":\"") + 8;
    *h = *h == '0' ? '1' : '0';
    lines_write(&t, seg1, &l, true);
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_MODIFIED, seg1, 10, 10);
    trail_dispose(&t);
}

static void test_not_a_record_line(void **state)
{
    trail t;
    lines l;
    trail_standard(&t);
    lines_read(&t, seg1, &l);
    l.v[4] = "{\"hello\":\"world\"}";
    lines_write(&t, seg1, &l, true);
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_MODIFIED, seg1, 5, 5);
    trail_dispose(&t);
}

static void test_deleted_record(void **state)
{
    trail t;
    lines l;
    trail_standard(&t);
    lines_read(&t, seg1, &l);
    memmove(&l.v[29], &l.v[30], (l.n - 30) * sizeof(l.v[0])); /* seq 30 */
    l.n--;
    lines_write(&t, seg1, &l, true);
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_DELETED, seg1, 30, 30);
    assert_non_null(strstr(rep.findings[0].detail, "record 30 is missing"));
    trail_dispose(&t);
}

static void test_deleted_first_record_of_a_segment(void **state)
{
    trail t;
    lines l;
    trail_standard(&t);
    lines_read(&t, seg2, &l);
    memmove(&l.v[0], &l.v[1], (l.n - 1) * sizeof(l.v[0])); /* seq 51 */
    l.n--;
    lines_write(&t, seg2, &l, true);
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_DELETED, seg2, 1, 51);
    trail_dispose(&t);
}

static void test_deleted_several_records(void **state)
{
    trail t;
    lines l;
    trail_standard(&t);
    lines_read(&t, seg1, &l);
    memmove(&l.v[9], &l.v[12], (l.n - 12) * sizeof(l.v[0])); /* seq 10..12 */
    l.n -= 3;
    lines_write(&t, seg1, &l, true);
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_DELETED, seg1, 10, 10);
    assert_non_null(strstr(rep.findings[0].detail, "records 10..12 are missing"));
    trail_dispose(&t);
}

static void test_swapped_records(void **state)
{
    trail t;
    lines l;
    trail_standard(&t);
    lines_read(&t, seg2, &l);
    char *tmp = l.v[10]; /* seq 61 and 62 */
    l.v[10] = l.v[11];
    l.v[11] = tmp;
    lines_write(&t, seg2, &l, true);
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_REORDERED, seg2, 11, 62);
    trail_dispose(&t);
}

static void test_record_moved_to_another_segment(void **state)
{
    trail t;
    lines a, b;
    trail_standard(&t);
    lines_read(&t, seg1, &a);
    lines_read(&t, seg3, &b);
    b.v[b.n++] = a.v[20]; /* seq 21 at the end of the trail */
    memmove(&a.v[20], &a.v[21], (a.n - 21) * sizeof(a.v[0]));
    a.n--;
    lines_write(&t, seg3, &b, true);
    b.data = NULL;
    lines_write(&t, seg1, &a, true);
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_REORDERED, seg1, 21, 22);
    assert_non_null(strstr(rep.findings[0].detail, seg3));
    trail_dispose(&t);
}

static void test_repeated_record(void **state)
{
    trail t;
    lines l;
    trail_standard(&t);
    lines_read(&t, seg1, &l);
    memmove(&l.v[6], &l.v[5], (l.n - 5) * sizeof(l.v[0])); /* seq 6 twice */
    l.n++;
    lines_write(&t, seg1, &l, true);
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_REORDERED, seg1, 7, 6);
    trail_dispose(&t);
}

static void test_replaced_record_with_its_own_valid_hash(void **state)
{
    /* a record replaced by one that hashes right but links to nothing */
    trail t, u;
    lines l, m;
    trail_standard(&t);
    trail_open(&u); /* another trail: same seqs, other hashes */
    u.salt = 7;
    trail_segment(&u);
    for (int i = 0; i < 20; i++)
        trail_record(&u);
    fclose(u.seg);
    u.seg = NULL;
    lines_read(&t, seg1, &l);
    lines_read(&u, seg1, &m);
    l.v[14] = m.v[14]; /* seq 15 */
    lines_write(&t, seg1, &l, true);
    free(m.data);
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_MODIFIED, seg1, 15, 15);
    assert_non_null(strstr(rep.findings[0].detail, "prev is not the hash of record 14"));
    trail_dispose(&u);
    trail_dispose(&t);
}

static void test_first_prev_must_be_zeros(void **state)
{
    trail t;
    trail_open(&t);
    memset(t.prev, 'a', 64);
    trail_segment(&t);
    trail_record(&t);
    fclose(t.seg);
    t.seg = NULL;
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_MODIFIED, seg1, 1, 1);
    trail_dispose(&t);
}

static void test_truncated_below_checkpoint(void **state)
{
    trail t;
    lines l;
    trail_standard(&t);
    lines_read(&t, seg3, &l);
    l.v[39][30] = '\0'; /* seq 140 cut in the middle, nothing after */
    l.n = 40;
    lines_write(&t, seg3, &l, false);
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_TRUNCATED, seg3, 40, 140);
    assert_non_null(strstr(rep.findings[0].detail, "records 140..150 were cut off"));
    trail_dispose(&t);
}

static void test_last_segment_deleted(void **state)
{
    trail t;
    char p[128];
    trail_standard(&t);
    path_of(&t, seg3, p, sizeof(p));
    unlink(p);
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_TRUNCATED, seg2, 51, 101);
    trail_dispose(&t);
}

static void test_middle_segment_deleted(void **state)
{
    trail t;
    char p[128];
    trail_standard(&t);
    path_of(&t, seg2, p, sizeof(p));
    unlink(p);
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_TRUNCATED, seg2, 0, 51);
    assert_non_null(strstr(rep.findings[0].detail, "records 51..100 are missing"));
    trail_dispose(&t);
}

static void test_first_segment_deleted(void **state)
{
    trail t;
    char p[128];
    trail_standard(&t);
    path_of(&t, seg1, p, sizeof(p));
    unlink(p);
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_TRUNCATED, seg1, 0, 1);
    trail_dispose(&t);
}

static void test_sealed_segment_cut_mid_line(void **state)
{
    trail t;
    lines l;
    trail_standard(&t);
    lines_read(&t, seg1, &l);
    l.v[49][40] = '\0';
    lines_write(&t, seg1, &l, false);
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_TRUNCATED, seg1, 50, 50);
    trail_dispose(&t);
}

static void test_forged_checkpoint_signature(void **state)
{
    trail t;
    trail_standard(&t);
    EVP_PKEY *thief = keygen();
    char p[128];
    path_of(&t, seg3, p, sizeof(p));
    t.seg = fopen(p, "a");
    trail_record(&t);
    trail_checkpoint_head(&t, NULL, thief); /* line 10: our key id, another key's signature */
    EVP_PKEY_free(thief);
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_FORGED_CHECKPOINT, "checkpoints.jsonl", 10, 151);
    assert_non_null(strstr(rep.findings[0].detail, "signature does not verify"));
    /* a forged checkpoint never counts as vouching for the trail */
    assert_int_equal(rep.checkpoint_seq, 150);
    trail_dispose(&t);
}

static void test_altered_checkpoint_field(void **state)
{
    trail t;
    lines l;
    trail_standard(&t);
    lines_read(&t, "checkpoints.jsonl", &l);
    char *ts = strstr(l.v[2], "02:01:00"); /* the signed ts */
    ts[7] = '1';
    lines_write(&t, "checkpoints.jsonl", &l, true);
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_FORGED_CHECKPOINT, "checkpoints.jsonl", 3, 50);
    trail_dispose(&t);
}

static void test_malformed_checkpoint(void **state)
{
    trail t;
    lines l;
    trail_standard(&t);
    lines_read(&t, "checkpoints.jsonl", &l);
    l.v[1] = "{\"v\":1,\"seq\":40}";
    lines_write(&t, "checkpoints.jsonl", &l, true);
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_FORGED_CHECKPOINT, "checkpoints.jsonl", 2, 40);
    assert_non_null(strstr(rep.findings[0].detail, "not a valid checkpoint"));
    trail_dispose(&t);
}

static void test_signed_head_not_the_records_hash(void **state)
{
    trail t;
    trail_open(&t);
    trail_segment(&t);
    trail_record(&t);
    trail_record(&t);
    trail_checkpoint_head(&t, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                          NULL);
    fclose(t.seg);
    t.seg = NULL;
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_FORGED_CHECKPOINT, "checkpoints.jsonl", 1, 2);
    trail_dispose(&t);
}

static void test_rechained_records_caught_by_checkpoint(void **state)
{
    /* rewrite record 45 and recompute every hash after it: the chain is
     * consistent again, but the signed heads of 60.. no longer match */
    trail t;
    lines l[3];
    const char *names[3] = {seg1, seg2, seg3};
    char prev[65];
    trail_standard(&t);
    memset(prev, '0', 64);
    prev[64] = '\0';
    for (int s = 0; s < 3; s++) {
        lines_read(&t, names[s], &l[s]);
        for (size_t i = 0; i < l[s].n; i++) {
            char *line = l[s].v[i];
            uint64_t seq = strtoull(line + 13, NULL, 10);
            if (seq == 45)
                memcpy(strstr(line, "\"reason\":\"r\"") + 10, "x", 1);
            if (seq >= 45) {
                char *cut = strstr(line, ",\"prev\":\"");
                char *fresh = malloc(strlen(line) + 1);
                size_t n = (size_t)(cut - line);
                memcpy(fresh, line, n);
                n += (size_t)sprintf(fresh + n, ",\"prev\":\"%s\"", prev);
                sha256_hex(prev, fresh, n);
                sprintf(fresh + n, ",\"hash\":\"%s\"}", prev);
                strcpy(line, fresh); /* same length */
                free(fresh);
            } else {
                memcpy(prev, strstr(line, "\"hash\":\"") + 8, 64);
            }
        }
        lines_write(&t, names[s], &l[s], true);
    }
    assert_int_equal(verify(&t, NULL), 0);
    expect_first(AUDIT_FINDING_FORGED_CHECKPOINT, "checkpoints.jsonl", 3, 50);
    assert_non_null(strstr(rep.findings[0].detail, "records 41..50 were rewritten"));
    assert_int_equal(rep.records, 150); /* the chain itself holds */
    trail_dispose(&t);
}

static void test_wrong_key(void **state)
{
    trail t;
    char p[128];
    trail_standard(&t);
    EVP_PKEY *other = keygen();
    snprintf(p, sizeof(p), "%s/other.pub", t.dir);
    write_pub(other, p);
    EVP_PKEY_free(other);
    assert_int_equal(verify(&t, p), 0);
    expect_first(AUDIT_FINDING_FORGED_CHECKPOINT, "checkpoints.jsonl", 1, 20);
    assert_int_equal(rep.n_findings, 9);
    assert_int_equal(rep.checkpoint_seq, 0);
    assert_true(has_note("is it the right key"));
    trail_dispose(&t);
}

/* ---- what cannot be read --------------------------------------------------------------------- */

static void test_missing_dir(void **state)
{
    audit_verify_options o = {"/nonexistent/ward-audit", NULL, NULL, NULL};
    ward_err err;
    assert_int_equal(audit_verify(&o, &rep, &err), WARD_ENOENT);
    assert_non_null(strstr(err.msg, "/nonexistent/ward-audit"));
}

static void test_not_a_trail(void **state)
{
    char dir[] = "/tmp/ward-verify-XXXXXX";
    assert_non_null(mkdtemp(dir));
    audit_verify_options o = {dir, NULL, NULL, NULL};
    ward_err err;
    assert_int_equal(audit_verify(&o, &rep, &err), WARD_ENOENT);
    assert_non_null(strstr(err.msg, "not an audit trail"));
    rmdir(dir);
}

static void test_bad_key_files(void **state)
{
    trail t;
    char p[128];
    ward_err err;
    trail_standard(&t);
    audit_verify_options o = {t.dir, "/nonexistent.pub", NULL, NULL};
    assert_int_equal(audit_verify(&o, &rep, &err), WARD_ENOENT);
    snprintf(p, sizeof(p), "%s/garbage.pub", t.dir);
    FILE *f = fopen(p, "w");
    fputs("not a key\n", f);
    fclose(f);
    o.key_file = p;
    assert_int_equal(audit_verify(&o, &rep, &err), WARD_EINVAL);
    assert_non_null(strstr(err.msg, "not a PEM public key"));
    /* an EC key is not an Ed25519 key */
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    write_pub(ec, p);
    EVP_PKEY_free(ec);
    assert_int_equal(audit_verify(&o, &rep, &err), WARD_EINVAL);
    assert_non_null(strstr(err.msg, "not an Ed25519"));
    trail_dispose(&t);
}

static void test_checkpoints_without_any_key(void **state)
{
    trail t;
    char p[128];
    ward_err err;
    trail_standard(&t);
    path_of(&t, "checkpoint.pub", p, sizeof(p));
    unlink(p);
    audit_verify_options o = {t.dir, NULL, NULL, NULL};
    assert_int_equal(audit_verify(&o, &rep, &err), WARD_ENOENT);
    assert_non_null(strstr(err.msg, "--key"));
    trail_dispose(&t);
}

/* ---- the segment reader ------------------------------------------------------------------------
 */

static void test_reader_streams_segments_in_seq_order(void **state)
{
    trail t;
    audit_reader *r;
    const char *line;
    size_t len;
    ward_err err;
    uint64_t n = 0;
    trail_standard(&t);
    assert_int_equal(audit_reader_open(t.dir, &r, &err), 0);
    assert_int_equal(audit_reader_segments(r), 3);
    while (audit_reader_next(r, &line, &len, &err) == 1) {
        n++;
        char pre[40];
        int plen = snprintf(pre, sizeof(pre), "{\"v\":1,\"seq\":%" PRIu64 ",", n);
        assert_memory_equal(line, pre, (size_t)plen);
        assert_int_equal(line[len - 1], '}');
        assert_int_equal(audit_reader_line(r), (n - 1) % 50 + 1);
        assert_string_equal(audit_reader_file(r), n <= 50 ? seg1 : n <= 100 ? seg2 : seg3);
    }
    assert_int_equal(n, 150);
    assert_false(audit_reader_torn(r));
    uint64_t done, total;
    audit_reader_progress(r, &done, &total);
    assert_int_equal(done, total);
    audit_reader_free(r);
    trail_dispose(&t);
}

static void test_reader_long_line(void **state)
{
    char dir[] = "/tmp/ward-verify-XXXXXX", p[128];
    assert_non_null(mkdtemp(dir));
    snprintf(p, sizeof(p), "%s/segment-00000000000000000001.jsonl", dir);
    FILE *f = fopen(p, "w");
    size_t big = (size_t)9 << 20; /* more than the read buffer */
    char *s = malloc(big);
    memset(s, 'x', big);
    fputs("a\n", f);
    fwrite(s, 1, big, f);
    fputs("\nb\n", f);
    fclose(f);
    audit_reader *r;
    const char *line;
    size_t len;
    ward_err err;
    assert_int_equal(audit_reader_open(dir, &r, &err), 0);
    assert_int_equal(audit_reader_next(r, &line, &len, &err), 1);
    assert_int_equal(len, 1);
    assert_int_equal(audit_reader_next(r, &line, &len, &err), 1);
    assert_int_equal(len, big);
    assert_memory_equal(line, s, big);
    assert_int_equal(audit_reader_next(r, &line, &len, &err), 1);
    assert_memory_equal(line, "b", 1);
    assert_int_equal(audit_reader_next(r, &line, &len, &err), 0);
    audit_reader_free(r);
    free(s);
    unlink(p);
    rmdir(dir);
}

static void test_reader_ignores_other_names(void **state)
{
    trail t;
    char p[128];
    trail_standard(&t);
    path_of(&t, "segment-1.jsonl", p, sizeof(p)); /* not 20 digits */
    FILE *f = fopen(p, "w");
    fputs("junk\n", f);
    fclose(f);
    path_of(&t, "notes.txt", p, sizeof(p));
    f = fopen(p, "w");
    fclose(f);
    assert_int_equal(verify(&t, NULL), 0);
    assert_int_equal(rep.n_findings, 0);
    assert_int_equal(rep.segments, 3);
    assert_true(has_note("segment-1.jsonl"));
    trail_dispose(&t);
}

/* ---- a trail written by the real writer (audit/log.c) ------------------------------------------
 */

static void test_real_writer_trail_verifies(void **state)
{
    char dir[] = "/tmp/ward-verify-XXXXXX", path[128];
    audit_options o;
    audit_log *log;
    audit_producer *p;
    audit_reader *r;
    ward_err err;
    assert_non_null(mkdtemp(dir));
    audit_options_init(&o);
    o.dir = dir;
    o.node = NODE;
    o.overflow = AUDIT_OVERFLOW_BLOCK;
    assert_int_equal(audit_log_open(&o, &log, &err), 0);
    assert_int_equal(audit_log_producer_new(log, &p), 0);
    for (int i = 0; i < 3000; i++) {
        audit_record rec;
        audit_record_init(&rec);
        rec.decision = i % 3 ? AUDIT_ALLOW : AUDIT_DENY;
        rec.policy = audit_cstr(i % 2 ? "shop/payments" : NULL);
        rec.rule = i % 2 ? 1 : -1;
        rec.reason = audit_cstr("=formula");
        rec.source_principal = audit_cstr("spiffe://example.org/ns/shop/sa/checkout");
        rec.destination_service = audit_cstr("payments");
        rec.method = audit_cstr("GET");
        rec.path = audit_cstr("/a|b=c\\d\n");
        rec.status = 200;
        assert_int_equal(audit_log_append(log, p, &rec), 0);
    }
    assert_int_equal(audit_log_close(log, &err), 0);
    if (audit_reader_open(dir, &r, &err) == WARD_ENOENT) {
        /* a writer from before the hash chain (DIR/audit.jsonl): nothing to verify yet */
        snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
        unlink(path);
        rmdir(dir);
        skip();
    }
    audit_reader_free(r);
    audit_verify_options vo = {dir, NULL, NULL, NULL};
    assert_int_equal(audit_verify(&vo, &rep, &err), 0);
    if (rep.n_findings > 0)
        fail_msg("%s:%" PRIu64 ": %s", rep.findings[0].file, rep.findings[0].line,
                 rep.findings[0].detail);
    assert_int_equal(rep.records, 3000);
    assert_int_equal(rep.checkpoint_seq, 3000); /* a checkpoint at close */

    audit_scan_options so = {dir, NULL, NULL, NULL, false};
    audit_export_stats st;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_int_equal(audit_export(&so, AUDIT_FORMAT_CEF, out, &st, &err), 0);
    fclose(out);
    assert_int_equal(st.exported, 3000);
    assert_int_equal(st.scan.malformed, 0);
    assert_non_null(strstr(buf, " request=/a|b\\=c\\\\d\\n "));
    free(buf);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_finding_names(void **state)
{
    assert_string_equal(audit_finding_kind_name(AUDIT_FINDING_MODIFIED), "modified");
    assert_string_equal(audit_finding_kind_name(AUDIT_FINDING_DELETED), "deleted");
    assert_string_equal(audit_finding_kind_name(AUDIT_FINDING_REORDERED), "reordered");
    assert_string_equal(audit_finding_kind_name(AUDIT_FINDING_TRUNCATED), "truncated");
    assert_string_equal(audit_finding_kind_name(AUDIT_FINDING_FORGED_CHECKPOINT),
                        "forged checkpoint");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_trail_verifies),
        cmocka_unit_test(test_clean_trail_with_given_key),
        cmocka_unit_test(test_gap_records_are_chained_and_counted),
        cmocka_unit_test(test_checkpoint_without_node_signs_an_empty_line),
        cmocka_unit_test(test_torn_last_line_is_a_note_not_tampering),
        cmocka_unit_test(test_records_after_the_last_checkpoint),
        cmocka_unit_test(test_no_checkpoints_is_a_note),
        cmocka_unit_test(test_modified_byte),
        cmocka_unit_test(test_modified_hash_field),
        cmocka_unit_test(test_not_a_record_line),
        cmocka_unit_test(test_deleted_record),
        cmocka_unit_test(test_deleted_first_record_of_a_segment),
        cmocka_unit_test(test_deleted_several_records),
        cmocka_unit_test(test_swapped_records),
        cmocka_unit_test(test_record_moved_to_another_segment),
        cmocka_unit_test(test_repeated_record),
        cmocka_unit_test(test_replaced_record_with_its_own_valid_hash),
        cmocka_unit_test(test_first_prev_must_be_zeros),
        cmocka_unit_test(test_truncated_below_checkpoint),
        cmocka_unit_test(test_last_segment_deleted),
        cmocka_unit_test(test_middle_segment_deleted),
        cmocka_unit_test(test_first_segment_deleted),
        cmocka_unit_test(test_sealed_segment_cut_mid_line),
        cmocka_unit_test(test_forged_checkpoint_signature),
        cmocka_unit_test(test_altered_checkpoint_field),
        cmocka_unit_test(test_malformed_checkpoint),
        cmocka_unit_test(test_signed_head_not_the_records_hash),
        cmocka_unit_test(test_rechained_records_caught_by_checkpoint),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_missing_dir),
        cmocka_unit_test(test_not_a_trail),
        cmocka_unit_test(test_bad_key_files),
        cmocka_unit_test(test_checkpoints_without_any_key),
        cmocka_unit_test(test_reader_streams_segments_in_seq_order),
        cmocka_unit_test(test_reader_long_line),
        cmocka_unit_test(test_reader_ignores_other_names),
        cmocka_unit_test(test_real_writer_trail_verifies),
        cmocka_unit_test(test_finding_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
