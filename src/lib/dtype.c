/* The dtype table (like ggml's type_traits): one row per dtype, indexed by enum. */
#include <string.h>
#include <strings.h>

#include "dtaudit/dtype.h"

static const dta_dtype_info table[DTA_DTYPE_COUNT] = {
    /* name            torch name          storage class            bits float  st */
    [DTA_BOOL]        = {"BOOL",        "bool",             "BoolStorage",          8, false, true},
    /* safetensors' F4 counts fp4 values; torch's float4_e2m1fn_x2 counts bytes (F4_X2) */
    [DTA_F4]          = {"F4",          NULL,               NULL,                   4, true,  true, 2, 1},
    [DTA_F6_E2M3]     = {"F6_E2M3",     NULL,               NULL,                   6, true,  true, 4, 3},
    [DTA_F6_E3M2]     = {"F6_E3M2",     NULL,               NULL,                   6, true,  true, 4, 3},
    [DTA_U8]          = {"U8",          "uint8",            "ByteStorage",          8, false, true},
    [DTA_I8]          = {"I8",          "int8",             "CharStorage",          8, false, true},
    [DTA_F8_E5M2]     = {"F8_E5M2",     "float8_e5m2",      NULL,                   8, true,  true},
    [DTA_F8_E4M3]     = {"F8_E4M3",     "float8_e4m3fn",    NULL,                   8, true,  true},
    [DTA_F8_E8M0]     = {"F8_E8M0",     "float8_e8m0fnu",   NULL,                   8, true,  true},
    [DTA_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", "float8_e4m3fnuz",  NULL,                   8, true,  true},
    [DTA_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", "float8_e5m2fnuz",  NULL,                   8, true,  true},
    [DTA_I16]         = {"I16",         "int16",            "ShortStorage",        16, false, true},
    [DTA_U16]         = {"U16",         "uint16",           NULL,                  16, false, true},
    [DTA_F16]         = {"F16",         "float16",          "HalfStorage",         16, true,  true},
    [DTA_BF16]        = {"BF16",        "bfloat16",         "BFloat16Storage",     16, true,  true},
    [DTA_I32]         = {"I32",         "int32",            "IntStorage",          32, false, true},
    [DTA_U32]         = {"U32",         "uint32",           NULL,                  32, false, true},
    [DTA_F32]         = {"F32",         "float32",          "FloatStorage",        32, true,  true},
    [DTA_C64]         = {"C64",         "complex64",        "ComplexFloatStorage", 64, false, true},
    [DTA_F64]         = {"F64",         "float64",          "DoubleStorage",       64, true,  true},
    [DTA_I64]         = {"I64",         "int64",            "LongStorage",         64, false, true},
    [DTA_U64]         = {"U64",         "uint64",           NULL,                  64, false, true},
    [DTA_C32]         = {"C32",         "complex32",        NULL,                  32, false, false},
    [DTA_C128]        = {"C128",        "complex128",       "ComplexDoubleStorage",128, false, false},
    [DTA_QI8]         = {"QI8",         "qint8",            "QInt8Storage",         8, false, false},
    [DTA_QU8]         = {"QU8",         "quint8",           "QUInt8Storage",        8, false, false},
    [DTA_QI32]        = {"QI32",        "qint32",           "QInt32Storage",       32, false, false},
    [DTA_QU4X2]       = {"QU4X2",       "quint4x2",         "QUInt4x2Storage",      8, false, false},
    [DTA_QU2X4]       = {"QU2X4",       "quint2x4",         "QUInt2x4Storage",      8, false, false},
    [DTA_BITS8]       = {"BITS8",       "bits8",            NULL,                   8, false, false},
    [DTA_BITS16]      = {"BITS16",      "bits16",           NULL,                  16, false, false},
    [DTA_BITS1X8]     = {"BITS1X8",     "bits1x8",          NULL,                   8, false, false},
    [DTA_BITS2X4]     = {"BITS2X4",     "bits2x4",          NULL,                   8, false, false},
    [DTA_BITS4X2]     = {"BITS4X2",     "bits4x2",          NULL,                   8, false, false},
    [DTA_F4_X2]       = {"F4_X2",       "float4_e2m1fn_x2", NULL,                   8, true,  false},
    [DTA_BC32]        = {"BC32",        "bcomplex32",       NULL,                  32, false, false},
};

/* Friendly spellings accepted by --to/--expect besides codes and torch names. */
static const struct {
    const char *alias;
    dta_dtype t;
} aliases[] = {
    {"bf16", DTA_BF16}, {"fp16", DTA_F16}, {"half", DTA_F16},   {"fp32", DTA_F32},
    {"float", DTA_F32}, {"fp64", DTA_F64}, {"double", DTA_F64}, {"long", DTA_I64},
    {"int", DTA_I32},   {"short", DTA_I16}, {"fp8", DTA_F8_E4M3}, {"e4m3", DTA_F8_E4M3},
    {"e5m2", DTA_F8_E5M2}, {"float8_e4m3", DTA_F8_E4M3}, {"cfloat", DTA_C64},
    {"cdouble", DTA_C128}, {"chalf", DTA_C32},
};

const dta_dtype_info *dta_dtype_get(dta_dtype t)
{
    if ((int)t < 0 || t >= DTA_DTYPE_COUNT)
        return NULL;
    return &table[t];
}

const char *dta_dtype_name(dta_dtype t)
{
    const dta_dtype_info *i = dta_dtype_get(t);
    return i ? i->name : "?";
}

bool dta_dtype_is_float(dta_dtype t)
{
    const dta_dtype_info *i = dta_dtype_get(t);
    return i && i->is_float;
}

static bool eq_n(const char *a, const char *s, size_t n)
{
    return a && strlen(a) == n && memcmp(a, s, n) == 0;
}

dta_dtype dta_dtype_from_code(const char *s, size_t n)
{
    for (int t = 0; t < DTA_DTYPE_COUNT; t++)
        if (eq_n(table[t].name, s, n))
            return (dta_dtype)t;
    return DTA_DTYPE_NONE;
}

dta_dtype dta_dtype_from_safetensors(const char *s, size_t n)
{
    dta_dtype t = dta_dtype_from_code(s, n);
    return t != DTA_DTYPE_NONE && table[t].in_safetensors ? t : DTA_DTYPE_NONE;
}

dta_dtype dta_dtype_from_torch(const char *s, size_t n)
{
    static const struct {
        const char *name;
        dta_dtype t;
    } torch_aliases[] = {
        {"float", DTA_F32}, {"double", DTA_F64}, {"half", DTA_F16},    {"long", DTA_I64},
        {"int", DTA_I32},   {"short", DTA_I16},  {"cfloat", DTA_C64}, {"cdouble", DTA_C128},
        {"chalf", DTA_C32},
    };
    for (int t = 0; t < DTA_DTYPE_COUNT; t++)
        if (eq_n(table[t].torch_name, s, n))
            return (dta_dtype)t;
    for (size_t i = 0; i < sizeof torch_aliases / sizeof torch_aliases[0]; i++)
        if (eq_n(torch_aliases[i].name, s, n))
            return torch_aliases[i].t;
    return DTA_DTYPE_NONE;
}

dta_dtype dta_dtype_from_storage(const char *s, size_t n)
{
    for (int t = 0; t < DTA_DTYPE_COUNT; t++)
        if (eq_n(table[t].storage_name, s, n))
            return (dta_dtype)t;
    return DTA_DTYPE_NONE;
}

dta_dtype dta_dtype_from_alias(const char *s)
{
    if (!s)
        return DTA_DTYPE_NONE;
    if (strncasecmp(s, "torch.", 6) == 0)
        s += 6;
    for (int t = 0; t < DTA_DTYPE_COUNT; t++) {
        if (strcasecmp(table[t].name, s) == 0)
            return (dta_dtype)t;
        if (table[t].torch_name && strcasecmp(table[t].torch_name, s) == 0)
            return (dta_dtype)t;
    }
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcasecmp(aliases[i].alias, s) == 0)
            return aliases[i].t;
    return DTA_DTYPE_NONE;
}

bool dta_dtype_block(dta_dtype t, unsigned *elems, unsigned *bytes)
{
    const dta_dtype_info *i = dta_dtype_get(t);
    if (!i)
        return false;
    if (i->block_elems) {
        *elems = i->block_elems;
        *bytes = i->block_bytes;
    } else {
        *elems = 1;
        *bytes = i->bits / 8;
    }
    return *elems > 0 && *bytes > 0;
}

bool dta_dtype_nbytes(dta_dtype t, uint64_t numel, uint64_t *out)
{
    unsigned be, bb;
    if (!dta_dtype_block(t, &be, &bb) || numel % be != 0)
        return false;
    uint64_t blocks = numel / be;
    if (blocks != 0 && bb > UINT64_MAX / 8 / blocks)
        return false; /* the size in bits fits in 64 bits too */
    *out = blocks * bb;
    return true;
}

size_t dta_dtype_elem_size(dta_dtype t)
{
    unsigned be, bb;
    return dta_dtype_block(t, &be, &bb) && be == 1 ? bb : 0;
}
