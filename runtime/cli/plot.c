/* `ponder plot RUN_DIR`: RUN_DIR/metrics.jsonl -> an SVG chart of the
 * training and validation loss against the step (docs/plot.md). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/cli/commands.h"
#include "runtime/plot/svg_plot.h"

static const char usage[] =
    "usage: ponder plot RUN_DIR [options]\n"
    "\n"
    "Draws RUN_DIR/metrics.jsonl (one JSON object per line, as training writes it)\n"
    "as an SVG chart and prints its path: the training loss against the step, with\n"
    "a smoothed line when there are many steps, and the validation loss.\n"
    "\n"
    "options:\n"
    "  -o, --out FILE     where to write the SVG (default RUN_DIR/loss.svg)\n"
    "  --ymax Y           end the loss axis at Y; what lies above is cut off\n"
    "  --title TEXT       the chart's title (default: the run folder's name)\n"
    "  -h, --help         this help\n";

/* Training points at or above this many get a smoothed line as well. */
enum { SMOOTH_FROM = 50 };

typedef struct {
  PlotPoints train, val;
  size_t skipped;         /* steps with "skipped": true or a loss that is not a number */
  size_t bad, first_bad;  /* malformed complete lines: how many, the first's number */
} Metrics;

/* Appends (x, y). A resumed run logs some steps again: the later lines win. */
static void push(PlotPoints *v, double x, double y) {
  while (v->n && v->a[v->n - 1].x >= x) v->n--;
  vec_push(v, ((PlotPoint){x, y}));
}

static int number(const cJSON *o, const char *key, double *out) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble)) return 0;
  *out = it->valuedouble;
  return 1;
}

/* One line's object: a training point, a validation point, both or neither. */
static void take_line(const cJSON *o, Metrics *m) {
  double step, y;
  if (!number(o, "step", &step)) return;
  int has_loss = cJSON_GetObjectItemCaseSensitive(o, "loss") != NULL;
  if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "skipped"))) {
    m->skipped++;
    return;
  }
  if (number(o, "loss", &y)) push(&m->train, step, y);
  else if (has_loss) m->skipped++;
  if (number(o, "val_loss", &y)) push(&m->val, step, y);
}

/* Reads every line; an unfinished last line (no newline and not valid JSON:
 * a run killed mid-write, or one still writing) is left out silently. */
static int read_metrics(const char *path, Metrics *m, PcError *err) {
  FILE *f = fopen(path, "r");
  if (!f) return pc_errorf(err, "%s: %s", path, strerror(errno));
  char *line = NULL;
  size_t cap = 0, lineno = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, f)) >= 0) {
    lineno++;
    int complete = len > 0 && line[len - 1] == '\n';
    while (len > 0 && strchr(" \t\r\n", line[len - 1])) line[--len] = 0;
    if (!len) continue;
    cJSON *o = cJSON_ParseWithOpts(line, NULL, 1);
    if (cJSON_IsObject(o)) take_line(o, m);
    else if (complete && !m->bad++) m->first_bad = lineno;
    cJSON_Delete(o);
  }
  int rc = ferror(f) ? pc_errorf(err, "%s: cannot read: %s", path, strerror(errno)) : 0;
  free(line);
  fclose(f);
  return rc;
}

/* An exponential moving average over the points, debiased so that it starts
 * at the first value; its span grows with the run (5 to 100 points), so it
 * lags a steep descent by about span/2 points. */
static void smooth(const PlotPoints *in, PlotPoints *out) {
  size_t span = in->n / 50;
  span = span < 5 ? 5 : span > 100 ? 100 : span;
  double beta = 1 - 2.0 / ((double)span + 1), s = 0, decay = 1;
  for (size_t i = 0; i < in->n; i++) {
    s = beta * s + (1 - beta) * in->a[i].y;
    decay *= beta;
    vec_push(out, ((PlotPoint){in->a[i].x, s / (1 - decay)}));
  }
}

/* The run folder's own name: "runs/gpt2-small/" -> "gpt2-small". */
static char *run_name(const char *dir) {
  char *d = pc_xstrdup(dir);
  size_t n = strlen(d);
  while (n > 1 && d[n - 1] == '/') d[--n] = 0;
  char *slash = strrchr(d, '/');
  const char *base = slash && slash[1] ? slash + 1 : d;
  if (!strcmp(base, ".") || !strcmp(base, "..")) {
    char *real = realpath(dir, NULL);
    if (real) {
      char *r = strrchr(real, '/');
      char *name = pc_xstrdup(r && r[1] ? r + 1 : real);
      free(real);
      free(d);
      return name;
    }
  }
  char *name = pc_xstrdup(base);
  free(d);
  return name;
}

