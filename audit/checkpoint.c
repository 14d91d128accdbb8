/* checkpoint.c - Ed25519 checkpoints: the signed message, the checkpoint line, the key files */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "audit/audit_int.h"

#define KEY_FILE_MAX (64 * 1024)
#define SIG_LEN      64
#define SIG_B64_LEN  88 /* 4 * ceil(64 / 3) */

/* ---- segment names ------------------------------------------------------------- */

void audit_segment_name(char out[AUDIT_SEGMENT_NAME_MAX], uint64_t first_seq)
{
    snprintf(out, AUDIT_SEGMENT_NAME_MAX, AUDIT_SEGMENT_PREFIX "%020" PRIu64 AUDIT_SEGMENT_SUFFIX,
             first_seq);
}

int audit_segment_name_parse(const char *name, uint64_t *first_seq)
{
    const size_t pl = sizeof(AUDIT_SEGMENT_PREFIX) - 1, sl = sizeof(AUDIT_SEGMENT_SUFFIX) - 1;
    if (strlen(name) != pl + AUDIT_SEGMENT_DIGITS + sl ||
        memcmp(name, AUDIT_SEGMENT_PREFIX, pl) != 0 ||
        strcmp(name + pl + AUDIT_SEGMENT_DIGITS, AUDIT_SEGMENT_SUFFIX) != 0)
        return WARD_EINVAL;
    uint64_t v = 0;
    for (size_t i = pl; i < pl + AUDIT_SEGMENT_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9')
            return WARD_EINVAL;
        unsigned d = (unsigned)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return WARD_EINVAL;
        v = v * 10 + d;
    }
    if (v == 0)
        return WARD_EINVAL;
    *first_seq = v;
    return 0;
}

/* ---- the message and the line ---------------------------------------------------- */

int audit_checkpoint_message(ward_buf *out, const char *node, size_t node_len, uint64_t seq,
                             const char *head, const char *ts, size_t ts_len)
{
    int rc = 0;
    WARD_TRY(ward_buf_puts(out, AUDIT_CHECKPOINT_MAGIC "\n"));
    if (node != NULL)
        WARD_TRY(ward_buf_append(out, node, node_len));
    WARD_TRY(ward_buf_printf(out, "\n%" PRIu64 "\n", seq));
    WARD_TRY(ward_buf_append(out, head, AUDIT_HASH_HEX));
    WARD_TRY(ward_buf_putc(out, '\n'));
    WARD_TRY(ward_buf_append(out, ts, ts_len));
    WARD_TRY(ward_buf_putc(out, '\n'));
fail:
    return rc;
}

int audit_checkpoint_sig_verify(EVP_PKEY *pub, const char *msg, size_t msg_len, const char *sig_b64,
                                size_t sig_len)
{
    unsigned char sig[SIG_B64_LEN];
    if (pub == NULL || sig_len != SIG_B64_LEN)
        return WARD_EINVAL;
    /* EVP_DecodeBlock keeps the padding's zero bytes: 88 characters give 66 */
    if (EVP_DecodeBlock(sig, (const unsigned char *)sig_b64, (int)sig_len) != SIG_LEN + 2 ||
        sig_b64[SIG_B64_LEN - 1] != '=' || sig_b64[SIG_B64_LEN - 2] != '=' ||
        sig_b64[SIG_B64_LEN - 3] == '=')
        return WARD_EINVAL;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c != NULL && EVP_DigestVerifyInit(c, NULL, NULL, NULL, pub) == 1 &&
             EVP_DigestVerify(c, sig, SIG_LEN, (const unsigned char *)msg, msg_len) == 1;
    EVP_MD_CTX_free(c);
    ERR_clear_error();
    return ok ? 0 : WARD_EINVAL;
}

