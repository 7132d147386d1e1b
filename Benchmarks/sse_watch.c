/*
 * sse_watch: N Server-Sent-Events watchers in one process (scripts/bench-events).
 *
 * Opens --connections HTTP/1.1 connections to 127.0.0.1:--port, sends on each
 *     GET /v1/events HTTP/1.1 / Accept: text/event-stream
 * and follows every stream with one epoll loop: the response head, the chunked transfer
 * encoding (libmicrohttpd sends the stream chunked; a stream without it is read as is), and
 * the SSE frames in it ("event:", "id:", "data:" lines, a blank line ends a frame, lines
 * starting with ":" are comments, i.e. the server's heartbeats).
 *
 *   sse_watch --port H [--connections N] [--seconds S] [--expect-events E]
 *             [--ready-file F] [--path P] [--src A.B.C.D]
 *
 *   --connections N    watchers (default 100)
 *   --seconds S        hard bound on the whole run (default 60); SIGTERM/SIGINT end it early
 *   --expect-events E  events (after the initial reset) every watcher must receive; the run ends
 *                      as soon as every watcher has them.  0 (default): no expectation, run until
 *                      --seconds or a signal (idle watchers).
 *   --ready-file F     written (atomically) once every watcher has its initial "event: reset"
 *                      (or, earlier, once every one has it or has ended: then ready < N)
 *   --path P           request path (default /v1/events)
 *   --src A.B.C.D      bind the connections to that source address
 *
 * Every stream must start with a "reset" frame (id G, the registry generation); after it,
 * every "registered"/"unregistered" frame must carry id G+1, G+2, ... exactly once and in
 * order.  A frame whose id skips ahead counts the skipped ids as lost; an id at or below the
 * last one seen counts as a duplicate; a later "reset" (the watcher fell behind the server's
 * event buffer) counts as a reset.  With --expect-events, ids a watcher never received by
 * the end count as lost too.
 *
 * Delivery latency of an event = the watcher's CLOCK_REALTIME when read() returned the bytes
 * that completed the frame, minus the event's "time" (RFC 3339 UTC, the moment the registry
 * recorded the change) from its data JSON.  Percentiles are nearest-rank over every event
 * received by every watcher.  event_span_ms = last minus first of those "time" values (how long
 * the registry took to produce the events).
 *
 * Prints one "key=value ..." line on stdout.  Exit status: 0 when every watcher got a 200
 * stream, its reset, no lost/duplicate id, no later reset, no protocol error, (with
 * --expect-events) all expected events and no unexpected end of stream; 1 otherwise; 2 on
 * usage errors.
 *
 * Build: cc -O2 -Wall -Wextra -pthread -o sse_watch sse_watch.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 10000
#define MAX_HEAD 16384
#define MAX_LINE (64u << 20)   /* longest SSE line accepted (a reset frame lists every node) */
#define MAX_LAT 50000000L      /* latency samples kept */

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

static void die(const char *msg) {
    fprintf(stderr, "sse_watch: %s\n", msg);
    exit(2);
}

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t real_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ------------------------------------------------------------- connection state */

enum phase { P_CONNECTING, P_HEAD, P_BODY, P_DONE };
enum chunk_state { C_SIZE, C_DATA, C_DATA_CR, C_DATA_LF, C_TRAILER };

struct conn {
    int fd;
    enum phase phase;
    /* response head */
    char head[MAX_HEAD];
    size_t head_len;
    int status;
    int chunked;
    /* chunked decoder */
    enum chunk_state cs;
    char size_line[64];
    size_t size_len;
    uint64_t chunk_left;
    /* SSE line and frame */
    char *line;
    size_t line_len, line_cap;
    char event[64];
    int has_id;
    uint64_t id;
    char *data;
    size_t data_len, data_cap;
    int frame_fields;
    /* results */
    int ready;          /* got the initial reset */
    uint64_t reset_id;  /* its id (registry generation) */
    uint64_t next_id;   /* id expected next */
    uint64_t first_id, last_id;
    long events;        /* distinct in-order events after the reset */
    long lost, dup, resets, heartbeats, other, proto_err;
    int closed_early;   /* stream ended (EOF, error, last chunk) */
    int io_err;
};

