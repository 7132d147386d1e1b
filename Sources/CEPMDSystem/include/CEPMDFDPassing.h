#ifndef CEPMDFDPASSING_H
#define CEPMDFDPASSING_H

// Descriptor passing and memory files for systemd's fd store: CMSG_* are macros and memfd_create,
// fallocate are declared only under _GNU_SOURCE, so Swift cannot use them as they stand.

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/// sendmsg() of one datagram `bytes` to `address`, with `count` descriptors (SCM_RIGHTS, at most 253)
/// and the process's credentials implied. Returns bytes sent or -1 with errno.
long cepmd_send_with_descriptors(int fd, const void *bytes, size_t length, const struct sockaddr *address,
                                 socklen_t address_length, const int *descriptors, int count, int flags);

/// recvmsg() of one datagram into `buffer`, with up to `capacity` received descriptors stored in
/// `descriptors` (close-on-exec) and their number in `*count`. Returns bytes received or -1 with errno.
long cepmd_receive_with_descriptors(int fd, void *buffer, size_t length, int *descriptors, int capacity,
                                    int *count, int flags);

/// memfd_create(name, MFD_CLOEXEC): an anonymous memory file. Returns the descriptor or -1 with errno.
int cepmd_memfd_create(const char *name);

/// fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE): frees the pages of a byte range (reads give
/// zeros, the size stays). Returns 0 or -1 with errno.
int cepmd_punch_hole(int fd, int64_t offset, int64_t length);

#endif
