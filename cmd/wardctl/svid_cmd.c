/* svid_cmd.c - `wardctl svid`: fetch an X509-SVID from wardd with a join token, show one */
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cmd/wardctl/wardctl.h"
#include "identity/identity.h"

#define SVID_EXIT_HELP                                                                             \
    "Exit status:\n"                                                                               \
    "  0  success\n"                                                                               \
    "  1  wardd refused, could not be reached or authenticated; or (show) not a\n"                 \
    "     valid X509-SVID\n"                                                                       \
    "  2  usage error, or unreadable / malformed input\n"

/* identity_cmd.c: checks --server and the pin and fills conf. */
int wctl_identity_conf(const char *prog, const char *server, const char *bundle_file, bool insecure,
                       ident_client_conf *conf, char **bundle_data);

static int svid_fetch(const char *prog, int argc, char **argv);
static int svid_show(const char *prog, int argc, char **argv);

static const wctl_command svid_commands[] = {
    {"fetch", svid_fetch, "attest to wardd with a join token; write the SVID, key and bundle"},
    {"show", svid_show, "print an X509-SVID's ID, validity, issuer and whether it is valid"},
    {NULL, NULL, NULL},
};

static void group_usage(FILE *f)
{
    fputs("Usage: wardctl svid COMMAND [ARGS...]\n"
          "\n"
          "Obtain and inspect X509-SVIDs (SPIFFE identities as X.509 certificates).\n"
          "\n"
          "Commands:\n",
          f);
    wctl_commands_print(f, svid_commands);
    fputs("\nRun 'wardctl svid COMMAND --help' for a command's options.\n\n" SVID_EXIT_HELP, f);
}

int wctl_svid_main(const char *prog, int argc, char **argv)
{
    return wctl_commands_run(prog, argc, argv, svid_commands, group_usage);
}

/* "2026-11-26T01:00:00Z" */
static void fmt_time(const ASN1_TIME *t, char *buf, size_t size)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1 ||
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "(unreadable)");
}

static void fmt_unix(time_t t, char *buf, size_t size)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* "1h2m3s" */
static void fmt_span(long long s, char *buf, size_t size)
{
    if (s >= 86400)
        snprintf(buf, size, "%lldd%lldh", s / 86400, s % 86400 / 3600);
    else if (s >= 3600)
        snprintf(buf, size, "%lldh%lldm", s / 3600, s % 3600 / 60);
    else if (s >= 60)
        snprintf(buf, size, "%lldm%llds", s / 60, s % 60);
    else
        snprintf(buf, size, "%llds", s);
}

/* ---- fetch ---------------------------------------------------------------------------- */

static const char fetch_help[] =
    "Usage: wardctl svid fetch --server https://ADDR:PORT (--token T | --token-file FILE)\n"
    "                          --out DIR (--bundle FILE | --insecure-bootstrap)\n"
    "\n"
    "Attest to wardd with a one-time join token: generate an ECDSA P-256 key in\n"
    "memory, send a CSR for it, check the X509-SVID wardd returns (chain to the\n"
    "returned bundle, every X509-SVID rule, the key) and write\n"
    "  DIR/svid.pem     the SVID chain, leaf first\n"
    "  DIR/svid.key     its private key (PKCS#8 PEM, mode 0600)\n"
    "  DIR/bundle.pem   the trust domain's CA certificates\n"
    "  DIR/bundle.json  the SPIFFE bundle\n"
    "DIR is created (mode 0700) if missing. wardd is authenticated as\n"
    "spiffe://TD/ward/server against the pinned bundle; with --insecure-bootstrap\n"
    "it is not (said on stderr), and the bundle it returns is pinned from then on.\n"
    "\n"
    "Options:\n"
    "  -S, --server URL          wardd's API, https://ADDR:PORT\n"
    "  -T, --token T             the join token ('wardctl identity token create')\n"
    "      --token-file FILE     read the token from FILE instead (keeps it out of\n"
    "                            the process list)\n"
    "  -o, --out DIR             where to write the files\n"
    "  -b, --bundle FILE         the pinned bundle: PEM CA certificates or SPIFFE\n"
    "                            bundle JSON\n"
    "      --insecure-bootstrap  do not verify wardd's certificate (first contact only)\n"
    "  -h, --help                show this help\n"
    "\n" SVID_EXIT_HELP;

enum {
    OPT_HELP = 1,
    OPT_SERVER,
    OPT_TOKEN,
    OPT_TOKEN_FILE,
    OPT_OUT,
    OPT_BUNDLE,
    OPT_INSECURE,
};