int audit_checkpoint_render(ward_buf *out, EVP_PKEY *key, const char *key_id, const char *node,
                            size_t node_len, uint64_t seq, const uint8_t head[AUDIT_HASH_LEN],
                            int64_t ts_ns, const char *segment, ward_err *err)
{
    char hex[AUDIT_HASH_HEX], ts[AUDIT_TS_LEN];
    unsigned char sig[SIG_LEN], b64[SIG_B64_LEN + 1];
    size_t sig_len = sizeof(sig), start = out->len;
    ward_buf msg;
    int rc = 0;
    EVP_MD_CTX *c = NULL;
    ward_buf_init(&msg);
    audit_hex(hex, head, AUDIT_HASH_LEN);
    audit_time_format(ts, ts_ns);
    WARD_TRY(audit_checkpoint_message(&msg, node, node_len, seq, hex, ts, sizeof(ts)));
    if ((c = EVP_MD_CTX_new()) == NULL || EVP_DigestSignInit(c, NULL, NULL, NULL, key) != 1 ||
        EVP_DigestSign(c, sig, &sig_len, (const unsigned char *)msg.ptr, msg.len) != 1 ||
        sig_len != SIG_LEN) {
        ward_err_set(err, "signing a checkpoint failed");
        ERR_clear_error();
        rc = WARD_EIO;
        goto fail;
    }
    EVP_EncodeBlock(b64, sig, SIG_LEN);
    WARD_TRY(ward_buf_printf(
        out, "{\"v\":1,\"seq\":%" PRIu64 ",\"head\":\"%.*s\",\"ts\":\"%.*s\",\"node\":", seq,
        AUDIT_HASH_HEX, hex, AUDIT_TS_LEN, ts));
    if (node != NULL)
        WARD_TRY(audit_json_str(out, node, node_len));
    else
        WARD_TRY(ward_buf_puts(out, "null"));
    WARD_TRY(ward_buf_printf(out, ",\"segment\":\"%s\",\"key\":\"%s\",\"sig\":\"%s\"}\n", segment,
                             key_id, (const char *)b64));
    goto out;
fail:
    out->len = start;
    if (out->ptr != NULL)
        out->ptr[start] = '\0';
    if (rc == WARD_ENOMEM)
        ward_err_set(err, "rendering a checkpoint: out of memory");
out:
    EVP_MD_CTX_free(c);
    ward_buf_dispose(&msg);
    OPENSSL_cleanse(sig, sizeof(sig));
    return rc;
}

/* ---- keys ------------------------------------------------------------------------- */

int audit_key_id(EVP_PKEY *key, char out[AUDIT_KEY_ID_HEX + 1])
{
    uint8_t raw[32], h[AUDIT_HASH_LEN];
    size_t len = sizeof(raw);
    if (key == NULL || EVP_PKEY_get_base_id(key) != EVP_PKEY_ED25519 ||
        EVP_PKEY_get_raw_public_key(key, raw, &len) != 1 || len != sizeof(raw)) {
        ERR_clear_error();
        return WARD_EINVAL;
    }
    audit_sha256(h, raw, len);
    audit_hex(out, h, AUDIT_KEY_ID_HEX / 2);
    out[AUDIT_KEY_ID_HEX] = '\0';
    return 0;
}

/* Reads a key file (at most KEY_FILE_MAX bytes; nofollow: a symbolic link is
 * refused) and parses its PEM; the bytes read are wiped. */
static int key_read(const char *path, bool private_key, bool nofollow, EVP_PKEY **out,
                    ward_err *err)
{
    char *buf = malloc(KEY_FILE_MAX);
    size_t len = 0;
    int rc = 0;
    *out = NULL;
    if (buf == NULL)
        return WARD_ENOMEM;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | (nofollow ? O_NOFOLLOW : 0));
    if (fd < 0) {
        int e = errno;
        ward_err_set(err, "%s: %s", path,
                     e == ELOOP ? "is a symbolic link; refusing to follow it" : strerror(e));
        rc = e == ENOENT ? WARD_ENOENT : WARD_EIO;
        goto out;
    }
    for (;;) {
        ssize_t r = read(fd, buf + len, KEY_FILE_MAX - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ward_err_set(err, "%s: read: %s", path, strerror(errno));
            rc = WARD_EIO;
            break;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len == KEY_FILE_MAX) {
            ward_err_set(err, "%s: larger than %d bytes: not a key", path, KEY_FILE_MAX);
            rc = WARD_EINVAL;
            break;
        }
    }
    close(fd);
    if (rc < 0)
        goto out;
    BIO *bio = BIO_new_mem_buf(buf, (int)len);
    EVP_PKEY *k = bio == NULL   ? NULL
                  : private_key ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)
                                : PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ERR_clear_error();
    if (k == NULL) {
        ward_err_set(err, "%s: not a PEM %s", path,
                     private_key ? "private key (PKCS#8)" : "public key");
        rc = WARD_EINVAL;
        goto out;
    }
    if (EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519) {
        ward_err_set(err, "%s: not an Ed25519 key", path);
        EVP_PKEY_free(k);
        rc = WARD_EINVAL;
        goto out;
    }
    *out = k;
out:
    OPENSSL_cleanse(buf, len);
    free(buf);
    return rc;
}

int audit_key_load(const char *path, EVP_PKEY **out, ward_err *err)
{
    return key_read(path, true, false, out, err);
}

