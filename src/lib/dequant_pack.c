/* Dequantization of compressed-tensors pack-quantized parameters (dequant_scheme.h;
 * shared/quant.md 1.5, 3.4).
 *
 * weight_packed I32 [(E,) out, ceil(in * b / 32)]: each row is a little-endian stream of
 * 32-bit words in which element j occupies bits [j*b, j*b + b) (for b = 1, 2, 4, 8 that is
 * word j / (32/b), LSB first: the packing of every compressed-tensors version; other
 * widths changed between versions and are refused). A field holds u = q + 2^(b-1).
 * weight_shape (I64 or I32) gives the logical [(E,) out, in]; weight_scale is per tensor,
 * per output channel [(E,) out, 1] or per group [(E,) out, ceil(in / group)] (the last
 * group may be short), in the model dtype (BF16, F16 or F32); weight_zero_point, only for
 * asymmetric group/channel schemes, is packed the same way along the output dimension:
 * I32 [(E,) ceil(out * b / 32), groups], the word at [o*b/32][g] holding row o; absent, it
 * is zero. weight_g_idx I32 [in] maps input column i to its group (a -1 anywhere means
 * i / group, as compressed-tensors reads it).
 *
 * x = (q - z) exactly (at most 9 bits), s = the scale exactly in f32; the product rounded
 * once is the reference's (q - z) * scale computed in the scale dtype (shared/quant.md 1.4).
 * Written under "<p>.weight". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert_bits.h"
#include "dequant_scheme.h"

#define PK_MAX_GROUPS (1u << 20)  /* scale entries per row we agree to hold */
#define PK_MAX_GIDX (1u << 24)    /* g_idx entries held */
#define PK_BATCH (1u << 18)       /* scale entries decoded at a time */

typedef struct {
    size_t codes, scale, zp, gidx; /* tensor indices (zp, gidx: SIZE_MAX when absent) */
    unsigned bits;
    uint64_t mats, out, in, cols;  /* cols: words per packed row */
    uint64_t groups, group;        /* scale entries per row (1: channel / tensor), size */
    bool per_tensor;
    uint64_t zrows;                /* words per zero-point column: ceil(out * b / 32) */
    dta_dtype sdt;
} pk_state;

/* The fill cache, one block (dequant.c frees it with free()): the g_idx map, then the
 * scratch of a batch (codes words, zero-point words, raw and decoded scales). */
typedef struct {
    bool gidx_loaded, gidx_used;
    size_t ngidx;                  /* entries of the map (0 when unused) */
    size_t scratch;                /* bytes of scratch after it */
    _Alignas(8) unsigned char data[];
} pk_cache;

static int32_t *pk_gidx(pk_cache *c) { return (int32_t *)(void *)c->data; }

/* scratch of at least `need` bytes (8-aligned), the map kept */
static unsigned char *pk_scratch(void **cache, size_t need)
{
    pk_cache *c = *cache;
    size_t head = (c->ngidx * 4 + 7) & ~(size_t)7;
    if (c->scratch < need) {
        pk_cache *n = realloc(c, sizeof *c + head + need);
        if (!n)
            return NULL;
        *cache = c = n;
        c->scratch = need;
    }
    return c->data + head;
}

static dta_status refuse(dta_error *err, const char *name, const char *why)
{
    return dta_error_set(err, DTA_E_REFUSED, 0, "dequantize: '%.200s': %s; nothing written",
                         name, why);
}

static dta_status nomem(dta_error *err)
{
    return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
}

static void pk_release(void *p) { free(p); }


static dta_status read_dims(dtap_dq_src *d, size_t ti, uint64_t *v, int n, dta_error *err)
{
    const dta_tensor *t = &dtap_dq_model(d)->tensors[ti];
    unsigned char b[24];
    unsigned es = t->dtype == DTA_I64 ? 8 : t->dtype == DTA_I32 ? 4 : 0;
    if (!es || t->numel != (uint64_t)n || n > 3 || !dtap_dq_stored_plain(d, ti))
        return dta_error_set(err, DTA_E_REFUSED, 0, "dequantize: '%.200s' is not %d I64 or "
                             "I32 values; nothing written", t->name, n);
    dta_status st = dtap_dq_read(d, ti, 0, (size_t)n * es, b, err);
    for (int k = 0; k < n && st == DTA_OK; k++) {
        uint64_t u = 0;
        for (unsigned j = 0; j < es; j++)
            u |= (uint64_t)b[k * es + j] << (8 * j);
        if (es == 4 && (u & 0x80000000u))
            u |= 0xFFFFFFFF00000000ull;
        if (u >> 40)
            return dta_error_set(err, DTA_E_REFUSED, 0, "dequantize: '%.200s' holds a "
                                 "negative or huge dimension; nothing written", t->name);
        v[k] = u;
    }
    return st;
}

