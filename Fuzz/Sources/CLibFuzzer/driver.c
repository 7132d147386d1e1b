// Declarations only: the driver itself comes from libclang_rt.fuzzer.
#include "CLibFuzzer.h"
