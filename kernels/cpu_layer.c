/* Fused CPU kernel for the inference forward of one ActFusion layer (spec §1.3, §1.4, §2).
 *
 * From the stacked projections Y of a layer input x [B, C, L] (one matmul, done by the caller) it computes,
 * in one pass over Y:
 *   conv  = b_conv + sum_j W_j · x[t + o_j]                  (the 'same' dilated conv, zero padding)
 *   attn  = sum_j a_j(t) · v[t + o_j]                          (dilated local attention, spec §2)
 *   mixed = conv + attn, and its per-channel mean and variance over time,
 * then writes the instance-normalised mixed (biased variance, eps) to `out` [B, C, L].
 * Out-of-range taps keep zero keys and values and stay in the softmax denominator with logit
 * beta_j / sqrt(C) + log_invalid; valid taps get (q·k + beta_j) / sqrt(C) + log_valid; invalid taps are then
 * given weight 0, as in the official code.
 *
 * Two ways to get q·k:
 *   plain:    Y = [W_0; ...; W_{K-1}; W_q; W_k; W_v] · x, and q = W_q·x + (p_q or b_q), k = W_k·x + (p_k or b_k)
 *             with p = [p_q; p_k] per-position biases [B, 2C, L] (the decoder's cached cross projection);
 *   expanded: Y = [W_0; ...; W_{K-1}; W_q^T W_k; W_v] · x, p = [W_k^T p_q; W_q^T p_k] and
 *             pair[j][t] = p_q(t) · p_k(t + o_j), so that q_t·k_s = x_t·(g_s + W_q^T p_k(s)) +
 *             (W_k^T p_q(t))·x_s + p_q(t)·p_k(s) with g = W_q^T W_k x: one C×C matrix fewer per DDIM step,
 *             the per-position terms computed once per sampling by the caller.
 * v = W_v·x + b_v. With taps = 0 the conv comes from `conv` (computed by the Winograd transforms at the
 * end of this file) or there is none (attention alone).
 *
 * fp32 data, double accumulators for the statistics; threads from the OpenMP runtime already loaded by
 * torch. No allocation of tensor-sized memory: the caller passes every buffer.
 */
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define TILE 512
#define MAX_TAPS 16
#define LANES 8

/* Keep in step with MixArgs in cpu.py. Pointers marked "may be NULL" mean zero. */
struct mix_args {
    const float *y;       /* [B, (taps + 3)C, L], or (taps + 2)C rows when expanded; NULL: q, k, v below */
    long y_stride;        /* batch stride of y */
    const float *q, *k, *v; /* without y (plain, taps = 0): q, k, v [B, C, L] */
    long q_stride, k_stride, v_stride;
    const float *x;       /* expanded: the layer input [B, C, L] */
    long x_stride;
    const float *p;       /* [B, 2C, L] per-position q- and k-side terms, may be NULL (plain) */
    long p_stride;
    const float *pair;    /* expanded: [B, K, L] p_q(t)·p_k(t + o_j) */
    long pair_stride;
    const float *conv;    /* taps = 0: the conv without its bias [B, C, L], may be NULL (no conv) or `out` */
    long conv_stride;
    const float *bq, *bk; /* plain without p: per-channel biases of q and k, may be NULL */
    const float *bv;      /* [C] bias of v, may be NULL */
    const float *bconv;   /* [C] conv bias, may be NULL */
    const float *beta;    /* [K] tap bias, may be NULL */
    long B, C, L, K, taps, dilation;
    int expanded;
    float log_valid, log_invalid, eps;
    float *out;           /* [B, C, L] contiguous */
    double *stats;        /* NULL (no normalisation) or 2·B·ceil(L/TILE)·C doubles of scratch */
    int threads;
};

/* exp(x) for x <= 0 to ~1 ulp: x = n·ln2 + r, |r| <= ln2/2, degree-7 Taylor polynomial of exp(r).
 * Written with plain arithmetic so the compiler vectorises the softmax loops. */
static inline float exp_nonpositive(float x) {
    if (x < -87.0f) x = -87.0f;
    const float n = nearbyintf(x * 1.44269504088896341f);
    const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187045e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { int32_t i; float f; } scale;
    scale.i = ((int32_t)n + 127) << 23;
    return p * scale.f;
}

/* The taps' valid query range inside [t0, t1): t + o in [0, length). */
static inline void tap_window(long t0, long t1, long offset, long length, long *lo, long *hi) {
    long first = -offset > t0 ? -offset : t0;
    long stop = length - offset < t1 ? length - offset : t1;
    *lo = first;
    *hi = stop > first ? stop : first;
}