static dta_status pk_plan(dtap_dq_src *d, const dta_quant *q, const dta_quant_param *qp,
                          dtap_dq_plan *o, dta_error *err)
{
    const dta_model *w = dtap_dq_model(d);
    const dta_tensor *c = &w->tensors[qp->weight];
    size_t si = dtap_dq_comp(q, qp, DTA_QR_SCALE), shi = dtap_dq_comp(q, qp, DTA_QR_SHAPE);
    size_t zi = dtap_dq_comp(q, qp, DTA_QR_ZERO_POINT), gi = dtap_dq_comp(q, qp, DTA_QR_G_IDX);
    unsigned b = q->bits ? q->bits : 4;
    char why[200];
    if (dtap_dq_comp(q, qp, DTA_QR_GLOBAL_SCALE) != SIZE_MAX)
        return refuse(err, qp->name, "pack-quantized with a global scale is not supported");
    if (b != 1 && b != 2 && b != 4 && b != 8) {
        snprintf(why, sizeof why, "pack-quantized with %u-bit codes (only 1, 2, 4 and 8 bits "
                 "are supported: the packing of other widths changed between "
                 "compressed-tensors versions)", b);
        return refuse(err, qp->name, why);
    }
    if (si == SIZE_MAX || shi == SIZE_MAX)
        return refuse(err, qp->name, "pack-quantized without weight_scale and weight_shape");
    if (c->dtype != DTA_I32 || (c->rank != 2 && c->rank != 3))
        return refuse(err, qp->name, "pack-quantized codes other than I32 [out, words] or "
                                     "[E, out, words]");
    const dta_tensor *s = &w->tensors[si];
    if (s->dtype != DTA_BF16 && s->dtype != DTA_F16 && s->dtype != DTA_F32)
        return refuse(err, qp->name, "a pack-quantized weight_scale that is not BF16, F16 or "
                                     "F32");
    if (!dtap_dq_stored_plain(d, qp->weight) || !dtap_dq_stored_plain(d, si) ||
        (zi != SIZE_MAX && !dtap_dq_stored_plain(d, zi)) ||
        (gi != SIZE_MAX && !dtap_dq_stored_plain(d, gi)))
        return refuse(err, qp->name, "pack-quantized tensors not stored plainly (a "
                                     "safetensors input is needed)");
    uint64_t v[3];
    dta_status r = read_dims(d, shi, v, c->rank, err);
    if (r != DTA_OK)
        return r;
    pk_state *m = calloc(1, sizeof *m);
    if (!m)
        return nomem(err);
    m->codes = qp->weight;
    m->scale = si;
    m->zp = zi;
    m->gidx = gi;
    m->bits = b;
    m->mats = c->rank == 3 ? v[0] : 1;
    m->out = v[c->rank - 2];
    m->in = v[c->rank - 1];
    m->cols = c->shape[c->rank - 1];
    m->sdt = s->dtype;
    m->zrows = dtap_cdiv(m->out * b, 32);
    const char *bad = NULL;
    if ((c->rank == 3 && c->shape[0] != m->mats) || c->shape[c->rank - 2] != m->out ||
        m->cols != dtap_cdiv(m->in * b, 32))
        bad = "its weight_shape does not fit the packed codes";
    else if (s->numel == 1) {
        m->per_tensor = true;
        m->groups = 1;
        m->group = m->in ? m->in : 1;
    } else {
        bool lead = s->rank == c->rank && s->shape[s->rank - 2] == m->out &&
                    (c->rank == 2 || s->shape[0] == m->mats);
        m->groups = lead ? s->shape[s->rank - 1] : 0;
        if (m->groups == 1)
            m->group = m->in ? m->in : 1;
        else if (m->groups > 1 && q->group && m->groups == dtap_cdiv(m->in, q->group))
            m->group = q->group;
        else if (m->groups > 1 && !q->group && m->in % m->groups == 0)
            m->group = m->in / m->groups;
        else
            bad = "its weight_scale is not per tensor, per channel or per group of the "
                  "config's group_size along the input";
        if (!bad && m->groups > PK_MAX_GROUPS)
            bad = "its weight_scale has more than 1048576 groups per row";
    }
    if (!bad && zi != SIZE_MAX) {
        const dta_tensor *z = &w->tensors[zi];
        bool ok = z->dtype == DTA_I32 && !m->per_tensor && z->rank == c->rank &&
                  z->shape[z->rank - 2] == m->zrows && z->shape[z->rank - 1] == m->groups &&
                  (c->rank == 2 || z->shape[0] == m->mats);
        if (!ok)
            bad = "its weight_zero_point is not I32 packed along the output "
                  "[ceil(out * bits / 32), groups]";
    }
    if (!bad && gi != SIZE_MAX) {
        const dta_tensor *g = &w->tensors[gi];
        if (g->dtype != DTA_I32 || g->numel != m->in || c->rank != 2 || m->per_tensor)
            bad = "its weight_g_idx is not I32 [in] of a grouped 2-D weight";
        else if (m->in > PK_MAX_GIDX)
            bad = "its weight_g_idx has more than 16777216 entries";
    }
    if (!bad && !strcmp(qp->name, c->name))
        bad = "pack-quantized codes not named weight_packed";
    if (bad || !(o->oname = malloc(strlen(qp->name) + 1))) {
        free(m);
        return bad ? refuse(err, qp->name, bad) : nomem(err);
    }
    memcpy(o->oname, qp->name, strlen(qp->name) + 1);
    o->state = m;
    o->scale = si;
    o->rank = c->rank;
    if (c->rank == 3)
        o->shape[0] = m->mats;
    o->shape[c->rank - 2] = m->out;
    o->shape[c->rank - 1] = m->in;
    o->numel = m->mats * m->out * m->in;
    o->packed = (dtap_dq_packed){.kind = DQP_CTPACK,
                                 .flags = m->per_tensor ? DQP_F_PER_TENSOR : 0, .bits = b,
                                 .t = {qp->weight, si, zi, gi}, .mats = m->mats, .out = m->out,
                                 .in = m->in, .cols = m->cols, .groups = m->groups,
                                 .group = m->group, .zrows = m->zrows}; /* the device path */
    return DTA_OK;
}


