/* client.c - workload client: key, CSR, pinned HTTPS to wardd, SVID snapshots, renewal loop */
#include "identity/client_int.h"
#include "identity/identity.h"

#include <cjson/cJSON.h>
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CHAIN_MAX          16
#define FILE_MAX           ((size_t)1 << 20)
#define DEFAULT_TIMEOUT_MS 10000u
#define SERVER_PATH        "/ward/server"

/* ======================================================================== */
/* snapshots                                                                 */
/* ======================================================================== */

struct ident_svid {
    atomic_int refs;
    EVP_PKEY *key;
    STACK_OF(X509) * chain;
    ident_bundle *bundle;
    time_t not_before, not_after;
    char id[IDENT_ID_MAX];
};

static int asn1_time_to_unix(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return WARD_EINVAL;
    *out = timegm(&tm);
    return 0;
}

/* The last OpenSSL error as text (or "unknown error"); clears the queue. */
static const char *ssl_errstr(char *buf, size_t size)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        snprintf(buf, size, "unknown error");
    else
        ERR_error_string_n(e, buf, size);
    ERR_clear_error();
    return buf;
}

int ident_svid_new(EVP_PKEY *key, STACK_OF(X509) * chain, ident_bundle *bundle, time_t now,
                   ident_svid **out, ward_err *err)
{
    int rc = 0;
    char ebuf[256];
    ident_svid *s = NULL;
    *out = NULL;
    if (key == NULL || chain == NULL || bundle == NULL || sk_X509_num(chain) < 1) {
        ward_err_set(err, "an SVID needs a key, a certificate chain and a bundle");
        return WARD_EINVAL;
    }
    X509 *leaf = sk_X509_value(chain, 0);
    if (X509_check_private_key(leaf, key) != 1) {
        ward_err_set(err, "the private key does not match the certificate (%s)",
                     ssl_errstr(ebuf, sizeof(ebuf)));
        return WARD_EINVAL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return WARD_ENOMEM;
    atomic_init(&s->refs, 1);
    ward_err why;
    ward_err_clear(&why);
    rc = ident_svid_verify(chain, bundle, now, s->id, &why);
    if (rc < 0) {
        ward_err_set(err, "not a valid X509-SVID: %s", why.msg[0] ? why.msg : ward_strerror(rc));
        goto fail;
    }
    if (asn1_time_to_unix(X509_get0_notBefore(leaf), &s->not_before) < 0 ||
        asn1_time_to_unix(X509_get0_notAfter(leaf), &s->not_after) < 0) {
        ward_err_set(err, "unreadable certificate validity");
        rc = WARD_EINVAL;
        goto fail;
    }
    s->chain = X509_chain_up_ref(chain);
    if (s->chain == NULL || EVP_PKEY_up_ref(key) != 1) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    s->key = key;
    ident_bundle_ref(bundle);
    s->bundle = bundle;
    *out = s;
    return 0;
fail:
    if (s->chain != NULL)
        sk_X509_pop_free(s->chain, X509_free);
    free(s);
    return rc;
}

void ident_svid_ref(ident_svid *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void ident_svid_unref(ident_svid *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    EVP_PKEY_free(s->key);
    sk_X509_pop_free(s->chain, X509_free);
    ident_bundle_unref(s->bundle);
    free(s);
}

const char *ident_svid_id(const ident_svid *s)
{
    return s->id;
}

time_t ident_svid_not_before(const ident_svid *s)
{
    return s->not_before;
}

time_t ident_svid_not_after(const ident_svid *s)
{
    return s->not_after;
}

EVP_PKEY *ident_svid_key(const ident_svid *s)
{
    return s->key;
}

STACK_OF(X509) * ident_svid_chain(const ident_svid *s)
{
    return s->chain;
}

ident_bundle *ident_svid_bundle(const ident_svid *s)
{
    return s->bundle;
}

/* ======================================================================== */
/* files                                                                     */
/* ======================================================================== */

static int chain_to_pem(STACK_OF(X509) * chain, ward_buf *out)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return WARD_ENOMEM;
    int rc = 0;
    for (int i = 0; i < sk_X509_num(chain); i++)
        if (PEM_write_bio_X509(bio, sk_X509_value(chain, i)) != 1)
            rc = WARD_ENOMEM;
    char *p;
    long n = BIO_get_mem_data(bio, &p);
    if (rc == 0 && n > 0)
        rc = ward_buf_append(out, p, (size_t)n);
    BIO_free(bio);
    return rc;
}

int ident_svid_chain_pem(const ident_svid *s, ward_buf *out)
{
    return chain_to_pem(s->chain, out);
}

int ident_svid_write_dir(const ident_svid *s, const char *dir, ward_err *err)
{
    int rc = 0;
    ward_buf buf;
    ward_buf_init(&buf);
    BIO *kbio = BIO_new(BIO_s_secmem()); /* cleansed when freed */
    if (kbio == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    /* The key first: a reader who sees the new svid.pem finds its key. */
    if (PEM_write_bio_PrivateKey(kbio, s->key, NULL, NULL, 0, NULL, NULL) != 1) {
        ward_err_set(err, "encoding the private key failed");
        rc = WARD_EINVAL;
        goto fail;
    }
    char *kp;
    long kn = BIO_get_mem_data(kbio, &kp);
    WARD_TRY(ward_file_write_atomic(dir, "svid.key", kp, (size_t)kn, 0600, err));
    WARD_TRY(chain_to_pem(s->chain, &buf));
    WARD_TRY(ward_file_write_atomic(dir, "svid.pem", buf.ptr, buf.len, 0644, err));
    ward_buf_reset(&buf);
    WARD_TRY(ident_bundle_to_pem(s->bundle, &buf));
    WARD_TRY(ward_file_write_atomic(dir, "bundle.pem", buf.ptr, buf.len, 0644, err));
    ward_buf_reset(&buf);
    WARD_TRY(ident_bundle_to_json(s->bundle, &buf));
    WARD_TRY(ward_buf_putc(&buf, '\n'));
    WARD_TRY(ward_file_write_atomic(dir, "bundle.json", buf.ptr, buf.len, 0644, err));
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
fail:
    if (rc < 0 && err != NULL && err->msg[0] == '\0')
        ward_err_set(err, "writing the SVID to %s: %s", dir, ward_strerror(rc));
    BIO_free(kbio);
    ward_buf_dispose(&buf);
    return rc;
}

int ident_client_chain_parse(const char *pem, size_t len, STACK_OF(X509) * *out, ward_err *err)
{
    int rc = 0;
    char ebuf[256];
    *out = NULL;
    if (len > INT_MAX) {
        ward_err_set(err, "certificate chain too large");
        return WARD_ELIMIT;
    }
    STACK_OF(X509) *chain = sk_X509_new_null();
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (chain == NULL || bio == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    for (;;) {
        X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (x == NULL)
            break;
        if (sk_X509_num(chain) >= CHAIN_MAX || sk_X509_push(chain, x) == 0) {
            X509_free(x);
            ward_err_set(err, "certificate chain longer than %d certificates", CHAIN_MAX);
            rc = WARD_ELIMIT;
            goto fail;
        }
    }
    /* The loop ends at the end of the data (PEM_R_NO_START_LINE) or at a bad block. */
    unsigned long e = ERR_peek_last_error();
    if (e != 0 && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        ward_err_set(err, "malformed certificate in the chain: %s", ssl_errstr(ebuf, sizeof(ebuf)));
        rc = WARD_ESYNTAX;
        goto fail;
    }
    ERR_clear_error();
    if (sk_X509_num(chain) == 0) {
        ward_err_set(err, "no PEM certificate found");
        rc = WARD_ESYNTAX;
        goto fail;
    }
    BIO_free(bio);
    *out = chain;
    return 0;
fail:
    BIO_free(bio);
    if (chain != NULL)
        sk_X509_pop_free(chain, X509_free);
    return rc;
}

/* The trust domain of a SPIFFE ID into td (WARD_SPIFFE_TD_MAX + 1 bytes). */
static int id_trust_domain(const char *id, char *td, ward_err *err)
{
    ward_spiffe_id sid;
    int rc = ward_spiffe_id_parse(id, strlen(id), &sid, err);
    if (rc < 0)
        return rc;
    memcpy(td, sid.td, sid.td_len);
    td[sid.td_len] = '\0';
    return 0;
}

static bool looks_like_json(const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n')
            continue;
        return data[i] == '{';
    }
    return false;
}

/* A bundle of trust domain td from PEM certificates or SPIFFE bundle JSON. */
static int bundle_from_data(const char *td, const char *data, size_t len, ident_bundle **out,
                            ward_err *err)
{
    if (looks_like_json(data, len))
        return ident_bundle_from_json(td, data, len, out, err);
    return ident_bundle_from_pem(td, data, len, out, err);
}

int ident_svid_load_files(const char *cert_file, const char *key_file, const char *bundle_file,
                          time_t now, ident_svid **out, ward_err *err)
{
    int rc = 0;
    char *cert = NULL, *keyd = NULL, *bund = NULL;
    size_t cert_len = 0, key_len = 0, bund_len = 0;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    ident_bundle *bundle = NULL;
    BIO *bio = NULL;
    char id[IDENT_ID_MAX], td[WARD_SPIFFE_TD_MAX + 1];
    ward_err why;
    ward_err_clear(&why);
    *out = NULL;
    WARD_TRY(ward_file_read(cert_file, FILE_MAX, &cert, &cert_len, err));
    rc = ident_client_chain_parse(cert, cert_len, &chain, &why);
    if (rc < 0) {
        ward_err_set(err, "%s: %s", cert_file, why.msg);
        goto fail;
    }
    WARD_TRY(ward_file_read(key_file, FILE_MAX, &keyd, &key_len, err));
    bio = BIO_new_mem_buf(keyd, (int)key_len);
    if (bio == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (key == NULL) {
        ERR_clear_error();
        ward_err_set(err, "%s: no PEM private key found", key_file);
        rc = WARD_ESYNTAX;
        goto fail;
    }
    rc = ident_svid_check_leaf(sk_X509_value(chain, 0), id, &why);
    if (rc < 0) {
        ward_err_set(err, "%s: not an X509-SVID: %s", cert_file, why.msg);
        goto fail;
    }
    WARD_TRY(id_trust_domain(id, td, err));
    WARD_TRY(ward_file_read(bundle_file, FILE_MAX, &bund, &bund_len, err));
    rc = bundle_from_data(td, bund, bund_len, &bundle, &why);
    if (rc < 0) {
        ward_err_set(err, "%s: %s", bundle_file, why.msg);
        goto fail;
    }
    rc = ident_svid_new(key, chain, bundle, now, out, &why);
    if (rc < 0)
        ward_err_set(err, "%s: %s", cert_file, why.msg);
fail:
    BIO_free(bio);
    if (keyd != NULL) {
        OPENSSL_cleanse(keyd, key_len);
        free(keyd);
    }
    free(cert);
    free(bund);
    EVP_PKEY_free(key);
    if (chain != NULL)
        sk_X509_pop_free(chain, X509_free);
    if (bundle != NULL)
        ident_bundle_unref(bundle);
    return rc;
}

/* ======================================================================== */
/* key and CSR                                                               */
/* ======================================================================== */

int ident_client_key_new(EVP_PKEY **out, ward_err *err)
{
    char ebuf[256];
    *out = EVP_EC_gen("P-256");
    if (*out == NULL) {
        ward_err_set(err, "generating a P-256 key failed: %s", ssl_errstr(ebuf, sizeof(ebuf)));
        return WARD_EIO;
    }
    return 0;
}

int ident_client_csr_new(EVP_PKEY *key, const char *spiffe_id, ward_buf *pem, ward_err *err)
{
    int rc = 0;
    char ebuf[256];
    X509_REQ *req = X509_REQ_new();
    BIO *bio = BIO_new(BIO_s_mem());
    STACK_OF(X509_EXTENSION) *exts = NULL;
    GENERAL_NAMES *gens = NULL;
    if (req == NULL || bio == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    if (X509_REQ_set_version(req, 0) != 1 || X509_REQ_set_pubkey(req, key) != 1)
        goto ssl_fail;
    X509_NAME *name = X509_REQ_get_subject_name(req);
    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Ward", -1, -1,
                                   0) != 1)
        goto ssl_fail;
    if (spiffe_id != NULL) {
        ward_spiffe_id sid;
        WARD_TRY(ward_spiffe_id_parse(spiffe_id, strlen(spiffe_id), &sid, err));
        gens = GENERAL_NAMES_new();
        GENERAL_NAME *gen = GENERAL_NAME_new();
        ASN1_IA5STRING *uri = ASN1_IA5STRING_new();
        if (gens == NULL || gen == NULL || uri == NULL ||
            ASN1_STRING_set(uri, spiffe_id, (int)strlen(spiffe_id)) != 1) {
            GENERAL_NAME_free(gen);
            ASN1_IA5STRING_free(uri);
            rc = WARD_ENOMEM;
            goto fail;
        }
        GENERAL_NAME_set0_value(gen, GEN_URI, uri);
        if (sk_GENERAL_NAME_push(gens, gen) == 0) {
            GENERAL_NAME_free(gen);
            rc = WARD_ENOMEM;
            goto fail;
        }
        exts = sk_X509_EXTENSION_new_null();
        if (exts == NULL || X509V3_add1_i2d(&exts, NID_subject_alt_name, gens, 0, 0) != 1 ||
            X509_REQ_add_extensions(req, exts) != 1)
            goto ssl_fail;
    }
    if (X509_REQ_sign(req, key, EVP_sha256()) <= 0 || PEM_write_bio_X509_REQ(bio, req) != 1)
        goto ssl_fail;
    char *p;
    long n = BIO_get_mem_data(bio, &p);
    rc = ward_buf_append(pem, p, (size_t)n);
    goto done;
ssl_fail:
    ward_err_set(err, "building the CSR failed: %s", ssl_errstr(ebuf, sizeof(ebuf)));
    rc = WARD_EINVAL;
fail:
done:
    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    BIO_free(bio);
    return rc;
}

/* ======================================================================== */
/* HTTP/1.1 responses                                                         */
/* ======================================================================== */

void ident_http_resp_init(ident_http_resp *r)
{
    memset(r, 0, sizeof(*r));
    ward_buf_init(&r->decoded);
}

void ident_http_resp_dispose(ident_http_resp *r)
{
    ward_buf_dispose(&r->decoded);
}

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Field values and reason phrases: HTAB, SP, VCHAR, obs-text. */
static bool is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool ieq(const char *a, size_t alen, const char *b)
{
    return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

/* Does a comma-separated header value contain token `tok`? */
static bool has_token(const char *v, size_t len, const char *tok)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (i > s && ieq(v + s, i - s, tok))
            return true;
    }
    return false;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Finds CRLF at or after p within [p, end); returns its position or NULL. */
static const char *find_crlf(const char *p, const char *end)
{
    while (p + 1 < end) {
        const char *cr = memchr(p, '\r', (size_t)(end - p - 1));
        if (cr == NULL)
            return NULL;
        if (cr[1] == '\n')
            return cr;
        p = cr + 1;
    }
    return NULL;
}

/* Decodes a chunked body from p. Returns 1 complete, 0 incomplete, <0 error. */
static int parse_chunked(const char *p, const char *end, size_t max_body, ident_http_resp *r,
                         ward_err *err)
{
    ward_buf_reset(&r->decoded);
    for (;;) {
        const char *eol = find_crlf(p, end);
        size_t avail = (size_t)(end - p);
        if (eol == NULL) {
            if (avail > 1024) {
                ward_err_set(err, "chunk size line too long");
                return WARD_ESYNTAX;
            }
            return 0;
        }
        uint64_t size = 0;
        const char *q = p;
        int digits = 0;
        while (q < eol && hex_digit(*q) >= 0) {
            if (++digits > 16) {
                ward_err_set(err, "chunk size too large");
                return WARD_ELIMIT;
            }
            size = size * 16 + (uint64_t)hex_digit(*q);
            q++;
        }
        if (digits == 0 || (q < eol && *q != ';')) {
            ward_err_set(err, "malformed chunk size");
            return WARD_ESYNTAX;
        }
        for (; q < eol; q++)
            if (!is_field_char((unsigned char)*q)) {
                ward_err_set(err, "malformed chunk extension");
                return WARD_ESYNTAX;
            }
        if (size > max_body || r->decoded.len + size > max_body) {
            ward_err_set(err, "response body exceeds the limit of %zu bytes", max_body);
            return WARD_ELIMIT;
        }
        p = eol + 2;
        if (size == 0)
            break;
        if ((uint64_t)(end - p) < size + 2)
            return 0;
        if (p[size] != '\r' || p[size + 1] != '\n') {
            ward_err_set(err, "chunk data not followed by CRLF");
            return WARD_ESYNTAX;
        }
        if (ward_buf_append(&r->decoded, p, (size_t)size) < 0)
            return WARD_ENOMEM;
        p += size + 2;
    }
    /* trailer section, then the empty line */
    for (int n = 0;; n++) {
        const char *eol = find_crlf(p, end);
        if (eol == NULL)
            return (size_t)(end - p) > 1024 ? (ward_err_set(err, "trailer too long"), WARD_ELIMIT)
                                            : 0;
        if (eol == p) {
            p += 2;
            break;
        }
        if (n >= IDENT_HTTP_HEADERS_MAX) {
            ward_err_set(err, "too many trailer fields");
            return WARD_ELIMIT;
        }
        p = eol + 2;
    }
    if (p != end) {
        ward_err_set(err, "%zu unexpected bytes after the response", (size_t)(end - p));
        return WARD_ESYNTAX;
    }
    if (ward_buf_append(&r->decoded, "", 0) < 0)
        return WARD_ENOMEM;
    r->body = r->decoded.ptr;
    r->body_len = r->decoded.len;
    return 1;
}

int ident_http_parse_response(const char *buf, size_t len, bool eof, size_t max_body,
                              ident_http_resp *r, ward_err *err)
{
    ward_buf decoded = r->decoded;
    memset(r, 0, sizeof(*r));
    r->decoded = decoded;
    ward_buf_reset(&r->decoded);

    size_t scan = len < IDENT_HTTP_HEAD_MAX ? len : IDENT_HTTP_HEAD_MAX;
    const char *hend = memmem(buf, scan, "\r\n\r\n", 4);
    if (hend == NULL) {
        if (len >= IDENT_HTTP_HEAD_MAX) {
            ward_err_set(err, "response headers larger than %zu bytes", IDENT_HTTP_HEAD_MAX);
            return WARD_ELIMIT;
        }
        if (eof) {
            ward_err_set(err, len == 0 ? "connection closed without a response"
                                       : "connection closed inside the response headers");
            return WARD_EIO;
        }
        return 0;
    }
    size_t head_len = (size_t)(hend - buf) + 4;
    r->head_len = head_len;
    for (size_t i = 0; i < head_len; i++) {
        if (buf[i] == '\0' || (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))) {
            ward_err_set(err, "malformed response headers (NUL or bare LF)");
            return WARD_ESYNTAX;
        }
    }

    /* status line: HTTP/1.x SP 3DIGIT SP reason */
    const char *p = buf, *end = hend + 2; /* end: past the last header line's CRLF */
    const char *eol = find_crlf(p, end);
    size_t ll = (size_t)(eol - p);
    if (ll < 13 || (memcmp(p, "HTTP/1.1 ", 9) != 0 && memcmp(p, "HTTP/1.0 ", 9) != 0) ||
        p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' ||
        p[12] != ' ') {
        ward_err_set(err, "malformed status line");
        return WARD_ESYNTAX;
    }
    r->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    for (const char *q = p + 13; q < eol; q++)
        if (!is_field_char((unsigned char)*q)) {
            ward_err_set(err, "malformed reason phrase");
            return WARD_ESYNTAX;
        }
    if (r->status < 200) {
        ward_err_set(err, "unexpected informational response %d", r->status);
        return WARD_ESYNTAX;
    }
    r->conn_close = memcmp(p, "HTTP/1.0", 8) == 0;

    /* header fields */
    int nh = 0;
    bool has_te = false;
    for (p = eol + 2; p < end; p = eol + 2) {
        eol = find_crlf(p, end);
        if (eol == p)
            break;
        if (++nh > IDENT_HTTP_HEADERS_MAX) {
            ward_err_set(err, "more than %d response headers", IDENT_HTTP_HEADERS_MAX);
            return WARD_ELIMIT;
        }
        if (*p == ' ' || *p == '\t') {
            ward_err_set(err, "folded response header (obs-fold) refused");
            return WARD_ESYNTAX;
        }
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon == NULL || colon == p) {
            ward_err_set(err, "malformed response header line");
            return WARD_ESYNTAX;
        }
        for (const char *q = p; q < colon; q++)
            if (!is_tchar((unsigned char)*q)) {
                ward_err_set(err, "malformed response header name");
                return WARD_ESYNTAX;
            }
        const char *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (const char *q = v; q < ve; q++)
            if (!is_field_char((unsigned char)*q)) {
                ward_err_set(err, "malformed response header value");
                return WARD_ESYNTAX;
            }
        size_t nl = (size_t)(colon - p), vl = (size_t)(ve - v);
        if (ieq(p, nl, "content-length")) {
            uint64_t cl;
            if (ward_parse_u64(v, vl, UINT64_MAX, &cl) < 0) {
                ward_err_set(err, "malformed Content-Length");
                return WARD_ESYNTAX;
            }
            if (r->has_length && cl != r->content_length) {
                ward_err_set(err, "conflicting Content-Length headers");
                return WARD_ESYNTAX;
            }
            r->has_length = true;
            r->content_length = cl;
        } else if (ieq(p, nl, "transfer-encoding")) {
            if (has_te || !ieq(v, vl, "chunked")) {
                ward_err_set(err, "unsupported Transfer-Encoding");
                return WARD_ESYNTAX;
            }
            has_te = r->chunked = true;
        } else if (ieq(p, nl, "connection")) {
            if (has_token(v, vl, "close"))
                r->conn_close = true;
        } else if (ieq(p, nl, "content-type")) {
            size_t tl = 0;
            while (tl < vl && v[tl] != ';' && v[tl] != ' ' && v[tl] != '\t')
                tl++;
            if (tl >= sizeof(r->content_type)) {
                ward_err_set(err, "Content-Type too long");
                return WARD_ELIMIT;
            }
            for (size_t i = 0; i < tl; i++)
                r->content_type[i] = (char)((v[i] >= 'A' && v[i] <= 'Z') ? v[i] + 32 : v[i]);
            r->content_type[tl] = '\0';
        }
    }
    if (r->chunked && r->has_length) {
        ward_err_set(err, "both Content-Length and Transfer-Encoding");
        return WARD_ESYNTAX;
    }

    /* body */
    const char *body = buf + head_len, *bend = buf + len;
    size_t have = len - head_len;
    if (r->status == 204 || r->status == 304) {
        if (have > 0) {
            ward_err_set(err, "%zu unexpected bytes after the response", have);
            return WARD_ESYNTAX;
        }
        r->body = body;
        r->body_len = 0;
        return 1;
    }
    if (r->has_length) {
        if (r->content_length > max_body) {
            ward_err_set(err, "response body of %llu bytes exceeds the limit of %zu bytes",
                         (unsigned long long)r->content_length, max_body);
            return WARD_ELIMIT;
        }
        if (have < r->content_length) {
            if (eof) {
                ward_err_set(err, "connection closed after %zu of %llu body bytes", have,
                             (unsigned long long)r->content_length);
                return WARD_EIO;
            }
            return 0;
        }
        if (have > r->content_length) {
            ward_err_set(err, "%zu unexpected bytes after the response",
                         have - (size_t)r->content_length);
            return WARD_ESYNTAX;
        }
        r->body = body;
        r->body_len = (size_t)r->content_length;
        return 1;
    }
    if (r->chunked) {
        int rc = parse_chunked(body, bend, max_body, r, err);
        if (rc == 0 && eof) {
            ward_err_set(err, "connection closed inside the chunked body");
            return WARD_EIO;
        }
        return rc;
    }
    if (have > max_body) {
        ward_err_set(err, "response body exceeds the limit of %zu bytes", max_body);
        return WARD_ELIMIT;
    }
    if (!eof)
        return 0;
    r->body = body;
    r->body_len = have;
    return 1;
}