static const wctl_opt fetch_opts[] = {
    {"help", 'h', false, OPT_HELP},
    {"server", 'S', true, OPT_SERVER},
    {"token", 'T', true, OPT_TOKEN},
    {"token-file", 0, true, OPT_TOKEN_FILE},
    {"out", 'o', true, OPT_OUT},
    {"bundle", 'b', true, OPT_BUNDLE},
    {"insecure-bootstrap", 0, false, OPT_INSECURE},
    {NULL, 0, false, 0},
};

/* Reads a token file: one line, surrounding whitespace dropped. */
static int read_token_file(const char *prog, const char *path, char *token)
{
    char *data = NULL;
    size_t len = 0;
    ward_err err;
    ward_err_clear(&err);
    if (ward_file_read(path, 4096, &data, &len, &err) < 0) {
        fprintf(stderr, "%s: --token-file: %s\n", prog, err.msg);
        return WCTL_EXIT_USAGE;
    }
    size_t s = 0, e = len;
    while (s < e && strchr(" \t\r\n", data[s]) != NULL)
        s++;
    while (e > s && strchr(" \t\r\n", data[e - 1]) != NULL)
        e--;
    int status = WCTL_EXIT_OK;
    if (e == s || e - s >= IDENT_TOKEN_MAX || memchr(data + s, '\n', e - s) != NULL) {
        fprintf(stderr, "%s: --token-file: %s does not hold one token\n", prog, path);
        status = WCTL_EXIT_USAGE;
    } else {
        memcpy(token, data + s, e - s);
        token[e - s] = '\0';
    }
    OPENSSL_cleanse(data, len);
    free(data);
    return status;
}

static int svid_fetch(const char *prog, int argc, char **argv)
{
    wctl_args a;
    const char *v, *server = NULL, *bundle_file = NULL, *out = NULL, *token_file = NULL;
    char *token_arg = NULL;
    bool insecure = false;
    int opt;
    wctl_args_init(&a, prog, argc, argv, fetch_opts);
    while ((opt = wctl_args_next(&a, &v)) != WCTL_ARG_END) {
        switch (opt) {
        case WCTL_ARG_ERROR: return WCTL_EXIT_USAGE;
        case OPT_HELP: fputs(fetch_help, stdout); return WCTL_EXIT_OK;
        case OPT_SERVER: server = v; break;
        case OPT_TOKEN: token_arg = (char *)v; break;
        case OPT_TOKEN_FILE: token_file = v; break;
        case OPT_OUT: out = v; break;
        case OPT_BUNDLE: bundle_file = v; break;
        case OPT_INSECURE: insecure = true; break;
        default: return wctl_usage_error(prog, "unexpected argument '%s'", v);
        }
    }
    if (token_arg == NULL && token_file == NULL)
        return wctl_usage_error(prog, "--token (or --token-file) is required");
    if (token_arg != NULL && token_file != NULL)
        return wctl_usage_error(prog, "--token and --token-file exclude each other");
    if (token_arg != NULL && (token_arg[0] == '\0' || strlen(token_arg) >= IDENT_TOKEN_MAX))
        return wctl_usage_error(prog, "--token: not a join token");
    if (out == NULL)
        return wctl_usage_error(prog, "--out DIR is required");

    char token[IDENT_TOKEN_MAX];
    if (token_arg != NULL) {
        snprintf(token, sizeof(token), "%s", token_arg);
        OPENSSL_cleanse(token_arg, strlen(token_arg)); /* from our own argv copy */
    } else {
        int st = read_token_file(prog, token_file, token);
        if (st != WCTL_EXIT_OK)
            return st;
    }
    ident_client_conf conf;
    char *bundle_data = NULL;
    ident_svid *svid = NULL;
    int status = wctl_identity_conf(prog, server, bundle_file, insecure, &conf, &bundle_data);
    if (status != WCTL_EXIT_OK)
        goto done;
    status = WCTL_EXIT_FAIL;
    struct stat st;
    if (stat(out, &st) != 0) {
        if (errno != ENOENT || mkdir(out, 0700) != 0) {
            fprintf(stderr, "%s: --out %s: %s\n", prog, out, strerror(errno));
            status = WCTL_EXIT_USAGE;
            goto done;
        }
    } else if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "%s: --out %s: not a directory\n", prog, out);
        status = WCTL_EXIT_USAGE;
        goto done;
    }
    ward_err err;
    ward_err_clear(&err);
    if (ident_client_attest(&conf, token, &svid, &err) < 0) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        goto done;
    }
    if (ident_svid_write_dir(svid, out, &err) < 0) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        goto done;
    }
    char until[32];
    fmt_unix(ident_svid_not_after(svid), until, sizeof(until));
    printf("%s valid until %s: wrote %s/svid.pem, svid.key, bundle.pem, bundle.json\n",
           ident_svid_id(svid), until, out);
    status = fflush(stdout) == 0 ? WCTL_EXIT_OK : WCTL_EXIT_FAIL;