int audit_public_key_load(const char *path, EVP_PKEY **out, ward_err *err)
{
    return key_read(path, false, false, out, err);
}

/* data written to path, which must not exist: a private temporary file,
 * fsynced, then hard-linked into place (link(2) never replaces a file). */
static int write_new_file(const char *path, const void *data, size_t len, ward_err *err)
{
    char tmp[4096];
    int rc = WARD_EIO, fd = -1;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
        ward_err_set(err, "%s: path too long", path);
        return WARD_EINVAL;
    }
    (void)unlink(tmp); /* a left-over of a crashed attempt by this pid number */
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
        ward_err_set(err, "%s: %s", tmp, strerror(errno));
        return WARD_EIO;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, (const char *)data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            ward_err_set(err, "%s: write: %s", tmp, w < 0 ? strerror(errno) : "short write");
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) < 0) {
        ward_err_set(err, "%s: fsync: %s", tmp, strerror(errno));
        goto out;
    }
    if (link(tmp, path) < 0) {
        ward_err_set(err, "%s: %s", path,
                     errno == EEXIST ? "exists already; refusing to replace it" : strerror(errno));
        goto out;
    }
    rc = 0;
out:
    close(fd);
    (void)unlink(tmp);
    return rc;
}

int audit_key_generate(const char *path, EVP_PKEY **out, ward_err *err)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long len;
    int rc = 0;
    if (out != NULL)
        *out = NULL;
    if (k == NULL || bio == NULL ||
        PEM_write_bio_PKCS8PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL) != 1 ||
        (len = BIO_get_mem_data(bio, &pem)) <= 0) {
        ward_err_set(err, "%s: generating an Ed25519 key failed", path);
        ERR_clear_error();
        rc = WARD_EIO;
        goto fail;
    }
    WARD_TRY(write_new_file(path, pem, (size_t)len, err));
    if (out != NULL) {
        *out = k;
        k = NULL;
    }
fail:
    BIO_free(bio); /* clears the PEM bytes */
    EVP_PKEY_free(k);
    return rc;
}

/* DIR/checkpoint.pub holds key's public half (rewritten only when it differs). */
static int write_public(const char *dir, EVP_PKEY *key, ward_err *err)
{
    char path[4096], *pem = NULL, *old = NULL;
    size_t old_len = 0;
    long len;
    int rc = 0;
    ward_err ignored;
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL || PEM_write_bio_PUBKEY(bio, key) != 1 ||
        (len = BIO_get_mem_data(bio, &pem)) <= 0) {
        ERR_clear_error();
        rc = WARD_ENOMEM;
        goto out;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, AUDIT_PUBLIC_KEY_FILE);
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
        ward_file_read(path, KEY_FILE_MAX, &old, &old_len, &ignored) == 0 &&
        old_len == (size_t)len && memcmp(old, pem, old_len) == 0)
        goto out;
    rc = ward_file_write_atomic(dir, AUDIT_PUBLIC_KEY_FILE, pem, (size_t)len, 0600, err);
out:
    free(old);
    BIO_free(bio);
    return rc;
}

int audit_key_setup(const char *dir, const char *key_file, EVP_PKEY **key,
                    char key_id[AUDIT_KEY_ID_HEX + 1], ward_err *err)
{
    char path[4096];
    int rc = 0;
    *key = NULL;
    if (key_file != NULL) {
        WARD_TRY(key_read(key_file, true, false, key, err));
    } else {
        snprintf(path, sizeof(path), "%s/%s", dir, AUDIT_PRIVATE_KEY_FILE);
        rc = key_read(path, true, true, key, err);
        if (rc == WARD_ENOENT)
            rc = audit_key_generate(path, key, err);
        if (rc < 0)
            goto fail;
        struct stat st;
        if (stat(path, &st) == 0 && (st.st_mode & 077) != 0 && chmod(path, 0600) < 0) {
            ward_err_set(err, "%s: narrowing its mode to 0600: %s", path, strerror(errno));
            rc = WARD_EIO;
            goto fail;
        }
    }
    if (audit_key_id(*key, key_id) < 0) {
        ward_err_set(err, "%s: not an Ed25519 key", key_file != NULL ? key_file : path);
        rc = WARD_EINVAL;
        goto fail;
    }
    if ((rc = write_public(dir, *key, err)) < 0) {
        if (rc == WARD_ENOMEM)
            ward_err_set(err, "%s/%s: out of memory", dir, AUDIT_PUBLIC_KEY_FILE);
        goto fail;
    }
    return 0;
fail:
    EVP_PKEY_free(*key);
    *key = NULL;
    return rc;
}
