/* Documents from corpus files, for the tokenizer trainer and `ponder
 * prepare`: a JSONL file (.jsonl, .ndjson) gives one document per line
 * (a string field, "text" by default; blank lines are skipped); a text file
 * gives the whole file, each line, or each blank-line separated paragraph.
 *
 *   DocReader *r;
 *   if (docs_open(path, DOCS_FILE, "text", &r, &err)) ...
 *   const char *doc; size_t n; int rc;
 *   while ((rc = docs_next(r, &doc, &n, &err)) > 0) use(doc, n);
 *   docs_close(r);                             // rc < 0: err says why
 */
#ifndef PC_TOK_DOCS_H
#define PC_TOK_DOCS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/base/err.h"

typedef enum { DOCS_FILE, DOCS_LINE, DOCS_PARAGRAPH } DocsSplit;

typedef struct DocReader DocReader;

/* json_field is used for JSONL files; split for text files. */
int docs_open(const char *path, DocsSplit split, const char *json_field, DocReader **out, PcError *err);
/* 1 and the next document (valid until the next call), 0 at the end, or
 * -1 with a "path:line: ..." message. */
int docs_next(DocReader *r, const char **text, size_t *len, PcError *err);
/* Bytes of the file consumed so far, and its size, for progress bars. */
uint64_t docs_offset(const DocReader *r);
uint64_t docs_size(const DocReader *r);
int docs_is_jsonl(const char *path);
void docs_close(DocReader *r);

#endif
