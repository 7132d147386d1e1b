/*
 * soak: the mixed, bounded load of scripts/soak, and its per-interval samples of the gateway.
 *
 *   soak --port P --http-port H --server-pid PID --seconds S [--interval I] [--settle S]
 *        [--lookup-threads N] [--lookup-rate R] [--churn-threads N] [--churn-rate R]
 *        [--http-threads N] [--http-rate R] [--watchers N] [--transient-watchers N]
 *        [--scrape-interval S] [--check-names a,b,...] [--timeout-ms MS]
 *
 * Registers one node, "soaktarget" (ALIVE2 from 127.0.0.3, held for the whole run), samples the
 * gateway (row 0), then runs for --seconds, every thread bounded by that deadline:
 *
 *   lookups    --lookup-threads threads (default 4) sharing --lookup-rate PORT_PLEASE2/s (default
 *              1000; 0 = as fast as they go), one TCP connection per lookup from 127.0.0.2, as
 *              Benchmarks/loadgen.c does; only a reply equal byte for byte to soaktarget's counts.
 *              Latency = socket() to EOF.
 *   churn      --churn-threads threads (default 2), --churn-rate registrations/s each (default 10),
 *              from 127.0.0.3: ALIVE2 (reply 76 00 + creation), then a PORT_PLEASE2 of that name on a
 *              new connection must find it; each thread holds its last 4 registrations and closes the
 *              oldest before the next one. Names come from a pool of 32 per thread, so a name is
 *              registered again about 28 registrations after it was closed (creation numbers cycle,
 *              and the close is long processed by then).
 *   HTTP       --http-threads threads (default 2), --http-rate requests/s each (default 20), from
 *              127.0.0.4, alternating one request per connection (Connection: close) and five
 *              requests on one keep-alive connection, cycling through /v1/nodes (200, must list
 *              soaktarget), /v1/nodes/soaktarget, /v1/nodes/<each --check-names>,
 *              /v1/nodes/soaktarget/health, /livez, /readyz: all must answer 200. With them (when
 *              --http-threads > 0), one long-poll client: GET /v1/nodes?index=G&wait=2s, G the last
 *              generation it saw, at most 10 a second; 200 with a generation at or past G.
 *   watchers   --watchers SSE streams (default 4) on /v1/events from 127.0.0.5 for the whole run,
 *              and --transient-watchers threads (default 1) that connect, stay 0.5-4 s, and leave.
 *              Each stream must answer 200 with a "reset" frame within 5 s; after it every
 *              registered/unregistered frame must carry the next id (no gap, no duplicate, no second
 *              reset); a long-lived stream must not end or fall silent for 40 s (pings come every 15 s).
 *   scrapes    one thread, GET /metrics every --scrape-interval seconds (default 1) from 127.0.0.6
 *              with Prometheus' Accept header: 200, every sample line well formed, epmd_nodes and
 *              process_open_fds present.
 *   check      each interval the main thread looks up every --check-names node (PORT_PLEASE2 must
 *              find it): the real erl nodes scripts/soak starts must stay registered.
 *
 * Every --interval seconds (default 60) it prints one row; after the load it waits --settle seconds
 * (default 5) and prints the "end" row: by then the gateway has closed every connection of ours but
 * soaktarget's (it notices a watcher that left within about a second, a long-poll when its 2 s end). Rows (stdout, one line each):
 *
 *   row=K t=SECONDS rss_kb=N fds=N threads=N lookups=N p50_us=X p99_us=X errors=N
 *       lookup_err=N reg_err=N http_err=N watch_err=N scrape_err=N check_err=N
 *       registrations=N http=N scrapes=N streams=N events=N
 *
 * rss_kb (VmRSS) and threads come from /proc/PID/status, fds from the entries of /proc/PID/fd. Counts
 * are per interval; p50/p99 are nearest-rank over that interval's successful lookups ("nan" if none).
 * Errors are also described on stderr (the first 20 of each kind). Exit status: 0 when the run had no
 * error, 1 otherwise, 2 on usage errors.
 *
 * Every socket operation is bounded (--timeout-ms, default 5000, per request; poll() slices of 200 ms
 * that check the stop flag), so the process ends within --seconds + --settle + a few seconds.
 *
 * Build: cc -O2 -Wall -Wextra -pthread -o soak soak.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ options */

static struct {
    int port, http_port, server_pid;
    double seconds, interval, settle, scrape_interval;
    int lookup_threads, churn_threads, http_threads, watchers, transient;
    double lookup_rate, churn_rate, http_rate;
    int timeout_ms;
    char *check_names[16];
    int n_check;
} opt = {
    .interval = 60, .settle = 5, .scrape_interval = 1,
    .lookup_threads = 4, .churn_threads = 2, .http_threads = 2, .watchers = 4, .transient = 1,
    .lookup_rate = 1000, .churn_rate = 10, .http_rate = 20, .timeout_ms = 5000,
};

static const char *TARGET = "soaktarget";
static const int TARGET_PORT = 5555;

/* ------------------------------------------------------------------ helpers */

static atomic_int stop_flag;
static volatile sig_atomic_t signalled;
static void on_signal(int sig) {
    (void)sig;
    signalled = 1;
    atomic_store(&stop_flag, 1);
}
static int stopping(void) { return atomic_load(&stop_flag); }

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *msg) {
    fprintf(stderr, "soak: %s\n", msg);
    exit(2);
}

/* Sleeps until the monotonic time t (ns), in slices that notice the stop flag. */
static void sleep_until(uint64_t t) {
    while (!stopping()) {
        uint64_t n = now_ns();
        if (n >= t) return;
        uint64_t d = t - n;
        if (d > 200000000ull) d = 200000000ull;
        struct timespec ts = {.tv_sec = (time_t)(d / 1000000000ull), .tv_nsec = (long)(d % 1000000000ull)};
        nanosleep(&ts, NULL);
    }
}

