/* load.c - the policy set: loading buffers, files and folders, duplicate ids and hosts, the revision hash */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "common/ward.h"
#include "policy/policy.h"
#include "policy/policy_int.h"

#define MAX_FOLDER_DEPTH 32

struct policy_set {
    policy_entry *items; /* in load order */
    size_t n, cap;
    char **files; /* every name positions point at */
    size_t n_files, cap_files;
    size_t n_rules; /* and http entries of Routes */
    size_t *ids; /* open addressing over items by id: index + 1, 0 = empty */
    size_t ids_cap;
    policy_route_entry *routes; /* in load order */
    size_t n_routes, cap_routes;
    ward_diag warnings;
    EVP_MD_CTX *sha; /* over every loaded (name, bytes), in order */
    char revision[2 * 32 + 1];
};

static int update_revision(policy_set *set)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *tmp = EVP_MD_CTX_new();
    if (tmp == NULL)
        return WARD_ENOMEM;
    int ok = EVP_MD_CTX_copy_ex(tmp, set->sha) && EVP_DigestFinal_ex(tmp, md, &mdlen);
    EVP_MD_CTX_free(tmp);
    if (!ok || mdlen != 32)
        return WARD_ENOMEM;
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < mdlen; i++) {
        set->revision[2 * i] = hex[md[i] >> 4];
        set->revision[2 * i + 1] = hex[md[i] & 15];
    }
    set->revision[2 * mdlen] = '\0';
    return 0;
}

int policy_set_new(policy_set **out)
{
    int rc = 0;
    policy_set *set = calloc(1, sizeof(*set));
    if (set == NULL)
        return WARD_ENOMEM;
    ward_diag_init(&set->warnings);
    set->warnings.max = 1000;
    set->sha = EVP_MD_CTX_new();
    if (set->sha == NULL || !EVP_DigestInit_ex(set->sha, EVP_sha256(), NULL)) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    WARD_TRY(update_revision(set));
    *out = set;
    return 0;
fail:
    policy_set_free(set);
    return rc;
}

void policy_set_free(policy_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->n; i++)
        policy_authz_free(set->items[i].authz);
    free(set->items);
    for (size_t i = 0; i < set->n_routes; i++)
        policy_route_free(set->routes[i].route);
    free(set->routes);
    ward_diag_dispose(&set->warnings);
    for (size_t i = 0; i < set->n_files; i++)
        free(set->files[i]);
    free(set->files);
    free(set->ids);
    EVP_MD_CTX_free(set->sha);
    free(set);
}

size_t policy_set_count(const policy_set *set)
{
    return set ? set->n : 0;
}

const policy_authz *policy_set_get(const policy_set *set, size_t i)
{
    return set && i < set->n ? set->items[i].authz : NULL;
}

size_t policy_set_route_count(const policy_set *set)
{
    return set ? set->n_routes : 0;
}

const policy_route *policy_set_route(const policy_set *set, size_t i)
{
    return set && i < set->n_routes ? set->routes[i].route : NULL;
}

const ward_diag *policy_set_warnings(const policy_set *set)
{
    static const ward_diag none = {NULL, 0, 0, 0};
    return set ? &set->warnings : &none;
}

const char *policy_set_revision(const policy_set *set)
{
    return set ? set->revision : NULL;
}

/* ---- ids ------------------------------------------------------------------- */

static size_t id_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)h;
}

/* The entry already holding id, or NULL. */
static const policy_entry *id_find(const policy_set *set, const char *id)
{
    if (set->ids_cap == 0)
        return NULL;
    size_t mask = set->ids_cap - 1;
    for (size_t i = id_hash(id) & mask;; i = (i + 1) & mask) {
        size_t slot = set->ids[i];
        if (slot == 0)
            return NULL;
        if (strcmp(set->items[slot - 1].authz->id, id) == 0)
            return &set->items[slot - 1];
    }
}

static void id_put(policy_set *set, size_t idx)
{
    size_t mask = set->ids_cap - 1;
    size_t i = id_hash(set->items[idx].authz->id) & mask;
    while (set->ids[i] != 0)
        i = (i + 1) & mask;
    set->ids[i] = idx + 1;
}

/* Takes ownership of a. */
static int set_add(policy_set *set, policy_authz *a, policy_pos name_pos)
{
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 16;
        policy_entry *ni = realloc(set->items, cap * sizeof(*ni));
        if (ni == NULL)
            goto nomem;
        set->items = ni;
        set->cap = cap;
    }
    if ((set->n + 1) * 2 > set->ids_cap) {
        size_t cap = set->ids_cap ? set->ids_cap * 2 : 64;
        size_t *ids = calloc(cap, sizeof(*ids));
        if (ids == NULL)
            goto nomem;
        free(set->ids);
        set->ids = ids;
        set->ids_cap = cap;
        for (size_t i = 0; i < set->n; i++)
            id_put(set, i);
    }
    set->items[set->n] = (policy_entry){a, name_pos};
    id_put(set, set->n);
    set->n++;
    set->n_rules += a->n_rules;
    return 0;
