/* Matrix products of the fused CPU path: C_i = act(A_i · B_i + bias (+ R_i)) for a batch of items i, where
 * the A are small weight matrices [M, K] packed once (`actfusion_gemm_pack`) and each B_i [K, N] is a
 * layer's input (K channels by N frames, rows ldb apart). Threads split the items' panels of NR columns:
 * each copies its panel into a small buffer of its own (K rows of NR floats: no cache-set conflicts from
 * power-of-two row strides; the copy prefetches the next panel), multiplies every block of MR rows of A
 * into it, and writes its own columns of C with the bias, residual and ReLU applied as the sums leave the
 * registers: no pass to clear C, none for the epilogue.
 *
 * Measured against torch's MKL matmuls inside the model on an AVX2-only CPU (AMD EPYC, 2 threads):
 * faster for K >= 64, slower for K = 24 (`cpu.gemm_applies` says where it is used). A is packed as blocks
 * of MR rows, k-major (packed[(block·K + k)·MR + r] = A[block·MR + r][k], rows past M zero). Sums run over
 * k in order, one fused multiply-add per term.
 */
#include <stddef.h>
#ifdef _OPENMP
#include <omp.h>
#else /* built without OpenMP (e.g. Apple clang without libomp): one thread */
static int omp_get_num_threads(void) { return 1; }
static int omp_get_thread_num(void) { return 0; }
#endif
#include <stdlib.h>
#include <string.h>

/* 256-bit vectors (AVX2: 16 registers): 6 rows × 2 vectors of accumulators, 2 column vectors and a
 * broadcast weight. */
#define VL 8
#define MR 6
#define NV 2
#define NR (VL * NV)

typedef float vec __attribute__((vector_size(VL * 4)));
typedef float vec_unaligned __attribute__((vector_size(VL * 4), aligned(4)));
typedef int vec_mask __attribute__((vector_size(VL * 4)));

/* Keep in step with GemmArgs in cpu.py. */
struct gemm_args {
    const float *a;       /* a_count packed matrices, each packed_rows(M)·K floats */
    long a_count;         /* item i uses packed matrix i mod a_count */
    long M, K;
    const float *b;       /* item i: b + i·b_stride, rows of N floats ldb apart */
    long b_stride, ldb;
    float *c;             /* item i: c + i·c_stride, rows of N floats ldc apart */
    long c_stride, ldc;
    const float *bias;    /* [M], may be NULL */
    const float *residual; /* like c (residual_stride per item, ldc per row), may be NULL */
    long residual_stride;
    long items, N;
    int relu;
    int threads;
};

long actfusion_gemm_rows(void) { return MR; }

/* sizeof(struct gemm_args) and its fields' names and offsets, from one list, for cpu.py's load-time check of
 * its ctypes mirror: the layout function returns the count and fills `out` when it is not NULL. */
#define GEMM_ARGS_FIELDS(X) \
    X(a) \
    X(a_count) \
    X(M) \
    X(K) \
    X(b) \
    X(b_stride) \
    X(ldb) \
    X(c) \
    X(c_stride) \
    X(ldc) \
    X(bias) \
    X(residual) \
    X(residual_stride) \
    X(items) \
    X(N) \
    X(relu) \
    X(threads)
#define GEMM_ARGS_OFFSET(field) (long)offsetof(struct gemm_args, field),
#define FIELD_NAME(field) #field " "
long actfusion_gemm_args_layout(long *out) {
    const long layout[] = {sizeof(struct gemm_args), GEMM_ARGS_FIELDS(GEMM_ARGS_OFFSET)};
    const long count = (long)(sizeof layout / sizeof layout[0]);
    if (out)
        for (long i = 0; i < count; i++) out[i] = layout[i];
    return count;
}
const char *actfusion_gemm_args_fields(void) { return GEMM_ARGS_FIELDS(FIELD_NAME); }
#undef FIELD_NAME

/* Packs count matrices [M, K] (contiguous, one after another) into blocks of MR rows. */
void actfusion_gemm_pack(const float *a, long count, long M, long K, float *packed) {
    const long blocks = (M + MR - 1) / MR;
    for (long i = 0; i < count; i++)
        for (long block = 0; block < blocks; block++)
            for (long k = 0; k < K; k++)
                for (long r = 0; r < MR; r++) {
                    const long m = block * MR + r;
                    packed[((i * blocks + block) * K + k) * MR + r] = m < M ? a[(i * M + m) * K + k] : 0.0f;
                }
}

