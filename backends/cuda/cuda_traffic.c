/* The traffic model of cuda_traffic.h: a walk over a launch's statements
 * that counts each buffer's loads and stores, weighted by the trip counts
 * of the loops around them. */
#include "backends/cuda/cuda_traffic.h"

#include <stdlib.h>
#include <string.h>

struct CudaTraffic {
  const KProgram *p;
  const KEntry *e;
  const int64_t *dims;
  const unsigned char *half; /* per buffer: lives in its bf16 mirror, or NULL */
  CudaValue *vars;          /* the host's, then the walk's own loop variables and assignments */
  unsigned char *unknown;   /* per variable: the walk cannot know its value */
  double *reads, *writes;   /* per buffer: elements loaded / stored by this launch, counted with repeats */
  VecU32 touched;           /* the buffers with counts */
  int guessed;              /* this launch has a loop whose trip count is a guess */
  uint64_t guesses;
};

CudaTraffic *cuda_traffic_new(const KProgram *p, const KEntry *e, const unsigned char *half) {
  CudaTraffic *t = pc_xcalloc(1, sizeof *t);
  t->p = p;
  t->e = e;
  t->half = half;
  t->vars = pc_xcalloc(e->vars.n + 1, sizeof *t->vars);
  t->unknown = pc_xcalloc(e->vars.n + 1, 1);
  t->reads = pc_xcalloc(e->bufs.n + 1, sizeof *t->reads);
  t->writes = pc_xcalloc(e->bufs.n + 1, sizeof *t->writes);
  return t;
}

void cuda_traffic_free(CudaTraffic *t) {
  if (!t) return;
  free(t->vars);
  free(t->unknown);
  free(t->reads);
  free(t->writes);
  vec_free(&t->touched);
  free(t);
}

uint64_t cuda_traffic_guesses(const CudaTraffic *t) { return t->guesses; }

static void touch(CudaTraffic *t, uint32_t buf, double *count, double n) {
  if (!t->reads[buf] && !t->writes[buf]) vec_push(&t->touched, buf);
  *count += n;
}

static void expr(CudaTraffic *t, uint32_t x, double n) {
  const KExpr *k = &t->p->exprs.a[x];
  if (k->op == KE_LOAD) touch(t, k->id, &t->reads[k->id], n);
  for (int i = 0; i < kop_info(k->op)->n; i++) expr(t, k->a[i], n);
}

static int value(CudaTraffic *t, uint32_t x, CudaValue *v) { return cuda_eval(t->p, t->dims, t->vars, t->unknown, x, v); }

static void block(CudaTraffic *t, uint32_t blk, double n);

/* statement s, run n times */
static void stmt(CudaTraffic *t, const KStmt *s, double n) {
  for (int k = 0; k < kstmt_n_exprs(s); k++) expr(t, s->e[k], n);
  CudaValue lo, hi, v;
  switch (s->kind) {
  case KS_ASSIGN: t->unknown[s->var] = !value(t, s->e[0], &t->vars[s->var]); break;
  case KS_STORE: touch(t, s->buf[0], &t->writes[s->buf[0]], n); break;
  case KS_FOR: {
    int known = value(t, s->e[0], &lo) && value(t, s->e[1], &hi);
    int64_t trips = known ? (hi.i > lo.i ? hi.i - lo.i : 0) : 1;
    t->guessed |= !known;
    t->vars[s->var].i = known ? lo.i + (trips - 1) / 2 : 0; /* the middle iteration stands for all */
    t->unknown[s->var] = !known;
    if (trips) block(t, s->body, n * (double)trips);
    break;
  }
  case KS_IF: block(t, s->body, n); break; /* as if it always held */
  case KS_WHILE:
    t->guessed = 1;
    block(t, s->body, n);
    break;
  case KS_FILL:
    if (value(t, s->e[1], &v)) touch(t, s->buf[0], &t->writes[s->buf[0]], n * (double)v.i);
    break;
  case KS_COPY:
    if (value(t, s->e[2], &v)) {
      touch(t, s->buf[0], &t->writes[s->buf[0]], n * (double)v.i);
      touch(t, s->buf[1], &t->reads[s->buf[1]], n * (double)v.i);
    }
    break;
  case KS_GEMM:
  case KS_CALL: PC_BUG("cuda traffic: a product or a call inside a kernel");
  }
}