/* ======================================================================== */
/* server URLs                                                                */
/* ======================================================================== */

int ident_client_url_parse(const char *url, char *host, size_t host_size, char *port,
                           size_t port_size, ward_err *err)
{
    static const char scheme[] = "https://";
    if (url == NULL || strncmp(url, scheme, sizeof(scheme) - 1) != 0) {
        ward_err_set(err, "server \"%s\" is not an https:// URL", url ? url : "");
        return WARD_EINVAL;
    }
    const char *h = url + sizeof(scheme) - 1, *he, *rest;
    if (*h == '[') {
        he = strchr(h, ']');
        if (he == NULL) {
            ward_err_set(err, "server \"%s\": unterminated [IPv6] address", url);
            return WARD_EINVAL;
        }
        rest = he + 1;
        h++;
    } else {
        he = h + strcspn(h, ":/?#@");
        rest = he;
    }
    size_t hl = (size_t)(he - h);
    if (hl == 0 || hl >= host_size) {
        ward_err_set(err, "server \"%s\": %s host", url, hl == 0 ? "empty" : "too long a");
        return WARD_EINVAL;
    }
    for (size_t i = 0; i < hl; i++) {
        unsigned char c = (unsigned char)h[i];
        if (!(c == '.' || c == '-' || c == ':' || c == '_' || (c >= '0' && c <= '9') ||
              (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
            ward_err_set(err, "server \"%s\": invalid host", url);
            return WARD_EINVAL;
        }
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    const char *pe = rest;
    if (*rest == ':') {
        uint64_t pn;
        const char *ps = rest + 1;
        pe = ps + strspn(ps, "0123456789");
        if (ward_parse_u64(ps, (size_t)(pe - ps), 65535, &pn) < 0 || pn == 0) {
            ward_err_set(err, "server \"%s\": invalid port", url);
            return WARD_EINVAL;
        }
        snprintf(port, port_size, "%u", (unsigned)pn);
    } else {
        snprintf(port, port_size, "443");
    }
    if (!(pe[0] == '\0' || (pe[0] == '/' && pe[1] == '\0'))) {
        ward_err_set(err, "server \"%s\": expected https://HOST:PORT with no path", url);
        return WARD_EINVAL;
    }
    return 0;
}

/* ======================================================================== */
/* connections                                                                */
/* ======================================================================== */

typedef struct conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    int64_t deadline; /* monotonic ms */
    int cancel_fd;    /* readable = give up; -1 none */
    const ident_client_conf *conf;
    const ident_bundle *pin; /* NULL: conf->bundle_data, or insecure */
    bool verify_failed;
    ward_err verify_err;
    char td[WARD_SPIFFE_TD_MAX + 1]; /* the trust domain wardd's SVID names */
} conn;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for `events`, the deadline passes or cancel_fd is readable. */
static int conn_wait(conn *c, short events, const char *what, ward_err *err)
{
    for (;;) {
        int64_t left = c->deadline - mono_ms();
        if (left <= 0) {
            ward_err_set(err, "timed out %s", what);
            return WARD_EIO;
        }
        struct pollfd pfd[2] = {{c->fd, events, 0}, {c->cancel_fd, POLLIN, 0}};
        int n = poll(pfd, c->cancel_fd >= 0 ? 2 : 1, (int)(left > 1000000 ? 1000000 : left));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ward_err_set(err, "poll: %s", strerror(errno));
            return WARD_EIO;
        }
        if (c->cancel_fd >= 0 && pfd[1].revents != 0) {
            ward_err_set(err, "cancelled");
            return WARD_EIO;
        }
        if (pfd[0].revents != 0)
            return 0;
    }
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -1 : 0;
}

/* Connects fd (non-blocking) to addr within the deadline. */
static int conn_connect_addr(conn *c, const struct sockaddr *addr, socklen_t alen,
                             const char *shown, ward_err *err)
{
    if (connect(c->fd, addr, alen) == 0)
        return 0;
    if (errno != EINPROGRESS) {
        ward_err_set(err, "connecting to %s: %s", shown, strerror(errno));
        return WARD_EIO;
    }
    char what[300];
    snprintf(what, sizeof(what), "connecting to %s", shown);
    int rc = conn_wait(c, POLLOUT, what, err);
    if (rc < 0)
        return rc;
    int so = 0;
    socklen_t sl = sizeof(so);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so, &sl) != 0 || so != 0) {
        ward_err_set(err, "connecting to %s: %s", shown, strerror(so ? so : errno));
        return WARD_EIO;
    }
    return 0;
}

