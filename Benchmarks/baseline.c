/*
 * baseline: the smallest server that passes the benchmark's PORT_PLEASE2 check.
 * It is the physical ceiling of "one TCP connection per lookup" on this machine.
 *
 *   baseline -port P -name NAME -node-port N [-seconds S]
 *
 * One thread, level-triggered epoll, non-blocking accept4.  Each connection reads
 * one framed request (2-byte big-endian length + body); body 'z'... gets a fixed
 * PORT2_RESP for NAME (port N, type 77, proto 0, versions 6/5, no extra), whatever
 * the name asked for; body 'n' gets the 4-byte port only (so "loadgen wait" works);
 * anything else is closed.  After the reply the server closes, like epmd.
 * It does no registry, no validation and no logging: it is not an epmd.
 * It exits on SIGTERM/SIGINT, or after -seconds (default 900) as a safety bound.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXFD 65536
#define BUFSZ 3064

struct conn {
    uint16_t len;
    uint8_t *buf;
};

static struct conn conns[MAXFD];
static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int s) {
    (void)s;
    stop_flag = 1;
}

static void drop(int ep, int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    free(conns[fd].buf);
    conns[fd].buf = NULL;
    conns[fd].len = 0;
    close(fd);
}

int main(int argc, char **argv) {
    int port = 0, node_port = 5555;
    double seconds = 900;
    const char *name = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-name")) name = argv[i + 1];
        else if (!strcmp(argv[i], "-node-port")) node_port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-seconds")) seconds = atof(argv[i + 1]);
        else {
            fprintf(stderr, "baseline: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (port <= 0 || !name || strlen(name) > 1000) {
        fprintf(stderr, "usage: baseline -port P -name NAME [-node-port N] [-seconds S]\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    size_t nlen = strlen(name);
    uint8_t port2[1100];
    size_t port2_len = 14 + nlen;
    port2[0] = 119;
    port2[1] = 0;
    port2[2] = (uint8_t)(node_port >> 8);
    port2[3] = (uint8_t)node_port;
    port2[4] = 77;
    port2[5] = 0;
    port2[6] = 0, port2[7] = 6;
    port2[8] = 0, port2[9] = 5;
    port2[10] = (uint8_t)(nlen >> 8);
    port2[11] = (uint8_t)nlen;
    memcpy(port2 + 12, name, nlen);
    port2[12 + nlen] = 0;
    port2[13 + nlen] = 0;
    uint8_t names[4] = {0, 0, (uint8_t)(port >> 8), (uint8_t)port};

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_ANY);
    if (ls < 0 || bind(ls, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(ls, SOMAXCONN) != 0) {
        perror("baseline: listen");
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);

    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct epoll_event evs[256];
    while (!stop_flag) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - t0.tv_sec) > seconds) break;
        int n = epoll_wait(ep, evs, 256, 1000);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                for (;;) {
                    int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0) break;
                    if (c >= MAXFD) {
                        close(c);
                        continue;
                    }
                    conns[c].buf = malloc(BUFSZ);
                    conns[c].len = 0;
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    if (!conns[c].buf || epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) != 0) {
                        free(conns[c].buf);
                        conns[c].buf = NULL;
                        close(c);
                    }
                }
                continue;
            }
            struct conn *cn = &conns[fd];
            ssize_t r = read(fd, cn->buf + cn->len, BUFSZ - cn->len);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                drop(ep, fd);
                continue;
            }
            cn->len += (uint16_t)r;
            if (cn->len < 2) continue;
            size_t want = (((size_t)cn->buf[0] << 8) | cn->buf[1]) + 2;
            if (want < 3 || want > BUFSZ) {
                drop(ep, fd);
                continue;
            }
            if (cn->len < want) continue;
            if (cn->buf[2] == 'z')
                (void)!write(fd, port2, port2_len);
            else if (cn->buf[2] == 'n')
                (void)!write(fd, names, sizeof names);
            drop(ep, fd);
        }
    }
    close(ep);
    close(ls);
    return 0;
}
