/* audit --values: stream every floating tensor's data through the value kernels
 * (values_scan.c) and turn the counts into findings (nonfinite, range-overflow,
 * precision-underflow).
 *
 * Reading is convert's path: pread of the storage bytes in chunks from the file the
 * reader recorded (data offsets checked against the file size when the header was read);
 * a strided view is gathered from its storage, up to the same cap as convert. Work is
 * split into chunks of at most chunk_bytes, handed out in order to the worker threads; a
 * chunk's counts are merged into its tensor's under a mutex, and every count is a sum or
 * a min/max, so the result does not depend on the scheduling. Memory: one chunk buffer
 * per worker.
 *
 * Quantized parameters are counted on their dequantized values (dequant.h, the same entry
 * points as convert --dequantize, so every scheme dequant.c plans is covered): each chunk
 * of a parameter is dequantized to f32 (the exact f32 product code x scale, saturated so
 * that a product beyond f32 keeps its sign) and that f32 is counted against the target,
 * with two corrections so the counts are convert's: a product of finite operands beyond
 * f32 is an overflow (also for an f32 target), and a product of nonzero operands that is
 * zero in f32 is an underflow, not a zero. A parameter's companions (scales, zero points)
 * are not counted on their own. Schemes dequant.c refuses keep a skip reason. Every
 * worker has its own dequantization state (dtap_dq is not shared between threads). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtaudit/backend.h"
#include "dtaudit/convert.h"
#include "dtaudit/quant.h"
#include "dtaudit/values.h"
#include "dequant.h"
#include "model_build.h"
#include "src.h"
#include "values_audit.h"

#define VCHUNK_DEFAULT (1u << 20) /* per worker; fits in L2, so the scan reads what pread just wrote */
#define VTHREADS_MAX 8u

/* ---- what is scanned ---------------------------------------------------------------- */

static bool model_big_endian(const dta_model *m)
{
    for (size_t i = 0; i < m->nnotes; i++)
        if (m->notes[i].rule && strcmp(m->notes[i].rule, "byteorder") == 0)
            return true;
    return false;
}

/* Why tensor t's data is not scanned, or NULL. The one place that decides for plain
 * tensors; the parameters dequant.c dequantizes never get here (dta_values_scan counts
 * them on their dequantized values), so a quantized tensor here is one it refused. */
static const char *skip_reason(const dta_model *m, size_t i, bool big, const dta_quant *q)
{
    const dta_tensor *t = &m->tensors[i];
    const dta_dtype_info *di = dta_dtype_get(t->dtype);
    if (q && dta_quant_tensor_is_quantized(q, i))
        return "part of a quantized parameter (codes or companion, quant.h) that dtaudit does "
               "not dequantize (see convert --dequantize): values not read";
    if (t->dtype >= DTA_QI8 && t->dtype <= DTA_QU2X4)
        return "quantized dtype (torch qint): values are not dequantized";
    if (!di || !di->is_float)
        return "not a floating dtype";
    if (!dta_convert_supported(t->dtype, DTA_F32))
        return "no conversion of this dtype is defined: values not read";
    if (t->meta || t->storage == SIZE_MAX)
        return "saved without data (meta device)";
    if (m->storages[t->storage].offset == UINT64_MAX)
        return "in a compressed record: values not read";
    if (big)
        return "big-endian storage: values not read";
    return NULL;
}

uint64_t dta_values_nonzero(const dta_values_tensor *v)
{
    uint64_t other = v->nan + v->pos_inf + v->neg_inf + v->zero;
    return v->elements > other ? v->elements - other : 0;
}

/* ---- the job ---------------------------------------------------------------------------- */

typedef struct {
    size_t tensor;             /* model index */
    const dta_values_plan *plan; /* shared: one per source dtype (vjob.plans), or per
                                  * target for dequantized parameters (vjob.dqplans) */
    dta_values_counts acc;
    bool contiguous;
    uint64_t first;            /* first element in the storage (contiguous views) */
    uint64_t numel;            /* elements counted (a parameter's logical count) */
    size_t dqparam;            /* dequant.h parameter index, SIZE_MAX: a plain tensor */
} vtask;

