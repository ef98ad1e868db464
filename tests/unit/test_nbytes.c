/* Element sizes: dta_dtype_block / dta_dtype_nbytes / dta_dtype_elem_size, the one place
 * where sub-byte (F4, F6) and block layouts turn element counts into bytes. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "dtaudit/dtype.h"

Test(nbytes, every_dtype_has_a_consistent_layout)
{
    for (int t = 0; t < DTA_DTYPE_COUNT; t++) {
        const dta_dtype_info *i = dta_dtype_get((dta_dtype)t);
        unsigned be = 0, bb = 0;
        cr_assert(dta_dtype_block((dta_dtype)t, &be, &bb), "%s", i->name);
        cr_assert(be >= 1 && bb >= 1, "%s: %u values in %u bytes", i->name, be, bb);
        /* a row whose bits are not whole bytes must say how its values pack */
        cr_assert_eq((uint64_t)bb * 8, (uint64_t)i->bits * be, "%s: %u values in %u bytes at %u bits",
                     i->name, be, bb, i->bits);
        cr_assert_eq(dta_dtype_elem_size((dta_dtype)t), be == 1 ? (size_t)bb : 0, "%s", i->name);
        uint64_t out = 12345;
        cr_assert(dta_dtype_nbytes((dta_dtype)t, 0, &out) && out == 0, "%s", i->name);
        cr_assert(dta_dtype_nbytes((dta_dtype)t, (uint64_t)be * 7, &out), "%s", i->name);
        cr_assert_eq(out, (uint64_t)bb * 7, "%s", i->name);
        if (be > 1)
            cr_assert(!dta_dtype_nbytes((dta_dtype)t, (uint64_t)be * 7 + 1, &out),
                      "%s: a partial block is not a byte count", i->name);
    }
}

Test(nbytes, sub_byte_types)
{
    unsigned be, bb;
    uint64_t out;
    cr_assert(dta_dtype_block(DTA_F4, &be, &bb) && be == 2 && bb == 1);
    cr_assert(dta_dtype_block(DTA_F6_E2M3, &be, &bb) && be == 4 && bb == 3);
    cr_assert(dta_dtype_block(DTA_F6_E3M2, &be, &bb) && be == 4 && bb == 3);
    cr_assert_eq(dta_dtype_elem_size(DTA_F4), 0u, "F4 has no per-element size (the bits/8 trap)");
    cr_assert_eq(dta_dtype_elem_size(DTA_F6_E2M3), 0u);
    cr_assert_eq(dta_dtype_elem_size(DTA_F4_X2), 1u, "torch's F4_X2 counts bytes");
    cr_assert(dta_dtype_nbytes(DTA_F4, 8, &out) && out == 4);
    cr_assert(dta_dtype_nbytes(DTA_F6_E2M3, 16, &out) && out == 12);
    cr_assert(!dta_dtype_nbytes(DTA_F4, 7, &out));
    cr_assert(!dta_dtype_nbytes(DTA_F6_E3M2, 6, &out));
}

Test(nbytes, overflow_is_refused)
{
    /* the size in bits must fit in 64 bits: at most UINT64_MAX / 8 bytes */
    uint64_t out, max = UINT64_MAX / 8;
    cr_assert(dta_dtype_nbytes(DTA_U8, max, &out) && out == max);
    cr_assert(!dta_dtype_nbytes(DTA_U8, max + 1, &out));
    cr_assert(dta_dtype_nbytes(DTA_F32, max / 4, &out) && out == max / 4 * 4);
    cr_assert(!dta_dtype_nbytes(DTA_F32, max / 4 + 1, &out));
    cr_assert(!dta_dtype_nbytes(DTA_C128, UINT64_MAX / 8, &out));
    /* F4: 2 values per byte; F6: 4 values in 3 bytes */
    cr_assert(dta_dtype_nbytes(DTA_F4, max * 2, &out) && out == max);
    cr_assert(!dta_dtype_nbytes(DTA_F4, max * 2 + 2, &out));
    cr_assert(dta_dtype_nbytes(DTA_F6_E2M3, max / 3 * 4, &out) && out == max / 3 * 3);
    cr_assert(!dta_dtype_nbytes(DTA_F6_E2M3, (max / 3 + 1) * 4, &out));
    cr_assert(!dta_dtype_nbytes(DTA_F6_E2M3, UINT64_MAX - 3, &out));
}

Test(nbytes, invalid_dtypes)
{
    unsigned be, bb;
    uint64_t out;
    cr_assert(!dta_dtype_block(DTA_DTYPE_NONE, &be, &bb));
    cr_assert(!dta_dtype_block(DTA_DTYPE_COUNT, &be, &bb));
    cr_assert(!dta_dtype_nbytes(DTA_DTYPE_NONE, 1, &out));
    cr_assert(!dta_dtype_nbytes(DTA_DTYPE_COUNT, 0, &out));
    cr_assert_eq(dta_dtype_elem_size(DTA_DTYPE_NONE), 0u);
    cr_assert_eq(dta_dtype_elem_size(DTA_DTYPE_COUNT), 0u);
}