static void block(CudaTraffic *t, uint32_t blk, double n) {
  const VecU32 *b = &t->p->blocks.a[blk];
  for (size_t i = 0; i < b->n; i++) stmt(t, &t->p->stmts.a[b->a[i]], n);
}

static double at_most(double count, uint64_t numel) { return count < (double)numel ? count : (double)numel; }

double cuda_traffic_launch(CudaTraffic *t, const KStmt *s, const int64_t *dims, const CudaValue *vars,
                           const CudaMirrored *m, size_t n_m) {
  t->dims = dims;
  memcpy(t->vars, vars, t->e->vars.n * sizeof *vars);
  memset(t->unknown, 0, t->e->vars.n);
  t->guessed = 0;
  stmt(t, s, 1);
  double bytes = 0;
  for (size_t i = 0; i < n_m; i++) {
    bytes += 2.0 * (double)m[i].elements;
    if (m[i].alone) t->writes[m[i].buf] = t->writes[m[i].buf] > (double)m[i].elements ? t->writes[m[i].buf] - (double)m[i].elements : 0;
  }
  for (size_t i = 0; i < t->touched.n; i++) {
    uint32_t b = t->touched.a[i];
    uint64_t numel = t->e->bufs.a[b].numel;
    bytes += (t->half && t->half[b] ? 2 : 4) * at_most(t->reads[b], numel) + 4 * at_most(t->writes[b], numel); /* f32, i32 */
    t->reads[b] = t->writes[b] = 0;
  }
  t->touched.n = 0;
  t->guesses += (uint64_t)t->guessed;
  return bytes;
}

double cuda_traffic_call(KCallOp op, int i, const int64_t *args, int mirrored, int64_t n_mirrored) {
  double B = (double)args[0], T = (double)args[1], H = (double)args[2], Hkv = (double)args[3], D = (double)args[4];
  double q = B * T * H * D, kv = 2 * B * T * Hkv * D, rows = B * H * T; /* q (y, dy, dq), k and v, the softmax rows */
  double elements = 0, in_bf16 = mirrored < 0 ? 0 : (double)n_mirrored;
  switch (op) {
  case KC_ATTENTION: elements = 2 * q + kv + rows; break; /* q k v -> y lse */
  case KC_ATTENTION_GRAD: {
    double dq_share = mirrored == 9 ? q / (q + kv) : 0; /* 9: dq, dk and dv in one buffer's rows; 11: dv alone */
    if (i == 0) elements = 2 * q + rows, in_bf16 = 0;                            /* y dy -> delta */
    else if (i == 1) elements = 3 * q + kv + 2 * rows, in_bf16 *= dq_share;      /* q k v dy lse delta -> dq */
    else elements = 2 * q + 2 * kv + 2 * rows, in_bf16 *= 1 - dq_share;          /* q k v dy lse delta -> dk dv */
    break;
  }
  case KC_ATTENTION_CACHED: { /* q, the cache's rows up to the new ones -> y */
    double positions = (double)(args[11] + args[1] < args[9] ? args[11] + args[1] : args[9]);
    elements = 2 * q + 2 * B * positions * Hkv * D;
    break;
  }
  case KC_NUM: PC_BUG("cuda traffic: no call");
  }
  return 4 * elements + 2 * in_bf16;
}

double cuda_traffic_gemm(int64_t m, int64_t n, int64_t k, CudaPrecision p, int beta, int c_bf16) {
  double operand = p == CUDA_BF16 ? 2 : 4;
  return operand * ((double)m * k + (double)k * n) + (c_bf16 ? 2.0 : 4.0) * m * n * (beta ? 2 : 1);
}
