/* The parameter table of a traced graph, for the runtime. */
#ifndef PC_PARAMS_FROM_GRAPH_H
#define PC_PARAMS_FROM_GRAPH_H

#include "ir/ir.h"
#include "runtime/params.h"

/* Adds one spec per param node of g, in declaration order. */
int pc_params_from_graph(const IrGraph *g, Params *out, PcError *err);

#endif
