#ifndef CEPMDSYSTEM_H
#define CEPMDSYSTEM_H

// Linux facilities the epmd loop needs. Everything here exists because Swift cannot use the C
// declaration as it stands (variadic functions, packed structs); each shim says why.

#include "CEPMDFDPassing.h"
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>

/// syslog() is variadic: Swift cannot call it. Logs one preformatted message.
void cepmd_syslog(int priority, const char *message);

/// struct epoll_event is packed on x86_64; build and read it in C so Swift never depends on its layout.
int cepmd_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);

/// Waits for events and copies them into two plain arrays (events and data).
int cepmd_epoll_wait(int epfd, uint32_t *events, uint64_t *data, int capacity, int timeout_ms);

/// accept4() is declared only under _GNU_SOURCE, which a Swift module header cannot set reliably.
int cepmd_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags);

/// posix_spawn with POSIX_SPAWN_SETSID, chdir("/") and closefrom, GNU extensions hidden without
/// _GNU_SOURCE: starts `path` detached in a new session with stdio on /dev/null, `keep_fd` as
/// descriptor 3 and every other descriptor closed, signal mask cleared and SIGPIPE/SIGHUP reset to
/// default. Returns 0 or an errno value.
int cepmd_spawn_detached(const char *path, char *const argv[], char *const envp[], int keep_fd);

/// pthread_setname_np() is declared only under _GNU_SOURCE: names the calling thread (15 bytes kept).
void cepmd_set_thread_name(const char *name);

#endif
