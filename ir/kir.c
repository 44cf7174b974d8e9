/* Kernel IR construction and its text form. */
#include "ir/kir.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const KOpInfo kop_table[KE_NUM] = {
#define KOP(e, name, n, res) [KE_##e] = {name, n, #res[0]},
#include "ir/kops.def"
#undef KOP
};

const KOpInfo *kop_info(KOp op) { return &kop_table[op]; }

/* causal attention of queries [B, T, H x D] over keys and values [B, T, Hkv x D]
 * (query head h reads kv head h / (H / Hkv)); lse and delta: [B, H, T] row
 * statistics the gradient keeps between its kernels. q, k and v (q of
 * attention_cached) are read from element x_at of their buffers with rows
 * x_rs apart (a view of a
 * wider product's output: q, k and v of one), plus the bias buffer's
 * elements from x_bias_at on as they load (x_bias_at < 0: no bias; the
 * bias buffer is then any buffer, unread). attention_grad writes dq, dk
 * and dv likewise, from element x_at with rows x_rs apart (into their
 * columns of the gradient of the product that q, k and v were sliced
 * from). attention_cached: the T query
 * rows at positions pos .. over the KV cache's keys and values, plane
 * `slot` of cache ([slots, 2, B, L, Hkv x D]: keys, then values) */
#define VIEW_ARGS "q_at", "q_rs", "q_bias_at", "k_at", "k_rs", "k_bias_at", "v_at", "v_rs", "v_bias_at"
static const KCallInfo kcall_table[KC_NUM] = {
    [KC_ATTENTION] = {"attention", 6, 8, 15, {"q", "k", "v", "q_bias", "k_bias", "v_bias", "y", "lse"},
                      {"B", "T", "H", "Hkv", "D", "scale", VIEW_ARGS}},
    [KC_ATTENTION_GRAD] = {"attention_grad", 9, 13, 21,
                           {"q", "k", "v", "q_bias", "k_bias", "v_bias", "y", "lse", "dy", "dq", "dk", "dv", "delta"},
                           {"B", "T", "H", "Hkv", "D", "scale", VIEW_ARGS, "dq_at", "dq_rs", "dk_at", "dk_rs", "dv_at",
                            "dv_rs"}},
    [KC_ATTENTION_CACHED] = {"attention_cached", 3, 4, 12, {"q", "q_bias", "cache", "y"},
                             {"B", "T", "H", "Hkv", "D", "scale", "q_at", "q_rs", "q_bias_at", "L", "slot", "pos"}},
};
#undef VIEW_ARGS

const KCallInfo *kcall_info(KCallOp op) { return &kcall_table[op]; }

KProgram *kir_new(void) {
  KProgram *p = pc_xcalloc(1, sizeof *p);
  KExpr none = {.op = KE_ICONST, .type = K_I64};
  vec_push(&p->exprs, none); /* handle 0: "no operand" */
  return p;
}

void kir_free(KProgram *p) {
  if (!p) return;
  for (size_t i = 0; i < p->blocks.n; i++) vec_free(&p->blocks.a[i]);
  for (size_t i = 0; i < p->entries.n; i++) {
    KEntry *e = &p->entries.a[i];
    for (size_t k = 0; k < e->bufs.n; k++) free(e->bufs.a[k].name);
    for (size_t k = 0; k < e->vars.n; k++) free(e->vars.a[k].name);
    for (size_t k = 0; k < e->dims.n; k++) free(e->dims.a[k].name);
    vec_free(&e->bufs);
    vec_free(&e->vars);
    vec_free(&e->dims);
    free(e->name);
  }
  vec_free(&p->exprs);
  vec_free(&p->stmts);
  vec_free(&p->blocks);
  vec_free(&p->gemms);
  vec_free(&p->calls);
  vec_free(&p->entries);
  for (size_t i = 0; i < p->origins.n; i++) free(p->origins.a[i]);
  vec_free(&p->origins);
  free(p);
}

uint32_t kir_origin(KProgram *p, const char *text) {
  for (size_t i = p->origins.n; i > 0; i--) /* the latest first: an op's statements come together */
    if (!strcmp(p->origins.a[i - 1], text)) return (uint32_t)i;
  vec_push(&p->origins, pc_xstrdup(text));
  return (uint32_t)p->origins.n;
}

void kir_set_origin(KProgram *p, size_t first, uint32_t origin) {
  for (size_t i = first; i < p->stmts.n; i++)
    if (!p->stmts.a[i].origin) p->stmts.a[i].origin = origin;
}

const char *kir_origin_text(const KProgram *p, uint32_t origin) {
  return origin && origin <= p->origins.n ? p->origins.a[origin - 1] : "";
}

uint32_t kir_block(KProgram *p) {
  VecU32 b = {0};
  vec_push(&p->blocks, b);
  return (uint32_t)(p->blocks.n - 1);
}

