/* policy_bench.c - `wardctl policy bench`: decisions per second and latency percentiles on one thread */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/wardctl/wardctl.h"

static const char bench_help[] =
    "Usage: wardctl policy bench -p PATH... --input FILE\n"
    "                            [--duration D | --iterations N] [--json]\n"
    "                            [--default allow|deny] [--service S]\n"
    "\n"
    "Benchmark the decision engine on one thread: load the requests of FILE\n"
    "(JSON Lines, as for eval), warm up, then decide them round-robin and\n"
    "report decisions per second and the latency percentiles p50/p90/p99/p999\n"
    "(microseconds, each decision timed with CLOCK_MONOTONIC; the figures\n"
    "include the clock read and freeing the decision, about 20-40 ns), plus\n"
    "policy load, compile and engine-load times and the heap the compiled\n"
    "engine occupies.\n"
    "\n"
    "Options:\n"
    "  -p, --policy PATH         a policy file or folder (repeatable; further\n"
    "                            PATH arguments are policies too)\n"
    "  -i, --input FILE          requests, one JSON object per line (required)\n"
    "  -t, --duration D          how long to run: seconds (\"5\") or a duration\n"
    "                            (\"500ms\", \"2s\", \"1m\"); default 3s\n"
    "  -n, --iterations N        run exactly N decisions instead\n"
    "      --json                print the results as one JSON object\n"
    "  -d, --default allow|deny  decision when no ALLOW policy selects the\n"
    "                            service (default: deny)\n"
    "  -s, --service S           destination.service of requests that name none\n"
    "  -h, --help                show this help\n"
    "\n" WCTL_EXIT_CODES_HELP;

enum {
    OPT_HELP = 1,
    OPT_POLICY,
    OPT_INPUT,
    OPT_DURATION,
    OPT_ITERATIONS,
    OPT_JSON,
    OPT_DEFAULT,
    OPT_SERVICE
};

static const wctl_opt bench_opts[] = {
    {"help", 'h', false, OPT_HELP},
    {"policy", 'p', true, OPT_POLICY},
    {"input", 'i', true, OPT_INPUT},
    {"duration", 't', true, OPT_DURATION},
    {"iterations", 'n', true, OPT_ITERATIONS},
    {"json", 0, false, OPT_JSON},
    {"default", 'd', true, OPT_DEFAULT},
    {"service", 's', true, OPT_SERVICE},
    {NULL, 0, false, 0},
};

#define NS_PER_S 1000000000ULL

/* ---- latency histogram: exact below 128 ns, then 64 sub-buckets per power
 * of two (under 1% relative error), constant memory whatever the run length. */

enum { HIST_LINEAR = 128, HIST_SUB = 64, HIST_BUCKETS = HIST_LINEAR + 57 * HIST_SUB };

typedef struct hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t total;
    uint64_t max;
} hist;

static unsigned hist_index(uint64_t v)
{
    if (v < HIST_LINEAR)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 7 */
    unsigned sub = (unsigned)(v >> (e - 6)) & (HIST_SUB - 1);
    return HIST_LINEAR + (e - 7) * HIST_SUB + sub;
}

static double hist_value(unsigned idx)
{
    if (idx < HIST_LINEAR)
        return (double)idx;
    unsigned e = 7 + (idx - HIST_LINEAR) / HIST_SUB, sub = (idx - HIST_LINEAR) % HIST_SUB;
    double width = (double)(1ULL << (e - 6));
    return (double)(HIST_SUB + sub) * width + width / 2;
}

static void hist_add(hist *h, uint64_t ns)
{
    h->count[hist_index(ns)]++;
    h->total++;
    if (ns > h->max)
        h->max = ns;
}

/* The latency (ns) at quantile q (0..1). */
static double hist_quantile(const hist *h, double q)
{
    if (h->total == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->total + 0.999999);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank) {
            double v = hist_value(i);
            return v > (double)h->max ? (double)h->max : v;
        }
    }
    return (double)h->max;
}

/* ---- configuration and inputs ------------------------------------------------------ */

typedef struct bench_cfg {
    wctl_strs paths;
    const char *input;
    const char *service;
    uint64_t duration_ns;
    uint64_t iterations; /* 0 = run for duration_ns */
    bool json;
    bool default_allow;
} bench_cfg;

/* Each request is packed into one contiguous block (its headers and all its
 * bytes), as a proxy holds a request it just parsed: the benchmark measures
 * the engine, not pointer chasing through parsed JSON. */
