/* `ponder`: the runtime tool. Dispatches to the subcommands in cli/. */
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include "runtime/cli/commands.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} Command;

static const Command commands[] = {
    {"forward", cmd_forward, "run a model once on a prompt and print the most likely next tokens"},
    {"generate", cmd_generate, "generate text after a prompt (sampling; full recomputation, no cache)"},
    {"train", cmd_train, "train a model on token shards: metrics, checkpoints, exact resume"},
    {"tokenize", cmd_tokenize, "text on stdin -> token ids (or ids -> text with --decode)"},
    {"tokenizer", cmd_tokenizer, "tokenizer tools: train a BPE tokenizer.json, show a tokenizer's facts"},
    {"prepare", cmd_prepare, "text or JSONL files -> token shards (train/validation) for training"},
    {"plot", cmd_plot, "a training run's metrics.jsonl -> an SVG chart of the loss"},
    {"export", cmd_export, "write a model (e.g. a training checkpoint) as a Hugging Face folder"},
};

static void usage(FILE *f) {
  fprintf(f, "usage: ponder COMMAND [options]   (ponder COMMAND --help for its options)\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
  /* Keep freed tensor memory in the heap: returning every large buffer to the
   * kernel and faulting it back in each step costs more than the step's math. */
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "ponder: unknown command '%s' (try ponder --help)\n", argv[1]);
  return 2;
}
