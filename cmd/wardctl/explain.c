/* explain.c - print a decision, its explain trace and its route for humans (wardctl policy explain) */
#include <cJSON.h>
#include <stdio.h>
#include <string.h>

#include "cmd/wardctl/wardctl.h"

static const char *json_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A value of any type, as short text (strings bare, the rest as JSON). */
static void print_value(FILE *f, const cJSON *v)
{
    if (cJSON_IsString(v)) {
        fputs(v->valuestring, f);
        return;
    }
    char *s = cJSON_PrintUnformatted(v);
    fputs(s != NULL ? s : "?", f);
    cJSON_free(s);
}

/* "failed" is a list of field paths (or anything else the engine says). */
static void print_failed(FILE *f, const cJSON *failed)
{
    if (cJSON_IsArray(failed) && cJSON_GetArraySize(failed) > 0) {
        const cJSON *it;
        const char *sep = "";
        fputs("no match: ", f);
        cJSON_ArrayForEach(it, failed)
        {
            fputs(sep, f);
            print_value(f, it);
            sep = ", ";
        }
    } else if (failed != NULL && !cJSON_IsArray(failed)) {
        fputs("no match: ", f);
        print_value(f, failed);
    } else {
        fputs("no match", f);
    }
}

typedef struct explain_ctx {
    FILE *f;
    const char *indent;
    const authz_decision *d;
} explain_ctx;

static bool same_rule(const char *policy, int rule, const char *id, int idx)
{
    return policy != NULL && id != NULL && strcmp(policy, id) == 0 && rule == idx;
}

static void print_rule(const explain_ctx *x, const char *policy_id, const cJSON *r)
{
    FILE *f = x->f;
    const cJSON *idx = cJSON_GetObjectItemCaseSensitive(r, "rule");
    const cJSON *matched = cJSON_GetObjectItemCaseSensitive(r, "matched");
    int i = cJSON_IsNumber(idx) ? idx->valueint : -1;
    fprintf(f, "%s    rule ", x->indent);
    if (i >= 0)
        fprintf(f, "%d", i);
    else
        fputs("?", f);
    fputs(": ", f);
    if (cJSON_IsTrue(matched))
        fputs("matched", f);
    else
        print_failed(f, cJSON_GetObjectItemCaseSensitive(r, "failed"));
    if (same_rule(x->d->policy, x->d->rule, policy_id, i))
        fputs("  <- decides", f);
    else if (x->d->has_dry_run && same_rule(x->d->dry_run_policy, x->d->dry_run_rule, policy_id, i))
        fputs("  <- decides the dry run", f);
    fputc('\n', f);
}

static void print_policy(const explain_ctx *x, const cJSON *p)
{
    FILE *f = x->f;
    const char *id = json_str(p, "policy");
    const char *action = json_str(p, "action");
    const char *mode = json_str(p, "mode");
    const char *src = json_str(p, "source");
    fprintf(f, "%s  policy %s (%s, %s)", x->indent, id ? id : "?", action ? action : "?",
            mode ? mode : "enforce");
    if (src != NULL)
        fprintf(f, "  [%s]", src);
    fputc('\n', f);
    const cJSON *rules = cJSON_GetObjectItemCaseSensitive(p, "rules");
    if (!cJSON_IsArray(rules) || cJSON_GetArraySize(rules) == 0) {
        fprintf(f, "%s    no rules (matches nothing)\n", x->indent);
        return;
    }
    const cJSON *r;
    cJSON_ArrayForEach(r, rules) print_rule(x, id, r);
}

/* {"route": id, "source", "http": [{index, name, matched, failed?, chosen?}]} */
static void print_route_trace(const explain_ctx *x, const cJSON *r)
{
    FILE *f = x->f;
    const char *src = json_str(r, "source");
    fprintf(f, "%s  route %s (Route for this host)", x->indent, json_str(r, "route") ? json_str(r, "route") : "?");
    if (src != NULL)
        fprintf(f, "  [%s]", src);
    fputc('\n', f);
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(r, "http"))
    {
        const cJSON *idx = cJSON_GetObjectItemCaseSensitive(e, "index");
        const char *name = json_str(e, "name");
        fprintf(f, "%s    http[%d] %s: ", x->indent, cJSON_IsNumber(idx) ? idx->valueint : -1,
                name ? name : "?");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "matched")))
            fputs("matched", f);
        else
            print_failed(f, cJSON_GetObjectItemCaseSensitive(e, "failed"));
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "chosen")))
            fputs("  <- routes", f);
        fputc('\n', f);
    }
}

