/* Unit tests for the torch zip / legacy readers on committed fixtures
 * (tests/fixtures/torch, made by scripts/make-torch-fixtures.py with real torch). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/model.h"
#include "format.h"
#include "model_build.h"

static dta_model *open_fx(const char *name)
{
    char path[1024];
    const char *src = getenv("srcdir");
    snprintf(path, sizeof path, "%s/tests/fixtures/torch/%s", src ? src : ".", name);
    dta_model *m = NULL;
    dta_error err = {0};
    dta_status st = dta_model_open(path, &m, &err);
    cr_assert_eq(st, DTA_OK, "%s: %s", name, err.msg);
    return m;
}

static dta_status open_status(const char *name, dta_error *err)
{
    char path[1024];
    const char *src = getenv("srcdir");
    snprintf(path, sizeof path, "%s/tests/fixtures/torch/%s", src ? src : ".", name);
    dta_model *m = NULL;
    dta_status st = dta_model_open(path, &m, err);
    dta_model_free(m);
    return st;
}

static const dta_tensor *find(const dta_model *m, const char *name)
{
    for (size_t i = 0; i < m->ntensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    cr_assert_fail("no tensor '%s'", name);
    return NULL;
}

static bool has_note(const dta_model *m, const char *rule, const char *subject)
{
    for (size_t i = 0; i < m->nnotes; i++)
        if (!strcmp(m->notes[i].rule, rule) && (!subject || !strcmp(m->notes[i].subject, subject)))
            return true;
    return false;
}

Test(torchzip, state_dict)
{
    dta_model *m = open_fx("state_dict.pt");
    cr_assert_str_eq(m->format, "torch-zip");
    cr_assert_eq(m->ntensors, 4);
    const dta_tensor *t = find(m, "0.weight");
    cr_assert_eq(t->dtype, DTA_F32);
    cr_assert_eq(t->rank, 2);
    cr_assert_eq(t->shape[0], 3);
    cr_assert_eq(t->shape[1], 4);
    cr_assert_str_eq(t->root, "");
    cr_assert_eq(m->nnotes, 0, "a plain state dict is safe");
    cr_assert_neq(m->storages[t->storage].offset % 64, 1); /* offset known */
    dta_model_free(m);
}

Test(torchzip, tied_weights_share_one_storage)
{
    dta_model *m = open_fx("tied.pt");
    cr_assert_eq(m->ntensors, 3);
    cr_assert_eq(m->nstorages, 1);
    const dta_tensor *row = find(m, "row1");
    cr_assert_eq(row->storage_offset, 3);
    cr_assert(find(m, "emb.weight")->shared);
    dta_model_free(m);
}

Test(torchzip, views_keep_strides_and_offsets)
{
    dta_model *m = open_fx("views.pt");
    const dta_tensor *s = find(m, "slice");
    cr_assert_eq(s->storage_offset, 10);
    cr_assert_eq(m->storages[s->storage].numel, 40, "the whole storage is saved");
    const dta_tensor *tr = find(m, "transposed");
    cr_assert_eq(tr->stride[0], 1);
    cr_assert_eq(tr->stride[1], 3);
    const dta_tensor *ex = find(m, "expanded");
    cr_assert_eq(ex->stride[0], 0);
    dta_model_free(m);
}

Test(torchzip, training_checkpoint_roots)
{
    dta_model *m = open_fx("training.pt");
    cr_assert_str_eq(find(m, "model.0.weight")->root, "model");
    cr_assert_eq(find(m, "ema.0.weight")->dtype, DTA_BF16);
    cr_assert_str_eq(find(m, "ema.0.weight")->root, "ema");
    cr_assert_str_eq(find(m, "optimizer.state.0.exp_avg")->root, "optimizer");
    dta_model_free(m);
}

Test(torchzip, lightning)
{
    dta_model *m = open_fx("lightning.ckpt");
    cr_assert_str_eq(find(m, "state_dict.model.0.weight")->root, "state_dict");
    cr_assert_str_eq(find(m, "optimizer_states.0.state.1.exp_avg_sq")->root, "optimizer_states");
    find(m, "callbacks.ModelCheckpoint{'monitor': 'val_loss'}.best_model_score");
    dta_model_free(m);
}

Test(torchzip, meta_quantized_param_subclass)
{
    dta_model *m = open_fx("meta.pt");
    cr_assert(find(m, "w")->meta);
    cr_assert(has_note(m, "meta-tensor", "w"));
    dta_model_free(m);
    m = open_fx("quantized.pt");
    cr_assert_eq(find(m, "q")->dtype, DTA_QI8);
    dta_model_free(m);
    m = open_fx("param.pt");
    cr_assert_eq(find(m, "p")->rank, 2);
    find(m, "frozen");
    dta_model_free(m);
    m = open_fx("subclass.pt");
    cr_assert_eq(find(m, "t")->dtype, DTA_F32);
    dta_model_free(m);
}

