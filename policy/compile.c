/* compile.c - turn a validated rule set into deterministic, readable Lua source */
#include "policy/policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_prelude.h"

/* Above this many exact values a field is matched through a hash set. */
#define INLINE_EXACT_MAX 4

typedef struct compiler {
    ward_buf *out;
    unsigned next_k; /* K[] slots: sets, regexes, templates, CIDR sets, conditions */
    unsigned uses;   /* bitmask of the request slots the generated code reads */
    int rc;
} compiler;

static const char *const slot_names[POLICY_SLOT_COUNT] = {
    [POLICY_SLOT_SOURCE_PRINCIPAL] = "SOURCE_PRINCIPAL",
    [POLICY_SLOT_SOURCE_IP] = "SOURCE_IP",
    [POLICY_SLOT_SOURCE_PORT] = "SOURCE_PORT",
    [POLICY_SLOT_SOURCE_NAMESPACE] = "SOURCE_NAMESPACE",
    [POLICY_SLOT_SOURCE_TRUST_DOMAIN] = "SOURCE_TRUST_DOMAIN",
    [POLICY_SLOT_DESTINATION_SERVICE] = "DESTINATION_SERVICE",
    [POLICY_SLOT_DESTINATION_PRINCIPAL] = "DESTINATION_PRINCIPAL",
    [POLICY_SLOT_DESTINATION_PORT] = "DESTINATION_PORT",
    [POLICY_SLOT_METHOD] = "METHOD",
    [POLICY_SLOT_HOST] = "HOST",
    [POLICY_SLOT_PATH] = "PATH",
    [POLICY_SLOT_QUERY] = "QUERY",
    [POLICY_SLOT_PROTOCOL] = "PROTOCOL",
    [POLICY_SLOT_MTLS] = "MTLS",
    [POLICY_SLOT_SNI] = "SNI",
    [POLICY_SLOT_TIME_UNIX] = "TIME_UNIX",
    [POLICY_SLOT_HEADERS] = "HEADERS",
    [POLICY_SLOT_VIEW] = "VIEW",
};

const char *policy_slot_name(policy_slot s)
{
    return s > 0 && s < POLICY_SLOT_COUNT ? slot_names[s] : "?";
}

static void use(compiler *c, policy_slot s)
{
    c->uses |= 1u << s;
}

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

/* ---- K[] slots: values built once when the bundle loads ---- */

static unsigned k_exact_set(compiler *c, const policy_matches *m)
{
    unsigned k = ++c->next_k;
    putf(c, "K[%u] = set{", k);
    int first = 1;
    for (size_t i = 0; i < m->n; i++) {
        if (m->v[i].kind != POLICY_MATCH_EXACT)
            continue;
        if (!first)
            put(c, ", ");
        put_lstr(c, m->v[i].value, m->v[i].len);
        first = 0;
    }
    put(c, "}\n");
    return k;
}

static unsigned k_cidr_set(compiler *c, const policy_matches *m)
{
    unsigned k = ++c->next_k;
    putf(c, "K[%u] = cidr{", k);
    int first = 1;
    for (size_t i = 0; i < m->n; i++) {
        if (m->v[i].kind != POLICY_MATCH_CIDR)
            continue;
        if (!first)
            put(c, ", ");
        put_lstr(c, m->v[i].value, m->v[i].len);
        first = 0;
    }
    put(c, "}\n");
    return k;
}

static unsigned k_single(compiler *c, const char *ctor, const policy_match *m)
{
    unsigned k = ++c->next_k;
    putf(c, "K[%u] = %s(", k, ctor);
    put_lstr(c, m->value, m->len);
    put(c, ")\n");
    return k;
}

/* ---- matchers: a boolean Lua expression over the local `v` (never nil) ---- */

typedef struct field_plan {
    unsigned set_k;   /* K slot of the exact set, 0 = exact values inlined */
    unsigned cidr_k;  /* K slot of the CIDR set, 0 = none */
    unsigned *item_k; /* per value: K slot of its regex/template, else 0 */
} field_plan;