done:
    OPENSSL_cleanse(token, sizeof(token));
    ident_svid_unref(svid);
    free(bundle_data);
    return status;
}

/* ---- show ------------------------------------------------------------------------------ */

static const char show_help[] =
    "Usage: wardctl svid show FILE [--bundle FILE]\n"
    "\n"
    "Print an X509-SVID's SPIFFE ID, subject, issuer, serial, validity, key and\n"
    "chain, then whether it is a valid X509-SVID, or the precise reason it is\n"
    "not. FILE holds PEM certificates, leaf first. The X509-SVID leaf rules are\n"
    "always checked (one URI SAN with a SPIFFE ID, CA=false, key usage with\n"
    "digitalSignature and without keyCertSign/cRLSign); the chain, the trust\n"
    "domain and the validity period only with --bundle.\n"
    "\n"
    "Options:\n"
    "  -b, --bundle FILE  the trust domain's bundle: PEM CA certificates (bundle.pem)\n"
    "                     or SPIFFE bundle JSON (bundle.json)\n"
    "  -h, --help         show this help\n"
    "\n" SVID_EXIT_HELP;

static const wctl_opt show_opts[] = {
    {"help", 'h', false, OPT_HELP},
    {"bundle", 'b', true, OPT_BUNDLE},
    {NULL, 0, false, 0},
};

static void print_name(const char *label, const X509_NAME *name)
{
    char buf[512] = "";
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio != NULL &&
        X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        int n = BIO_read(bio, buf, (int)sizeof(buf) - 1);
        buf[n > 0 ? n : 0] = '\0';
    }
    BIO_free(bio);
    printf("%-12s%s\n", label, buf[0] ? buf : "(empty)");
}

/* Every URI SAN, for certificates that fail the leaf rules. */
static void print_uris(X509 *x)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int n = 0;
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_URI)
            continue;
        const ASN1_IA5STRING *u = g->d.uniformResourceIdentifier;
        printf("%-12s", n++ == 0 ? "URI SANs:" : "");
        for (int j = 0; j < u->length && j < 2100; j++) {
            unsigned char c = u->data[j];
            putchar(c >= 0x20 && c < 0x7f ? c : '?');
        }
        putchar('\n');
    }
    if (n == 0)
        printf("%-12s(none)\n", "URI SANs:");
    GENERAL_NAMES_free(gens);
}

static void print_key(X509 *x)
{
    EVP_PKEY *pk = X509_get0_pubkey(x);
    char group[64] = "";
    size_t gl = 0;
    if (pk == NULL) {
        printf("%-12s(unreadable)\n", "Key:");
    } else if (EVP_PKEY_get_group_name(pk, group, sizeof(group), &gl) == 1) {
        printf("%-12s%s %s (%d bits)\n", "Key:", EVP_PKEY_get0_type_name(pk), group,
               EVP_PKEY_get_bits(pk));
    } else {
        printf("%-12s%s (%d bits)\n", "Key:", EVP_PKEY_get0_type_name(pk), EVP_PKEY_get_bits(pk));
    }
    ERR_clear_error();
}