/* The per-batch-element view of the rows the tile loops read. */
struct rows {
    const float *y, *query, *key, *value, *x, *p_query, *p_key, *pair, *conv;
    int conv_in_out; /* the conv is in `out` already (conv == out): each value is read before it is written */
};

static struct rows rows_of(const struct mix_args *a, long b) {
    const long plane = a->C * a->L;
    struct rows r;
    if (a->y) {
        r.y = a->y + b * a->y_stride;
        r.query = a->expanded ? NULL : r.y + a->taps * plane;
        r.key = r.y + (a->taps + (a->expanded ? 0 : 1)) * plane;
        r.value = r.key + plane;
    } else {
        r.y = NULL;
        r.query = a->q + b * a->q_stride;
        r.key = a->k + b * a->k_stride;
        r.value = a->v + b * a->v_stride;
    }
    r.x = a->expanded ? a->x + b * a->x_stride : NULL;
    r.p_query = a->p ? a->p + b * a->p_stride : NULL;
    r.p_key = a->p ? r.p_query + plane : NULL;
    r.pair = a->expanded ? a->pair + b * a->pair_stride : NULL;
    r.conv_in_out = a->conv && a->conv == a->out && a->conv_stride == plane;
    r.conv = a->conv && !r.conv_in_out ? a->conv + b * a->conv_stride : NULL;
    return r;
}

/* Scores and outputs of a tile whose taps are all in range (most tiles), with the tap count a
 * compile-time constant once inlined: the tap loop unrolls inside the vectorised time loop, so each
 * output is written once instead of read and written once per tap. Same operation order as the general
 * loops in mix_tile, so both give the same numbers. */
static inline __attribute__((always_inline)) void interior_scores(const struct mix_args *a,
                                                                  const struct rows *r, const long K,
                                                                  const long *restrict offset, long base,
                                                                  long t0, long t1, float scores[][TILE]) {
    const long C = a->C, L = a->L;
    for (long c = 0; c < C; c++) {
        const float *restrict krow = r->key + c * L;
        if (r->x) {
            const float *restrict xrow = r->x + c * L, *restrict pq = r->p_query + c * L,
                                  *restrict pk = r->p_key + c * L;
            for (long t = t0; t < t1; t++) {
                const float query = xrow[t], side = pq[t];
                for (long j = 0; j < K; j++)
                    scores[j][t - base] +=
                        query * (krow[t + offset[j]] + pk[t + offset[j]]) + side * xrow[t + offset[j]];
            }
        } else if (r->p_query) {
            const float *restrict qrow = r->query + c * L, *restrict pq = r->p_query + c * L,
                                  *restrict pk = r->p_key + c * L;
            for (long t = t0; t < t1; t++) {
                const float query = qrow[t] + pq[t];
                for (long j = 0; j < K; j++)
                    scores[j][t - base] += query * (krow[t + offset[j]] + pk[t + offset[j]]);
            }
        } else {
            const float *restrict qrow = r->query + c * L;
            const float b_q = a->bq ? a->bq[c] : 0.0f, b_k = a->bk ? a->bk[c] : 0.0f;
            for (long t = t0; t < t1; t++) {
                const float query = qrow[t] + b_q;
                for (long j = 0; j < K; j++) scores[j][t - base] += query * (krow[t + offset[j]] + b_k);
            }
        }
    }
}

/* value + sum_j w_j(t) · (v(t + o_j) + b_v), taps in order: the attention part of the mixed value at frame
 * t, whose weights are column t - base of the tile's `weights`. */
static inline __attribute__((always_inline)) float plus_attention(float value, const long K,
                                                                  const long *restrict offset,
                                                                  const float *restrict vrow, float b_v,
                                                                  float weights[][TILE], long base, long t) {
    for (long j = 0; j < K; j++) value += weights[j][t - base] * (vrow[t + offset[j]] + b_v);
    return value;
}

