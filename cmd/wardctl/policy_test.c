/* policy_test.c - `wardctl policy test`: run YAML test cases (input + expected decision) against policies */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd/wardctl/wardctl.h"

static const char test_help[] =
    "Usage: wardctl policy test -p PATH... [-v] [--explain] [--default allow|deny]\n"
    "                           [TESTFILE|DIR...]\n"
    "\n"
    "Run policy test cases: each case is a request and the decision expected\n"
    "from the policies given with -p (repeatable). A DIR argument runs every\n"
    "*.yaml / *.yml in it; with no TESTFILE, the tests/ folder of each -p folder\n"
    "is used. Prints one line per failing case (file:line of the case, expected\n"
    "and actual), passing cases too with -v, and finally \"N passed, N failed\".\n"
    "\n"
    "Test file format (YAML):\n"
    "  default: deny            # optional: allow|deny, the engine default for\n"
    "                           # these cases (else --default, else deny)\n"
    "  cases:\n"
    "    - name: checkout may read items\n"
    "      input:               # a request, as for 'wardctl policy eval'\n"
    "        source: {principal: spiffe://example.org/ns/shop/sa/checkout}\n"
    "        destination: {service: payments}\n"
    "        request: {method: GET, path: /v1/items}\n"
    "      expect:\n"
    "        decision: allow    # allow | deny (required unless route is given)\n"
    "        policy: shop/payments-read   # optional; null asserts no policy\n"
    "        rule: 0            # optional; null asserts no rule\n"
    "        audit: false       # optional\n"
    "        reason: ALLOW      # optional: text the reason must contain\n"
    "        dry_run: {decision: deny, policy: shop/x, rule: 0}   # or null\n"
    "        route:             # optional: the Route entry chosen (input needs\n"
    "                           # request.host); null asserts none; a bare\n"
    "                           # string is the entry's name\n"
    "          name: canary                # each field optional\n"
    "          policy: shop/payments       # the Route (ns/name)\n"
    "          index: 0                    # in spec.http\n"
    "          destinations: [{service: payments-v2, weight: 10},\n"
    "                         {service: payments-v1, weight: 90}]  # all, in order;\n"
    "                           # items may be bare service names (weight unchecked)\n"
    "          rewrite: /items/1           # the rewritten path (null: none)\n"
    "In input, quoted scalars stay strings; unquoted integers, true/false and\n"
    "null become JSON numbers, booleans and null. Unknown keys are errors.\n"
    "\n"
    "Options:\n"
    "  -p, --policy PATH         a policy file or folder (repeatable)\n"
    "  -v, --verbose             print passing cases too\n"
    "  -e, --explain             print the explain trace of failing cases\n"
    "  -d, --default allow|deny  default for files that do not set one\n"
    "  -h, --help                show this help\n"
    "\n"
    "Exit status:\n"
    "  0  every case passed\n"
    "  1  a case failed, or the policies are invalid\n"
    "  2  usage error, or a test file is unusable (its errors are printed as\n"
    "     file:line:col: field.path: message)\n";

enum { OPT_HELP = 1, OPT_POLICY, OPT_VERBOSE, OPT_EXPLAIN, OPT_DEFAULT };

static const wctl_opt test_opts[] = {
    {"help", 'h', false, OPT_HELP},
    {"policy", 'p', true, OPT_POLICY},
    {"verbose", 'v', false, OPT_VERBOSE},
    {"explain", 'e', false, OPT_EXPLAIN},
    {"default", 'd', true, OPT_DEFAULT},
    {NULL, 0, false, 0},
};

/* An optional "string or null" / "integer or null" expectation. */
typedef struct expect_str {
    bool present;
    const char *s; /* NULL = null */
} expect_str;

typedef struct expect_int {
    bool present;
    int v; /* -1 = null */
} expect_int;

typedef struct expect_dest {
    const char *service;
    int weight; /* -1 = not asserted */
} expect_dest;

typedef struct expect_route {
    bool present, null;
    expect_str name, policy, rewrite;
    expect_int index;
    bool dests_present;
    expect_dest *dests;
    size_t n_dests;
} expect_route;

typedef struct test_expect {
    bool decision_present;
    bool allow;
    expect_str policy, reason;
    expect_int rule;
    bool audit_present, audit;
    bool dry_present, dry_null, dry_allow;
    expect_str dry_policy;
    expect_int dry_rule;
    expect_route route;
} test_expect;

