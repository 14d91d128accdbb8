/* identity_cmd.c - `wardctl identity`: join tokens (admin socket), the trust bundle (HTTPS) */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/wardctl/wardctl.h"
#include "identity/identity.h"

#define DEFAULT_ADMIN_SOCKET "/var/lib/ward/admin.sock"

#define WCTL_IDENT_EXIT_HELP                                                                       \
    "Exit status:\n"                                                                               \
    "  0  success\n"                                                                               \
    "  1  wardd refused, could not be reached or could not be authenticated\n"                     \
    "  2  usage error, or unreadable / malformed input\n"

/* Shared with svid_cmd.c: checks --server and the pin (--bundle FILE or
 * --insecure-bootstrap, exactly one) and fills conf; *bundle_data holds the
 * pinned file (free it). Returns an exit status, WCTL_EXIT_OK to go on. */
int wctl_identity_conf(const char *prog, const char *server, const char *bundle_file, bool insecure,
                       ident_client_conf *conf, char **bundle_data);

static int identity_token(const char *prog, int argc, char **argv);
static int identity_bundle(const char *prog, int argc, char **argv);
static int token_create(const char *prog, int argc, char **argv);

static const wctl_command identity_commands[] = {
    {"token", identity_token, "manage one-time join tokens (token create)"},
    {"bundle", identity_bundle, "print the trust domain's SPIFFE bundle from wardd"},
    {NULL, NULL, NULL},
};

static const wctl_command token_commands[] = {
    {"create", token_create, "create a one-time join token bound to a SPIFFE ID"},
    {NULL, NULL, NULL},
};

static void group_usage(FILE *f)
{
    fputs("Usage: wardctl identity COMMAND [ARGS...]\n"
          "\n"
          "Work with wardd, the mesh's identity service: create join tokens for\n"
          "workloads (admin socket) and fetch the trust bundle (HTTPS).\n"
          "\n"
          "Commands:\n",
          f);
    wctl_commands_print(f, identity_commands);
    fputs("\nRun 'wardctl identity COMMAND --help' for a command's options.\n"
          "See also 'wardctl svid --help' (fetch and inspect X509-SVIDs).\n\n" WCTL_IDENT_EXIT_HELP,
          f);
}

int wctl_identity_main(const char *prog, int argc, char **argv)
{
    return wctl_commands_run(prog, argc, argv, identity_commands, group_usage);
}

static void token_usage(FILE *f)
{
    fputs("Usage: wardctl identity token COMMAND [ARGS...]\n"
          "\n"
          "Commands:\n",
          f);
    wctl_commands_print(f, token_commands);
    fputs("\n" WCTL_IDENT_EXIT_HELP, f);
}

static int identity_token(const char *prog, int argc, char **argv)
{
    return wctl_commands_run(prog, argc, argv, token_commands, token_usage);
}

/* ---- token create ------------------------------------------------------------ */

static const char token_create_help[] =
    "Usage: wardctl identity token create --spiffe-id ID [--ttl D] [--admin-socket PATH] [--json]\n"
    "\n"
    "Create a one-time join token bound to a SPIFFE ID. A workload redeems it\n"
    "once ('wardctl svid fetch --token T', or ward-proxy's identity.token_file)\n"
    "to obtain its first X509-SVID. Prints the token alone on stdout.\n"
    "\n"
    "The request goes to wardd's admin API over its Unix socket, which only\n"
    "wardd's own user (or root) may use.\n"
    "\n"
    "Options:\n"
    "  -i, --spiffe-id ID       the workload's SPIFFE ID (spiffe://TD/path)\n"
    "  -t, --ttl D              how long the token stays redeemable (\"10m\",\n"
    "                           \"1h\"; default: wardd's, 10 minutes)\n"
    "  -s, --admin-socket PATH  wardd's admin socket (default: $WARD_ADMIN_SOCKET,\n"
    "                           else " DEFAULT_ADMIN_SOCKET "; wardd creates it\n"
    "                           as DATA_DIR/admin.sock)\n"
    "      --json               print wardd's whole answer (token, spiffe_id,\n"
    "                           expires_at) as JSON\n"
    "  -h, --help               show this help\n"
    "\n" WCTL_IDENT_EXIT_HELP;