struct opts {
    int port;
    int conns;
    double seconds;
    long expect;
    const char *ready_file;
    const char *path;
    const char *src;
};

static struct conn *conns;
static int n_conns;
static int n_ready;
static int ready_written;
static struct opts o;
static int64_t *lat;   /* ns */
static long n_lat;
static long n_negative;
static long n_bad_time;
static int64_t ev_time_min = INT64_MAX, ev_time_max = INT64_MIN; /* registry times of the events seen */
static int64_t recv_real; /* CLOCK_REALTIME of the read() being parsed */
static uint64_t bytes_total;

static void write_ready_file(int64_t t_ready_ms) {
    if (!o.ready_file) return;
    uint64_t rmin = UINT64_MAX, rmax = 0;
    for (int i = 0; i < n_conns; i++) {
        if (!conns[i].ready) continue;
        if (conns[i].reset_id < rmin) rmin = conns[i].reset_id;
        if (conns[i].reset_id > rmax) rmax = conns[i].reset_id;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", o.ready_file);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    int failed = 0, status = 0;
    for (int i = 0; i < n_conns; i++) {
        if (conns[i].ready) continue;
        failed++;
        if (conns[i].status) status = conns[i].status;
    }
    fprintf(f, "ready=%d failed=%d last_bad_status=%d reset_id_min=%llu reset_id_max=%llu ready_ms=%lld\n", n_ready,
            failed, status, (unsigned long long)rmin, (unsigned long long)rmax, (long long)t_ready_ms);
    fclose(f);
    rename(tmp, o.ready_file);
}

/* "2026-11-23T08:40:31.661335Z" -> ns since the epoch; 0 on a malformed value. */
static int parse_rfc3339(const char *s, size_t len, int64_t *out) {
    if (len < 20) return 0;
    for (int i = 0; i < 19; i++) {
        if (i == 4 || i == 7) {
            if (s[i] != '-') return 0;
        } else if (i == 10) {
            if (s[i] != 'T' && s[i] != 't') return 0;
        } else if (i == 13 || i == 16) {
            if (s[i] != ':') return 0;
        } else if (!isdigit((unsigned char)s[i])) {
            return 0;
        }
    }
#define D2(p) ((s[p] - '0') * 10 + (s[(p) + 1] - '0'))
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = D2(0) * 100 + D2(2) - 1900;
    tm.tm_mon = D2(5) - 1;
    tm.tm_mday = D2(8);
    tm.tm_hour = D2(11);
    tm.tm_min = D2(14);
    tm.tm_sec = D2(17);
#undef D2
    size_t i = 19;
    int64_t frac = 0;
    int digits = 0;
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && isdigit((unsigned char)s[i])) {
            if (digits < 9) {
                frac = frac * 10 + (s[i] - '0');
                digits++;
            }
            i++;
        }
        if (digits == 0) return 0;
    }
    while (digits < 9) {
        frac *= 10;
        digits++;
    }
    if (i >= len || (s[i] != 'Z' && s[i] != 'z')) return 0; /* the server writes UTC */
    time_t t = timegm(&tm);
    if (t == (time_t)-1) return 0;
    *out = (int64_t)t * 1000000000LL + frac;
    return 1;
}

