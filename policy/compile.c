/* compile.c - turn a validated rule set into deterministic, readable Lua source */
#include "policy/policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The bundle is a Lua program that, run once in the sandbox, returns the rule
 * program: {format, default, revision, policies = {...}, rules = {...},
 * routes = {...}} (routes only when the set has Routes). Its
 * tables read like the policies they come from (same field names, same
 * pattern syntax), each rule with a comment naming its file:line:col; `lua:`
 * conditions become functions made by ward.condition. The engine turns the
 * returned tables into indexed matchers (authz/program.c, authz/route.c).
 * Routes keep their http entries in order; durations are written in whole
 * milliseconds (timeout_ms ...), and defaults the validator filled in (retry
 * conditions, the weight of a single destination) are written out, so the
 * bundle says exactly what the engine does.
 */

typedef struct compiler {
    ward_buf *out;
    int rc;
} compiler;

static void put(compiler *c, const char *s)
{
    if (c->rc == 0 && ward_buf_puts(c->out, s) < 0)
        c->rc = WARD_ENOMEM;
}

static void putf(compiler *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(compiler *c, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        c->rc = c->rc ? c->rc : WARD_ELIMIT;
        return;
    }
    put(c, tmp);
}

/* A Lua string literal holding exactly these bytes. Only printable ASCII other
 * than quote and backslash is written as itself; everything else becomes a
 * three-digit decimal escape, so no value can end the literal or the line. */
static void put_lstr(compiler *c, const char *s, size_t len)
{
    if (c->rc)
        return;
    ward_buf *b = c->out;
    int rc = ward_buf_putc(b, '"');
    for (size_t i = 0; i < len && rc == 0; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') {
            rc = ward_buf_putc(b, (char)ch);
        } else {
            char esc[5];
            snprintf(esc, sizeof(esc), "\\%03u", ch);
            rc = ward_buf_append(b, esc, 4);
        }
    }
    if (rc == 0)
        rc = ward_buf_putc(b, '"');
    if (rc < 0)
        c->rc = rc;
}

static void put_cstr(compiler *c, const char *s)
{
    put_lstr(c, s, strlen(s));
}

/* Text for a `-- comment`: printable ASCII only, so it cannot end the line. */
static void put_comment_text(compiler *c, const char *s)
{
    for (; *s && c->rc == 0; s++) {
        char ch = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
        if (ward_buf_putc(c->out, ch) < 0)
            c->rc = WARD_ENOMEM;
    }
}

static void put_pos_comment(compiler *c, const char *what, const policy_pos *pos)
{
    put(c, "-- ");
    put_comment_text(c, what);
    put(c, " (");
    put_comment_text(c, pos->file ? pos->file : "?");
    putf(c, ":%d:%d)\n", pos->line, pos->col);
}

static const char *action_name(policy_action a)
{
    switch (a) {
    case POLICY_ALLOW: return "ALLOW";
    case POLICY_DENY: return "DENY";
    default: return "AUDIT";
    }
}

/* One pattern in the policy syntax ("x", "x*", "*x", "*", templates as
 * written, {regex = "..."}, CIDR blocks as written). */
static void put_match(compiler *c, const policy_match *m)
{
    switch (m->kind) {
    case POLICY_MATCH_REGEX:
        put(c, "{regex = ");
        put_lstr(c, m->value, m->len);
        put(c, "}");
        return;
    case POLICY_MATCH_ANY:
        put(c, "\"*\"");
        return;
    case POLICY_MATCH_PREFIX:
    case POLICY_MATCH_SUFFIX: {
        ward_buf tmp;
        ward_buf_init(&tmp);
        int rc = m->kind == POLICY_MATCH_SUFFIX ? ward_buf_putc(&tmp, '*') : 0;
        if (rc == 0)
            rc = ward_buf_append(&tmp, m->value, m->len);
        if (rc == 0 && m->kind == POLICY_MATCH_PREFIX)
            rc = ward_buf_putc(&tmp, '*');
        if (rc < 0)
            c->rc = WARD_ENOMEM;
        else
            put_lstr(c, tmp.ptr, tmp.len);
        ward_buf_dispose(&tmp);
        return;
    }
    default:
        put_lstr(c, m->value, m->len);
    }
}

