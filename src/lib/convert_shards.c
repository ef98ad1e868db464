/* The shard loop of a directory conversion: several shards at once (convert --jobs), and
 * one conversion spread over several processes (convert --part K/N) (convert_shards.h).
 *
 * Jobs: the shards are the items of the thread pool (convert_pool.c: a job copy per thread,
 * the first failure stops the others, results added in shard order).
 *
 * Parts (docs/design.md "Parts"): every part works in one staging directory beside OUT,
 * ".BASE.dtaudit.parts". The first part writes there a plan (version, options, N, every
 * shard's name, size and mtime); each later one compares its own plan with it, so parts of
 * different conversions never mix. A part converts its shards to temporaries in the
 * staging directory, renames each to its final name when it is complete and fsynced, then
 * writes the shard's record (its tensor data bytes). Then, under the staging directory's
 * flock, it counts the records: when every shard is there it publishes OUT as a one-process
 * convert does (a temporary directory, the index, config.json and copied files written from
 * the input, the staged shards hard-linked in, rename-noreplace to OUT) and removes the
 * staging directory. Everything written is a function of the input and the options, so
 * any order of completion, a part run twice and a part killed and rerun give the same
 * bytes. */
#define _GNU_SOURCE /* flock, mkostemp */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert_pool.h"
#include "convert_shards.h"
#include "publish.h"
#include "dtaudit/version.h"
#include "util_io.h"

/* ---- parts -------------------------------------------------------------------------------- */

typedef struct {
    uint64_t size;
    const char *name;
    size_t i;
} by_size;