static void print_trace(const explain_ctx *x)
{
    FILE *f = x->f;
    const char *explain_json = x->d->explain_json;
    if (explain_json == NULL) {
        fprintf(f, "%s  (no explain trace)\n", x->indent);
        return;
    }
    cJSON *root = cJSON_Parse(explain_json);
    if (!cJSON_IsArray(root)) {
        fprintf(f, "%s  trace: %s\n", x->indent, explain_json);
        cJSON_Delete(root);
        return;
    }
    const cJSON *p;
    int policies = 0;
    cJSON_ArrayForEach(p, root) policies += cJSON_GetObjectItemCaseSensitive(p, "route") == NULL;
    if (policies == 0)
        fprintf(f, "%s  no policy selects this workload\n", x->indent);
    cJSON_ArrayForEach(p, root)
    {
        if (cJSON_IsObject(p) && cJSON_GetObjectItemCaseSensitive(p, "route") != NULL) {
            print_route_trace(x, p);
        } else if (cJSON_IsObject(p)) {
            print_policy(x, p);
        } else {
            fprintf(f, "%s  ", x->indent);
            print_value(f, p);
            fputc('\n', f);
        }
    }
    cJSON_Delete(root);
}

static void print_by(FILE *f, const char *policy, int rule)
{
    if (policy != NULL)
        fprintf(f, " by %s rule %d", policy, rule);
}

int wctl_explain_print(FILE *f, const authz_decision *d, const char *label, const char *indent)
{
    explain_ctx x = {f, indent, d};
    fprintf(f, "%s%s\n", indent, label);
    print_trace(&x);
    fprintf(f, "%s  decision: %s", indent, d->decision == AUTHZ_ALLOW ? "allow" : "deny");
    print_by(f, d->policy, d->rule);
    fputc('\n', f);
    if (d->reason != NULL)
        fprintf(f, "%s  reason: %s\n", indent, d->reason);
    if (d->audit)
        fprintf(f, "%s  audit: marked by an AUDIT policy\n", indent);
    if (d->has_dry_run) {
        fprintf(f, "%s  dry-run: would %s", indent,
                d->dry_run_decision == AUTHZ_ALLOW ? "allow" : "deny");
        print_by(f, d->dry_run_policy, d->dry_run_rule);
        fputc('\n', f);
    }
    wctl_route_print(f, d, indent);
    return 0;
}

/* Appends "name " + the attribute (bounded), if present. */
static void put_attr(char **p, size_t *left, const char *name, authz_str s)
{
    if (s.ptr == NULL || *left == 0)
        return;
    int n = snprintf(*p, *left, "%s%.*s", name, (int)(s.len > 200 ? 200 : s.len), s.ptr);
    if (n < 0)
        return;
    size_t used = (size_t)n < *left ? (size_t)n : *left - 1;
    *p += used;
    *left -= used;
}

void wctl_request_summary(const authz_request *req, char *buf, size_t size)
{
    char *p = buf;
    size_t left = size;
    buf[0] = '\0';
    put_attr(&p, &left, "", req->method.ptr ? req->method : (authz_str){"-", 1});
    put_attr(&p, &left, " ", req->path.ptr ? req->path : (authz_str){"-", 1});
    if (req->source_principal.ptr != NULL)
        put_attr(&p, &left, " from ", req->source_principal);
    else if (req->source_ip.ptr != NULL)
        put_attr(&p, &left, " from ", req->source_ip);
    else
        put_attr(&p, &left, " from ", (authz_str){"(no identity)", 13});
    if (req->destination_service.ptr != NULL)
        put_attr(&p, &left, " to ", req->destination_service);
}

void wctl_route_print(FILE *f, const authz_decision *d, const char *indent)
{
    const authz_route *r = d->route;
    if (r == NULL) {
        if (d->explain_json != NULL && strstr(d->explain_json, "{\"route\":") != NULL)
            fprintf(f, "%s  route: no http entry matched (the Host names the upstream)\n", indent);
        return;
    }
    fprintf(f, "%s  route: %s http[%d] %s ->", indent, r->policy, r->index, r->name);
    for (uint32_t i = 0; i < r->n_destinations; i++)
        fprintf(f, "%s %s %u%%", i ? "," : "", r->destinations[i].service,
                (unsigned)r->destinations[i].weight);
    if (r->rewrite_path != NULL)
        fprintf(f, ", path rewritten to %s", r->rewrite_path);
    fputc('\n', f);
}
