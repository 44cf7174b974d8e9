/* `ponder tokenize`: text on stdin -> ids on stdout, or ids -> text with
 * --decode. The plain interface that scripts and checks use. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cli/commands.h"
#include "runtime/tokenizer/tokenizer.h"

static const char usage[] =
    "usage: ponder tokenize --tokenizer FILE [options] < input\n"
    "\n"
    "Reads text on standard input and prints its token ids, space-separated,\n"
    "on one line. FILE is a Hugging Face tokenizer.json or a SentencePiece\n"
    "tokenizer.model.\n"
    "\n"
    "options:\n"
    "  --tokenizer FILE   the tokenizer (required)\n"
    "  --decode           read ids (separated by spaces, commas or newlines) and\n"
    "                     print their text\n"
    "  --lines            one text (or id list) per input line, one result per line\n"
    "  --bos, --eos       add the beginning / end of sequence token\n"
    "  --split-special    read special tokens written in the text as plain text\n"
    "  --strict-utf8      fail on invalid UTF-8 instead of reading it as U+FFFD\n"
    "  --skip-special     (--decode) leave special tokens out of the text\n"
    "  --raw              (--decode) raw bytes: no U+FFFD for invalid UTF-8\n"
    "  -h, --help         this help\n";

static int fail(const char *msg) {
  fprintf(stderr, "ponder tokenize: %s\n", msg);
  return 1;
}

static int read_all(FILE *f, TokBytes *out) {
  for (;;) {
    vec_reserve(out, out->n + 65536);
    size_t got = fread(out->a + out->n, 1, out->cap - out->n, f);
    out->n += got;
    if (!got) return ferror(f) ? -1 : 0;
  }
}

static void print_ids(const TokIds *ids, TokBytes *buf) {
  for (size_t i = 0; i < ids->n; i++) {
    char num[16];
    int k = snprintf(num, sizeof num, i ? " %u" : "%u", ids->a[i]);
    vec_reserve(buf, buf->n + (size_t)k + 1);
    memcpy(buf->a + buf->n, num, (size_t)k);
    buf->n += (size_t)k;
  }
  vec_push(buf, '\n');
}

/* Parses ids from s[0..n); on a bad one returns -1 with a message. */
static int parse_ids(const char *s, size_t n, TokIds *ids, PcError *err) {
  size_t i = 0;
  while (i < n) {
    while (i < n && (s[i] == ' ' || s[i] == ',' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    if (i >= n) break;
    size_t j = i;
    uint64_t v = 0;
    while (j < n && s[j] >= '0' && s[j] <= '9' && v <= UINT32_MAX) v = v * 10 + (uint64_t)(s[j++] - '0');
    bool sep = j == n || s[j] == ' ' || s[j] == ',' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r';
    if (j == i || !sep || v > UINT32_MAX) {
      size_t k = j;
      while (k < n && k - i < 20 && !(s[k] == ' ' || s[k] == ',' || s[k] == '\n')) k++;
      return pc_errorf(err, "not a token id: '%.*s'", (int)(k > i ? k - i : 1), s + i);
    }
    vec_push(ids, (uint32_t)v);
    i = j;
  }
  return 0;
}

int cmd_tokenize(int argc, char **argv) {
  const char *path = NULL;
  bool decode = false, lines = false;
  unsigned eflags = 0, dflags = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(usage, stdout);
      return 0;
    } else if (!strcmp(a, "--tokenizer") && i + 1 < argc) {
      path = argv[++i];
    } else if (!strncmp(a, "--tokenizer=", 12)) {
      path = a + 12;
    } else if (!strcmp(a, "--decode")) {
      decode = true;
    } else if (!strcmp(a, "--lines")) {
      lines = true;
    } else if (!strcmp(a, "--bos")) {
      eflags |= TOK_ADD_BOS;
    } else if (!strcmp(a, "--eos")) {
      eflags |= TOK_ADD_EOS;
    } else if (!strcmp(a, "--split-special")) {
      eflags |= TOK_SPLIT_SPECIAL;
    } else if (!strcmp(a, "--strict-utf8")) {
      eflags |= TOK_STRICT_UTF8;
    } else if (!strcmp(a, "--skip-special")) {
      dflags |= TOK_DECODE_SKIP_SPECIAL;
    } else if (!strcmp(a, "--raw")) {
      dflags |= TOK_DECODE_RAW;
    } else {
      fprintf(stderr, "ponder tokenize: unknown or incomplete option '%s' (see ponder tokenize --help)\n", a);
      return 2;
    }
  }
  if (!path) {
    fprintf(stderr, "ponder tokenize: --tokenizer FILE is required (see ponder tokenize --help)\n");
    return 2;
  }
  PcError err;
  Tokenizer *t;
  if (tok_load(path, &t, &err)) return fail(err.msg);

  TokBytes in = {0}, out = {0};
  TokIds ids = {0};
  int rc = 0;
  if (read_all(stdin, &in)) {
    rc = fail(strerror(errno));
    goto done;
  }
  size_t start = 0;
  int line_no = 0;
  while (start <= in.n) {
    size_t end = in.n;
    if (lines) {
      const char *nl = memchr(in.a + start, '\n', in.n - start);
      if (nl) end = (size_t)(nl - in.a);
      else if (start == in.n) break; /* no text after the last newline */
    }
    line_no++;
    ids.n = 0;
    if (decode) {
      if (parse_ids(in.a + start, end - start, &ids, &err) || tok_decode(t, ids.a, ids.n, dflags, &out, &err)) {
        if (lines) pc_error_prefix(&err, "line %d", line_no);
        rc = fail(err.msg);
        goto done;
      }
      if (lines) vec_push(&out, '\n');
    } else {
      if (tok_encode(t, in.a + start, end - start, eflags, &ids, &err)) {
        if (lines) pc_error_prefix(&err, "line %d", line_no);
        rc = fail(err.msg);
        goto done;
      }
      print_ids(&ids, &out);
    }
    if (out.n >= (1u << 20)) {
      fwrite(out.a, 1, out.n, stdout);
      out.n = 0;
    }
    if (!lines) break;
    start = end + 1;
  }
  if (out.n && fwrite(out.a, 1, out.n, stdout) != out.n) rc = fail("cannot write the output");
  if (fflush(stdout)) rc = fail("cannot write the output");
done:
  vec_free(&in);
  vec_free(&out);
  vec_free(&ids);
  tok_free(t);
  return rc;
}