/* Emits the K[] slots one field needs, before the rule's function. */
static int plan_field(compiler *c, const policy_matches *m, field_plan *fp)
{
    memset(fp, 0, sizeof(*fp));
    if (!m->present || m->n == 0)
        return 0;
    size_t n_exact = 0, n_cidr = 0;
    for (size_t i = 0; i < m->n; i++) {
        n_exact += m->v[i].kind == POLICY_MATCH_EXACT;
        n_cidr += m->v[i].kind == POLICY_MATCH_CIDR;
    }
    if (n_exact > INLINE_EXACT_MAX)
        fp->set_k = k_exact_set(c, m);
    if (n_cidr > 0)
        fp->cidr_k = k_cidr_set(c, m);
    fp->item_k = calloc(m->n, sizeof(unsigned));
    if (fp->item_k == NULL)
        return WARD_ENOMEM;
    for (size_t i = 0; i < m->n; i++) {
        if (m->v[i].kind == POLICY_MATCH_REGEX)
            fp->item_k[i] = k_single(c, "regex", &m->v[i]);
        else if (m->v[i].kind == POLICY_MATCH_TEMPLATE)
            fp->item_k[i] = k_single(c, "template", &m->v[i]);
    }
    return 0;
}

static void emit_field_expr(compiler *c, const policy_matches *m, const field_plan *fp)
{
    const char *sep = "";
    if (fp->set_k) {
        putf(c, "K[%u][v]", fp->set_k);
        sep = " or ";
    }
    if (fp->cidr_k) {
        putf(c, "%scidr_match(K[%u], v)", sep, fp->cidr_k);
        sep = " or ";
    }
    for (size_t i = 0; i < m->n; i++) {
        const policy_match *x = &m->v[i];
        switch (x->kind) {
        case POLICY_MATCH_EXACT:
            if (fp->set_k)
                continue;
            put(c, sep);
            put(c, "v == ");
            put_lstr(c, x->value, x->len);
            break;
        case POLICY_MATCH_PREFIX:
            put(c, sep);
            put(c, "prefix(v, ");
            put_lstr(c, x->value, x->len);
            put(c, ")");
            break;
        case POLICY_MATCH_SUFFIX:
            put(c, sep);
            put(c, "suffix(v, ");
            put_lstr(c, x->value, x->len);
            put(c, ")");
            break;
        case POLICY_MATCH_ANY:
            put(c, sep);
            put(c, "v ~= \"\"");
            break;
        case POLICY_MATCH_TEMPLATE:
            put(c, sep);
            putf(c, "template_match(K[%u], v)", fp->item_k[i]);
            break;
        case POLICY_MATCH_REGEX:
            put(c, sep);
            putf(c, "regex_match(K[%u], v)", fp->item_k[i]);
            break;
        case POLICY_MATCH_CIDR:
            continue; /* covered by the CIDR set */
        }
        sep = " or ";
    }
}

/* One field check inside a `repeat ... until true` block: on failure record
 * the field for explain and leave the block (or the function). */
static void emit_check(compiler *c, const char *indent, const char *var, const policy_matches *m,
                       const field_plan *fp, bool negated, const char *field, const char *on_fail)
{
    if (!m->present || m->n == 0)
        return;
    if (var != NULL)
        putf(c, "%sv = %s\n", indent, var);
    if (negated)
        putf(c, "%sif v ~= nil and (", indent);
    else
        putf(c, "%sif v == nil or not (", indent);
    emit_field_expr(c, m, fp);
    putf(c, ") then\n%s  if ex then ex[#ex + 1] = ", indent);
    put_cstr(c, field);
    putf(c, " end\n%s  %s\n%send\n", indent, on_fail, indent);
}

static void emit_ports_check(compiler *c, const char *indent, const char *var,
                             const policy_ports *p, bool negated, const char *field)
{
    if (!p->present || p->n == 0)
        return;
    putf(c, "%sv = %s\n", indent, var);
    putf(c, negated ? "%sif v ~= nil and (" : "%sif v == nil or not (", indent);
    for (size_t i = 0; i < p->n; i++)
        putf(c, "%sv == %u", i ? " or " : "", p->v[i]);
    putf(c, ") then\n%s  if ex then ex[#ex + 1] = ", indent);
    put_cstr(c, field);
    putf(c, " end\n%s  break\n%send\n", indent, indent);
}

static void free_plans(field_plan *fp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(fp[i].item_k);
}

/* ---- rules ---- */

enum { SRC_FIELDS = 8, OP_FIELDS = 6 };

static const policy_matches *source_field(const policy_source *s, int i)
{
    const policy_matches *f[SRC_FIELDS] = {
        &s->principals, &s->not_principals, &s->namespaces,  &s->not_namespaces,
        &s->trust_domains, &s->not_trust_domains, &s->ip_blocks, &s->not_ip_blocks,
    };
    return f[i];
}

