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
/* Consumes the token: on success copies its SPIFFE ID into id. Failures, each
 * with a reason in why: WARD_ENOENT unknown, WARD_ERANGE expired, WARD_EINVAL
 * already used, WARD_ELIMIT rate limited (too many failed guesses), WARD_EIO
 * the store could not be saved (the token is then not granted). */
int ident_tokens_redeem(ident_tokens *t, const char *token, time_t now, char *id, ward_err *why);
int ident_tokens_revoke(ident_tokens *t, const char *token, ward_err *err);

/* ---- the workload client (client.c) -----------------------------------------------
 * What ward-proxy and wardctl use to obtain and rotate an X509-SVID from wardd:
 * a P-256 key made in memory (it never leaves the process), a CSR for it, and a
 * blocking HTTPS client (TLS 1.3 only, connect and read deadlines, strict and
 * bounded response parsing) that authenticates wardd as
 * spiffe://TD/ward/server with ident_svid_verify against a pinned bundle (no
 * system roots, no hostname checks). */

/* An X509-SVID snapshot: private key, chain (leaf first), SPIFFE ID, validity
 * and the trust domain's bundle. Immutable once made, reference-counted,
 * replaced whole when renewed. */
typedef struct ident_svid ident_svid;

/* Builds a snapshot from its parts (each gets its own reference; the caller
 * keeps its own). Runs ident_svid_verify on the chain against the bundle at
 * `now` and checks that the leaf's public key is the key's. */
int ident_svid_new(EVP_PKEY *key, STACK_OF(X509) *chain, ident_bundle *bundle, time_t now,
                   ident_svid **out, ward_err *err);
void ident_svid_ref(ident_svid *s);
void ident_svid_unref(ident_svid *s); /* the last one frees (the key with EVP_PKEY_free) */

const char *ident_svid_id(const ident_svid *s);
time_t ident_svid_not_before(const ident_svid *s);
time_t ident_svid_not_after(const ident_svid *s);
EVP_PKEY *ident_svid_key(const ident_svid *s);            /* borrowed */
STACK_OF(X509) *ident_svid_chain(const ident_svid *s);    /* borrowed, leaf first */
ident_bundle *ident_svid_bundle(const ident_svid *s);     /* borrowed */
/* Appends the chain as PEM, leaf first. */
int ident_svid_chain_pem(const ident_svid *s, ward_buf *out);

/* Writes DIR/svid.pem (leaf first), DIR/svid.key (PKCS#8 PEM, created with mode
 * 0600, never readable by others even briefly), DIR/bundle.pem and
 * DIR/bundle.json, each through a temporary file renamed into place. DIR must
 * exist. */
int ident_svid_write_dir(const ident_svid *s, const char *dir, ward_err *err);
/* Loads a snapshot from files: a PEM chain (leaf first), its PKCS#8 (or
 * traditional) PEM key, and the trust domain's bundle as PEM certificates or
 * SPIFFE bundle JSON (the trust domain is the leaf's). Verified as
 * ident_svid_new does. */
int ident_svid_load_files(const char *cert_file, const char *key_file, const char *bundle_file,
                          time_t now, ident_svid **out, ward_err *err);

/* A new ECDSA P-256 key (EVP_EC_gen), held only in memory. */
int ident_client_key_new(EVP_PKEY **out, ward_err *err);
/* A PEM CSR signed by key; with spiffe_id non-NULL it asks for that URI SAN
 * (wardd ignores it and signs the attested ID). Appends to pem. */
int ident_client_csr_new(EVP_PKEY *key, const char *spiffe_id, ward_buf *pem, ward_err *err);

