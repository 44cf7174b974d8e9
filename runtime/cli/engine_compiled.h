/* Making a compiled engine from the model ABI's three functions (a JIT
 * hands them over directly; engine_open_library finds them with dlsym). */
#ifndef PC_CLI_ENGINE_COMPILED_H
#define PC_CLI_ENGINE_COMPILED_H

#include "runtime/cli/engine.h"
#include "runtime/include/ponder_abi.h"

/* owner (freed with owner_free when the engine goes) keeps the code alive. */
int engine_from_functions(const char *what, PonderAbiVersionFn version, PonderModelInfoFn info, PonderRunFn run,
                          void *owner, void (*owner_free)(void *), Engine **out, const char **info_json, PcError *err);

/* A device engine (runtime/cli/engine_cuda.c): the same parsing of the model
 * info, inputs matched and outputs made by name, but the entry runs through
 * runner, which keeps its own memory (no host arena is allocated) and gets
 * the byte size of every input and output of the call. ctx goes with the
 * engine (ctx_free) once this succeeds. */
typedef int (*EngineRunner)(void *ctx, int entry, const Params *p, const PonderCall *call, const size_t *in_bytes,
                            const size_t *out_bytes, PcError *err);
int engine_from_runner(const char *what, const char *info_json, EngineRunner runner, void *ctx, void (*ctx_free)(void *),
                       Engine **out, const char **info_out, PcError *err);
/* For a device engine's own hooks (Engine.train): its ctx, and Engine.run
 * where the outputs with keep[i] set are neither made on the host nor
 * downloaded (the runner gets a NULL pointer and 0 bytes for them; out[i]
 * gets the name and no tensor): they stay in the device's buffers. */
void *engine_runner_ctx(Engine *e);
int engine_run_keeping(Engine *e, EntryKind k, const Params *p, const NamedTensor *in, size_t n_in, NamedTensor *out,
                       size_t max_out, size_t *n_out, const unsigned char *keep, PcError *err);

#endif