static const char *const source_names[SRC_FIELDS] = {
    "principals", "notPrincipals", "namespaces", "notNamespaces",
    "trustDomains", "notTrustDomains", "ipBlocks", "notIpBlocks",
};
static const char *const source_vars[SRC_FIELDS] = {
    "q[SOURCE_PRINCIPAL]", "q[SOURCE_PRINCIPAL]", "q[SOURCE_NAMESPACE]", "q[SOURCE_NAMESPACE]",
    "q[SOURCE_TRUST_DOMAIN]", "q[SOURCE_TRUST_DOMAIN]", "q[SOURCE_IP]", "q[SOURCE_IP]",
};
static const policy_slot source_slots[SRC_FIELDS] = {
    POLICY_SLOT_SOURCE_PRINCIPAL, POLICY_SLOT_SOURCE_PRINCIPAL, POLICY_SLOT_SOURCE_NAMESPACE,
    POLICY_SLOT_SOURCE_NAMESPACE, POLICY_SLOT_SOURCE_TRUST_DOMAIN, POLICY_SLOT_SOURCE_TRUST_DOMAIN,
    POLICY_SLOT_SOURCE_IP, POLICY_SLOT_SOURCE_IP,
};

static const policy_matches *op_field(const policy_operation *o, int i)
{
    const policy_matches *f[OP_FIELDS] = {
        &o->methods, &o->not_methods, &o->hosts, &o->not_hosts, &o->paths, &o->not_paths,
    };
    return f[i];
}

static const char *const op_names[OP_FIELDS] = {
    "methods", "notMethods", "hosts", "notHosts", "paths", "notPaths",
};
static const char *const op_vars[OP_FIELDS] = {
    "q[METHOD]", "q[METHOD]", "q[HOST]", "q[HOST]", "q[PATH]", "q[PATH]",
};
static const policy_slot op_slots[OP_FIELDS] = {
    POLICY_SLOT_METHOD, POLICY_SLOT_METHOD, POLICY_SLOT_HOST,
    POLICY_SLOT_HOST,   POLICY_SLOT_PATH,   POLICY_SLOT_PATH,
};

/* The Lua expression reading a `when` attribute as a string. */
static const policy_slot attr_slots[] = {
    [POLICY_ATTR_SOURCE_PRINCIPAL] = POLICY_SLOT_SOURCE_PRINCIPAL,
    [POLICY_ATTR_SOURCE_IP] = POLICY_SLOT_SOURCE_IP,
    [POLICY_ATTR_SOURCE_PORT] = POLICY_SLOT_SOURCE_PORT,
    [POLICY_ATTR_SOURCE_NAMESPACE] = POLICY_SLOT_SOURCE_NAMESPACE,
    [POLICY_ATTR_SOURCE_TRUST_DOMAIN] = POLICY_SLOT_SOURCE_TRUST_DOMAIN,
    [POLICY_ATTR_DESTINATION_SERVICE] = POLICY_SLOT_DESTINATION_SERVICE,
    [POLICY_ATTR_DESTINATION_PRINCIPAL] = POLICY_SLOT_DESTINATION_PRINCIPAL,
    [POLICY_ATTR_DESTINATION_PORT] = POLICY_SLOT_DESTINATION_PORT,
    [POLICY_ATTR_REQUEST_METHOD] = POLICY_SLOT_METHOD,
    [POLICY_ATTR_REQUEST_HOST] = POLICY_SLOT_HOST,
    [POLICY_ATTR_REQUEST_PATH] = POLICY_SLOT_PATH,
    [POLICY_ATTR_REQUEST_QUERY] = POLICY_SLOT_QUERY,
    [POLICY_ATTR_REQUEST_HEADER] = POLICY_SLOT_HEADERS,
    [POLICY_ATTR_REQUEST_PROTOCOL] = POLICY_SLOT_PROTOCOL,
    [POLICY_ATTR_CONNECTION_MTLS] = POLICY_SLOT_MTLS,
    [POLICY_ATTR_CONNECTION_SNI] = POLICY_SLOT_SNI,
    [POLICY_ATTR_TIME] = POLICY_SLOT_TIME_UNIX,
};

