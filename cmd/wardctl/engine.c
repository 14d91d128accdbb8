/* engine.c - load policy paths and build a decision engine, printing problems for humans */
#include <malloc.h>
#include <stdio.h>
#include <time.h>

#include "cmd/wardctl/wardctl.h"

double wctl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static long long heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (long long)(mi.uordblks + mi.hblkhd);
}

int wctl_policies_load(const wctl_strs *paths, policy_set **out)
{
    int rc = 0;
    policy_set *set = NULL;
    ward_diag diag;
    ward_diag_init(&diag);
    diag.max = 1000;
    rc = policy_set_new(&set);
    if (rc < 0) {
        fprintf(stderr, "error: %s\n", ward_strerror(rc));
        goto fail;
    }
    rc = policy_set_load_paths(set, paths->v, paths->n, &diag);
    for (size_t i = 0; i < diag.n; i++)
        fprintf(stderr, "%s\n", diag.msgs[i]);
    if (rc == 0 && diag.n > 0)
        rc = WARD_EPOLICY;
    if (rc < 0) {
        if (diag.n == 0)
            fprintf(stderr, "error: loading policies: %s\n", ward_strerror(rc));
        goto fail;
    }
    ward_diag_dispose(&diag);
    *out = set;
    return 0;
fail:
    ward_diag_dispose(&diag);
    if (set != NULL)
        policy_set_free(set);
    return rc;
}

int wctl_engine_build(const policy_set *set, bool default_allow, authz_engine **out,
                      wctl_timing *timing)
{
    int rc = 0;
    authz_bundle *bundle = NULL;
    ward_err err;
    ward_err_clear(&err);
    authz_options opts = {.default_allow = default_allow};
    long long heap0 = heap_in_use();
    double t0 = wctl_now_ms();
    rc = authz_bundle_new(set, &opts, &bundle, &err);
    double t1 = wctl_now_ms();
    if (rc < 0) {
        fprintf(stderr, "error: compiling policies: %s\n",
                err.msg[0] ? err.msg : ward_strerror(rc));
        goto fail;
    }
    rc = authz_engine_new(bundle, out, &err);
    double t2 = wctl_now_ms();
    if (rc < 0) {
        fprintf(stderr, "error: loading the compiled policies: %s\n",
                err.msg[0] ? err.msg : ward_strerror(rc));
        goto fail;
    }
    if (timing != NULL) {
        timing->compile_ms = t1 - t0;
        timing->engine_ms = t2 - t1;
        timing->heap_bytes = heap_in_use() - heap0;
    }
    authz_bundle_unref(bundle); /* the engine holds its own reference */
    return 0;
fail:
    if (bundle != NULL)
        authz_bundle_unref(bundle);
    return rc;
}