typedef struct test_case {
    const char *file;
    int line;
    const char *name;
    bool default_allow;
    authz_request req;
    authz_request_storage *storage;
    test_expect expect;
} test_case;

typedef struct test_run {
    wctl_strs policy_paths;
    wctl_strs test_paths; /* as given */
    char **files;         /* expanded, owned */
    size_t n_files;
    bool verbose, explain;
    bool default_allow;
    ward_docs *docs; /* one per file, kept alive: cases point into them */
    size_t n_docs;
    test_case *cases;
    size_t n_cases, cap_cases;
    ward_diag diag; /* problems in test files */
    policy_set *set;
    authz_engine *engines[2]; /* [default_allow] */
    size_t passed, failed;
} test_run;

/* ---- finding test files --------------------------------------------------------- */

static int yaml_name(const struct dirent *e)
{
    size_t n = strlen(e->d_name);
    if (e->d_name[0] == '.')
        return 0;
    return (n > 5 && strcmp(e->d_name + n - 5, ".yaml") == 0) ||
           (n > 4 && strcmp(e->d_name + n - 4, ".yml") == 0);
}

static int files_push(test_run *t, const char *path)
{
    char **v = realloc(t->files, (t->n_files + 1) * sizeof(*v));
    if (v == NULL)
        return WARD_ENOMEM;
    t->files = v;
    if ((v[t->n_files] = strdup(path)) == NULL)
        return WARD_ENOMEM;
    t->n_files++;
    return 0;
}