/* snprintf at buf + *k, moving *k on; what does not fit is cut. */
static void addf(char *buf, size_t cap, size_t *k, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void addf(char *buf, size_t cap, size_t *k, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf + *k, cap - *k, fmt, ap);
  va_end(ap);
  if (n > 0) *k = *k + (size_t)n < cap ? *k + (size_t)n : cap - 1;
}

static int plot_run(const char *dir, const char *out, const char *title, int clip, double ymax, PcError *err) {
  struct stat st;
  if (stat(dir, &st) != 0) return pc_errorf(err, "%s: %s", dir, strerror(errno));
  if (!S_ISDIR(st.st_mode)) return pc_errorf(err, "%s: not a folder", dir);
  char path[4096];
  snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
  Metrics m = {0};
  int rc = read_metrics(path, &m, err);
  if (!rc && !m.train.n) rc = pc_errorf(err, "no training steps in %s", path);
  if (rc) {
    vec_free(&m.train);
    vec_free(&m.val);
    return rc;
  }
  if (m.bad)
    fprintf(stderr, "ponder plot: warning: %s:%zu: not a JSON object; left it out (%zu such line%s)\n", path,
            m.first_bad, m.bad, m.bad == 1 ? "" : "s");

  PlotPoints ema = {0};
  if (m.train.n >= SMOOTH_FROM) smooth(&m.train, &ema);
  char sub[512], *name = run_name(dir);
  PlotPoint last = m.train.a[m.train.n - 1];
  size_t k = 0;
  addf(sub, sizeof sub, &k, "final train loss %.4f (step %.0f", last.y, last.x);
  if (ema.n) addf(sub, sizeof sub, &k, "; smoothed %.4f", ema.a[ema.n - 1].y);
  addf(sub, sizeof sub, &k, ")");
  if (m.val.n)
    addf(sub, sizeof sub, &k, " \xc2\xb7 val loss %.4f (step %.0f)", m.val.a[m.val.n - 1].y, m.val.a[m.val.n - 1].x);
  if (m.skipped) addf(sub, sizeof sub, &k, " \xc2\xb7 %zu step%s skipped", m.skipped, m.skipped == 1 ? "" : "s");
  char ylabel[64];
  if (clip) snprintf(ylabel, sizeof ylabel, "loss (cut off above %g)", ymax);

  PlotSeries s[3];
  size_t ns = 0;
  /* raw train loss thin (faint under a smoothed line), val loss with dots */
  s[ns++] = (PlotSeries){.name = "train loss", .pts = m.train.a, .n = m.train.n, .color = "#1f77b4",
                         .width = ema.n ? 1 : 1.5, .opacity = ema.n ? 0.35 : 1};
  if (ema.n)
    s[ns++] = (PlotSeries){.name = "train loss (smoothed)", .pts = ema.a, .n = ema.n, .color = "#1f77b4", .width = 2};
  if (m.val.n)
    s[ns++] = (PlotSeries){.name = "val loss", .pts = m.val.a, .n = m.val.n, .color = "#d62728", .width = 1.5,
                           .markers = 1};
  PlotChart c = {.title = title ? title : name, .subtitle = sub, .xlabel = "step",
                 .ylabel = clip ? ylabel : "loss", .x_integer = 1, .clip_y = clip, .ymax = ymax};
  rc = plot_svg_save(out, &c, s, ns, err);
  free(name);
  vec_free(&ema);
  vec_free(&m.train);
  vec_free(&m.val);
  return rc;
}

int cmd_plot(int argc, char **argv) {
  static const struct option opts[] = {{"out", required_argument, 0, 'o'},
                                       {"ymax", required_argument, 0, 'y'},
                                       {"title", required_argument, 0, 't'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  const char *out = NULL, *title = NULL;
  double ymax = 0;
  int clip = 0, c;
  while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
    switch (c) {
    case 'o': out = optarg; break;
    case 't': title = optarg; break;
    case 'y': {
      char *end;
      ymax = strtod(optarg, &end);
      if (end == optarg || *end || !isfinite(ymax)) {
        fprintf(stderr, "ponder plot: --ymax %s: expected a number\n", optarg);
        return 2;
      }
      clip = 1;
      break;
    }
    case 'h': fputs(usage, stdout); return 0;
    default: fputs(usage, stderr); return 2;
    }
  }
  if (optind != argc - 1) {
    fprintf(stderr, "ponder plot: expected one RUN_DIR (try --help)\n");
    return 2;
  }
  const char *dir = argv[optind];
  char def[4096];
  if (!out) {
    snprintf(def, sizeof def, "%s/loss.svg", dir);
    out = def;
  }
  PcError err;
  if (plot_run(dir, out, title, clip, ymax, &err)) {
    fprintf(stderr, "ponder plot: %s\n", err.msg);
    return 1;
  }
  printf("%s\n", out);
  return 0;
}
