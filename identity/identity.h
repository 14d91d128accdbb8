/* identity.h - SPIFFE identities: trust bundles, SVID validation, the CA, JWT-SVIDs, join tokens, the workload client */
#ifndef IDENTITY_H
#define IDENTITY_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/ward.h"

/*
 * SPIFFE IDs are parsed by ward_spiffe_id_parse (common/ward.h): strict, never
 * normalized, compared byte for byte. Every function here that takes an ID
 * runs it through that parser first.
 */

#define IDENT_ID_MAX (WARD_SPIFFE_ID_MAX + 1)

/* ---- trust bundles (bundle.c) ------------------------------------------------
 * An immutable, reference-counted snapshot of one trust domain's trust anchors:
 * X.509 authorities (for X509-SVIDs) and JWT signing keys (for JWT-SVIDs), with
 * the SPIFFE bundle's sequence number and refresh hint. Built with a builder,
 * then frozen; swapped whole when it changes. */

typedef struct ident_bundle ident_bundle;

int ident_bundle_new(const char *trust_domain, ident_bundle **out, ward_err *err);
/* Builder calls (before the bundle is shared): each takes its own reference. */
int ident_bundle_add_x509(ident_bundle *b, X509 *authority);
int ident_bundle_add_jwt(ident_bundle *b, const char *kid, EVP_PKEY *public_key);
void ident_bundle_set_sequence(ident_bundle *b, uint64_t sequence);
void ident_bundle_set_refresh_hint(ident_bundle *b, uint64_t seconds);

void ident_bundle_ref(ident_bundle *b);
void ident_bundle_unref(ident_bundle *b);

const char *ident_bundle_trust_domain(const ident_bundle *b);
uint64_t ident_bundle_sequence(const ident_bundle *b);
size_t ident_bundle_x509_count(const ident_bundle *b);
X509 *ident_bundle_x509(const ident_bundle *b, size_t i); /* borrowed */

/* The SPIFFE bundle format: a JWKS with "use": "x509-svid" keys (one "x5c"
 * certificate each) and "use": "jwt-svid" keys (with "kid"), plus
 * "spiffe_sequence" and "spiffe_refresh_hint". */
int ident_bundle_to_json(const ident_bundle *b, ward_buf *out);
int ident_bundle_from_json(const char *trust_domain, const char *json, size_t len,
                           ident_bundle **out, ward_err *err);
/* The X.509 authorities as concatenated PEM certificates (bundle.pem). */
int ident_bundle_to_pem(const ident_bundle *b, ward_buf *out);
int ident_bundle_from_pem(const char *trust_domain, const char *pem, size_t len,
                          ident_bundle **out, ward_err *err);

/* ---- X509-SVID validation (svid.c) -------------------------------------------
 * What peers run on each other's certificates, and what wardd runs on its own
 * output before returning it. */

/* The X509-SVID leaf rules alone: exactly one URI SAN holding a valid SPIFFE
 * ID with a non-root path, CA=false, key usage present (critical) with
 * digitalSignature and without keyCertSign/cRLSign. On success copies the ID
 * into id (IDENT_ID_MAX bytes). */
int ident_svid_check_leaf(X509 *leaf, char *id, ward_err *why);

/* The whole chain (leaf first, then intermediates): leaf rules, the ID's trust
 * domain equals the bundle's, the chain verifies to one of the bundle's X.509
 * authorities only (no system roots, no hostname checks), every certificate
 * valid at `now`. On success copies the peer's SPIFFE ID into id. `why` names
 * the precise reason on failure ("certificate expired", "trust domain
 * other.org is not example.org", ...). */
int ident_svid_verify(STACK_OF(X509) *chain, const ident_bundle *bundle, time_t now, char *id,
                      ward_err *why);

/* ---- JWT-SVIDs (jwt.c) ----------------------------------------------------------
 * ES256 only; header exactly {alg, kid, typ: "JWT"}; claims sub, aud, exp, iat. */

int ident_jwt_sign(EVP_PKEY *key, const char *kid, const char *spiffe_id,
                   const char *const *audience, size_t n_audience, time_t now, uint64_t ttl_s,
                   ward_buf *out, ward_err *err);