nomem:
    policy_authz_free(a);
    return WARD_ENOMEM;
}

/* ---- routes: ids and hosts are unique across the set (a linear scan: a few
 * hundred Routes at most in practice; the engine indexes hosts itself) ---- */

/* Reports a Route whose id or one of whose hosts an earlier Route already
 * has; returns true if it may be added. */
static bool route_unique(policy_set *set, const policy_route *r, policy_pos name_pos,
                         ward_diag *diag)
{
    bool ok = true;
    for (size_t i = 0; i < set->n_routes; i++) {
        const policy_route_entry *x = &set->routes[i];
        if (strcmp(x->route->id, r->id) == 0) {
            ward_diag_add(diag, name_pos.file, name_pos.line, name_pos.col,
                          "metadata.name: duplicate route \"%s\" (first defined at %s:%d:%d)",
                          r->id, x->name_pos.file, x->name_pos.line, x->name_pos.col);
            ok = false;
        }
        for (size_t h = 0; h < r->n_hosts; h++) {
            for (size_t k = 0; k < x->route->n_hosts; k++) {
                if (strcmp(r->hosts[h], x->route->hosts[k]) != 0)
                    continue;
                const policy_pos *at = &r->host_pos[h], *first = &x->route->host_pos[k];
                ward_diag_add(diag, at->file, at->line, at->col,
                              "spec.hosts[%zu]: host \"%s\" is already routed by %s (%s:%d:%d); "
                              "one Route per host",
                              h, r->hosts[h], x->route->id, first->file, first->line, first->col);
                ok = false;
            }
        }
    }
    return ok;
}

/* Takes ownership of r. */
static int route_add(policy_set *set, policy_route *r, policy_pos name_pos)
{
    if (set->n_routes == set->cap_routes) {
        size_t cap = set->cap_routes ? set->cap_routes * 2 : 8;
        policy_route_entry *v = realloc(set->routes, cap * sizeof(*v));
        if (v == NULL) {
            policy_route_free(r);
            return WARD_ENOMEM;
        }
        set->routes = v;
        set->cap_routes = cap;
    }
    set->routes[set->n_routes++] = (policy_route_entry){r, name_pos};
    set->n_rules += r->n_http;
    return 0;
}

/* ---- buffers ----------------------------------------------------------------- */

static const char *own_name(policy_set *set, const char *name)
{
    if (set->n_files == set->cap_files) {
        size_t cap = set->cap_files ? set->cap_files * 2 : 8;
        char **nf = realloc(set->files, cap * sizeof(*nf));
        if (nf == NULL)
            return NULL;
        set->files = nf;
        set->cap_files = cap;
    }
    char *copy = strdup(name);
    if (copy == NULL)
        return NULL;
    set->files[set->n_files++] = copy;
    return copy;
}