typedef struct bench_inputs {
    authz_request *req;
    char **block;
    size_t n, cap;
} bench_inputs;

static void pack_str(authz_str *s, char **at)
{
    if (s->ptr == NULL)
        return;
    memcpy(*at, s->ptr, s->len);
    s->ptr = *at;
    *at += s->len;
}

/* Rewrites req to point into a new block holding copies of everything it references. */
static char *pack_request(authz_request *req)
{
    authz_str *strs[] = {&req->source_principal, &req->source_ip, &req->destination_service,
                         &req->destination_principal, &req->method, &req->host, &req->path,
                         &req->query, &req->protocol, &req->sni};
    size_t size = req->n_headers * sizeof(authz_header);
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        size += strs[i]->ptr ? strs[i]->len : 0;
    for (size_t i = 0; i < req->n_headers; i++)
        size += req->headers[i].name.len + req->headers[i].value.len;
    char *block = malloc(size ? size : 1);
    if (block == NULL)
        return NULL;
    authz_header *h = (authz_header *)block;
    char *at = block + req->n_headers * sizeof(authz_header);
    for (size_t i = 0; i < req->n_headers; i++) {
        h[i] = req->headers[i];
        pack_str(&h[i].name, &at);
        pack_str(&h[i].value, &at);
    }
    req->headers = req->n_headers ? h : NULL;
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        pack_str(strs[i], &at);
    return block;
}

typedef struct bench_result {
    size_t policies, rules;
    double load_ms;
    wctl_timing timing;
    uint64_t decisions, allowed;
    double seconds;
    hist lat;
} bench_result;

static int parse_duration(const char *s, uint64_t *ns)
{
    uint64_t secs;
    if (ward_parse_u64(s, strlen(s), 86400, &secs) == 0) {
        *ns = secs * NS_PER_S;
        return *ns > 0 ? 0 : WARD_EINVAL;
    }
    if (ward_parse_duration(s, strlen(s), 86400 * NS_PER_S, ns) < 0 || *ns == 0)
        return WARD_EINVAL;
    return 0;
}

static int bench_parse_args(bench_cfg *cfg, const char *prog, int argc, char **argv)
{
    wctl_args a;
    const char *v;
    int id;
    bool have_duration = false;
    cfg->duration_ns = 3 * NS_PER_S;
    wctl_args_init(&a, prog, argc, argv, bench_opts);
    while ((id = wctl_args_next(&a, &v)) != WCTL_ARG_END) {
        switch (id) {
        case WCTL_ARG_ERROR: return WCTL_EXIT_USAGE;
        case OPT_HELP: fputs(bench_help, stdout); return WCTL_EXIT_OK;
        case OPT_INPUT: cfg->input = v; break;
        case OPT_JSON: cfg->json = true; break;
        case OPT_SERVICE: cfg->service = v; break;
        case OPT_DURATION:
            have_duration = true;
            if (parse_duration(v, &cfg->duration_ns) < 0)
                return wctl_usage_error(prog, "bad --duration '%s' (e.g. 5, 500ms, 2s)", v);
            break;
        case OPT_ITERATIONS:
            if (ward_parse_u64(v, strlen(v), 1000000000000ULL, &cfg->iterations) < 0 ||
                cfg->iterations == 0)
                return wctl_usage_error(prog, "bad --iterations '%s'", v);
            break;
        case OPT_DEFAULT:
            if (wctl_parse_default(v, &cfg->default_allow) < 0)
                return wctl_usage_error(prog, "--default must be allow or deny, not '%s'", v);
            break;
        default:
            if (wctl_strs_push(&cfg->paths, v) < 0)
                return WCTL_EXIT_FAIL;
        }
    }
    if (cfg->paths.n == 0)
        return wctl_usage_error(prog, "no policy given (use -p PATH)");
    if (cfg->input == NULL)
        return wctl_usage_error(prog, "--input FILE is required");
    if (have_duration && cfg->iterations > 0)
        return wctl_usage_error(prog, "--duration and --iterations exclude each other");
    return -1;
}

static int inputs_push(bench_inputs *in, const authz_request *req, authz_request_storage *st)
{
    if (in->n == in->cap) {
        size_t cap = in->cap ? in->cap * 2 : 64;
        authz_request *r = realloc(in->req, cap * sizeof(*r));
        if (r == NULL)
            return WARD_ENOMEM;
        in->req = r;
        char **b = realloc(in->block, cap * sizeof(*b));
        if (b == NULL)
            return WARD_ENOMEM;
        in->block = b;
        in->cap = cap;
    }
    in->req[in->n] = *req;
    in->block[in->n] = pack_request(&in->req[in->n]);
    if (in->block[in->n] == NULL)
        return WARD_ENOMEM;
    authz_request_storage_free(st);
    in->n++;
    return 0;
}