static void put16(uint8_t *p, unsigned v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* ------------------------------------------------------------------ counters */

enum kind { K_LOOKUP, K_REG, K_HTTP, K_WATCH, K_SCRAPE, K_CHECK, K_COUNT };
static const char *kind_name[K_COUNT] = {"lookup_err", "reg_err", "http_err", "watch_err", "scrape_err", "check_err"};
static atomic_long err_count[K_COUNT];   /* this interval */
static atomic_long err_total[K_COUNT];   /* whole run, for the stderr limit */
static atomic_long n_registrations, n_http, n_scrapes, n_streams, n_events;

static void error_at(enum kind k, const char *fmt, ...) {
    atomic_fetch_add(&err_count[k], 1);
    long n = atomic_fetch_add(&err_total[k], 1);
    if (n >= 20) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "soak: %s: %s%s\n", kind_name[k], msg, n == 19 ? " (further ones not shown)" : "");
}

/* Lookup latencies of the current interval (ns), behind one mutex: ~1,000 appends a second. */
static pthread_mutex_t lat_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t *lat;
static size_t lat_n, lat_cap;
#define LAT_MAX 50000000u

static void record_latency(uint64_t ns) {
    pthread_mutex_lock(&lat_mu);
    if (lat_n == lat_cap && lat_cap < LAT_MAX) {
        size_t cap = lat_cap ? lat_cap * 2 : 65536;
        uint64_t *p = realloc(lat, cap * sizeof *p);
        if (p) {
            lat = p;
            lat_cap = cap;
        }
    }
    if (lat_n < lat_cap) lat[lat_n++] = ns;
    pthread_mutex_unlock(&lat_mu);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(const uint64_t *v, size_t n, double p) {
    if (n == 0) return NAN;
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return (double)v[rank - 1] / 1000.0;
}

/* ------------------------------------------------------------------ sockets */

/* A TCP connection from src (127.0.0.x) to 127.0.0.1:port, non-blocking connect bounded by timeout. */
static int connect_from(const char *src, int port, int timeout_ms) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &sa.sin_addr);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in da = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    da.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (;;) {
        if (connect(fd, (struct sockaddr *)&da, sizeof da) == 0) return fd;
        if (errno == EINTR) continue;
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
}

