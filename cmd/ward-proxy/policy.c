/* policy.c - ward-proxy's policy set: load, compile, watch the files, reload without dropping requests */
#include "cmd/ward-proxy/wp.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RELOAD_SETTLE_MS 200 /* editors write in several steps: wait for them to finish */

/* Loads and compiles the configured paths. On failure every problem is logged. */
static int build_bundle(wp_proxy *px, authz_bundle **out, ward_err *err)
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
    authz_options opts = {.default_allow = cfg->policy.default_allow};
    rc = authz_bundle_new(set, &opts, out, err);
    if (rc < 0)
        goto done;
    /* the admin endpoint shows what is in force */
    size_t n = policy_set_count(set);
    const char **names = calloc(n ? n : 1, sizeof(*names));
    if (names != NULL) {
        for (size_t i = 0; i < n; i++)
            names[i] = policy_set_get(set, i)->id;
        proxy_admin_state_policy_loaded(px->admin_state, authz_bundle_revision(*out), names, n);
        free(names);
    }
done:
    ward_diag_dispose(&diag);
    policy_set_free(set);
    return rc;
}

static void publish(wp_proxy *px, authz_bundle *b)
{
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
    int rc = build_bundle(px, &b, err);
    if (rc < 0)
        return rc;
    publish(px, b);
    wp_log("policy: revision %.12s loaded from %zu path(s)", authz_bundle_revision(b),
           px->cfg->policy.n_paths);
    return 0;
}

void wp_policy_reload(wp_proxy *px, const char *why)
{
    if (px->stopping)
        return;
    authz_bundle *b = NULL;
    ward_err err;
    ward_err_clear(&err);
    if (build_bundle(px, &b, &err) < 0) {
        px->reload_failures++;
        proxy_admin_state_policy_failed(px->admin_state, err.msg);
        wp_log("policy: reload (%s) failed, keeping revision %.12s: %s", why,
               authz_bundle_revision(px->bundle), err.msg);
        return;
    }
    if (strcmp(authz_bundle_revision(b), authz_bundle_revision(px->bundle)) == 0) {
        authz_bundle_unref(b); /* nothing changed (a touch, or an editor's temporary file) */
        return;
    }
    px->reloads++;
    wp_log("policy: reload (%s): revision %.12s -> %.12s", why, authz_bundle_revision(px->bundle),
           authz_bundle_revision(b));
    publish(px, b);
    wp_workers_notify(px);
}

static void on_settled(uv_timer_t *t)
{
    wp_policy_reload(t->data, "file changed");
}

static void on_change(uv_fs_event_t *h, const char *filename, int events, int status)
{
    wp_proxy *px = h->data;
    (void)filename;
    (void)events;
    if (status < 0)
        return;
    uv_timer_start(&px->reload_timer, on_settled, RELOAD_SETTLE_MS, 0);
}

/* Watches each policy folder, or the folder of each policy file (an editor
 * that saves by renaming replaces the file, and a watch on the file itself
 * would be lost). */
int wp_policy_watch(wp_proxy *px, ward_err *err)
{
    const proxy_config *cfg = px->cfg;
    uv_timer_init(px->loop, &px->reload_timer);
    px->reload_timer.data = px;
    px->watches = calloc(cfg->policy.n_paths ? cfg->policy.n_paths : 1, sizeof(*px->watches));
    if (px->watches == NULL)
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
    for (size_t i = 0; i < px->n_watches; i++)
        uv_close((uv_handle_t *)&px->watches[i], NULL);
    if (!uv_is_closing((uv_handle_t *)&px->reload_timer))
        uv_close((uv_handle_t *)&px->reload_timer, NULL);
}
