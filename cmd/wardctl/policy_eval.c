/* policy_eval.c - `wardctl policy eval` and `explain`: requests in, one decision per record out */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/wardctl/wardctl.h"

static const char eval_help[] =
    "Usage: wardctl policy eval -p PATH... [--input FILE|-] [--explain]\n"
    "                           [--default allow|deny] [--service S]\n"
    "\n"
    "Decide requests. The input is one JSON object (it may be pretty-printed) or\n"
    "JSON Lines: one request object per line, blank lines skipped. For each\n"
    "request one decision is printed as one line of JSON:\n"
    "  {\"decision\":\"allow|deny\",\"policy\":\"ns/name\"|null,\"rule\":N|null,\n"
    "   \"reason\":\"...\",\"audit\":bool,\"dry_run\":{...}|null,\"route\":{...}|null}\n"
    "\"route\" is the Route entry chosen for request.host (port ignored, any case):\n"
    "  {\"policy\":\"ns/name\",\"name\":\"...\",\"index\":N,\"source\":\"file:line\",\n"
    "   \"destinations\":[{\"service\":\"...\",\"weight\":W}...],\"timeout_ms\":N|null,\n"
    "   \"retries\":{...}|null,\"rewrite\":{\"prefix\",\"path\"}|null,\"headers\":{...}|null,\n"
    "   \"rate_limit\":{...}|null,\"mirror\":{...}|null}\n"
    "or null when no Route serves the host or none of its entries matches.\n"
    "A malformed request prints {\"error\":\"line N: ...\",\"line\":N} in its place,\n"
    "evaluation goes on, and the exit status becomes 2.\n"
    "\n"
    "A request looks like:\n"
    "  {\"source\": {\"principal\": \"spiffe://example.org/ns/shop/sa/checkout\",\n"
    "              \"ip\": \"10.0.0.7\", \"port\": 41234},\n"
    "   \"destination\": {\"service\": \"payments\", \"port\": 8443},\n"
    "   \"request\": {\"method\": \"GET\", \"host\": \"payments\", \"path\": \"/v1/items\",\n"
    "               \"headers\": {\"x-tenant\": \"acme\"}},\n"
    "   \"connection\": {\"mtls\": true}}\n"
    "\n"
    "Options:\n"
    "  -p, --policy PATH         a policy file or folder (repeatable; further\n"
    "                            PATH arguments are policies too)\n"
    "  -i, --input FILE|-        read requests from FILE (default and '-': stdin)\n"
    "  -e, --explain             add an \"explain\" array: per policy considered,\n"
    "                            each rule matched or the field that failed; and\n"
    "                            for a host with a Route, each http entry\n"
    "  -d, --default allow|deny  decision when no ALLOW policy selects the\n"
    "                            service (default: deny)\n"
    "  -s, --service S           destination.service of requests that name none\n"
    "  -h, --help                show this help\n"
    "\n" WCTL_EXIT_CODES_HELP;

static const char explain_help[] =
    "Usage: wardctl policy explain -p PATH... [--input FILE|-]\n"
    "                              [--default allow|deny] [--service S]\n"
    "\n"
    "Like 'wardctl policy eval --explain', printed for humans: for each request,\n"
    "every policy considered (action, mode), each of its rules matched or the\n"
    "field that failed, then the final decision, the deciding policy and rule,\n"
    "the audit mark and the dry-run decision. When a Route serves the request's\n"
    "host, each of its http entries matched or the field that failed, and the\n"
    "entry that routes the request with its destinations and weights. Input as\n"
    "for eval (one JSON object or JSON Lines).\n"
    "\n"
    "Options:\n"
    "  -p, --policy PATH         a policy file or folder (repeatable; further\n"
    "                            PATH arguments are policies too)\n"
    "  -i, --input FILE|-        read requests from FILE (default and '-': stdin)\n"
    "  -d, --default allow|deny  decision when no ALLOW policy selects the\n"
    "                            service (default: deny)\n"
    "  -s, --service S           destination.service of requests that name none\n"
    "  -h, --help                show this help\n"
    "\n" WCTL_EXIT_CODES_HELP;

