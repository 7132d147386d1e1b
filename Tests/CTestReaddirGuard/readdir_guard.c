// The test process's readdir(3), in front of glibc's: every entry is copied whole into a buffer of
// the full `struct dirent` size before it is returned.
//
// Why: the toolchain's Foundation (swift-corelibs-foundation before the fix of issue #5472) copies
// `d_name` by value, all 256 bytes, from every entry of /proc/self/fd in `Process.run` (it looks for
// the highest open descriptor). glibc's entry is only as long as its name, inside opendir's 32 KiB
// buffer; when the test process holds more than about 1,300 descriptors the buffer fills, and the
// copy of the last entry reads past the end of the allocation. When that allocation is the last
// thing in a thread's malloc heap, the read crosses into an unmapped page and the test runner dies
// with SIGSEGV (seen twice in CI rehearsals, each time while a load test held thousands of sockets
// and another test started a process). With the copy, every entry Foundation reads is 280 readable
// bytes. The gateway never links this; only the test executable does.
//
// POSIX lets readdir's result be overwritten by the next call on the same stream; this copy is per
// thread, so it is overwritten by the next call on any stream of the same thread. Nothing in the
// test process reads two streams interleaved and keeps an entry across them.
//
// Under AddressSanitizer or ThreadSanitizer the runtime intercepts readdir itself (and ASan's
// allocator pads allocations): the guard steps aside.

#if !defined(__has_feature)
#define __has_feature(feature) 0
#endif

#if !__has_feature(address_sanitizer) && !__has_feature(thread_sanitizer) && defined(__linux__)

#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#include "CTestReaddirGuard.h"

static atomic_ulong copies;

unsigned long ctest_readdir_guard_copies(void) { return atomic_load(&copies); }

int ctest_readdir_guard_active(void) { return 1; }

struct dirent *readdir(DIR *directory) {
    static struct dirent *(*_Atomic library)(DIR *) = NULL;
    struct dirent *(*next)(DIR *) = atomic_load(&library);
    if (next == NULL) {
        next = (struct dirent * (*)(DIR *)) dlsym(RTLD_NEXT, "readdir");
        if (next == NULL) {
            return NULL;
        }
        atomic_store(&library, next);
    }
    struct dirent *entry = next(directory);
    if (entry == NULL) {
        return NULL;
    }
    static _Thread_local struct dirent copy;
    size_t length = entry->d_reclen;
    if (length > sizeof(copy)) {
        length = sizeof(copy);
    }
    memcpy(&copy, entry, length);
    memset((char *)&copy + length, 0, sizeof(copy) - length);
    atomic_fetch_add(&copies, 1);
    return &copy;
}

#else

#include "CTestReaddirGuard.h"

unsigned long ctest_readdir_guard_copies(void) { return 0; }

int ctest_readdir_guard_active(void) { return 0; }

#endif