static int conn_tcp(conn *c, const char *host, const char *port, ward_err *err)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        ward_err_set(err, "resolving %s: %s", host, gai_strerror(g));
        return WARD_EIO;
    }
    char shown[300];
    snprintf(shown, sizeof(shown), strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
    int rc = WARD_EIO;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (c->fd < 0 || set_nonblock(c->fd) < 0) {
            ward_err_set(err, "socket: %s", strerror(errno));
            rc = WARD_EIO;
        } else {
            rc = conn_connect_addr(c, ai->ai_addr, ai->ai_addrlen, shown, err);
        }
        if (rc == 0)
            break;
        if (c->fd >= 0)
            close(c->fd);
        c->fd = -1;
    }
    freeaddrinfo(res);
    if (rc == 0) {
        int one = 1;
        (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return rc;
}

/* Replaces OpenSSL's chain building: wardd's SVID is checked with
 * ident_svid_verify against the pin and must be spiffe://TD/ward/server. */
static int verify_server_cb(X509_STORE_CTX *xctx, void *arg)
{
    conn *c = arg;
    int rc = 0;
    char id[IDENT_ID_MAX], want[IDENT_ID_MAX + 32];
    ward_err why;
    ward_err_clear(&why);
    ident_bundle *tmp = NULL;
    X509 *leaf = X509_STORE_CTX_get0_cert(xctx);
    STACK_OF(X509) *untrusted = X509_STORE_CTX_get0_untrusted(xctx);
    STACK_OF(X509) *chain = sk_X509_new_null();
    if (leaf == NULL || chain == NULL || sk_X509_push(chain, leaf) == 0) {
        ward_err_set(&c->verify_err, "wardd sent no certificate");
        goto fail;
    }
    for (int i = 0; untrusted != NULL && i < sk_X509_num(untrusted); i++) {
        X509 *x = sk_X509_value(untrusted, i);
        if (x != leaf && X509_cmp(x, leaf) != 0 && sk_X509_push(chain, x) == 0)
            goto fail;
    }
    rc = ident_svid_check_leaf(leaf, id, &why);
    if (rc < 0) {
        ward_err_set(&c->verify_err, "wardd's certificate is not an X509-SVID: %s", why.msg);
        goto fail;
    }
    if (id_trust_domain(id, c->td, &why) < 0) {
        ward_err_set(&c->verify_err, "wardd's certificate: %s", why.msg);
        goto fail;
    }
    if (c->conf->insecure_bootstrap && c->pin == NULL && c->conf->bundle_data == NULL) {
        sk_X509_free(chain);
        return 1; /* said on stderr by the caller; the td is the one claimed */
    }
    const ident_bundle *pin = c->pin;
    if (pin == NULL) {
        if (bundle_from_data(c->td, c->conf->bundle_data, c->conf->bundle_len, &tmp, &why) < 0) {
            ward_err_set(&c->verify_err, "the pinned bundle: %s", why.msg);
            goto fail;
        }
        pin = tmp;
    }
    rc = ident_svid_verify(chain, pin, time(NULL), id, &why);
    if (rc < 0) {
        ward_err_set(&c->verify_err,
                     "wardd's certificate does not verify against the pinned bundle: %s",
                     why.msg[0] ? why.msg : ward_strerror(rc));
        goto fail;
    }
    snprintf(want, sizeof(want), "spiffe://%s" SERVER_PATH, ident_bundle_trust_domain(pin));
    if (strcmp(id, want) != 0) {
        ward_err_set(&c->verify_err, "wardd presented %s, expected %s", id, want);
        goto fail;
    }
    snprintf(c->td, sizeof(c->td), "%s", ident_bundle_trust_domain(pin));
    if (tmp != NULL)
        ident_bundle_unref(tmp);
    sk_X509_free(chain);
    return 1;
fail:
    c->verify_failed = true;
    if (tmp != NULL)
        ident_bundle_unref(tmp);
    sk_X509_free(chain);
    X509_STORE_CTX_set_error(xctx, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

/* Performs one non-blocking SSL operation to completion. */
static int conn_ssl_step(conn *c, int ret, const char *what, ward_err *err)
{
    char ebuf[256];
    int e = SSL_get_error(c->ssl, ret);
    if (e == SSL_ERROR_WANT_READ)
        return conn_wait(c, POLLIN, what, err) < 0 ? WARD_EIO : 1;
    if (e == SSL_ERROR_WANT_WRITE)
        return conn_wait(c, POLLOUT, what, err) < 0 ? WARD_EIO : 1;
    if (c->verify_failed)
        ward_err_set(err, "%s", c->verify_err.msg);
    else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
        ward_err_set(err, "%s: connection %s", what, errno ? strerror(errno) : "closed");
    else
        ward_err_set(err, "%s: %s", what, ssl_errstr(ebuf, sizeof(ebuf)));
    ERR_clear_error();
    return WARD_EIO;
}

static int conn_tls(conn *c, const char *host, const ident_svid *client, ward_err *err)
{
    char ebuf[256];
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL)
        return WARD_ENOMEM;
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(c->ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(c->ctx, verify_server_cb, c);
    SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_OFF);
    if (client != NULL) {
        STACK_OF(X509) *chain = client->chain;
        if (SSL_CTX_use_certificate(c->ctx, sk_X509_value(chain, 0)) != 1 ||
            SSL_CTX_use_PrivateKey(c->ctx, client->key) != 1)
            goto ssl_fail;
        for (int i = 1; i < sk_X509_num(chain); i++)
            if (SSL_CTX_add1_chain_cert(c->ctx, sk_X509_value(chain, i)) != 1)
                goto ssl_fail;
    }
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
        goto ssl_fail;
    struct in_addr a4;
    if (strchr(host, ':') == NULL && inet_pton(AF_INET, host, &a4) != 1)
        (void)SSL_set_tlsext_host_name(c->ssl, host);
    for (;;) {
        int ret = SSL_connect(c->ssl);
        if (ret == 1)
            return 0;
        int rc = conn_ssl_step(c, ret, "TLS handshake with wardd", err);
        if (rc < 0)
            return rc;
    }
ssl_fail:
    ward_err_set(err, "TLS setup: %s", ssl_errstr(ebuf, sizeof(ebuf)));
    return WARD_EIO;
}

static void conn_close(conn *c)
{
    if (c->ssl != NULL) {
        (void)SSL_shutdown(c->ssl); /* best effort, non-blocking */
        SSL_free(c->ssl);
    }
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    ERR_clear_error();
    c->ssl = NULL;
    c->ctx = NULL;
    c->fd = -1;
}

/* OpenSSL writes to the socket with write(2): a peer that closed early would
 * raise SIGPIPE. Each call blocks it on its own thread for the whole exchange
 * (handshake, request, close_notify) and swallows one that it caused (as libpq
 * does), without touching the process's signal dispositions. */
typedef struct sigpipe_guard {
    sigset_t old;
    bool was_pending;
} sigpipe_guard;

static void sigpipe_block(sigpipe_guard *g)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void sigpipe_restore(sigpipe_guard *g)
{
    sigset_t pending;
    sigpending(&pending);
    if (!g->was_pending && sigismember(&pending, SIGPIPE) == 1) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        struct timespec zero = {0, 0};
        int saved = errno;
        (void)sigtimedwait(&set, NULL, &zero);
        errno = saved;
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

static int conn_write_all(conn *c, const char *p, size_t len, ward_err *err)
{
    int rc = 0;
    while (len > 0) {
        if (c->ssl != NULL) {
            size_t n = 0;
            int ret = SSL_write_ex(c->ssl, p, len, &n);
            if (ret != 1) {
                rc = conn_ssl_step(c, ret, "sending the request", err);
                if (rc < 0)
                    break;
                rc = 0;
                continue;
            }
            p += n;
            len -= n;
        } else {
            ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
                if (conn_wait(c, POLLOUT, "sending the request", err) < 0) {
                    rc = WARD_EIO;
                    break;
                }
                continue;
            }
            if (n < 0) {
                ward_err_set(err, "sending the request: %s", strerror(errno));
                rc = WARD_EIO;
                break;
            }
            p += n;
            len -= (size_t)n;
        }
    }
    return rc;
}

/* Reads some bytes: >0 count, 0 end of stream (*clean: a TLS close_notify or a
 * plain FIN), <0 error. */
static long conn_read(conn *c, char *p, size_t cap, bool *clean, ward_err *err)
{
    for (;;) {
        if (c->ssl != NULL) {
            size_t n = 0;
            errno = 0;
            int ret = SSL_read_ex(c->ssl, p, cap, &n);
            if (ret == 1)
                return (long)n;
            int e = SSL_get_error(c->ssl, ret);
            if (e == SSL_ERROR_ZERO_RETURN) {
                *clean = true;
                return 0;
            }
            unsigned long le = ERR_peek_error();
            if ((e == SSL_ERROR_SSL && ERR_GET_REASON(le) == SSL_R_UNEXPECTED_EOF_WHILE_READING) ||
                (e == SSL_ERROR_SYSCALL && le == 0 && errno == 0)) {
                ERR_clear_error();
                *clean = false;
                return 0;
            }
            int rc = conn_ssl_step(c, ret, "reading the response", err);
            if (rc < 0)
                return rc;
        } else {
            ssize_t n = recv(c->fd, p, cap, 0);
            if (n > 0)
                return (long)n;
            if (n == 0) {
                *clean = true;
                return 0;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                if (conn_wait(c, POLLIN, "reading the response", err) < 0)
                    return WARD_EIO;
                continue;
            }
            ward_err_set(err, "reading the response: %s", strerror(errno));
            return WARD_EIO;
        }
    }
}

/* Sends one request and reads its response into raw; r's body points into raw. */
static int conn_exchange(conn *c, const char *method, const char *path, const char *authority,
                         const char *body, size_t body_len, ward_buf *raw, ident_http_resp *r,
                         ward_err *err)
{
    int rc = 0;
    ward_buf req;
    ward_buf_init(&req);
    WARD_TRY(ward_buf_printf(&req,
                             "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ward-client\r\n"
                             "Accept: application/json\r\nConnection: close\r\n",
                             method, path, authority));
    if (body != NULL)
        WARD_TRY(ward_buf_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                                 body_len));
    WARD_TRY(ward_buf_puts(&req, "\r\n"));
    if (body != NULL)
        WARD_TRY(ward_buf_append(&req, body, body_len));
    WARD_TRY(conn_write_all(c, req.ptr, req.len, err));

    /* Raw bytes: the head, the body and chunk framing, bounded. */
    const size_t raw_max = IDENT_HTTP_HEAD_MAX + IDENT_CLIENT_MAX_RESPONSE * 2 + 4096;
    bool eof = false, clean = false;
    for (;;) {
        int p = ident_http_parse_response(raw->ptr ? raw->ptr : "", raw->len, eof,
                                          IDENT_CLIENT_MAX_RESPONSE, r, err);
        if (p < 0) {
            rc = p;
            goto fail;
        }
        if (p == 1)
            break;
        if (raw->len >= raw_max) {
            ward_err_set(err, "response larger than %zu bytes", raw_max);
            rc = WARD_ELIMIT;
            goto fail;
        }
        char chunk[16384];
        size_t want = raw_max - raw->len < sizeof(chunk) ? raw_max - raw->len : sizeof(chunk);
        long n = conn_read(c, chunk, want, &clean, err);
        if (n < 0) {
            rc = (int)n;
            goto fail;
        }
        if (n == 0)
            eof = true;
        else
            WARD_TRY(ward_buf_append(raw, chunk, (size_t)n));
    }
    if (!r->has_length && !r->chunked && r->status != 204 && r->status != 304 && !clean) {
        ward_err_set(err, "response truncated (connection closed without TLS close_notify)");
        rc = WARD_EIO;
    }
fail:
    OPENSSL_cleanse(req.ptr, req.cap); /* the body may hold a join token */
    ward_buf_dispose(&req);
    return rc;
}

static void conn_init(conn *c, const ident_client_conf *conf, int cancel_fd)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->cancel_fd = cancel_fd;
    c->conf = conf;
    c->pin = conf->bundle;
    uint32_t t = conf->timeout_ms ? conf->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->deadline = mono_ms() + t;
}

