/* trail_io.c - give a peer proxy the disk writes of Ward's audit trail, for a control leg */
/*
 * Ward's proxies write every record to their trail and sync it every 100 ms
 * (a writer thread that naps 10 ms, a syncer thread); nginx and HAProxy leave
 * their access logs to the kernel's writeback, 30 s later. To see what the
 * trail's disk writes cost a proxy on this machine, whatever the proxy, this
 * program follows a peer's access log and, for every line the peer appends,
 * appends a record of RECORD bytes to its own trail file, with the same
 * cadence: writes every 10 ms, fdatasync every 100 ms when something was
 * written. One writer and one syncer thread per LOG:TRAIL pair, as each Ward
 * proxy has. It runs until SIGTERM or SIGINT, then prints what it wrote.
 *
 *   trail_io -b RECORD LOG:TRAIL [LOG:TRAIL]...
 *
 * Exit status: 0 stopped by a signal, 1 bad arguments or an I/O error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAIRS     8
#define WRITE_NAP_MS  10
#define SYNC_EVERY_MS 100
#define READ_CHUNK    65536

typedef struct pair {
    const char *log_path, *trail_path;
    int log_fd, trail_fd;
    off_t log_off;
    atomic_uint_fast64_t written; /* bytes appended to the trail */
    pthread_t writer, syncer;
} pair;

static atomic_bool stopping;
static char *records; /* records_n records of record_bytes, each ending in '\n' */
static size_t record_bytes, records_n;

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static void fail(const char *what, const char *path)
{
    fprintf(stderr, "trail_io: %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

/* The lines the log gained since the last call. */
static uint64_t new_lines(pair *p)
{
    static _Thread_local char buf[READ_CHUNK];
    uint64_t lines = 0;
    for (;;) {
        ssize_t n = pread(p->log_fd, buf, sizeof(buf), p->log_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail("read", p->log_path);
        if (n == 0)
            return lines;
        /* count only whole lines: a line still being written is read next time */
        ssize_t end = n;
        while (end > 0 && buf[end - 1] != '\n')
            end--;
        for (ssize_t i = 0; i < end; i++)
            lines += buf[i] == '\n';
        p->log_off += end;
        if (end < n)
            return lines;
    }
}

static void append_records(pair *p, uint64_t n)
{
    while (n > 0) {
        size_t k = n < records_n ? (size_t)n : records_n;
        size_t len = k * record_bytes, done = 0;
        while (done < len) {
            ssize_t w = write(p->trail_fd, records + done, len - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                fail("write", p->trail_path);
            done += (size_t)w;
        }
        atomic_fetch_add(&p->written, len);
        n -= k;
    }
}

static void *writer_main(void *arg)
{
    pair *p = arg;
    while (!atomic_load(&stopping)) {
        nap_ms(WRITE_NAP_MS);
        append_records(p, new_lines(p));
    }
    return NULL;
}

static void *syncer_main(void *arg)
{
    pair *p = arg;
    uint64_t synced = 0;
    while (!atomic_load(&stopping)) {
        nap_ms(SYNC_EVERY_MS);
        uint64_t w = atomic_load(&p->written);
        if (w != synced && fdatasync(p->trail_fd) < 0)
            fail("fdatasync", p->trail_path);
        synced = w;
    }
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: trail_io -b RECORD_BYTES LOG:TRAIL [LOG:TRAIL]...\n");
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc < 4 || strcmp(argv[1], "-b") != 0)
        usage();
    char *end;
    errno = 0;
    unsigned long b = strtoul(argv[2], &end, 10);
    if (errno != 0 || *end != '\0' || b < 16 || b > 65536)
        usage();
    record_bytes = b;
    records_n = (4u << 20) / record_bytes;
    records = malloc(records_n * record_bytes);
    if (records == NULL) {
        fprintf(stderr, "trail_io: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < records_n * record_bytes; i++)
        records[i] = (i + 1) % record_bytes == 0 ? '\n' : 'x';

    static pair pairs[MAX_PAIRS];
    size_t n = 0;
    for (int i = 3; i < argc; i++) {
        if (n == MAX_PAIRS)
            usage();
        char *colon = strchr(argv[i], ':');
        if (colon == NULL || colon == argv[i] || colon[1] == '\0')
            usage();
        *colon = '\0';
        pair *p = &pairs[n++];
        p->log_path = argv[i];
        p->trail_path = colon + 1;
        if ((p->log_fd = open(p->log_path, O_RDONLY | O_CLOEXEC)) < 0)
            fail("open", p->log_path);
        struct stat st;
        if (fstat(p->log_fd, &st) < 0)
            fail("stat", p->log_path);
        p->log_off = st.st_size; /* only what the peer logs from now on */
        p->trail_fd = open(p->trail_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (p->trail_fd < 0)
            fail("open", p->trail_path);
    }
    /* the threads inherit the mask: the signal reaches sigwait below */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    for (size_t i = 0; i < n; i++)
        if (pthread_create(&pairs[i].writer, NULL, writer_main, &pairs[i]) != 0 ||
            pthread_create(&pairs[i].syncer, NULL, syncer_main, &pairs[i]) != 0) {
            fprintf(stderr, "trail_io: cannot start threads\n");
            return 1;
        }
    int sig;
    sigwait(&stop_signals, &sig);
    atomic_store(&stopping, true);
    for (size_t i = 0; i < n; i++) {
        pthread_join(pairs[i].writer, NULL);
        pthread_join(pairs[i].syncer, NULL);
    }
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += atomic_load(&pairs[i].written);
    printf("trail_io: %" PRIu64 " records, %" PRIu64 " bytes\n", total / record_bytes, total);
    return 0;
}