typedef struct {
    const dta_model *m;
    const dta_values_options *o;
    dta_values *res;
    vtask *tasks;
    size_t ntasks;
    size_t chunk_elems_bytes;  /* chunk size in bytes */
    pthread_mutex_t mu;
    int *fds;                  /* per model file, opened lazily under mu */
    /* cursor */
    size_t cur_task;
    uint64_t cur_elem;
    uint64_t seq;              /* chunks handed out */
    bool stop;
    dta_values_plan plans[DTA_DTYPE_COUNT];
    bool have_plan[DTA_DTYPE_COUNT];
    dta_values_plan dqplans[DTA_DTYPE_COUNT]; /* F32 -> target, by target */
    bool have_dqplan[DTA_DTYPE_COUNT];
    dtap_dq *dq[VTHREADS_MAX]; /* per worker; [0] planned up front, the others opened lazily */
    bool cuda;                 /* count on the GPU (dta_values_count_cuda) */
    /* the first error in hand-out order */
    uint64_t err_seq;
    dta_error err;
    dta_status st;
} vjob;

typedef struct {
    vtask *task;
    uint64_t elem, n, seq;
} vitem;

static unsigned elsize(dta_dtype t) { return (unsigned)dta_dtype_elem_size(t); }

/* Two tensors that view the same elements of the same storage the same way. */
static bool same_view(const dta_tensor *a, const dta_tensor *b)
{
    if (a->storage != b->storage || a->storage_offset != b->storage_offset ||
        a->rank != b->rank || a->dtype != b->dtype || (a->stride == NULL) != (b->stride == NULL))
        return false;
    for (int k = 0; k < a->rank; k++)
        if (a->shape[k] != b->shape[k] || (a->stride && a->stride[k] != b->stride[k]))
            return false;
    return true;
}

/* Next chunk, under j->mu. */
static bool take(vjob *j, vitem *it)
{
    while (j->cur_task < j->ntasks) {
        vtask *t = &j->tasks[j->cur_task];
        const dta_tensor *tn = &j->m->tensors[t->tensor];
        uint64_t per = j->chunk_elems_bytes / elsize(tn->dtype);
        if (t->dqparam != SIZE_MAX) { /* dequantized to f32 in the chunk buffer */
            per = j->chunk_elems_bytes / 4;
            if (per > dtap_dq_max_elems())
                per = dtap_dq_max_elems();
        }
        if (per == 0)
            per = 1;
        if (!t->contiguous) { /* gathered whole, one item */
            if (j->cur_elem == 0 && t->numel > 0) {
                *it = (vitem){t, 0, t->numel, j->seq++};
                j->cur_elem = t->numel;
                return true;
            }
        } else if (j->cur_elem < t->numel) {
            uint64_t n = t->numel - j->cur_elem < per ? t->numel - j->cur_elem : per;
            *it = (vitem){t, j->cur_elem, n, j->seq++};
            j->cur_elem += n;
            return true;
        }
        j->cur_task++;
        j->cur_elem = 0;
    }
    return false;
}

static void fail(vjob *j, uint64_t seq, const dta_error *e)
{
    pthread_mutex_lock(&j->mu);
    if (j->st == DTA_OK || seq < j->err_seq) {
        j->st = e->code;
        j->err = *e;
        j->err_seq = seq;
    }
    j->stop = true;
    pthread_mutex_unlock(&j->mu);
}

static dta_status get_fd(vjob *j, size_t file, const char *tensor, int *fd, dta_error *err)
{
    dta_status st = DTA_OK;
    pthread_mutex_lock(&j->mu);
    if (j->fds[file] < 0) {
        const char *path = j->m->files[file].path;
        j->fds[file] = open(path, O_RDONLY | O_CLOEXEC);
        if (j->fds[file] < 0)
            st = dta_error_set(err, DTA_E_IO, errno, "%s: tensor '%.200s': cannot open: %s", path,
                               tensor, strerror(errno));
    }
    *fd = j->fds[file];
    pthread_mutex_unlock(&j->mu);
    return st;
}