/* One HTTPS request to wardd: connect, verify, send, read. On success the
 * response (status, body copied into body) and the server's trust domain (td). */
static int https_call(const ident_client_conf *conf, const ident_bundle *pin,
                      const ident_svid *client, int cancel_fd, const char *method, const char *path,
                      const char *req_body, size_t req_len, int *status, ward_buf *body, char *td,
                      ward_err *err)
{
    int rc = 0;
    char host[256], port[8], authority[300];
    conn c;
    ident_http_resp r;
    ward_buf raw;
    sigpipe_guard g;
    sigpipe_block(&g);
    ward_buf_init(&raw);
    ident_http_resp_init(&r);
    conn_init(&c, conf, cancel_fd);
    if (pin != NULL)
        c.pin = pin;
    if (c.pin == NULL && conf->bundle_data == NULL && !conf->insecure_bootstrap) {
        ward_err_set(err, "no pinned bundle to authenticate wardd (and not in insecure bootstrap)");
        rc = WARD_EINVAL;
        goto fail;
    }
    WARD_TRY(ident_client_url_parse(conf->server, host, sizeof(host), port, sizeof(port), err));
    snprintf(authority, sizeof(authority), strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
    WARD_TRY(conn_tcp(&c, host, port, err));
    WARD_TRY(conn_tls(&c, host, client, err));
    WARD_TRY(conn_exchange(&c, method, path, authority, req_body, req_len, &raw, &r, err));
    *status = r.status;
    if (r.status == 200 && strcmp(r.content_type, "application/json") != 0) {
        ward_err_set(err, "wardd answered %s with Content-Type \"%s\", not application/json", path,
                     r.content_type);
        rc = WARD_ESYNTAX;
        goto fail;
    }
    WARD_TRY(ward_buf_append(body, r.body, r.body_len));
    if (td != NULL)
        snprintf(td, WARD_SPIFFE_TD_MAX + 1, "%s", c.td);
fail:
    conn_close(&c);
    ident_http_resp_dispose(&r);
    ward_buf_dispose(&raw);
    sigpipe_restore(&g);
    return rc;
}

/* ======================================================================== */
/* wardd's answers                                                            */
/* ======================================================================== */

void ident_client_describe_error(int status, const char *body, size_t len, ward_err *err)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "message");
    if (cJSON_IsString(e) && e->valuestring[0] != '\0') {
        if (cJSON_IsString(m) && m->valuestring[0] != '\0')
            ward_err_set(err, "%d %.100s: %.800s", status, e->valuestring, m->valuestring);
        else
            ward_err_set(err, "%d %.100s", status, e->valuestring);
    } else {
        /* Not the error format: show a printable prefix of the body. */
        char shown[121];
        size_t n = 0;
        for (size_t i = 0; i < len && n < sizeof(shown) - 1; i++)
            shown[n++] = (body[i] >= 0x20 && body[i] < 0x7f) ? body[i] : '.';
        shown[n] = '\0';
        ward_err_set(err, "%d (unexpected answer%s%s)", status, n ? ": " : "", shown);
    }
    cJSON_Delete(root);
}