static void record_latency(struct conn *c) {
    static const char key[] = "\"time\":\"";
    if (!c->data) {
        n_bad_time++;
        return;
    }
    const char *p = memmem(c->data, c->data_len, key, sizeof key - 1);
    if (!p) {
        n_bad_time++;
        return;
    }
    p += sizeof key - 1;
    const char *end = memchr(p, '"', c->data_len - (size_t)(p - c->data));
    int64_t t;
    if (!end || !parse_rfc3339(p, (size_t)(end - p), &t)) {
        n_bad_time++;
        return;
    }
    if (t < ev_time_min) ev_time_min = t;
    if (t > ev_time_max) ev_time_max = t;
    int64_t d = recv_real - t;
    if (d < 0) n_negative++;
    if (n_lat < MAX_LAT) {
        lat[n_lat++] = d;
    }
}

static void dispatch_frame(struct conn *c) {
    if (c->frame_fields == 0) return; /* blank line with nothing before it */
    const char *ev = c->event[0] ? c->event : "message";
    if (!strcmp(ev, "reset")) {
        if (!c->has_id) {
            c->proto_err++;
        } else if (!c->ready) {
            c->ready = 1;
            c->reset_id = c->id;
            c->next_id = c->id + 1;
            n_ready++;
        } else {
            c->resets++;
            c->next_id = c->id + 1;
        }
    } else if (!strcmp(ev, "registered") || !strcmp(ev, "unregistered")) {
        if (!c->ready || !c->has_id) {
            c->proto_err++;
        } else if (c->id == c->next_id) {
            if (c->events == 0) c->first_id = c->id;
            c->last_id = c->id;
            c->events++;
            c->next_id++;
            record_latency(c);
        } else if (c->id > c->next_id) {
            c->lost += (long)(c->id - c->next_id);
            if (c->events == 0) c->first_id = c->id;
            c->last_id = c->id;
            c->events++;
            c->next_id = c->id + 1;
            record_latency(c);
        } else {
            c->dup++;
        }
    } else {
        c->other++;
    }
    c->event[0] = 0;
    c->has_id = 0;
    c->data_len = 0;
    c->frame_fields = 0;
}

static void grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t n = *cap ? *cap : 1024;
    while (n < need) n *= 2;
    char *b = realloc(*buf, n);
    if (!b) die("out of memory");
    *buf = b;
    *cap = n;
}

/* One complete SSE line (without its line terminator). */
static void sse_line(struct conn *c, char *line, size_t len) {
    if (len > 0 && line[len - 1] == '\r') len--;
    if (len == 0) {
        dispatch_frame(c);
        return;
    }
    if (line[0] == ':') {
        c->heartbeats++;
        return;
    }
    const char *colon = memchr(line, ':', len);
    size_t flen = colon ? (size_t)(colon - line) : len;
    const char *val = colon ? colon + 1 : line + len;
    size_t vlen = colon ? len - flen - 1 : 0;
    if (vlen > 0 && *val == ' ') {
        val++;
        vlen--;
    }
    if (flen == 5 && !memcmp(line, "event", 5)) {
        c->frame_fields++;
        size_t n = vlen < sizeof c->event - 1 ? vlen : sizeof c->event - 1;
        memcpy(c->event, val, n);
        c->event[n] = 0;
    } else if (flen == 2 && !memcmp(line, "id", 2)) {
        c->frame_fields++;
        char tmp[32];
        if (vlen == 0 || vlen >= sizeof tmp) {
            c->proto_err++;
            return;
        }
        memcpy(tmp, val, vlen);
        tmp[vlen] = 0;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(tmp, &end, 10);
        if (errno || *end) {
            c->proto_err++;
            return;
        }
        c->id = v;
        c->has_id = 1;
    } else if (flen == 4 && !memcmp(line, "data", 4)) {
        c->frame_fields++;
        size_t need = c->data_len + (c->data_len ? 1 : 0) + vlen + 1;
        grow(&c->data, &c->data_cap, need);
        if (c->data_len) c->data[c->data_len++] = '\n';
        memcpy(c->data + c->data_len, val, vlen);
        c->data_len += vlen;
        c->data[c->data_len] = 0;
    }
    /* "retry" and unknown fields: ignored, as the spec says (a frame of only those is not an event) */
}