static int cmp_by_size(const void *a, const void *b)
{
    const by_size *x = a, *y = b;
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

bool dtap_parts_assign(const uint64_t *sizes, const char *const *names, size_t n,
                       unsigned nparts, unsigned *part_of)
{
    by_size *v = malloc((n ? n : 1) * sizeof *v);
    uint64_t *load = calloc(nparts ? nparts : 1, sizeof *load);
    if (!v || !load) { /* no fallback: every part must compute the same sets */
        free(v);
        free(load);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = (by_size){sizes[i], names[i], i};
    qsort(v, n, sizeof *v, cmp_by_size);
    for (size_t k = 0; k < n; k++) {
        unsigned best = 0;
        for (unsigned p = 1; p < nparts; p++)
            if (load[p] < load[best])
                best = p;
        load[best] += v[k].size ? v[k].size : 1;
        part_of[v[k].i] = best + 1;
    }
    free(v);
    free(load);
    return true;
}

/* ---- helpers ------------------------------------------------------------------------------ */

/* mkdir -p of the folder part of rel under top (several threads may race: EEXIST is fine) */
static dta_status mkdirs(const char *top, const char *rel, dta_error *err)
{
    char p[PATH_MAX];
    for (const char *s = strchr(rel, '/'); s; s = strchr(s + 1, '/')) {
        struct stat st;
        if (!dtap_fmt_path(p, sizeof p, "%s/%.*s", top, (int)(s - rel), rel))
            return dta_error_set(err, DTA_E_ARG, 0, "%s: path too long", rel);
        if (mkdir(p, 0755) != 0 && !(errno == EEXIST && lstat(p, &st) == 0 && S_ISDIR(st.st_mode)))
            return dta_error_set(err, DTA_E_IO, errno, "%s: cannot create: %s", p,
                                 strerror(errno));
    }
    return DTA_OK;
}

/* The record of staged shard i: S/.dtaudit-done-<i> */
static bool record_path(char *buf, size_t cap, const char *stage, size_t i)
{
    return dtap_fmt_path(buf, cap, "%s/.dtaudit-done-%zu", stage, i);
}

/* Writes text to path through a temporary and a rename (a reader never sees half). */
static dta_status write_replace(const char *path, const char *text, dta_error *err)
{
    char tmp[PATH_MAX + 16];
    if (!dtap_fmt_path(tmp, sizeof tmp, "%s.XXXXXX", path))
        return dta_error_set(err, DTA_E_ARG, 0, "%s: path too long", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return dta_error_set(err, DTA_E_IO, errno, "%s: cannot create: %s", path,
                             strerror(errno));
    fchmod(fd, 0644);
    dta_status st = dtap_write_all(fd, text, strlen(text), tmp, err);
    if (st == DTA_OK && fsync(fd) != 0)
        st = dta_error_set(err, DTA_E_IO, errno, "%s: fsync failed: %s", tmp, strerror(errno));
    close(fd);
    if (st == DTA_OK && rename(tmp, path) != 0)
        st = dta_error_set(err, DTA_E_IO, errno, "%s: cannot rename: %s", path,
                           strerror(errno));
    if (st != DTA_OK)
        unlink(tmp);
    return st;
}

static bool read_record(const char *stage, size_t i, uint64_t *bytes)
{
    char p[PATH_MAX], buf[32];
    if (!record_path(p, sizeof p, stage, i))
        return false;
    int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf || *end != '\n')
        return false;
    *bytes = v;
    return true;
}

/* ---- the shard loop (on the thread pool, convert_pool.h) ---------------------------------- */

typedef struct {
    const dta_model *m;
    const char *const *rel;
    const char *dir;
    dtap_shards_mode mode;
    const unsigned *part_of;
    uint64_t *bytes;
    unsigned nw;
    unsigned part;
} shards;

static bool is_mine(const shards *sh, size_t i)
{
    return sh->mode != DTAP_SHARDS_STAGE || sh->part_of[i] == sh->part;
}

/* The pool's item: shard i converted with a thread's own job j into the output (CONVERT)
 * or the staging dir, or linked in (LINK). Not this part's shards are skipped. */
static dta_status do_shard(void *ctx, dtap_job *j, size_t i)
{
    const shards *sh = ctx;
    const char *in = sh->m->files[i].path, *rel = sh->rel[i];
    char path[PATH_MAX], fin[PATH_MAX];
    dta_status st = DTA_OK;
    if (!is_mine(sh, i))
        return DTA_OK;
    j->sharing = sh->nw; /* the threads left over go inside the files (convert_file.c) */
    if (sh->mode == DTAP_SHARDS_LINK) {
        /* the staged shard, linked in: the staging directory keeps it until OUT is
         * published, so a publisher that dies leaves every shard staged */
        if (!dtap_fmt_path(fin, sizeof fin, "%s/%s", j->stage, rel) ||
            !dtap_fmt_path(path, sizeof path, "%s/%s", sh->dir, rel))
            return dta_error_set(j->err, DTA_E_ARG, 0, "%s: path too long", rel);
        if ((st = mkdirs(sh->dir, rel, j->err)) != DTA_OK)
            return st;
        if (!read_record(j->stage, i, &sh->bytes[i]))
            return dta_error_set(j->err, DTA_E_IO, 0, "%s: the record of the staged shard "
                                 "'%s' is missing or unreadable", j->stage, rel);
        if (link(fin, path) != 0)
            return dta_error_set(j->err, DTA_E_IO, errno,
                                 "%s: cannot link the staged shard into the output (the "
                                 "staging directory needs hard links): %s", fin,
                                 strerror(errno));
        return DTA_OK;
    }
    const char *top = sh->mode == DTAP_SHARDS_STAGE ? j->stage : sh->dir;
    if ((st = mkdirs(top, rel, j->err)) != DTA_OK)
        return st;
    if (!dtap_fmt_path(fin, sizeof fin, "%s/%s", top, rel))
        return dta_error_set(j->err, DTA_E_ARG, 0, "%s: path too long", rel);
    int fd;
    if (sh->mode == DTAP_SHARDS_STAGE) {
        const char *b = strrchr(rel, '/');
        b = b ? b + 1 : rel;
        if (!dtap_fmt_path(path, sizeof path, "%s/%.*s.%s.dtaudit-part-XXXXXX", top,
                           (int)(b - rel), rel, b))
            return dta_error_set(j->err, DTA_E_ARG, 0, "%s: path too long", rel);
        fd = mkostemp(path, O_CLOEXEC);
        if (fd >= 0) {
            mode_t mask = umask(0);
            umask(mask);
            fchmod(fd, 0666 & ~mask);
        }
    } else {
        snprintf(path, sizeof path, "%s", fin);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    }
    if (fd < 0)
        return dta_error_set(j->err, DTA_E_IO, errno, "%s: cannot create: %s", path,
                             strerror(errno));
    const char *f;
    st = j->convert_file(j, in, fd, path, &f);
    if (st == DTA_OK && fsync(fd) != 0)
        st = dta_error_set(j->err, DTA_E_IO, errno, "%s: fsync failed: %s", path,
                           strerror(errno));
    close(fd);
    if (st != DTA_OK && strncmp(j->err->msg, in, strlen(in)))
        dta_error_prefix(j->err, in);
    dta_convert_result *r = j->res;
    sh->bytes[i] = r->bytes_out;
    r->shards_converted = r->tensors || r->bytes_out ? 1 : 0;
    if (sh->mode == DTAP_SHARDS_STAGE) {
        /* refused for overflow: not staged (the output is never published) */
        bool refused = j->o->overflow == DTA_OVERFLOW_ERROR && r->stats.overflow;
        if (st == DTA_OK && !refused && rename(path, fin) != 0)
            st = dta_error_set(j->err, DTA_E_IO, errno, "%s: cannot rename: %s", fin,
                               strerror(errno));
        if (st != DTA_OK || refused)
            unlink(path);
        char rec[PATH_MAX], num[32];
        snprintf(num, sizeof num, "%llu\n", (unsigned long long)sh->bytes[i]);
        if (st == DTA_OK && !refused) {
            if (!record_path(rec, sizeof rec, j->stage, i))
                st = dta_error_set(j->err, DTA_E_ARG, 0, "%s: path too long", j->stage);
            else
                st = write_replace(rec, num, j->err);
        }
    }
    return st;
}

dta_status dtap_shards_run(dtap_job *j, const dta_model *m, const char *const *rel,
                           const char *dir, dtap_shards_mode mode, const unsigned *part_of,
                           uint64_t *bytes)
{
    shards sh = {m, rel, dir, mode, part_of, bytes, 1, j->o->part};
    size_t todo = 0;
    for (size_t i = 0; i < m->nfiles; i++)
        todo += is_mine(&sh, i);
    unsigned nw = j->o->jobs ? j->o->jobs : dtap_jobs_default();
    if (nw > DTA_MAX_JOBS)
        nw = DTA_MAX_JOBS;
    if (j->cuda || mode == DTAP_SHARDS_LINK)
        nw = 1;
    if (nw > todo)
        nw = todo ? (unsigned)todo : 1;
    j->res->jobs = nw;
    sh.nw = nw;
    return dtap_pool_run(j, m->nfiles, nw, do_shard, &sh);
}

/* ---- the staging directory ----------------------------------------------------------------- */

static void split(const char *p, char *dir, size_t cap, const char **base)
{
    const char *s = strrchr(p, '/');
    if (!s) {
        snprintf(dir, cap, ".");
        *base = p;
    } else {
        snprintf(dir, cap, "%.*s", s == p ? 1 : (int)(s - p), p);
        *base = s + 1;
    }
}

/* The plan every part must agree on: a deterministic text of what is converted how. */
static char *plan_text(const dtap_job *j, const dta_model *m)
{
    const dta_convert_options *o = j->o;
    size_t cap = 4096;
    for (size_t i = 0; i < m->nfiles; i++)
        cap += strlen(m->files[i].path) + 64;
    for (size_t i = 0; i < o->nonly; i++)
        cap += strlen(o->only[i]) + 16;
    for (size_t i = 0; i < o->nkeep; i++)
        cap += strlen(o->keep[i]) + 16;
    char *t = malloc(cap);
    if (!t)
        return NULL;
    size_t n = 0;
#define ADD(...) (n += (size_t)snprintf(t + n, cap - n, __VA_ARGS__))
    ADD("dtaudit convert --part plan 1\nversion %s\nparts %u\nto %s\nout-format %d\n"
        "on-overflow %d\noptimizer %d\nkeep-quantized %d\ndequantize %d\nkeep-intended %d\n",
        dta_version(), o->nparts, o->to_auto ? "auto" : dta_dtype_name(o->to),
        (int)o->out_format, (int)o->overflow, o->optimizer, o->keep_quantized, o->dequantize,
        o->keep_intended != NULL);
    for (size_t i = 0; i < o->nonly; i++)
        ADD("only %s\n", o->only[i]);
    for (size_t i = 0; i < o->nkeep; i++)
        ADD("keep %s\n", o->keep[i]);
    for (size_t i = 0; i < m->nfiles; i++) {
        struct stat sb;
        const char *b = strrchr(m->files[i].path, '/');
        if (stat(m->files[i].path, &sb) != 0)
            memset(&sb, 0, sizeof sb);
        ADD("shard %zu %s %llu %lld.%09ld\n", i, b ? b + 1 : m->files[i].path,
            (unsigned long long)sb.st_size, (long long)sb.st_mtim.tv_sec,
            (long)sb.st_mtim.tv_nsec);
    }
#undef ADD
    return t;
}

void dtap_stage_close(dtap_stage *s)
{
    if (s->lock >= 0)
        close(s->lock);
    s->lock = -1;
}

dta_status dtap_stage_lock(dtap_stage *s, bool *gone, dta_error *err)
{
    char lp[PATH_MAX];
    *gone = false;
    dtap_stage_close(s);
    if (!dtap_fmt_path(lp, sizeof lp, "%s/.dtaudit-lock", s->dir))
        return dta_error_set(err, DTA_E_ARG, 0, "%s: path too long", s->dir);
    for (int tries = 0; tries < 16; tries++) {
        int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0 && errno == ENOENT) { /* the directory is gone: published */
            *gone = true;
            return DTA_OK;
        }
        if (fd < 0)
            return dta_error_set(err, DTA_E_IO, errno, "%s: cannot open: %s", lp,
                                 strerror(errno));
        while (flock(fd, LOCK_EX) != 0 && errno == EINTR)
            ;
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(lp, &b) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev) {
            s->lock = fd;
            return DTA_OK;
        }
        close(fd); /* removed by the part that published while we waited */
        struct stat d;
        if (stat(s->dir, &d) != 0) {
            *gone = true;
            return DTA_OK;
        }
    }
    return dta_error_set(err, DTA_E_IO, 0, "%s: cannot lock the staging directory", s->dir);
}