/* The counting of one buffer: the CPU kernels, or the GPU ones (same counts). */
static dta_status count(const vjob *j, const dta_values_plan *p, const void *buf, size_t n,
                        dta_values_counts *c, dta_error *err)
{
    if (j->cuda)
        return dta_values_count_cuda(p, buf, n, c, err);
    dta_values_count(p, buf, n, c);
    return DTA_OK;
}

/* Dequantizes item it of a quantized parameter to f32 in buf and counts it into c, as
 * convert --dequantize --to target counts it (see the top of this file). */
static dta_status scan_dq_item(vjob *j, unsigned wk, const vitem *it, unsigned char *buf,
                               dta_values_counts *c, dta_error *err)
{
    const char *name = j->m->tensors[it->task->tensor].name;
    dta_status st = DTA_OK;
    if (!j->dq[wk]) { /* the plan of worker 0 succeeded: the same model plans the same */
        st = dtap_dq_open(j->m, &j->dq[wk], err);
        if (st == DTA_OK && !j->dq[wk])
            st = dta_error_set(err, DTA_E_ARG, 0, "values: '%.200s': no quantized parameter",
                               name);
        if (st != DTA_OK)
            return st;
    }
    dta_convert_stats cs = {0};
    st = dtap_dq_run(j->dq[wk], it->task->dqparam, it->elem, (size_t)it->n, DTA_F32,
                     DTA_OVERFLOW_SATURATE, buf, &cs, err);
    if (st != DTA_OK) {
        if (err && !strstr(err->msg, "tensor '")) { /* name the tensor too */
            char msg[sizeof err->msg + 256];
            snprintf(msg, sizeof msg, "%s (dequantizing tensor '%.200s')", err->msg, name);
            size_t ml = strlen(msg) < sizeof err->msg ? strlen(msg) : sizeof err->msg - 1;
            memcpy(err->msg, msg, ml);
            err->msg[ml] = '\0';
        }
        return st;
    }
    if ((st = count(j, it->task->plan, buf, (size_t)it->n, c, err)) != DTA_OK)
        return st;
    /* a product of finite operands beyond f32 was saturated to +-FLT_MAX: an overflow in
     * every target (the F16/BF16 plans count FLT_MAX as one already) */
    if (it->task->plan->to == DTA_F32)
        c->overflow += cs.overflow;
    /* a product of nonzero operands that is zero in f32: lost, as convert counts it */
    c->zero -= cs.underflow < c->zero ? cs.underflow : c->zero;
    c->underflow += cs.underflow;
    __atomic_add_fetch(&j->res->bytes_read, it->n, __ATOMIC_RELAXED);
    return DTA_OK;
}

/* Reads item it into buf (cap bytes) and counts it into c. */
static dta_status scan_item(vjob *j, unsigned wk, const vitem *it, unsigned char **buf,
                            size_t *cap, dta_values_counts *c, dta_error *err)
{
    const dta_model *m = j->m;
    if (it->task->dqparam != SIZE_MAX)
        return scan_dq_item(j, wk, it, *buf, c, err);
    const dta_tensor *t = &m->tensors[it->task->tensor];
    const dta_storage *s = &m->storages[t->storage];
    const char *path = m->files[s->file].path;
    unsigned es = elsize(s->dtype);
    int fd;
    dta_status st = get_fd(j, s->file, t->name, &fd, err);
    if (st != DTA_OK)
        return st;
    if (it->task->contiguous) {
        size_t bytes = (size_t)it->n * es;
        st = dtap_pread_all(fd, *buf, bytes, s->offset + (it->task->first + it->elem) * es, path,
                     t->name, err);
        if (st == DTA_OK)
            st = count(j, it->task->plan, *buf, (size_t)it->n, c, err);
        if (st == DTA_OK)
            __atomic_add_fetch(&j->res->bytes_read, bytes, __ATOMIC_RELAXED);
        return st;
    }
    /* a strided view: gather it from its storage (bounded like convert) */
    st = dtap_gather_view(fd, path, t->name, t, s, buf, cap, err);
    if (st == DTA_OK)
        st = count(j, it->task->plan, *buf, (size_t)t->numel, c, err);
    if (st == DTA_OK)
        __atomic_add_fetch(&j->res->bytes_read, s->nbytes, __ATOMIC_RELAXED);
    return st;
}