static inline __attribute__((always_inline)) void interior_output(const struct mix_args *a,
                                                                  const struct rows *r, const long K,
                                                                  const long *restrict offset, long base,
                                                                  long t0, long t1, float weights[][TILE],
                                                                  float *restrict out) {
    const long C = a->C, L = a->L;
    for (long c = 0; c < C; c++) {
        float *restrict row = out + c * L;
        const float *restrict vrow = r->value + c * L;
        const float b_conv = a->bconv ? a->bconv[c] : 0.0f, b_v = a->bv ? a->bv[c] : 0.0f;
        if (a->taps) {
            const float *restrict tap = r->y + c * L;
            for (long t = t0; t < t1; t++) {
                float value = b_conv;
                for (long j = 0; j < K; j++)
                    value += tap[j * C * L + t + offset[j]] + weights[j][t - base] * (vrow[t + offset[j]] + b_v);
                row[t] = value;
            }
        } else if (r->conv_in_out) { /* one loop per source of the conv: a choice inside kept it scalar */
            for (long t = t0; t < t1; t++)
                row[t] = plus_attention(b_conv + row[t], K, offset, vrow, b_v, weights, base, t);
        } else if (r->conv) {
            const float *restrict conv = r->conv + c * L;
            for (long t = t0; t < t1; t++)
                row[t] = plus_attention(b_conv + conv[t], K, offset, vrow, b_v, weights, base, t);
        } else {
            for (long t = t0; t < t1; t++) row[t] = plus_attention(b_conv, K, offset, vrow, b_v, weights, base, t);
        }
    }
}

#define INTERIOR(K_)                                                                                     \
    case K_:                                                                                             \
        if (phase == 0) interior_scores(a, r, K_, offset, base, t0, t1, scores);                         \
        else interior_output(a, r, K_, offset, base, t0, t1, weights, out);                              \
        return 1;

/* Phase 0 (scores) or 1 (outputs) over [t0, t1), where all taps are in range, of the tile starting at
 * `base`, for the common tap counts; 0 for others. */
static int interior_phase(int phase, const struct mix_args *a, const struct rows *r, const long *offset,
                          long base, long t0, long t1, float scores[][TILE], float weights[][TILE],
                          float *out) {
    switch (a->K) {
        INTERIOR(3)
        INTERIOR(5)
        INTERIOR(7)
        INTERIOR(9)
    default:
        return 0;
    }
}

/* Four doubles, and the four floats they widen (GCC/clang vector extensions): the statistics' lanes. */
typedef double vec4d __attribute__((vector_size(32)));
typedef float vec4f __attribute__((vector_size(16)));

/* The part of [lo, hi) in the `part`-th (0 or 1) of the ranges [t0, first) and [stop, t1) around the
 * interior range [first, stop). */
static inline void outside(int part, long t0, long first, long stop, long t1, long lo, long hi, long *from,
                           long *to) {
    const long p0 = part ? stop : t0, p1 = part ? t1 : first;
    *from = lo > p0 ? lo : p0;
    *to = hi < p1 ? hi : p1;
}

/* One tile [t0, t1) of batch element b: mixed values into out, per-channel sum and sum of squares. The
 * range [first, stop) where every tap is in range goes by the unrolled loops of interior_phase (where
 * they exist for K), the rest of the tile by the general loops below. */
