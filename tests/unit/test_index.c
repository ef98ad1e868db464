/* The sharded-index reader (src/lib/format_index.c) on indexes and shards written to a
 * temporary directory: a good index, each kind of disagreement (index-mismatch notes), and
 * shard paths that would leave the directory. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdlib.h>
#include <unistd.h>

#include "dtaudit/model.h"
#include "st_build.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/dtaudit-index-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    static const st_tensor s1[] = {{"a.weight", "BF16", 2, {2, 3}}, {"a.bias", "BF16", 1, {3}}};
    static const st_tensor s2[] = {{"b.weight", "BF16", 2, {4, 4}}};
    cr_assert_eq(st_write(dir, "model-00001-of-00002.safetensors", s1, 2), 0);
    cr_assert_eq(st_write(dir, "model-00002-of-00002.safetensors", s2, 1), 0);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Writes the index with the given weight_map body and total_size, and opens it. */
static dta_status open_index(const char *map, unsigned long long total, dta_model **m, dta_error *err)
{
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "{\"metadata\": {\"total_size\": %llu, \"total_parameters\": 41}, \"weight_map\": {%s}}",
            total, map);
    fclose(f);
    memset(err, 0, sizeof *err);
    *m = NULL;
    return dta_model_open(path, m, err);
}

static size_t notes(const dta_model *m, dta_rule rule)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nnotes; i++)
        n += m->notes[i].rule_id == rule;
    return n;
}

#define GOOD_MAP "\"a.weight\": \"model-00001-of-00002.safetensors\", " \
                 "\"a.bias\": \"model-00001-of-00002.safetensors\", " \
                 "\"b.weight\": \"model-00002-of-00002.safetensors\""
/* 2*3*2 + 3*2 + 4*4*2 bytes */
#define GOOD_TOTAL 50

