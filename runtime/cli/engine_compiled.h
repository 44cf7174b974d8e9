/* Making a compiled engine from the model ABI's three functions (a JIT
 * hands them over directly; engine_open_library finds them with dlsym). */
#ifndef PC_CLI_ENGINE_COMPILED_H
#define PC_CLI_ENGINE_COMPILED_H

#include "runtime/cli/engine.h"
#include "runtime/include/ponder_abi.h"

/* owner (freed with owner_free when the engine goes) keeps the code alive. */
int engine_from_functions(const char *what, PonderAbiVersionFn version, PonderModelInfoFn info, PonderRunFn run,
                          void *owner, void (*owner_free)(void *), Engine **out, const char **info_json, PcError *err);

#endif
