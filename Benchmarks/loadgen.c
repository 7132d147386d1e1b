/*
 * loadgen: load generator for the epmd-gateway benchmark (scripts/bench).
 *
 * Speaks the epmd wire protocol (2-byte big-endian length prefix, one request per
 * connection; ALIVE2 keeps the connection open as the registration).  It works the
 * same way against any server, so C epmd and epmd-gateway are measured with one tool.
 *
 * Subcommands (every one prints a single "key=value ..." line on stdout):
 *
 *   loadgen freeport
 *       A port outside the ephemeral range that can be bound on 0.0.0.0 and [::].
 *   loadgen wait  --port P [--seconds S] [--expect-lines N]
 *       Retries NAMES until the server answers (and, with --expect-lines, until it
 *       lists exactly N nodes).
 *   loadgen hold  --port P (--name NAME | --prefix PFX --count N) [--node-port BASE]
 *                 [--ready-file F] [--max-seconds S] [--timeout-ms MS]
 *       Opens and registers the nodes (ALIVE2, HighestVersion 6), checks every
 *       reply is 76 00 <creation:u32>, writes the summary to F (atomically) and to
 *       stdout, then holds the connections until SIGTERM/SIGINT or --max-seconds.
 *       Keep this process lean: it is the one that owns up to ~19,000 sockets.
 *       --threads T (default 4) register in parallel; after that the process only waits.
 *       With --raw 1 it only connects and sends nothing (a control for the
 *       epoll baseline, which keeps such connections open).
 *   loadgen port2 --port P --name NAME --expect-port N [--threads T] [--seconds S]
 *                 [--warmup S] [--max-ops N] [--timeout-ms MS]
 *       PORT_PLEASE2 lookups, one TCP connection per lookup (socket, connect,
 *       write the framed request, read until EOF, close).  Only replies equal byte
 *       for byte to the expected PORT2_RESP count as ok.
 *   loadgen names --port P --expect-lines N [--threads T] [--seconds S]
 *                 [--warmup S] [--max-ops N] [--timeout-ms MS]
 *       NAMES requests, one connection each, read until EOF; a reply counts as ok
 *       only when it carries the 4-byte port and exactly N "name X at port N" lines.
 *
 * port2/names also take --server-pid PID: the server's CPU time (all its threads,
 * from /proc/PID/task/N/schedstat) over the measured phase is reported per request
 * (srv_cpu_us_per_op; -1 when unknown), next to the loadgen's own (cli_cpu_us_per_op).
 * On loopback part of the kernel's TCP work lands on whichever side runs it, so these
 * are for comparing servers under the same client, not absolute costs.
 *
 * Common options: --src A.B.C.D binds outgoing connections to that source address
 * (scripts/bench runs lookups from 127.0.0.2 so that they never search the source
 * ports taken by ~19,000 held registrations from 127.0.0.1; see README.md).
 *
 * Every loop is bounded both by a count (--max-ops / --count) and by time.
 * Latency of one operation = from socket() to EOF (close not included).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- helpers */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *msg) {
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(2);
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void put16(uint8_t *p, unsigned v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* Source address for outgoing connections (0: let the kernel pick 127.0.0.1). */
static in_addr_t g_src = 0;

/* Options: a tiny "--key value" parser. */
struct opts {
    int port;
    const char *name;
    const char *prefix;
    long count;
    int node_port;
    int expect_port;
    long expect_lines;
    int threads;
    double seconds;
    double warmup;
    double max_seconds;
    long max_ops;
    int timeout_ms;
    const char *ready_file;
    int raw;
    const char *src;
    int server_pid;
};

static void parse_opts(int argc, char **argv, struct opts *o) {
    memset(o, 0, sizeof *o);
    o->count = -1;
    o->node_port = 5555;
    o->expect_port = -1;
    o->expect_lines = -1;
    o->threads = 4;
    o->seconds = 3.0;
    o->warmup = 0.0;
    o->max_seconds = 600.0;
    o->max_ops = 5000000;
    o->timeout_ms = 2000;
    for (int i = 0; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "loadgen: option %s needs a value\n", k);
            exit(2);
        }
        const char *v = argv[++i];
        if (!strcmp(k, "--port")) o->port = atoi(v);
        else if (!strcmp(k, "--name")) o->name = v;
        else if (!strcmp(k, "--prefix")) o->prefix = v;
        else if (!strcmp(k, "--count")) o->count = atol(v);
        else if (!strcmp(k, "--node-port")) o->node_port = atoi(v);
        else if (!strcmp(k, "--expect-port")) o->expect_port = atoi(v);
        else if (!strcmp(k, "--expect-lines")) o->expect_lines = atol(v);
        else if (!strcmp(k, "--threads")) o->threads = atoi(v);
        else if (!strcmp(k, "--seconds")) o->seconds = atof(v);
        else if (!strcmp(k, "--warmup")) o->warmup = atof(v);
        else if (!strcmp(k, "--max-seconds")) o->max_seconds = atof(v);
        else if (!strcmp(k, "--max-ops")) o->max_ops = atol(v);
        else if (!strcmp(k, "--timeout-ms")) o->timeout_ms = atoi(v);
        else if (!strcmp(k, "--ready-file")) o->ready_file = v;
        else if (!strcmp(k, "--raw")) o->raw = atoi(v);
        else if (!strcmp(k, "--src")) o->src = v;
        else if (!strcmp(k, "--server-pid")) o->server_pid = atoi(v);
        else {
            fprintf(stderr, "loadgen: unknown option %s\n", k);
            exit(2);
        }
    }
    if (o->threads < 1 || o->threads > 256) die("--threads must be 1..256");
    if (o->max_ops < 1) die("--max-ops must be >= 1");
    if (o->timeout_ms < 1) die("--timeout-ms must be >= 1");
    if (o->src) {
        struct in_addr a;
        if (inet_pton(AF_INET, o->src, &a) != 1) die("--src must be an IPv4 address");
        g_src = a.s_addr;
    }
}