static void put_attr_var(compiler *c, const policy_condition *w)
{
    use(c, attr_slots[w->attr]);
    switch (w->attr) {
    case POLICY_ATTR_SOURCE_PRINCIPAL: put(c, "q[SOURCE_PRINCIPAL]"); break;
    case POLICY_ATTR_SOURCE_IP: put(c, "q[SOURCE_IP]"); break;
    case POLICY_ATTR_SOURCE_PORT: put(c, "q[SOURCE_PORT] and tostring(q[SOURCE_PORT])"); break;
    case POLICY_ATTR_SOURCE_NAMESPACE: put(c, "q[SOURCE_NAMESPACE]"); break;
    case POLICY_ATTR_SOURCE_TRUST_DOMAIN: put(c, "q[SOURCE_TRUST_DOMAIN]"); break;
    case POLICY_ATTR_DESTINATION_SERVICE: put(c, "q[DESTINATION_SERVICE]"); break;
    case POLICY_ATTR_DESTINATION_PRINCIPAL: put(c, "q[DESTINATION_PRINCIPAL]"); break;
    case POLICY_ATTR_DESTINATION_PORT:
        put(c, "q[DESTINATION_PORT] and tostring(q[DESTINATION_PORT])");
        break;
    case POLICY_ATTR_REQUEST_METHOD: put(c, "q[METHOD]"); break;
    case POLICY_ATTR_REQUEST_HOST: put(c, "q[HOST]"); break;
    case POLICY_ATTR_REQUEST_PATH: put(c, "q[PATH]"); break;
    case POLICY_ATTR_REQUEST_QUERY: put(c, "q[QUERY]"); break;
    case POLICY_ATTR_REQUEST_HEADER:
        put(c, "q[HEADERS][");
        put_cstr(c, w->header ? w->header : "");
        put(c, "]");
        break;
    case POLICY_ATTR_REQUEST_PROTOCOL: put(c, "q[PROTOCOL]"); break;
    case POLICY_ATTR_CONNECTION_MTLS: put(c, "q[MTLS]"); break;
    case POLICY_ATTR_CONNECTION_SNI: put(c, "q[SNI]"); break;
    case POLICY_ATTR_TIME: put(c, "rfc3339(q)"); break;
    }
}

/* Which index a rule goes in: every alternative must pin the attribute to
 * exact values or prefixes, otherwise the rule is a candidate for every request. */
typedef enum { KEY_NONE, KEY_PRINCIPAL, KEY_PATH } index_key;

static bool indexable(const policy_matches *m, bool templates)
{
    if (!m->present || m->n == 0)
        return false;
    for (size_t i = 0; i < m->n; i++) {
        policy_match_kind k = m->v[i].kind;
        if (k != POLICY_MATCH_EXACT && k != POLICY_MATCH_PREFIX &&
            !(templates && k == POLICY_MATCH_TEMPLATE))
            return false;
    }
    return true;
}

static index_key choose_key(const policy_rule *r)
{
    if (r->from_present && r->n_from > 0) {
        bool all = true;
        for (size_t i = 0; i < r->n_from && all; i++)
            all = indexable(&r->from[i].principals, false);
        if (all)
            return KEY_PRINCIPAL;
    }
    if (r->to_present && r->n_to > 0) {
        bool all = true;
        for (size_t i = 0; i < r->n_to && all; i++)
            all = indexable(&r->to[i].paths, true);
        if (all)
            return KEY_PATH;
    }
    return KEY_NONE;
}

/* Emits `"key", {exact...}, {prefixes...}` for rule(). */
static void emit_index_args(compiler *c, const policy_rule *r, index_key key)
{
    if (key == KEY_NONE) {
        put(c, "nil, nil, nil");
        return;
    }
    size_t n_alt = key == KEY_PRINCIPAL ? r->n_from : r->n_to;
    for (int pass = 0; pass < 2; pass++) {
        put(c, pass == 0 ? (key == KEY_PRINCIPAL ? "\"principal\", {" : "\"path\", {") : ", {");
        const char *sep = "";
        for (size_t a = 0; a < n_alt; a++) {
            const policy_matches *m = key == KEY_PRINCIPAL ? &r->from[a].principals : &r->to[a].paths;
            for (size_t i = 0; i < m->n; i++) {
                const policy_match *x = &m->v[i];
                size_t len = x->len;
                if (x->kind == POLICY_MATCH_TEMPLATE) /* the literal text before the first '{' */
                    len = (size_t)((const char *)memchr(x->value, '{', x->len) - x->value);
                bool is_exact = x->kind == POLICY_MATCH_EXACT;
                if ((pass == 0) != is_exact)
                    continue;
                put(c, sep);
                put_lstr(c, x->value, len);
                sep = ", ";
            }
        }
        put(c, "}");
    }
}