static int hash_input(policy_set *set, const char *name, const char *data, size_t len)
{
    /* name, NUL, 8-byte big-endian length, bytes: unambiguous framing */
    unsigned char blen[8];
    for (int i = 0; i < 8; i++)
        blen[i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    if (!EVP_DigestUpdate(set->sha, name, strlen(name) + 1) ||
        !EVP_DigestUpdate(set->sha, blen, sizeof(blen)) ||
        (len > 0 && !EVP_DigestUpdate(set->sha, data, len)))
        return WARD_ENOMEM;
    return update_revision(set);
}

static int load_buffer(policy_set *set, const char *name, const char *data, size_t len,
                       ward_diag *diag)
{
    int rc = 0;
    bool bad = false;
    ward_docs docs = {NULL, 0};
    policy_authz *a = NULL;
    ward_diag warn; /* of the document being validated */
    ward_diag_init(&warn);
    warn.max = 1000;
    const char *file = own_name(set, name ? name : "<input>");
    if (file == NULL)
        return WARD_ENOMEM;
    WARD_TRY(hash_input(set, file, data, len));

    rc = ward_docs_parse(file, data, len, &docs, diag);
    if (rc == WARD_ENOMEM)
        goto fail;
    if (rc < 0)
        bad = true;
    rc = 0;
    for (size_t i = 0; i < docs.n; i++) {
        policy_doc doc;
        ward_diag_dispose(&warn);
        WARD_TRY(policy_doc_validate(docs.docs[i], file, POLICY_MAX_RULES - set->n_rules, diag,
                                     &warn, &doc));
        if (doc.kind == POLICY_DOC_INVALID)
            bad = true;
        if (doc.kind == POLICY_DOC_ROUTE) {
            if (!route_unique(set, doc.route, doc.name_pos, diag)) {
                policy_route_free(doc.route);
                bad = true;
                continue;
            }
            WARD_TRY(route_add(set, doc.route, doc.name_pos));
            for (size_t k = 0; k < warn.n; k++) /* the warnings of Routes the set keeps */
                ward_diag_add(&set->warnings, NULL, 0, 0, "%s", warn.msgs[k]);
            continue;
        }
        if (doc.kind != POLICY_DOC_AUTHZ)
            continue;
        a = doc.authz;
        policy_pos name_pos = doc.name_pos;
        const policy_entry *first = id_find(set, a->id);
        if (first != NULL) {
            ward_diag_add(diag, file, name_pos.line, name_pos.col,
                          "metadata.name: duplicate policy \"%s\" (first defined at %s:%d:%d)",
                          a->id, first->name_pos.file, first->name_pos.line,
                          first->name_pos.col);
            policy_authz_free(a);
            a = NULL;
            bad = true;
            continue;
        }
        policy_authz *take = a;
        a = NULL;
        WARD_TRY(set_add(set, take, name_pos));
    }
    ward_docs_dispose(&docs);
    ward_diag_dispose(&warn);
    return bad ? WARD_EPOLICY : 0;
fail:
    policy_authz_free(a);
    ward_docs_dispose(&docs);
    ward_diag_dispose(&warn);
    return rc;
}

int policy_set_load_buffer(policy_set *set, const char *name, const char *data, size_t len,
                           ward_diag *diag)
{
    if (set == NULL || (data == NULL && len > 0))
        return WARD_EINVAL;
    ward_diag local;
    ward_diag_init(&local);
    int rc = load_buffer(set, name, data, len, diag ? diag : &local);
    ward_diag_dispose(&local);
    return rc;
}

/* ---- files and folders ---------------------------------------------------------- */

typedef struct visit {
    dev_t dev;
    ino_t ino;
    const struct visit *up;
    int depth;
} visit;

static bool policy_file_name(const char *name)
{
    size_t n = strlen(name);
    static const char *const exts[] = {".yaml", ".yml", ".json"};
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        size_t el = strlen(exts[i]);
        if (n > el && strcmp(name + n - el, exts[i]) == 0)
            return true;
    }
    return false;
}

static int load_file(policy_set *set, const char *path, ward_diag *diag, bool *bad)
{
    char *data = NULL;
    size_t len = 0;
    ward_err err;
    ward_err_clear(&err);
    int rc = ward_file_read(path, 0, &data, &len, &err);
    if (rc == WARD_ENOMEM)
        return rc;
    if (rc < 0) {
        if (err.msg[0] != '\0')
            ward_diag_add(diag, NULL, 0, 0, "%s", err.msg);
        else
            ward_diag_add(diag, path, 0, 0, "cannot read: %s", ward_strerror(rc));
        *bad = true;
        return 0;
    }
    rc = load_buffer(set, path, data, len, diag);
    free(data);
    if (rc == WARD_EPOLICY) {
        *bad = true;
        rc = 0;
    }
    return rc;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_path(policy_set *set, const char *path, bool named, const visit *up,
                     ward_diag *diag, bool *bad);

static int load_dir(policy_set *set, const char *dir, const struct stat *st, const visit *up,
                    ward_diag *diag, bool *bad)
{
    int rc = 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    char *child = NULL;
    DIR *d = NULL;
    for (const visit *v = up; v != NULL; v = v->up) {
        if (v->dev == st->st_dev && v->ino == st->st_ino) {
            ward_diag_add(diag, dir, 0, 0, "folder loop (already being loaded), skipped");
            *bad = true;
            return 0;
        }
    }
    visit here = {st->st_dev, st->st_ino, up, up ? up->depth + 1 : 0};
    if (here.depth > MAX_FOLDER_DEPTH) {
        ward_diag_add(diag, dir, 0, 0, "folders nested too deep (limit %d)", MAX_FOLDER_DEPTH);
        *bad = true;
        return 0;
    }
    d = opendir(dir);
    if (d == NULL) {
        ward_diag_add(diag, dir, 0, 0, "cannot open folder: %s", strerror(errno));
        *bad = true;
        return 0;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue; /* hidden files, ".", ".." (and Kubernetes' ..data links) */
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nn = realloc(names, ncap * sizeof(*nn));
            if (nn == NULL) {
                rc = WARD_ENOMEM;
                goto fail;
            }
            names = nn;
            cap = ncap;
        }
        if ((names[n] = strdup(de->d_name)) == NULL) {
            rc = WARD_ENOMEM;
            goto fail;
        }
        n++;
    }
    closedir(d);
    d = NULL;
    if (n > 1)
        qsort(names, n, sizeof(*names), name_cmp);
    size_t dl = strlen(dir);
    bool slash = dl > 0 && dir[dl - 1] == '/';
    for (size_t i = 0; i < n; i++) {
        size_t cl = dl + 1 + strlen(names[i]) + 1;
        child = malloc(cl);
        if (child == NULL) {
            rc = WARD_ENOMEM;
            goto fail;
        }
        snprintf(child, cl, "%s%s%s", dir, slash ? "" : "/", names[i]);
        struct stat cst;
        if (stat(child, &cst) != 0) {
            if (policy_file_name(names[i])) {
                ward_diag_add(diag, child, 0, 0, "cannot access: %s", strerror(errno));
                *bad = true;
            }
        } else if (S_ISDIR(cst.st_mode)) {
            if (strcmp(names[i], "tests") != 0)
                WARD_TRY(load_path(set, child, false, &here, diag, bad));
        } else if (S_ISREG(cst.st_mode) && policy_file_name(names[i])) {
            WARD_TRY(load_file(set, child, diag, bad));
        }
        free(child);
        child = NULL;
    }
fail:
    if (d != NULL)
        closedir(d);
    free(child);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* `named`: the user named this path (load it whatever its extension). */
static int load_path(policy_set *set, const char *path, bool named, const visit *up,
                     ward_diag *diag, bool *bad)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        ward_diag_add(diag, path, 0, 0, "cannot access: %s", strerror(errno));
        *bad = true;
        return 0;
    }
    if (S_ISDIR(st.st_mode))
        return load_dir(set, path, &st, up, diag, bad);
    if (S_ISREG(st.st_mode))
        return load_file(set, path, diag, bad);
    if (named) {
        ward_diag_add(diag, path, 0, 0, "not a regular file or folder");
        *bad = true;
    }
    return 0;
}