/* A blocking IPv4 connection to 127.0.0.1:port with send/receive (and so connect)
 * timeouts.  With g_src set, the socket is bound to that address with
 * IP_BIND_ADDRESS_NO_PORT, so its source port is picked at connect() time per
 * 4-tuple and does not compete with connections made from 127.0.0.1. */
static int connect_loopback(int port, int timeout_ms) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (g_src) {
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = g_src};
        if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0) {
            close(fd);
            return -1;
        }
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (;;) {
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) return fd;
        if (errno == EINTR) continue;
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
}

static int write_all(int fd, const uint8_t *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads until EOF into buf[cap]; returns the byte count, -1 on error or timeout
 * (each read is bounded by SO_RCVTIMEO, the whole reply by deadline), -2 if the
 * reply does not fit. */
static ssize_t read_to_eof(int fd, uint8_t *buf, size_t cap, uint64_t deadline) {
    size_t got = 0;
    for (;;) {
        if (now_ns() > deadline) return -1;
        if (got == cap) {
            uint8_t extra;
            ssize_t n = read(fd, &extra, 1);
            if (n == 0) return (ssize_t)got;
            if (n < 0 && errno == EINTR) continue;
            return n < 0 ? -1 : -2;
        }
        ssize_t n = read(fd, buf + got, cap - got);
        if (n == 0) return (ssize_t)got;
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        got += (size_t)n;
    }
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array, in microseconds. */
static double pct_us(const uint64_t *v, size_t n, double p) {
    if (n == 0) return 0.0;
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return (double)v[rank - 1] / 1000.0;
}

/* ------------------------------------------------------------------ freeport */

static int cmd_freeport(void) {
    srand((unsigned)(getpid() ^ now_ns()));
    for (int attempt = 0; attempt < 2000; attempt++) {
        int port = 20000 + rand() % 12000; /* below the default ephemeral range 32768.. */
        int ok = 1;
        int fd4 = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        if (fd4 < 0 || bind(fd4, (struct sockaddr *)&s4, sizeof s4) != 0) ok = 0;
        int fd6 = socket(AF_INET6, SOCK_STREAM, 0);
        if (fd6 >= 0) {
            int one = 1;
            setsockopt(fd6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
            struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
            if (bind(fd6, (struct sockaddr *)&s6, sizeof s6) != 0) ok = 0;
            close(fd6);
        }
        if (fd4 >= 0) close(fd4);
        if (ok) {
            printf("%d\n", port);
            return 0;
        }
    }
    die("no free port found");
    return 2;
}

/* ---------------------------------------------------------------- NAMES check */

/* Returns the number of well-formed lines, or -1 if the reply is malformed. */
static long count_names_lines(const uint8_t *buf, size_t len, int port) {
    if (len < 4) return -1;
    uint32_t p = ((uint32_t)buf[0] << 24) | ((uint32_t)buf[1] << 16) | ((uint32_t)buf[2] << 8) | buf[3];
    if (p != (uint32_t)port) return -1;
    long lines = 0;
    size_t i = 4;
    while (i < len) {
        const uint8_t *nl = memchr(buf + i, '\n', len - i);
        if (!nl) return -1; /* truncated last line */
        size_t llen = (size_t)(nl - (buf + i));
        if (llen < 14 || memcmp(buf + i, "name ", 5) != 0) return -1;
        if (!memmem(buf + i, llen, " at port ", 9)) return -1;
        lines++;
        i += llen + 1;
    }
    return lines;
}

static int cmd_wait(struct opts *o) {
    if (o->port <= 0) die("wait: --port required");
    double secs = o->seconds > 0 ? o->seconds : 10;
    uint64_t deadline = now_ns() + (uint64_t)(secs * 1e9);
    static uint8_t buf[1 << 20];
    const uint8_t req[3] = {0, 1, 110};
    long lines = -1;
    int tries = 0;
    while (now_ns() < deadline && tries < 100000) {
        tries++;
        int fd = connect_loopback(o->port, 500);
        if (fd >= 0) {
            if (write_all(fd, req, sizeof req) == 0) {
                ssize_t n = read_to_eof(fd, buf, sizeof buf, now_ns() + 2000000000ull);
                if (n >= 4) lines = count_names_lines(buf, (size_t)n, o->port);
            }
            close(fd);
            if (lines >= 0 && (o->expect_lines < 0 || lines == o->expect_lines)) {
                printf("ready=1 lines=%ld tries=%d\n", lines, tries);
                return 0;
            }
        }
        usleep(10000);
    }
    printf("ready=0 lines=%ld tries=%d\n", lines, tries);
    return 1;
}

/* ---------------------------------------------------------------------- hold */

static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

static int register_one(int port, const char *name, int node_port, int timeout_ms, int *fd_out) {
    size_t nlen = strlen(name);
    uint8_t req[2 + 13 + 1024];
    if (nlen > 1000) return -1;
    uint8_t *b = req + 2;
    b[0] = 120;
    put16(b + 1, (unsigned)node_port);
    b[3] = 77; /* normal node */
    b[4] = 0;  /* TCP/IPv4 */
    put16(b + 5, 6);
    put16(b + 7, 5);
    put16(b + 9, (unsigned)nlen);
    memcpy(b + 11, name, nlen);
    put16(b + 11 + nlen, 0); /* Elen = 0 */
    size_t blen = 13 + nlen;
    put16(req, (unsigned)blen);

    int fd = connect_loopback(port, timeout_ms);
    if (fd < 0) return -1;
    if (write_all(fd, req, blen + 2) != 0) {
        close(fd);
        return -1;
    }
    uint8_t rep[6];
    size_t got = 0;
    while (got < sizeof rep) {
        ssize_t n = read(fd, rep + got, sizeof rep - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            close(fd);
            return -1;
        }
        got += (size_t)n;
    }
    if (rep[0] != 118 || rep[1] != 0) {
        close(fd);
        return -2;
    }
    *fd_out = fd;
    return 0;
}

struct hold_worker {
    pthread_t tid;
    struct opts *o;
    int index, stride;
    int *fds; /* shared, one slot per node; -1 = failed */
    uint64_t deadline;
    long ok, fail_conn, fail_result;
};

/* Registers nodes index, index+stride, ... (threads only speed up the setup). */
static void *hold_main(void *arg) {
    struct hold_worker *w = arg;
    struct opts *o = w->o;
    char name[512];
    for (long i = w->index; i < o->count && !stop_flag && now_ns() < w->deadline; i += w->stride) {
        if (o->name)
            snprintf(name, sizeof name, "%s", o->name);
        else
            snprintf(name, sizeof name, "%s%ld", o->prefix, i);
        int np = o->name ? o->node_port : 1024 + (int)((o->node_port - 1024 + i) % 64000);
        int fd = -1;
        int r;
        if (o->raw) { /* control: a plain idle TCP connection, nothing sent */
            fd = connect_loopback(o->port, o->timeout_ms);
            r = fd >= 0 ? 0 : -1;
        } else {
            r = register_one(o->port, name, np, o->timeout_ms, &fd);
        }
        w->fds[i] = r == 0 ? fd : -1;
        if (r == 0)
            w->ok++;
        else if (r == -2)
            w->fail_result++;
        else
            w->fail_conn++;
    }
    return NULL;
}

static int cmd_hold(struct opts *o) {
    if (o->port <= 0) die("hold: --port required");
    if (o->name && o->count < 0) o->count = 1;
    if (o->name && o->count != 1) die("hold: --name registers exactly one node");
    if (!o->name && (!o->prefix || o->count < 1)) die("hold: --name or --prefix with --count required");
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int *fds = malloc((size_t)o->count * sizeof(int));
    if (!fds) die("out of memory");
    for (long i = 0; i < o->count; i++) fds[i] = -1;
    long ok = 0, fail_conn = 0, fail_result = 0;
    uint64_t t0 = now_ns();
    uint64_t deadline = t0 + (uint64_t)(o->max_seconds * 1e9);
    int nt = o->count < o->threads ? (int)o->count : o->threads;
    struct hold_worker *ws = calloc((size_t)nt, sizeof *ws);
    if (!ws) die("out of memory");
    for (int t = 0; t < nt; t++) {
        ws[t] = (struct hold_worker){.o = o, .index = t, .stride = nt, .fds = fds, .deadline = deadline};
        if (pthread_create(&ws[t].tid, NULL, hold_main, &ws[t]) != 0) die("pthread_create failed");
    }
    for (int t = 0; t < nt; t++) {
        pthread_join(ws[t].tid, NULL);
        ok += ws[t].ok;
        fail_conn += ws[t].fail_conn;
        fail_result += ws[t].fail_result;
    }
    free(ws);
    double ms = (double)(now_ns() - t0) / 1e6;
    char line[256];
    snprintf(line, sizeof line, "ok=%ld fail_conn=%ld fail_result=%ld attempted=%ld reg_ms=%.1f\n", ok,
             fail_conn, fail_result, ok + fail_conn + fail_result, ms);
    fputs(line, stdout);
    fflush(stdout);
    if (o->ready_file) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", o->ready_file);
        FILE *f = fopen(tmp, "w");
        if (f) {
            fputs(line, f);
            fclose(f);
            rename(tmp, o->ready_file);
        }
    }
    /* Hold until told to stop, bounded by --max-seconds. */
    while (!stop_flag && now_ns() < deadline) usleep(50000);
    for (long i = 0; i < o->count; i++)
        if (fds[i] >= 0) close(fds[i]);
    free(fds);
    return 0;
}

/* ------------------------------------------------------------ port2 / names */

/* CPU time (ns) used so far by every thread of process pid, from
 * /proc/PID/task/TID/schedstat (first field).  0 if it cannot be read. */
static uint64_t process_cpu_ns(int pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d) return 0;
    uint64_t total = 0;
    struct dirent *e;
    int guard = 0;
    while ((e = readdir(d)) != NULL && guard++ < 100000) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char p2[320];
        snprintf(p2, sizeof p2, "/proc/%d/task/%s/schedstat", pid, e->d_name);
        FILE *f = fopen(p2, "r");
        if (!f) continue;
        unsigned long long ns = 0;
        if (fscanf(f, "%llu", &ns) == 1) total += ns;
        fclose(f);
    }
    closedir(d);
    return total;
}