/* `name = {...}, ` when the field is present. */
static void put_field(compiler *c, const char *name, const policy_matches *m)
{
    if (!m->present)
        return;
    putf(c, "%s = {", name);
    for (size_t i = 0; i < m->n; i++) {
        if (i)
            put(c, ", ");
        put_match(c, &m->v[i]);
    }
    put(c, "}, ");
}

static void put_ports(compiler *c, const char *name, const policy_ports *p)
{
    if (!p->present)
        return;
    putf(c, "%s = {", name);
    for (size_t i = 0; i < p->n; i++)
        putf(c, "%s%u", i ? ", " : "", p->v[i]);
    put(c, "}, ");
}

/* Drops the ", " a field list ends with before its closing brace. */
static void close_item(compiler *c, const char *close)
{
    ward_buf *b = c->out;
    if (c->rc == 0 && b->len >= 2 && b->ptr[b->len - 2] == ',' && b->ptr[b->len - 1] == ' ')
        b->len -= 2;
    put(c, close);
}

static void emit_source(compiler *c, const policy_source *s)
{
    put(c, "    {");
    put_field(c, "principals", &s->principals);
    put_field(c, "notPrincipals", &s->not_principals);
    put_field(c, "namespaces", &s->namespaces);
    put_field(c, "notNamespaces", &s->not_namespaces);
    put_field(c, "trustDomains", &s->trust_domains);
    put_field(c, "notTrustDomains", &s->not_trust_domains);
    put_field(c, "ipBlocks", &s->ip_blocks);
    put_field(c, "notIpBlocks", &s->not_ip_blocks);
    close_item(c, "},\n");
}

static void emit_operation(compiler *c, const policy_operation *o)
{
    put(c, "    {");
    put_field(c, "methods", &o->methods);
    put_field(c, "notMethods", &o->not_methods);
    put_field(c, "hosts", &o->hosts);
    put_field(c, "notHosts", &o->not_hosts);
    put_ports(c, "ports", &o->ports);
    put_ports(c, "notPorts", &o->not_ports);
    put_field(c, "paths", &o->paths);
    put_field(c, "notPaths", &o->not_paths);
    close_item(c, "},\n");
}

static void emit_condition(compiler *c, const policy_condition *w)
{
    if (w->is_lua) {
        char where[64];
        snprintf(where, sizeof(where), ":%d", w->pos.line);
        put(c, "    {lua = condition(");
        put_cstr(c, w->lua);
        put(c, ", ");
        ward_buf tmp;
        ward_buf_init(&tmp);
        if (ward_buf_puts(&tmp, w->pos.file ? w->pos.file : "?") < 0 || ward_buf_puts(&tmp, where) < 0)
            c->rc = WARD_ENOMEM;
        else
            put_lstr(c, tmp.ptr, tmp.len);
        ward_buf_dispose(&tmp);
        put(c, ")},\n");
        return;
    }
    put(c, "    {key = ");
    if (w->attr == POLICY_ATTR_REQUEST_HEADER) {
        ward_buf tmp;
        ward_buf_init(&tmp);
        if (ward_buf_printf(&tmp, "request.headers[%s]", w->header ? w->header : "") < 0)
            c->rc = WARD_ENOMEM;
        else
            put_lstr(c, tmp.ptr, tmp.len);
        ward_buf_dispose(&tmp);
    } else {
        put_cstr(c, policy_attr_name(w->attr));
    }
    put(c, ", ");
    put_field(c, "values", &w->values);
    put_field(c, "notValues", &w->not_values);
    close_item(c, "},\n");
}