static dta_status load_gidx(dtap_dq_src *d, const pk_state *m, void **cache, dta_error *err)
{
    pk_cache *c = *cache;
    c->gidx_loaded = true;
    if (m->gidx == SIZE_MAX)
        return DTA_OK;
    size_t n = (size_t)m->in;
    pk_cache *nc = realloc(c, sizeof *c + ((n * 4 + 7) & ~(size_t)7));
    if (!nc)
        return nomem(err);
    *cache = c = nc;
    c->scratch = 0;
    int32_t *g = pk_gidx(c);
    unsigned char *raw = (unsigned char *)g; /* decoded in place, little-endian words */
    dta_status st = dtap_dq_read(d, m->gidx, 0, n * 4, raw, err);
    bool minus = false;
    for (size_t i = 0; st == DTA_OK && i < n; i++) {
        uint32_t u = (uint32_t)raw[4 * i] | (uint32_t)raw[4 * i + 1] << 8 |
                     (uint32_t)raw[4 * i + 2] << 16 | (uint32_t)raw[4 * i + 3] << 24;
        int32_t v = (int32_t)u;
        g[i] = v;
        if (v == -1)
            minus = true;
        else if (v < 0 || (uint64_t)v >= m->groups)
            st = dta_error_set(err, DTA_E_FORMAT, 0, "dequantize: '%.200s' maps input %llu "
                               "to group %ld of %llu",
                               dtap_dq_model(d)->tensors[m->gidx].name, (unsigned long long)i,
                               (long)v, (unsigned long long)m->groups);
    }
    if (st != DTA_OK)
        return st;
    c->gidx_used = !minus; /* a -1 anywhere: i / group, as compressed-tensors reads it */
    c->ngidx = n;
    return DTA_OK;
}

static inline uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Rows [r0, r1] of matrix mat (global rows mat*out + r), elements [i_first of r0 ...
 * i_last of r1] in C order into x/s. */
