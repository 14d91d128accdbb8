/* sync.c - the audit syncer thread: fdatasync of the trail's files off the writer thread */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit_int.h"

struct audit_syncer {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a job handed over, a job done, or stop */
    pthread_t thread;
    bool busy, quit;
    audit_sync_job job; /* while busy */
    int rc;             /* of the last job done */
    uint32_t delay_ms;
    audit_sync_done_cb done;
    audit_sync_fail_cb fail;
    void *data;
};

static void delay(const audit_syncer *s)
{
    if (s->delay_ms == 0)
        return;
    struct timespec ts = {s->delay_ms / 1000, (long)(s->delay_ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* 0, or -1 when a call failed (reported through fail, each). */
static int run(audit_syncer *s, const audit_sync_job *j)
{
    int rc = 0;
    if (j->dir != NULL) {
        delay(s);
        if (ward_dir_fsync(j->dir) < 0) {
            s->fail(NULL, "fsync", errno, s->data);
            rc = -1;
        }
    }
    if (j->fd >= 0) {
        delay(s);
        if ((j->full ? fsync(j->fd) : fdatasync(j->fd)) < 0) {
            s->fail(j->segment, j->full ? "fsync" : "fdatasync", errno, s->data);
            rc = -1;
        }
    }
    if (j->cp_fd >= 0) {
        delay(s);
        if (fdatasync(j->cp_fd) < 0) {
            s->fail(AUDIT_CHECKPOINTS_FILE, "fdatasync", errno, s->data);
            rc = -1;
        }
    }
    return rc;
}

static void *syncer_main(void *arg)
{
    audit_syncer *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->busy && !s->quit)
            pthread_cond_wait(&s->cv, &s->mu);
        if (!s->busy)
            break;
        audit_sync_job j = s->job;
        pthread_mutex_unlock(&s->mu);
        int rc = run(s, &j);
        pthread_mutex_lock(&s->mu);
        s->rc = rc;
        s->busy = false;
        pthread_cond_broadcast(&s->cv);
        s->done(s->data); /* under mu: the syncer is never freed in between */
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int audit_syncer_new(uint32_t delay_ms, audit_sync_done_cb done, audit_sync_fail_cb fail,
                     void *data, audit_syncer **out, ward_err *err)
{
    *out = NULL;
    audit_syncer *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return WARD_ENOMEM;
    s->delay_ms = delay_ms;
    s->done = done;
    s->fail = fail;
    s->data = data;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    /* no signals for the syncer: they stay with the threads that handle them */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&s->thread, NULL, syncer_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        ward_err_set(err, "audit: starting the syncer thread: %s", strerror(e));
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return WARD_EIO;
    }
    *out = s;
    return 0;
}

void audit_syncer_submit(audit_syncer *s, const audit_sync_job *job)
{
    pthread_mutex_lock(&s->mu);
    s->job = *job;
    s->busy = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

bool audit_syncer_reap(audit_syncer *s, bool wait, int *rc)
{
    pthread_mutex_lock(&s->mu);
    while (wait && s->busy)
        pthread_cond_wait(&s->cv, &s->mu);
    bool done = !s->busy;
    *rc = s->rc;
    pthread_mutex_unlock(&s->mu);
    return done;
}

void audit_syncer_free(audit_syncer *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->quit = true; /* a job in flight is finished first */
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