/* Body bytes (after de-chunking) into the SSE line parser. */
static void sse_bytes(struct conn *c, const char *p, size_t n) {
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (c->line_len + take > MAX_LINE) {
            c->proto_err++;
            c->line_len = 0;
            c->phase = P_DONE;
            c->closed_early = 1;
            return;
        }
        if (nl && c->line_len == 0) {
            sse_line(c, (char *)p, take); /* whole line in the read buffer: no copy */
        } else {
            grow(&c->line, &c->line_cap, c->line_len + take + 1);
            memcpy(c->line + c->line_len, p, take);
            c->line_len += take;
            if (nl) {
                sse_line(c, c->line, c->line_len);
                c->line_len = 0;
            }
        }
        if (!nl) return;
        p += take + 1;
        n -= take + 1;
    }
}

/* Body bytes as they come off the socket: chunked decoding when the response is chunked. */
static void body_bytes(struct conn *c, const char *p, size_t n) {
    if (!c->chunked) {
        sse_bytes(c, p, n);
        return;
    }
    while (n > 0 && c->phase == P_BODY) {
        switch (c->cs) {
        case C_SIZE: {
            char ch = *p++;
            n--;
            if (ch == '\n') {
                c->size_line[c->size_len] = 0;
                char *end;
                errno = 0;
                unsigned long long v = strtoull(c->size_line, &end, 16);
                if (errno || end == c->size_line || (*end && *end != ';' && *end != '\r' && *end != ' ')) {
                    c->proto_err++;
                    c->phase = P_DONE;
                    c->closed_early = 1;
                    return;
                }
                c->size_len = 0;
                if (v == 0) {
                    c->cs = C_TRAILER; /* last chunk: the server ended the stream */
                    c->phase = P_DONE;
                    c->closed_early = 1;
                    return;
                }
                c->chunk_left = v;
                c->cs = C_DATA;
            } else if (c->size_len < sizeof c->size_line - 1) {
                c->size_line[c->size_len++] = ch;
            } else {
                c->proto_err++;
                c->phase = P_DONE;
                c->closed_early = 1;
                return;
            }
            break;
        }
        case C_DATA: {
            size_t take = n < c->chunk_left ? n : (size_t)c->chunk_left;
            sse_bytes(c, p, take);
            p += take;
            n -= take;
            c->chunk_left -= take;
            if (c->chunk_left == 0) c->cs = C_DATA_CR;
            break;
        }
        case C_DATA_CR:
            if (*p == '\r') {
                p++;
                n--;
                c->cs = C_DATA_LF;
                break;
            }
            c->cs = C_DATA_LF; /* tolerate a bare LF */
            break;
        case C_DATA_LF:
            if (*p != '\n') {
                c->proto_err++;
                c->phase = P_DONE;
                c->closed_early = 1;
                return;
            }
            p++;
            n--;
            c->cs = C_SIZE;
            break;
        case C_TRAILER:
            return;
        }
    }
}

/* Response head complete in c->head[0..end); the rest of the buffer is body. */
static int parse_head(struct conn *c, size_t end) {
    c->head[end - 1] = 0;
    if (strncmp(c->head, "HTTP/1.", 7) != 0) return -1;
    const char *sp = strchr(c->head, ' ');
    if (!sp) return -1;
    c->status = atoi(sp + 1);
    char *line = strstr(c->head, "\r\n");
    while (line && line[2]) {
        line += 2;
        char *next = strstr(line, "\r\n");
        if (next) *next = 0;
        if (!strncasecmp(line, "transfer-encoding:", 18)) {
            if (strcasestr(line + 18, "chunked")) c->chunked = 1;
        }
        if (!next) break;
        *next = '\r';
        line = next;
    }
    return 0;
}

static void conn_finish(int ep, struct conn *c) {
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->phase = P_DONE;
}