static dta_status pk_batch(dtap_dq_src *d, const pk_state *m, void **cache, uint64_t mat,
                           uint64_t r0, uint64_t ia, uint64_t r1, uint64_t ib, float *x,
                           float *s, dta_error *err)
{
    const unsigned b = m->bits, off = 1u << (b - 1);
    uint64_t R0 = mat * m->out + r0, R1 = mat * m->out + r1;
    /* codes: one contiguous span of words */
    uint64_t w0 = R0 * m->cols + ia * b / 32, w1 = R1 * m->cols + ib * b / 32;
    size_t nw = (size_t)(w1 - w0 + 1);
    /* scales: rows [R0, R1] (or the one of a per-tensor scale) */
    size_t es = (size_t)dta_dtype_elem_size(m->sdt);
    uint64_t s0 = m->per_tensor ? 0 : R0 * m->groups;
    size_t ns = m->per_tensor ? 1 : (size_t)((r1 - r0 + 1) * m->groups);
    /* zero points: the words of rows [r0, r1] of every group */
    uint64_t zw0 = r0 * b / 32, zw1 = r1 * b / 32;
    size_t nz = m->zp != SIZE_MAX ? (size_t)((zw1 - zw0 + 1) * m->groups) : 0;
    unsigned char *scr = pk_scratch(cache, (nw + nz + 2 * ns) * 4);
    if (!scr)
        return nomem(err);
    pk_cache *c = *cache;
    const int32_t *gmap = c->gidx_used ? pk_gidx(c) : NULL;
    uint32_t *words = (uint32_t *)(void *)scr, *zws = words + nw;
    float *sdec = (float *)(void *)(zws + nz);
    unsigned char *sraw = (unsigned char *)(sdec + ns);
    dta_status st = dtap_dq_read(d, m->codes, w0 * 4, nw * 4, words, err);
    if (st != DTA_OK)
        return st;
    for (size_t k = 0; k < nw; k++)
        words[k] = le32((const unsigned char *)&words[k]);
    if ((st = dtap_dq_read(d, m->scale, s0 * es, ns * es, sraw, err)) != DTA_OK)
        return st;
    for (size_t k = 0; k < ns; k++) {
        uint32_t bits = dqp_load(m->sdt, sraw, k); /* dequant_unpack.h, as the CUDA kernel */
        memcpy(&sdec[k], &bits, 4);
    }
    if (nz) {
        st = dtap_dq_read(d, m->zp, ((mat * m->zrows + zw0) * m->groups) * 4, nz * 4, zws, err);
        if (st != DTA_OK)
            return st;
        for (size_t k = 0; k < nz; k++)
            zws[k] = le32((const unsigned char *)&zws[k]);
    }
    size_t k = 0;
    for (uint64_t r = r0; r <= r1; r++) {
        uint64_t i0 = r == r0 ? ia : 0, i1 = r == r1 ? ib : m->in - 1;
        uint64_t wrow = (mat * m->out + r) * m->cols - w0;
        const float *srow = m->per_tensor ? sdec : sdec + (r - r0) * m->groups;
        uint64_t zbit = r * b, zword = zbit / 32 - zw0;
        unsigned zshift = (unsigned)(zbit % 32);
        for (uint64_t i = i0; i <= i1; i++, k++) {
            uint64_t bit = i * b;
            /* the fields decode with dequant_unpack.h (the CUDA kernel's functions) */
            int q = (int)dqp_bits2(words[wrow + bit / 32], 0, (unsigned)(bit % 32), b) - (int)off;
            uint64_t g = m->per_tensor ? 0 : gmap ? (uint64_t)gmap[i] : i / m->group;
            int z = 0;
            if (nz)
                z = (int)dqp_bits2(zws[zword * m->groups + g], 0, zshift, b) - (int)off;
            x[k] = dqb_bitsf(dqp_qz(q, z));
            s[k] = srow[m->per_tensor ? 0 : g];
        }
    }
    return DTA_OK;
}

static dta_status pk_fill(dtap_dq_src *d, const dtap_dq_plan *p, void **cache, uint64_t first,
                          size_t n, float *x, float *s, dta_error *err)
{
    const pk_state *m = p->state;
    pk_cache *c = *cache;
    if (!c) {
        if (!(c = calloc(1, sizeof *c)))
            return nomem(err);
        *cache = c;
    }
    dta_status st = DTA_OK;
    if (!c->gidx_loaded && (st = load_gidx(d, m, cache, err)) != DTA_OK)
        return st;
    /* batches of whole rows (the first and last partial), within one matrix, holding at
     * most PK_BATCH scale entries */
    uint64_t rows_per = m->per_tensor || m->groups >= PK_BATCH ? 1 : PK_BATCH / m->groups;
    uint64_t e = first, end = first + n;
    while (e < end && st == DTA_OK) {
        uint64_t R = e / m->in, ia = e % m->in, mat = R / m->out, r0 = R % m->out;
        uint64_t r1 = r0 + rows_per - 1;
        if (r1 >= m->out)
            r1 = m->out - 1;
        uint64_t last = (mat * m->out + r1) * m->in + m->in - 1;
        if (last >= end)
            last = end - 1;
        uint64_t r1b = last / m->in % m->out, ib = last % m->in;
        st = pk_batch(d, m, cache, mat, r0, ia, r1b, ib, x + (e - first), s + (e - first), err);
        e = last + 1;
    }
    return st;
}

const dtap_dq_ops dtap_dq_ct_pack_ops = {
    .scheme = DTA_QS_CT_PACK, .plan = pk_plan, .fill = pk_fill, .release = pk_release};
