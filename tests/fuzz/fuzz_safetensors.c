/* libFuzzer target: the safetensors header reader, through the reader table
 * (dtap_read_src) on a memory source. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dtap_src src;
    dta_error err = {0};
    dta_model *m = dtap_model_new(FUZZ_SRC_NAME, &err);
    if (!m) return 0;
    dtap_src_open_mem(&src, FUZZ_SRC_NAME, data, size);
    if (dtap_read_src(&src, m, &err) == DTA_OK) {
        dtap_model_finish(m);
        /* the model must be self-consistent */
        for (size_t i = 0; i < m->ntensors; i++) {
            const dta_tensor *t = &m->tensors[i];
            if (t->storage != SIZE_MAX && t->storage >= m->nstorages) abort();
            if (t->file >= m->nfiles) abort();
        }
    } else if (!err.msg[0]) {
        abort(); /* every failure must say why */
    }
    dtap_src_close(&src);
    dta_model_free(m);
    return 0;
}
