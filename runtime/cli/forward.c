/* ponder forward: the model once over a prompt; prints the most likely
 * next tokens with their probabilities. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/interp/interp.h"
#include "compiler/module.h"
#include "runtime/cli/commands.h"
#include "runtime/cli/model_load.h"
#include "runtime/safetensors.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: ponder forward MODEL.lua [options]\n"
          "\n"
          "Runs the model once over a prompt of token ids and prints the most likely next\n"
          "tokens. Without --hf the weights are a seeded random initialisation.\n"
          "\n"
          "options:\n" MODEL_OPTIONS_HELP MODEL_DEVICE_HELP
          "  --ids \"1 2 3\"      the prompt as token ids (default: 16 fixed ids)\n"
          "  --top N            how many next tokens to print (default 5)\n"
          "  --save FILE        also write the prompt and all its logits to a safetensors file\n"
          "                     (input_ids i32[1,T], logits f32[1,T,vocab]; scripts/check-export)\n"
          "  -h, --help         this help\n");
}

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* "1 2, 3" -> ids; returns -1 on anything that is not a list of integers. */
static int parse_ids(const char *s, VecI32 *ids) {
  while (*s) {
    if (*s == ' ' || *s == ',' || *s == '\t' || *s == '\n') {
      s++;
      continue;
    }
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 0 || v > INT32_MAX) return -1;
    vec_push(ids, (int32_t)v);
    s = end;
  }
  return ids->n ? 0 : -1;
}

int cmd_forward(int argc, char **argv) {
  static const struct option opts[] = {MODEL_LONG_OPTIONS,
                                       {"ids", required_argument, 0, 'i'},
                                       {"top", required_argument, 0, 'k'},
                                       {"save", required_argument, 0, 's'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  ModelOpts mo = {.seed = 1, .max_batch = 1, .entries = PC_ENTRY_LOGITS};
  const char *ids_text = NULL, *save = NULL;
  int top = 5, c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    int taken = model_opts_take(&mo, c, optarg);
    if (taken < 0) return 2;
    if (taken) continue;
    switch (c) {
    case 'i': ids_text = optarg; break;
    case 's': save = optarg; break;
    case 'k':
      top = atoi(optarg);
      if (top < 1) {
        fprintf(stderr, "ponder forward: --top %s: expected a positive integer\n", optarg);
        return 2;
      }
      break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind != argc - 1) {
    fprintf(stderr, "ponder forward: expected one MODEL.lua (try --help)\n");
    return 2;
  }
  mo.script = argv[optind];

  VecI32 ids = {0};
  if (ids_text && parse_ids(ids_text, &ids) < 0) {
    fprintf(stderr, "ponder forward: --ids: expected token ids separated by spaces\n");
    return 2;
  }
  PcError err;
  LoadedModel m;
  double t0 = seconds();
  if (model_load(&mo, &m, &err) < 0) {
    fprintf(stderr, "ponder forward: %s\n", err.msg);
    free(ids.a);
    model_opts_free(&mo);
    return 1;
  }
  int64_t vocab = m.vocab, ctx = m.context;
  int rc = 0;
  if (!rc && !ids.n)
    for (int i = 0; i < 16; i++) vec_push(&ids, (int32_t)((i * 7919 + 13) % vocab));
  if (!rc && ctx && (int64_t)ids.n > ctx)
    rc = pc_errorf(&err, "the prompt has %zu tokens but the model's context is %lld", ids.n, (long long)ctx);
  for (size_t i = 0; !rc && i < ids.n; i++)
    if (ids.a[i] >= vocab) rc = pc_errorf(&err, "token id %d is outside the vocabulary of %lld", ids.a[i], (long long)vocab);
  if (rc) {
    fprintf(stderr, "ponder forward: %s\n", err.msg);
    free(ids.a);
    model_unload(&m);
    model_opts_free(&mo);
    return 1;
  }
  if (mo.hf)
    printf("model %s from %s, %.2fM parameters\n", m.name, mo.hf, params_count(&m.params) / 1e6);
  else
    printf("model %s%s%s, %.1fM parameters, random initialisation (seed %llu)\n", m.name, m.fe ? ", config " : "",
           m.fe ? fe_selected_config(m.fe) : "", params_count(&m.params) / 1e6, (unsigned long long)mo.seed);
  printf("loaded in %.2f s; prompt of %zu tokens\n", seconds() - t0, ids.n);

  int64_t shape[2] = {1, (int64_t)ids.n};
  Tensor *in = tensor_new(PC_I32, 2, shape);
  memcpy(in->data, ids.a, ids.n * sizeof(int32_t));
  NamedTensor inputs[1] = {{"ids", in}}, outputs[4] = {{0}};
  size_t n_out;
  double t1 = seconds();
  rc = m.engine->run(m.engine, ENTRY_LOGITS, &m.params, inputs, 1, outputs, 4, &n_out, &err);
  double t2 = seconds();
  if (!rc) {
    const Tensor *logits = outputs[0].tensor;
    const float *last = tensor_f32(logits) + (ids.n - 1) * vocab;
    double mx = -INFINITY, sum = 0;
    for (int64_t v = 0; v < vocab; v++) mx = fmax(mx, last[v]);
    for (int64_t v = 0; v < vocab; v++) sum += exp(last[v] - mx);
    printf("forward (%s) in %.3f s\n", m.engine->backend, t2 - t1);
    printf("top %d next tokens:\n", top);
    unsigned char *used = calloc((size_t)vocab, 1);
    for (int k = 0; k < top && k < vocab; k++) {
      int64_t best = -1;
      for (int64_t v = 0; v < vocab; v++)
        if (!used[v] && (best < 0 || last[v] > last[best])) best = v;
      used[best] = 1;
      printf("  %8lld  p = %.6f\n", (long long)best, exp(last[best] - mx) / sum);
    }
    free(used);
    if (save) {
      StEntry e[2] = {{"input_ids", in}, {"logits", logits}};
      rc = st_write(save, e, 2, &err);
      if (rc) fprintf(stderr, "ponder forward: %s\n", err.msg);
    }
    for (size_t i = 0; i < n_out; i++) tensor_free(outputs[i].tensor);
  } else {
    fprintf(stderr, "ponder forward: %s\n", err.msg);
  }
  tensor_free(in);
  free(ids.a);
  model_unload(&m);
  model_opts_free(&mo);
  return rc ? 1 : 0;
}