static int emit_rule(compiler *c, const policy_authz *p, size_t pi, size_t ri)
{
    const policy_rule *r = &p->rules[ri];
    int rc = 0;
    char field[96];
    size_t n_plans = r->n_from * SRC_FIELDS + r->n_to * OP_FIELDS + r->n_when * 2;
    field_plan *plans = calloc(n_plans ? n_plans : 1, sizeof(*plans));
    if (plans == NULL)
        return WARD_ENOMEM;
    unsigned *cond_k = calloc(r->n_when ? r->n_when : 1, sizeof(unsigned));
    if (cond_k == NULL) {
        free(plans);
        return WARD_ENOMEM;
    }

    snprintf(field, sizeof(field), "%s rules[%zu]", p->id, ri);
    put_pos_comment(c, field, &r->pos);
    /* K slots first, so the function body only reads them */
    size_t pl = 0;
    for (size_t a = 0; a < r->n_from; a++)
        for (int f = 0; f < SRC_FIELDS; f++)
            WARD_TRY(plan_field(c, source_field(&r->from[a], f), &plans[pl++]));
    for (size_t a = 0; a < r->n_to; a++)
        for (int f = 0; f < OP_FIELDS; f++)
            WARD_TRY(plan_field(c, op_field(&r->to[a], f), &plans[pl++]));
    for (size_t w = 0; w < r->n_when; w++) {
        const policy_condition *cd = &r->when[w];
        if (cd->is_lua) {
            cond_k[w] = ++c->next_k;
            putf(c, "K[%u] = condition(", cond_k[w]);
            put_cstr(c, cd->lua);
            snprintf(field, sizeof(field), "%s:%d", cd->pos.file ? cd->pos.file : "?", cd->pos.line);
            put(c, ", ");
            put_cstr(c, field);
            put(c, ")\n");
            pl += 2;
        } else {
            WARD_TRY(plan_field(c, &cd->values, &plans[pl++]));
            WARD_TRY(plan_field(c, &cd->not_values, &plans[pl++]));
        }
    }

    index_key key = choose_key(r);
    putf(c, "rule(%zu, %zu, ", pi + 1, ri);
    emit_index_args(c, r, key);
    put(c, ", function(q, ex)\n  local v, ok\n");
    pl = 0;
    if (r->from_present) {
        put(c, "  ok = false\n");
        for (size_t a = 0; a < r->n_from; a++) {
            putf(c, a ? "  if not ok then repeat -- from[%zu]\n" : "  repeat -- from[%zu]\n", a);
            for (int f = 0; f < SRC_FIELDS; f++) {
                snprintf(field, sizeof(field), "from[%zu].%s", a, source_names[f]);
                if (source_field(&r->from[a], f)->present)
                    use(c, source_slots[f]);
                emit_check(c, "    ", source_vars[f], source_field(&r->from[a], f), &plans[pl++],
                           f % 2 == 1, field, "break");
            }
            put(c, a ? "    ok = true\n  until true end\n" : "    ok = true\n  until true\n");
        }
        put(c, "  if not ok then return false end\n");
    }
    if (r->to_present) {
        put(c, "  ok = false\n");
        for (size_t a = 0; a < r->n_to; a++) {
            const policy_operation *o = &r->to[a];
            putf(c, a ? "  if not ok then repeat -- to[%zu]\n" : "  repeat -- to[%zu]\n", a);
            for (int f = 0; f < OP_FIELDS; f++) {
                snprintf(field, sizeof(field), "to[%zu].%s", a, op_names[f]);
                if (op_field(o, f)->present)
                    use(c, op_slots[f]);
                emit_check(c, "    ", op_vars[f], op_field(o, f), &plans[pl++], f % 2 == 1, field,
                           "break");
            }
            if (o->ports.present || o->not_ports.present)
                use(c, POLICY_SLOT_DESTINATION_PORT);
            snprintf(field, sizeof(field), "to[%zu].ports", a);
            emit_ports_check(c, "    ", "q[DESTINATION_PORT]", &o->ports, false, field);
            snprintf(field, sizeof(field), "to[%zu].notPorts", a);
            emit_ports_check(c, "    ", "q[DESTINATION_PORT]", &o->not_ports, true, field);
            put(c, a ? "    ok = true\n  until true end\n" : "    ok = true\n  until true\n");
        }
        put(c, "  if not ok then return false end\n");
    }
    for (size_t w = 0; w < r->n_when; w++) {
        const policy_condition *cd = &r->when[w];
        if (cd->is_lua) {
            c->uses |= (1u << POLICY_SLOT_COUNT) - 2u; /* req is the whole request */
            snprintf(field, sizeof(field), "when[%zu].lua", w);
            putf(c, "  if not lua_cond(K[%u], q, ", cond_k[w]);
            put_cstr(c, field);
            put(c, ") then\n    if ex then ex[#ex + 1] = ");
            put_cstr(c, field);
            put(c, " end\n    return false\n  end\n");
            pl += 2;
            continue;
        }
        snprintf(field, sizeof(field), "when[%zu].values", w);
        put(c, "  v = ");
        put_attr_var(c, cd);
        put(c, "\n");
        emit_check(c, "  ", NULL, &cd->values, &plans[pl++], false, field, "return false");
        snprintf(field, sizeof(field), "when[%zu].notValues", w);
        emit_check(c, "  ", NULL, &cd->not_values, &plans[pl++], true, field, "return false");
    }
    put(c, "  return true\nend)\n");
    rc = c->rc;
fail:
    free_plans(plans, n_plans);
    free(plans);
    free(cond_k);
    return rc;
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

static void emit_policy(compiler *c, const policy_authz *p)
{
    put(c, "\n");
    put_pos_comment(c, p->id, &p->pos);
    put(c, "policy{id = ");
    put_cstr(c, p->id);
    putf(c, ", action = \"%s\", dry = %s", action_name(p->action), p->dry_run ? "true" : "false");
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
    char src[64];
    snprintf(src, sizeof(src), ":%d", p->pos.line);
    put(c, ", src = ");
    ward_buf tmp;
    ward_buf_init(&tmp);
    if (ward_buf_puts(&tmp, p->pos.file ? p->pos.file : "?") < 0 || ward_buf_puts(&tmp, src) < 0)
        c->rc = WARD_ENOMEM;
    else
        put_lstr(c, tmp.ptr, tmp.len);
    ward_buf_dispose(&tmp);
    put(c, "}\n");
}

int policy_set_compile(const policy_set *set, const policy_compile_opts *opts, ward_buf *out,
                       ward_err *err)
{
    compiler c = {.out = out};
    const char *only = opts ? opts->only_service : NULL;
    size_t n = policy_set_count(set);

    put(&c, "-- Ward policy bundle, compiled from ward/v1 policies. Do not edit: recompile.\n");
    put(&c, "-- revision: ");
    put_comment_text(&c, policy_set_revision(set));
    put(&c, "\n");
    put(&c, "-- request slots (see policy_slot in policy/policy.h)\n");
    for (int i = 1; i < POLICY_SLOT_COUNT; i++)
        putf(&c, "local %s <const> = %d\n", slot_names[i], i);
    if (c.rc == 0 && ward_buf_append(out, policy_prelude_start,
                                     (size_t)(policy_prelude_end - policy_prelude_start)) < 0)
        c.rc = WARD_ENOMEM;

    size_t pi = 0;
    for (size_t i = 0; i < n && c.rc == 0; i++) {
        const policy_authz *p = policy_set_get(set, i);
        if (!selects(p, only))
            continue;
        emit_policy(&c, p);
        for (size_t r = 0; r < p->n_rules && c.rc == 0; r++) {
            int rc = emit_rule(&c, p, pi, r);
            if (rc < 0)
                c.rc = rc;
        }
        pi++;
    }
    put(&c, "\n-- ---- end of generated policies ----\n");
    putf(&c, "DEFAULT_ALLOW = %s\nbuild()\n", opts && opts->default_allow ? "true" : "false");
    /* the rule indexes read these three whatever the rules say */
    use(&c, POLICY_SLOT_SOURCE_PRINCIPAL);
    use(&c, POLICY_SLOT_DESTINATION_SERVICE);
    use(&c, POLICY_SLOT_PATH);
    putf(&c, "return {decide = decide, explain = explain, uses = %u, revision = ", c.uses);
    put_cstr(&c, policy_set_revision(set));
    put(&c, "}\n");
    if (c.rc < 0)
        ward_err_set(err, "compiling policies: %s", ward_strerror(c.rc));
    return c.rc;
}
