/* Fused CPU kernel for the inference forward of one ActFusion layer (spec §1.3, §1.4, §2).
 *
 * Given the stacked projections Y = [W_0; ...; W_{K-1}; W_q; W_k; W_v] · x of one layer input x [B, C, L]
 * (one matmul, done by the caller), it computes in one pass over Y:
 *   conv  = b_conv + sum_j W_j · x[t + o_j]                  (the 'same' dilated conv, zero padding)
 *   attn  = sum_j a_j(t) · v[t + o_j]                          (dilated local attention, spec §2)
 *   mixed = conv + attn, and its per-channel mean and variance over time,
 * then writes the instance-normalised mixed (biased variance, eps) to `out` [B, C, L].
 * q and k get a per-position bias P [B, 2C, L] (the decoder's cached cross projection) or per-channel
 * biases; v gets b_v. Out-of-range taps keep zero keys and values and stay in the softmax denominator with
 * logit beta_j / sqrt(C) + log_invalid; valid taps get (q·k + beta_j) / sqrt(C) + log_valid; invalid taps
 * are then given weight 0, as in the official code.
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

/* Scores and outputs of a tile whose taps are all in range (most tiles), with the tap count a
 * compile-time constant once inlined: the tap loop unrolls inside the vectorised time loop, so each
 * output is written once instead of read and written once per tap. Same operation order as the general
 * loops in mix_tile, so both give the same numbers. */
static inline __attribute__((always_inline)) void interior_scores(
    const float *restrict yq, const float *restrict yk, const float *restrict p, const float *restrict bq,
    const float *restrict bk, long C, long L, const long K, const long *restrict offset, long t0, long t1,
    float scores[][TILE]) {
    for (long c = 0; c < C; c++) {
        const float *restrict qrow = yq + c * L, *restrict krow = yk + c * L;
        if (p) {
            const float *restrict pq = p + c * L, *restrict pk = p + (C + c) * L;
            for (long t = t0; t < t1; t++) {
                const float query = qrow[t] + pq[t];
                for (long j = 0; j < K; j++)
                    scores[j][t - t0] += query * (krow[t + offset[j]] + pk[t + offset[j]]);
            }
        } else {
            const float b_q = bq ? bq[c] : 0.0f, b_k = bk ? bk[c] : 0.0f;
            for (long t = t0; t < t1; t++) {
                const float query = qrow[t] + b_q;
                for (long j = 0; j < K; j++) scores[j][t - t0] += query * (krow[t + offset[j]] + b_k);
            }
        }
    }
}