Test(torchzip, dtypes)
{
    dta_model *m = open_fx("dtypes.pt");
    static const struct { const char *n; dta_dtype d; } want[] = {
        {"bf16", DTA_BF16}, {"f16", DTA_F16}, {"f32", DTA_F32}, {"f64", DTA_F64}, {"i8", DTA_I8},
        {"i16", DTA_I16}, {"i32", DTA_I32}, {"i64", DTA_I64}, {"u8", DTA_U8}, {"bool", DTA_BOOL},
        {"c64", DTA_C64}, {"c128", DTA_C128}, {"scalar", DTA_F32}, {"empty", DTA_F32}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        cr_assert_eq(find(m, want[i].n)->dtype, want[i].d, "%s", want[i].n);
    cr_assert_eq(find(m, "scalar")->rank, 0);
    cr_assert_eq(find(m, "empty")->numel, 0);
    dta_model_free(m);
}

Test(torchzip, v3_handmade_and_byteorder)
{
    dta_model *m = open_fx("v3_handmade.pt");
    cr_assert_eq(find(m, "f8")->dtype, DTA_F8_E4M3);
    cr_assert_eq(find(m, "u16")->dtype, DTA_U16);
    cr_assert_eq(m->storages[find(m, "u16")->storage].numel, 4, "8 bytes = 4 x U16");
    dta_model_free(m);
    m = open_fx("byteorder_big.pt");
    cr_assert(has_note(m, "byteorder", NULL));
    dta_model_free(m);
}

Test(torchzip, module_and_numpy_are_flagged)
{
    dta_model *m = open_fx("module.pt");
    find(m, "0.weight"); /* nn.Module internals (_modules/_parameters) skipped in names */
    cr_assert(has_note(m, "unsafe-pickle", "torch.nn.modules.linear.Linear"));
    dta_model_free(m);
    m = open_fx("numpy.pt");
    cr_assert(has_note(m, "numpy-array", "arr"));
    cr_assert(has_note(m, "unsafe-pickle", NULL));
    dta_model_free(m);
}

Test(torchzip, torchscript)
{
    dta_model *m = open_fx("script.pt");
    cr_assert_str_eq(m->format, "torchscript");
    find(m, "0.weight");
    cr_assert(!has_note(m, "unsafe-pickle", NULL), "__torch__ classes are TorchScript, not Python");
    dta_model_free(m);
}

Test(torchlegacy, legacy_stream)
{
    dta_model *m = open_fx("legacy.pt");
    cr_assert_str_eq(m->format, "torch-legacy");
    cr_assert_eq(find(m, "b")->dtype, DTA_I64);
    cr_assert_neq(m->storages[find(m, "a")->storage].offset, UINT64_MAX);
    dta_model_free(m);
    m = open_fx("legacy_views.pt");
    cr_assert_eq(find(m, "part")->storage_offset, 2);
    cr_assert_eq(m->nstorages, 1);
    dta_model_free(m);
}

Test(torchzip, bad_files_rejected)
{
    static const struct { const char *f; dta_status st; } bad[] = {
        {"bad/record_size.pt", DTA_E_FORMAT}, {"bad/missing_record.pt", DTA_E_FORMAT},
        {"bad/view_oob.pt", DTA_E_FORMAT}, {"bad/truncated_pickle.pt", DTA_E_FORMAT},
        {"bad/memo_undefined.pt", DTA_E_FORMAT}, {"bad/no_data_pkl.zip", DTA_E_UNSUPPORTED}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        dta_error err = {0};
        cr_assert_eq(open_status(bad[i].f, &err), bad[i].st, "%s: %s", bad[i].f, err.msg);
    }
    dta_error err = {0};
    (void)open_status("bad/record_size.pt", &err);
    cr_assert(strstr(err.msg, "record 'archive/data/0' has 4 bytes, storage needs 8 (2 x F32)"), "%s", err.msg);
}

/* Every truncation and many single-byte corruptions of real files: no crash. */
static void mutate_file(const char *name, size_t step)
{
    char path[1024];
    const char *src = getenv("srcdir");
    snprintf(path, sizeof path, "%s/tests/fixtures/torch/%s", src ? src : ".", name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    unsigned char *buf = malloc(1 << 16);
    size_t n = fread(buf, 1, 1 << 16, f);
    fclose(f);
    unsigned char *copy = malloc(n);
    for (size_t i = 0; i < n; i += step) {
        for (int pass = 0; pass < 2; pass++) {
            memcpy(copy, buf, n);
            size_t len = n;
            if (pass == 0) len = i; /* truncation */
            else copy[i] ^= 0x5a;   /* corruption */
            dtap_src s;
            dtap_src_open_mem(&s, "mem", copy, len);
            dta_model *m = dtap_model_new("mem", NULL);
            dta_error err = {0};
            (void)dtap_read_src(&s, m, &err);
            dta_model_free(m);
        }
    }
    free(copy);
    free(buf);
}

Test(torchzip, mutations_never_crash) { mutate_file("tied.pt", 1); }
Test(torchlegacy, mutations_never_crash) { mutate_file("legacy_views.pt", 1); }
