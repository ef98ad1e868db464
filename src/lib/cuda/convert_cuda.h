/* dtaudit: the C interface of the CUDA code (src/lib/cuda/convert.cu).
 *
 * Plain C; includes no CUDA header. backend_cuda.c builds the public API
 * (include/dtaudit/backend.h) on these calls; the tests and scripts/gpu-bench.sh use the
 * dtap_cu_dev_* and dtap_cu_bench_* hooks directly.
 *
 * Every call returns 0 on success, or -1 after writing "cudaCall: what the runtime said
 * (cudaErrorName)" to msg (msg_n bytes, always NUL-terminated).
 *
 * A lane is one CUDA stream with its device buffers, pinned host buffers, statistics and
 * completion event: the pipeline in backend_cuda.c runs two or more lanes at once so that
 * the copies of one chunk overlap the kernel of another.
 */
#ifndef DTAUDIT_CUDA_CONVERT_CUDA_H
#define DTAUDIT_CUDA_CONVERT_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char name[256];
    int major, minor;          /* compute capability */
    int sm_count;
    uint64_t global_mem;       /* bytes */
    double mem_bw_gbs;         /* theoretical peak from the memory clock and bus (GB/s), 0 unknown */
    int runtime_version, driver_version; /* e.g. 13000 */
} dtap_cu_devinfo;

/* Statistics of one kernel run; zeroed before each run. */
typedef struct {
    uint64_t nan, inf, ovf, unf;       /* conversion */
    uint64_t mism, added;              /* verification */
    uint64_t first_inv;                /* ~(index of the first mismatch); 0: none */
    uint64_t maxabs_bits, maxrel_bits; /* non-negative doubles, as bits */
} dtap_cu_counts;

/* Number of devices (0 with a message when there is none, or no driver). */
int dtap_cu_device_count(int *count, char *msg, size_t msg_n);
/* Describes device dev and checks that this build's kernels can run on it. */
int dtap_cu_probe(int dev, dtap_cu_devinfo *info, char *msg, size_t msg_n);

typedef struct dtap_cu_lane dtap_cu_lane;

enum { DTAP_CU_CONVERT = 0, DTAP_CU_VERIFY = 1 };

/* A lane on device dev with two pinned host buffers and two device buffers of bytes each:
 * *host_a receives the source elements, *host_b the result (convert) or the converted
 * elements to check (verify). */
int dtap_cu_lane_open(int dev, size_t bytes, dtap_cu_lane **out, void **host_a, void **host_b,
                      char *msg, size_t msg_n);
/* Queues on the lane's stream: host_a (and for verify host_b) to the device, the kernel,
 * the result back to host_b (convert) and the statistics back. from/to are dta_dtype
 * values (from != to, a conversion of dta_convert_supported), mode a dta_overflow_mode;
 * n * element sizes must fit in the lane's buffers (the caller checks). Returns at once. */
int dtap_cu_lane_submit(dtap_cu_lane *l, int job, int from, int to, int mode, size_t n,
                        char *msg, size_t msg_n);
/* Waits for the last submission and returns its statistics. */
int dtap_cu_lane_wait(dtap_cu_lane *l, dtap_cu_counts *c, char *msg, size_t msg_n);
/* Waits for pending work and frees everything; NULL is accepted. */
void dtap_cu_lane_close(dtap_cu_lane *l);

/* Test hook: copies n source elements from host src to device memory at byte offset
 * src_off (so the device pointer may be unaligned), runs the conversion kernel into device
 * memory at byte offset dst_off, copies the result to host dst and the statistics to *c.
 * job DTAP_CU_VERIFY compares with host dst instead (which is then only read). */
int dtap_cu_dev_run(int dev, int job, int from, int to, int mode, const void *src,
                    size_t src_off, void *dst, size_t dst_off, size_t n, dtap_cu_counts *c,
                    char *msg, size_t msg_n);

/* Benchmark hook (scripts/gpu-bench.sh): converts n elements from -> to between two device
 * buffers iters times and returns the mean kernel time in *kernel_ms; *copy_ms is the mean
 * time of a device-to-device cudaMemcpy moving the same number of bytes (source plus
 * result), a practical bandwidth ceiling. */
int dtap_cu_bench_kernel(int dev, int from, int to, size_t n, int iters, double *kernel_ms,
                         double *copy_ms, char *msg, size_t msg_n);

/* nvcc's version when the file was compiled, e.g. "13.0". */
const char *dtap_cu_compiler_version(void);

#ifdef __cplusplus
}
#endif
#endif