/* Verifies signature (kid looked up in the bundle's JWT keys; `none`, HMAC and
 * every alg but ES256 refused), expiry, and that `audience` is among aud. On
 * success copies sub into id. */
int ident_jwt_verify(const char *token, size_t len, const ident_bundle *bundle,
                     const char *audience, time_t now, char *id, ward_err *why);

/* ---- the CA (ca.c) ----------------------------------------------------------------
 * Self-signed (or under an operator's upstream CA) ECDSA P-256 authority,
 * persisted in data_dir (keys mode 0600, written atomically), rotated on
 * SPIRE's schedule: the next CA is prepared (and published in the bundle) at
 * 1/2 of the current one's lifetime and activated at 5/6; a retired CA stays
 * in the bundle until the last SVID it signed expires. */

typedef struct ident_ca ident_ca;

typedef struct ident_ca_options {
    const char *trust_domain;
    const char *data_dir;
    uint64_t ca_ttl_s;        /* 0 = 24 h (SPIRE's default) */
    uint64_t svid_ttl_s;      /* default X509-SVID TTL; 0 = 1 h */
    uint64_t svid_ttl_max_s;  /* cap on requested TTLs; 0 = 24 h */
    uint64_t jwt_ttl_s;       /* default JWT-SVID TTL; 0 = 5 min */
    const char *upstream_cert_file; /* both or neither: sign under this CA */
    const char *upstream_key_file;
} ident_ca_options;

int ident_ca_open(const ident_ca_options *opts, time_t now, ident_ca **out, ward_err *err);
void ident_ca_free(ident_ca *ca);
/* Advances rotation (prepare / activate / prune); persists what changed.
 * Returns 1 when the bundle changed (its sequence increased), else 0. */
int ident_ca_tick(ident_ca *ca, time_t now, ward_err *err);
/* The current bundle (a new reference). */
ident_bundle *ident_ca_bundle(ident_ca *ca);

/* Signs the CSR's public key (PEM or DER) for `spiffe_id` (the attested ID -
 * any SAN the CSR asks for is ignored; a CSR asking for CA=true, or with a bad
 * signature, is refused). ttl_s 0 = the default; capped, and never past the
 * signing CA's expiry. The result is checked with ident_svid_verify before it
 * is returned. Appends the chain (leaf first, then intermediates) as PEM. */
int ident_ca_sign_csr(ident_ca *ca, const char *csr, size_t csr_len, const char *spiffe_id,
                      uint64_t ttl_s, time_t now, ward_buf *chain_pem, ward_err *err);
/* A JWT-SVID for spiffe_id, signed with the active JWT key. */
int ident_ca_sign_jwt(ident_ca *ca, const char *spiffe_id, const char *const *audience,
                      size_t n_audience, uint64_t ttl_s, time_t now, ward_buf *out,
                      ward_err *err);

/* ---- join tokens (tokens.c) ------------------------------------------------------
 * One-time tokens bound to a SPIFFE ID, short-lived (default 10 min), stored
 * only as SHA-256 hashes in data_dir, unusable twice; failed guesses are
 * rate-limited. */

typedef struct ident_tokens ident_tokens;

int ident_tokens_open(const char *data_dir, ident_tokens **out, ward_err *err);
void ident_tokens_free(ident_tokens *t);
/* Writes a new token (at least 128 random bits, printable) into token
 * (IDENT_TOKEN_MAX bytes). ttl_s 0 = 10 min. */
#define IDENT_TOKEN_MAX 80
int ident_tokens_create(ident_tokens *t, const char *spiffe_id, uint64_t ttl_s, time_t now,
                        char *token, ward_err *err);
/* Consumes the token: on success copies its SPIFFE ID into id. Unknown,
 * expired, already used or rate-limited tokens fail with a reason. */
int ident_tokens_redeem(ident_tokens *t, const char *token, time_t now, char *id, ward_err *why);
int ident_tokens_revoke(ident_tokens *t, const char *token, ward_err *err);

#endif
