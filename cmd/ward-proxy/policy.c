/* policy.c - ward-proxy's policy set: load, compile, watch the files, reload without dropping requests */
#include "cmd/ward-proxy/wp.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RELOAD_SETTLE_MS 200  /* editors write in several steps: wait for them to finish */
#define RELOAD_MAX_WAIT_MS 1000 /* ... but a folder that never settles cannot hold a change back */

static bool upstream_known(void *data, const char *service)
{
    const proxy_config *cfg = data;
    for (size_t i = 0; i < cfg->n_upstreams; i++)
        if (strcmp(cfg->upstreams[i].service, service) == 0)
            return true;
    return false;
}

/* Route warnings, and destinations that are no upstream of ours: a policy set
 * is shared by the mesh, so routes this proxy never serves may name services
 * it does not know; a request routed to one gets 503. */
void wp_policy_route_problems(const proxy_config *cfg, const policy_set *set,
                              void (*report)(const char *msg))
{
    const ward_diag *w = policy_set_warnings(set);
    for (size_t i = 0; i < w->n; i++)
        report(w->msgs[i]);
    ward_diag d;
    ward_diag_init(&d);
    d.max = 100;
    policy_set_check_services(set, upstream_known, (void *)cfg, &d);
    for (size_t i = 0; i < d.n; i++)
        report(d.msgs[i]);
    ward_diag_dispose(&d);
}

static void log_problem(const char *msg)
{
    wp_log("policy: %s%s", strstr(msg, "warning:") ? "" : "warning: ", msg);
}

static void log_route_problems(wp_proxy *px, const policy_set *set)
{
    wp_policy_route_problems(px->cfg, set, log_problem);
}

/* Loads and compiles the configured paths. On failure every problem is logged.
 * names gets the policies' "ns/name" (for the admin endpoint). */
static int build_bundle(wp_proxy *px, authz_bundle **out, char ***names, size_t *n_names,
                        ward_err *err)
{
    const proxy_config *cfg = px->cfg;
    policy_set *set = NULL;
    ward_diag diag;
    ward_diag_init(&diag);
    diag.max = 100;
    int rc = policy_set_new(&set);
    if (rc == 0)
        rc = policy_set_load_paths(set, (const char *const *)cfg->policy.paths, cfg->policy.n_paths,
                                   &diag);
    if (rc == 0 && diag.n > 0)
        rc = WARD_EPOLICY;
    if (rc < 0) {
        for (size_t i = 0; i < diag.n; i++)
            wp_log("policy: %s", diag.msgs[i]);
        ward_err_set(err, "%s", diag.n > 0 ? diag.msgs[0] : ward_strerror(rc));
        goto done;
    }
    log_route_problems(px, set);
    authz_options opts = {.default_allow = cfg->policy.default_allow};
    rc = authz_bundle_new(set, &opts, out, err);
    if (rc < 0)
        goto done;
    size_t n = policy_set_count(set);
    *names = calloc(n ? n : 1, sizeof(**names));
    for (size_t i = 0; *names != NULL && i < n; i++)
        (*names)[i] = strdup(policy_set_get(set, i)->id);
    *n_names = *names != NULL ? n : 0;
done:
    ward_diag_dispose(&diag);
    policy_set_free(set);
    return rc;
}

static void names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The new set is in force: workers take it between requests, the admin endpoint shows it. */
static void publish(wp_proxy *px, authz_bundle *b, char **names, size_t n)
{
    proxy_admin_state_policy_loaded(px->admin_state, authz_bundle_revision(b),
                                    (const char *const *)names, n);
    pthread_mutex_lock(&px->lock);
    authz_bundle *old = px->bundle;
    px->bundle = b;
    px->policy_gen++;
    pthread_mutex_unlock(&px->lock);
    if (old != NULL)
        authz_bundle_unref(old);
}

int wp_policy_load(wp_proxy *px, ward_err *err)
{
    authz_bundle *b = NULL;
    char **names = NULL;
    size_t n = 0;
    int rc = build_bundle(px, &b, &names, &n, err);
    if (rc < 0)
        return rc;
    publish(px, b, names, n);
    names_free(names, n);
    wp_log("policy: revision %.12s loaded from %zu path(s)", authz_bundle_revision(b),
           px->cfg->policy.n_paths);
    return 0;
}

