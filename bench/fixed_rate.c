/* fixed_rate.c - an HTTP/1.1 keep-alive client that sends requests at a fixed rate, µs apart */
/*
 * wrk paces requests only through its Lua delay(), whose resolution is a
 * millisecond: at 5,000 requests/s each wrk thread sends its requests in
 * bursts of five, and the last of a burst waits for the others in every
 * proxy on its way. This client spaces request k at start + k / rate with
 * microsecond timers (epoll_pwait2), sends it on the first idle connection,
 * and counts its latency from that scheduled time, not from when it was
 * sent: when every connection is busy the wait is part of the latency (no
 * coordinated omission, as in wrk2). The output has wrk's --latency layout
 * so that the same parser reads both.
 *
 *   fixed_rate -r RATE [-c CONNS] [-d SECONDS] [-H "Name: value"]... [-s MS] http://IPV4:PORT/PATH
 *
 * -s MS prints each request slower than MS milliseconds to stderr, with its
 * scheduled time from the start, to find when a stall happened.
 *
 * One thread; responses must carry Content-Length (or be 204/304). Exit
 * status: 0 the run completed, 1 bad arguments or no connection could be made.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 4096
#define RESP_MAX 65536
#define REQ_MAX 8192

typedef struct {
    int fd;
    int busy;           /* a request is on the wire */
    uint64_t sched_ns;  /* its scheduled send time */
    size_t len;         /* bytes of the response read so far */
    char buf[RESP_MAX];
} conn;

static struct {
    uint64_t connect, read, write, timeout, non2xx, framing;
} err;
static struct sockaddr_in addr;
static char req[REQ_MAX];
static size_t req_len;
static uint64_t slow_ns, start_ns; /* -s */
static uint32_t *lat_us;
static size_t lat_n, lat_cap;

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void usage(void)
{
    fprintf(stderr, "usage: fixed_rate -r RATE [-c CONNS] [-d SECONDS] [-H 'Name: value']... [-s MS] "
                    "http://IPV4:PORT/PATH\n");
    exit(1);
}

