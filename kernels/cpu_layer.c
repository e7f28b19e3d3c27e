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
 * v = W_v·x + b_v. With taps = 0 there are no conv rows (attention alone).
 *
 * fp32 data, double accumulators for the statistics; threads from the OpenMP runtime already loaded by
 * torch. No allocation of tensor-sized memory: the caller passes every buffer.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define TILE 256
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
    const float *y, *query, *key, *value, *x, *p_query, *p_key, *pair;
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
    return r;
}

/* Scores and outputs of a tile whose taps are all in range (most tiles), with the tap count a
 * compile-time constant once inlined: the tap loop unrolls inside the vectorised time loop, so each
 * output is written once instead of read and written once per tap. Same operation order as the general
 * loops in mix_tile, so both give the same numbers. */
static inline __attribute__((always_inline)) void interior_scores(const struct mix_args *a,
                                                                  const struct rows *r, const long K,
                                                                  const long *restrict offset, long t0,
                                                                  long t1, float scores[][TILE]) {
    const long C = a->C, L = a->L;
    for (long c = 0; c < C; c++) {
        const float *restrict krow = r->key + c * L;
        if (r->x) {
            const float *restrict xrow = r->x + c * L, *restrict pq = r->p_query + c * L,
                                  *restrict pk = r->p_key + c * L;
            for (long t = t0; t < t1; t++) {
                const float query = xrow[t], side = pq[t];
                for (long j = 0; j < K; j++)
                    scores[j][t - t0] +=
                        query * (krow[t + offset[j]] + pk[t + offset[j]]) + side * xrow[t + offset[j]];
            }
        } else if (r->p_query) {
            const float *restrict qrow = r->query + c * L, *restrict pq = r->p_query + c * L,
                                  *restrict pk = r->p_key + c * L;
            for (long t = t0; t < t1; t++) {
                const float query = qrow[t] + pq[t];
                for (long j = 0; j < K; j++)
                    scores[j][t - t0] += query * (krow[t + offset[j]] + pk[t + offset[j]]);
            }
        } else {
            const float *restrict qrow = r->query + c * L;
            const float b_q = a->bq ? a->bq[c] : 0.0f, b_k = a->bk ? a->bk[c] : 0.0f;
            for (long t = t0; t < t1; t++) {
                const float query = qrow[t] + b_q;
                for (long j = 0; j < K; j++) scores[j][t - t0] += query * (krow[t + offset[j]] + b_k);
            }
        }
    }
}

static inline __attribute__((always_inline)) void interior_output(const struct mix_args *a,
                                                                  const struct rows *r, const long K,
                                                                  const long *restrict offset, long t0,
                                                                  long t1, float weights[][TILE],
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
                    value += tap[j * C * L + t + offset[j]] + weights[j][t - t0] * (vrow[t + offset[j]] + b_v);
                row[t] = value;
            }
        } else {
            for (long t = t0; t < t1; t++) {
                float value = b_conv;
                for (long j = 0; j < K; j++) value += weights[j][t - t0] * (vrow[t + offset[j]] + b_v);
                row[t] = value;
            }
        }
    }
}

#define INTERIOR(K_)                                                                                     \
    case K_:                                                                                             \
        if (phase == 0) interior_scores(a, r, K_, offset, t0, t1, scores);                               \
        else interior_output(a, r, K_, offset, t0, t1, weights, out);                                    \
        return 1;

/* Phase 0 (scores) or 1 (outputs) of an interior tile for the common tap counts; 0 for others. */
static int interior_phase(int phase, const struct mix_args *a, const struct rows *r, const long *offset,
                          long t0, long t1, float scores[][TILE], float weights[][TILE], float *out) {
    switch (a->K) {
        INTERIOR(3)
        INTERIOR(5)
        INTERIOR(7)
        INTERIOR(9)
    default:
        return 0;
    }
}