/* How to reach and authenticate wardd. */
typedef struct ident_client_conf {
    const char *server;         /* "https://HOST:PORT" (HOST: IPv4, [IPv6] or a name) */
    /* The pin, one of: */
    const ident_bundle *bundle; /* the trust domain's bundle */
    const char *bundle_data;    /* or PEM certificates / SPIFFE bundle JSON (as read from a
                                   file) whose trust domain is the one wardd's SVID names */
    size_t bundle_len;
    bool insecure_bootstrap;    /* or no verification of wardd (first contact only) */
    uint32_t timeout_ms;        /* connect, and each whole request/response; 0 = 10 s */
} ident_client_conf;

/* "https://HOST[:PORT][/]" -> host (IPv6 without brackets) and port ("443"
 * when absent). */
int ident_client_url_parse(const char *url, char *host, size_t host_size, char *port,
                           size_t port_size, ward_err *err);

#define IDENT_CLIENT_MAX_RESPONSE ((size_t)1 << 20) /* larger answers are refused */

/* GET /v1/bundle: the SPIFFE bundle as wardd sent it (JSON, appended to json)
 * and, when out is non-NULL, parsed. */
int ident_client_fetch_bundle(const ident_client_conf *conf, ward_buf *json, ident_bundle **out,
                              ward_err *err);
/* POST /v1/attest: a new key and CSR, the join token as the credential. The
 * returned bundle must be of the pinned trust domain (with insecure_bootstrap:
 * of the returned ID's), and the SVID must verify against it (ident_svid_verify)
 * and carry the key's public key. */
int ident_client_attest(const ident_client_conf *conf, const char *token, ident_svid **out,
                        ward_err *err);
/* POST /v1/renew over mTLS with `current`: a new key, the same SPIFFE ID back.
 * With conf->bundle NULL the pin is current's bundle. */
int ident_client_renew(const ident_client_conf *conf, const ident_svid *current, ident_svid **out,
                       ward_err *err);

/* The admin API over wardd's Unix socket: POST /v1/admin/tokens. ttl NULL =
 * the server's default; otherwise a duration ("10m"). Appends the answer's
 * JSON ({"token", "spiffe_id", "expires_at"}) to json and copies the token into
 * token (IDENT_TOKEN_MAX bytes). */
int ident_client_token_create(const char *admin_socket, const char *spiffe_id, const char *ttl,
                              uint32_t timeout_ms, char *token, ward_buf *json, ward_err *err);

/* ---- the renewal loop (client.c) --------------------------------------------------
 * A background thread that keeps a current snapshot: attests with a join token
 * when it has no SVID yet, renews at about half the SVID's lifetime (+-10%
 * jitter), retries with jittered exponential backoff (1 s .. 60 s) while wardd
 * is unreachable or refuses, keeps serving the old snapshot until it expires,
 * and publishes each new snapshot with one atomic swap. */

typedef struct ident_client ident_client;

/* Called on the renewal thread after each swap (svid borrowed: ref it to keep
 * it) and after each failed attempt (svid NULL, why says what failed). */
typedef void (*ident_client_update_cb)(ident_svid *svid, const ward_err *why, void *data);

typedef struct ident_client_options {
    ident_client_conf conf;    /* server and pin (the pin for renewals is the
                                  current snapshot's bundle once there is one) */
    ident_svid *initial;       /* the SVID to start from, or NULL (ref taken) */
    const char *token;         /* join token when there is no usable SVID (copied, wiped) */
    const char *state_dir;     /* optional: load the SVID from here at start, write
                                  each new one here (ident_svid_write_dir) */
    ident_client_update_cb cb; /* optional */
    void *data;
} ident_client_options;

int ident_client_start(const ident_client_options *opts, ident_client **out, ward_err *err);
/* The current snapshot (a new reference: unref it), or NULL when there is none
 * yet or it has expired. */
ident_svid *ident_client_current(ident_client *c);
/* Waits up to timeout_ms for a current snapshot; returns a new reference or NULL. */
ident_svid *ident_client_wait(ident_client *c, uint32_t timeout_ms);
/* Stops the thread (interrupting a request in flight) and frees the client. */
void ident_client_stop(ident_client *c);

#endif
