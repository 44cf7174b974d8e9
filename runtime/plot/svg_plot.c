/* A line chart as SVG (svg_plot.h). Layout, top to bottom: title and
 * subtitle, the plot area (grid, series clipped to it, legend in its top
 * right corner, frame), x tick labels, x label; the y label runs up the
 * left edge. Axes span the data plus a small margin (x 2%, y 4%); ticks are
 * the multiples of a 1-2-5 step that fall inside (one tick per ~100 px
 * across, ~70 px up). */
#include "runtime/plot/svg_plot.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef VEC(char) Buf;

static void put(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(Buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  PC_ASSERT(n >= 0);
  vec_reserve(b, b->n + (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(b->a + b->n, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->n += (size_t)n;
}

/* Text content or an attribute value, with XML's special characters escaped. */
static void put_text(Buf *b, const char *s) {
  for (; *s; s++) {
    switch (*s) {
    case '&': put(b, "&amp;"); break;
    case '<': put(b, "&lt;"); break;
    case '>': put(b, "&gt;"); break;
    case '"': put(b, "&quot;"); break;
    default: put(b, "%c", *s);
    }
  }
}

double plot_tick_step(double lo, double hi, int target, int integer) {
  double raw = (hi - lo) / (target > 0 ? target : 1);
  if (!(raw > 0) || !isfinite(raw)) return 1;
  /* the smallest of 1, 2, 5, 10 x 10^k (10^k <= raw) that gives at most
   * 25% more intervals than asked for */
  double base = pow(10, floor(log10(raw))), step = 10 * base;
  static const double m[] = {1, 2, 5};
  for (int i = 0; i < 3; i++)
    if ((hi - lo) / (m[i] * base) <= target * 1.25 + 1e-9) {
      step = m[i] * base;
      break;
    }
  return integer && step < 1 ? 1 : step;
}

size_t plot_ticks(double lo, double hi, double step, double *ticks, size_t max) {
  double i0 = ceil(lo / step - 1e-9), i1 = floor(hi / step + 1e-9);
  size_t n = 0;
  for (double i = i0; i <= i1 && n < max; i++) ticks[n++] = i * step;
  return n;
}

void plot_tick_label(double v, double step, char *buf, size_t n) {
  int decimals = step >= 1 - 1e-12 ? 0 : (int)ceil(-log10(step) - 1e-9);
  if (decimals > 12) decimals = 12;
  if (fabs(v) < step * 1e-6) v = 0; /* no "-0.0" */
  snprintf(buf, n, "%.*f", decimals, v);
}

/* The layout: plot area [x0, x1] x [y0, y1] in px, data ranges shown there. */
typedef struct {
  double x0, x1, y0, y1;
  double xlo, xhi, ylo, yhi;
} Frame;

static double sx(const Frame *f, double x) { return f->x0 + (x - f->xlo) / (f->xhi - f->xlo) * (f->x1 - f->x0); }
static double sy(const Frame *f, double y) { return f->y1 - (y - f->ylo) / (f->yhi - f->ylo) * (f->y1 - f->y0); }

static int finite_pt(PlotPoint p) { return isfinite(p.x) && isfinite(p.y); }

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
static const char *color_of(const PlotSeries *s, size_t i) {
  return s->color ? s->color : palette[i % (sizeof palette / sizeof *palette)];
}
static double width_of(const PlotSeries *s) { return s->width > 0 ? s->width : 1.5; }
static double opacity_of(const PlotSeries *s) { return s->opacity > 0 ? s->opacity : 1; }

/* Data ranges with margins; ymax clips the top when asked. */
static int fit_ranges(const PlotChart *c, const PlotSeries *s, size_t ns, Frame *f, PcError *err) {
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (size_t i = 0; i < ns; i++)
    for (size_t k = 0; k < s[i].n; k++) {
      PlotPoint p = s[i].pts[k];
      if (!finite_pt(p)) continue;
      xlo = fmin(xlo, p.x), xhi = fmax(xhi, p.x);
      ylo = fmin(ylo, p.y), yhi = fmax(yhi, p.y);
    }
  if (xlo > xhi) return pc_errorf(err, "nothing to plot: no series has a finite point");
  if (c->clip_y) {
    if (!isfinite(c->ymax) || c->ymax <= ylo)
      return pc_errorf(err, "ymax %g is not above the lowest value %g", c->ymax, ylo);
    yhi = c->ymax;
  }
  if (xhi == xlo) xlo -= 1, xhi += 1;
  if (yhi == ylo) {
    double d = ylo != 0 ? fabs(ylo) * 0.1 : 1;
    ylo -= d, yhi += d;
  }
  double px = (xhi - xlo) * 0.02, py = (yhi - ylo) * 0.04;
  f->xlo = xlo - px, f->xhi = xhi + px;
  f->ylo = ylo - py, f->yhi = c->clip_y ? yhi : yhi + py;
  return 0;
}

static void put_axes(Buf *b, const PlotChart *c, const Frame *f) {
  double ticks[64], step;
  char label[64];
  int tx = (int)((f->x1 - f->x0) / 100), ty = (int)((f->y1 - f->y0) / 70);
  step = plot_tick_step(f->xlo, f->xhi, tx > 2 ? tx : 2, c->x_integer);
  size_t n = plot_ticks(f->xlo, f->xhi, step, ticks, 64);
  put(b, "<g class=\"x-ticks\" text-anchor=\"middle\" fill=\"#444\">\n");
  for (size_t i = 0; i < n; i++) {
    double x = sx(f, ticks[i]);
    plot_tick_label(ticks[i], step, label, sizeof label);
    put(b, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#e5e5e5\"/>", x, f->y0, x, f->y1);
    put(b, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#888\"/>", x, f->y1, x, f->y1 + 4);
    put(b, "<text x=\"%.2f\" y=\"%.2f\">%s</text>\n", x, f->y1 + 17, label);
  }
  put(b, "</g>\n");
  step = plot_tick_step(f->ylo, f->yhi, ty > 2 ? ty : 2, 0);
  n = plot_ticks(f->ylo, f->yhi, step, ticks, 64);
  put(b, "<g class=\"y-ticks\" text-anchor=\"end\" fill=\"#444\">\n");
  for (size_t i = 0; i < n; i++) {
    double y = sy(f, ticks[i]);
    plot_tick_label(ticks[i], step, label, sizeof label);
    put(b, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#e5e5e5\"/>", f->x0, y, f->x1, y);
    put(b, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#888\"/>", f->x0 - 4, y, f->x0, y);
    put(b, "<text x=\"%.2f\" y=\"%.2f\" dy=\"0.35em\">%s</text>\n", f->x0 - 7, y, label);
  }
  put(b, "</g>\n");
  if (c->xlabel) {
    put(b, "<text class=\"x-label\" x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" font-size=\"13\">",
        (f->x0 + f->x1) / 2, f->y1 + 38);
    put_text(b, c->xlabel);
    put(b, "</text>\n");
  }
  if (c->ylabel) {
    double x = 18, y = (f->y0 + f->y1) / 2;
    put(b, "<text class=\"y-label\" x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" font-size=\"13\" "
           "transform=\"rotate(-90 %.2f %.2f)\">", x, y, x, y);
    put_text(b, c->ylabel);
    put(b, "</text>\n");
  }
}

static void put_series(Buf *b, const Frame *f, const PlotSeries *s, size_t idx) {
  const char *col = color_of(s, idx);
  size_t shown = 0;
  put(b, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" stroke-width=\"%.2f\" stroke-opacity=\"%.2f\" "
         "stroke-linejoin=\"round\" stroke-linecap=\"round\" points=\"", col, width_of(s), opacity_of(s));
  for (size_t k = 0; k < s->n; k++) {
    if (!finite_pt(s->pts[k])) continue;
    put(b, "%s%.2f,%.2f", shown++ ? " " : "", sx(f, s->pts[k].x), sy(f, s->pts[k].y));
  }
  put(b, "\"/>\n");
  if (!s->markers && shown != 1) return;
  double r = width_of(s) + 1.5;
  put(b, "<g fill=\"%s\" fill-opacity=\"%.2f\" stroke=\"#fff\" stroke-width=\"0.8\">", col, opacity_of(s));
  for (size_t k = 0; k < s->n; k++)
    if (finite_pt(s->pts[k]))
      put(b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.1f\"/>", sx(f, s->pts[k].x), sy(f, s->pts[k].y), r);
  put(b, "</g>\n");
}

/* The named series, one row each, in a box in the plot area's top right corner. */
static void put_legend(Buf *b, const Frame *f, const PlotSeries *s, size_t ns) {
  size_t rows = 0, longest = 0;
  for (size_t i = 0; i < ns; i++)
    if (s[i].name) {
      rows++;
      if (strlen(s[i].name) > longest) longest = strlen(s[i].name);
    }
  if (!rows) return;
  double w = 46 + 6.8 * (double)longest, h = 10 + 19 * (double)rows;
  double x = f->x1 - w - 10, y = f->y0 + 10;
  put(b, "<g class=\"legend\">\n<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" rx=\"3\" "
         "fill=\"#fff\" fill-opacity=\"0.9\" stroke=\"#ccc\"/>\n", x, y, w, h);
  size_t row = 0;
  for (size_t i = 0; i < ns; i++) {
    if (!s[i].name) continue;
    double cy = y + 14.5 + 19 * (double)row++;
    const char *col = color_of(&s[i], i);
    double op = opacity_of(&s[i]) < 0.5 ? 0.5 : opacity_of(&s[i]);
    put(b, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" stroke-width=\"%.2f\" "
           "stroke-opacity=\"%.2f\"/>", x + 8, cy, x + 32, cy, col, width_of(&s[i]) < 1.5 ? 1.5 : width_of(&s[i]), op);
    if (s[i].markers)
      put(b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.1f\" fill=\"%s\" stroke=\"#fff\" stroke-width=\"0.8\"/>", x + 20, cy,
          width_of(&s[i]) + 1.5, col);
    put(b, "<text x=\"%.2f\" y=\"%.2f\" dy=\"0.35em\">", x + 40, cy);
    put_text(b, s[i].name);
    put(b, "</text>\n");
  }
  put(b, "</g>\n");
}

int plot_svg_render(const PlotChart *c, const PlotSeries *s, size_t ns, char **out, PcError *err) {
  int W = c->width > 0 ? c->width : 960, H = c->height > 0 ? c->height : 540;
  double top = c->title || c->subtitle ? 58 : 16;
  Frame f = {.x0 = 74, .x1 = W - 24, .y0 = top, .y1 = H - 52};
  if (f.x1 - f.x0 < 50 || f.y1 - f.y0 < 50) return pc_errorf(err, "a %dx%d chart is too small to draw", W, H);
  if (fit_ranges(c, s, ns, &f, err)) return -1;

  Buf b = {0};
  put(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
          "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n", W, H, W, H);
  if (c->title) {
    put(&b, "<title>");
    put_text(&b, c->title);
    put(&b, "</title>\n");
  }
  put(&b, "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n");
  put(&b, "<defs><clipPath id=\"plot-area\"><rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"/></clipPath></defs>\n",
      f.x0, f.y0, f.x1 - f.x0, f.y1 - f.y0);
  if (c->title) {
    put(&b, "<text class=\"title\" x=\"%.2f\" y=\"24\" font-size=\"16\" font-weight=\"bold\">", f.x0);
    put_text(&b, c->title);
    put(&b, "</text>\n");
  }
  if (c->subtitle) {
    put(&b, "<text class=\"subtitle\" x=\"%.2f\" y=\"%d\" fill=\"#555\">", f.x0, c->title ? 44 : 24);
    put_text(&b, c->subtitle);
    put(&b, "</text>\n");
  }
  put_axes(&b, c, &f);
  put(&b, "<g clip-path=\"url(#plot-area)\">\n");
  for (size_t i = 0; i < ns; i++) put_series(&b, &f, &s[i], i);
  put(&b, "</g>\n");
  put(&b, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" stroke=\"#888\"/>\n", f.x0, f.y0,
      f.x1 - f.x0, f.y1 - f.y0);
  put_legend(&b, &f, s, ns);
  put(&b, "</svg>\n");
  *out = b.a;
  return 0;
}

int plot_svg_save(const char *path, const PlotChart *c, const PlotSeries *s, size_t ns, PcError *err) {
  char *svg;
  if (plot_svg_render(c, s, ns, &svg, err)) return -1;
  size_t k = strlen(path), len = strlen(svg);
  char *tmp = pc_xmalloc(k + sizeof ".tmp.XXXXXX");
  memcpy(tmp, path, k);
  memcpy(tmp + k, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
  int fd = mkstemp(tmp), rc = 0;
  if (fd < 0) {
    rc = pc_errorf(err, "%s: cannot write: %s", path, strerror(errno));
  } else {
    FILE *fp = fdopen(fd, "w");
    int ok = fp && fchmod(fd, 0644) == 0 && fwrite(svg, 1, len, fp) == len;
    int e = errno;
    if (!fp) close(fd);
    else if (fclose(fp) != 0 && ok) ok = 0, e = errno;
    if (ok && rename(tmp, path) != 0) ok = 0, e = errno;
    if (!ok) {
      unlink(tmp);
      rc = pc_errorf(err, "%s: cannot write: %s", path, strerror(e));
    }
  }
  free(tmp);
  free(svg);
  return rc;
}