static int write_all(int fd, const void *p, size_t len) {
    const uint8_t *b = p;
    while (len > 0) {
        ssize_t n = send(fd, b, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Buffered reader over a socket: reads wait in poll() slices of 200 ms, until `deadline` (ns) or, when
 * `until_stop` is set, the stop flag. */
struct reader {
    int fd;
    char buf[65536];
    size_t off, len;
    uint64_t deadline;
    int until_stop;
};

/* More bytes into the buffer: >0 bytes, 0 EOF, -1 error, -2 timeout, -3 stop. */
static ssize_t fill(struct reader *r) {
    if (r->off > 0) {
        memmove(r->buf, r->buf + r->off, r->len - r->off);
        r->len -= r->off;
        r->off = 0;
    }
    if (r->len == sizeof r->buf) return -1;
    for (;;) {
        if (r->until_stop && stopping()) return -3;
        uint64_t n = now_ns();
        if (n >= r->deadline) return -2;
        uint64_t left_ms = (r->deadline - n) / 1000000ull + 1;
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        int pr = poll(&p, 1, left_ms > 200 ? 200 : (int)left_ms);
        if (pr < 0 && errno != EINTR) return -1;
        if (pr <= 0) continue;
        ssize_t k = recv(r->fd, r->buf + r->len, sizeof r->buf - r->len, MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k < 0) return -1;
        r->len += (size_t)k;
        return k;
    }
}

/* One line (without CR LF) into out[cap]: length, or <0 like fill (-4: line too long). */
static ssize_t read_line(struct reader *r, char *out, size_t cap) {
    for (;;) {
        char *nl = memchr(r->buf + r->off, '\n', r->len - r->off);
        if (nl) {
            size_t l = (size_t)(nl - (r->buf + r->off));
            size_t keep = l;
            if (keep > 0 && r->buf[r->off + keep - 1] == '\r') keep--;
            if (keep >= cap) return -4;
            memcpy(out, r->buf + r->off, keep);
            out[keep] = 0;
            r->off += l + 1;
            return (ssize_t)keep;
        }
        if (r->len - r->off >= cap) return -4;
        ssize_t k = fill(r);
        if (k == 0) return -1; /* EOF inside a line */
        if (k < 0) return k;
    }
}

/* Exactly n bytes, handed to sink(ctx, bytes, len) as they come; 0 ok, <0 like fill. */
typedef int (*sink_fn)(void *ctx, const char *p, size_t n);
static int read_exact(struct reader *r, size_t n, sink_fn sink, void *ctx) {
    while (n > 0) {
        if (r->off == r->len) {
            ssize_t k = fill(r);
            if (k == 0) return -1;
            if (k < 0) return (int)k;
        }
        size_t take = r->len - r->off;
        if (take > n) take = n;
        if (sink && sink(ctx, r->buf + r->off, take) != 0) return -5;
        r->off += take;
        n -= take;
    }
    return 0;
}

/* ------------------------------------------------------------------ epmd client */

/* PORT_PLEASE2 for name: 0 found (reply into *node_port; with expect != NULL it must equal it),
 * 1 not found, -1 connect error, -2 I/O error or timeout, -3 malformed or unexpected reply. */
static int port_please(const char *src, const char *name, const uint8_t *expect, size_t expect_len,
                       int *node_port) {
    size_t nlen = strlen(name);
    uint8_t req[2 + 1 + 256];
    if (nlen < 1 || nlen > 255) return -3;
    put16(req, (unsigned)(nlen + 1));
    req[2] = 122;
    memcpy(req + 3, name, nlen);
    int fd = connect_from(src, opt.port, opt.timeout_ms);
    if (fd < 0) return -1;
    if (write_all(fd, req, 3 + nlen) != 0) {
        close(fd);
        return -2;
    }
    struct reader *r = malloc(sizeof *r);
    if (!r) die("out of memory");
    r->fd = fd;
    r->off = r->len = 0;
    r->deadline = now_ns() + (uint64_t)opt.timeout_ms * 1000000ull;
    r->until_stop = 0;
    ssize_t k;
    while ((k = fill(r)) > 0) {}
    close(fd);
    int rc;
    if (k != 0) rc = -2;
    else if (r->len >= 2 && r->buf[0] == 119 && r->buf[1] != 0 && r->len == 2) rc = 1;
    else if (r->len < 14 || (uint8_t)r->buf[0] != 119 || r->buf[1] != 0) rc = -3;
    else if (expect && (r->len != expect_len || memcmp(r->buf, expect, expect_len) != 0)) rc = -3;
    else {
        size_t got_nlen = ((size_t)(uint8_t)r->buf[10] << 8) | (uint8_t)r->buf[11];
        if (got_nlen != nlen || r->len < 12 + nlen + 2 || memcmp(r->buf + 12, name, nlen) != 0) rc = -3;
        else {
            if (node_port) *node_port = ((uint8_t)r->buf[2] << 8) | (uint8_t)r->buf[3];
            rc = 0;
        }
    }
    free(r);
    return rc;
}

/* ALIVE2 for name: the connection (the registration) on success, -1 on failure (why in *why). */
static int alive2(const char *src, const char *name, int node_port, const char **why) {
    size_t nlen = strlen(name);
    uint8_t req[2 + 13 + 256];
    if (nlen > 255) {
        *why = "name too long";
        return -1;
    }
    uint8_t *b = req + 2;
    b[0] = 120;
    put16(b + 1, (unsigned)node_port);
    b[3] = 77;
    b[4] = 0;
    put16(b + 5, 6);
    put16(b + 7, 5);
    put16(b + 9, (unsigned)nlen);
    memcpy(b + 11, name, nlen);
    put16(b + 11 + nlen, 0);
    put16(req, (unsigned)(13 + nlen));
    int fd = connect_from(src, opt.port, opt.timeout_ms);
    if (fd < 0) {
        *why = "connect failed";
        return -1;
    }
    if (write_all(fd, req, 15 + nlen) != 0) {
        close(fd);
        *why = "write failed";
        return -1;
    }
    uint8_t rep[6];
    size_t got = 0;
    uint64_t deadline = now_ns() + (uint64_t)opt.timeout_ms * 1000000ull;
    while (got < sizeof rep) {
        if (now_ns() > deadline) break;
        ssize_t n = recv(fd, rep + got, sizeof rep - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (got < sizeof rep) {
        close(fd);
        *why = got ? "short reply" : "no reply (EOF, reset or timeout)";
        return -1;
    }
    if (rep[0] != 118 || rep[1] != 0) {
        close(fd);
        *why = rep[0] == 118 ? "refused (result byte not 0)" : "not an ALIVE2 reply";
        return -1;
    }
    return fd;
}

/* ------------------------------------------------------------------ HTTP client */

struct body {
    char *p;
    size_t len, cap;
};

static int body_sink(void *ctx, const char *p, size_t n) {
    struct body *b = ctx;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n + 1) cap *= 2;
        if (cap > (64u << 20)) return -1;
        char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

struct head {
    int status;
    long content_length; /* -1 when absent */
    int chunked;
    int close;
};

static int send_get(int fd, const char *path, int keep_alive, const char *accept) {
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: epmd-gateway-soak\r\n%s%s%s%s\r\n", path,
                     opt.http_port, accept ? "Accept: " : "", accept ? accept : "", accept ? "\r\n" : "",
                     keep_alive ? "" : "Connection: close\r\n");
    if (n <= 0 || (size_t)n >= sizeof req) return -1;
    return write_all(fd, req, (size_t)n);
}

/* The status line and headers: 0 ok, <0 like fill. */
static int read_head(struct reader *r, struct head *h) {
    char line[8192];
    ssize_t k = read_line(r, line, sizeof line);
    if (k < 0) return (int)k;
    h->status = 0;
    h->content_length = -1;
    h->chunked = 0;
    h->close = 0;
    if (strncmp(line, "HTTP/1.", 7) != 0 || strlen(line) < 12) return -6;
    h->status = atoi(line + 9);
    if (line[7] == '0') h->close = 1;
    for (int i = 0; i < 200; i++) {
        k = read_line(r, line, sizeof line);
        if (k < 0) return (int)k;
        if (k == 0) return 0;
        if (!strncasecmp(line, "Content-Length:", 15)) h->content_length = atol(line + 15);
        else if (!strncasecmp(line, "Transfer-Encoding:", 18) && strcasestr(line + 18, "chunked")) h->chunked = 1;
        else if (!strncasecmp(line, "Connection:", 11) && strcasestr(line + 11, "close")) h->close = 1;
    }
    return -6;
}

/* A chunked body into sink: 0 at the last chunk, <0 like fill. Sink may stop it with -5. */
static int read_chunked(struct reader *r, sink_fn sink, void *ctx) {
    char line[256];
    for (;;) {
        ssize_t k = read_line(r, line, sizeof line);
        if (k < 0) return (int)k;
        char *end;
        unsigned long size = strtoul(line, &end, 16);
        if (end == line) return -6;
        if (size == 0) {
            for (int i = 0; i < 100; i++) { /* trailers, then the empty line */
                k = read_line(r, line, sizeof line);
                if (k < 0) return (int)k;
                if (k == 0) return 0;
            }
            return -6;
        }
        int rc = read_exact(r, size, sink, ctx);
        if (rc != 0) return rc;
        k = read_line(r, line, sizeof line);
        if (k < 0) return (int)k;
        if (k != 0) return -6;
    }
}

static const char *io_text(int rc) {
    switch (rc) {
    case 0: return "EOF";
    case -1: return "EOF or error";
    case -2: return "timeout";
    case -3: return "stopped";
    case -4: return "line too long";
    case -5: return "body rejected";
    default: return "malformed HTTP";
    }
}

/* A GET on an open connection; the body into b. 0 ok (status in h), else an error text. */
static const char *http_exchange(struct reader *r, const char *path, int keep_alive, const char *accept,
                                 struct head *h, struct body *b, int timeout_ms) {
    static __thread char why[128];
    b->len = 0;
    if (b->p) b->p[0] = 0;
    if (send_get(r->fd, path, keep_alive, accept) != 0) return "write failed";
    r->deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
    int rc = read_head(r, h);
    if (rc != 0) {
        snprintf(why, sizeof why, "reading the head: %s", io_text(rc));
        return why;
    }
    if (h->chunked) rc = read_chunked(r, body_sink, b);
    else if (h->content_length >= 0) rc = read_exact(r, (size_t)h->content_length, body_sink, b);
    else {
        ssize_t k;
        while ((k = fill(r)) > 0) {
            if (body_sink(b, r->buf + r->off, r->len - r->off) != 0) return "body too large";
            r->off = r->len;
        }
        rc = (int)k;
        h->close = 1;
    }
    if (rc != 0) {
        snprintf(why, sizeof why, "reading the body: %s", io_text(rc));
        return why;
    }
    return NULL;
}

/* ------------------------------------------------------------------ lookups */

static uint8_t target_reply[64];
static size_t target_reply_len;

static void *lookup_main(void *arg) {
    (void)arg;
    double per_thread = opt.lookup_rate / opt.lookup_threads;
    uint64_t step = per_thread > 0 ? (uint64_t)(1e9 / per_thread) : 0;
    uint64_t next = now_ns();
    while (!stopping()) {
        if (step) {
            uint64_t n = now_ns();
            if (next + 1000000000ull < n) next = n; /* more than 1 s behind: no burst to catch up */
            sleep_until(next);
            next += step;
            if (stopping()) break;
        }
        uint64_t t0 = now_ns();
        int rc = port_please("127.0.0.2", TARGET, target_reply, target_reply_len, NULL);
        uint64_t t1 = now_ns();
        if (rc == 0) record_latency(t1 - t0);
        else {
            error_at(K_LOOKUP, "PORT_PLEASE2 %s: %s", TARGET,
                     rc == 1 ? "not found" : rc == -1 ? "connect failed" : rc == -2 ? "I/O error or timeout" : "wrong reply");
            if (rc == -1) usleep(10000);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ registration churn */

#define CHURN_POOL 32
#define CHURN_HELD 4

static void *churn_main(void *arg) {
    int t = (int)(intptr_t)arg;
    int held_fd[CHURN_HELD];
    for (int i = 0; i < CHURN_HELD; i++) held_fd[i] = -1;
    uint64_t step = (uint64_t)(1e9 / opt.churn_rate);
    uint64_t next = now_ns();
    unsigned long k = 0;
    unsigned seed = (unsigned)(now_ns() ^ (uint64_t)t);
    while (!stopping()) {
        uint64_t n = now_ns();
        if (next + 1000000000ull < n) next = n;
        sleep_until(next);
        next += step;
        if (stopping()) break;
        int slot = (int)(k % CHURN_HELD);
        if (held_fd[slot] >= 0) { /* the oldest registration ends: the gateway sees the close */
            close(held_fd[slot]);
            held_fd[slot] = -1;
        }
        char name[64];
        snprintf(name, sizeof name, "soakchurn%d_%lu", t, k % CHURN_POOL);
        int node_port = 20000 + (int)(rand_r(&seed) % 10000);
        const char *why = NULL;
        int fd = alive2("127.0.0.3", name, node_port, &why);
        k++;
        if (fd < 0) {
            error_at(K_REG, "ALIVE2 %s: %s", name, why);
            continue;
        }
        held_fd[slot] = fd;
        atomic_fetch_add(&n_registrations, 1);
        int got = -1;
        int rc = port_please("127.0.0.3", name, NULL, 0, &got);
        if (rc != 0 || got != node_port)
            error_at(K_REG, "PORT_PLEASE2 of %s just registered: %s", name,
                     rc == 1 ? "not found" : rc != 0 ? "failed" : "wrong port");
    }
    for (int i = 0; i < CHURN_HELD; i++)
        if (held_fd[i] >= 0) close(held_fd[i]);
    return NULL;
}

/* ------------------------------------------------------------------ HTTP reads */

static void *http_main(void *arg) {
    (void)arg;
    const char *paths[24];
    char owned[16][300];
    int np = 0;
    paths[np++] = "/v1/nodes";
    paths[np++] = "/v1/nodes/soaktarget";
    for (int i = 0; i < opt.n_check && np < 20; i++) {
        snprintf(owned[i], sizeof owned[i], "/v1/nodes/%s", opt.check_names[i]);
        paths[np++] = owned[i];
    }
    paths[np++] = "/v1/nodes/soaktarget/health";
    paths[np++] = "/livez";
    paths[np++] = "/readyz";
    uint64_t step = (uint64_t)(1e9 / opt.http_rate);
    uint64_t next = now_ns();
    unsigned long k = 0, cycle = 0;
    struct body b = {0};
    struct reader *r = malloc(sizeof *r);
    if (!r) die("out of memory");
    while (!stopping()) {
        int burst = (cycle++ % 2) ? 5 : 1; /* one request with Connection: close, or five keep-alive */
        int fd = -1;
        for (int i = 0; i < burst && !stopping(); i++) {
            uint64_t n = now_ns();
            if (next + 1000000000ull < n) next = n;
            sleep_until(next);
            next += step;
            if (stopping()) break;
            if (fd < 0) {
                fd = connect_from("127.0.0.4", opt.http_port, opt.timeout_ms);
                if (fd < 0) {
                    error_at(K_HTTP, "connect to the HTTP port failed: %s", strerror(errno));
                    break;
                }
                r->fd = fd;
                r->off = r->len = 0;
                r->until_stop = 0;
            }
            const char *path = paths[k++ % (unsigned long)np];
            int last = i == burst - 1;
            struct head h;
            const char *why = http_exchange(r, path, !last, NULL, &h, &b, opt.timeout_ms);
            atomic_fetch_add(&n_http, 1);
            if (why) {
                error_at(K_HTTP, "GET %s: %s", path, why);
                break;
            }
            if (h.status != 200) {
                error_at(K_HTTP, "GET %s: status %d", path, h.status);
            } else if (!strcmp(path, "/v1/nodes") && !strstr(b.p ? b.p : "", "\"soaktarget\"")) {
                error_at(K_HTTP, "GET /v1/nodes does not list soaktarget");
            }
            if (h.close && !last) {
                error_at(K_HTTP, "GET %s: the server closed a keep-alive connection", path);
                break;
            }
        }
        if (fd >= 0) close(fd);
    }
    free(b.p);
    free(r);
    return NULL;
}

/* A long-poll client: GET /v1/nodes?index=G&wait=2s with G the last generation seen, at most 10 a
 * second. Each answer must be 200 with a generation at or past G. */
static void *longpoll_main(void *arg) {
    (void)arg;
    unsigned long long gen = 0;
    struct body b = {0};
    struct reader *r = malloc(sizeof *r);
    if (!r) die("out of memory");
    uint64_t next = now_ns();
    while (!stopping()) {
        sleep_until(next);
        next = now_ns() + 100000000ull;
        if (stopping()) break;
        char path[128];
        snprintf(path, sizeof path, "/v1/nodes?index=%llu&wait=2s", gen);
        int fd = connect_from("127.0.0.4", opt.http_port, opt.timeout_ms);
        atomic_fetch_add(&n_http, 1);
        if (fd < 0) {
            error_at(K_HTTP, "long-poll: connect failed: %s", strerror(errno));
            continue;
        }
        r->fd = fd;
        r->off = r->len = 0;
        r->until_stop = 0;
        struct head h;
        const char *why = http_exchange(r, path, 0, NULL, &h, &b, opt.timeout_ms + 2000);
        close(fd);
        const char *g = (!why && h.status == 200 && b.p) ? strstr(b.p, "\"generation\":") : NULL;
        unsigned long long got = g ? strtoull(g + 13, NULL, 10) : 0;
        if (why) error_at(K_HTTP, "GET %s: %s", path, why);
        else if (h.status != 200) error_at(K_HTTP, "GET %s: status %d", path, h.status);
        else if (!g || got < gen) error_at(K_HTTP, "GET %s: generation %llu (missing or gone back)", path, got);
        else gen = got;
    }
    free(b.p);
    free(r);
    return NULL;
}

/* ------------------------------------------------------------------ scrapes */

/* One exposition line: name, optional {labels}, a space, a number, an optional timestamp. */
static int sample_line_ok(const char *s, size_t n) {
    size_t i = 0;
    if (i >= n || !(isalpha((unsigned char)s[i]) || s[i] == '_' || s[i] == ':')) return 0;
    while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':')) i++;
    if (i < n && s[i] == '{') {
        i++;
        int in_str = 0;
        while (i < n) {
            char c = s[i];
            if (in_str) {
                if (c == '\\') i++;
                else if (c == '"') in_str = 0;
            } else if (c == '"') in_str = 1;
            else if (c == '}') break;
            i++;
        }
        if (i >= n) return 0;
        i++;
    }
    if (i >= n || s[i] != ' ') return 0;
    i++;
    char num[64];
    size_t j = 0;
    while (i < n && s[i] != ' ' && j < sizeof num - 1) num[j++] = s[i++];
    num[j] = 0;
    if (j == 0) return 0;
    char *end;
    (void)strtod(num, &end);
    if (*end != 0) return 0;
    if (i < n) { /* timestamp */
        i++;
        if (i >= n) return 0;
        while (i < n)
            if (!isdigit((unsigned char)s[i++]) && s[i - 1] != '-') return 0;
    }
    return 1;
}

static const char *check_exposition(const struct body *b) {
    if (b->len == 0 || b->p[b->len - 1] != '\n') return "empty or not ending in a newline";
    int has_nodes = 0, has_fds = 0;
    const char *p = b->p, *end = b->p + b->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)(nl - p);
        if (n > 0 && p[0] != '#') {
            if (!sample_line_ok(p, n)) return "a malformed sample line";
            if (n > 11 && !strncmp(p, "epmd_nodes{", 11)) has_nodes = 1;
            if (n > 17 && !strncmp(p, "process_open_fds ", 17)) has_fds = 1;
        }
        p = nl + 1;
    }
    if (!has_nodes) return "no epmd_nodes sample";
    if (!has_fds) return "no process_open_fds sample";
    return NULL;
}

static void *scrape_main(void *arg) {
    (void)arg;
    uint64_t step = (uint64_t)(opt.scrape_interval * 1e9);
    uint64_t next = now_ns();
    struct body b = {0};
    struct reader *r = malloc(sizeof *r);
    if (!r) die("out of memory");
    const char *accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1";
    while (!stopping()) {
        sleep_until(next);
        next += step;
        if (stopping()) break;
        int fd = connect_from("127.0.0.6", opt.http_port, opt.timeout_ms);
        atomic_fetch_add(&n_scrapes, 1);
        if (fd < 0) {
            error_at(K_SCRAPE, "connect failed: %s", strerror(errno));
            continue;
        }
        r->fd = fd;
        r->off = r->len = 0;
        r->until_stop = 0;
        struct head h;
        const char *why = http_exchange(r, "/metrics", 0, accept, &h, &b, opt.timeout_ms);
        close(fd);
        if (why) error_at(K_SCRAPE, "GET /metrics: %s", why);
        else if (h.status != 200) error_at(K_SCRAPE, "GET /metrics: status %d", h.status);
        else if ((why = check_exposition(&b)) != NULL) error_at(K_SCRAPE, "GET /metrics: %s", why);
    }
    free(b.p);
    free(r);
    return NULL;
}

/* ------------------------------------------------------------------ SSE watchers */

struct stream {
    const char *label;
    int ready;
    uint64_t last_id;
    char line[1 << 16];
    size_t line_len;
    int line_overflow;
    char event[32];
    uint64_t id;
    int has_id;
    int broken; /* a protocol error was reported */
};

static void frame_done(struct stream *s) {
    if (s->event[0] == 0) { /* "retry:" alone, or comments */
        s->has_id = 0;
        return;
    }
    if (!strcmp(s->event, "reset")) {
        if (s->ready) {
            error_at(K_WATCH, "%s: a second reset (the watcher fell behind)", s->label);
            s->broken = 1;
        } else if (!s->has_id) {
            error_at(K_WATCH, "%s: reset without id", s->label);
            s->broken = 1;
        }
        s->ready = 1;
        s->last_id = s->id;
    } else if (!strcmp(s->event, "registered") || !strcmp(s->event, "unregistered")) {
        if (!s->ready) {
            error_at(K_WATCH, "%s: %s before the reset", s->label, s->event);
            s->broken = 1;
        } else if (!s->has_id || s->id != s->last_id + 1) {
            error_at(K_WATCH, "%s: %s id %llu after %llu (lost or duplicate events)", s->label, s->event,
                     (unsigned long long)s->id, (unsigned long long)s->last_id);
            s->broken = 1;
        } else {
            atomic_fetch_add(&n_events, 1);
        }
        if (s->has_id) s->last_id = s->id;
    }
    s->event[0] = 0;
    s->has_id = 0;
}

static void sse_line(struct stream *s, const char *l, size_t n) {
    if (n == 0) {
        frame_done(s);
        return;
    }
    if (l[0] == ':') return;
    if (n >= 6 && !strncmp(l, "event:", 6)) {
        size_t off = 6 + (n > 6 && l[6] == ' ');
        size_t len = n - off < sizeof s->event - 1 ? n - off : sizeof s->event - 1;
        memcpy(s->event, l + off, len);
        s->event[len] = 0;
    } else if (n >= 3 && !strncmp(l, "id:", 3)) {
        char tmp[32];
        size_t off = 3 + (n > 3 && l[3] == ' ');
        size_t len = n - off < sizeof tmp - 1 ? n - off : sizeof tmp - 1;
        memcpy(tmp, l + off, len);
        tmp[len] = 0;
        s->id = strtoull(tmp, NULL, 10);
        s->has_id = 1;
    }
}

static int sse_sink(void *ctx, const char *p, size_t n) {
    struct stream *s = ctx;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\n') {
            size_t l = s->line_len;
            if (l > 0 && s->line[l - 1] == '\r') l--;
            if (!s->line_overflow) sse_line(s, s->line, l);
            else if (l == 0) frame_done(s);
            s->line_len = 0;
            s->line_overflow = 0;
        } else if (s->line_len < sizeof s->line) {
            s->line[s->line_len++] = c;
        } else {
            s->line_overflow = 1; /* a long data line (a reset with many nodes): its content is not needed */
        }
    }
    return s->broken ? -5 : 0;
}

/* One stream: until stay_ns has passed (0: until the stop flag). Returns after closing it. */
static void watch_once(const char *label, uint64_t stay_ns) {
    struct stream *s = calloc(1, sizeof *s);
    struct reader *r = malloc(sizeof *r);
    if (!s || !r) die("out of memory");
    s->label = label;
    int fd = connect_from("127.0.0.5", opt.http_port, opt.timeout_ms);
    if (fd < 0) {
        error_at(K_WATCH, "%s: connect failed: %s", label, strerror(errno));
        free(s);
        free(r);
        usleep(100000);
        return;
    }
    atomic_fetch_add(&n_streams, 1);
    r->fd = fd;
    r->off = r->len = 0;
    r->until_stop = 1;
    r->deadline = now_ns() + (uint64_t)opt.timeout_ms * 1000000ull;
    struct head h;
    int rc;
    if (send_get(fd, "/v1/events", 1, "text/event-stream") != 0) {
        error_at(K_WATCH, "%s: write failed", label);
        goto done;
    }
    rc = read_head(r, &h);
    if (rc == -3) goto done;
    if (rc != 0 || h.status != 200 || !h.chunked) {
        if (rc != 0) error_at(K_WATCH, "%s: reading the head: %s", label, io_text(rc));
        else error_at(K_WATCH, "%s: status %d%s", label, h.status, h.chunked ? "" : " (not chunked)");
        goto done;
    }
    /* The reset must come within the request timeout; after it the stream must carry a byte (an event
     * or the 15 s ping) at least every 40 s. */
    uint64_t start = now_ns();
    uint64_t until = stay_ns ? start + stay_ns : UINT64_MAX;
    for (;;) {
        uint64_t n = now_ns();
        if (n >= until) break;
        uint64_t idle = s->ready ? 40000000000ull : (uint64_t)opt.timeout_ms * 1000000ull;
        r->deadline = n + idle < until ? n + idle : until;
        char line[256];
        ssize_t k = read_line(r, line, sizeof line);
        if (k == -3) break;
        if (k == -2 && now_ns() >= until) break;
        if (k < 0) {
            error_at(K_WATCH, "%s: the stream %s (%s)", label, s->ready ? "was dropped" : "sent no reset",
                     io_text((int)k));
            break;
        }
        char *endp;
        unsigned long size = strtoul(line, &endp, 16);
        if (endp == line) {
            error_at(K_WATCH, "%s: bad chunk size line", label);
            break;
        }
        if (size == 0) {
            error_at(K_WATCH, "%s: the server ended the stream", label);
            break;
        }
        r->deadline = now_ns() + (uint64_t)opt.timeout_ms * 1000000ull; /* a chunk, once begun, comes whole */
        rc = read_exact(r, size, sse_sink, s);
        if (rc == -5) break; /* reported by the parser */
        if (rc == 0) rc = (int)read_line(r, line, sizeof line);
        if (rc == -3) break;
        if (rc != 0) {
            error_at(K_WATCH, "%s: inside a chunk: %s", label, io_text(rc));
            break;
        }
    }
    if (!s->ready && !s->broken && !stopping() && now_ns() >= until)
        error_at(K_WATCH, "%s: no reset within its %.1f s stay", label, (double)stay_ns / 1e9);
done:
    close(fd);
    free(s);
    free(r);
}

static void *watcher_main(void *arg) {
    int i = (int)(intptr_t)arg;
    char label[64];
    snprintf(label, sizeof label, "watcher %d", i);
    while (!stopping()) { /* a dropped stream is counted, then reopened a second later */
        watch_once(label, 0);
        sleep_until(now_ns() + 1000000000ull);
    }
    return NULL;
}

static void *transient_main(void *arg) {
    int i = (int)(intptr_t)arg;
    char label[64];
    snprintf(label, sizeof label, "transient watcher %d", i);
    unsigned seed = (unsigned)(now_ns() ^ (uint64_t)i);
    while (!stopping()) {
        uint64_t stay = 500000000ull + (uint64_t)(rand_r(&seed) % 3500) * 1000000ull;
        watch_once(label, stay);
        sleep_until(now_ns() + 100000000ull);
    }
    return NULL;
}

/* ------------------------------------------------------------------ /proc samples */

struct sample {
    long rss_kb, threads, fds;
};

static struct sample take_sample(void) {
    struct sample s = {-1, -1, -1};
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", opt.server_pid);
    FILE *f = fopen(path, "r");
    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "VmRSS:", 6)) s.rss_kb = atol(line + 6);
            else if (!strncmp(line, "Threads:", 8)) s.threads = atol(line + 8);
        }
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%d/fd", opt.server_pid);
    DIR *d = opendir(path);
    if (d) {
        long n = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL && n < 10000000)
            if (e->d_name[0] != '.') n++;
        closedir(d);
        s.fds = n;
    }
    return s;
}