static void mix_tile(const struct mix_args *a, long b, long t0, long t1, double *restrict stats) {
    const long C = a->C, L = a->L, K = a->K, width = t1 - t0;
    const float inv_sqrt_c = 1.0f / sqrtf((float)C);
    const struct rows r = rows_of(a, b);
    float *restrict out = a->out + b * C * L;
    long lo[MAX_TAPS], hi[MAX_TAPS], offset[MAX_TAPS];
    float scores[MAX_TAPS][TILE], weights[MAX_TAPS][TILE], query[TILE];
    long first = t0, stop = t1;
    for (long j = 0; j < K; j++) {
        offset[j] = (j - K / 2) * a->dilation;
        tap_window(t0, t1, offset[j], L, &lo[j], &hi[j]);
        first = lo[j] > first ? lo[j] : first;
        stop = hi[j] < stop ? hi[j] : stop;
        memset(scores[j], 0, sizeof(float) * TILE);
    }
    if (stop <= first || !interior_phase(0, a, &r, offset, t0, first, stop, scores, weights, out))
        first = stop = t1; /* no interior range: the general loops take the whole tile */
    /* Scores over channels, for the taps in range: q_t · k_{t+o_j}, or its expanded form. */
    for (long c = 0; c < C && (first > t0 || stop < t1); c++) {
        const float *krow = r.key + c * L, *xrow = r.x ? r.x + c * L : NULL;
        const float *pq = r.p_query ? r.p_query + c * L : NULL, *pk = r.p_key ? r.p_key + c * L : NULL;
        const float b_q = a->bq ? a->bq[c] : 0.0f, b_k = a->bk ? a->bk[c] : 0.0f;
        for (int part = 0; part < 2; part++) {
            long from, to;
            outside(part, t0, first, stop, t1, t0, t1, &from, &to);
            for (long t = from; t < to; t++)
                query[t - t0] = xrow ? xrow[t] : r.query[c * L + t] + (pq ? pq[t] : b_q);
        }
        for (long j = 0; j < K; j++) {
            const long o = offset[j];
            float *restrict s = scores[j];
            for (int part = 0; part < 2; part++) {
                long from, to;
                outside(part, t0, first, stop, t1, lo[j], hi[j], &from, &to);
                if (xrow) {
                    for (long t = from; t < to; t++)
                        s[t - t0] += query[t - t0] * (krow[t + o] + pk[t + o]) + pq[t] * xrow[t + o];
                } else if (pk) {
                    for (long t = from; t < to; t++) s[t - t0] += query[t - t0] * (krow[t + o] + pk[t + o]);
                } else {
                    for (long t = from; t < to; t++) s[t - t0] += query[t - t0] * (krow[t + o] + b_k);
                }
            }
        }
    }
    /* Softmax over the K taps (all of them in the denominator), then invalid taps get weight 0. Loops run
     * over time innermost so that they vectorise. */
    float maximum[TILE], total[TILE];
    for (long t = 0; t < width; t++) maximum[t] = -INFINITY;
    for (long j = 0; j < K; j++) {
        const float bias = a->beta ? a->beta[j] : 0.0f;
        const long valid_from = lo[j] - t0, valid_to = hi[j] - t0;
        float *restrict logit = weights[j];
        const float *restrict score = scores[j];
        const float *restrict pair = r.pair ? r.pair + j * L + t0 : NULL;
        for (long t = 0; t < width; t++) {
            const int valid = t >= valid_from && t < valid_to;
            const float dot = pair && valid ? score[t] + pair[t] : score[t];
            logit[t] = (dot + bias) * inv_sqrt_c + (valid ? a->log_valid : a->log_invalid);
            maximum[t] = logit[t] > maximum[t] ? logit[t] : maximum[t];
        }
    }
    for (long t = 0; t < width; t++) total[t] = 0.0f;
    for (long j = 0; j < K; j++) {
        float *restrict weight = weights[j];
        for (long t = 0; t < width; t++) {
            weight[t] = exp_nonpositive(weight[t] - maximum[t]);
            total[t] += weight[t];
        }
    }
    for (long t = 0; t < width; t++) total[t] = 1.0f / total[t];
    for (long j = 0; j < K; j++) {
        const long valid_from = lo[j] - t0, valid_to = hi[j] - t0;
        float *restrict weight = weights[j];
        for (long t = 0; t < width; t++)
            weight[t] = t >= valid_from && t < valid_to ? weight[t] * total[t] : 0.0f;
    }
    /* mixed = conv + attention, channel by channel, with the statistics of the result. */
    if (stop > first) interior_phase(1, a, &r, offset, t0, first, stop, scores, weights, out);
    for (long c = 0; c < C; c++) {
        float *restrict row = out + c * L;
        const float b_conv = a->bconv ? a->bconv[c] : 0.0f, b_v = a->bv ? a->bv[c] : 0.0f;
        const float *vrow = r.value + c * L, *conv = r.conv ? r.conv + c * L : NULL;
        for (int part = 0; part < 2; part++) {
            long from, to;
            outside(part, t0, first, stop, t1, t0, t1, &from, &to);
            for (long t = from; t < to; t++)
                row[t] = r.conv_in_out ? b_conv + row[t] : conv ? b_conv + conv[t] : b_conv;
            for (long j = 0; j < K; j++) {
                const long o = offset[j];
                const float *restrict w = weights[j];
                outside(part, t0, first, stop, t1, lo[j], hi[j], &from, &to);
                if (a->taps) {
                    const float *tap = r.y + (j * C + c) * L;
                    for (long t = from; t < to; t++) row[t] += tap[t + o] + w[t - t0] * (vrow[t + o] + b_v);
                } else {
                    for (long t = from; t < to; t++) row[t] += w[t - t0] * (vrow[t + o] + b_v);
                }
            }
        }
        if (!stats) continue;
        /* Eight double lanes (frame t in lane t mod 8), as two halves of four: registers, where one running
         * sum would be a serial chain and a vector of eight doubles is kept in memory without AVX-512. */
        vec4d sum[2] = {{0.0}, {0.0}}, squares[2] = {{0.0}, {0.0}};
        long t = t0;
        for (; t + LANES <= t1; t += LANES) {
            for (int half = 0; half < 2; half++) {
                vec4f values;
                memcpy(&values, row + t + 4 * half, sizeof values);
                const vec4d wide = __builtin_convertvector(values, vec4d);
                sum[half] += wide;
                squares[half] += wide * wide;
            }
        }
        for (; t < t1; t++) {
            sum[0][0] += row[t];
            squares[0][0] += (double)row[t] * row[t];
        }
        stats[2 * c] = stats[2 * c + 1] = 0.0;
        for (long lane = 0; lane < LANES; lane++) {
            stats[2 * c] += sum[lane / 4][lane % 4];
            stats[2 * c + 1] += squares[lane / 4][lane % 4];
        }
    }
}

