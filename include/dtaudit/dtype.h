/* dtaudit: the one dtype table. Every name <-> enum mapping goes through it. */
#ifndef DTAUDIT_DTYPE_H
#define DTAUDIT_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The first 22 values follow the safetensors enum order (docs/formats.md 1.3),
 * which is also the safetensors writer's sort order. Torch-only types follow. */
typedef enum {
    DTA_BOOL = 0,
    DTA_F4,
    DTA_F6_E2M3,
    DTA_F6_E3M2,
    DTA_U8,
    DTA_I8,
    DTA_F8_E5M2,
    DTA_F8_E4M3, /* float8_e4m3fn */
    DTA_F8_E8M0,
    DTA_F8_E4M3FNUZ,
    DTA_F8_E5M2FNUZ,
    DTA_I16,
    DTA_U16,
    DTA_F16,
    DTA_BF16,
    DTA_I32,
    DTA_U32,
    DTA_F32,
    DTA_C64,
    DTA_F64,
    DTA_I64,
    DTA_U64,
    /* torch only */
    DTA_C32,
    DTA_C128,
    DTA_QI8,
    DTA_QU8,
    DTA_QI32,
    DTA_QU4X2,
    DTA_QU2X4,
    DTA_BITS8,
    DTA_BITS16,
    DTA_BITS1X8,
    DTA_BITS2X4,
    DTA_BITS4X2,
    DTA_F4_X2,   /* torch float4_e2m1fn_x2: one byte holds two fp4 values */
    DTA_BC32,    /* torch bcomplex32: two bf16 */
    DTA_DTYPE_COUNT,
    DTA_DTYPE_NONE = -1
} dta_dtype;

#define DTA_SAFETENSORS_DTYPES 22

typedef struct {
    const char *name;         /* canonical code: "BF16", "F8_E4M3", "QI8" */
    const char *torch_name;   /* "bfloat16", "float8_e4m3fn" (torch.<name>) */
    const char *storage_name; /* legacy typed storage class, "BFloat16Storage", or NULL */
    unsigned bits;            /* bits per element (4 for F4, 6 for F6); see dta_dtype_block */
    bool is_float;            /* real floating type: counts for dominant dtype */
    bool in_safetensors;
    /* Storage layout of a sub-byte or block type: block_elems values take block_bytes
     * bytes (F4: 2 in 1, F6: 4 in 3; a quantized block type: 32 in 18). Both 0 for a type
     * of whole bytes per element (1 value in bits/8 bytes). Read through dta_dtype_block,
     * never as bits / 8. */
    unsigned block_elems, block_bytes;
} dta_dtype_info;

/* NULL for an out-of-range value. */
const dta_dtype_info *dta_dtype_get(dta_dtype t);
const char *dta_dtype_name(dta_dtype t); /* "?" when invalid */
bool dta_dtype_is_float(dta_dtype t);

/* Exact canonical code ("F32"); n bytes, not NUL-terminated. DTA_DTYPE_NONE if unknown. */
dta_dtype dta_dtype_from_code(const char *s, size_t n);
/* Only the 22 safetensors codes (case-sensitive), as the reference reader. */
dta_dtype dta_dtype_from_safetensors(const char *s, size_t n);
/* Friendly, case-insensitive: codes, torch names, "bf16", "fp16", "half", "float"... */
dta_dtype dta_dtype_from_alias(const char *s);
/* torch dtype attribute name: "float32", "bfloat16", also aliases "float", "half". */
dta_dtype dta_dtype_from_torch(const char *s, size_t n);
/* Legacy storage class name: "FloatStorage". */
dta_dtype dta_dtype_from_storage(const char *s, size_t n);

/* Element sizes: every size computation goes through these three, so sub-byte (F4, F6)
 * and block types are handled in one place.
 *
 * The layout of t: *elems values take *bytes bytes (1 and 4 for F32, 2 and 1 for F4,
 * 4 and 3 for F6). False for an invalid dtype. */
bool dta_dtype_block(dta_dtype t, unsigned *elems, unsigned *bytes);
/* Bytes for numel elements, overflow-checked; false when the size in bits would not fit
 * in 64 bits, for an invalid dtype, or when numel is not a whole number of blocks (an odd
 * count of F4 values). */
bool dta_dtype_nbytes(dta_dtype t, uint64_t numel, uint64_t *out);
/* Bytes per element of a type of whole bytes per element; 0 for sub-byte and block types
 * (which have no per-element address: use dta_dtype_nbytes) and invalid ones. */
size_t dta_dtype_elem_size(dta_dtype t);

#ifdef __cplusplus
}
#endif
#endif