static uint64_t self_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

enum mode { MODE_PORT2, MODE_NAMES };

struct shared {
    enum mode mode;
    struct opts *o;
    uint8_t req[2 + 1100];
    size_t req_len;
    uint8_t expect[2048]; /* PORT2 expected reply */
    size_t expect_len;
    size_t buf_cap;
    long per_thread_max;
    pthread_barrier_t barrier;
    uint64_t warm_end;
    uint64_t deadline;
};

struct worker {
    pthread_t tid;
    struct shared *sh;
    uint64_t *lat;
    long n_ok;
    long n_conn_err;
    long n_io_err;
    long n_bad;
    uint64_t end_ns;
};

/* One request on a fresh connection.  0 ok, 1 connect error, 2 I/O error or timeout, 3 bad reply. */
static int one_request(struct shared *sh, uint8_t *buf) {
    uint64_t op_deadline = now_ns() + (uint64_t)sh->o->timeout_ms * 1000000ull;
    int fd = connect_loopback(sh->o->port, sh->o->timeout_ms);
    if (fd < 0) return 1;
    if (write_all(fd, sh->req, sh->req_len) != 0) {
        close(fd);
        return 2;
    }
    ssize_t n = read_to_eof(fd, buf, sh->buf_cap, op_deadline);
    close(fd);
    if (n == -1) return 2;
    if (n < 0) return 3;
    if (sh->mode == MODE_PORT2) {
        if ((size_t)n != sh->expect_len || memcmp(buf, sh->expect, (size_t)n) != 0) return 3;
    } else {
        if (count_names_lines(buf, (size_t)n, sh->o->port) != sh->o->expect_lines) return 3;
    }
    return 0;
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    struct shared *sh = w->sh;
    uint8_t *buf = malloc(sh->buf_cap);
    if (!buf) die("out of memory");
    pthread_barrier_wait(&sh->barrier);
    /* Warm-up: same loop, nothing recorded. */
    long warm_ops = 0;
    while (now_ns() < sh->warm_end && warm_ops < sh->per_thread_max) {
        (void)one_request(sh, buf);
        warm_ops++;
    }
    pthread_barrier_wait(&sh->barrier);
    pthread_barrier_wait(&sh->barrier);
    long ops = 0;
    while (ops < sh->per_thread_max) {
        uint64_t t0 = now_ns();
        if (t0 >= sh->deadline) break;
        int r = one_request(sh, buf);
        uint64_t t1 = now_ns();
        ops++;
        switch (r) {
        case 0: w->lat[w->n_ok++] = t1 - t0; break;
        case 1: w->n_conn_err++; usleep(1000); break;
        case 2: w->n_io_err++; break;
        default: w->n_bad++; break;
        }
    }
    w->end_ns = now_ns();
    free(buf);
    return NULL;
}