/* The compile-time sizes the Python side must agree with: columns per tile, the most taps. */
long actfusion_tile(void) { return TILE; }
long actfusion_max_taps(void) { return MAX_TAPS; }

/* sizeof(struct mix_args) and its fields' names and offsets, from one list, for cpu.py's load-time check of
 * its ctypes mirror: the layout function returns the count and fills `out` when it is not NULL. */
#define MIX_ARGS_FIELDS(X) \
    X(y) \
    X(y_stride) \
    X(q) \
    X(k) \
    X(v) \
    X(q_stride) \
    X(k_stride) \
    X(v_stride) \
    X(x) \
    X(x_stride) \
    X(p) \
    X(p_stride) \
    X(pair) \
    X(pair_stride) \
    X(conv) \
    X(conv_stride) \
    X(bq) \
    X(bk) \
    X(bv) \
    X(bconv) \
    X(beta) \
    X(B) \
    X(C) \
    X(L) \
    X(K) \
    X(taps) \
    X(dilation) \
    X(expanded) \
    X(log_valid) \
    X(log_invalid) \
    X(eps) \
    X(out) \
    X(stats) \
    X(threads)
#define MIX_ARGS_OFFSET(field) (long)offsetof(struct mix_args, field),
#define FIELD_NAME(field) #field " "
long actfusion_mix_args_layout(long *out) {
    const long layout[] = {sizeof(struct mix_args), MIX_ARGS_FIELDS(MIX_ARGS_OFFSET)};
    const long count = (long)(sizeof layout / sizeof layout[0]);
    if (out)
        for (long i = 0; i < count; i++) out[i] = layout[i];
    return count;
}
const char *actfusion_mix_args_fields(void) { return MIX_ARGS_FIELDS(FIELD_NAME); }
#undef FIELD_NAME

/* out = [instance_norm](conv + attention), see the top of this file. Returns 0, or 1 for arguments it does
 * not handle. */
int actfusion_mix(const struct mix_args *a) {
    const long B = a->B, C = a->C, L = a->L, K = a->K;
    if (K < 1 || K > MAX_TAPS || C < 1 || L < 1 || B < 1 || a->dilation < 1 || (a->taps != 0 && a->taps != K))
        return 1;
    if (a->expanded && (!a->x || !a->p || !a->pair)) return 1;
    if (!a->y && (a->expanded || a->taps || !a->q || !a->k || !a->v)) return 1;
    if (a->conv && a->taps) return 1;
    const long tiles = (L + TILE - 1) / TILE;
#pragma omp parallel num_threads(a->threads)
    {
#pragma omp for schedule(static)
        for (long index = 0; index < B * tiles; index++) {
            const long b = index / tiles, tile = index % tiles;
            const long t0 = tile * TILE, t1 = t0 + TILE < L ? t0 + TILE : L;
            mix_tile(a, b, t0, t1, a->stats ? a->stats + 2 * C * index : NULL);
        }
        if (a->stats) {
#pragma omp for schedule(static)
            for (long row = 0; row < B * C; row++) {
                const long b = row / C, c = row % C;
                double sum = 0.0, squares = 0.0;
                for (long tile = 0; tile < tiles; tile++) {
                    const double *s = a->stats + 2 * C * (b * tiles + tile) + 2 * c;
                    sum += s[0];
                    squares += s[1];
                }
                const double mean = sum / L;
                double variance = squares / L - mean * mean;
                variance = variance > 0.0 ? variance : 0.0;
                const float m = (float)mean, inv_std = (float)(1.0 / sqrt(variance + a->eps));
                float *restrict values = a->out + row * L;
                for (long t = 0; t < L; t++) values[t] = (values[t] - m) * inv_std;
            }
        }
    }
    return 0;
}

/* pair[b, j, t] = sum_c q[b, c, t] · k[b, c, t + o_j] where t + o_j lies in [0, L), else 0, o_j = (j - K/2)·d:
 * the per-position term p_q(t)·p_k(t + o_j) of the expanded q·k. q and k hold C rows of L frames per batch
 * element, `stride` apart from one element to the next; pair is contiguous [B, K, L]. Returns 1 for sizes it
 * does not handle. */