static void merge(dta_values_counts *a, const dta_values_counts *b)
{
    a->nan += b->nan;
    a->pos_inf += b->pos_inf;
    a->neg_inf += b->neg_inf;
    a->zero += b->zero;
    a->overflow += b->overflow;
    a->underflow += b->underflow;
    a->subnormal += b->subnormal;
    if (b->max_abs_bits > a->max_abs_bits)
        a->max_abs_bits = b->max_abs_bits;
    if (b->min_abs_bits < a->min_abs_bits)
        a->min_abs_bits = b->min_abs_bits;
}

typedef struct {
    vjob *j;
    unsigned idx;
} vworker;

static void *worker(void *arg)
{
    vjob *j = ((vworker *)arg)->j;
    unsigned wk = ((vworker *)arg)->idx;
    size_t cap = j->chunk_elems_bytes;
    unsigned char *buf = malloc(cap);
    dta_error err;
    if (!buf) {
        dta_error_set(&err, DTA_E_NOMEM, ENOMEM, "out of memory");
        fail(j, 0, &err);
        return NULL;
    }
    for (;;) {
        vitem it;
        pthread_mutex_lock(&j->mu);
        bool got = !j->stop && take(j, &it);
        pthread_mutex_unlock(&j->mu);
        if (!got)
            break;
        if (j->o->cancel && *j->o->cancel) {
            dta_error_set(&err, DTA_E_IO, EINTR, "cancelled");
            fail(j, it.seq, &err);
            break;
        }
        dta_values_counts c;
        dta_values_counts_init(&c);
        if (scan_item(j, wk, &it, &buf, &cap, &c, &err) != DTA_OK) {
            fail(j, it.seq, &err);
            break;
        }
        pthread_mutex_lock(&j->mu);
        merge(&it.task->acc, &c);
        pthread_mutex_unlock(&j->mu);
    }
    free(buf);
    return NULL;
}

static unsigned online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1u : n > (long)VTHREADS_MAX ? VTHREADS_MAX : (unsigned)n;
}