static int send_request(struct conn *c) {
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\nUser-Agent: sse_watch\r\n\r\n",
                     o.path, o.port);
    if (n <= 0 || (size_t)n >= sizeof req) return -1;
    ssize_t w = send(c->fd, req, (size_t)n, MSG_NOSIGNAL);
    return w == n ? 0 : -1; /* a fresh socket's buffer takes a few hundred bytes at once */
}

static void on_readable(int ep, struct conn *c, char *buf, size_t cap) {
    ssize_t n = read(c->fd, buf, cap);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        c->io_err = 1;
        c->closed_early = 1;
        conn_finish(ep, c);
        return;
    }
    if (n == 0) {
        c->closed_early = 1;
        conn_finish(ep, c);
        return;
    }
    recv_real = real_ns();
    bytes_total += (uint64_t)n;
    size_t off = 0;
    if (c->phase == P_HEAD) {
        size_t room = sizeof c->head - 1 - c->head_len;
        size_t take = (size_t)n < room ? (size_t)n : room;
        memcpy(c->head + c->head_len, buf, take);
        size_t old = c->head_len;
        c->head_len += take;
        c->head[c->head_len] = 0;
        char *e = strstr(c->head, "\r\n\r\n");
        if (!e) {
            if (c->head_len >= sizeof c->head - 1) {
                c->proto_err++;
                c->closed_early = 1;
                conn_finish(ep, c);
            }
            return;
        }
        size_t head_end = (size_t)(e - c->head) + 4;
        if (parse_head(c, head_end) != 0 || c->status != 200) {
            if (c->status == 0) c->proto_err++;
            c->closed_early = 1;
            conn_finish(ep, c);
            return;
        }
        c->phase = P_BODY;
        c->cs = C_SIZE;
        off = head_end - old;
    }
    if (c->phase == P_BODY && off < (size_t)n) body_bytes(c, buf + off, (size_t)n - off);
    if (c->phase == P_DONE) conn_finish(ep, c);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(const int64_t *v, long n, double p) {
    if (n <= 0) return 0.0;
    long rank = (long)(p / 100.0 * (double)n + 0.999999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return (double)v[rank - 1] / 1000.0;
}

static void parse_opts(int argc, char **argv) {
    memset(&o, 0, sizeof o);
    o.conns = 100;
    o.seconds = 60;
    o.path = "/v1/events";
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "sse_watch: option %s needs a value\n", k);
            exit(2);
        }
        const char *v = argv[++i];
        if (!strcmp(k, "--port")) o.port = atoi(v);
        else if (!strcmp(k, "--connections")) o.conns = atoi(v);
        else if (!strcmp(k, "--seconds")) o.seconds = atof(v);
        else if (!strcmp(k, "--expect-events")) o.expect = atol(v);
        else if (!strcmp(k, "--ready-file")) o.ready_file = v;
        else if (!strcmp(k, "--path")) o.path = v;
        else if (!strcmp(k, "--src")) o.src = v;
        else {
            fprintf(stderr, "sse_watch: unknown option %s\n", k);
            exit(2);
        }
    }
    if (o.port <= 0 || o.port > 65535) die("--port required (1..65535)");
    if (o.conns < 1 || o.conns > MAX_CONNS) die("--connections must be 1..10000");
    if (!(o.seconds > 0) || o.seconds > 86400) die("--seconds must be in (0, 86400]");
    if (o.expect < 0) die("--expect-events must be >= 0");
    if (o.path[0] != '/' || strpbrk(o.path, " \r\n")) die("--path must start with / and have no spaces");
}