static void emit_rule(compiler *c, const policy_authz *p, size_t pi, size_t ri)
{
    const policy_rule *r = &p->rules[ri];
    char what[600];
    snprintf(what, sizeof(what), "%s rules[%zu]", p->id, ri);
    put_pos_comment(c, what, &r->pos);
    putf(c, "rules[#rules + 1] = {policy = %zu, index = %zu,\n", pi + 1, ri);
    if (r->from_present) {
        put(c, "  from = {\n");
        for (size_t i = 0; i < r->n_from; i++)
            emit_source(c, &r->from[i]);
        put(c, "  },\n");
    }
    if (r->to_present) {
        put(c, "  to = {\n");
        for (size_t i = 0; i < r->n_to; i++)
            emit_operation(c, &r->to[i]);
        put(c, "  },\n");
    }
    if (r->n_when > 0) {
        put(c, "  when = {\n");
        for (size_t i = 0; i < r->n_when; i++)
            emit_condition(c, &r->when[i]);
        put(c, "  },\n");
    }
    put(c, "}\n");
}

static bool selects(const policy_authz *p, const char *service)
{
    if (service == NULL || !p->selector_present)
        return true;
    for (size_t i = 0; i < p->n_services; i++)
        if (strcmp(p->services[i], service) == 0)
            return true;
    return false;
}

static void emit_policy(compiler *c, const policy_authz *p, size_t pi)
{
    put(c, "\n");
    put_pos_comment(c, p->id, &p->pos);
    putf(c, "policies[%zu] = {id = ", pi + 1);
    put_cstr(c, p->id);
    putf(c, ", action = \"%s\", mode = \"%s\"", action_name(p->action),
         p->dry_run ? "dry-run" : "enforce");
    if (p->selector_present) {
        put(c, ", services = {");
        for (size_t i = 0; i < p->n_services; i++) {
            if (i)
                put(c, ", ");
            put_cstr(c, p->services[i]);
        }
        put(c, "}");
    }
    if (p->deny_status)
        putf(c, ", deny_status = %d", p->deny_status);
    if (p->deny_body) {
        put(c, ", deny_body = ");
        put_cstr(c, p->deny_body);
    }
    char line[32];
    snprintf(line, sizeof(line), ":%d", p->pos.line);
    ward_buf src;
    ward_buf_init(&src);
    if (ward_buf_puts(&src, p->pos.file ? p->pos.file : "?") < 0 || ward_buf_puts(&src, line) < 0)
        c->rc = WARD_ENOMEM;
    put(c, ", source = ");
    if (src.ptr != NULL)
        put_lstr(c, src.ptr, src.len);
    ward_buf_dispose(&src);
    put(c, "}\n");
}

/* ---- routes ---- */

static void put_pos_source(compiler *c, const policy_pos *pos)
{
    char line[32];
    snprintf(line, sizeof(line), ":%d", pos->line);
    ward_buf src;
    ward_buf_init(&src);
    if (ward_buf_puts(&src, pos->file ? pos->file : "?") < 0 || ward_buf_puts(&src, line) < 0)
        c->rc = WARD_ENOMEM;
    else
        put_lstr(c, src.ptr, src.len);
    ward_buf_dispose(&src);
}

/* {{name = "x", exact = "v"}, ...} */
static void put_kv(compiler *c, const char *field, const policy_kv_match *v, size_t n)
{
    if (n == 0)
        return;
    putf(c, "%s = {", field);
    for (size_t i = 0; i < n; i++) {
        put(c, i ? ", {name = " : "{name = ");
        put_cstr(c, v[i].name);
        const policy_match *m = &v[i].value;
        put(c, m->kind == POLICY_MATCH_REGEX    ? ", regex = "
               : m->kind == POLICY_MATCH_PREFIX ? ", prefix = "
                                                : ", exact = ");
        put_lstr(c, m->value, m->len);
        put(c, "}");
    }
    put(c, "}, ");
}

