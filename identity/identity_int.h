/* identity_int.h - helpers shared inside identity/: JOSE encodings, JWK keys, files, times */
#ifndef IDENTITY_INT_H
#define IDENTITY_INT_H

#include <sys/types.h>

#include <cjson/cJSON.h>
#include <openssl/asn1.h>

#include "identity/identity.h"

/* Nothing outside identity/ includes this header. */

/* ---- base64 (jwt.c) ----------------------------------------------------------
 * url = true: RFC 4648 section 5 alphabet without padding (JOSE);
 * url = false: the standard alphabet with padding (x5c). Decoding is strict:
 * no whitespace, no stray padding, non-canonical trailing bits refused. */
int ident_b64_encode(const void *in, size_t len, bool url, ward_buf *out);
/* *out is malloc'ed (len + 1 bytes, NUL-terminated); free it. */
int ident_b64_decode(const char *in, size_t len, bool url, unsigned char **out, size_t *out_len);

/* Appends s as a JSON string literal (quotes and escapes included). */
int ident_json_quote(ward_buf *b, const char *s);
/* Parses exactly `len` bytes of JSON (trailing whitespace only) into a tree;
 * NULL on malformed input. Duplicate member names are refused at every level. */
cJSON *ident_json_parse(const char *s, size_t len);

/* ---- keys (bundle.c) ---------------------------------------------------------- */

/* The bundle's JWT key with this kid (borrowed), or NULL. */
EVP_PKEY *ident_bundle_jwt_key(const ident_bundle *b, const char *kid);
/* "P-256"/"P-384"/"P-521" for an EC key on a NIST curve, else NULL; *field_len
 * gets the coordinate size in bytes. */
const char *ident_ec_curve(const EVP_PKEY *pkey, size_t *field_len);

/* ---- times (svid.c) ------------------------------------------------------------ */

int ident_asn1_time_get(const ASN1_TIME *t, time_t *out);
/* RFC 3339 UTC ("2026-11-26T01:00:00Z") into buf (at least 32 bytes). */
void ident_time_format(time_t t, char *buf, size_t size);
/* A printable, bounded copy of untrusted bytes for an error message. */
void ident_sanitize(const unsigned char *s, size_t len, char *buf, size_t size);

/* ---- files (ca.c) ----------------------------------------------------------------- */

/* mkdir -p of one level with mode (an existing directory is fine). */
int ident_dir_make(const char *path, mode_t mode, ward_err *err);

#endif