dta_status dtap_stage_open(dtap_stage *s, const char *in, const char *out, const dtap_job *j,
                           const dta_model *m, dta_error *err)
{
    char dir[PATH_MAX], o[PATH_MAX];
    const char *base;
    struct stat sb;
    (void)in;
    s->lock = -1;
    if (!dtap_fmt_path(o, sizeof o, "%s", out))
        return dta_error_set(err, DTA_E_ARG, 0, "%.200s...: output path too long", out);
    for (size_t n = strlen(o); n > 1 && o[n - 1] == '/'; n--)
        o[n - 1] = 0;
    split(o, dir, sizeof dir, &base);
    if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
        return dta_error_set(err, DTA_E_ARG, 0, "%s: not a usable output name", out);
    if (strlen(base) + strlen("..dtaudit.parts") > NAME_MAX)
        return dta_error_set(err, DTA_E_ARG, 0, "%s: output name too long for --part", out);
    if (!dtap_fmt_path(s->dir, sizeof s->dir, "%s/.%s.dtaudit.parts", dir, base))
        return dta_error_set(err, DTA_E_ARG, 0, "%s: output path too long", out);
    if (lstat(o, &sb) == 0)
        return dta_error_set(err, DTA_E_ARG, EEXIST,
                             "%s: exists (published by these parts, or something else); "
                             "nothing to do for part %u/%u", out, j->o->part, j->o->nparts);
    char *plan = plan_text(j, m);
    if (!plan)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    dta_status st = DTA_OK;
    bool gone = true;
    for (int tries = 0; gone && tries < 8 && st == DTA_OK; tries++) {
        if (mkdir(s->dir, 0755) != 0 && errno != EEXIST)
            st = dta_error_set(err, DTA_E_IO, errno, "%s: cannot create: %s", s->dir,
                               strerror(errno));
        else if (lstat(s->dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
            st = dta_error_set(err, DTA_E_ARG, 0, "%s: not a directory", s->dir);
        else
            st = dtap_stage_lock(s, &gone, err);
        /* OUT may have been published between the first check and the lock: then the
         * directory we hold is one we (or another late part) made after the publisher
         * removed its own; remove it again under the lock, so nothing is left beside OUT */
        if (st == DTA_OK && lstat(o, &sb) == 0) {
            if (!gone)
                dtap_stage_remove(s);
            st = dta_error_set(err, DTA_E_ARG, EEXIST, "%s: exists (published by these "
                               "parts); nothing to do for part %u/%u", out, j->o->part,
                               j->o->nparts);
        }
    }
    if (st == DTA_OK && gone)
        st = dta_error_set(err, DTA_E_IO, 0, "%s: the staging directory keeps vanishing",
                           s->dir);
    /* under the lock: the plan is written once, and compared by every other part */
    char pp[PATH_MAX];
    if (st == DTA_OK && !dtap_fmt_path(pp, sizeof pp, "%s/.dtaudit-plan", s->dir))
        st = dta_error_set(err, DTA_E_ARG, 0, "%s: path too long", s->dir);
    if (st == DTA_OK) {
        int fd = open(pp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 && errno == ENOENT) {
            st = write_replace(pp, plan, err);
        } else if (fd < 0) {
            st = dta_error_set(err, DTA_E_IO, errno, "%s: cannot open: %s", pp,
                               strerror(errno));
        } else {
            size_t n = strlen(plan), got = 0;
            char *have = malloc(n + 2);
            ssize_t r = 1;
            while (have && got < n + 1 && (r = read(fd, have + got, n + 1 - got)) > 0)
                got += (size_t)r;
            close(fd);
            if (!have)
                st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
            else if (got != n || memcmp(have, plan, n) != 0)
                st = dta_error_set(err, DTA_E_ARG, 0,
                                   "%s: staging directory of another conversion (other "
                                   "options, number of parts, dtaudit version or input "
                                   "shards); finish that one, or remove the directory",
                                   s->dir);
            free(have);
        }
    }
    free(plan);
    if (s->lock >= 0)
        flock(s->lock, LOCK_UN);
    dtap_stage_close(s);
    return st;
}

size_t dtap_stage_count(const dtap_stage *s, size_t nshards)
{
    size_t n = 0;
    uint64_t b;
    for (size_t i = 0; i < nshards; i++)
        n += read_record(s->dir, i, &b);
    return n;
}

void dtap_stage_remove(dtap_stage *s)
{
    dtap_remove_tree(s->dir);
    dtap_stage_close(s);
}

/* ---- convert --part --------------------------------------------------------------------------- */

/* --only globs that match nothing are refused as a whole convert refuses them: the part
 * checks them against every shard's header, not only its own shards' */
static dta_status only_check(dtap_job *j, const dta_model *m, const char *in)
{
    const dta_convert_options *o = j->o;
    if (!o->nonly)
        return DTA_OK;
    bool *hit = calloc(o->nonly, sizeof *hit);
    dta_dtype *nd = NULL;
    dta_error e;
    if (!hit)
        return dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
    dta_status st = DTA_OK;
    if (dtap_convert_plan(m, o, j->ap, j->quantized, hit, &nd, &e) == DTA_OK)
        for (size_t i = 0; i < o->nonly && st == DTA_OK; i++)
            if (!hit[i] && !j->only_hit[i])
                st = dta_error_set(j->err, DTA_E_ARG, 0,
                                   "%s: --only '%.200s' matches no tensor; nothing written", in,
                                   o->only[i]);
    for (size_t i = 0; i < o->nonly; i++)
        j->only_hit[i] = true; /* checked here: the caller's check passes */
    free(nd);
    free(hit);
    return st;
}

dta_status dtap_convert_parts(dtap_job *j, const char *in, const char *out, bool index,
                              const char **format)
{
    dta_model *m = NULL;
    dtap_stage sg;
    dtap_target t;
    bool gone = false;
    sg.lock = -1;
    *format = dta_format_name(DTA_FORMAT_DIRECTORY);
    dta_status st = dtap_target_check(out, true, index, in, j->err);
    if (st == DTA_OK)
        st = dta_model_open(in, &m, j->err);
    if (st != DTA_OK)
        return st;
    if (m->nfiles == 0)
        st = dta_error_set(j->err, DTA_E_UNSUPPORTED, 0, "%s: no shard is present to convert",
                           in);
    if (st == DTA_OK)
        st = only_check(j, m, in);
    /* a part numbered past the shard count has none (dtap_parts_assign gives parts 1..n a
     * shard each before any part a second one): it writes nothing and succeeds whenever it
     * runs, also after the others published OUT, so the outcome never depends on timing */
    if (st == DTA_OK && j->o->part > m->nfiles) {
        j->res->shards = m->nfiles;
        dta_model_free(m);
        return DTA_OK;
    }
    if (st == DTA_OK)
        st = dtap_stage_open(&sg, in, out, j, m, j->err);
    if (st != DTA_OK) {
        dta_model_free(m);
        return st;
    }
    /* this part's shards */
    j->stage = sg.dir;
    j->stage_link = false;
    st = j->convert_tree(j, in, sg.dir, format);
    if (st == DTA_OK && j->o->overflow == DTA_OVERFLOW_ERROR && j->res->stats.overflow)
        j->res->refused = true;
    if (st != DTA_OK || j->res->refused)
        goto done;
    /* every shard staged? then publish, under the lock */
    if ((st = dtap_stage_lock(&sg, &gone, j->err)) != DTA_OK || gone)
        goto done;
    j->res->shards_staged = dtap_stage_count(&sg, m->nfiles);
    if (j->res->shards_staged < m->nfiles)
        goto done;
    st = dtap_target_open(&t, out, true, index, false, in, j->err);
    if (st != DTA_OK)
        goto done;
    char tmpname[sizeof t.tmp];
    snprintf(tmpname, sizeof tmpname, "%s", t.tmp);
    j->target = &t;
    j->stage_link = true;
    size_t conv = j->res->shards_converted;
    st = j->convert_tree(j, in, t.tmp, format);
    j->res->shards_converted = conv;
    if (st == DTA_OK && j->o->verify)
        st = dtap_verify_unpublished(j, in, t.tmp, out);
    if (st == DTA_OK)
        st = dtap_target_publish(&t, j->err);
    else
        dtap_target_abort(&t);
    if (st != DTA_OK) {
        dtap_target_name_final(&t, tmpname, j->err);
    } else {
        j->res->published = true;
        j->res->written = strdup(t.final);
        dtap_stage_remove(&sg); /* still under the lock: the waiting parts then see it gone */
    }
    j->target = NULL;
done:
    j->stage = NULL;
    j->stage_link = false;
    dtap_stage_close(&sg);
    dta_model_free(m);
    return st;
}