static long total_errors;

static void print_row(const char *row, double t) {
    struct sample s = take_sample();
    pthread_mutex_lock(&lat_mu);
    qsort(lat, lat_n, sizeof *lat, cmp_u64);
    size_t n = lat_n;
    double p50 = pct_us(lat, n, 50), p99 = pct_us(lat, n, 99);
    lat_n = 0;
    pthread_mutex_unlock(&lat_mu);
    long e[K_COUNT], sum = 0;
    for (int k = 0; k < K_COUNT; k++) {
        e[k] = atomic_exchange(&err_count[k], 0);
        sum += e[k];
    }
    total_errors += sum;
    printf("row=%s t=%.1f rss_kb=%ld fds=%ld threads=%ld lookups=%zu p50_us=%.1f p99_us=%.1f errors=%ld", row, t,
           s.rss_kb, s.fds, s.threads, n, p50, p99, sum);
    for (int k = 0; k < K_COUNT; k++) printf(" %s=%ld", kind_name[k], e[k]);
    printf(" registrations=%ld http=%ld scrapes=%ld streams=%ld events=%ld\n", atomic_exchange(&n_registrations, 0),
           atomic_exchange(&n_http, 0), atomic_exchange(&n_scrapes, 0), atomic_exchange(&n_streams, 0),
           atomic_exchange(&n_events, 0));
    fflush(stdout);
}

