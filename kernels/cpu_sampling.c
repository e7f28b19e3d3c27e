/* Elementwise work of the DDIM sampler on the CPU (spec §3), fused into single passes.
 *
 * Both functions reproduce, bit for bit, what the sampler's chain of torch operations computes: each line
 * below is one torch operation, in its dtype (float for float32 tensors and for 0-d tensors multiplied into
 * them, double where the official code promotes to float64), in the same order. Multiply-adds must not be
 * contracted into FMAs for that, whatever the flags of the rest of the library.
 */
#include <math.h>
#include <stddef.h>

#define PI 3.14159265358979323846 /* the double nearest π, as torch uses */

#if defined(__clang__)
#pragma clang fp contract(off)
#define EXACT
#else
#define EXACT __attribute__((optimize("fp-contract=off")))
#endif

/* Standard normal float64 values by the Box-Muller transform of torch's CPU sampler for 16 or more
 * contiguous values: uniforms u[0 .. n) in blocks of 16, the first eight of a block giving the radii
 * sqrt(-2 log(1 - u)) and the last eight the angles 2π·u; a last partial block is replaced by a block from
 * the 16 uniforms u[n .. n + 16), written over out[n - 16 .. n). `uniforms` holds n values, and 16 more
 * when n is not a multiple of 16. Returns 1 for n < 16. */
static EXACT void box_muller16(const double *restrict u, double *restrict out) {
    for (int j = 0; j < 8; j++) {
        const double radius = sqrt(-2.0 * log(1.0 - u[j]));
        const double theta = 2.0 * PI * u[j + 8];
        out[j] = radius * cos(theta);
        out[j + 8] = radius * sin(theta);
    }
}

EXACT int actfusion_normal_fill(double *out, const double *uniforms, long n, int threads) {
    if (n < 16) return 1;
    const long blocks = n / 16;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (long block = 0; block < blocks; block++) box_muller16(uniforms + 16 * block, out + 16 * block);
    if (n % 16) box_muller16(uniforms + n, out + n - 16);
    return 0;
}

/* One DDIM step t -> t_next after the decoder's softmax `probs` (float32), for n values:
 *   x0    = clamp((probs·2 − 1)·s, −s, s)                                  float
 *   eps   = (recip·state − x0) / recipm1                                    double
 *   next  = x0·sqrt_alpha_next (float) + c·eps + sigma·noise                double
 *   input = float(((clamp(next, −s, s) / s) + 1) / 2)                        the next decoder input
 * state and noise are float32 (the first step) or float64 (`wide_state`, `wide_noise`); the float
 * factors are the float64 ones rounded to float, as torch rounds a 0-d float64 tensor multiplied into a
 * float32 one. */
struct ddim_args {
    const float *probs;
    const void *state, *noise;
    int wide_state, wide_noise;
    double recip, recipm1, c, sigma, scale;
    float sqrt_alpha_next, sigma_float, scale_float;
    float *x0;
    double *next;
    float *input;
    long n;
    int threads;
};

/* sizeof(struct ddim_args) and its fields' names and offsets, from one list, for cpu.py's load-time check of
 * its ctypes mirror: the layout function returns the count and fills `out` when it is not NULL. */
#define DDIM_ARGS_FIELDS(X) \
    X(probs) \
    X(state) \
    X(noise) \
    X(wide_state) \
    X(wide_noise) \
    X(recip) \
    X(recipm1) \
    X(c) \
    X(sigma) \
    X(scale) \
    X(sqrt_alpha_next) \
    X(sigma_float) \
    X(scale_float) \
    X(x0) \
    X(next) \
    X(input) \
    X(n) \
    X(threads)
#define DDIM_ARGS_OFFSET(field) (long)offsetof(struct ddim_args, field),
#define FIELD_NAME(field) #field " "
long actfusion_ddim_args_layout(long *out) {
    const long layout[] = {sizeof(struct ddim_args), DDIM_ARGS_FIELDS(DDIM_ARGS_OFFSET)};
    const long count = (long)(sizeof layout / sizeof layout[0]);
    if (out)
        for (long i = 0; i < count; i++) out[i] = layout[i];
    return count;
}
const char *actfusion_ddim_args_fields(void) { return DDIM_ARGS_FIELDS(FIELD_NAME); }
#undef FIELD_NAME

/* torch.clamp: NaN stays NaN. */
static inline float clamp_float(float value, float low, float high) {
    return value < low ? low : value > high ? high : value;
}

static inline double clamp_double(double value, double low, double high) {
    return value < low ? low : value > high ? high : value;
}

EXACT void actfusion_ddim_update(const struct ddim_args *a) {
    /* Locals, so that the stores below cannot be taken to change them: the loop then vectorises. */
    const float *restrict probs = a->probs;
    const float *restrict state_float = a->wide_state ? NULL : (const float *)a->state;
    const double *restrict state_double = a->wide_state ? (const double *)a->state : NULL;
    const float *restrict noise_float = a->wide_noise ? NULL : (const float *)a->noise;
    const double *restrict noise_double = a->wide_noise ? (const double *)a->noise : NULL;
    float *restrict x0_out = a->x0, *restrict input_out = a->input;
    double *restrict next_out = a->next;
    const double recip = a->recip, recipm1 = a->recipm1, c = a->c, sigma = a->sigma, scale = a->scale;
    const float s = a->scale_float, sqrt_alpha_next = a->sqrt_alpha_next, sigma_float = a->sigma_float;
    const long n = a->n;
#pragma omp parallel for schedule(static) num_threads(a->threads)
    for (long i = 0; i < n; i++) {
        float x0 = probs[i] * 2.0f;
        x0 = x0 - 1.0f;
        x0 = x0 * s;
        x0 = clamp_float(x0, -s, s);
        const double state = state_double ? state_double[i] : state_float[i];
        double eps = recip * state;
        eps = eps - (double)x0;
        eps = eps / recipm1;
        const float kept = x0 * sqrt_alpha_next;
        double next = (double)kept + c * eps;
        const double noise = noise_double ? sigma * noise_double[i] : (double)(sigma_float * noise_float[i]);
        next = next + noise;
        double input = clamp_double(next, -scale, scale);
        input = input / scale;
        input = input + 1.0;
        input = input / 2.0;
        x0_out[i] = x0;
        next_out[i] = next;
        input_out[i] = (float)input;
    }
}