static int svid_show(const char *prog, int argc, char **argv)
{
    wctl_args a;
    const char *v, *file = NULL, *bundle_file = NULL;
    int opt;
    wctl_args_init(&a, prog, argc, argv, show_opts);
    while ((opt = wctl_args_next(&a, &v)) != WCTL_ARG_END) {
        switch (opt) {
        case WCTL_ARG_ERROR: return WCTL_EXIT_USAGE;
        case OPT_HELP: fputs(show_help, stdout); return WCTL_EXIT_OK;
        case OPT_BUNDLE: bundle_file = v; break;
        default:
            if (file != NULL)
                return wctl_usage_error(prog, "one FILE only ('%s' and '%s')", file, v);
            file = v;
        }
    }
    if (file == NULL)
        return wctl_usage_error(prog, "no certificate FILE given");

    int status = WCTL_EXIT_USAGE;
    char *pem = NULL, *bdata = NULL;
    size_t pem_len = 0, blen = 0;
    BIO *bio = NULL;
    STACK_OF(X509) *chain = sk_X509_new_null();
    ident_bundle *bundle = NULL;
    ward_err err, why;
    ward_err_clear(&err);
    ward_err_clear(&why);
    if (chain == NULL)
        goto done;
    if (ward_file_read(file, (size_t)1 << 20, &pem, &pem_len, &err) < 0) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        goto done;
    }
    if (bundle_file != NULL &&
        ward_file_read(bundle_file, (size_t)1 << 20, &bdata, &blen, &err) < 0) {
        fprintf(stderr, "%s: --bundle: %s\n", prog, err.msg);
        goto done;
    }
    bio = BIO_new_mem_buf(pem, (int)pem_len);
    X509 *x;
    while (bio != NULL && sk_X509_num(chain) < 16 &&
           (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
        if (sk_X509_push(chain, x) == 0)
            X509_free(x);
    ERR_clear_error();
    if (sk_X509_num(chain) == 0) {
        fprintf(stderr, "%s: %s: no PEM certificate found\n", prog, file);
        goto done;
    }
    X509 *leaf = sk_X509_value(chain, 0);
    char id[IDENT_ID_MAX] = "";
    int leaf_rc = ident_svid_check_leaf(leaf, id, &why);

    char nb[32], na[32], span[32];
    fmt_time(X509_get0_notBefore(leaf), nb, sizeof(nb));
    fmt_time(X509_get0_notAfter(leaf), na, sizeof(na));
    if (leaf_rc == 0)
        printf("%-12s%s\n", "SPIFFE ID:", id);
    else
        print_uris(leaf);
    print_name("Subject:", X509_get_subject_name(leaf));
    print_name("Issuer:", X509_get_issuer_name(leaf));
    const ASN1_INTEGER *serial = X509_get0_serialNumber(leaf);
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    printf("%-12s%s\n", "Serial:", hex != NULL ? hex : "(unreadable)");
    OPENSSL_free(hex);
    BN_free(bn);
    printf("%-12s%s\n", "Not before:", nb);
    time_t now = time(NULL), t_na = 0;
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &tm) == 1) {
        t_na = timegm(&tm);
        fmt_span(t_na > now ? (long long)(t_na - now) : (long long)(now - t_na), span,
                 sizeof(span));
        printf("%-12s%s (%s %s)\n", "Not after:", na, t_na > now ? "expires in" : "expired", span);
    } else {
        printf("%-12s%s\n", "Not after:", na);
    }
    print_key(leaf);
    printf("%-12s%d certificate%s\n", "Chain:", sk_X509_num(chain),
           sk_X509_num(chain) == 1 ? "" : "s");

    status = WCTL_EXIT_FAIL;
    if (leaf_rc < 0) {
        printf("%-12snot a valid X509-SVID: %s\n", "Status:", why.msg);
        goto done;
    }
    if (bundle_file == NULL) {
        printf("%-12svalid X509-SVID (leaf rules; chain and validity period not checked: pass "
               "--bundle)\n",
               "Status:");
        status = WCTL_EXIT_OK;
        goto done;
    }
    ward_spiffe_id sid;
    char td[WARD_SPIFFE_TD_MAX + 1];
    if (ward_spiffe_id_parse(id, strlen(id), &sid, &why) < 0) {
        printf("%-12snot a valid X509-SVID: %s\n", "Status:", why.msg);
        goto done;
    }
    memcpy(td, sid.td, sid.td_len);
    td[sid.td_len] = '\0';
    size_t i = 0;
    while (i < blen && strchr(" \t\r\n", bdata[i]) != NULL)
        i++;
    int rc = i < blen && bdata[i] == '{' ? ident_bundle_from_json(td, bdata, blen, &bundle, &why)
                                         : ident_bundle_from_pem(td, bdata, blen, &bundle, &why);
    if (rc < 0) {
        fprintf(stderr, "%s: --bundle %s: %s\n", prog, bundle_file, why.msg);
        status = WCTL_EXIT_USAGE;
        goto done;
    }
    char vid[IDENT_ID_MAX];
    ward_err_clear(&why);
    rc = ident_svid_verify(chain, bundle, now, vid, &why);
    if (rc < 0) {
        printf("%-12snot a valid X509-SVID: %s\n",
               "Status:", why.msg[0] ? why.msg : ward_strerror(rc));
        goto done;
    }
    printf("%-12svalid X509-SVID (chain to the bundle of %s, valid now)\n", "Status:", td);
    status = WCTL_EXIT_OK;
done:
    if (bundle != NULL)
        ident_bundle_unref(bundle);
    BIO_free(bio);
    sk_X509_pop_free(chain, X509_free);
    free(pem);
    free(bdata);
    return status;
}