int actfusion_tap_products(const float *q, const float *k, long stride, float *pair, long B, long C, long L,
                           long K, long d, int threads) {
    if (K < 1 || K > MAX_TAPS || B < 1 || C < 1 || L < 1 || d < 1) return 1;
    const long tiles = (L + TILE - 1) / TILE;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (long index = 0; index < B * tiles; index++) {
        const long b = index / tiles, t0 = index % tiles * TILE, t1 = t0 + TILE < L ? t0 + TILE : L;
        const float *qb = q + b * stride, *kb = k + b * stride;
        for (long j = 0; j < K; j++) {
            const long o = (j - K / 2) * d;
            long lo, hi;
            tap_window(t0, t1, o, L, &lo, &hi);
            float sums[TILE];
            for (long t = 0; t < t1 - t0; t++) sums[t] = 0.0f;
            for (long c = 0; c < C; c++) {
                const float *restrict qrow = qb + c * L, *restrict krow = kb + c * L + o;
                for (long t = lo; t < hi; t++) sums[t - t0] += qrow[t] * krow[t];
            }
            memcpy(pair + (b * K + j) * L + t0, sums, sizeof(float) * (t1 - t0));
        }
    }
    return 0;
}

/* y[b, c, t] = act(y[b, c, t] + bias[c] (+ residual[b, c, t])), act = ReLU or identity; y and residual
 * contiguous [B, C, L]. The epilogue of a 1×1 convolution computed without its bias. */
void actfusion_bias_act(float *y, const float *bias, const float *residual, long B, long C, long L, int relu,
                        int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (long row = 0; row < B * C; row++) {
        const float b = bias[row % C];
        float *restrict values = y + row * L;
        const float *restrict extra = residual ? residual + row * L : NULL;
        if (extra) {
            for (long t = 0; t < L; t++) values[t] = (values[t] + b) + extra[t];
        } else {
            for (long t = 0; t < L; t++) values[t] = values[t] + b;
        }
        if (relu) {
            for (long t = 0; t < L; t++) values[t] = values[t] > 0.0f ? values[t] : 0.0f;
        }
    }
}

/* Winograd F(m, K) for the 'same' dilated conv y(t) = sum_j W_j · x(t + (j - K/2)·d), zero padding.
 * A tile holds m outputs one dilation apart, t = t0 + r·d (r < m), and reads alpha = m + K - 1 inputs
 * x(t0 + (i - K/2)·d) (i < alpha, zero outside [0, L)). Tile (s, n) has the phase s = t0 mod d and
 * the block n = t0 div (m·d), s < d, n < N = ceil(L / (m·d)): d·N tiles, of which those whose outputs
 * all lie past L read zeros and are dropped by the output transform. Then
 *   V[k] = BT · inputs (input transform), M[k] = U[k] · V[k] (C×C matmuls, by the caller, U = G·W),
 *   y(t0 + r·d) = sum_k AT[r][k] · M[k] (output transform).
 * Tile columns: below WINOGRAD_WIDE dilation, phase-major (column s·N + n), each phase's inputs
 * gathered into m phase rows so that loops over n are contiguous; from it on, block-major (column
 * n·d + s), where a run of phases s is contiguous in x, y and the columns alike. The matmuls do not care
 * which; both transforms agree on it. */
#define WINOGRAD_RUN 128
#define WINOGRAD_WIDE 16
#define WINOGRAD_MAX_OUTPUTS 8
#define WINOGRAD_MAX_POINTS 16

static int winograd_sizes(long K, long m, long alpha) {
    return K >= 1 && K % 2 == 1 && m >= 1 && m <= WINOGRAD_MAX_OUTPUTS && alpha == m + K - 1 &&
           alpha <= WINOGRAD_MAX_POINTS && K / 2 <= m;
}

/* A run's tiles go through the transforms RUN_LANES at a time, one vector register each (GCC/clang vector
 * extension): sixteen floats where AVX-512 gives 32 such registers, else eight (AVX2 has 16 registers, so
 * a run's eight inputs and the sum stay in registers instead of spilling). */
#ifdef __AVX512F__
#define RUN_LANES 16
#else
#define RUN_LANES 8
#endif
typedef float vec_run __attribute__((vector_size(4 * RUN_LANES)));

static inline vec_run splat(float value) {
    vec_run vector;
    for (int lane = 0; lane < RUN_LANES; lane++) vector[lane] = value;
    return vector;
}

/* dst[k][u] = sum_i coefficients[k][i] · src[i][u] for u < run: a run of tiles through a transform
 * matrix [rows, inputs], RUN_LANES tiles at a time. Sizes are compile-time constants once inlined (see
 * `transform`), and the loops over them unrolled, so that the inputs are registers, not an array. */