static void record(uint64_t ns)
{
    if (lat_n == lat_cap) {
        lat_cap = lat_cap ? 2 * lat_cap : 65536;
        lat_us = realloc(lat_us, lat_cap * sizeof(*lat_us));
        if (lat_us == NULL) {
            perror("fixed_rate: realloc");
            exit(1);
        }
    }
    uint64_t us = ns / 1000;
    lat_us[lat_n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int conn_open(int ep, conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        err.connect++;
        if (c->fd >= 0)
            close(c->fd);
        c->fd = -1;
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    c->busy = 0;
    c->len = 0;
    return 0;
}

/* a broken connection: count it, reopen it idle */
static void conn_reset(int ep, conn *c, uint64_t *counter)
{
    (*counter)++;
    close(c->fd);
    conn_open(ep, c);
}

/* the whole request in one write: it is small, and a short write on a fresh
 * loopback connection means the peer is not reading */
static int conn_send(int ep, conn *c, uint64_t sched)
{
    ssize_t n = send(c->fd, req, req_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n != (ssize_t)req_len) {
        conn_reset(ep, c, &err.write);
        return -1;
    }
    c->busy = 1;
    c->sched_ns = sched;
    c->len = 0;
    return 0;
}

/* the length of the complete response at the start of c->buf, 0 while more
 * is needed, -1 when its framing is not one this client reads */
static long response_complete(conn *c, int *status)
{
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (end == NULL)
        return c->len == RESP_MAX ? -1 : 0;
    size_t head = (size_t)(end - c->buf) + 4;
    if (head < 12 || memcmp(c->buf, "HTTP/1.", 7) != 0)
        return -1;
    *status = atoi(c->buf + 9);
    long body = -1;
    for (char *p = memchr(c->buf, '\n', head); p != NULL && p < end; p = memchr(p, '\n', head - (size_t)(p - c->buf))) {
        p++;
        if (strncasecmp(p, "Content-Length:", 15) == 0)
            body = strtol(p + 15, NULL, 10);
        else if (strncasecmp(p, "Transfer-Encoding:", 18) == 0)
            return -1;
    }
    if (body < 0)
        body = (*status == 204 || *status == 304) ? 0 : -1;
    if (body < 0 || head + (size_t)body > RESP_MAX)
        return -1;
    return c->len >= head + (size_t)body ? (long)(head + (size_t)body) : 0;
}

static void on_readable(int ep, conn *c, uint64_t stop_ns)
{
    ssize_t n = recv(c->fd, c->buf + c->len, RESP_MAX - c->len, MSG_DONTWAIT);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_reset(ep, c, &err.read);
        return;
    }
    c->len += (size_t)n;
    int status = 0;
    long whole = response_complete(c, &status);
    if (whole == 0)
        return;
    if (whole < 0 || !c->busy || (size_t)whole != c->len) {
        err.framing++; /* also a read error, so that a parser of wrk's output sees it */
        conn_reset(ep, c, &err.read);
        return;
    }
    uint64_t t = now_ns();
    if (t <= stop_ns) {
        record(t - c->sched_ns);
        if (slow_ns && t - c->sched_ns > slow_ns)
            fprintf(stderr, "slow: scheduled at %.3f s, %.3f ms\n", (double)(c->sched_ns - start_ns) / 1e9,
                    (double)(t - c->sched_ns) / 1e6);
        if (status < 200 || status > 399)
            err.non2xx++;
    }
    c->busy = 0;
    c->len = 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void print_us(const char *label, uint32_t us)
{
    printf("    %5s  %.2fus\n", label, (double)us);
}

int main(int argc, char **argv)
{
    double rate = 0, seconds = 10;
    int nconns = 64, opt;
    char headers[REQ_MAX / 2] = "";
    size_t hlen = 0;
    while ((opt = getopt(argc, argv, "r:c:d:H:s:")) != -1) {
        switch (opt) {
        case 'r': rate = strtod(optarg, NULL); break;
        case 'c': nconns = (int)strtol(optarg, NULL, 10); break;
        case 'd': seconds = strtod(optarg, NULL); break; /* "10s" reads as 10 */
        case 's': slow_ns = (uint64_t)(strtod(optarg, NULL) * 1e6); break;
        case 'H': {
            int w = snprintf(headers + hlen, sizeof(headers) - hlen, "%s\r\n", optarg);
            if (w < 0 || (size_t)w >= sizeof(headers) - hlen)
                usage();
            hlen += (size_t)w;
            break;
        }
        default: usage();
        }
    }
    if (optind != argc - 1 || rate <= 0 || rate > 1e7 || nconns < 1 || nconns > MAX_CONNS || seconds <= 0)
        usage();
    const char *url = argv[optind];
    char host[64];
    unsigned port;
    int plen = 0;
    if (sscanf(url, "http://%63[0-9.]:%u%n", host, &port, &plen) != 2 || port > 65535 ||
        inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        usage();
    const char *path = url[plen] == '/' ? url + plen : "/";
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    int w = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\n%s%s\r\n", path,
                     strcasestr(headers, "host:") ? "" : "Host: localhost\r\n", headers);
    if (w < 0 || (size_t)w >= sizeof(req))
        usage();
    req_len = (size_t)w;

    prctl(PR_SET_TIMERSLACK, 1UL); /* µs timers mean µs, not the default 50 µs slack */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    conn *conns = calloc((size_t)nconns, sizeof(*conns));
    if (ep < 0 || conns == NULL)
        return 1;
    int opened = 0;
    for (int i = 0; i < nconns; i++)
        opened += conn_open(ep, &conns[i]) == 0;
    if (opened == 0) {
        fprintf(stderr, "fixed_rate: cannot connect to %s\n", url);
        return 1;
    }

    double interval_ns = 1e9 / rate;
    uint64_t start = now_ns(), stop = start + (uint64_t)(seconds * 1e9);
    start_ns = start;
    uint64_t k = 0; /* the next request to send */
    struct epoll_event evs[256];
    int idle_from = 0;
    for (;;) {
        uint64_t t = now_ns();
        if (t >= stop)
            break;
        /* send every request that is due, each on an idle connection */
        bool blocked = false; /* a request is due and every connection is busy */
        for (;;) {
            uint64_t due = start + (uint64_t)((double)k * interval_ns);
            if (due > t || due >= stop)
                break;
            int i, found = -1;
            for (i = 0; i < nconns; i++) {
                conn *c = &conns[(idle_from + i) % nconns];
                if (c->fd >= 0 && !c->busy) {
                    found = (idle_from + i) % nconns;
                    break;
                }
            }
            if (found < 0) {
                blocked = true; /* it stays due, its latency keeps counting */
                break;
            }
            idle_from = (found + 1) % nconns;
            if (conn_send(ep, &conns[found], due) == 0)
                k++;
        }
        /* sleep until the next request is due, or, when one is due and waits
         * for a connection, until a response frees one (never spin: the CPU
         * is shared with what is measured) */
        uint64_t due = start + (uint64_t)((double)k * interval_ns), wake = due < stop ? due : stop;
        if (blocked)
            wake = stop;
        t = now_ns();
        struct timespec to = {0, 0};
        if (wake > t) {
            to.tv_sec = (time_t)((wake - t) / 1000000000u);
            to.tv_nsec = (long)((wake - t) % 1000000000u);
        }
        int n = epoll_pwait2(ep, evs, 256, &to, NULL);
        for (int i = 0; i < n; i++)
            on_readable(ep, evs[i].data.ptr, stop);
        for (int i = 0; i < nconns; i++) /* reopen what a failed reconnect left closed */
            if (conns[i].fd < 0)
                conn_open(ep, &conns[i]);
    }
    uint64_t end = now_ns();
    for (int i = 0; i < nconns; i++) /* unanswered for over a second at the end */
        if (conns[i].fd >= 0 && conns[i].busy && end - conns[i].sched_ns > 1000000000u)
            err.timeout++;

    qsort(lat_us, lat_n, sizeof(*lat_us), cmp_u32);
    double secs = (double)(end - start) / 1e9;
    printf("Running %.0fs fixed-rate test @ %s\n", seconds, url);
    printf("  1 thread and %d connections, %.0f requests/s scheduled; latency from each request's "
           "scheduled send time\n", nconns, rate);
    printf("  Latency Distribution\n");
    if (lat_n > 0) {
        print_us("50%", lat_us[lat_n / 2]);
        print_us("75%", lat_us[lat_n * 75 / 100]);
        print_us("90%", lat_us[lat_n * 90 / 100]);
        print_us("99%", lat_us[lat_n * 99 / 100]);
        print_us("99.9%", lat_us[lat_n * 999 / 1000]);
        print_us("max", lat_us[lat_n - 1]);
    }
    printf("  %zu requests in %.2fs, %" PRIu64 " scheduled\n", lat_n, secs, k);
    if (err.connect || err.read || err.write || err.timeout)
        printf("  Socket errors: connect %" PRIu64 ", read %" PRIu64 ", write %" PRIu64 ", timeout %" PRIu64 "\n",
               err.connect, err.read, err.write, err.timeout);
    if (err.framing)
        printf("  Responses this client cannot frame: %" PRIu64 "\n", err.framing);
    if (err.non2xx)
        printf("  Non-2xx or 3xx responses: %" PRIu64 "\n", err.non2xx);
    printf("Requests/sec: %.2f\n", (double)lat_n / secs);
    return 0;
}
