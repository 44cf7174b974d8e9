/* A line chart rendered as a standalone SVG document: series of (x, y)
 * points, each with a name and a style, on axes with 1-2-5 "nice" ticks,
 * grid lines, axis labels, a title and a legend. No state; no I/O except
 * plot_svg_save. Used by `ponder plot` (docs/plot.md). */
#ifndef PC_PLOT_SVG_PLOT_H
#define PC_PLOT_SVG_PLOT_H

#include <stddef.h>

#include "runtime/base/err.h"
#include "runtime/base/mem.h"

typedef struct {
  double x, y;
} PlotPoint;
typedef VEC(PlotPoint) PlotPoints;

typedef struct {
  const char *name; /* legend text; NULL: not in the legend */
  const PlotPoint *pts;
  size_t n; /* points with a non-finite x or y are left out */
  const char *color; /* any CSS colour, e.g. "#1f77b4"; NULL: a default */
  double width;      /* stroke width in px; 0: 1.5 */
  double opacity;    /* 0: 1 (opaque) */
  int markers;       /* 1: a dot at every point (a lone point always has one) */
} PlotSeries;

typedef struct {
  const char *title, *subtitle; /* either may be NULL */
  const char *xlabel, *ylabel;  /* either may be NULL */
  int width, height;            /* px; 0: 960 x 540 */
  int x_integer;                /* x ticks are whole numbers (steps) */
  int clip_y;                   /* 1: the y axis ends at ymax; lines above it are cut */
  double ymax;
} PlotChart;

/* The chart as one SVG document in *out (malloc'd, NUL-terminated).
 * Fails when no series has a finite point or ymax is below all the data. */
int plot_svg_render(const PlotChart *c, const PlotSeries *s, size_t ns, char **out, PcError *err);
/* Renders and writes path atomically (a temporary file next to it, then rename). */
int plot_svg_save(const char *path, const PlotChart *c, const PlotSeries *s, size_t ns, PcError *err);

/* The 1-2-5 tick spacing for [lo, hi]: the smallest that gives at most 25%
 * more than `target` intervals (at least 1 when integer). plot_ticks fills
 * ticks with up to max of its multiples inside [lo, hi] and returns how many. */
double plot_tick_step(double lo, double hi, int target, int integer);
size_t plot_ticks(double lo, double hi, double step, double *ticks, size_t max);
/* A tick value as its label: as many decimals as the step needs. */
void plot_tick_label(double v, double step, char *buf, size_t n);

#endif
