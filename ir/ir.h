/* The graph IR: SSA tensor values with a dtype and a shape (static dims and
 * named symbolic dims), produced by nodes whose operations are listed once
 * in ops.def, grouped in regions. Region 0 is the graph's body; a loop node
 * owns one more region, its body, whose arguments are the iteration index
 * and the carried values, and which ends with a yield.
 *
 * Values, nodes, regions and strings are integer handles into per-graph
 * arrays; the graph owns everything. Parameters and inputs are nodes kept
 * in their own lists ahead of region 0, so that any region may use them. */
#ifndef PC_IR_H
#define PC_IR_H

#include <stdint.h>
#include <stdio.h>

#include "runtime/base/dtype.h"
#include "runtime/base/err.h"
#include "runtime/base/mem.h"
#include "runtime/tensor.h"

typedef enum {
#define OP(e, name, nin, nout, rule, attrs) IR_##e,
#include "ir/ops.def"
#undef OP
  IR_NUM_OPS
} IrOp;

#define IR_NONE UINT32_MAX
#define IR_MAX_ATTRS 4
#define IR_MAX_FIXED_RESULTS 4 /* results of an op with a fixed count */

typedef enum { IR_ATTR_NONE, IR_ATTR_INT, IR_ATTR_FLOAT, IR_ATTR_STR } IrAttrKind;

typedef struct {
  const char *name;
  int n_in, n_out; /* -1: variadic */
  struct {
    const char *name; /* NULL past the last attribute */
    IrAttrKind kind;
  } attr[IR_MAX_ATTRS];
} IrOpInfo;

const IrOpInfo *ir_op_info(IrOp op);
/* The operand that result `result` of op starts as and is updated from (a
 * stack it sets a slot of, a gradient it adds into), or -1. Executors may
 * write the result over that operand when the operand dies there. */
int ir_accumulates(IrOp op, uint32_t result);
/* Returns -1 when no op has that name. */
int ir_op_from_name(const char *name, size_t len);
/* Index of the attribute called `name` of op, or -1. */
int ir_attr_index(IrOp op, const char *name, size_t len);

/* A dim >= 0 is static; a dim < 0 is the symbolic dim number -(d+1). */
typedef struct {
  int rank;
  int64_t dim[PC_MAX_RANK];
} IrShape;

#define IR_SYM(k) (-(int64_t)(k)-1)
#define IR_IS_SYM(d) ((d) < 0)
#define IR_SYM_INDEX(d) ((uint32_t)(-(d)-1))

typedef struct {
  PcDType dtype;
  IrShape shape;
} IrType;

typedef struct {
  IrType type;
  uint32_t def;    /* defining node, or IR_NONE for a region argument */
  uint32_t region; /* region the value is defined in (params/inputs: 0) */
  uint32_t name;   /* string handle, or IR_NONE (then printed as %number) */
} IrValueInfo;

typedef union {
  int64_t i;
  double f;
  uint32_t s; /* string handle */
} IrAttr;

typedef struct {
  IrOp op;
  uint32_t n_in, in;   /* operands: g->operands.a[in .. in+n_in) */
  uint32_t n_out, out; /* results: values out .. out+n_out */
  IrAttr attr[IR_MAX_ATTRS];
  uint32_t loc;  /* string handle of "file:line", or IR_NONE */
  uint32_t body; /* loop: its body region; otherwise IR_NONE */
} IrNode;

typedef struct {
  VecU32 nodes; /* in execution order */
  VecU32 args;  /* region arguments (values) */
  uint32_t owner;      /* the loop node owning it; IR_NONE for region 0 */
  uint32_t parent;     /* the region holding the owner; IR_NONE for region 0 */
} IrRegion;

typedef struct IrGraph {
  char *name;
  VEC(IrValueInfo) values;
  VEC(IrNode) nodes;
  VecU32 operands;
  VEC(IrRegion) regions;
  VecU32 params; /* param nodes, in declaration order */
  VecU32 inputs; /* input nodes */
  VEC(char *) syms;     /* symbolic dim names */
  VEC(char *) strings;  /* interned strings */
} IrGraph;

IrGraph *ir_graph_new(const char *name);
void ir_graph_free(IrGraph *g);

