// ThreadSanitizer support, compiled only into `--sanitize=thread` builds (scripts/sanitize thread): makes
// the contended path of Swift's `Synchronization.Mutex` visible to TSan. Empty in every other build.
//
// Why: on Linux, `Mutex.withLock` inlines its uncontended path into our (instrumented) code: a
// compare-and-swap with acquire/release ordering, which TSan sees. Under contention it calls
// `_MutexHandle._lockSlow` / `_unlockSlow` in libswiftSynchronization.so, which is not instrumented: a
// spin of plain compare-and-swaps, then FUTEX_LOCK_PI / FUTEX_UNLOCK_PI system calls. TSan then sees
// neither the release of the thread that unlocks nor the acquire of the thread that locks, and reports
// every access made under the lock as a race. Measured: 4 threads incrementing a counter 200,000 times
// each inside `withLock` end at exactly 800,000 and TSan reports a "Swift access race" on every run.
//
// How: the executable defines the two library functions itself (their mangled names, Swift's calling
// convention, `self` in the context register), so calls from our code bind here; each calls the
// library's own function (dlsym RTLD_NEXT) and tells TSan what it did: a release on the lock word
// before unlocking, an acquire on it after locking. That is exactly the synchronization the fast path
// already reports, so a real race (an access outside the lock) is still reported; a suppression would
// have hidden those too. `_tryLockSlow` needs nothing: nothing here calls `withLockIfAvailable`.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>

void __tsan_acquire(void *address);
void __tsan_release(void *address);

#define LOCK_SLOW "$s15Synchronization12_MutexHandleV9_lockSlowyys6UInt32VF"
#define UNLOCK_SLOW "$s15Synchronization12_MutexHandleV11_unlockSlowyyF"

typedef void (*LockSlow)(uint32_t self_id, void *__attribute__((swift_context)) handle)
    __attribute__((swiftcall));
typedef void (*UnlockSlow)(void *__attribute__((swift_context)) handle) __attribute__((swiftcall));

/// The library's own definition of `symbol` (the next one after this executable's); aborts without it.
static void *next_definition(void **cache, const char *symbol) {
    void *function = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
    if (function == NULL) {
        function = dlsym(RTLD_NEXT, symbol);
        if (function == NULL) {
            abort();
        }
        __atomic_store_n(cache, function, __ATOMIC_RELEASE);
    }
    return function;
}

__attribute__((swiftcall)) void cepmd_tsan_mutex_lock_slow(
    uint32_t self_id, void *__attribute__((swift_context)) handle) __asm__(LOCK_SLOW);
__attribute__((swiftcall)) void cepmd_tsan_mutex_lock_slow(
    uint32_t self_id, void *__attribute__((swift_context)) handle) {
    static void *cache;
    ((LockSlow)next_definition(&cache, LOCK_SLOW))(self_id, handle);
    __tsan_acquire(handle);
}

__attribute__((swiftcall)) void cepmd_tsan_mutex_unlock_slow(void *__attribute__((swift_context)) handle)
    __asm__(UNLOCK_SLOW);
__attribute__((swiftcall)) void cepmd_tsan_mutex_unlock_slow(void *__attribute__((swift_context)) handle) {
    static void *cache;
    __tsan_release(handle);
    ((UnlockSlow)next_definition(&cache, UNLOCK_SLOW))(handle);
}
#endif
#endif