static inline __attribute__((always_inline)) void transform_run(const long rows, const long inputs,
                                                                const float *restrict coefficients,
                                                                const float *const *src, long run,
                                                                float *const *dst) {
    long u0 = 0;
    for (; u0 + RUN_LANES <= run; u0 += RUN_LANES) {
        vec_run in[WINOGRAD_MAX_POINTS];
#pragma GCC unroll 16
        for (long i = 0; i < inputs; i++) memcpy(&in[i], src[i] + u0, sizeof in[i]);
#pragma GCC unroll 16
        for (long k = 0; k < rows; k++) {
            vec_run sum = in[0] * splat(coefficients[k * inputs]);
#pragma GCC unroll 16
            for (long i = 1; i < inputs; i++) sum += in[i] * splat(coefficients[k * inputs + i]);
            memcpy(dst[k] + u0, &sum, sizeof sum);
        }
    }
    if (u0 == run) return;
    /* The tail: the same vector sums on zero-padded copies (so the same numbers), its lanes stored. */
    const long width = run - u0;
    float padded[WINOGRAD_MAX_POINTS][RUN_LANES], lanes[RUN_LANES];
    for (long i = 0; i < inputs; i++)
        for (long u = 0; u < RUN_LANES; u++) padded[i][u] = u < width ? src[i][u0 + u] : 0.0f;
    for (long k = 0; k < rows; k++) {
        vec_run in, sum;
        memcpy(&in, padded[0], sizeof in);
        sum = in * splat(coefficients[k * inputs]);
        for (long i = 1; i < inputs; i++) {
            memcpy(&in, padded[i], sizeof in);
            sum += in * splat(coefficients[k * inputs + i]);
        }
        memcpy(lanes, &sum, sizeof lanes);
        memcpy(dst[k] + u0, lanes, sizeof(float) * width);
    }
}

/* GCC's -O3 loop transformations (predictive commoning among them) made the transforms 1.5-2x slower on
 * an AVX2 CPU (AMD EPYC, GCC 12: 1.8 -> 1.0 ns per element at C = 128, L = 2000, d = 128, one thread);
 * compiled as at -O2 they keep a run's vectors in registers. */
#if defined(__GNUC__) && !defined(__clang__)
#define TRANSFORM_OPTIMIZE __attribute__((optimize("O2")))
#else
#define TRANSFORM_OPTIMIZE
#endif

/* transform_run with the sizes of F(4, 3) and F(4, 5) as constants, else as given. */
TRANSFORM_OPTIMIZE static void transform(long rows, long inputs, const float *coefficients,
                                         const float *const *src, long run, float *const *dst) {
    if (rows == 6 && inputs == 6) transform_run(6, 6, coefficients, src, run, dst);
    else if (rows == 8 && inputs == 8) transform_run(8, 8, coefficients, src, run, dst);
    else if (rows == 4 && inputs == 6) transform_run(4, 6, coefficients, src, run, dst);
    else if (rows == 4 && inputs == 8) transform_run(4, 8, coefficients, src, run, dst);
    else transform_run(rows, inputs, coefficients, src, run, dst);
}

/* V [B, alpha, C, d·N] from x [B, C, L] and BT [alpha, alpha] (row-major). Returns 1 for sizes it does
 * not handle. */
