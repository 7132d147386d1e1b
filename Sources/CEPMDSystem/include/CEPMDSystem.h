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
#include <sys/types.h>
#include <sys/un.h>

/// The most descriptors one message carries (the kernel's SCM_MAX_FD is 253).
#define CEPMD_MAX_FDS_PER_MESSAGE 253

/// syslog() is variadic: Swift cannot call it. Logs one preformatted message.
void cepmd_syslog(int priority, const char *message);

/// struct epoll_event is packed on x86_64; build and read it in C so Swift never depends on its layout.
int cepmd_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);

/// Waits for events and copies them into two plain arrays (events and data).
int cepmd_epoll_wait(int epfd, uint32_t *events, uint64_t *data, int capacity, int timeout_ms);

/// accept4() is declared only under _GNU_SOURCE, which a Swift module header cannot set reliably.
int cepmd_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags);

/// pipe2() is declared only under _GNU_SOURCE: a pipe with `flags` (O_CLOEXEC) set atomically.
int cepmd_pipe2(int fds[2], int flags);

/// posix_spawn with POSIX_SPAWN_SETSID, chdir("/") and closefrom, GNU extensions hidden without
/// _GNU_SOURCE: starts `path` detached in a new session with stdio on /dev/null, `keep_fd` as
/// descriptor 3 and every other descriptor closed, signal mask cleared and SIGPIPE/SIGHUP reset to
/// default. Returns 0 or an errno value.
int cepmd_spawn_detached(const char *path, char *const argv[], char *const envp[], int keep_fd);

/// pthread_setname_np() is declared only under _GNU_SOURCE: names the calling thread (15 bytes kept).
void cepmd_set_thread_name(const char *name);

/// posix_spawn of this program again for a hand-over (SIGUSR2): descriptors 0-2 are inherited,
/// every other one is closed (closefrom, a GNU extension), signal mask cleared, SIGPIPE/SIGHUP at their
/// defaults. Same session. Returns 0 or an errno value; the child's pid in `pid_out`.
int cepmd_spawn_child(const char *path, char *const argv[], char *const envp[], int *pid_out);

/// sendmsg with up to CEPMD_MAX_FDS_PER_MESSAGE descriptors as SCM_RIGHTS (the CMSG_* macros are
/// not importable), MSG_NOSIGNAL. Returns the bytes sent or -1 with errno.
ssize_t cepmd_send_with_fds(int sock, const void *bytes, size_t length, const int *fds, int count);

/// recvmsg with MSG_CMSG_CLOEXEC: up to `capacity` received descriptors go to `fds` (`*count` of
/// them), any beyond are closed and `*truncated` is set (also when the kernel truncated the control
/// data). Returns the bytes read (0 at EOF) or -1 with errno.
ssize_t cepmd_receive_with_fds(int sock, void *bytes, size_t length, int *fds, int capacity, int *count,
                               int *truncated);

/// SO_PEERCRED (struct ucred needs _GNU_SOURCE): the peer's pid, uid and gid. 0, or -1 with errno.
int cepmd_peer_credentials(int sock, int *pid, unsigned int *uid, unsigned int *gid);

#endif