/* acc = A_block · B_panel over K terms, the panel packed as K rows of NR floats. */
static inline __attribute__((always_inline)) void block_product(long K, const float *restrict a,
                                                                const float *restrict panel, vec acc[MR][NV]) {
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[r][v] = (vec){0};
#pragma GCC unroll 4
    for (long k = 0; k < K; k++) {
        vec columns[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) columns[v] = *(const vec *)(panel + k * NR + v * VL);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            const float weight = a[k * MR + r];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] += columns[v] * weight;
        }
    }
}

/* Copies `width` columns of K rows into the panel (zero-padded to NR), prefetching the rows `ahead`
 * floats further on (the next panel's), when given. */
static inline void pack_panel(long K, const float *b, long ldb, long width, long ahead, float *restrict panel) {
    for (long k = 0; k < K; k++) {
        const float *row = b + k * ldb;
        if (ahead) {
            __builtin_prefetch(row + ahead);
            __builtin_prefetch(row + ahead + NR - 1);
        }
        if (width == NR) {
            for (int v = 0; v < NV; v++) *(vec *)(panel + k * NR + v * VL) = *(const vec_unaligned *)(row + v * VL);
        } else {
            memcpy(panel + k * NR, row, width * sizeof(float));
            memset(panel + k * NR + width, 0, (NR - width) * sizeof(float));
        }
    }
}

/* Row r of a block leaves the registers: bias, residual and ReLU applied, `width` columns stored. */
static inline void store_row(const vec acc[NV], float bias, const float *residual, int relu, float *out,
                             long width) {
    if (width == NR) {
        for (int v = 0; v < NV; v++) {
            vec value = acc[v] + bias;
            if (residual) value += *(const vec_unaligned *)(residual + v * VL);
            if (relu) value = (vec)((value > (vec){0}) & (vec_mask)value);
            *(vec_unaligned *)(out + v * VL) = value;
        }
        return;
    }
    float lanes[NR];
    memcpy(lanes, acc, sizeof lanes);
    for (long j = 0; j < width; j++) {
        float value = lanes[j] + bias;
        if (residual) value += residual[j];
        out[j] = relu && !(value > 0.0f) ? 0.0f : value;
    }
}

/* Returns 0, or 1 when a thread's panel buffer could not be allocated. */
int actfusion_gemm(const struct gemm_args *g) {
    const long panels = (g->N + NR - 1) / NR, blocks = (g->M + MR - 1) / MR, total = g->items * panels;
    const long packed_size = blocks * MR * g->K;
    int failed = 0;
#pragma omp parallel num_threads(g->threads) reduction(| : failed)
    {
        const int team = omp_get_num_threads(), id = omp_get_thread_num();
        const long first = total * id / team, stop = total * (id + 1) / team;
        float *panel = first < stop ? aligned_alloc(64, (size_t)g->K * NR * sizeof(float)) : NULL;
        failed = first < stop && !panel;
        for (long p = first; p < stop && !failed; p++) {
            const long item = p / panels, n0 = (p % panels) * NR;
            const long width = g->N - n0 < NR ? g->N - n0 : NR;
            /* the next panel's rows: NR floats on, unless it starts another item or is past this thread's */
            const long ahead = p + 1 < stop && (p + 1) % panels ? NR : 0;
            pack_panel(g->K, g->b + item * g->b_stride + n0, g->ldb, width, ahead, panel);
            const float *a = g->a + (item % g->a_count) * packed_size;
            float *c = g->c + item * g->c_stride + n0;
            const float *residual = g->residual ? g->residual + item * g->residual_stride + n0 : NULL;
            for (long block = 0; block < blocks; block++) {
                vec acc[MR][NV];
                block_product(g->K, a + block * g->K * MR, panel, acc);
                for (int r = 0; r < MR && block * MR + r < g->M; r++) {
                    const long m = block * MR + r;
                    store_row(acc[r], g->bias ? g->bias[m] : 0.0f, residual ? residual + m * g->ldc : NULL,
                              g->relu, c + m * g->ldc, width);
                }
            }
        }
        free(panel);
    }
    return failed;
}