static void emit_route_match(compiler *c, const policy_route_match *m)
{
    put(c, "      {");
    put_field(c, "paths", &m->paths);
    put_field(c, "methods", &m->methods);
    put_kv(c, "headers", m->headers, m->n_headers);
    put_kv(c, "queryParams", m->query, m->n_query);
    close_item(c, "},\n");
}

static void put_ops(compiler *c, const char *field, const policy_header_ops *o)
{
    if (o->n_set + o->n_add + o->n_remove == 0)
        return;
    putf(c, "%s = {", field);
    const policy_header_op *lists[2] = {o->set, o->add};
    size_t n[2] = {o->n_set, o->n_add};
    for (int l = 0; l < 2; l++) {
        if (n[l] == 0)
            continue;
        put(c, l == 0 ? "set = {" : "add = {");
        for (size_t i = 0; i < n[l]; i++) {
            put(c, i ? ", {name = " : "{name = ");
            put_cstr(c, lists[l][i].name);
            put(c, ", value = ");
            put_cstr(c, lists[l][i].value);
            put(c, "}");
        }
        put(c, "}, ");
    }
    if (o->n_remove > 0) {
        put(c, "remove = {");
        for (size_t i = 0; i < o->n_remove; i++) {
            if (i)
                put(c, ", ");
            put_cstr(c, o->remove[i].name);
        }
        put(c, "}, ");
    }
    close_item(c, "}, ");
}

static void emit_http(compiler *c, const policy_route *r, size_t i)
{
    const policy_http_route *e = &r->http[i];
    char what[600];
    snprintf(what, sizeof(what), "%s http[%zu] %s", r->id, i, e->name);
    put(c, "  ");
    put_pos_comment(c, what, &e->pos);
    put(c, "  {name = ");
    put_cstr(c, e->name);
    put(c, ", source = ");
    put_pos_source(c, &e->pos);
    put(c, ",\n");
    if (e->match_present) {
        put(c, "    match = {\n");
        for (size_t k = 0; k < e->n_match; k++)
            emit_route_match(c, &e->match[k]);
        put(c, "    },\n");
    }
    put(c, "    destinations = {");
    for (size_t k = 0; k < e->n_destinations; k++) {
        put(c, k ? ", {service = " : "{service = ");
        put_cstr(c, e->destinations[k].service);
        putf(c, ", weight = %u}", e->destinations[k].weight);
    }
    put(c, "},\n");
    if (e->timeout_ms)
        putf(c, "    timeout_ms = %llu,\n", (unsigned long long)e->timeout_ms);
    const policy_retries *rt = &e->retries;
    if (rt->present) {
        putf(c, "    retries = {attempts = %u, ", rt->attempts);
        if (rt->per_try_timeout_ms)
            putf(c, "perTryTimeout_ms = %llu, ", (unsigned long long)rt->per_try_timeout_ms);
        put(c, "on = {");
        for (size_t k = 0; k < rt->n_on; k++) {
            if (k)
                put(c, ", ");
            put_cstr(c, rt->on_names[k]);
        }
        putf(c, "}, nonIdempotent = %s, maxBodyBytes = %llu},\n",
             rt->non_idempotent ? "true" : "false", (unsigned long long)rt->max_body_bytes);
    }
    if (e->rewrite_prefix != NULL) {
        put(c, "    rewrite = {prefix = ");
        put_cstr(c, e->rewrite_prefix);
        put(c, "},\n");
    }
    if (e->request_headers.n_set + e->request_headers.n_add + e->request_headers.n_remove +
            e->response_headers.n_set + e->response_headers.n_add + e->response_headers.n_remove >
        0) {
        put(c, "    headers = {");
        put_ops(c, "request", &e->request_headers);
        put_ops(c, "response", &e->response_headers);
        close_item(c, "},\n");
    }
    const policy_rate_limit *rl = &e->rate_limit;
    if (rl->present) {
        putf(c, "    rateLimit = {requests = %llu, per_ms = %llu, key = ",
             (unsigned long long)rl->requests, (unsigned long long)rl->per_ms);
        if (rl->key == POLICY_RATE_KEY_HEADER) {
            ward_buf tmp;
            ward_buf_init(&tmp);
            if (ward_buf_printf(&tmp, "request.headers[%s]", rl->header) < 0)
                c->rc = WARD_ENOMEM;
            else
                put_lstr(c, tmp.ptr, tmp.len);
            ward_buf_dispose(&tmp);
        } else {
            put(c, rl->key == POLICY_RATE_KEY_PRINCIPAL ? "\"source.principal\"" : "\"none\"");
        }
        put(c, "},\n");
    }
    if (e->mirror_service != NULL) {
        put(c, "    mirror = {service = ");
        put_cstr(c, e->mirror_service);
        putf(c, ", percent = %u},\n", e->mirror_percent);
    }
    put(c, "  },\n");
}