uint32_t ir_intern(IrGraph *g, const char *s);
uint32_t ir_intern_n(IrGraph *g, const char *s, size_t n);
static inline const char *ir_str(const IrGraph *g, uint32_t s) { return s == IR_NONE ? "" : g->strings.a[s]; }
/* Symbolic dim handle for a name, created on first use. */
uint32_t ir_sym(IrGraph *g, const char *name);

static inline IrNode *ir_node(const IrGraph *g, uint32_t n) { return &g->nodes.a[n]; }
static inline const IrType *ir_type(const IrGraph *g, uint32_t v) { return &g->values.a[v].type; }
static inline uint32_t ir_in(const IrGraph *g, const IrNode *n, uint32_t k) { return g->operands.a[n->in + k]; }
static inline const IrOpInfo *ir_node_info(const IrNode *n) { return ir_op_info(n->op); }

/* The value a param or input node defines, found by name; IR_NONE if none. */
uint32_t ir_find_param(const IrGraph *g, const char *name);
uint32_t ir_find_input(const IrGraph *g, const char *name);

/* Whether a value defined in value_region may be used in use_region (the
 * same region or one nested inside it). */
int ir_visible_from(const IrGraph *g, uint32_t value_region, uint32_t use_region);

/* Formats a shape as "[B,T,768]" / a type as "f32[B,T,768]". */
char *ir_shape_str(const IrGraph *g, const IrShape *s, char *buf, size_t n);
char *ir_type_str(const IrGraph *g, const IrType *t, char *buf, size_t n);
int ir_shape_eq(const IrShape *a, const IrShape *b);
int ir_type_eq(const IrType *a, const IrType *b);

/* ---- building ---------------------------------------------------------
 * A builder appends nodes to its current region; each node gets the
 * builder's current location. ir_build infers the result types with the
 * op's shape rule, so shape errors surface where the node is made, as
 * "LOC: op: message". */
typedef struct {
  IrGraph *g;
  uint32_t region;
  uint32_t loc;
} IrBuilder;

IrBuilder ir_builder(IrGraph *g);
void ir_set_loc(IrBuilder *b, const char *file_line);

/* Adds a node of an op with a fixed number of results; `given` supplies the
 * result type for ops whose rule is `given`, and must be NULL otherwise.
 * Returns the first result value (the others follow it), or IR_NONE with
 * err set. */
uint32_t ir_build(IrBuilder *b, IrOp op, const uint32_t *in, uint32_t n_in, const IrAttr *attr,
                  const IrType *given, PcError *err);
/* Adds a node without results (output, yield). */
int ir_build_sink(IrBuilder *b, IrOp op, const uint32_t *in, uint32_t n_in, const IrAttr *attr);
uint32_t ir_param(IrBuilder *b, const char *name, const IrType *t, const char *init, double std,
                  const char *layout, PcError *err);
uint32_t ir_input(IrBuilder *b, const char *name, const IrType *t, PcError *err);
int ir_output(IrBuilder *b, const char *name, uint32_t v, PcError *err);

/* Loops: ir_loop_begin adds the loop node and switches the builder into its
 * body, whose arguments (iteration index, then one per carried value) are
 * returned in body_args; ir_loop_end adds the yield, checks it against the
 * carried types, switches back and returns the loop's first result. */
uint32_t ir_loop_begin(IrBuilder *b, int64_t trip, int reverse, const uint32_t *init, uint32_t n_carried,
                       uint32_t *body_args, PcError *err);
uint32_t ir_loop_end(IrBuilder *b, const uint32_t *yield, uint32_t n, PcError *err);

/* ---- shape inference (shape.c) ---------------------------------------- */
/* Infers the result types of node n from its operands and attributes into
 * out[0..n_out); returns -1 with a message (without location) on error. */
int ir_infer(const IrGraph *g, const IrNode *n, IrType *out, PcError *err);

/* ---- text form (print.c, parse.c) ------------------------------------- */
void ir_print(const IrGraph *g, FILE *f);
char *ir_print_string(const IrGraph *g); /* caller frees */
/* `src_name` is used in error messages ("src_name:line:col: ..."). */
int ir_parse(const char *text, const char *src_name, IrGraph **out, PcError *err);

/* ---- verification (verify.c) ------------------------------------------ */
int ir_verify(const IrGraph *g, PcError *err);

#endif