KEntry *kir_entry(KProgram *p, const char *name) {
  KEntry e = {.name = pc_xstrdup(name)};
  e.body = kir_block(p);
  vec_push(&p->entries, e);
  return &p->entries.a[p->entries.n - 1];
}

static uint32_t push_expr(KProgram *p, KExpr x) {
  vec_push(&p->exprs, x);
  return (uint32_t)(p->exprs.n - 1);
}

uint32_t kx_f(KProgram *p, double v) { return push_expr(p, (KExpr){.op = KE_FCONST, .type = K_F32, .f = v}); }
uint32_t kx_i(KProgram *p, int64_t v) { return push_expr(p, (KExpr){.op = KE_ICONST, .type = K_I64, .i = v}); }

uint32_t kx_var(KProgram *p, const KEntry *e, uint32_t var) {
  return push_expr(p, (KExpr){.op = KE_VAR, .type = e->vars.a[var].type, .id = var});
}

uint32_t kx_dim(KProgram *p, uint32_t dim) { return push_expr(p, (KExpr){.op = KE_DIM, .type = K_I64, .id = dim}); }

uint32_t kx_load(KProgram *p, const KEntry *e, uint32_t buf, uint32_t index) {
  KType t = e->bufs.a[buf].elem == K_F32 ? K_F32 : K_I64; /* i32 elements load as i64 */
  return push_expr(p, (KExpr){.op = KE_LOAD, .type = t, .id = buf, .a = {index}});
}

/* Index arithmetic on constants, and its identities (x + 0, x * 1, x * 0),
 * folded as expressions are made: shapes and strides known at compile time
 * come out as numbers, not as products of numbers. Only i64: f32 keeps
 * IEEE's -0, infinities and NaNs. Returns UINT32_MAX when nothing folds. */
static uint32_t fold_index(KProgram *p, KOp op, uint32_t a, uint32_t b) {
  const KExpr *x = &p->exprs.a[a], *y = &p->exprs.a[b];
  if (x->type != K_I64 || y->type != K_I64) return UINT32_MAX;
  int cx = x->op == KE_ICONST, cy = y->op == KE_ICONST;
  int64_t vx = cx ? x->i : 0, vy = cy ? y->i : 0;
  switch (op) {
  case KE_ADD:
    if (cx && cy) return kx_i(p, vx + vy);
    if (cx && vx == 0) return b;
    if (cy && vy == 0) return a;
    break;
  case KE_SUB:
    if (cx && cy) return kx_i(p, vx - vy);
    if (cy && vy == 0) return a;
    break;
  case KE_MUL:
    if (cx && cy) return kx_i(p, vx * vy);
    if ((cx && vx == 0) || (cy && vy == 0)) return kx_i(p, 0);
    if (cx && vx == 1) return b;
    if (cy && vy == 1) return a;
    break;
  default:
    break;
  }
  return UINT32_MAX;
}

uint32_t kx_op(KProgram *p, KOp op, uint32_t a, uint32_t b, uint32_t c) {
  const KOpInfo *info = kop_info(op);
  if (info->n == 2) {
    uint32_t folded = fold_index(p, op, a, b);
    if (folded != UINT32_MAX) return folded;
  }
  KExpr x = {.op = op, .a = {a, b, c}};
  switch (info->result) {
  case 'F': x.type = K_F32; break;
  case 'I': x.type = K_I64; break;
  case 'B': x.type = K_BOOL; break;
  case 'S': x.type = p->exprs.a[a].type; break;
  default: x.type = p->exprs.a[b].type; break;
  }
  if (info->result == 'S' && info->n == 2 && p->exprs.a[a].type != p->exprs.a[b].type)
    PC_BUG("kir: %s of %d and %d", info->name, p->exprs.a[a].type, p->exprs.a[b].type);
  return push_expr(p, x);
}

uint32_t kx_subst_var(KProgram *p, uint32_t x, uint32_t var, uint32_t with) {
  KExpr k = p->exprs.a[x];
  if (k.op == KE_VAR) return k.id == var ? with : x;
  int changed = 0;
  for (int i = 0; i < kop_info(k.op)->n; i++) {
    uint32_t a = kx_subst_var(p, k.a[i], var, with);
    changed |= a != k.a[i];
    k.a[i] = a;
  }
  return changed ? push_expr(p, k) : x;
}

uint32_t kvar(KEntry *e, const char *name, KType type) {
  KVar v = {pc_xstrdup(name), type};
  vec_push(&e->vars, v);
  return (uint32_t)(e->vars.n - 1);
}