static void emit_route(compiler *c, const policy_route *r, size_t ri)
{
    put(c, "\n");
    char what[600];
    snprintf(what, sizeof(what), "route %s", r->id);
    put_pos_comment(c, what, &r->pos);
    putf(c, "routes[%zu] = {id = ", ri + 1);
    put_cstr(c, r->id);
    put(c, ", hosts = {");
    for (size_t i = 0; i < r->n_hosts; i++) {
        if (i)
            put(c, ", ");
        put_cstr(c, r->hosts[i]);
    }
    put(c, "}, source = ");
    put_pos_source(c, &r->pos);
    put(c, ", http = {\n");
    for (size_t i = 0; i < r->n_http && c->rc == 0; i++)
        emit_http(c, r, i);
    put(c, "}}\n");
}

int policy_set_compile(const policy_set *set, const policy_compile_opts *opts, ward_buf *out,
                       ward_err *err)
{
    compiler c = {.out = out};
    const char *only = opts ? opts->only_service : NULL;
    size_t n = policy_set_count(set);

    put(&c, "-- Ward policy bundle (ward-bundle/1), compiled from ward/v1 policies. Do not edit:\n"
            "-- recompile. It runs once in the sandbox when the engine loads it; the engine turns\n"
            "-- the tables it returns into indexed matchers, and `lua:` conditions stay functions.\n");
    put(&c, "-- revision: ");
    put_comment_text(&c, policy_set_revision(set));
    size_t n_routes = policy_set_route_count(set);
    put(&c, "\nlocal condition = ward.condition\nlocal policies, rules = {}, {}\n");
    if (n_routes > 0)
        put(&c, "local routes = {}\n");
    put(&c, "-- ---- generated policies ----\n");
    size_t pi = 0;
    for (size_t i = 0; i < n && c.rc == 0; i++) {
        const policy_authz *p = policy_set_get(set, i);
        if (!selects(p, only))
            continue;
        emit_policy(&c, p, pi);
        for (size_t r = 0; r < p->n_rules && c.rc == 0; r++)
            emit_rule(&c, p, pi, r);
        pi++;
    }
    for (size_t i = 0; i < n_routes && c.rc == 0; i++)
        emit_route(&c, policy_set_route(set, i), i);
    put(&c, "\n-- ---- end of generated policies ----\n");
    putf(&c, "return {format = \"ward-bundle/1\", default = \"%s\", revision = ",
         opts && opts->default_allow ? "allow" : "deny");
    put_cstr(&c, policy_set_revision(set));
    put(&c, n_routes > 0 ? ", policies = policies, rules = rules, routes = routes}\n"
                         : ", policies = policies, rules = rules}\n");
    if (c.rc < 0)
        ward_err_set(err, "compiling policies: %s", ward_strerror(c.rc));
    return c.rc;
}