int policy_set_load_paths(policy_set *set, const char *const *paths, size_t n, ward_diag *diag)
{
    if (set == NULL || (paths == NULL && n > 0))
        return WARD_EINVAL;
    ward_diag local;
    ward_diag_init(&local);
    bool bad = false;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (paths[i] == NULL || paths[i][0] == '\0') {
            ward_diag_add(diag ? diag : &local, NULL, 0, 0, "empty policy path");
            bad = true;
            continue;
        }
        rc = load_path(set, paths[i], true, NULL, diag ? diag : &local, &bad);
    }
    ward_diag_dispose(&local);
    if (rc < 0)
        return rc;
    return bad ? WARD_EPOLICY : 0;
}

/* ---- destination services ---------------------------------------------------------- */

/* Does the Route name any service (a host, a destination, a mirror) that
 * known() accepts? */
static bool route_concerns(const policy_route *r, policy_service_known_cb known, void *data)
{
    for (size_t i = 0; i < r->n_hosts; i++)
        if (known(data, r->hosts[i]))
            return true;
    for (size_t j = 0; j < r->n_http; j++) {
        const policy_http_route *e = &r->http[j];
        for (size_t k = 0; k < e->n_destinations; k++)
            if (known(data, e->destinations[k].service))
                return true;
        if (e->mirror_service != NULL && known(data, e->mirror_service))
            return true;
    }
    return false;
}

int policy_set_check_services(const policy_set *set, policy_service_known_cb known, void *data,
                              ward_diag *diag)
{
    int rc = 0;
    for (size_t i = 0; set != NULL && i < set->n_routes; i++) {
        const policy_route *r = set->routes[i].route;
        if (!route_concerns(r, known, data))
            continue; /* the Route of services this caller never reaches */
        for (size_t j = 0; j < r->n_http; j++) {
            const policy_http_route *e = &r->http[j];
            for (size_t k = 0; k < e->n_destinations; k++) {
                const policy_destination *d = &e->destinations[k];
                if (known(data, d->service))
                    continue;
                ward_diag_add(diag, d->pos.file, d->pos.line, d->pos.col,
                              "spec.http[%zu].destinations[%zu].service: unknown service \"%s\" "
                              "(route %s; no upstream of that name)",
                              j, k, d->service, r->id);
                rc = WARD_EPOLICY;
            }
            if (e->mirror_service != NULL && !known(data, e->mirror_service)) {
                ward_diag_add(diag, e->mirror_pos.file, e->mirror_pos.line, e->mirror_pos.col,
                              "spec.http[%zu].mirror.service: unknown service \"%s\" (route %s; "
                              "no upstream of that name)",
                              j, e->mirror_service, r->id);
                rc = WARD_EPOLICY;
            }
        }
    }
    return rc;
}