int actfusion_winograd_input(const float *x, float *v, const float *bt, long B, long C, long L, long K, long m,
                             long d, int threads) {
    const long alpha = m + K - 1, half = K / 2;
    if (!winograd_sizes(K, m, alpha) || B < 1 || C < 1 || L < 1 || d < 1) return 1;
    const long N = (L + m * d - 1) / (m * d), T = d * N;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (long row = 0; row < B * C; row++) {
        const long b = row / C, c = row % C;
        const float *restrict xrow = x + row * L;
        /* Inputs of a run: pointers into x where the whole run is in range, else into `gathered`. */
        float gathered[WINOGRAD_MAX_POINTS][WINOGRAD_RUN + 2];
        const float *src[WINOGRAD_MAX_POINTS];
        float *dst[WINOGRAD_MAX_POINTS];
        const long outer = d >= WINOGRAD_WIDE ? N : d, inner = d >= WINOGRAD_WIDE ? d : N;
        for (long o = 0; o < outer; o++) {
            for (long i0 = 0; i0 < inner; i0 += WINOGRAD_RUN) {
                const long run = inner - i0 < WINOGRAD_RUN ? inner - i0 : WINOGRAD_RUN;
                if (d >= WINOGRAD_WIDE) { /* block n = o, phases s = i0 + u: input i at x[start + u] */
                    for (long i = 0; i < alpha; i++) {
                        const long start = o * m * d + i0 + (i - half) * d;
                        if (start >= 0 && start + run <= L) {
                            src[i] = xrow + start;
                            continue;
                        }
                        for (long u = 0; u < run; u++)
                            gathered[i][u] = start + u >= 0 && start + u < L ? xrow[start + u] : 0.0f;
                        src[i] = gathered[i];
                    }
                    for (long k = 0; k < alpha; k++) dst[k] = v + ((b * alpha + k) * C + c) * T + o * d + i0;
                } else { /* phase s = o, blocks n = i0 + u: input i at x[s + ((i0 + u)·m + i - half)·d] */
                    /* gathered[p][q] = x(s + ((i0 - 1 + q)·m + p)·d): input i of block i0 + u is
                     * gathered[(i - half) mod m] at q = u + 1 + floor((i - half) / m), within
                     * [0, run + 2) as half <= m. */
                    for (long p = 0; p < m; p++) {
                        /* t = start + q·m·d, in [0, L) for q in [lo, hi) */
                        const long start = o + (i0 - 1) * m * d + p * d, step = m * d;
                        const long lo = start >= 0 ? 0 : (-start + step - 1) / step;
                        const long fit = L - start <= 0 ? 0 : (L - start + step - 1) / step;
                        const long hi = fit < run + 2 ? fit : run + 2;
                        const float *restrict phase = xrow + start;
                        float *restrict row = gathered[p];
                        for (long q = 0; q < run + 2; q++) row[q] = 0.0f;
                        for (long q = lo; q < hi; q++) row[q] = phase[q * step];
                    }
                    for (long i = 0; i < alpha; i++) {
                        const long shifted = i - half + m; /* >= 0 */
                        src[i] = gathered[shifted % m] + shifted / m;
                    }
                    for (long k = 0; k < alpha; k++) dst[k] = v + ((b * alpha + k) * C + c) * T + o * N + i0;
                }
                transform(alpha, alpha, bt, src, run, dst);
            }
        }
    }
    return 0;
}

/* y [B, C, L] from M [B, alpha, C, d·N] and AT [m, alpha] (row-major). Returns 1 for sizes it does not
 * handle. */
int actfusion_winograd_output(const float *products, float *y, const float *at, long B, long C, long L, long K,
                              long m, long d, int threads) {
    const long alpha = m + K - 1;
    if (!winograd_sizes(K, m, alpha) || B < 1 || C < 1 || L < 1 || d < 1) return 1;
    const long N = (L + m * d - 1) / (m * d), T = d * N, wide = d >= WINOGRAD_WIDE;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (long row = 0; row < B * C; row++) {
        const long b = row / C, c = row % C;
        float *restrict yrow = y + row * L;
        const float *products_row = products + (b * alpha * C + c) * T;
        float sums[WINOGRAD_MAX_OUTPUTS][WINOGRAD_RUN];
        const float *src[WINOGRAD_MAX_POINTS];
        float *dst[WINOGRAD_MAX_OUTPUTS];
        for (long r = 0; r < m; r++) dst[r] = sums[r];
        /* Runs of tiles: over phases s at one block n (wide), else over blocks n at one phase s. */
        const long outer = wide ? N : d, inner = wide ? d : N;
        for (long o = 0; o < outer; o++) {
            for (long i0 = 0; i0 < inner; i0 += WINOGRAD_RUN) {
                const long run = inner - i0 < WINOGRAD_RUN ? inner - i0 : WINOGRAD_RUN;
                const long column = wide ? o * d + i0 : o * N + i0;
                const long step = wide ? 1 : m * d; /* frames between the run's tiles */
                for (long k = 0; k < alpha; k++) src[k] = products_row + k * C * T + column;
                transform(m, alpha, at, src, run, dst);
                for (long r = 0; r < m; r++) {
                    /* output u at t = first + u·step, kept while t < L */
                    const long first = wide ? (o * m + r) * d + i0 : (i0 * m + r) * d + o;
                    const long fit = first >= L ? 0 : (L - 1 - first) / step + 1;
                    const long stop = fit < run ? fit : run;
                    const float *restrict sum = sums[r];
                    if (wide) {
                        for (long u = 0; u < stop; u++) yrow[first + u] = sum[u];
                    } else {
                        for (long u = 0; u < stop; u++) yrow[first + u * step] = sum[u];
                    }
                }
            }
        }
    }
    return 0;
}
