/* Golden codegen: the kernel IR and the C source of GPT-2 tiny with K = 3
 * (logits entry) are compared with committed files, so that a refactor of
 * the lowering or the C renderer does not change code unnoticed.
 * PONDER_UPDATE_GOLDEN=1 rewrites them (then review the diff). */
#include <stdlib.h>
#include <string.h>

#include "backends/c/c_render.h"
#include "compiler/module.h"
#include "runtime/base/file.h"
#include "tests/check.h"

static void golden(const char *path, const char *text) {
  if (getenv("PONDER_UPDATE_GOLDEN")) {
    CHECK(pc_write_file_atomic(path, text, strlen(text), NULL) == 0);
    printf("rewrote %s\n", path);
  }
  char *want = pc_read_file(path, NULL, NULL);
  CHECKF(want && !strcmp(want, text), "the generated code differs from %s (if intended: PONDER_UPDATE_GOLDEN=1 %s)",
         path, "build/tests/test_codegen");
  free(want);
}

int main(void) {
  char sets[2][32] = {"ponderinglm=true", "pondering_steps=3"};
  ModelOpts o = {.script = "models/gpt2.lua", .config = "tiny"};
  vec_push(&o.sets, sets[0]);
  vec_push(&o.sets, sets[1]);
  PcModuleOptions mo = {.entries = PC_ENTRY_LOGITS, .max_batch = 2, .max_seq = 16, .schedule = kschedule_default()};
  PcModule m;
  PcError err;
  if (pc_module_build(&o, &mo, &m, &err) < 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  char *kir = NULL, *c = NULL;
  size_t n;
  FILE *f = open_memstream(&kir, &n);
  kir_print(m.prog, f);
  fclose(f);
  f = open_memstream(&c, &n);
  CHECK(c_render(&m, f, &err) == 0);
  fclose(f);
  golden("tests/golden/gpt2-tiny-k3-logits.kir", kir);
  golden("tests/golden/gpt2-tiny-k3-logits.c", c);
  free(kir);
  free(c);
  pc_module_free(&m);
  vec_free(&o.sets);
  return check_exit();
}
