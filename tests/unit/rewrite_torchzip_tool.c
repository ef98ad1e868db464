/* Test helper: rewrite_torchzip_tool IN OUT DTYPE [ZIP64_THRESHOLD]
 *
 * Reads the torch zip checkpoint IN, retypes every floating-point storage to DTYPE (a
 * dtaudit dtype name or alias: bf16, f16, f32, F8_E4M3; "same" keeps every dtype) and
 * writes OUT with dtap_torchzip_write. Data goes through dta_convert (torch's CPU
 * `.to()` rounding) for F32/F16/BF16 targets and through a scalar float32 -> float8
 * e4m3fn encoder of its own (docs/formats.md 5.3) for F8_E4M3. ZIP64_THRESHOLD lowers the
 * writer's zip64 threshold (tests of the zip64 fields). Prints "retyped N of M storages"
 * and exits 0, or prints the error and exits 1 (2 for usage). Used by
 * tests/interop/torch_roundtrip.py before `dtaudit convert` existed. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtaudit/convert.h"
#include "dtaudit/dtype.h"
#include "model_build.h"
#include "src.h"
#include "write_torchzip.h"

typedef struct {
    const dtap_torchzip *t;
    const dta_model *m;
    dta_dtype from, to;
    dtap_zipw *z;
    unsigned char *buf, *tmp;
    size_t cap;
} conv_ctx;

static uint32_t rne_shift(uint32_t x, unsigned s)
{
    uint32_t q = x >> s, r = x & ((1u << s) - 1), half = 1u << (s - 1);
    if (r > half || (r == half && (q & 1))) q++;
    return q;
}

static uint8_t f32_to_e4m3fn(uint32_t f)
{
    uint8_t sign = (uint8_t)((f >> 24) & 0x80);
    uint32_t a = f & 0x7FFFFFFFu, sig = a & 0x7FFFFFu, code;
    if (a >= 0x7F800000u) return sign | 0x7F;
    int e = (int)(a >> 23);
    if (e == 0) e = 1;
    else sig |= 0x800000u;
    int te = e - 127 + 7;
    if (te >= 1) {
        code = rne_shift(sig, 20) - 0x8u + ((uint32_t)te << 3);
    } else {
        unsigned s = 20u + (unsigned)(1 - te);
        code = s > 31 ? 0 : rne_shift(sig, s);
    }
    if (code > 0x7E) code = 0x7F;
    return (uint8_t)(sign | code);
}

static dta_status sink(void *vctx, const void *p, size_t n, dta_error *err)
{
    conv_ctx *c = vctx;
    size_t ein = dta_dtype_get(c->from)->bits / 8, eout = dta_dtype_get(c->to)->bits / 8;
    if (n % ein) return dta_error_set(err, DTA_E_FORMAT, 0, "chunk of %zu bytes splits an element", n);
    size_t k = n / ein;
    if (k * 4 > c->cap || k * eout > c->cap) {
        free(c->buf);
        free(c->tmp);
        c->cap = k * 8 + 64;
        c->buf = malloc(c->cap);
        c->tmp = malloc(c->cap);
        if (!c->buf || !c->tmp) return dta_error_set(err, DTA_E_NOMEM, 0, "out of memory");
    }
    dta_status st;
    if (c->to == DTA_F8_E4M3) {
        const unsigned char *f32 = p;
        if (c->from != DTA_F32) {
            if ((st = dta_convert(c->from, DTA_F32, p, c->tmp, k, DTA_OVERFLOW_INF, NULL, err))) return st;
            f32 = c->tmp;
        }
        for (size_t i = 0; i < k; i++) {
            uint32_t u;
            memcpy(&u, f32 + 4 * i, 4);
            c->buf[i] = f32_to_e4m3fn(u);
        }
    } else if ((st = dta_convert(c->from, c->to, p, c->buf, k, DTA_OVERFLOW_INF, NULL, err))) {
        return st;
    }
    return dtap_zipw_write(c->z, c->buf, k * eout, err);
}

static dta_status writer(void *vctx, size_t storage, dtap_zipw *z, dta_error *err)
{
    conv_ctx *c = vctx;
    c->from = c->m->storages[storage].dtype;
    c->z = z;
    return dtap_torchzip_read_storage(c->t, c->m, storage, sink, c, err);
}

static bool convertible(dta_dtype from, dta_dtype to)
{
    if (from == to || !dta_dtype_is_float(from)) return false;
    if (to == DTA_F8_E4M3) return from == DTA_F32 || dta_convert_supported(from, DTA_F32);
    return dta_convert_supported(from, to);
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s IN OUT DTYPE|same [ZIP64_THRESHOLD]\n", argv[0]);
        return 2;
    }
    dta_dtype to = DTA_DTYPE_NONE;
    if (strcmp(argv[3], "same") && (to = dta_dtype_from_alias(argv[3])) == DTA_DTYPE_NONE) {
        fprintf(stderr, "%s: unknown dtype '%s'\n", argv[0], argv[3]);
        return 2;
    }
    dta_error err = {0};
    dtap_src src;
    dta_model *m = NULL;
    dtap_torchzip *t = NULL;
    dta_dtype *nd = NULL;
    int fd = -1, rc = 1;
    conv_ctx c = {0};
    size_t n = 0;
    if (dtap_src_open_file(&src, argv[1], &err)) goto fail;
    if (!(m = dtap_model_new(argv[1], &err)) || dtap_torchzip_load(&src, m, &t, &err)) goto fail_src;
    if (argc == 5) dtap_torchzip_set_zip64_threshold(t, strtoull(argv[4], NULL, 10));
    nd = malloc((m->nstorages ? m->nstorages : 1) * sizeof *nd);
    if (!nd) goto fail_src;
    for (size_t i = 0; i < m->nstorages; i++) {
        nd[i] = m->storages[i].dtype;
        if (to != DTA_DTYPE_NONE && convertible(nd[i], to)) {
            nd[i] = to;
            n++;
        }
    }
    fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(argv[2]);
        goto fail_src;
    }
    c.t = t;
    c.m = m;
    c.to = to;
    if (dtap_torchzip_write(t, m, nd, fd, writer, &c, &err)) goto fail_src;
    if (close(fd)) {
        perror(argv[2]);
        fd = -1;
        goto fail_src;
    }
    fd = -1;
    printf("retyped %zu of %zu storages\n", n, m->nstorages);
    rc = 0;
fail_src:
    dtap_src_close(&src);
fail:
    if (rc) fprintf(stderr, "%s: %s: %s\n", argv[0], argv[1], err.msg[0] ? err.msg : "failed");
    if (fd >= 0) close(fd);
    free(c.buf);
    free(c.tmp);
    free(nd);
    dtap_torchzip_free(t);
    dta_model_free(m);
    return rc;
}