uint32_t kbuf(KEntry *e, const char *name, KType elem, KBufKind kind, uint32_t index, uint64_t offset, uint64_t numel) {
  KBuf b = {.name = pc_xstrdup(name), .elem = elem, .kind = kind, .index = index, .offset = offset, .numel = numel};
  vec_push(&e->bufs, b);
  return (uint32_t)(e->bufs.n - 1);
}

uint32_t kdim(KEntry *e, const char *name, int64_t max) {
  KDim d = {pc_xstrdup(name), max};
  vec_push(&e->dims, d);
  return (uint32_t)(e->dims.n - 1);
}

static uint32_t push_stmt(KProgram *p, uint32_t block, KStmt s) {
  vec_push(&p->stmts, s);
  uint32_t id = (uint32_t)(p->stmts.n - 1);
  vec_push(&p->blocks.a[block], id);
  return id;
}

void ks_assign(KProgram *p, uint32_t block, uint32_t var, uint32_t value) {
  push_stmt(p, block, (KStmt){.kind = KS_ASSIGN, .var = var, .e = {value}});
}

void ks_store(KProgram *p, uint32_t block, uint32_t buf, uint32_t index, uint32_t value) {
  push_stmt(p, block, (KStmt){.kind = KS_STORE, .e = {index, value}, .buf = {buf}});
}

uint32_t ks_for(KProgram *p, uint32_t block, KLoopKind kind, uint32_t var, uint32_t lo, uint32_t hi) {
  uint32_t body = kir_block(p);
  push_stmt(p, block, (KStmt){.kind = KS_FOR, .loop = kind, .var = var, .e = {lo, hi}, .body = body});
  return body;
}

uint32_t ks_if(KProgram *p, uint32_t block, uint32_t cond) {
  uint32_t body = kir_block(p);
  push_stmt(p, block, (KStmt){.kind = KS_IF, .e = {cond}, .body = body});
  return body;
}

uint32_t ks_while(KProgram *p, uint32_t block, uint32_t cond) {
  uint32_t body = kir_block(p);
  push_stmt(p, block, (KStmt){.kind = KS_WHILE, .e = {cond}, .body = body});
  return body;
}

void ks_gemm(KProgram *p, uint32_t block, const KGemm *g) {
  vec_push(&p->gemms, *g);
  push_stmt(p, block, (KStmt){.kind = KS_GEMM, .gemm = (uint32_t)(p->gemms.n - 1)});
}

void ks_fill(KProgram *p, uint32_t block, uint32_t buf, uint32_t offset, uint32_t count, uint32_t value) {
  push_stmt(p, block, (KStmt){.kind = KS_FILL, .e = {offset, count, value}, .buf = {buf}});
}

void ks_copy(KProgram *p, uint32_t block, uint32_t dst, uint32_t dst_off, uint32_t src, uint32_t src_off, uint32_t count) {
  push_stmt(p, block, (KStmt){.kind = KS_COPY, .e = {dst_off, src_off, count}, .buf = {dst, src}});
}

void ks_call(KProgram *p, uint32_t block, const KCall *c) {
  vec_push(&p->calls, *c);
  push_stmt(p, block, (KStmt){.kind = KS_CALL, .call = (uint32_t)(p->calls.n - 1)});
}

/* ---- printing ---------------------------------------------------------------
 *   entry train [B <= 4, T <= 64] arena 1234 bytes
 *     %3 arena +4096 f32[1234] "layernorm.out"
 *     parfor i0 in 0 .. (B * T):
 *       v1 = 0.0
 *       ... */

static const char *type_name(KType t) {
  static const char *names[] = {"f32", "i64", "bool", "i32"};
  return names[t];
}

static void print_expr(const KProgram *p, const KEntry *e, uint32_t x, FILE *f) {
  const KExpr *k = &p->exprs.a[x];
  switch (k->op) {
  case KE_FCONST: fprintf(f, "%.9g", k->f); return;
  case KE_ICONST: fprintf(f, "%" PRId64, k->i); return;
  case KE_VAR: fprintf(f, "%s", e->vars.a[k->id].name); return;
  case KE_DIM: fprintf(f, "%s", e->dims.a[k->id].name); return;
  case KE_LOAD:
    fprintf(f, "%%%u[", k->id);
    print_expr(p, e, k->a[0], f);
    fputc(']', f);
    return;
  default: break;
  }
  const KOpInfo *info = kop_info(k->op);
  fprintf(f, "%s(", info->name);
  for (int i = 0; i < info->n; i++) {
    if (i) fputs(", ", f);
    print_expr(p, e, k->a[i], f);
  }
  fputc(')', f);
}

static void indent(FILE *f, int depth) {
  for (int i = 0; i < depth; i++) fputs("  ", f);
}

/* outer: the origin of the statement around the block; a statement whose
 * origin differs from the one before it gets a comment naming it */