enum { OPT_HELP = 1, OPT_ID, OPT_TTL, OPT_SOCKET, OPT_JSON, OPT_SERVER, OPT_BUNDLE, OPT_INSECURE };

static const wctl_opt token_create_opts[] = {
    {"help", 'h', false, OPT_HELP}, {"spiffe-id", 'i', true, OPT_ID},
    {"ttl", 't', true, OPT_TTL},    {"admin-socket", 's', true, OPT_SOCKET},
    {"json", 0, false, OPT_JSON},   {NULL, 0, false, 0},
};

static int token_create(const char *prog, int argc, char **argv)
{
    wctl_args a;
    const char *v, *id = NULL, *ttl = NULL, *sock = NULL;
    bool json = false;
    int opt;
    wctl_args_init(&a, prog, argc, argv, token_create_opts);
    while ((opt = wctl_args_next(&a, &v)) != WCTL_ARG_END) {
        switch (opt) {
        case WCTL_ARG_ERROR: return WCTL_EXIT_USAGE;
        case OPT_HELP: fputs(token_create_help, stdout); return WCTL_EXIT_OK;
        case OPT_ID: id = v; break;
        case OPT_TTL: ttl = v; break;
        case OPT_SOCKET: sock = v; break;
        case OPT_JSON: json = true; break;
        default: return wctl_usage_error(prog, "unexpected argument '%s'", v);
        }
    }
    if (id == NULL)
        return wctl_usage_error(prog, "--spiffe-id is required");
    ward_err err;
    ward_err_clear(&err);
    ward_spiffe_id sid;
    if (ward_spiffe_id_parse(id, strlen(id), &sid, &err) < 0)
        return wctl_usage_error(prog, "--spiffe-id: %s", err.msg);
    if (sid.path_len == 0)
        return wctl_usage_error(prog, "--spiffe-id: %s names a trust domain, not a workload", id);
    uint64_t ns;
    if (ttl != NULL && (ward_parse_duration(ttl, strlen(ttl), UINT64_MAX, &ns) < 0 || ns == 0))
        return wctl_usage_error(prog, "--ttl: '%s' is not a duration such as 10m or 1h", ttl);
    if (sock == NULL)
        sock = getenv("WARD_ADMIN_SOCKET");
    if (sock == NULL || sock[0] == '\0')
        sock = DEFAULT_ADMIN_SOCKET;

    char token[IDENT_TOKEN_MAX];
    ward_buf answer;
    ward_buf_init(&answer);
    int status = WCTL_EXIT_FAIL;
    if (ident_client_token_create(sock, id, ttl, 0, token, &answer, &err) < 0) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        goto done;
    }
    if (json)
        printf("%.*s\n", (int)answer.len, answer.ptr);
    else
        printf("%s\n", token);
    status = fflush(stdout) == 0 ? WCTL_EXIT_OK : WCTL_EXIT_FAIL;
done:
    OPENSSL_cleanse(token, sizeof(token));
    if (answer.ptr != NULL)
        OPENSSL_cleanse(answer.ptr, answer.cap);
    ward_buf_dispose(&answer);
    return status;
}

/* ---- bundle --------------------------------------------------------------------- */

static const char bundle_help[] =
    "Usage: wardctl identity bundle --server https://ADDR:PORT (--bundle FILE | "
    "--insecure-bootstrap)\n"
    "\n"
    "Fetch the trust domain's SPIFFE bundle (a JWKS with x509-svid and jwt-svid\n"
    "keys, spiffe_sequence and spiffe_refresh_hint) from wardd and print it.\n"
    "\n"
    "wardd is authenticated by its X509-SVID, spiffe://TD/ward/server, checked\n"
    "against a pinned bundle; there is no silent trust on first use.\n"
    "\n"
    "Options:\n"
    "  -S, --server URL          wardd's API, https://ADDR:PORT\n"
    "  -b, --bundle FILE         the pinned bundle: PEM CA certificates (a previous\n"
    "                            fetch's bundle.pem) or SPIFFE bundle JSON\n"
    "      --insecure-bootstrap  do not verify wardd's certificate (first contact\n"
    "                            only; says so on stderr)\n"
    "  -h, --help                show this help\n"
    "\n" WCTL_IDENT_EXIT_HELP;