static void check_nodes(void) {
    for (int i = 0; i < opt.n_check; i++) {
        int rc = port_please("127.0.0.1", opt.check_names[i], NULL, 0, NULL);
        if (rc != 0) error_at(K_CHECK, "node %s: %s", opt.check_names[i], rc == 1 ? "not registered" : "lookup failed");
    }
}

/* ------------------------------------------------------------------ main */

static void parse(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc) die("every option takes a value");
        const char *v = argv[++i];
        if (!strcmp(k, "--port")) opt.port = atoi(v);
        else if (!strcmp(k, "--http-port")) opt.http_port = atoi(v);
        else if (!strcmp(k, "--server-pid")) opt.server_pid = atoi(v);
        else if (!strcmp(k, "--seconds")) opt.seconds = atof(v);
        else if (!strcmp(k, "--interval")) opt.interval = atof(v);
        else if (!strcmp(k, "--settle")) opt.settle = atof(v);
        else if (!strcmp(k, "--scrape-interval")) opt.scrape_interval = atof(v);
        else if (!strcmp(k, "--lookup-threads")) opt.lookup_threads = atoi(v);
        else if (!strcmp(k, "--lookup-rate")) opt.lookup_rate = atof(v);
        else if (!strcmp(k, "--churn-threads")) opt.churn_threads = atoi(v);
        else if (!strcmp(k, "--churn-rate")) opt.churn_rate = atof(v);
        else if (!strcmp(k, "--http-threads")) opt.http_threads = atoi(v);
        else if (!strcmp(k, "--http-rate")) opt.http_rate = atof(v);
        else if (!strcmp(k, "--watchers")) opt.watchers = atoi(v);
        else if (!strcmp(k, "--transient-watchers")) opt.transient = atoi(v);
        else if (!strcmp(k, "--timeout-ms")) opt.timeout_ms = atoi(v);
        else if (!strcmp(k, "--check-names")) {
            char *copy = strdup(v), *save = NULL;
            if (!copy) die("out of memory");
            for (char *t = strtok_r(copy, ",", &save); t && opt.n_check < 16; t = strtok_r(NULL, ",", &save))
                opt.check_names[opt.n_check++] = t;
        } else {
            fprintf(stderr, "soak: unknown option %s\n", k);
            exit(2);
        }
    }
    if (opt.port <= 0 || opt.port > 65535 || opt.http_port <= 0 || opt.http_port > 65535)
        die("--port and --http-port are required (1..65535)");
    if (opt.server_pid <= 0) die("--server-pid is required");
    if (!(opt.seconds > 0 && opt.seconds <= 86400)) die("--seconds takes (0, 86400]");
    if (!(opt.interval >= 0.5 && opt.interval <= 3600)) die("--interval takes [0.5, 3600]");
    if (!(opt.settle >= 0 && opt.settle <= 600)) die("--settle takes [0, 600]");
    if (!(opt.scrape_interval >= 0.05 && opt.scrape_interval <= 600)) die("--scrape-interval takes [0.05, 600]");
    if (opt.lookup_threads < 0 || opt.lookup_threads > 64) die("--lookup-threads takes 0..64");
    if (opt.churn_threads < 0 || opt.churn_threads > 16) die("--churn-threads takes 0..16");
    if (opt.http_threads < 0 || opt.http_threads > 16) die("--http-threads takes 0..16");
    if (opt.watchers < 0 || opt.watchers > 100) die("--watchers takes 0..100");
    if (opt.transient < 0 || opt.transient > 16) die("--transient-watchers takes 0..16");
    if (!(opt.lookup_rate >= 0 && opt.lookup_rate <= 1e6)) die("--lookup-rate takes [0, 1e6]");
    if (!(opt.churn_rate > 0 && opt.churn_rate <= 1000)) die("--churn-rate takes (0, 1000]");
    if (!(opt.http_rate > 0 && opt.http_rate <= 10000)) die("--http-rate takes (0, 10000]");
    if (opt.timeout_ms < 100 || opt.timeout_ms > 60000) die("--timeout-ms takes 100..60000");
}