static void print_block(const KProgram *p, const KEntry *e, uint32_t block, int depth, uint32_t outer, FILE *f) {
  static const char *loops[] = {"for", "parfor", "vfor"};
  const VecU32 *b = &p->blocks.a[block];
  for (size_t i = 0; i < b->n; i++) {
    const KStmt *s = &p->stmts.a[b->a[i]];
    if (s->origin && s->origin != outer) {
      indent(f, depth);
      fprintf(f, "# %s\n", kir_origin_text(p, s->origin));
    }
    outer = s->origin;
    indent(f, depth);
    switch (s->kind) {
    case KS_FOR:
      fprintf(f, "%s %s in ", loops[s->loop], e->vars.a[s->var].name);
      print_expr(p, e, s->e[0], f);
      fputs(" .. ", f);
      print_expr(p, e, s->e[1], f);
      fputs(":\n", f);
      print_block(p, e, s->body, depth + 1, s->origin, f);
      continue;
    case KS_IF:
    case KS_WHILE:
      fputs(s->kind == KS_IF ? "if " : "while ", f);
      print_expr(p, e, s->e[0], f);
      fputs(":\n", f);
      print_block(p, e, s->body, depth + 1, s->origin, f);
      continue;
    case KS_ASSIGN:
      fprintf(f, "%s = ", e->vars.a[s->var].name);
      print_expr(p, e, s->e[0], f);
      break;
    case KS_STORE:
      fprintf(f, "%%%u[", s->buf[0]);
      print_expr(p, e, s->e[0], f);
      fputs("] = ", f);
      print_expr(p, e, s->e[1], f);
      break;
    case KS_FILL:
      fprintf(f, "fill %%%u + ", s->buf[0]);
      print_expr(p, e, s->e[0], f);
      fputs(", count ", f);
      print_expr(p, e, s->e[1], f);
      fputs(", value ", f);
      print_expr(p, e, s->e[2], f);
      break;
    case KS_COPY:
      fprintf(f, "copy %%%u + ", s->buf[0]);
      print_expr(p, e, s->e[0], f);
      fprintf(f, " <- %%%u + ", s->buf[1]);
      print_expr(p, e, s->e[1], f);
      fputs(", count ", f);
      print_expr(p, e, s->e[2], f);
      break;
    case KS_GEMM: {
      const KGemm *g = &p->gemms.a[s->gemm];
      fprintf(f, "gemm %c%c m=", g->ta ? 't' : 'n', g->tb ? 't' : 'n');
      print_expr(p, e, g->m, f);
      fputs(" n=", f);
      print_expr(p, e, g->n, f);
      fputs(" k=", f);
      print_expr(p, e, g->k, f);
      fprintf(f, " alpha=%g beta=%g  %%%u + ", g->alpha, g->beta, g->c);
      print_expr(p, e, g->c_off, f);
      fprintf(f, " <- %%%u + ", g->a);
      print_expr(p, e, g->a_off, f);
      fprintf(f, ", %%%u + ", g->b);
      print_expr(p, e, g->b_off, f);
      break;
    }
    case KS_CALL: {
      const KCall *c = &p->calls.a[s->call];
      const KCallInfo *ci = kcall_info(c->op);
      fprintf(f, "call %s(", ci->name);
      for (int k = 0; k < ci->n_buf; k++) fprintf(f, "%s%s %%%u", k ? ", " : "", k == ci->n_read ? "->" : "", c->buf[k]);
      for (int k = 0; k < ci->n_arg; k++) {
        fprintf(f, "%s%s=", k ? ", " : "; ", ci->args[k]);
        print_expr(p, e, c->arg[k], f);
      }
      fputc(')', f);
      break;
    }
    }
    fputc('\n', f);
  }
}

void kir_print(const KProgram *p, FILE *f) {
  static const char *kinds[] = {"param", "input", "output", "arena"};
  for (size_t i = 0; i < p->entries.n; i++) {
    const KEntry *e = &p->entries.a[i];
    fprintf(f, "entry %s [", e->name);
    for (size_t d = 0; d < e->dims.n; d++)
      fprintf(f, "%s%s <= %" PRId64, d ? ", " : "", e->dims.a[d].name, e->dims.a[d].max);
    fprintf(f, "] arena %" PRIu64 " bytes\n", e->arena_bytes);
    for (size_t k = 0; k < e->bufs.n; k++) {
      const KBuf *b = &e->bufs.a[k];
      fprintf(f, "  %%%zu %s", k, kinds[b->kind]);
      if (b->kind == KB_ARENA) fprintf(f, " +%" PRIu64, b->offset);
      else fprintf(f, " #%u", b->index);
      fprintf(f, " %s[%" PRIu64 "] \"%s\"%s\n", type_name(b->elem), b->numel, b->name, b->operand_only ? " operand-only" : "");
    }
    print_block(p, e, e->body, 1, 0, f);
  }
}