Test(index, a_good_index, .init = setup, .fini = teardown)
{
    dta_model *m;
    dta_error err;
    cr_assert_eq(open_index(GOOD_MAP, GOOD_TOTAL, &m, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(m->nfiles, 2u);
    cr_assert_eq(m->ntensors, 3u);
    cr_assert_not_null(m->index_path);
    cr_assert_eq(m->nnotes, 0u, "%s", m->nnotes ? m->notes[0].message : "");
    dta_model_free(m);
}

Test(index, disagreements_are_index_mismatch, .init = setup, .fini = teardown)
{
    static const struct {
        const char *map;
        unsigned long long total;
        const char *why;
    } cases[] = {
        {GOOD_MAP, GOOD_TOTAL + 2, "total_size"},
        {"\"a.weight\": \"model-00001-of-00002.safetensors\", "
         "\"a.bias\": \"model-00002-of-00002.safetensors\", "
         "\"b.weight\": \"model-00002-of-00002.safetensors\"", GOOD_TOTAL, "a.bias"},
        {"\"a.weight\": \"model-00001-of-00002.safetensors\", "
         "\"b.weight\": \"model-00002-of-00002.safetensors\"", GOOD_TOTAL - 6, "a.bias"},
        {GOOD_MAP ", \"c.weight\": \"model-00003-of-00003.safetensors\"", GOOD_TOTAL, "model-00003"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dta_model *m;
        dta_error err;
        dta_status st = open_index(cases[i].map, cases[i].total, &m, &err);
        cr_assert_eq(st, DTA_OK, "case %zu: %s", i, err.msg);
        cr_assert_geq(notes(m, DTA_RULE_INDEX_MISMATCH), 1u, "case %zu: no index-mismatch", i);
        bool named = false;
        for (size_t k = 0; k < m->nnotes; k++)
            named |= strstr(m->notes[k].message, cases[i].why) || strstr(m->notes[k].subject, cases[i].why);
        cr_assert(named, "case %zu: no note names '%s' (%s)", i, cases[i].why, m->notes[0].message);
        cr_assert_eq(m->notes[0].severity, dta_rule_get(DTA_RULE_INDEX_MISMATCH)->severity);
        dta_model_free(m);
    }
}

Test(index, shard_paths_stay_inside_the_directory, .init = setup, .fini = teardown)
{
    static const char *maps[] = {
        "\"a.weight\": \"../model-00001-of-00002.safetensors\"",
        "\"a.weight\": \"/etc/passwd\"",
        "\"a.weight\": \"x//model-00001-of-00002.safetensors\"",
        "\"a.weight\": \"\"",
        "\"a.weight\": 7",
    };
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++) {
        dta_model *m;
        dta_error err;
        dta_status st = open_index(maps[i], 12, &m, &err);
        cr_assert_neq(st, DTA_OK, "%s was accepted", maps[i]);
        cr_assert_null(m);
        cr_assert(strstr(err.msg, "index.json"), "%s: the message does not name the index: %s", maps[i],
                  err.msg);
    }
}

Test(index, not_an_index, .init = setup, .fini = teardown)
{
    dta_model *m;
    dta_error err;
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"metadata\": {}, \"weight_map\": [1, 2]}", f);
    fclose(f);
    cr_assert_neq(dta_model_open(path, &m, &err), DTA_OK);
    cr_assert_null(m);
}

/* Enough shards to be read on several threads (format_index.c reads four or more that
 * way when there are CPUs for it): the model must be the one that reading them one after
 * the other gives, every time, and a failure the first failing shard's. Shard k holds
 * k % 3 + 1 tensors "l<k>.w<j>"; the shards listed in `missing` are not written, and
 * `broken` ones hold a bad header (odd k: a header length of 0; even k: not a checkpoint).
 * With `mismatch`, the index maps l4.w0 to shard 5 and does not list l5.w1 and l11.w2. */
#define MANY 12

static void write_many(const bool *missing, const bool *broken, bool mismatch)
{
    char map[8192], path[256];
    size_t o = 0;
    unsigned long long total = 0;
    for (int k = 0; k < MANY; k++) {
        char shard[32], names[3][16];
        st_tensor t[3];
        int nt = k % 3 + 1;
        snprintf(shard, sizeof shard, "s-%02d.safetensors", k);
        for (int j = 0; j < nt; j++) {
            snprintf(names[j], sizeof names[j], "l%d.w%d", k, j);
            t[j] = (st_tensor){names[j], j ? "BF16" : "F32", 2, {2, (uint64_t)k + 1}};
            total += (unsigned long long)(2 * (k + 1) * (j ? 2 : 4));
            if (mismatch && ((k == 5 && j == 1) || (k == 11 && j == 2)))
                continue;
            o += (size_t)snprintf(map + o, sizeof map - o, "%s\"%s\": \"s-%02d.safetensors\"",
                                  o ? ", " : "", names[j], mismatch && k == 4 && !j ? 5 : k);
        }
        if (missing[k])
            continue;
        if (!broken[k]) {
            cr_assert_eq(st_write(dir, shard, t, (size_t)nt), 0);
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", dir, shard);
        FILE *f = fopen(path, "wb");
        cr_assert_not_null(f);
        if (k % 2)
            fwrite("\0\0\0\0\0\0\0\0{}", 1, 10, f);
        else
            fputs("this is not a checkpoint at all", f);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "{\"metadata\": {\"total_size\": %llu}, \"weight_map\": {%s}}", total, map);
    fclose(f);
}

static dta_status open_many(dta_model **m, dta_error *err)
{
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    memset(err, 0, sizeof *err);
    return dta_model_open(path, m, err);
}

Test(index, many_shards_read_in_order, .init = setup, .fini = teardown)
{
    bool none[MANY] = {false};
    write_many(none, none, false);
    for (int round = 0; round < 40; round++) {
        dta_model *m;
        dta_error err;
        cr_assert_eq(open_many(&m, &err), DTA_OK, "%s", err.msg);
        cr_assert_eq(m->nfiles, (size_t)MANY);
        cr_assert_eq(m->nnotes, 0u, "%s", m->nnotes ? m->notes[0].message : "");
        cr_assert_eq(m->nmetadata, (size_t)MANY); /* each shard's {"format": "pt"}, in order */
        size_t i = 0;
        for (int k = 0; k < MANY; k++) {
            char want[32];
            snprintf(want, sizeof want, "/s-%02d.safetensors", k);
            const char *p = m->files[k].path;
            cr_assert(strlen(p) > strlen(want) && !strcmp(p + strlen(p) - strlen(want), want),
                      "file %d is %s", k, p);
            for (int j = 0; j < k % 3 + 1; j++, i++) {
                char name[16];
                snprintf(name, sizeof name, "l%d.w%d", k, j);
                cr_assert_lt(i, m->ntensors);
                const dta_tensor *t = &m->tensors[i];
                cr_assert_str_eq(t->name, name, "round %d: tensor %zu", round, i);
                cr_assert_eq(t->file, (size_t)k);
                cr_assert_eq(t->storage, i);
                cr_assert_eq(m->storages[i].file, (size_t)k);
                cr_assert_eq(t->shape[1], (uint64_t)k + 1);
            }
        }
        cr_assert_eq(m->ntensors, i);
        dta_model_free(m);
    }
}

Test(index, many_shards_the_first_failure_is_reported, .init = setup, .fini = teardown)
{
    /* shard 1 missing (a note), 3 and 7 broken: the error names shard 3, every time */
    bool missing[MANY] = {false}, broken[MANY] = {false};
    missing[1] = broken[3] = broken[7] = true;
    write_many(missing, broken, false);
    char first[sizeof ((dta_error *)0)->msg] = "";
    for (int round = 0; round < 40; round++) {
        dta_model *m;
        dta_error err;
        cr_assert_neq(open_many(&m, &err), DTA_OK);
        cr_assert_null(m);
        cr_assert(strstr(err.msg, "s-03.safetensors") && !strstr(err.msg, "s-07"), "%s", err.msg);
        cr_assert(strstr(err.msg, "header length is 0"), "%s", err.msg);
        if (!round)
            snprintf(first, sizeof first, "%s", err.msg);
        cr_assert_str_eq(err.msg, first, "round %d", round);
    }
}

Test(index, many_shards_a_later_failure_is_reported, .init = setup, .fini = teardown)
{
    bool missing[MANY] = {false}, broken[MANY] = {false};
    broken[10] = true;
    write_many(missing, broken, false);
    for (int round = 0; round < 40; round++) {
        dta_model *m;
        dta_error err;
        cr_assert_neq(open_many(&m, &err), DTA_OK);
        cr_assert(strstr(err.msg, "s-10.safetensors") && strstr(err.msg, "not a recognised"),
                  "%s", err.msg);
    }
}

Test(index, many_shards_missing_ones_are_noted_in_order, .init = setup, .fini = teardown)
{
    bool missing[MANY] = {false}, broken[MANY] = {false};
    missing[2] = missing[5] = missing[11] = true;
    write_many(missing, broken, false);
    for (int round = 0; round < 40; round++) {
        dta_model *m;
        dta_error err;
        cr_assert_eq(open_many(&m, &err), DTA_OK, "%s", err.msg);
        cr_assert_eq(m->nfiles, (size_t)MANY - 3);
        cr_assert_eq(m->nnotes, 3u);
        cr_assert_str_eq(m->notes[0].subject, "s-02.safetensors");
        cr_assert_str_eq(m->notes[1].subject, "s-05.safetensors");
        cr_assert_str_eq(m->notes[2].subject, "s-11.safetensors");
        /* the files present, in order, and the tensors' file indexes follow them */
        for (size_t i = 1; i < m->ntensors; i++)
            cr_assert_geq(m->tensors[i].file, m->tensors[i - 1].file);
        cr_assert_eq(m->tensors[m->ntensors - 1].file, (size_t)MANY - 4);
        dta_model_free(m);
    }
}

Test(index, many_shards_disagreements_are_noted_in_order, .init = setup, .fini = teardown)
{
    bool none[MANY] = {false};
    write_many(none, none, true);
    static const char *want[][2] = {
        {"l5.w1", "tensor 'l5.w1' is in shard "},
        {"l11.w2", "tensor 'l11.w2' is in shard "},
        {"l4.w0", "the index maps 'l4.w0' to s-05.safetensors, which does not hold it (another "
                  "shard does)"},
    };
    for (int round = 0; round < 40; round++) {
        dta_model *m;
        dta_error err;
        cr_assert_eq(open_many(&m, &err), DTA_OK, "%s", err.msg);
        cr_assert_eq(m->nnotes, 3u, "round %d: %zu notes (%s)", round, m->nnotes, m->notes[m->nnotes - 1].message);
        for (size_t i = 0; i < 3; i++) {
            cr_assert_str_eq(m->notes[i].subject, want[i][0], "round %d: note %zu", round, i);
            cr_assert(!strncmp(m->notes[i].message, want[i][1], strlen(want[i][1])), "%s",
                      m->notes[i].message);
        }
        dta_model_free(m);
    }
}