static const wctl_opt bundle_opts[] = {
    {"help", 'h', false, OPT_HELP},
    {"server", 'S', true, OPT_SERVER},
    {"bundle", 'b', true, OPT_BUNDLE},
    {"insecure-bootstrap", 0, false, OPT_INSECURE},
    {NULL, 0, false, 0},
};

int wctl_identity_conf(const char *prog, const char *server, const char *bundle_file, bool insecure,
                       ident_client_conf *conf, char **bundle_data)
{
    memset(conf, 0, sizeof(*conf));
    *bundle_data = NULL;
    if (server == NULL)
        return wctl_usage_error(prog, "--server is required");
    if (bundle_file == NULL && !insecure)
        return wctl_usage_error(prog, "pin wardd with --bundle FILE, or pass --insecure-bootstrap "
                                      "on first contact");
    if (bundle_file != NULL && insecure)
        return wctl_usage_error(prog, "--bundle and --insecure-bootstrap exclude each other");
    ward_err err;
    ward_err_clear(&err);
    char host[256], port[8];
    if (ident_client_url_parse(server, host, sizeof(host), port, sizeof(port), &err) < 0)
        return wctl_usage_error(prog, "--server: %s", err.msg);
    conf->server = server;
    conf->insecure_bootstrap = insecure;
    if (bundle_file != NULL) {
        size_t len = 0;
        if (ward_file_read(bundle_file, (size_t)1 << 20, bundle_data, &len, &err) < 0) {
            fprintf(stderr, "%s: --bundle: %s\n", prog, err.msg);
            return WCTL_EXIT_USAGE;
        }
        conf->bundle_data = *bundle_data;
        conf->bundle_len = len;
    } else {
        fprintf(stderr,
                "%s: warning: --insecure-bootstrap: wardd's certificate is NOT verified on "
                "this connection\n",
                prog);
    }
    return WCTL_EXIT_OK;
}

static int identity_bundle(const char *prog, int argc, char **argv)
{
    wctl_args a;
    const char *v, *server = NULL, *bundle_file = NULL;
    bool insecure = false;
    int opt;
    wctl_args_init(&a, prog, argc, argv, bundle_opts);
    while ((opt = wctl_args_next(&a, &v)) != WCTL_ARG_END) {
        switch (opt) {
        case WCTL_ARG_ERROR: return WCTL_EXIT_USAGE;
        case OPT_HELP: fputs(bundle_help, stdout); return WCTL_EXIT_OK;
        case OPT_SERVER: server = v; break;
        case OPT_BUNDLE: bundle_file = v; break;
        case OPT_INSECURE: insecure = true; break;
        default: return wctl_usage_error(prog, "unexpected argument '%s'", v);
        }
    }
    ident_client_conf conf;
    char *bundle_data = NULL;
    int status = wctl_identity_conf(prog, server, bundle_file, insecure, &conf, &bundle_data);
    if (status != WCTL_EXIT_OK)
        return status;
    ward_err err;
    ward_err_clear(&err);
    ward_buf json;
    ward_buf_init(&json);
    ident_bundle *b = NULL;
    status = WCTL_EXIT_FAIL;
    if (ident_client_fetch_bundle(&conf, &json, &b, &err) < 0) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        goto done;
    }
    printf("%.*s%s", (int)json.len, json.ptr ? json.ptr : "",
           json.len > 0 && json.ptr[json.len - 1] == '\n' ? "" : "\n");
    status = fflush(stdout) == 0 ? WCTL_EXIT_OK : WCTL_EXIT_FAIL;
done:
    if (b != NULL)
        ident_bundle_unref(b);
    ward_buf_dispose(&json);
    free(bundle_data);
    return status;
}