int ident_client_svid_response(const char *json, size_t len, EVP_PKEY *key, const char *want_td,
                               const char *want_id, time_t now, ident_svid **out, ward_err *err)
{
    int rc = 0;
    char td[WARD_SPIFFE_TD_MAX + 1];
    char *bjson = NULL;
    STACK_OF(X509) *chain = NULL;
    ident_bundle *bundle = NULL;
    ward_err why;
    ward_err_clear(&why);
    *out = NULL;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        ward_err_set(err, "wardd's answer is not a JSON object");
        rc = WARD_ESYNTAX;
        goto fail;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "spiffe_id");
    const cJSON *svid = cJSON_GetObjectItemCaseSensitive(root, "svid");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "bundle");
    if (!cJSON_IsString(id) || !cJSON_IsString(svid) || !cJSON_IsObject(b)) {
        ward_err_set(err, "wardd's answer lacks %s",
                     !cJSON_IsString(id)     ? "\"spiffe_id\""
                     : !cJSON_IsString(svid) ? "\"svid\""
                                             : "\"bundle\"");
        rc = WARD_ESYNTAX;
        goto fail;
    }
    rc = id_trust_domain(id->valuestring, td, &why);
    if (rc < 0) {
        ward_err_set(err, "wardd's answer: spiffe_id: %s", why.msg);
        goto fail;
    }
    if (want_td != NULL && strcmp(td, want_td) != 0) {
        ward_err_set(err, "wardd returned an SVID of trust domain %s, expected %s", td, want_td);
        rc = WARD_EINVAL;
        goto fail;
    }
    if (want_id != NULL && strcmp(id->valuestring, want_id) != 0) {
        ward_err_set(err, "wardd returned %s, expected %s", id->valuestring, want_id);
        rc = WARD_EINVAL;
        goto fail;
    }
    rc = ident_client_chain_parse(svid->valuestring, strlen(svid->valuestring), &chain, &why);
    if (rc < 0) {
        ward_err_set(err, "wardd's answer: svid: %s", why.msg);
        goto fail;
    }
    bjson = cJSON_PrintUnformatted(b);
    if (bjson == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    rc = ident_bundle_from_json(td, bjson, strlen(bjson), &bundle, &why);
    if (rc < 0) {
        ward_err_set(err, "wardd's answer: bundle: %s", why.msg);
        goto fail;
    }
    rc = ident_svid_new(key, chain, bundle, now, out, &why);
    if (rc < 0) {
        ward_err_set(err, "wardd's SVID: %s", why.msg);
        goto fail;
    }
    if (strcmp(ident_svid_id(*out), id->valuestring) != 0) {
        ward_err_set(err, "wardd's SVID names %s, its answer %s", ident_svid_id(*out),
                     id->valuestring);
        ident_svid_unref(*out);
        *out = NULL;
        rc = WARD_EINVAL;
    }
fail:
    cJSON_Delete(root);
    free(bjson);
    if (chain != NULL)
        sk_X509_pop_free(chain, X509_free);
    if (bundle != NULL)
        ident_bundle_unref(bundle);
    return rc;
}