enum { OPT_HELP = 1, OPT_POLICY, OPT_INPUT, OPT_EXPLAIN, OPT_DEFAULT, OPT_SERVICE };

static const wctl_opt eval_opts[] = {
    {"help", 'h', false, OPT_HELP},
    {"policy", 'p', true, OPT_POLICY},
    {"input", 'i', true, OPT_INPUT},
    {"explain", 'e', false, OPT_EXPLAIN},
    {"default", 'd', true, OPT_DEFAULT},
    {"service", 's', true, OPT_SERVICE},
    {NULL, 0, false, 0},
};

/* The explain command takes the same options but --explain, which it implies. */
static const wctl_opt explain_opts[] = {
    {"help", 'h', false, OPT_HELP},
    {"policy", 'p', true, OPT_POLICY},
    {"input", 'i', true, OPT_INPUT},
    {"default", 'd', true, OPT_DEFAULT},
    {"service", 's', true, OPT_SERVICE},
    {NULL, 0, false, 0},
};

typedef struct eval_cfg {
    wctl_strs paths;
    const char *input;
    const char *service;
    bool explain;
    bool human; /* the explain command */
    bool default_allow;
} eval_cfg;

/* Returns -1 to go on, or the exit status to return. */
static int eval_parse_args(eval_cfg *cfg, const char *prog, int argc, char **argv,
                           const wctl_opt *opts, const char *help)
{
    wctl_args a;
    const char *v;
    int id;
    wctl_args_init(&a, prog, argc, argv, opts);
    while ((id = wctl_args_next(&a, &v)) != WCTL_ARG_END) {
        switch (id) {
        case WCTL_ARG_ERROR: return WCTL_EXIT_USAGE;
        case OPT_HELP: fputs(help, stdout); return WCTL_EXIT_OK;
        case OPT_INPUT: cfg->input = v; break;
        case OPT_EXPLAIN: cfg->explain = true; break;
        case OPT_SERVICE: cfg->service = v; break;
        case OPT_DEFAULT:
            if (wctl_parse_default(v, &cfg->default_allow) < 0)
                return wctl_usage_error(prog, "--default must be allow or deny, not '%s'", v);
            break;
        default: /* -p PATH or a PATH argument; a lone "-" is stdin */
            if (id == WCTL_ARG_POSITIONAL && strcmp(v, "-") == 0) {
                cfg->input = v;
                break;
            }
            if (wctl_strs_push(&cfg->paths, v) < 0)
                return WCTL_EXIT_FAIL;
        }
    }
    if (cfg->paths.n == 0)
        return wctl_usage_error(prog, "no policy given (use -p PATH)");
    return -1;
}

/* {"error":"line N: message","line":N} */
static void print_error(ward_buf *out, long line, const char *msg)
{
    ward_buf text;
    ward_buf_init(&text);
    ward_buf_reset(out);
    if (ward_buf_printf(&text, "line %ld: %s", line, msg) < 0 ||
        ward_buf_puts(out, "{\"error\":") < 0 || wctl_json_str(out, text.ptr, text.len) < 0 ||
        ward_buf_printf(out, ",\"line\":%ld}\n", line) < 0)
        printf("{\"error\":\"line %ld: out of memory\",\"line\":%ld}\n", line, line);
    else
        fwrite(out->ptr, 1, out->len, stdout);
    ward_buf_dispose(&text);
}

static void print_human_error(long line, const char *msg)
{
    printf("line %ld: error: %s\n\n", line, msg);
}