static void inputs_dispose(bench_inputs *in)
{
    for (size_t i = 0; i < in->n; i++)
        free(in->block[i]);
    free(in->req);
    free(in->block);
    memset(in, 0, sizeof(*in));
}

/* Reads every request of the input file; any malformed one is an input error. */
static int inputs_load(const bench_cfg *cfg, bench_inputs *in)
{
    wctl_reader r;
    ward_err err;
    int rc = 0;
    ward_err_clear(&err);
    if (wctl_reader_open(&r, cfg->input, &err) < 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        return WARD_EIO;
    }
    for (;;) {
        const char *rec;
        size_t len;
        long line;
        bool too_large;
        authz_request req;
        authz_request_storage *st = NULL;
        rc = wctl_reader_next(&r, &rec, &len, &line, &too_large, &err);
        if (rc <= 0) {
            if (rc < 0)
                fprintf(stderr, "error: %s\n", err.msg[0] ? err.msg : ward_strerror(rc));
            break;
        }
        memset(&req, 0, sizeof(req));
        rc = too_large ? WARD_ELIMIT : authz_request_from_json(rec, len, &req, &st, &err);
        if (rc < 0) {
            fprintf(stderr, "%s:%ld: %s\n", r.name, line,
                    too_large ? "request larger than 1 MiB" : err.msg[0] ? err.msg : ward_strerror(rc));
            if (st != NULL)
                authz_request_storage_free(st);
            break;
        }
        if (cfg->service != NULL && req.destination_service.ptr == NULL) {
            req.destination_service.ptr = cfg->service;
            req.destination_service.len = strlen(cfg->service);
        }
        if ((rc = inputs_push(in, &req, st)) < 0) {
            authz_request_storage_free(st);
            break;
        }
    }
    wctl_reader_close(&r);
    if (rc == 0 && in->n == 0) {
        fprintf(stderr, "error: %s: no requests\n", cfg->input);
        rc = WARD_EINVAL;
    }
    return rc;
}

/* ---- the measurement ------------------------------------------------------------ */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* One decision, its result freed; returns whether it allowed. */
static bool decide_one(authz_engine *engine, const authz_request *req)
{
    authz_decision d;
    authz_decision_init(&d);
    authz_decide(engine, req, false, &d);
    bool allow = d.decision == AUTHZ_ALLOW;
    authz_decision_dispose(&d);
    return allow;
}

static void warm_up(authz_engine *engine, const bench_inputs *in)
{
    uint64_t start = now_ns();
    size_t n = in->n < 10000 ? 10000 : in->n;
    for (size_t i = 0; i < n; i++) {
        decide_one(engine, &in->req[i % in->n]);
        if ((i & 255) == 255 && now_ns() - start > NS_PER_S / 2)
            break;
    }
}

static void measure(const bench_cfg *cfg, authz_engine *engine, const bench_inputs *in,
                    bench_result *res)
{
    uint64_t start = now_ns(), prev = start, end = start + cfg->duration_ns;
    uint64_t i = 0;
    size_t k = 0;
    for (;;) {
        if (cfg->iterations > 0 ? i >= cfg->iterations : (i & 63) == 0 && prev >= end)
            break;
        res->allowed += decide_one(engine, &in->req[k]);
        uint64_t t = now_ns();
        hist_add(&res->lat, t - prev);
        prev = t;
        i++;
        if (++k == in->n)
            k = 0;
    }
    res->decisions = i;
    res->seconds = (double)(prev - start) / 1e9;
}

/* ---- reporting ------------------------------------------------------------------- */

static double us(double ns)
{
    return ns / 1000.0;
}