/* ======================================================================== */
/* the API calls                                                              */
/* ======================================================================== */

int ident_client_fetch_bundle(const ident_client_conf *conf, ward_buf *json, ident_bundle **out,
                              ward_err *err)
{
    int rc = 0, status = 0;
    char td[WARD_SPIFFE_TD_MAX + 1];
    ward_buf body;
    ward_buf_init(&body);
    ward_err why;
    ward_err_clear(&why);
    if (out != NULL)
        *out = NULL;
    rc = https_call(conf, NULL, NULL, -1, "GET", "/v1/bundle", NULL, 0, &status, &body, td, err);
    if (rc < 0)
        goto fail;
    if (status != 200) {
        ident_client_describe_error(status, body.ptr, body.len, &why);
        ward_err_set(err, "wardd refused the bundle request: %s", why.msg);
        rc = WARD_EIO;
        goto fail;
    }
    if (out != NULL) {
        rc = ident_bundle_from_json(td, body.ptr ? body.ptr : "", body.len, out, &why);
        if (rc < 0) {
            ward_err_set(err, "wardd's bundle: %s", why.msg);
            goto fail;
        }
    }
    if (json != NULL)
        rc = ward_buf_append(json, body.ptr ? body.ptr : "", body.len);
fail:
    ward_buf_dispose(&body);
    return rc;
}