static inline __attribute__((always_inline)) void interior_output(
    const float *restrict y, const float *restrict yv, const float *restrict bv,
    const float *restrict bconv, long C, long L, const long K, long taps, const long *restrict offset,
    long t0, long t1, float weights[][TILE], float *restrict out) {
    for (long c = 0; c < C; c++) {
        float *restrict row = out + c * L;
        const float *restrict vrow = yv + c * L;
        const float b_conv = bconv ? bconv[c] : 0.0f, b_v = bv ? bv[c] : 0.0f;
        if (taps) {
            const float *restrict tap = y + c * L;
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
        if (phase == 0) interior_scores(yq, yk, p, bq, bk, C, L, K_, offset, t0, t1, scores);            \
        else interior_output(y, yv, bv, bconv, C, L, K_, taps, offset, t0, t1, weights, out);            \
        return 1;

/* Phase 0 (scores) or 1 (outputs) of an interior tile for the common tap counts; 0 for others. */
static int interior_phase(int phase, const float *y, const float *yq, const float *yk, const float *yv,
                          const float *p, const float *bq, const float *bk, const float *bv,
                          const float *bconv, long C, long L, long K, long taps, const long *offset, long t0,
                          long t1, float scores[][TILE], float weights[][TILE], float *out) {
    switch (K) {
        INTERIOR(3)
        INTERIOR(5)
        INTERIOR(7)
        INTERIOR(9)
    default:
        return 0;
    }
}

/* One tile [t0, t1) of one batch element: mixed values into out, per-channel sum and sum of squares. */
static void mix_tile(const float *restrict y, const float *restrict p, const float *restrict bq,
                     const float *restrict bk, const float *restrict bv, const float *restrict bconv,
                     const float *restrict beta, long C, long L, long K, long taps, long dilation,
                     float log_valid, float log_invalid, long t0, long t1, float *restrict out,
                     double *restrict stats) {
    const long width = t1 - t0;
    const float inv_sqrt_c = 1.0f / sqrtf((float)C);
    const float *yq = y + taps * C * L, *yk = yq + C * L, *yv = yk + C * L;
    long lo[MAX_TAPS], hi[MAX_TAPS], offset[MAX_TAPS];
    float scores[MAX_TAPS][TILE], weights[MAX_TAPS][TILE], query[TILE];
    int interior = 1;
    for (long j = 0; j < K; j++) {
        offset[j] = (j - K / 2) * dilation;
        tap_window(t0, t1, offset[j], L, &lo[j], &hi[j]);
        interior = interior && lo[j] == t0 && hi[j] == t1;
        memset(scores[j], 0, sizeof(float) * TILE);
    }
    interior = interior && interior_phase(0, y, yq, yk, yv, p, bq, bk, bv, bconv, C, L, K, taps, offset, t0,
                                          t1, scores, weights, out);
    /* Scores: q_t · k_{t+o_j} over channels, for the taps in range. */
    for (long c = 0; c < C && !interior; c++) {
        const float *qrow = yq + c * L, *krow = yk + c * L;
        const float *pq = p ? p + c * L : NULL, *pk = p ? p + (C + c) * L : NULL;
        const float b_q = bq ? bq[c] : 0.0f;
        for (long t = t0; t < t1; t++) query[t - t0] = qrow[t] + (pq ? pq[t] : b_q);
        for (long j = 0; j < K; j++) {
            const long o = offset[j];
            float *restrict s = scores[j];
            if (pk) {
                for (long t = lo[j]; t < hi[j]; t++) s[t - t0] += query[t - t0] * (krow[t + o] + pk[t + o]);
            } else {
                const float b = bk ? bk[c] : 0.0f;
                for (long t = lo[j]; t < hi[j]; t++) s[t - t0] += query[t - t0] * (krow[t + o] + b);
            }
        }
    }
    /* Softmax over the K taps (all of them in the denominator), then invalid taps get weight 0. Loops run
     * over time innermost so that they vectorise. */
    float maximum[TILE], total[TILE];
    for (long t = 0; t < width; t++) maximum[t] = -INFINITY;
    for (long j = 0; j < K; j++) {
        const float bias = beta ? beta[j] : 0.0f;
        const long first = lo[j] - t0, stop = hi[j] - t0;
        float *restrict logit = weights[j];
        const float *restrict score = scores[j];
        for (long t = 0; t < width; t++) {
            const float mask = t >= first && t < stop ? log_valid : log_invalid;
            logit[t] = (score[t] + bias) * inv_sqrt_c + mask;
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
    if (interior) interior_phase(1, y, yq, yk, yv, p, bq, bk, bv, bconv, C, L, K, taps, offset, t0, t1,
                                 scores, weights, out);
    for (long c = 0; c < C; c++) {
        float *restrict row = out + c * L;
        const float b_conv = bconv ? bconv[c] : 0.0f, b_v = bv ? bv[c] : 0.0f;
        const float *vrow = yv + c * L;
        for (long t = t0; t < t1 && !interior; t++) row[t] = b_conv;
        for (long j = 0; j < K && !interior; j++) {
            const long o = offset[j];
            const float *restrict w = weights[j];
            if (taps) {
                const float *tap = y + (j * C + c) * L;
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

/* y [B, (taps+3)C, L] (batch stride y_stride; taps is K, or 0 for attention alone), p [B, 2C, L] (batch
 * stride p_stride) or NULL with per-channel bq, bk; any bias pointer may be NULL (zero). out [B, C, L]
 * contiguous. stats: NULL (no normalisation: out = conv + attention) or a scratch of 2·B·ceil(L/TILE)·C
 * doubles (out = instance_norm(conv + attention)). Returns 0, or 1 for sizes it does not handle. */
int actfusion_mix(const float *y, long y_stride, const float *p, long p_stride, const float *bq,
                  const float *bk, const float *bv, const float *bconv, const float *beta, long B, long C,
                  long L, long K, long taps, long dilation, float log_valid, float log_invalid, float eps,
                  float *out, double *stats, int threads) {
    if (K < 1 || K > MAX_TAPS || C < 1 || L < 1 || B < 1 || dilation < 1 || (taps != 0 && taps != K))
        return 1;
    const long tiles = (L + TILE - 1) / TILE;
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static)
        for (long index = 0; index < B * tiles; index++) {
            const long b = index / tiles, tile = index % tiles;
            const long t0 = tile * TILE, t1 = t0 + TILE < L ? t0 + TILE : L;
            mix_tile(y + b * y_stride, p ? p + b * p_stride : NULL, bq, bk, bv, bconv, beta, C, L, K, taps,
                     dilation, log_valid, log_invalid, t0, t1, out + b * C * L,
                     stats ? stats + 2 * C * index : NULL);
        }
        if (stats) {
#pragma omp for schedule(static)
        for (long row = 0; row < B * C; row++) {
            const long b = row / C, c = row % C;
            double sum = 0.0, squares = 0.0;
            for (long tile = 0; tile < tiles; tile++) {
                const double *s = stats + 2 * C * (b * tiles + tile) + 2 * c;
                sum += s[0];
                squares += s[1];
            }
            const double mean = sum / L;
            double variance = squares / L - mean * mean;
            variance = variance > 0.0 ? variance : 0.0;
            const float m = (float)mean, inv_std = (float)(1.0 / sqrt(variance + eps));
            float *restrict values = out + row * L;
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