dta_status dta_values_scan(const dta_model *m, const dta_values_options *o, dta_values **out,
                           dta_error *err)
{
    dta_values_options none = {.target = DTA_DTYPE_NONE};
    dta_status st = DTA_OK;
    vjob j;
    *out = NULL;
    if (!o)
        o = &none;
    if (o->target != DTA_DTYPE_NONE && o->target != DTA_F32 && o->target != DTA_F16 &&
        o->target != DTA_BF16)
        return dta_error_set(err, DTA_E_ARG, 0, "values: target must be F32, F16 or BF16, not %s",
                             dta_dtype_name(o->target));
    memset(&j, 0, sizeof j);
    j.m = m;
    j.o = o;
    j.res = calloc(1, sizeof *j.res);
    j.tasks = calloc(m->ntensors ? m->ntensors : 1, sizeof *j.tasks);
    j.fds = malloc(sizeof *j.fds * (m->nfiles ? m->nfiles : 1));
    if (j.res)
        j.res->tensors = calloc(m->ntensors ? m->ntensors : 1, sizeof *j.res->tensors);
    if (!j.res || !j.tasks || !j.fds || !j.res->tensors) {
        if (j.res)
            free(j.res->tensors);
        free(j.res);
        free(j.tasks);
        free(j.fds);
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < m->nfiles; i++)
        j.fds[i] = -1;
    size_t *alias = malloc(sizeof *alias * (m->ntensors ? m->ntensors : 1));
    size_t *first_task = malloc(sizeof *first_task * (m->nstorages ? m->nstorages : 1));
    if (!alias || !first_task) {
        free(alias);
        free(first_task);
        free(j.res->tensors);
        free(j.res);
        free(j.tasks);
        free(j.fds);
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < m->ntensors; i++)
        alias[i] = SIZE_MAX;
    for (size_t i = 0; i < m->nstorages; i++)
        first_task[i] = SIZE_MAX;
    dta_values *r = j.res;
    r->target = o->target;
    r->ntensors = m->ntensors;
    bool big = model_big_endian(m);
    /* quantized parameters (quant.h, headers only): counted on their dequantized values
     * where dequant.c plans them, else skipped with the reason */
    dta_quant *q = NULL;
    dta_error qerr;
    if (dta_quant_analyse(m, &q, &qerr) != DTA_OK)
        q = NULL; /* the audit reports a quantization problem itself */
    if (q && q->nparams > 0 && dtap_dq_open(m, &j.dq[0], &qerr) != DTA_OK) {
        j.dq[0] = NULL; /* a scheme dequant.c refuses: its tensors keep a skip reason */
        if (qerr.code == DTA_E_NOMEM) {
            st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
            goto early;
        }
    }
    for (size_t i = 0; i < m->ntensors; i++) {
        const dta_tensor *t = &m->tensors[i];
        dta_values_tensor *vt = &r->tensors[i];
        vt->target = o->target == DTA_DTYPE_NONE ? t->dtype : o->target;
        vt->elements = t->numel;
        size_t dp = SIZE_MAX;
        int role = j.dq[0] ? dtap_dq_role(j.dq[0], t->name, &dp) : DTAP_DQ_PLAIN;
        if (role == DTAP_DQ_DROP) {
            vt->skipped = "a companion of a quantized parameter (scale, zero point, ...): "
                          "counted in that parameter's dequantized values";
            continue;
        }
        if (role == DTAP_DQ_WEIGHT) {
            /* its dequantized values, against the target or else the dtype it
             * dequantizes to */
            const dta_quant_param *qp = dta_quant_tensor_param(q, i);
            dta_dtype to = o->target;
            if (to == DTA_DTYPE_NONE)
                to = qp && (qp->dequant == DTA_F16 || qp->dequant == DTA_BF16) ? qp->dequant
                                                                               : DTA_F32;
            if (!j.have_dqplan[to]) {
                if (!dta_values_plan_make(DTA_F32, to, &j.dqplans[to])) {
                    vt->skipped = "no conversion of this dtype is defined: values not read";
                    continue;
                }
                j.have_dqplan[to] = true;
            }
            int rank;
            const uint64_t *shape;
            vtask *k = &j.tasks[j.ntasks++];
            dtap_dq_shape(j.dq[0], dp, &rank, &shape, &k->numel);
            k->plan = &j.dqplans[to];
            k->tensor = i;
            k->dqparam = dp;
            k->contiguous = true;
            k->first = 0;
            dta_values_counts_init(&k->acc);
            vt->target = to;
            vt->elements = k->numel;
            vt->dequantized = dtap_dq_scheme(j.dq[0], dp);
            r->scanned++;
            continue;
        }
        vt->skipped = skip_reason(m, i, big, q);
        if (vt->skipped)
            continue;
        /* tied weights: an exact alias of a view already scanned is not read twice */
        if (t->shared && first_task[t->storage] != SIZE_MAX &&
            j.tasks[first_task[t->storage]].dqparam == SIZE_MAX &&
            same_view(&m->tensors[j.tasks[first_task[t->storage]].tensor], t)) {
            alias[i] = first_task[t->storage];
            r->scanned++;
            continue;
        }
        vtask *k = &j.tasks[j.ntasks];
        const dta_storage *s = &m->storages[t->storage];
        if (o->target == DTA_DTYPE_NONE)
            vt->target = s->dtype; /* its own (storage) dtype: the plan key below */
        /* the target is the option's or the tensor's own dtype: one plan per source dtype */
        dta_values_plan *pl = &j.plans[s->dtype];
        if (!j.have_plan[s->dtype]) {
            if (!dta_values_plan_make(s->dtype, vt->target, pl)) {
                vt->skipped = "no conversion of this dtype is defined: values not read";
                continue;
            }
            j.have_plan[s->dtype] = true;
        }
        k->plan = pl;
        k->tensor = i;
        k->numel = t->numel;
        k->dqparam = SIZE_MAX;
        if (first_task[t->storage] == SIZE_MAX)
            first_task[t->storage] = j.ntasks;
        k->contiguous = dtap_contiguous_view(t, &k->first);
        dta_values_counts_init(&k->acc);
        j.ntasks++;
        r->scanned++;
    }
    j.chunk_elems_bytes = o->chunk_bytes ? o->chunk_bytes : VCHUNK_DEFAULT;
    if (j.chunk_elems_bytes < 64)
        j.chunk_elems_bytes = 64;
    j.chunk_elems_bytes &= ~(size_t)7; /* whole elements of every width */
    unsigned nt = o->threads ? o->threads : online_cpus();
    if (nt > VTHREADS_MAX)
        nt = VTHREADS_MAX;
    r->threads = nt;
    r->backend = dta_values_backend();
    /* the GPU: asked for, or (auto) built in with a device and enough data to count */
    uint64_t total = 0;
    for (size_t k = 0; k < j.ntasks; k++)
        total += j.tasks[k].numel * (j.tasks[k].dqparam != SIZE_MAX
                                         ? 1
                                         : elsize(m->tensors[j.tasks[k].tensor].dtype));
    if (o->device == DTA_DEVICE_CUDA) {
        char why[512];
        if (!dta_cuda_available(why, sizeof why)) {
            st = dta_error_set(err, DTA_E_DEVICE, 0, "values: --device cuda: %s", why);
            goto early;
        }
        j.cuda = true;
    } else if (o->device == DTA_DEVICE_AUTO && j.ntasks > 0) {
        j.cuda = dta_cuda_auto(total);
    }
    if (j.cuda)
        r->backend = "cuda";
    pthread_mutex_init(&j.mu, NULL);
    pthread_t th[VTHREADS_MAX];
    vworker wa[VTHREADS_MAX];
    unsigned started = 0;
    for (unsigned i = 0; i < nt; i++)
        wa[i] = (vworker){&j, i};
    for (unsigned i = 1; i < nt; i++) {
        if (pthread_create(&th[started], NULL, worker, &wa[started + 1]) != 0)
            break; /* fewer workers: still correct */
        started++;
    }
    worker(&wa[0]);
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    r->threads = started + 1;
    pthread_mutex_destroy(&j.mu);
    for (size_t i = 0; i < m->nfiles; i++)
        if (j.fds[i] >= 0)
            close(j.fds[i]);
    st = j.st;
    if (st != DTA_OK) {
        if (err)
            *err = j.err;
    } else {
        for (size_t k = 0; k < j.ntasks; k++) {
            const vtask *tk = &j.tasks[k];
            dta_values_tensor *vt = &r->tensors[tk->tensor];
            const dta_values_counts *c = &tk->acc;
            vt->nan = c->nan;
            vt->pos_inf = c->pos_inf;
            vt->neg_inf = c->neg_inf;
            vt->zero = c->zero;
            vt->overflow = c->overflow;
            vt->underflow = c->underflow;
            vt->subnormal = c->subnormal;
            dta_dtype from = tk->dqparam != SIZE_MAX
                                 ? DTA_F32 /* counted on the f32 products */
                                 : m->storages[m->tensors[tk->tensor].storage].dtype;
            bool any = c->min_abs_bits != UINT64_MAX;
            vt->max_abs = any || c->max_abs_bits ? dta_values_abs_to_double(from, c->max_abs_bits)
                                                 : 0;
            vt->min_nonzero_abs = any ? dta_values_abs_to_double(from, c->min_abs_bits) : 0;
        }
        for (size_t i = 0; i < m->ntensors; i++)
            if (alias[i] != SIZE_MAX)
                r->tensors[i] = r->tensors[j.tasks[alias[i]].tensor];
    }
early:
    for (unsigned i = 0; i < VTHREADS_MAX; i++)
        dtap_dq_free(j.dq[i]);
    free(alias);
    free(first_task);
    dta_quant_free(q);
    free(j.tasks);
    free(j.fds);
    if (st != DTA_OK) {
        dta_values_free(r);
        return st;
    }
    *out = r;
    return DTA_OK;
}

void dta_values_free(dta_values *v)
{
    if (!v)
        return;
    free(v->tensors);
    free(v);
}