/* Attest (token != NULL) or renew (client != NULL) with a fresh key. */
static int svid_request(const ident_client_conf *conf, const char *token, const ident_svid *client,
                        int cancel_fd, ident_svid **out, ward_err *err)
{
    int rc = 0, status = 0;
    char td[WARD_SPIFFE_TD_MAX + 1];
    EVP_PKEY *key = NULL;
    cJSON *req = NULL;
    char *req_s = NULL;
    ward_buf csr, body;
    ward_buf_init(&csr);
    ward_buf_init(&body);
    ward_err why;
    ward_err_clear(&why);
    *out = NULL;
    WARD_TRY(ident_client_key_new(&key, err));
    WARD_TRY(ident_client_csr_new(key, client ? ident_svid_id(client) : NULL, &csr, err));
    req = cJSON_CreateObject();
    if (req == NULL || (token != NULL && cJSON_AddStringToObject(req, "token", token) == NULL) ||
        cJSON_AddStringToObject(req, "csr", csr.ptr) == NULL ||
        (req_s = cJSON_PrintUnformatted(req)) == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    const char *what = token != NULL ? "attestation" : "renewal";
    rc = https_call(conf, client ? client->bundle : NULL, client, cancel_fd, "POST",
                    token != NULL ? "/v1/attest" : "/v1/renew", req_s, strlen(req_s), &status,
                    &body, td, &why);
    if (rc < 0) {
        ward_err_set(err, "%s failed: %s", what, why.msg);
        goto fail;
    }
    if (status != 200) {
        ident_client_describe_error(status, body.ptr, body.len, &why);
        ward_err_set(err, "%s refused by wardd: %s", what, why.msg);
        rc = WARD_EINVAL;
        goto fail;
    }
    /* In insecure bootstrap the td wardd claimed is unverified: the answer's ID decides. */
    bool pinned = conf->bundle != NULL || conf->bundle_data != NULL || client != NULL;
    rc = ident_client_svid_response(body.ptr ? body.ptr : "", body.len, key, pinned ? td : NULL,
                                    client ? ident_svid_id(client) : NULL, time(NULL), out, err);
fail:
    if (req_s != NULL) {
        OPENSSL_cleanse(req_s, strlen(req_s));
        free(req_s);
    }
    if (req != NULL) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(req, "token");
        if (cJSON_IsString(t))
            OPENSSL_cleanse(t->valuestring, strlen(t->valuestring));
        cJSON_Delete(req);
    }
    EVP_PKEY_free(key);
    ward_buf_dispose(&csr);
    ward_buf_dispose(&body);
    return rc;
}

int ident_client_attest(const ident_client_conf *conf, const char *token, ident_svid **out,
                        ward_err *err)
{
    if (token == NULL || token[0] == '\0') {
        *out = NULL;
        ward_err_set(err, "no join token");
        return WARD_EINVAL;
    }
    return svid_request(conf, token, NULL, -1, out, err);
}

int ident_client_renew(const ident_client_conf *conf, const ident_svid *current, ident_svid **out,
                       ward_err *err)
{
    return svid_request(conf, NULL, current, -1, out, err);
}

int ident_client_token_create(const char *admin_socket, const char *spiffe_id, const char *ttl,
                              uint32_t timeout_ms, char *token, ward_buf *json, ward_err *err)
{
    int rc = 0;
    conn c;
    ident_client_conf conf;
    ident_http_resp r;
    ward_buf raw;
    cJSON *req = NULL, *ans = NULL;
    char *req_s = NULL;
    ward_err why;
    ward_err_clear(&why);
    memset(&conf, 0, sizeof(conf));
    conf.timeout_ms = timeout_ms;
    ward_buf_init(&raw);
    ident_http_resp_init(&r);
    conn_init(&c, &conf, -1);
    token[0] = '\0';
    ward_spiffe_id sid;
    WARD_TRY(ward_spiffe_id_parse(spiffe_id, strlen(spiffe_id), &sid, err));
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(admin_socket) >= sizeof(sa.sun_path)) {
        ward_err_set(err, "%s: socket path too long", admin_socket);
        rc = WARD_EINVAL;
        goto fail;
    }
    memcpy(sa.sun_path, admin_socket, strlen(admin_socket));
    c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0 || set_nonblock(c.fd) < 0) {
        ward_err_set(err, "socket: %s", strerror(errno));
        rc = WARD_EIO;
        goto fail;
    }
    WARD_TRY(conn_connect_addr(&c, (struct sockaddr *)&sa, sizeof(sa), admin_socket, err));
    req = cJSON_CreateObject();
    if (req == NULL || cJSON_AddStringToObject(req, "spiffe_id", spiffe_id) == NULL ||
        (ttl != NULL && cJSON_AddStringToObject(req, "ttl", ttl) == NULL) ||
        (req_s = cJSON_PrintUnformatted(req)) == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    WARD_TRY(conn_exchange(&c, "POST", "/v1/admin/tokens", "wardd", req_s, strlen(req_s), &raw, &r,
                           err));
    if (r.status != 200) {
        ident_client_describe_error(r.status, r.body, r.body_len, &why);
        ward_err_set(err, "wardd refused to create the token: %s", why.msg);
        rc = WARD_EINVAL;
        goto fail;
    }
    ans = cJSON_ParseWithLength(r.body, r.body_len);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(ans, "token");
    if (!cJSON_IsString(t) || t->valuestring[0] == '\0' ||
        strlen(t->valuestring) >= IDENT_TOKEN_MAX) {
        ward_err_set(err, "wardd's answer has no usable \"token\"");
        rc = WARD_ESYNTAX;
        goto fail;
    }
    snprintf(token, IDENT_TOKEN_MAX, "%s", t->valuestring);
    if (json != NULL)
        rc = ward_buf_append(json, r.body, r.body_len);
fail:
    conn_close(&c);
    cJSON_Delete(req);
    free(req_s);
    if (ans != NULL) {
        const cJSON *t2 = cJSON_GetObjectItemCaseSensitive(ans, "token");
        if (cJSON_IsString(t2))
            OPENSSL_cleanse(t2->valuestring, strlen(t2->valuestring));
        cJSON_Delete(ans);
    }
    if (raw.ptr != NULL)
        OPENSSL_cleanse(raw.ptr, raw.cap);
    ward_buf_dispose(&raw);
    ident_http_resp_dispose(&r);
    return rc;
}

/* ======================================================================== */
/* schedules                                                                  */
/* ======================================================================== */

uint64_t ident_client_backoff_ms(unsigned attempt, double u)
{
    uint64_t base = attempt >= 6 ? 60000 : (uint64_t)1000 << attempt;
    if (base > 60000)
        base = 60000;
    if (!(u >= 0.0 && u < 1.0))
        u = 0.5;
    double d = (double)base * (0.8 + 0.4 * u);
    if (d < 1000.0)
        d = 1000.0;
    if (d > 60000.0)
        d = 60000.0;
    return (uint64_t)d;
}

uint64_t ident_client_renew_delay_ms(time_t not_before, time_t not_after, int64_t now_ms, double u)
{
    if (not_after <= not_before)
        return 0;
    if (!(u >= 0.0 && u < 1.0))
        u = 0.5;
    double life_ms = (double)(not_after - not_before) * 1000.0;
    double at = (double)not_before * 1000.0 + life_ms * (0.45 + 0.1 * u);
    double d = at - (double)now_ms;
    return d <= 0 ? 0 : (uint64_t)d;
}

static double rand_unit(void)
{
    uint64_t v = 0;
    if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1)
        return 0.5;
    return (double)(v >> 11) / (double)(UINT64_C(1) << 53);
}

/* ======================================================================== */
/* the renewal loop                                                           */
/* ======================================================================== */

struct ident_client {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a new snapshot */
    ident_svid *cur;
    pthread_t thread;
    int wake[2]; /* written once on stop: interrupts sleeps and requests */
    ident_client_conf conf;
    char *server;
    char *bundle_data;
    ident_bundle *pin;
    char *token;
    char *state_dir;
    ident_client_update_cb cb;
    void *data;
};

static void client_publish(ident_client *c, ident_svid *s)
{
    pthread_mutex_lock(&c->mu);
    ident_svid *old = c->cur;
    c->cur = s;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (old != NULL)
        ident_svid_unref(old);
}

ident_svid *ident_client_current(ident_client *c)
{
    pthread_mutex_lock(&c->mu);
    ident_svid *s = c->cur;
    if (s != NULL && time(NULL) < s->not_after)
        ident_svid_ref(s);
    else
        s = NULL;
    pthread_mutex_unlock(&c->mu);
    return s;
}