/* Every *.yaml / *.yml directly in dir, sorted by name. */
static int files_add_dir(test_run *t, const char *dir)
{
    struct dirent **list = NULL;
    int n = scandir(dir, &list, yaml_name, alphasort);
    int rc = 0;
    if (n < 0)
        return WARD_EIO;
    for (int i = 0; i < n; i++) {
        char path[4096];
        const char *sep = dir[strlen(dir) - 1] == '/' ? "" : "/";
        snprintf(path, sizeof(path), "%s%s%s", dir, sep, list[i]->d_name);
        if (rc == 0)
            rc = files_push(t, path);
        free(list[i]);
    }
    free(list);
    return rc;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int files_expand(test_run *t)
{
    int rc = 0;
    for (size_t i = 0; i < t->test_paths.n; i++) {
        const char *p = t->test_paths.v[i];
        WARD_TRY(is_dir(p) ? files_add_dir(t, p) : files_push(t, p));
    }
    if (t->test_paths.n > 0)
        return 0;
    for (size_t i = 0; i < t->policy_paths.n; i++) { /* default: PATH/tests */
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/tests", t->policy_paths.v[i]);
        if (is_dir(t->policy_paths.v[i]) && is_dir(dir))
            WARD_TRY(files_add_dir(t, dir));
    }
    return 0;
fail:
    return rc;
}

/* ---- reading test files -------------------------------------------------------- */

/* Adds "file:line:col: path: message" for node n; returns WARD_EINVAL. */
static int bad(test_run *t, const char *file, const ward_node *n, const char *path, const char *msg)
{
    ward_diag_add(&t->diag, file, n->line, n->col, "%s: %s", path, msg);
    return WARD_EINVAL;
}

static bool is_str(const ward_node *n)
{
    return n->kind == WARD_NODE_SCALAR && (n->quoted || !wctl_node_is_null(n));
}

static int read_decision(test_run *t, const char *file, const ward_node *n, const char *path,
                         bool *allow)
{
    if (n->kind == WARD_NODE_SCALAR && strcmp(n->str, "allow") == 0)
        *allow = true;
    else if (n->kind == WARD_NODE_SCALAR && strcmp(n->str, "deny") == 0)
        *allow = false;
    else
        return bad(t, file, n, path, "expected allow or deny");
    return 0;
}

static int read_opt_str(test_run *t, const char *file, const ward_node *n, const char *path,
                        bool nullable, expect_str *out)
{
    out->present = true;
    if (nullable && wctl_node_is_null(n)) {
        out->s = NULL;
        return 0;
    }
    if (!is_str(n))
        return bad(t, file, n, path, nullable ? "expected a string or null" : "expected a string");
    out->s = n->str;
    return 0;
}

static int read_opt_int(test_run *t, const char *file, const ward_node *n, const char *path,
                        expect_int *out)
{
    long long v;
    out->present = true;
    if (wctl_node_is_null(n)) {
        out->v = -1;
        return 0;
    }
    if (wctl_node_int(n, &v) < 0 || v < 0 || v > 1000000)
        return bad(t, file, n, path, "expected a rule index (integer >= 0) or null");
    out->v = (int)v;
    return 0;
}

/* Path of a key below a prefix: "cases[3].expect" + "rule". */
static const char *subpath(char *buf, size_t size, const char *prefix, const char *key)
{
    snprintf(buf, size, "%.96s.%.60s", prefix, key);
    return buf;
}

static int read_dry_run(test_run *t, const char *file, const ward_node *n, const char *path,
                        test_expect *e)
{
    char p[160];
    bool have_decision = false;
    int rc = 0;
    e->dry_present = true;
    if (wctl_node_is_null(n)) {
        e->dry_null = true;
        return 0;
    }
    if (n->kind != WARD_NODE_MAP)
        return bad(t, file, n, path, "expected a map {decision, policy, rule} or null");
    for (size_t i = 0; i < n->n; i++) {
        const char *k = n->pairs[i].key->str;
        const ward_node *v = n->pairs[i].value;
        subpath(p, sizeof(p), path, k);
        if (strcmp(k, "decision") == 0) {
            have_decision = true;
            if (read_decision(t, file, v, p, &e->dry_allow) < 0)
                rc = WARD_EINVAL;
        } else if (strcmp(k, "policy") == 0) {
            if (read_opt_str(t, file, v, p, true, &e->dry_policy) < 0)
                rc = WARD_EINVAL;
        } else if (strcmp(k, "rule") == 0) {
            if (read_opt_int(t, file, v, p, &e->dry_rule) < 0)
                rc = WARD_EINVAL;
        } else {
            rc = bad(t, file, n->pairs[i].key, p, "unknown field (expected decision, policy, rule)");
        }
    }
    if (!have_decision)
        rc = bad(t, file, n, path, "missing field \"decision\"");
    return rc;
}

static int read_destinations(test_run *t, const char *file, const ward_node *n, const char *path,
                             expect_route *r)
{
    char p[200];
    int rc = 0;
    r->dests_present = true;
    if (n->kind != WARD_NODE_SEQ)
        return bad(t, file, n, path, "expected a list of {service, weight} or service names");
    r->dests = calloc(n->n ? n->n : 1, sizeof(*r->dests));
    if (r->dests == NULL)
        return WARD_ENOMEM;
    r->n_dests = n->n;
    for (size_t i = 0; i < n->n; i++) {
        const ward_node *it = n->items[i];
        expect_dest *d = &r->dests[i];
        snprintf(p, sizeof(p), "%.150s[%zu]", path, i);
        d->weight = -1;
        if (is_str(it)) {
            d->service = it->str;
            continue;
        }
        if (it->kind != WARD_NODE_MAP) {
            rc = bad(t, file, it, p, "expected {service, weight} or a service name");
            continue;
        }
        for (size_t k = 0; k < it->n; k++) {
            const char *key = it->pairs[k].key->str;
            const ward_node *v = it->pairs[k].value;
            char q[260];
            subpath(q, sizeof(q), p, key);
            long long w;
            if (strcmp(key, "service") == 0 && is_str(v))
                d->service = v->str;
            else if (strcmp(key, "weight") == 0 && wctl_node_int(v, &w) == 0 && w >= 0 && w <= 100)
                d->weight = (int)w;
            else if (strcmp(key, "service") == 0 || strcmp(key, "weight") == 0)
                rc = bad(t, file, v, q,
                         strcmp(key, "service") == 0 ? "expected a service name"
                                                     : "expected a weight 0..100");
            else
                rc = bad(t, file, it->pairs[k].key, q, "unknown field (expected service, weight)");
        }
        if (d->service == NULL && rc == 0)
            rc = bad(t, file, it, p, "missing field \"service\"");
    }
    return rc;
}

static int read_route(test_run *t, const char *file, const ward_node *n, const char *path,
                      expect_route *r)
{
    char p[160];
    int rc = 0;
    r->present = true;
    if (wctl_node_is_null(n)) {
        r->null = true;
        return 0;
    }
    if (is_str(n)) {
        r->name = (expect_str){true, n->str};
        return 0;
    }
    if (n->kind != WARD_NODE_MAP)
        return bad(t, file, n, path, "expected a map {name, policy, index, destinations, rewrite}, "
                                     "an entry name or null");
    for (size_t i = 0; i < n->n; i++) {
        const char *k = n->pairs[i].key->str;
        const ward_node *v = n->pairs[i].value;
        int x = 0;
        subpath(p, sizeof(p), path, k);
        if (strcmp(k, "name") == 0)
            x = read_opt_str(t, file, v, p, false, &r->name);
        else if (strcmp(k, "policy") == 0)
            x = read_opt_str(t, file, v, p, false, &r->policy);
        else if (strcmp(k, "index") == 0)
            x = read_opt_int(t, file, v, p, &r->index);
        else if (strcmp(k, "rewrite") == 0)
            x = read_opt_str(t, file, v, p, true, &r->rewrite);
        else if (strcmp(k, "destinations") == 0)
            x = read_destinations(t, file, v, p, r);
        else
            x = bad(t, file, n->pairs[i].key, p,
                    "unknown field (expected name, policy, index, destinations, rewrite)");
        if (x < 0)
            rc = x;
    }
    return rc;
}

static int read_expect(test_run *t, const char *file, const ward_node *n, const char *path,
                       test_expect *e)
{
    char p[160];
    bool have_decision = false;
    int rc = 0;
    if (n->kind != WARD_NODE_MAP)
        return bad(t, file, n, path, "expected a map");
    for (size_t i = 0; i < n->n; i++) {
        const char *k = n->pairs[i].key->str;
        const ward_node *v = n->pairs[i].value;
        int r = 0;
        subpath(p, sizeof(p), path, k);
        if (strcmp(k, "decision") == 0) {
            have_decision = true;
            r = read_decision(t, file, v, p, &e->allow);
        } else if (strcmp(k, "route") == 0) {
            r = read_route(t, file, v, p, &e->route);
        } else if (strcmp(k, "policy") == 0) {
            r = read_opt_str(t, file, v, p, true, &e->policy);
        } else if (strcmp(k, "rule") == 0) {
            r = read_opt_int(t, file, v, p, &e->rule);
        } else if (strcmp(k, "reason") == 0) {
            r = read_opt_str(t, file, v, p, false, &e->reason);
        } else if (strcmp(k, "audit") == 0) {
            e->audit_present = true;
            if (wctl_node_bool(v, &e->audit) < 0)
                r = bad(t, file, v, p, "expected true or false");
        } else if (strcmp(k, "dry_run") == 0) {
            r = read_dry_run(t, file, v, p, e);
        } else {
            r = bad(t, file, n->pairs[i].key, p,
                    "unknown field (expected decision, policy, rule, audit, reason, dry_run, "
                    "route)");
        }
        if (r < 0)
            rc = r;
    }
    e->decision_present = have_decision;
    if (!have_decision && !e->route.present)
        rc = bad(t, file, n, path, "missing field \"decision\" (or route)");
    return rc;
}

/* Converts the input map to JSON and parses it the way eval does. */
static int read_input(test_run *t, const char *file, const ward_node *n, const char *path,
                      test_case *c)
{
    int rc = 0;
    ward_buf json;
    ward_err err;
    ward_buf_init(&json);
    ward_err_clear(&err);
    if (n->kind != WARD_NODE_MAP) {
        rc = bad(t, file, n, path, "expected a map (a request as for 'wardctl policy eval')");
        goto done;
    }
    rc = wctl_node_to_json(n, &json);
    if (rc < 0)
        goto done;
    rc = authz_request_from_json(json.ptr, json.len, &c->req, &c->storage, &err);
    if (rc < 0) {
        bad(t, file, n, path, err.msg[0] ? err.msg : ward_strerror(rc));
        if (c->storage != NULL)
            authz_request_storage_free(c->storage);
        c->storage = NULL;
        rc = WARD_EINVAL;
    }
done:
    ward_buf_dispose(&json);
    return rc;
}

static int read_case(test_run *t, const char *file, const ward_node *n, size_t idx,
                     bool default_allow, test_case *c)
{
    char path[64], p[160];
    const ward_node *name = NULL, *input = NULL, *expect = NULL;
    int rc = 0;
    snprintf(path, sizeof(path), "cases[%zu]", idx);
    memset(c, 0, sizeof(*c));
    c->file = file;
    c->line = n->line;
    c->default_allow = default_allow;
    if (n->kind != WARD_NODE_MAP)
        return bad(t, file, n, path, "expected a map {name, input, expect}");
    for (size_t i = 0; i < n->n; i++) {
        const char *k = n->pairs[i].key->str;
        if (strcmp(k, "name") == 0)
            name = n->pairs[i].value;
        else if (strcmp(k, "input") == 0)
            input = n->pairs[i].value;
        else if (strcmp(k, "expect") == 0)
            expect = n->pairs[i].value;
        else
            rc = bad(t, file, n->pairs[i].key, subpath(p, sizeof(p), path, k),
                     "unknown field (expected name, input, expect)");
    }
    if (name == NULL || input == NULL || expect == NULL) {
        const char *missing = name == NULL ? "name" : input == NULL ? "input" : "expect";
        snprintf(p, sizeof(p), "missing field \"%s\"", missing);
        return bad(t, file, n, path, p);
    }
    if (!is_str(name) || name->len == 0)
        rc = bad(t, file, name, subpath(p, sizeof(p), path, "name"), "expected a non-empty string");
    c->name = name->str;
    if (read_expect(t, file, expect, subpath(p, sizeof(p), path, "expect"), &c->expect) < 0)
        rc = WARD_EINVAL;
    if (read_input(t, file, input, subpath(p, sizeof(p), path, "input"), c) < 0)
        rc = WARD_EINVAL;
    return rc;
}

static int cases_push(test_run *t, const test_case *c)
{
    if (t->n_cases == t->cap_cases) {
        size_t cap = t->cap_cases ? t->cap_cases * 2 : 32;
        test_case *v = realloc(t->cases, cap * sizeof(*v));
        if (v == NULL)
            return WARD_ENOMEM;
        t->cases = v;
        t->cap_cases = cap;
    }
    t->cases[t->n_cases++] = *c;
    return 0;
}

/* One document: {default?, cases}. Returns 0 or WARD_EINVAL (diagnostics added). */
static int read_doc(test_run *t, const char *file, const ward_node *doc)
{
    const ward_node *cases = NULL;
    bool default_allow = t->default_allow;
    int rc = 0;
    if (doc->kind != WARD_NODE_MAP)
        return bad(t, file, doc, "(document)", "expected a map with \"cases\"");
    for (size_t i = 0; i < doc->n; i++) {
        const char *k = doc->pairs[i].key->str;
        const ward_node *v = doc->pairs[i].value;
        if (strcmp(k, "cases") == 0)
            cases = v;
        else if (strcmp(k, "default") == 0) {
            if (read_decision(t, file, v, "default", &default_allow) < 0)
                rc = WARD_EINVAL;
        } else
            rc = bad(t, file, doc->pairs[i].key, k, "unknown field (expected default, cases)");
    }
    if (cases == NULL)
        return bad(t, file, doc, "cases", "missing field \"cases\"");
    if (cases->kind != WARD_NODE_SEQ || cases->n == 0)
        return bad(t, file, cases, "cases", "expected a non-empty list of test cases");
    for (size_t i = 0; i < cases->n; i++) {
        test_case c;
        int r = read_case(t, file, cases->items[i], i, default_allow, &c);
        if (r == 0)
            r = cases_push(t, &c);
        if (r < 0) {
            if (c.storage != NULL)
                authz_request_storage_free(c.storage);
            free(c.expect.route.dests);
            rc = r;
        }
    }
    return rc;
}

/* Reads and checks one file; its cases are added only when it is wholly usable. */
static int read_file(test_run *t, const char *file)
{
    char *data = NULL;
    size_t len = 0, first = t->n_cases;
    ward_err err;
    int rc = 0;
    ward_err_clear(&err);
    ward_docs *docs = &t->docs[t->n_docs];
    memset(docs, 0, sizeof(*docs));
    if (ward_file_read(file, 0, &data, &len, &err) < 0) {
        ward_diag_add(&t->diag, NULL, 0, 0, "%s", err.msg);
        return WARD_EIO;
    }
    rc = ward_docs_parse(file, data, len, docs, &t->diag);
    free(data);
    if (rc < 0)
        return rc;
    t->n_docs++;
    if (docs->n == 0) {
        ward_diag_add(&t->diag, file, 0, 0, "no test cases");
        return WARD_EINVAL;
    }
    for (size_t i = 0; i < docs->n; i++)
        if (read_doc(t, file, docs->docs[i]) < 0)
            rc = WARD_EINVAL;
    if (rc < 0) { /* drop the cases of a broken file */
        for (size_t i = first; i < t->n_cases; i++) {
            authz_request_storage_free(t->cases[i].storage);
            free(t->cases[i].expect.route.dests);
        }
        t->n_cases = first;
    }
    return rc;
}

/* ---- running cases -------------------------------------------------------------- */

static void put_str(ward_buf *b, const char *s)
{
    if (s == NULL)
        ward_buf_puts(b, "null");
    else
        ward_buf_puts(b, s);
}

static void put_int(ward_buf *b, int v)
{
    if (v < 0)
        ward_buf_puts(b, "null");
    else
        ward_buf_printf(b, "%d", v);
}

static bool str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Appends "key: expected" / "key: actual" for each asserted field; returns true if all match. */
typedef struct cmp {
    ward_buf exp, act;
    bool ok;
    const char *sep;
} cmp;

static void cmp_key(cmp *c, const char *key)
{
    ward_buf_printf(&c->exp, "%s%s: ", c->sep, key);
    ward_buf_printf(&c->act, "%s%s: ", c->sep, key);
    c->sep = ", ";
}

static void cmp_str(cmp *c, const char *key, const expect_str *e, const char *actual)
{
    if (!e->present)
        return;
    cmp_key(c, key);
    put_str(&c->exp, e->s);
    put_str(&c->act, actual);
    c->ok = c->ok && str_eq(e->s, actual);
}

static void cmp_int(cmp *c, const char *key, const expect_int *e, int actual)
{
    if (!e->present)
        return;
    cmp_key(c, key);
    put_int(&c->exp, e->v);
    put_int(&c->act, actual);
    c->ok = c->ok && e->v == (actual < 0 ? -1 : actual);
}

static void cmp_dry_run(cmp *c, const test_expect *e, const authz_decision *d)
{
    if (!e->dry_present)
        return;
    cmp_key(c, "dry_run");
    if (e->dry_null) {
        ward_buf_puts(&c->exp, "null");
        if (d->has_dry_run) {
            ward_buf_printf(&c->act, "{decision: %s, policy: ",
                            d->dry_run_decision == AUTHZ_ALLOW ? "allow" : "deny");
            put_str(&c->act, d->dry_run_policy);
            ward_buf_puts(&c->act, ", rule: ");
            put_int(&c->act, d->dry_run_rule);
            ward_buf_puts(&c->act, "}");
            c->ok = false;
        } else {
            ward_buf_puts(&c->act, "null");
        }
        return;
    }
    if (!d->has_dry_run) {
        ward_buf_puts(&c->act, "null");
        c->ok = false;
    }
    cmp inner = {.ok = true, .sep = ""};
    ward_buf_init(&inner.exp);
    ward_buf_init(&inner.act);
    cmp_key(&inner, "decision");
    ward_buf_puts(&inner.exp, e->dry_allow ? "allow" : "deny");
    ward_buf_puts(&inner.act, d->dry_run_decision == AUTHZ_ALLOW ? "allow" : "deny");
    inner.ok = inner.ok && e->dry_allow == (d->dry_run_decision == AUTHZ_ALLOW);
    cmp_str(&inner, "policy", &e->dry_policy, d->dry_run_policy);
    cmp_int(&inner, "rule", &e->dry_rule, d->dry_run_rule);
    ward_buf_printf(&c->exp, "{%s}", inner.exp.ptr);
    if (d->has_dry_run) {
        ward_buf_printf(&c->act, "{%s}", inner.act.ptr);
        c->ok = c->ok && inner.ok;
    }
    ward_buf_dispose(&inner.exp);
    ward_buf_dispose(&inner.act);
}

/* A route in the form expectations are written: {name: x, destinations: [...]}. */
static void put_route(ward_buf *b, const authz_route *r)
{
    ward_buf_printf(b, "{policy: %s, index: %d, name: %s, destinations: [", r->policy, r->index,
                    r->name);
    for (uint32_t i = 0; i < r->n_destinations; i++)
        ward_buf_printf(b, "%s{service: %s, weight: %u}", i ? ", " : "",
                        r->destinations[i].service, (unsigned)r->destinations[i].weight);
    ward_buf_puts(b, "]");
    if (r->rewrite_path != NULL)
        ward_buf_printf(b, ", rewrite: %s", r->rewrite_path);
    ward_buf_puts(b, "}");
}

static void cmp_route(cmp *c, const expect_route *e, const authz_decision *d)
{
    if (!e->present)
        return;
    cmp_key(c, "route");
    const authz_route *r = d->route;
    if (e->null || r == NULL) {
        ward_buf_puts(&c->exp, e->null ? "null" : "{...}");
        if (r != NULL)
            put_route(&c->act, r);
        else
            ward_buf_puts(&c->act, "null");
        c->ok = c->ok && e->null == (r == NULL);
        return;
    }
    cmp inner = {.ok = true, .sep = ""};
    ward_buf_init(&inner.exp);
    ward_buf_init(&inner.act);
    cmp_str(&inner, "policy", &e->policy, r->policy);
    cmp_int(&inner, "index", &e->index, r->index);
    cmp_str(&inner, "name", &e->name, r->name);
    if (e->dests_present) {
        cmp_key(&inner, "destinations");
        bool same = e->n_dests == r->n_destinations;
        ward_buf_puts(&inner.exp, "[");
        ward_buf_puts(&inner.act, "[");
        for (size_t i = 0; i < e->n_dests; i++) {
            const expect_dest *x = &e->dests[i];
            if (x->weight >= 0)
                ward_buf_printf(&inner.exp, "%s{service: %s, weight: %d}", i ? ", " : "", x->service,
                                x->weight);
            else
                ward_buf_printf(&inner.exp, "%s%s", i ? ", " : "", x->service);
            if (same)
                same = strcmp(x->service, r->destinations[i].service) == 0 &&
                       (x->weight < 0 || (uint32_t)x->weight == r->destinations[i].weight);
        }
        for (uint32_t i = 0; i < r->n_destinations; i++)
            ward_buf_printf(&inner.act, "%s{service: %s, weight: %u}", i ? ", " : "",
                            r->destinations[i].service, (unsigned)r->destinations[i].weight);
        ward_buf_puts(&inner.exp, "]");
        ward_buf_puts(&inner.act, "]");
        inner.ok = inner.ok && same;
    }
    cmp_str(&inner, "rewrite", &e->rewrite, r->rewrite_path);
    ward_buf_printf(&c->exp, "{%s}", inner.exp.ptr ? inner.exp.ptr : "");
    ward_buf_printf(&c->act, "{%s}", inner.act.ptr ? inner.act.ptr : "");
    c->ok = c->ok && inner.ok;
    ward_buf_dispose(&inner.exp);
    ward_buf_dispose(&inner.act);
}

/* Compares a decision with the expectation; fills c with the asserted fields. */
static void compare(cmp *c, const test_expect *e, const authz_decision *d)
{
    bool allow = d->decision == AUTHZ_ALLOW;
    if (e->decision_present) {
        cmp_key(c, "decision");
        ward_buf_puts(&c->exp, e->allow ? "allow" : "deny");
        ward_buf_puts(&c->act, allow ? "allow" : "deny");
        c->ok = e->allow == allow;
    }
    cmp_str(c, "policy", &e->policy, d->policy);
    cmp_int(c, "rule", &e->rule, d->rule);
    if (e->audit_present) {
        cmp_key(c, "audit");
        ward_buf_puts(&c->exp, e->audit ? "true" : "false");
        ward_buf_puts(&c->act, d->audit ? "true" : "false");
        c->ok = c->ok && e->audit == d->audit;
    }
    cmp_dry_run(c, e, d);
    if (e->reason.present) {
        cmp_key(c, "reason");
        ward_buf_printf(&c->exp, "contains \"%s\"", e->reason.s);
        put_str(&c->act, d->reason);
        c->ok = c->ok && d->reason != NULL && strstr(d->reason, e->reason.s) != NULL;
    }
    cmp_route(c, &e->route, d);
}

static int engine_for(test_run *t, bool default_allow, authz_engine **out)
{
    authz_engine **e = &t->engines[default_allow];
    if (*e == NULL && wctl_engine_build(t->set, default_allow, e, NULL) < 0)
        return WARD_EPOLICY;
    *out = *e;
    return 0;
}

static int run_case(test_run *t, const test_case *tc)
{
    authz_engine *engine;
    authz_decision d;
    cmp c = {.ok = true, .sep = ""};
    int rc = engine_for(t, tc->default_allow, &engine);
    if (rc < 0)
        return rc;
    authz_decision_init(&d);
    ward_buf_init(&c.exp);
    ward_buf_init(&c.act);
    rc = authz_decide(engine, &tc->req, t->explain, &d);
    if (rc < 0 && d.reason == NULL) /* not even a decision: a deny */
        d.reason = strdup(ward_strerror(rc));
    compare(&c, &tc->expect, &d);
    if (c.ok) {
        t->passed++;
        if (t->verbose)
            printf("%s:%d: ok: %s\n", tc->file, tc->line, tc->name);
    } else {
        t->failed++;
        printf("%s:%d: FAIL: %s: expected {%s}, got {%s}", tc->file, tc->line, tc->name,
               c.exp.ptr, c.act.ptr);
        if (!tc->expect.reason.present)
            printf(" (reason: %s)", d.reason ? d.reason : "none");
        putchar('\n');
        if (t->explain) {
            char summary[512];
            wctl_request_summary(&tc->req, summary, sizeof(summary));
            wctl_explain_print(stdout, &d, summary, "    ");
        }
    }
    ward_buf_dispose(&c.exp);
    ward_buf_dispose(&c.act);
    authz_decision_dispose(&d);
    return 0;
}

/* ---- the command ----------------------------------------------------------------- */

static int test_parse_args(test_run *t, const char *prog, int argc, char **argv)
{
    wctl_args a;
    const char *v;
    int id;
    wctl_args_init(&a, prog, argc, argv, test_opts);
    while ((id = wctl_args_next(&a, &v)) != WCTL_ARG_END) {
        switch (id) {
        case WCTL_ARG_ERROR: return WCTL_EXIT_USAGE;
        case OPT_HELP: fputs(test_help, stdout); return WCTL_EXIT_OK;
        case OPT_VERBOSE: t->verbose = true; break;
        case OPT_EXPLAIN: t->explain = true; break;
        case OPT_DEFAULT:
            if (wctl_parse_default(v, &t->default_allow) < 0)
                return wctl_usage_error(prog, "--default must be allow or deny, not '%s'", v);
            break;
        case OPT_POLICY:
            if (wctl_strs_push(&t->policy_paths, v) < 0)
                return WCTL_EXIT_FAIL;
            break;
        default:
            if (wctl_strs_push(&t->test_paths, v) < 0)
                return WCTL_EXIT_FAIL;
        }
    }
    if (t->policy_paths.n == 0)
        return wctl_usage_error(prog, "no policy given (use -p PATH)");
    return -1;
}

static void test_run_dispose(test_run *t)
{
    for (size_t i = 0; i < t->n_cases; i++) {
        if (t->cases[i].storage != NULL)
            authz_request_storage_free(t->cases[i].storage);
        free(t->cases[i].expect.route.dests);
    }
    free(t->cases);
    for (size_t i = 0; i < t->n_docs; i++)
        ward_docs_dispose(&t->docs[i]);
    free(t->docs);
    for (size_t i = 0; i < t->n_files; i++)
        free(t->files[i]);
    free(t->files);
    for (int i = 0; i < 2; i++)
        if (t->engines[i] != NULL)
            authz_engine_free(t->engines[i]);
    if (t->set != NULL)
        policy_set_free(t->set);
    ward_diag_dispose(&t->diag);
    wctl_strs_dispose(&t->policy_paths);
    wctl_strs_dispose(&t->test_paths);
}

static int test_main(test_run *t, const char *prog)
{
    bool unusable = false;
    if (files_expand(t) < 0) {
        fprintf(stderr, "error: cannot list the test files\n");
        return WCTL_EXIT_USAGE;
    }
    if (t->n_files == 0)
        return wctl_usage_error(prog, "no test files (give TESTFILE or a -p folder with tests/)");
    if (wctl_policies_load(&t->policy_paths, &t->set) < 0)
        return WCTL_EXIT_FAIL;
    t->docs = calloc(t->n_files, sizeof(*t->docs));
    if (t->docs == NULL)
        return WCTL_EXIT_FAIL;
    t->diag.max = 1000;
    for (size_t i = 0; i < t->n_files; i++)
        if (read_file(t, t->files[i]) < 0)
            unusable = true;
    for (size_t i = 0; i < t->diag.n; i++)
        fprintf(stderr, "%s\n", t->diag.msgs[i]);
    for (size_t i = 0; i < t->n_cases; i++)
        if (run_case(t, &t->cases[i]) < 0)
            return WCTL_EXIT_FAIL;
    printf("%zu passed, %zu failed\n", t->passed, t->failed);
    if (unusable)
        return WCTL_EXIT_USAGE;
    return t->failed > 0 ? WCTL_EXIT_FAIL : WCTL_EXIT_OK;
}

int wctl_policy_test(const char *prog, int argc, char **argv)
{
    test_run t;
    memset(&t, 0, sizeof(t));
    ward_diag_init(&t.diag);
    int status = test_parse_args(&t, prog, argc, argv);
    if (status < 0)
        status = test_main(&t, prog);
    fflush(stdout);
    test_run_dispose(&t);
    return status;
}