static void report_text(const bench_result *r, size_t n_inputs)
{
    double rate = r->seconds > 0 ? (double)r->decisions / r->seconds : 0;
    printf("policies:   %zu (%zu rules), %zu distinct requests\n", r->policies, r->rules, n_inputs);
    printf("load:       %.2f ms (parse + validate)\n", r->load_ms);
    printf("compile:    %.2f ms (to Lua), engine load %.2f ms\n", r->timing.compile_ms,
           r->timing.engine_ms);
    if (r->timing.heap_bytes >= 0)
        printf("memory:     %.1f KiB (heap of the compiled set and its engine)\n",
               (double)r->timing.heap_bytes / 1024.0);
    printf("decisions:  %llu in %.3f s = %.0f decisions/s (%.1f%% allowed)\n",
           (unsigned long long)r->decisions, r->seconds, rate,
           r->decisions ? 100.0 * (double)r->allowed / (double)r->decisions : 0.0);
    printf("latency:    p50 %.2f us, p90 %.2f us, p99 %.2f us, p999 %.2f us, max %.2f us\n",
           us(hist_quantile(&r->lat, 0.50)), us(hist_quantile(&r->lat, 0.90)),
           us(hist_quantile(&r->lat, 0.99)), us(hist_quantile(&r->lat, 0.999)),
           us((double)r->lat.max));
}

static int report_json(const bench_result *r, size_t n_inputs)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return WARD_ENOMEM;
    double rate = r->seconds > 0 ? (double)r->decisions / r->seconds : 0;
    cJSON_AddNumberToObject(o, "policies", (double)r->policies);
    cJSON_AddNumberToObject(o, "rules", (double)r->rules);
    cJSON_AddNumberToObject(o, "inputs", (double)n_inputs);
    cJSON_AddNumberToObject(o, "decisions", (double)r->decisions);
    cJSON_AddNumberToObject(o, "allowed", (double)r->allowed);
    cJSON_AddNumberToObject(o, "seconds", r->seconds);
    cJSON_AddNumberToObject(o, "decisions_per_sec", rate);
    cJSON_AddNumberToObject(o, "p50_us", us(hist_quantile(&r->lat, 0.50)));
    cJSON_AddNumberToObject(o, "p90_us", us(hist_quantile(&r->lat, 0.90)));
    cJSON_AddNumberToObject(o, "p99_us", us(hist_quantile(&r->lat, 0.99)));
    cJSON_AddNumberToObject(o, "p999_us", us(hist_quantile(&r->lat, 0.999)));
    cJSON_AddNumberToObject(o, "max_us", us((double)r->lat.max));
    cJSON_AddNumberToObject(o, "load_ms", r->load_ms);
    cJSON_AddNumberToObject(o, "compile_ms", r->timing.compile_ms);
    cJSON_AddNumberToObject(o, "engine_load_ms", r->timing.engine_ms);
    if (r->timing.heap_bytes >= 0)
        cJSON_AddNumberToObject(o, "engine_memory_bytes", (double)r->timing.heap_bytes);
    else
        cJSON_AddNullToObject(o, "engine_memory_bytes");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (s == NULL)
        return WARD_ENOMEM;
    printf("%s\n", s);
    cJSON_free(s);
    return 0;
}

static size_t count_rules(const policy_set *set)
{
    size_t n = 0;
    for (size_t i = 0; i < policy_set_count(set); i++)
        n += policy_set_get(set, i)->n_rules;
    return n;
}

static int bench_run(const bench_cfg *cfg)
{
    int status = WCTL_EXIT_FAIL;
    policy_set *set = NULL;
    authz_engine *engine = NULL;
    bench_inputs in = {0};
    bench_result *res = calloc(1, sizeof(*res)); /* the histogram is ~30 KiB */
    if (res == NULL)
        goto done;
    double t0 = wctl_now_ms();
    if (wctl_policies_load(&cfg->paths, &set) < 0)
        goto done;
    res->load_ms = wctl_now_ms() - t0;
    res->policies = policy_set_count(set);
    res->rules = count_rules(set);
    if (wctl_engine_build(set, cfg->default_allow, &engine, &res->timing) < 0)
        goto done;
    if (inputs_load(cfg, &in) < 0) {
        status = WCTL_EXIT_USAGE;
        goto done;
    }
    warm_up(engine, &in);
    measure(cfg, engine, &in, res);
    if (cfg->json)
        report_json(res, in.n);
    else
        report_text(res, in.n);
    status = fflush(stdout) == 0 ? WCTL_EXIT_OK : WCTL_EXIT_FAIL;
done:
    inputs_dispose(&in);
    if (engine != NULL)
        authz_engine_free(engine);
    if (set != NULL)
        policy_set_free(set);
    free(res);
    return status;
}

int wctl_policy_bench(const char *prog, int argc, char **argv)
{
    bench_cfg cfg = {0};
    int status = bench_parse_args(&cfg, prog, argc, argv);
    if (status < 0)
        status = bench_run(&cfg);
    wctl_strs_dispose(&cfg.paths);
    return status;
}
