#ifndef CTESTREADDIRGUARD_H
#define CTESTREADDIRGUARD_H

/// How many directory entries the guard has copied so far (a test checks that it is in place).
unsigned long ctest_readdir_guard_copies(void);

/// 1 when the guard is compiled in (0 under AddressSanitizer or ThreadSanitizer, which intercept readdir).
int ctest_readdir_guard_active(void);

#endif
