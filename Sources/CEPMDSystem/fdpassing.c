#define _GNU_SOURCE
#include "CEPMDFDPassing.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#define CEPMD_MAX_PASSED 253

long cepmd_send_with_descriptors(int fd, const void *bytes, size_t length, const struct sockaddr *address,
                                 socklen_t address_length, const int *descriptors, int count, int flags) {
    union {
        char buffer[CMSG_SPACE(sizeof(int) * CEPMD_MAX_PASSED)];
        struct cmsghdr align;
    } control;
    struct iovec vector;
    struct msghdr message;

    if (count < 0 || count > CEPMD_MAX_PASSED) {
        errno = EINVAL;
        return -1;
    }
    memset(&message, 0, sizeof(message));
    vector.iov_base = (void *)bytes;
    vector.iov_len = length;
    message.msg_name = (void *)address;
    message.msg_namelen = address_length;
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    if (count > 0) {
        memset(&control, 0, sizeof(control));
        message.msg_control = control.buffer;
        message.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)count);
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)count);
        memcpy(CMSG_DATA(header), descriptors, sizeof(int) * (size_t)count);
    }
    return (long)sendmsg(fd, &message, flags);
}

long cepmd_receive_with_descriptors(int fd, void *buffer, size_t length, int *descriptors, int capacity,
                                    int *count, int flags) {
    union {
        char buffer[CMSG_SPACE(sizeof(int) * CEPMD_MAX_PASSED)];
        struct cmsghdr align;
    } control;
    struct iovec vector;
    struct msghdr message;
    long received;

    *count = 0;
    memset(&message, 0, sizeof(message));
    vector.iov_base = buffer;
    vector.iov_len = length;
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    message.msg_control = control.buffer;
    message.msg_controllen = sizeof(control.buffer);
    received = (long)recvmsg(fd, &message, flags | MSG_CMSG_CLOEXEC);
    if (received < 0) {
        return received;
    }
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header != NULL; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        size_t passed = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *data = (int *)CMSG_DATA(header);
        for (size_t i = 0; i < passed; i++) {
            if (*count < capacity) {
                descriptors[(*count)++] = data[i];
            } else {
                close(data[i]);  // no room: never leak a descriptor
            }
        }
    }
    return received;
}

int cepmd_memfd_create(const char *name) {
    return memfd_create(name, MFD_CLOEXEC);
}

int cepmd_punch_hole(int fd, int64_t offset, int64_t length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
}