/* One tile [t0, t1) of batch element b: mixed values into out, per-channel sum and sum of squares. */
static void mix_tile(const struct mix_args *a, long b, long t0, long t1, double *restrict stats) {
    const long C = a->C, L = a->L, K = a->K, width = t1 - t0;
    const float inv_sqrt_c = 1.0f / sqrtf((float)C);
    const struct rows r = rows_of(a, b);
    float *restrict out = a->out + b * C * L;
    long lo[MAX_TAPS], hi[MAX_TAPS], offset[MAX_TAPS];
    float scores[MAX_TAPS][TILE], weights[MAX_TAPS][TILE], query[TILE];
    int interior = 1;
    for (long j = 0; j < K; j++) {
        offset[j] = (j - K / 2) * a->dilation;
        tap_window(t0, t1, offset[j], L, &lo[j], &hi[j]);
        interior = interior && lo[j] == t0 && hi[j] == t1;
        memset(scores[j], 0, sizeof(float) * TILE);
    }
    interior = interior && interior_phase(0, a, &r, offset, t0, t1, scores, weights, out);
    /* Scores over channels, for the taps in range: q_t · k_{t+o_j}, or its expanded form. */
    for (long c = 0; c < C && !interior; c++) {
        const float *krow = r.key + c * L, *xrow = r.x ? r.x + c * L : NULL;
        const float *pq = r.p_query ? r.p_query + c * L : NULL, *pk = r.p_key ? r.p_key + c * L : NULL;
        const float b_q = a->bq ? a->bq[c] : 0.0f, b_k = a->bk ? a->bk[c] : 0.0f;
        for (long t = t0; t < t1; t++)
            query[t - t0] = xrow ? xrow[t] : r.query[c * L + t] + (pq ? pq[t] : b_q);
        for (long j = 0; j < K; j++) {
            const long o = offset[j];
            float *restrict s = scores[j];
            if (xrow) {
                for (long t = lo[j]; t < hi[j]; t++)
                    s[t - t0] += query[t - t0] * (krow[t + o] + pk[t + o]) + pq[t] * xrow[t + o];
            } else if (pk) {
                for (long t = lo[j]; t < hi[j]; t++) s[t - t0] += query[t - t0] * (krow[t + o] + pk[t + o]);
            } else {
                for (long t = lo[j]; t < hi[j]; t++) s[t - t0] += query[t - t0] * (krow[t + o] + b_k);
            }
        }
    }
    /* Softmax over the K taps (all of them in the denominator), then invalid taps get weight 0. Loops run
     * over time innermost so that they vectorise. */
    float maximum[TILE], total[TILE];
    for (long t = 0; t < width; t++) maximum[t] = -INFINITY;
    for (long j = 0; j < K; j++) {
        const float bias = a->beta ? a->beta[j] : 0.0f;
        const long first = lo[j] - t0, stop = hi[j] - t0;
        float *restrict logit = weights[j];
        const float *restrict score = scores[j];
        const float *restrict pair = r.pair ? r.pair + j * L + t0 : NULL;
        for (long t = 0; t < width; t++) {
            const int valid = t >= first && t < stop;
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
        const long first = lo[j] - t0, stop = hi[j] - t0;
        float *restrict weight = weights[j];
        for (long t = 0; t < width; t++) weight[t] = t >= first && t < stop ? weight[t] * total[t] : 0.0f;
    }
    /* mixed = conv + attention, channel by channel, with the statistics of the result. */
    if (interior) interior_phase(1, a, &r, offset, t0, t1, scores, weights, out);
    for (long c = 0; c < C; c++) {
        float *restrict row = out + c * L;
        const float b_conv = a->bconv ? a->bconv[c] : 0.0f, b_v = a->bv ? a->bv[c] : 0.0f;
        const float *vrow = r.value + c * L;
        for (long t = t0; t < t1 && !interior; t++) row[t] = b_conv;
        for (long j = 0; j < K && !interior; j++) {
            const long o = offset[j];
            const float *restrict w = weights[j];
            if (a->taps) {
                const float *tap = r.y + (j * C + c) * L;
                for (long t = lo[j]; t < hi[j]; t++) row[t] += tap[t + o] + w[t - t0] * (vrow[t + o] + b_v);
            } else {
                for (long t = lo[j]; t < hi[j]; t++) row[t] += w[t - t0] * (vrow[t + o] + b_v);
            }
        }
        if (!stats) continue;
        /* Eight independent double accumulators: a vector, where one running sum would be a serial chain. */
        double sum[LANES] = {0.0}, squares[LANES] = {0.0};
        long t = t0;
        for (; t + LANES <= t1; t += LANES) {
            for (long lane = 0; lane < LANES; lane++) {
                const double value = row[t + lane];
                sum[lane] += value;
                squares[lane] += value * value;
            }
        }
        for (; t < t1; t++) {
            sum[0] += row[t];
            squares[0] += (double)row[t] * row[t];
        }
        stats[2 * c] = stats[2 * c + 1] = 0.0;
        for (long lane = 0; lane < LANES; lane++) {
            stats[2 * c] += sum[lane];
            stats[2 * c + 1] += squares[lane];
        }
    }
}

/* The compile-time sizes the Python side must agree with: columns per tile, the most taps. */
long actfusion_tile(void) { return TILE; }
long actfusion_max_taps(void) { return MAX_TAPS; }

/* out = [instance_norm](conv + attention), see the top of this file. Returns 0, or 1 for arguments it does
 * not handle. */
int actfusion_mix(const struct mix_args *a) {
    const long B = a->B, C = a->C, L = a->L, K = a->K;
    if (K < 1 || K > MAX_TAPS || C < 1 || L < 1 || B < 1 || a->dilation < 1 || (a->taps != 0 && a->taps != K))
        return 1;
    if (a->expanded && (!a->x || !a->p || !a->pair)) return 1;
    if (!a->y && (a->expanded || a->taps || !a->q || !a->k || !a->v)) return 1;
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
