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