static int cmd_load(enum mode mode, struct opts *o) {
    if (o->port <= 0) die("--port required");
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    struct shared *sh = calloc(1, sizeof *sh);
    if (!sh) die("out of memory");
    sh->mode = mode;
    sh->o = o;
    if (mode == MODE_PORT2) {
        if (!o->name || o->expect_port < 0) die("port2: --name and --expect-port required");
        size_t nlen = strlen(o->name);
        if (nlen < 1 || nlen > 1000) die("port2: bad name length");
        put16(sh->req, (unsigned)(nlen + 1));
        sh->req[2] = 122;
        memcpy(sh->req + 3, o->name, nlen);
        sh->req_len = 3 + nlen;
        /* 119 0 port type proto high low nlen name elen */
        uint8_t *e = sh->expect;
        e[0] = 119;
        e[1] = 0;
        put16(e + 2, (unsigned)o->expect_port);
        e[4] = 77;
        e[5] = 0;
        put16(e + 6, 6);
        put16(e + 8, 5);
        put16(e + 10, (unsigned)nlen);
        memcpy(e + 12, o->name, nlen);
        put16(e + 12 + nlen, 0);
        sh->expect_len = 14 + nlen;
        sh->buf_cap = 4096;
    } else {
        if (o->expect_lines < 0) die("names: --expect-lines required");
        sh->req[0] = 0;
        sh->req[1] = 1;
        sh->req[2] = 110;
        sh->req_len = 3;
        sh->buf_cap = 4096 + (size_t)o->expect_lines * 1100;
    }
    int nt = o->threads;
    sh->per_thread_max = (o->max_ops + nt - 1) / nt;
    pthread_barrier_init(&sh->barrier, NULL, (unsigned)nt + 1);
    struct worker *ws = calloc((size_t)nt, sizeof *ws);
    if (!ws) die("out of memory");
    for (int i = 0; i < nt; i++) {
        ws[i].sh = sh;
        ws[i].lat = malloc((size_t)sh->per_thread_max * sizeof(uint64_t));
        if (!ws[i].lat) die("out of memory");
        /* Touch the latency buffer now so page faults do not land inside the measurement. */
        memset(ws[i].lat, 0, (size_t)sh->per_thread_max * sizeof(uint64_t));
        if (pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]) != 0) die("pthread_create failed");
    }
    sh->warm_end = now_ns() + (uint64_t)(o->warmup * 1e9);
    pthread_barrier_wait(&sh->barrier); /* 1: go, warm-up */
    pthread_barrier_wait(&sh->barrier); /* 2: every worker is through the warm-up */
    uint64_t srv0 = o->server_pid > 0 ? process_cpu_ns(o->server_pid) : 0;
    uint64_t cli0 = self_cpu_ns();
    uint64_t start = now_ns();
    sh->deadline = start + (uint64_t)(o->seconds * 1e9);
    pthread_barrier_wait(&sh->barrier); /* 3: measured phase (the barrier publishes deadline) */
    for (int i = 0; i < nt; i++) pthread_join(ws[i].tid, NULL);
    uint64_t srv1 = o->server_pid > 0 ? process_cpu_ns(o->server_pid) : 0;
    uint64_t cli1 = self_cpu_ns();
    uint64_t end = 0;
    long ok = 0, cerr = 0, ioerr = 0, bad = 0;
    for (int i = 0; i < nt; i++) {
        ok += ws[i].n_ok;
        cerr += ws[i].n_conn_err;
        ioerr += ws[i].n_io_err;
        bad += ws[i].n_bad;
        if (ws[i].end_ns > end) end = ws[i].end_ns;
    }
    uint64_t *all = malloc((size_t)(ok > 0 ? ok : 1) * sizeof(uint64_t));
    if (!all) die("out of memory");
    size_t k = 0;
    for (int i = 0; i < nt; i++) {
        memcpy(all + k, ws[i].lat, (size_t)ws[i].n_ok * sizeof(uint64_t));
        k += (size_t)ws[i].n_ok;
    }
    qsort(all, k, sizeof(uint64_t), cmp_u64);
    double secs = end > start ? (double)(end - start) / 1e9 : 0.0;
    long ops = ok + cerr + ioerr + bad;
    double srv_us_op = (o->server_pid > 0 && srv1 >= srv0 && srv0 > 0 && ops > 0)
                           ? (double)(srv1 - srv0) / 1000.0 / (double)ops
                           : -1.0;
    double cli_us_op = ops > 0 ? (double)(cli1 - cli0) / 1000.0 / (double)ops : -1.0;
    printf("ok=%ld conn_err=%ld io_err=%ld bad=%ld secs=%.3f rate=%.1f "
           "p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f threads=%d "
           "srv_cpu_us_per_op=%.2f cli_cpu_us_per_op=%.2f\n",
           ok, cerr, ioerr, bad, secs, secs > 0 ? (double)ok / secs : 0.0, pct_us(all, k, 50),
           pct_us(all, k, 90), pct_us(all, k, 99), pct_us(all, k, 99.9), k ? (double)all[k - 1] / 1000.0 : 0.0,
           nt, srv_us_op, cli_us_op);
    return (ok > 0 && bad == 0) ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: loadgen freeport|wait|hold|port2|names [--option value]...\n");
        return 2;
    }
    struct opts o;
    const char *cmd = argv[1];
    if (!strcmp(cmd, "freeport")) return cmd_freeport();
    parse_opts(argc - 2, argv + 2, &o);
    if (!strcmp(cmd, "wait")) return cmd_wait(&o);
    if (!strcmp(cmd, "hold")) return cmd_hold(&o);
    if (!strcmp(cmd, "port2")) return cmd_load(MODE_PORT2, &o);
    if (!strcmp(cmd, "names")) return cmd_load(MODE_NAMES, &o);
    fprintf(stderr, "loadgen: unknown command %s\n", cmd);
    return 2;
}
