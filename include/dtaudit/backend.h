/* dtaudit: the CUDA backend of element conversion and verification.
 *
 * Same contract as dta_convert / dta_verify (convert.h): identical output bytes for every
 * input (NaN included) and identical statistics; the kernels use the integer algorithms of
 * convert_cpu.c. Without CUDA built in (configure --without-cuda, or no nvcc found) every
 * call below exists and returns DTA_E_UNSUPPORTED "built without CUDA"
 * (dta_cuda_available returns false with that reason).
 *
 * Devices: the CUDA device 0 as the CUDA runtime numbers them (CUDA_VISIBLE_DEVICES
 * applies). A runtime failure returns DTA_E_DEVICE with a message naming the CUDA call,
 * e.g. "CUDA: cudaMalloc (source chunk): out of memory (cudaErrorMemoryAllocation)";
 * callers prefix the file name with dta_error_prefix.
 *
 * How the CLI uses it (--device auto|cpu|cuda):
 *   cpu   never calls this API.
 *   cuda  if (!dta_cuda_available(why, sizeof why)) -> print "dtaudit: --device cuda: <why>"
 *         and exit 3; otherwise convert/verify through the calls below.
 *   auto  dta_cuda_auto(bytes_to_convert): CUDA when it is built in, a device is usable and
 *         the job has at least DTA_CUDA_AUTO_MIN_BYTES of source data; else the CPU path.
 *         Both paths give the same bytes, so auto never changes a result.
 *
 * Thread safety: dta_cuda_available, dta_cuda_auto, dta_convert_cuda and dta_verify_cuda
 * may be called from any thread (the one-shot calls share one cached pipe under a mutex).
 * A dta_cuda_pipe is used by one thread at a time.
 */
#ifndef DTAUDIT_BACKEND_H
#define DTAUDIT_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtaudit/convert.h"
#include "dtaudit/dtype.h"
#include "dtaudit/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Source bytes from which --device auto prefers the GPU (host<->device copies and CUDA
 * start-up cost more than they save on small jobs). */
#define DTA_CUDA_AUTO_MIN_BYTES (UINT64_C(256) << 20)

/* Optional features compiled in, space-separated, for `dtaudit --version`: "cuda" when the
 * CUDA backend is built in, "" otherwise. Static string. */
const char *dta_build_features(void);

/* True when CUDA is built in and device 0 can run this build's kernels (sm_80 or newer:
 * the fat binary holds sm_80 and sm_90 code and compute_90 PTX). why (n bytes, may be NULL)
 * receives the device ("NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB, CUDA driver 13.0
 * runtime 13.0") or the reason there is none ("built without CUDA", "no CUDA device:
 * cudaGetDeviceCount: ..."). The first call initialises the CUDA runtime (slow: up to a
 * second); the answer is cached for the life of the process. */
bool dta_cuda_available(char *why, size_t n);

/* The --device auto rule: dta_cuda_available() and bytes >= DTA_CUDA_AUTO_MIN_BYTES. */
bool dta_cuda_auto(uint64_t bytes);

/* dta_convert on the GPU: same arguments, checks, errors, output and *stats. A copy
 * (from == to) and n == 0 run dta_convert on the host (a GPU round trip only slows a
 * memcpy). Host buffers at any alignment; any n (chunked through the cached pipe, so
 * device memory stays bounded whatever n is). */
dta_status dta_convert_cuda(dta_dtype from, dta_dtype to, const void *src, void *dst, size_t n,
                            dta_overflow_mode mode, dta_convert_stats *stats, dta_error *err);

/* dta_verify on the GPU: same arguments, results and merging of *stats (first_mismatch
 * counts over every call on the same stats). from == to runs dta_verify on the host. */
dta_status dta_verify_cuda(dta_dtype from, dta_dtype to, const void *src, const void *conv,
                           size_t n, dta_overflow_mode mode, dta_verify_stats *stats,
                           dta_error *err);

/* Frees the cached one-shot pipe (pinned and device memory). Optional: at exit the
 * driver reclaims everything anyway. */
void dta_cuda_release(void);

