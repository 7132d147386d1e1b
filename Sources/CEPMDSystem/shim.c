#define _GNU_SOURCE
#include "CEPMDSystem.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/uio.h>
#include <unistd.h>

void cepmd_syslog(int priority, const char *message) {
    syslog(priority, "epmd: %s", message);
}

int cepmd_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event event;
    event.events = events;
    event.data.u64 = data;
    return epoll_ctl(epfd, op, fd, &event);
}

int cepmd_epoll_wait(int epfd, uint32_t *events, uint64_t *data, int capacity, int timeout_ms) {
    struct epoll_event buffer[256];
    if (capacity > 256) {
        capacity = 256;
    }
    int count = epoll_wait(epfd, buffer, capacity, timeout_ms);
    for (int i = 0; i < count; i++) {
        events[i] = buffer[i].events;
        data[i] = buffer[i].data.u64;
    }
    return count;
}

int cepmd_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags) {
    return accept4(fd, address, length, flags);
}

int cepmd_pipe2(int fds[2], int flags) {
    return pipe2(fds, flags);
}

int cepmd_spawn_detached(const char *path, char *const argv[], char *const envp[], int keep_fd) {
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_t actions;
    sigset_t empty;
    sigset_t defaults;
    pid_t pid;
    int result;

    posix_spawnattr_init(&attributes);
    sigemptyset(&empty);
    posix_spawnattr_setsigmask(&attributes, &empty);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGHUP);
    posix_spawnattr_setsigdefault(&attributes, &defaults);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, keep_fd, 3);
    posix_spawn_file_actions_addclosefrom_np(&actions, 4);
    posix_spawn_file_actions_addchdir_np(&actions, "/");

    result = posix_spawn(&pid, path, &actions, &attributes, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    return result;
}

void cepmd_set_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof(truncated) - 1);
    truncated[sizeof(truncated) - 1] = '\0';
    pthread_setname_np(pthread_self(), truncated);
}

int cepmd_spawn_child(const char *path, char *const argv[], char *const envp[], int *pid_out) {
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_t actions;
    sigset_t empty;
    sigset_t defaults;
    pid_t pid = -1;
    int result;

    posix_spawnattr_init(&attributes);
    sigemptyset(&empty);
    posix_spawnattr_setsigmask(&attributes, &empty);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGHUP);
    posix_spawnattr_setsigdefault(&attributes, &defaults);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);

    result = posix_spawn(&pid, path, &actions, &attributes, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    if (result == 0 && pid_out != NULL) {
        *pid_out = pid;
    }
    return result;
}

ssize_t cepmd_send_with_fds(int sock, const void *bytes, size_t length, const int *fds, int count) {
    struct iovec vector;
    struct msghdr message;
    size_t space = CMSG_SPACE(sizeof(int) * (size_t)(count > 0 ? count : 1));
    char *control = NULL;
    ssize_t result;

    if (count < 0 || count > CEPMD_MAX_FDS_PER_MESSAGE || length == 0) {
        errno = EINVAL;
        return -1;
    }
    memset(&message, 0, sizeof(message));
    vector.iov_base = (void *)bytes;
    vector.iov_len = length;
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    if (count > 0) {
        control = calloc(1, space);
        if (control == NULL) {
            errno = ENOMEM;
            return -1;
        }
        message.msg_control = control;
        message.msg_controllen = space;
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)count);
        memcpy(CMSG_DATA(header), fds, sizeof(int) * (size_t)count);
    }
    result = sendmsg(sock, &message, MSG_NOSIGNAL);
    free(control);
    return result;
}

ssize_t cepmd_receive_with_fds(int sock, void *bytes, size_t length, int *fds, int capacity, int *count,
                               int *truncated) {
    struct iovec vector;
    struct msghdr message;
    size_t space = CMSG_SPACE(sizeof(int) * (size_t)CEPMD_MAX_FDS_PER_MESSAGE);
    char *control = calloc(1, space);
    ssize_t result;

    *count = 0;
    *truncated = 0;
    if (control == NULL) {
        errno = ENOMEM;
        return -1;
    }
    memset(&message, 0, sizeof(message));
    vector.iov_base = bytes;
    vector.iov_len = length;
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = space;
    result = recvmsg(sock, &message, MSG_CMSG_CLOEXEC);
    if (result >= 0) {
        if (message.msg_flags & MSG_CTRUNC) {
            *truncated = 1;
        }
        for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header != NULL;
             header = CMSG_NXTHDR(&message, header)) {
            if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) {
                continue;
            }
            int received = (int)((header->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int *data = (int *)CMSG_DATA(header);
            for (int index = 0; index < received; index++) {
                if (*count < capacity) {
                    fds[(*count)++] = data[index];
                } else {
                    close(data[index]);
                    *truncated = 1;
                }
            }
        }
    }
    free(control);
    return result;
}

int cepmd_peer_credentials(int sock, int *pid, unsigned int *uid, unsigned int *gid) {
    struct ucred credentials;
    socklen_t size = sizeof(credentials);
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0) {
        return -1;
    }
    *pid = credentials.pid;
    *uid = credentials.uid;
    *gid = credentials.gid;
    return 0;
}