void wp_policy_reload(wp_proxy *px, const char *why)
{
    if (px->stopping)
        return;
    authz_bundle *b = NULL;
    char **names = NULL;
    size_t n = 0;
    ward_err err;
    ward_err_clear(&err);
    if (build_bundle(px, &b, &names, &n, &err) < 0) {
        px->reload_failures++;
        proxy_admin_state_policy_failed(px->admin_state, err.msg);
        wp_log("policy: reload (%s) failed, keeping revision %.12s: %s", why,
               authz_bundle_revision(px->bundle), err.msg);
        return;
    }
    if (strcmp(authz_bundle_revision(b), authz_bundle_revision(px->bundle)) == 0) {
        authz_bundle_unref(b); /* nothing changed (a touch, or an editor's temporary file) */
        names_free(names, n);
        return;
    }
    px->reloads++;
    wp_log("policy: reload (%s): revision %.12s -> %.12s", why, authz_bundle_revision(px->bundle),
           authz_bundle_revision(b));
    publish(px, b, names, n);
    names_free(names, n);
    wp_workers_notify(px);
}

static void on_settled(uv_timer_t *t)
{
    wp_policy_reload(t->data, "file changed");
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void on_change(uv_fs_event_t *h, const char *filename, int events, int status)
{
    wp_proxy *px = h->data;
    (void)events;
    if (status < 0)
        return;
    /* only what policy loading reads: the watched file itself, or policy files of a folder */
    const char *only = px->watch_names[h - px->watches];
    if (filename != NULL &&
        (only != NULL ? strcmp(filename, only) != 0
                      : !(has_suffix(filename, ".yaml") || has_suffix(filename, ".yml") ||
                          has_suffix(filename, ".json"))))
        return;
    uint64_t now = uv_now(px->loop);
    if (!uv_is_active((uv_handle_t *)&px->reload_timer))
        px->reload_first_ms = now;
    else if (now - px->reload_first_ms >= RELOAD_MAX_WAIT_MS)
        return; /* already due soon */
    uint64_t due = RELOAD_SETTLE_MS;
    if (now + due > px->reload_first_ms + RELOAD_MAX_WAIT_MS)
        due = px->reload_first_ms + RELOAD_MAX_WAIT_MS - now;
    uv_timer_start(&px->reload_timer, on_settled, due, 0);
}

/* Watches each policy folder, or the folder of each policy file (an editor
 * that saves by renaming replaces the file, and a watch on the file itself
 * would be lost). */
int wp_policy_watch(wp_proxy *px, ward_err *err)
{
    const proxy_config *cfg = px->cfg;
    uv_timer_init(px->loop, &px->reload_timer);
    px->reload_timer.data = px;
    size_t n = cfg->policy.n_paths ? cfg->policy.n_paths : 1;
    px->watches = calloc(n, sizeof(*px->watches));
    px->watch_names = calloc(n, sizeof(*px->watch_names));
    if (px->watches == NULL || px->watch_names == NULL)
        return WARD_ENOMEM;
    for (size_t i = 0; i < cfg->policy.n_paths; i++) {
        const char *p = cfg->policy.paths[i];
        struct stat st;
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s", p);
        if (stat(p, &st) == 0 && !S_ISDIR(st.st_mode)) {
            char tmp[4096];
            snprintf(tmp, sizeof(tmp), "%s", p);
            snprintf(dir, sizeof(dir), "%s", dirname(tmp));
            snprintf(tmp, sizeof(tmp), "%s", p);
            px->watch_names[px->n_watches] = strdup(basename(tmp));
        }
        uv_fs_event_t *w = &px->watches[px->n_watches];
        uv_fs_event_init(px->loop, w);
        w->data = px;
        int rc = uv_fs_event_start(w, on_change, dir, 0);
        if (rc < 0) {
            uv_close((uv_handle_t *)w, NULL);
            ward_err_set(err, "cannot watch %s: %s", dir, uv_strerror(rc));
            return WARD_EIO;
        }
        px->n_watches++;
    }
    return 0;
}

void wp_policy_unwatch(wp_proxy *px)
{
    for (size_t i = 0; i < px->n_watches; i++) {
        uv_close((uv_handle_t *)&px->watches[i], NULL);
        free(px->watch_names[i]);
    }
    free(px->watch_names);
    px->watch_names = NULL;
    if (!uv_is_closing((uv_handle_t *)&px->reload_timer))
        uv_close((uv_handle_t *)&px->reload_timer, NULL);
}