int main(int argc, char **argv) {
    parse(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* soaktarget's registration and its exact PORT2_RESP. */
    size_t nlen = strlen(TARGET);
    uint8_t *e = target_reply;
    e[0] = 119;
    e[1] = 0;
    put16(e + 2, TARGET_PORT);
    e[4] = 77;
    e[5] = 0;
    put16(e + 6, 6);
    put16(e + 8, 5);
    put16(e + 10, (unsigned)nlen);
    memcpy(e + 12, TARGET, nlen);
    put16(e + 12 + nlen, 0);
    target_reply_len = 14 + nlen;
    const char *why = NULL;
    int target_fd = alive2("127.0.0.3", TARGET, TARGET_PORT, &why);
    if (target_fd < 0) {
        fprintf(stderr, "soak: cannot register %s: %s\n", TARGET, why);
        return 1;
    }
    usleep(200000);
    check_nodes();

    uint64_t t0 = now_ns();
    print_row("0", 0);

    int nthreads = opt.lookup_threads + opt.churn_threads + opt.http_threads + opt.watchers + opt.transient + 2;
    pthread_t *tids = calloc((size_t)nthreads, sizeof *tids);
    if (!tids) die("out of memory");
    int nt = 0;
    for (int i = 0; i < opt.lookup_threads; i++) pthread_create(&tids[nt++], NULL, lookup_main, NULL);
    for (int i = 0; i < opt.churn_threads; i++) pthread_create(&tids[nt++], NULL, churn_main, (void *)(intptr_t)i);
    for (int i = 0; i < opt.http_threads; i++) pthread_create(&tids[nt++], NULL, http_main, NULL);
    for (int i = 0; i < opt.watchers; i++) pthread_create(&tids[nt++], NULL, watcher_main, (void *)(intptr_t)i);
    for (int i = 0; i < opt.transient; i++) pthread_create(&tids[nt++], NULL, transient_main, (void *)(intptr_t)i);
    pthread_create(&tids[nt++], NULL, scrape_main, NULL);
    if (opt.http_threads > 0) pthread_create(&tids[nt++], NULL, longpoll_main, NULL);

    uint64_t end = t0 + (uint64_t)(opt.seconds * 1e9);
    uint64_t step = (uint64_t)(opt.interval * 1e9);
    int row = 1;
    for (uint64_t next = t0 + step; !signalled; next += step) {
        uint64_t at = next < end ? next : end;
        while (!signalled && now_ns() < at) usleep(50000);
        if (signalled) break;
        check_nodes();
        char label[16];
        snprintf(label, sizeof label, "%d", row++);
        print_row(label, (double)(now_ns() - t0) / 1e9);
        if (at >= end) break;
    }
    atomic_store(&stop_flag, 1);
    for (int i = 0; i < nt; i++) pthread_join(tids[i], NULL);
    free(tids);
    /* What finished after the last row is not counted in the end row (its errors are). */
    pthread_mutex_lock(&lat_mu);
    lat_n = 0;
    pthread_mutex_unlock(&lat_mu);
    atomic_store(&n_registrations, 0);
    atomic_store(&n_http, 0);
    atomic_store(&n_scrapes, 0);
    atomic_store(&n_streams, 0);
    atomic_store(&n_events, 0);
    /* After the load: every connection of ours is closed but soaktarget's (and the real nodes'). */
    uint64_t settle_end = now_ns() + (uint64_t)(opt.settle * 1e9);
    while (!signalled && now_ns() < settle_end) usleep(50000);
    atomic_store(&stop_flag, 0); /* check_nodes reads no stop flag; it is bounded by --timeout-ms */
    check_nodes();
    print_row("end", (double)(now_ns() - t0) / 1e9);
    close(target_fd);
    long late = 0;
    for (int k = 0; k < K_COUNT; k++) late += atomic_load(&err_count[k]);
    return (total_errors + late == 0 && !signalled) ? 0 : 1;
}