/* ---- streaming: a pipeline over chunks read from files ------------------------------
 *
 * A pipe owns nchunks chunks; each has two pinned host buffers (src and dst, chunk_bytes
 * each), two device buffers of the same size and its own CUDA stream. Submitting a chunk
 * queues host->device copy, kernel, device->host copy and returns at once, so while the
 * GPU works on chunk k the caller reads chunk k+1 into another chunk's src and writes the
 * result of chunk k-1: file reads, H2D, kernel, D2H and writes overlap. Device memory is
 * 2 * nchunks * chunk_bytes whatever the size of the checkpoint (defaults: 3 x 2 x 32 MiB).
 *
 * Chunk life cycle: dta_cuda_pipe_get (free -> filling) -> dta_cuda_pipe_convert or
 * dta_cuda_pipe_verify (-> in flight) -> dta_cuda_pipe_next (-> done, returned in
 * submission order) -> dta_cuda_pipe_release (-> free). A filled chunk can also be
 * released without being submitted.
 *
 * Typical loop (convert one tensor; tensors may follow each other in the same pipe, each
 * chunk with its own dtypes and statistics target):
 *
 *     dta_cuda_pipe *p;
 *     if (dta_cuda_pipe_open(NULL, &p, &err) != DTA_OK) ...          // exit 3 / fall back
 *     size_t cap = dta_cuda_pipe_capacity(p, from, to);              // elements per chunk
 *     uint64_t left = numel;
 *     for (;;) {
 *         dta_cuda_chunk *c;
 *         while (left && (c = dta_cuda_pipe_get(p)) != NULL) {       // NULL: all busy
 *             size_t m = left < cap ? left : cap;
 *             read m * in_size bytes into c->src;
 *             if (dta_cuda_pipe_convert(p, c, from, to, m, mode, &tensor_stats, tag, &err))
 *                 goto fail;
 *             left -= m;
 *         }
 *         if (dta_cuda_pipe_next(p, &c, &err) != DTA_OK) goto fail;  // oldest in flight
 *         if (!c) break;                                             // nothing in flight
 *         write c->n * out_size bytes from c->dst;                   // c->tag is yours
 *         dta_cuda_pipe_release(p, c);
 *     }
 *     dta_cuda_pipe_free(p);
 *
 * Statistics: the stats pointer given at submission receives the chunk's counts when
 * dta_cuda_pipe_next returns the chunk (in submission order), exactly as consecutive
 * dta_convert / dta_verify calls on it would; it must stay valid until then. After an
 * error the pipe is unusable except for dta_cuda_pipe_free.
 */

typedef struct dta_cuda_pipe dta_cuda_pipe;

typedef struct {
    size_t chunk_bytes; /* per host and per device buffer; 0: 32 MiB */
    int nchunks;        /* chunks (and streams) in flight; 0: 3; at least 2 */
    int device;         /* CUDA device index; 0 by default */
} dta_cuda_pipe_options;

typedef struct {
    void *src;          /* pinned, chunk_bytes: the source elements (caller fills) */
    void *dst;          /* pinned, chunk_bytes: convert: the result after dta_cuda_pipe_next;
                         * verify: the converted elements to check (caller fills) */
    size_t bytes;       /* chunk_bytes */
    size_t n;           /* elements submitted */
    void *tag;          /* the caller's, from submission */
} dta_cuda_chunk;

/* o may be NULL. DTA_E_UNSUPPORTED without CUDA, DTA_E_DEVICE without a usable device or
 * when an allocation fails. */
dta_status dta_cuda_pipe_open(const dta_cuda_pipe_options *o, dta_cuda_pipe **out,
                              dta_error *err);
/* Waits for work in flight and frees everything; NULL is accepted. */
void dta_cuda_pipe_free(dta_cuda_pipe *p);

/* Elements of a from -> to chunk: chunk_bytes / the larger element size. */
size_t dta_cuda_pipe_capacity(const dta_cuda_pipe *p, dta_dtype from, dta_dtype to);

/* A free chunk, or NULL when every chunk is filling, in flight or done-but-not-released. */
dta_cuda_chunk *dta_cuda_pipe_get(dta_cuda_pipe *p);

/* Queues the conversion of c->src (n elements, n <= capacity) into c->dst. stats (may be
 * NULL) receives the counts when the chunk comes out of dta_cuda_pipe_next. */
dta_status dta_cuda_pipe_convert(dta_cuda_pipe *p, dta_cuda_chunk *c, dta_dtype from,
                                 dta_dtype to, size_t n, dta_overflow_mode mode,
                                 dta_convert_stats *stats, void *tag, dta_error *err);

/* Queues the verification of c->dst (n converted elements) against c->src. */
dta_status dta_cuda_pipe_verify(dta_cuda_pipe *p, dta_cuda_chunk *c, dta_dtype from,
                                dta_dtype to, size_t n, dta_overflow_mode mode,
                                dta_verify_stats *stats, void *tag, dta_error *err);

/* Waits for the oldest chunk in flight, adds its statistics and returns it in *done
 * (NULL when nothing is in flight). */
dta_status dta_cuda_pipe_next(dta_cuda_pipe *p, dta_cuda_chunk **done, dta_error *err);

/* Gives a chunk back (done, or filled but not submitted). */
void dta_cuda_pipe_release(dta_cuda_pipe *p, dta_cuda_chunk *c);

#ifdef __cplusplus
}
#endif
#endif
