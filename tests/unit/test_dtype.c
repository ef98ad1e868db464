/* The dtype table: every mapping goes through it and round-trips. */
#include <criterion/criterion.h>
#include <string.h>

#include "dtaudit/dtype.h"

Test(dtype, safetensors_codes_in_enum_order)
{
    static const char *codes[DTA_SAFETENSORS_DTYPES] = {
        "BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
        "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64",
        "F64", "I64", "U64"};
    for (int i = 0; i < DTA_SAFETENSORS_DTYPES; i++) {
        cr_assert_eq(dta_dtype_from_safetensors(codes[i], strlen(codes[i])), (dta_dtype)i, "%s",
                     codes[i]);
        cr_assert_str_eq(dta_dtype_name((dta_dtype)i), codes[i]);
        cr_assert(dta_dtype_get((dta_dtype)i)->in_safetensors);
    }
}

Test(dtype, safetensors_rejects_torch_only_and_lowercase)
{
    cr_assert_eq(dta_dtype_from_safetensors("C128", 4), DTA_DTYPE_NONE);
    cr_assert_eq(dta_dtype_from_safetensors("QI8", 3), DTA_DTYPE_NONE);
    cr_assert_eq(dta_dtype_from_safetensors("f32", 3), DTA_DTYPE_NONE);
    cr_assert_eq(dta_dtype_from_safetensors("F32 ", 4), DTA_DTYPE_NONE);
    cr_assert_eq(dta_dtype_from_code("C128", 4), DTA_C128);
}

Test(dtype, aliases)
{
    struct { const char *s; dta_dtype t; } cases[] = {
        {"bf16", DTA_BF16},   {"BFloat16", DTA_BF16}, {"fp16", DTA_F16},   {"f16", DTA_F16},
        {"HALF", DTA_F16},    {"float16", DTA_F16},   {"fp32", DTA_F32},   {"F32", DTA_F32},
        {"float", DTA_F32},   {"float32", DTA_F32},   {"torch.bfloat16", DTA_BF16},
        {"float8_e4m3fn", DTA_F8_E4M3}, {"f8_e5m2", DTA_F8_E5M2}, {"double", DTA_F64},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_assert_eq(dta_dtype_from_alias(cases[i].s), cases[i].t, "%s", cases[i].s);
    cr_assert_eq(dta_dtype_from_alias("bf17"), DTA_DTYPE_NONE);
    cr_assert_eq(dta_dtype_from_alias(""), DTA_DTYPE_NONE);
    cr_assert_eq(dta_dtype_from_alias(NULL), DTA_DTYPE_NONE);
}

Test(dtype, torch_and_storage_names)
{
    cr_assert_eq(dta_dtype_from_storage("FloatStorage", 12), DTA_F32);
    cr_assert_eq(dta_dtype_from_storage("BFloat16Storage", 15), DTA_BF16);
    cr_assert_eq(dta_dtype_from_storage("QInt8Storage", 12), DTA_QI8);
    cr_assert_eq(dta_dtype_from_storage("ComplexDoubleStorage", 20), DTA_C128);
    cr_assert_eq(dta_dtype_from_storage("UntypedStorage", 14), DTA_DTYPE_NONE);
    cr_assert_eq(dta_dtype_from_torch("float8_e8m0fnu", 14), DTA_F8_E8M0);
    cr_assert_eq(dta_dtype_from_torch("uint16", 6), DTA_U16);
    cr_assert_eq(dta_dtype_from_torch("half", 4), DTA_F16);
    /* every storage name and torch name maps back to its own row */
    for (int t = 0; t < DTA_DTYPE_COUNT; t++) {
        const dta_dtype_info *i = dta_dtype_get((dta_dtype)t);
        if (i->storage_name)
            cr_assert_eq(dta_dtype_from_storage(i->storage_name, strlen(i->storage_name)), t);
        if (i->torch_name)
            cr_assert_eq(dta_dtype_from_torch(i->torch_name, strlen(i->torch_name)), t);
        cr_assert_eq(dta_dtype_from_code(i->name, strlen(i->name)), t);
    }
}

Test(dtype, nbytes_checks_overflow_and_partial_bytes)
{
    uint64_t n;
    cr_assert(dta_dtype_nbytes(DTA_F32, 3, &n) && n == 12);
    cr_assert(dta_dtype_nbytes(DTA_F4, 4, &n) && n == 2);
    cr_assert(!dta_dtype_nbytes(DTA_F4, 3, &n));
    cr_assert(dta_dtype_nbytes(DTA_F6_E2M3, 4, &n) && n == 3);
    cr_assert(!dta_dtype_nbytes(DTA_F6_E3M2, 1, &n));
    cr_assert(!dta_dtype_nbytes(DTA_F32, UINT64_MAX / 16, &n));
    cr_assert(dta_dtype_nbytes(DTA_U8, UINT64_MAX / 8, &n) && n == UINT64_MAX / 8);
    cr_assert(!dta_dtype_nbytes((dta_dtype)DTA_DTYPE_COUNT, 1, &n));
}

Test(dtype, float_classification)
{
    cr_assert(dta_dtype_is_float(DTA_BF16) && dta_dtype_is_float(DTA_F8_E4M3FNUZ));
    cr_assert(!dta_dtype_is_float(DTA_I64) && !dta_dtype_is_float(DTA_BOOL));
    cr_assert(!dta_dtype_is_float(DTA_C64) && !dta_dtype_is_float(DTA_QI8));
    cr_assert(!dta_dtype_is_float(DTA_DTYPE_NONE));
    cr_assert_str_eq(dta_dtype_name(DTA_DTYPE_NONE), "?");
}