ident_svid *ident_client_wait(ident_client *c, uint32_t timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    for (;;) {
        ident_svid *s = c->cur;
        if (s != NULL && time(NULL) < s->not_after) {
            ident_svid_ref(s);
            pthread_mutex_unlock(&c->mu);
            return s;
        }
        if (pthread_cond_timedwait(&c->cv, &c->mu, &until) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Sleeps ms, or until stop. Returns true when stopping. */
static bool client_sleep(ident_client *c, uint64_t ms)
{
    int64_t until = mono_ms() + (int64_t)ms;
    for (;;) {
        int64_t left = until - mono_ms();
        struct pollfd pfd = {c->wake[0], POLLIN, 0};
        int n = poll(&pfd, 1, left <= 0 ? 0 : (int)(left > 3600000 ? 3600000 : left));
        if (n > 0)
            return true;
        if (n == 0 && left <= 3600000)
            return false;
    }
}

static void *client_run(void *arg)
{
    ident_client *c = arg;
    unsigned failures = 0;
    for (;;) {
        uint64_t delay = 0;
        pthread_mutex_lock(&c->mu);
        ident_svid *cur = c->cur;
        if (cur != NULL)
            ident_svid_ref(cur);
        pthread_mutex_unlock(&c->mu);
        if (failures > 0) {
            delay = ident_client_backoff_ms(failures - 1, rand_unit());
            /* retry often enough that an outage shorter than the SVID's remaining life
             * never lets it expire: at most a quarter of what is left, at least 1 s */
            if (cur != NULL) {
                int64_t left_ms = (int64_t)cur->not_after * 1000 - unix_ms();
                uint64_t cap = left_ms > 4000 ? (uint64_t)(left_ms / 4) : 1000;
                if (delay > cap)
                    delay = cap;
            }
        } else if (cur != NULL)
            delay = ident_client_renew_delay_ms(cur->not_before, cur->not_after, unix_ms(),
                                                rand_unit());
        if (client_sleep(c, delay)) {
            ident_svid_unref(cur);
            break;
        }
        ident_svid *next = NULL;
        ward_err why;
        ward_err_clear(&why);
        int rc;
        if (cur != NULL && time(NULL) < cur->not_after) {
            rc = svid_request(&c->conf, NULL, cur, c->wake[0], &next, &why);
        } else if (c->token != NULL) {
            rc = svid_request(&c->conf, c->token, NULL, c->wake[0], &next, &why);
            if (rc == 0) { /* the token is spent */
                OPENSSL_cleanse(c->token, strlen(c->token));
                free(c->token);
                c->token = NULL;
            }
        } else {
            ward_err_set(&why, cur != NULL ? "the SVID expired and there is no join token"
                                           : "no SVID and no join token");
            rc = WARD_EINVAL;
        }
        ident_svid_unref(cur);
        if (rc == 0) {
            failures = 0;
            if (c->state_dir != NULL) {
                ward_err werr;
                ward_err_clear(&werr);
                if (ident_svid_write_dir(next, c->state_dir, &werr) < 0 && c->cb != NULL)
                    c->cb(NULL, &werr, c->data);
            }
            ident_svid_ref(next);
            client_publish(c, next);
            if (c->cb != NULL)
                c->cb(next, NULL, c->data);
            ident_svid_unref(next);
        } else {
            if (failures < 1000)
                failures++;
            if (c->cb != NULL)
                c->cb(NULL, &why, c->data);
        }
    }
    return NULL;
}

static void client_free(ident_client *c)
{
    if (c->wake[0] >= 0)
        close(c->wake[0]);
    if (c->wake[1] >= 0)
        close(c->wake[1]);
    if (c->cur != NULL)
        ident_svid_unref(c->cur);
    if (c->pin != NULL)
        ident_bundle_unref(c->pin);
    if (c->token != NULL) {
        OPENSSL_cleanse(c->token, strlen(c->token));
        free(c->token);
    }
    free(c->server);
    free(c->bundle_data);
    free(c->state_dir);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* The SVID saved in state_dir, if there is a usable one. */
static ident_svid *state_load(const char *dir)
{
    char cert[4096], key[4096], bundle[4096];
    ident_svid *s = NULL;
    ward_err err;
    snprintf(cert, sizeof(cert), "%s/svid.pem", dir);
    snprintf(key, sizeof(key), "%s/svid.key", dir);
    snprintf(bundle, sizeof(bundle), "%s/bundle.json", dir);
    if (access(bundle, R_OK) != 0)
        snprintf(bundle, sizeof(bundle), "%s/bundle.pem", dir);
    if (ident_svid_load_files(cert, key, bundle, time(NULL), &s, &err) < 0)
        return NULL;
    return s;
}

int ident_client_start(const ident_client_options *opts, ident_client **out, ward_err *err)
{
    int rc = 0;
    *out = NULL;
    ident_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return WARD_ENOMEM;
    c->wake[0] = c->wake[1] = -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&c->mu, NULL);
    if (pipe2(c->wake, O_CLOEXEC) != 0) {
        ward_err_set(err, "pipe: %s", strerror(errno));
        rc = WARD_EIO;
        goto fail;
    }
    c->conf = opts->conf;
    c->cb = opts->cb;
    c->data = opts->data;
    if (opts->conf.server == NULL || (c->server = strdup(opts->conf.server)) == NULL ||
        (opts->token != NULL && (c->token = strdup(opts->token)) == NULL) ||
        (opts->state_dir != NULL && (c->state_dir = strdup(opts->state_dir)) == NULL)) {
        ward_err_set(err, opts->conf.server == NULL ? "no server" : "out of memory");
        rc = opts->conf.server == NULL ? WARD_EINVAL : WARD_ENOMEM;
        goto fail;
    }
    c->conf.server = c->server;
    if (opts->conf.bundle_data != NULL) {
        c->bundle_data = malloc(opts->conf.bundle_len + 1);
        if (c->bundle_data == NULL) {
            rc = WARD_ENOMEM;
            goto fail;
        }
        memcpy(c->bundle_data, opts->conf.bundle_data, opts->conf.bundle_len);
        c->bundle_data[opts->conf.bundle_len] = '\0';
        c->conf.bundle_data = c->bundle_data;
    }
    if (opts->conf.bundle != NULL) {
        c->pin = (ident_bundle *)opts->conf.bundle;
        ident_bundle_ref(c->pin);
        c->conf.bundle = c->pin;
    }
    WARD_TRY(ident_client_url_parse(c->server, (char[256]){0}, 256, (char[8]){0}, 8, err));
    ident_svid *init = opts->initial;
    if (init != NULL)
        ident_svid_ref(init);
    if (c->state_dir != NULL) {
        ident_svid *saved = state_load(c->state_dir);
        if (saved != NULL && (init == NULL || saved->not_after > init->not_after)) {
            ident_svid_unref(init);
            init = saved;
        } else if (saved != NULL) {
            ident_svid_unref(saved);
        }
    }
    if (init != NULL && time(NULL) >= init->not_after) {
        ident_svid_unref(init);
        init = NULL;
    }
    if (init == NULL && c->token == NULL) {
        ward_err_set(err, "no usable SVID and no join token to attest with");
        rc = WARD_EINVAL;
        goto fail;
    }
    if (init == NULL && c->pin == NULL && c->bundle_data == NULL && !c->conf.insecure_bootstrap) {
        ward_err_set(err, "first attestation needs a pinned bundle (or insecure bootstrap)");
        rc = WARD_EINVAL;
        goto fail;
    }
    c->cur = init;
    if (pthread_create(&c->thread, NULL, client_run, c) != 0) {
        ward_err_set(err, "starting the renewal thread failed");
        rc = WARD_EIO;
        goto fail;
    }
    *out = c;
    return 0;
fail:
    client_free(c);
    return rc;
}

void ident_client_stop(ident_client *c)
{
    if (c == NULL)
        return;
    ssize_t n;
    do
        n = write(c->wake[1], "x", 1);
    while (n < 0 && errno == EINTR);
    pthread_join(c->thread, NULL);
    client_free(c);
}
