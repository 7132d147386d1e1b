/*
 * mhd_baseline: the ceiling for the gateway's HTTP front (scripts/bench-http).
 *
 * A minimal libmicrohttpd server started with the SAME daemon flags and options as the
 * gateway (Sources/CMicroHTTPD/shim.h, Sources/GatewayHTTP/MicroHTTPD/MicroHTTPDServer.swift):
 * MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME, MHD_OPTION_CONNECTION_LIMIT 1024,
 * MHD_OPTION_CONNECTION_TIMEOUT 30, MHD_OPTION_NOTIFY_COMPLETED, MHD_OPTION_THREAD_POOL_SIZE
 * when -threads > 1, MHD_OPTION_SOCK_ADDR (IPv4 address -address, port -port).
 *
 * Every request is answered (on the second access callback, as the gateway does: answering on the
 * first one would turn keep-alive off) with 200, "Content-Type: application/json" and a fixed body
 * (one response object, created at start and reused): no routing, no registry, no copies.
 * So it shows what libmicrohttpd itself allows on this machine for a reply of that size.
 *
 *   mhd_baseline -port P [-address 127.0.0.1] [-threads N]
 *                [-body FILE | -size N] [-list-body FILE] [-max-seconds S]
 *
 *   -body FILE       body for every path (scripts/bench-http passes the gateway's own
 *                    GET /v1/nodes/{name} reply, so the size is the same byte for byte)
 *   -size N          instead of -body: N bytes of JSON-looking filler (default 256)
 *   -list-body FILE  body for exactly "/v1/nodes" (the gateway's 1,000-node list)
 *   -max-seconds S   exit after S seconds in any case (default 3600); SIGTERM/SIGINT stop it
 *
 * Build: cc -O2 -Wall -o mhd_baseline mhd_baseline.c -lmicrohttpd
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static struct MHD_Response *node_response;
static struct MHD_Response *list_response;

static void die(const char *msg) {
    fprintf(stderr, "mhd_baseline: %s\n", msg);
    exit(2);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open body file");
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) die("out of memory");
    for (;;) {
        if (n == cap) {
            cap *= 2;
            if (cap > (64u << 20)) die("body file too large");
            buf = realloc(buf, cap);
            if (!buf) die("out of memory");
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0) break;
        n += got;
    }
    fclose(f);
    *len = n;
    return buf;
}

static struct MHD_Response *make_response(char *body, size_t len) {
    /* PERSISTENT: the buffer lives as long as the process; the response is reused for every request. */
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_PERSISTENT);
    if (!r) die("MHD_create_response_from_buffer failed");
    if (MHD_add_response_header(r, "Content-Type", "application/json") != MHD_YES) die("add header failed");
    return r;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *connection, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls) {
    (void)cls; (void)method; (void)version; (void)upload_data;
    if (*con_cls == NULL) {
        /* First call: headers only. Like the gateway, answer on the next call: a response queued
         * now would make libmicrohttpd close the connection (no keep-alive). */
        *con_cls = (void *)1;
        return MHD_YES;
    }
    if (*upload_data_size > 0) { /* no endpoint takes a body: discard it */
        *upload_data_size = 0;
        return MHD_YES;
    }
    struct MHD_Response *r = (list_response && url && strcmp(url, "/v1/nodes") == 0) ? list_response : node_response;
    return MHD_queue_response(connection, MHD_HTTP_OK, r);
}

static void completed_cb(void *cls, struct MHD_Connection *connection, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls; (void)connection; (void)toe;
    if (con_cls) *con_cls = NULL;
}

int main(int argc, char **argv) {
    int port = -1, threads = 1;
    long size = 256;
    double max_seconds = 3600;
    const char *address = "127.0.0.1", *body_path = NULL, *list_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc) die("option without a value");
        const char *v = argv[++i];
        if (!strcmp(k, "-port")) port = atoi(v);
        else if (!strcmp(k, "-address")) address = v;
        else if (!strcmp(k, "-threads")) threads = atoi(v);
        else if (!strcmp(k, "-body")) body_path = v;
        else if (!strcmp(k, "-size")) size = atol(v);
        else if (!strcmp(k, "-list-body")) list_path = v;
        else if (!strcmp(k, "-max-seconds")) max_seconds = atof(v);
        else die("unknown option (see the top of mhd_baseline.c)");
    }
    if (port <= 0 || port > 65535) die("-port required");
    if (threads < 1 || threads > 64) die("-threads must be 1..64");

    char *body;
    size_t body_len;
    if (body_path) {
        body = read_file(body_path, &body_len);
    } else {
        if (size < 2 || size > (1 << 24)) die("-size must be 2..16M");
        body_len = (size_t)size;
        body = malloc(body_len);
        if (!body) die("out of memory");
        memset(body, 'x', body_len);
        body[0] = '{';
        body[body_len - 2] = '}';
        body[body_len - 1] = '\n';
    }
    node_response = make_response(body, body_len);
    if (list_path) {
        size_t list_len;
        char *list = read_file(list_path, &list_len);
        list_response = make_response(list, list_len);
    }

    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, address, &sin.sin_addr) != 1) die("-address must be an IPv4 literal");

    /* The same options, in the same order, as cmhd_start in Sources/CMicroHTTPD/shim.h. */
    struct MHD_OptionItem options[6];
    int count = 0;
    options[count++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, 1024, NULL};
    options[count++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, 30, NULL};
    options[count++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed_cb, NULL};
    if (threads > 1) options[count++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, threads, NULL};
    options[count++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &sin};
    options[count++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    unsigned int flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME;
    struct MHD_Daemon *d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, access_cb, NULL,
                                            MHD_OPTION_ARRAY, options, MHD_OPTION_END);
    if (!d) die("MHD_start_daemon failed (port in use?)");
    fprintf(stderr, "mhd_baseline: listening on %s:%d, %d thread(s), body %zu bytes\n", address, port, threads,
            body_len);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (!stop_flag) {
        usleep(100000);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9 > max_seconds) break;
    }
    MHD_stop_daemon(d);
    MHD_destroy_response(node_response);
    if (list_response) MHD_destroy_response(list_response);
    return 0;
}