int main(int argc, char **argv) {
    parse_opts(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }

    n_conns = o.conns;
    conns = calloc((size_t)n_conns, sizeof *conns);
    long lat_cap = o.expect > 0 ? o.expect * n_conns + 1024 : 1L << 20;
    if (lat_cap > MAX_LAT) lat_cap = MAX_LAT;
    lat = malloc((size_t)lat_cap * sizeof *lat);
    if (!conns || !lat) die("out of memory");
    memset(lat, 0, (size_t)lat_cap * sizeof *lat); /* fault the pages in now, not during the run */
    in_addr_t src = 0;
    if (o.src) {
        struct in_addr a;
        if (inet_pton(AF_INET, o.src, &a) != 1) die("--src must be an IPv4 address");
        src = a.s_addr;
    }

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1 failed");
    int64_t t0 = mono_ns();
    int64_t deadline = t0 + (int64_t)(o.seconds * 1e9);
    int64_t t_ready = -1;
    int connect_failed = 0;

    for (int i = 0; i < n_conns; i++) {
        struct conn *c = &conns[i];
        c->fd = -1;
        c->phase = P_DONE;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            connect_failed++;
            c->closed_early = 1;
            continue;
        }
        if (src) {
            int one = 1;
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            struct sockaddr_in s = {.sin_family = AF_INET, .sin_addr.s_addr = src};
            if (bind(fd, (struct sockaddr *)&s, sizeof s) != 0) {
                close(fd);
                connect_failed++;
                c->closed_early = 1;
                continue;
            }
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct sockaddr_in sa4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o.port)};
        sa4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&sa4, sizeof sa4) != 0 && errno != EINPROGRESS) {
            close(fd);
            connect_failed++;
            c->closed_early = 1;
            continue;
        }
        c->fd = fd;
        c->phase = P_CONNECTING;
        struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl failed");
    }

    static char buf[1 << 16];
    struct epoll_event evs[256];
    int open_conns = n_conns - connect_failed;
    long loops = 0;
    while (!stop_flag && open_conns > 0 && loops < 100000000L) {
        loops++;
        int64_t now = mono_ns();
        if (now >= deadline) break;
        if (o.expect > 0 && n_ready == n_conns) {
            int all = 1;
            for (int i = 0; i < n_conns && all; i++)
                if (conns[i].events < o.expect) all = 0;
            if (all) break;
        }
        int64_t wait_ms = (deadline - now) / 1000000 + 1;
        if (wait_ms > 100) wait_ms = 100;
        int n = epoll_wait(ep, evs, 256, (int)wait_ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait failed");
        }
        for (int k = 0; k < n; k++) {
            struct conn *c = &conns[evs[k].data.u32];
            if (c->fd < 0) continue;
            if (c->phase == P_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err != 0 || !(evs[k].events & EPOLLOUT)) {
                    c->io_err = 1;
                    c->closed_early = 1;
                    conn_finish(ep, c);
                    open_conns--;
                    continue;
                }
                if (send_request(c) != 0) {
                    c->io_err = 1;
                    c->closed_early = 1;
                    conn_finish(ep, c);
                    open_conns--;
                    continue;
                }
                c->phase = P_HEAD;
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[k].data.u32};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }
            on_readable(ep, c, buf, sizeof buf);
            if (c->fd < 0) open_conns--;
        }
        /* Ready file: once every watcher has its reset, or (to fail fast) once every one either has
         * it or has ended (e.g. 503 past the gateway's watcher cap). */
        int settled = n_ready;
        if (!ready_written && n_ready < n_conns) {
            settled = 0;
            for (int i = 0; i < n_conns; i++)
                if (conns[i].ready || conns[i].fd < 0) settled++;
        }
        if (!ready_written && settled == n_conns) {
            ready_written = 1;
            t_ready = mono_ns();
            write_ready_file((t_ready - t0) / 1000000);
        }
    }
    int64_t t_end = mono_ns();
    int timed_out = !stop_flag && t_end >= deadline;

    long events = 0, lost = 0, dup = 0, resets = 0, hb = 0, other = 0, perr = 0, closed = 0, ioerr = 0, http_ok = 0,
         short_w = 0;
    int status_bad = 0, not_chunked = 0;
    uint64_t fmin = UINT64_MAX, fmax = 0, lmin = UINT64_MAX, lmax = 0;
    long ev_min = -1, ev_max = 0;
    for (int i = 0; i < n_conns; i++) {
        struct conn *c = &conns[i];
        if (c->status == 200) http_ok++;
        else if (c->status != 0) status_bad = c->status;
        if (c->status == 200 && !c->chunked) not_chunked++;
        if (o.expect > 0 && c->events < o.expect) {
            /* never received: counted as lost */
            lost += o.expect - c->events;
            short_w++;
        }
        events += c->events;
        lost += c->lost;
        dup += c->dup;
        resets += c->resets;
        hb += c->heartbeats;
        other += c->other;
        perr += c->proto_err;
        closed += c->closed_early;
        ioerr += c->io_err;
        if (ev_min < 0 || c->events < ev_min) ev_min = c->events;
        if (c->events > ev_max) ev_max = c->events;
        if (c->events > 0) {
            if (c->first_id < fmin) fmin = c->first_id;
            if (c->first_id > fmax) fmax = c->first_id;
            if (c->last_id < lmin) lmin = c->last_id;
            if (c->last_id > lmax) lmax = c->last_id;
        }
    }
    if (fmin == UINT64_MAX) fmin = lmin = 0;
    if (ev_min < 0) ev_min = 0;
    qsort(lat, (size_t)n_lat, sizeof *lat, cmp_i64);
    printf("conns=%d http_ok=%ld ready=%d events=%ld expected=%ld events_per_watcher_min=%ld "
           "events_per_watcher_max=%ld lost=%ld dup=%ld resets=%ld short_watchers=%ld closed=%ld io_err=%ld "
           "proto_err=%ld bad_status=%d not_chunked=%d other_events=%ld heartbeats=%ld "
           "first_id_min=%llu first_id_max=%llu last_id_min=%llu last_id_max=%llu "
           "lat_n=%ld lat_bad_time=%ld lat_negative=%ld lat_min_us=%.1f lat_p50_us=%.1f lat_p90_us=%.1f "
           "lat_p99_us=%.1f lat_max_us=%.1f event_span_ms=%.1f ready_ms=%.1f secs=%.3f bytes=%llu timed_out=%d\n",
           n_conns, http_ok, n_ready, events, o.expect * n_conns, ev_min, ev_max, lost, dup, resets, short_w, closed,
           ioerr, perr, status_bad, not_chunked, other, hb, (unsigned long long)fmin, (unsigned long long)fmax,
           (unsigned long long)lmin, (unsigned long long)lmax, n_lat, n_bad_time, n_negative,
           n_lat ? (double)lat[0] / 1000.0 : 0.0, pct_us(lat, n_lat, 50), pct_us(lat, n_lat, 90),
           pct_us(lat, n_lat, 99), n_lat ? (double)lat[n_lat - 1] / 1000.0 : 0.0,
           ev_time_max >= ev_time_min ? (double)(ev_time_max - ev_time_min) / 1e6 : 0.0,
           t_ready >= 0 ? (double)(t_ready - t0) / 1e6 : -1.0, (double)(t_end - t0) / 1e9,
           (unsigned long long)bytes_total, timed_out);
    fflush(stdout);
    for (int i = 0; i < n_conns; i++) {
        if (conns[i].fd >= 0) close(conns[i].fd);
        free(conns[i].line);
        free(conns[i].data);
    }
    close(ep);
    int ok = http_ok == n_conns && n_ready == n_conns && lost == 0 && dup == 0 && resets == 0 && perr == 0 &&
             n_bad_time == 0 && connect_failed == 0;
    /* Without an expectation the streams are meant to stay open until we stop; with one, a stream
     * that ended before delivering everything already shows up as lost. */
    if (o.expect == 0 && closed > 0) ok = 0;
    return ok ? 0 : 1;
}