/* Decides one record and prints the result. Returns false when the record was malformed. */
static bool eval_record(const eval_cfg *cfg, authz_engine *engine, const char *rec, size_t len,
                        long line, ward_buf *out)
{
    authz_request req;
    authz_request_storage *storage = NULL;
    authz_decision d;
    ward_err err;
    ward_err_clear(&err);
    memset(&req, 0, sizeof(req));
    int rc = authz_request_from_json(rec, len, &req, &storage, &err);
    if (rc < 0) {
        const char *msg = err.msg[0] ? err.msg : ward_strerror(rc);
        if (cfg->human)
            print_human_error(line, msg);
        else
            print_error(out, line, msg);
        if (storage != NULL)
            authz_request_storage_free(storage);
        return false;
    }
    if (cfg->service != NULL && req.destination_service.ptr == NULL) {
        req.destination_service.ptr = cfg->service;
        req.destination_service.len = strlen(cfg->service);
    }
    authz_decision_init(&d);
    rc = authz_decide(engine, &req, cfg->explain, &d);
    if (rc < 0 && d.reason == NULL) { /* could not even fill the decision: it is a deny */
        d.decision = AUTHZ_DENY;
        d.reason = strdup(ward_strerror(rc));
    }
    if (cfg->human) {
        char summary[512], label[600];
        wctl_request_summary(&req, summary, sizeof(summary));
        snprintf(label, sizeof(label), "line %ld: %s", line, summary);
        wctl_explain_print(stdout, &d, label, "");
        fputc('\n', stdout);
    } else {
        ward_buf_reset(out);
        if (authz_decision_to_json(&d, out) < 0 || ward_buf_putc(out, '\n') < 0)
            print_error(out, line, "out of memory");
        else
            fwrite(out->ptr, 1, out->len, stdout);
    }
    authz_decision_dispose(&d);
    if (storage != NULL)
        authz_request_storage_free(storage);
    return true;
}

static int eval_run(eval_cfg *cfg)
{
    int status = WCTL_EXIT_FAIL;
    policy_set *set = NULL;
    authz_engine *engine = NULL;
    wctl_reader r;
    bool reader_open = false;
    ward_buf out;
    ward_err err;
    ward_buf_init(&out);
    ward_err_clear(&err);
    static char obuf[1 << 16];
    /* Block-buffered for throughput; line-buffered when a person watches. */
    setvbuf(stdout, obuf, isatty(STDOUT_FILENO) ? _IOLBF : _IOFBF, sizeof(obuf));

    if (wctl_policies_load(&cfg->paths, &set) < 0 ||
        wctl_engine_build(set, cfg->default_allow, &engine, NULL) < 0)
        goto done;
    if (wctl_reader_open(&r, cfg->input, &err) < 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        status = WCTL_EXIT_USAGE;
        goto done;
    }
    reader_open = true;
    status = WCTL_EXIT_OK;
    for (;;) {
        const char *rec;
        size_t len;
        long line;
        bool too_large;
        int rc = wctl_reader_next(&r, &rec, &len, &line, &too_large, &err);
        if (rc < 0) {
            fflush(stdout);
            fprintf(stderr, "error: %s\n", err.msg[0] ? err.msg : ward_strerror(rc));
            status = WCTL_EXIT_USAGE;
            break;
        }
        if (rc == 0)
            break;
        if (too_large) {
            if (cfg->human)
                print_human_error(line, "request larger than 1 MiB");
            else
                print_error(&out, line, "request larger than 1 MiB");
            status = WCTL_EXIT_USAGE;
        } else if (!eval_record(cfg, engine, rec, len, line, &out)) {
            status = WCTL_EXIT_USAGE;
        }
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "error: writing output failed\n");
        status = WCTL_EXIT_FAIL;
    }
done:
    if (reader_open)
        wctl_reader_close(&r);
    ward_buf_dispose(&out);
    if (engine != NULL)
        authz_engine_free(engine);
    if (set != NULL)
        policy_set_free(set);
    return status;
}

int wctl_policy_eval(const char *prog, int argc, char **argv)
{
    eval_cfg cfg = {0};
    int status = eval_parse_args(&cfg, prog, argc, argv, eval_opts, eval_help);
    if (status < 0)
        status = eval_run(&cfg);
    wctl_strs_dispose(&cfg.paths);
    return status;
}

int wctl_policy_explain(const char *prog, int argc, char **argv)
{
    eval_cfg cfg = {.explain = true, .human = true};
    int status = eval_parse_args(&cfg, prog, argc, argv, explain_opts, explain_help);
    if (status < 0)
        status = eval_run(&cfg);
    wctl_strs_dispose(&cfg.paths);
    return status;
}
