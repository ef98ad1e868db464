/* libFuzzer target: the whole PyTorch reader on a memory source: the zip reader
 * (dtap_torchzip_open: zip directory, byteorder, data.pkl / constants.pkl, storage
 * records) and, for inputs that carry torch's legacy magic, the legacy stream reader. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dtap_src src;
    dta_error err = {0};
    dta_model *m = dtap_model_new(FUZZ_SRC_NAME, &err);
    if (!m) return 0;
    dtap_src_open_mem(&src, FUZZ_SRC_NAME, data, size);
    unsigned char head[DTAP_BID_BYTES];
    size_t hn = dtap_src_peek(&src, 0, head, sizeof head);
    dta_status st = dtap_torchlegacy_bid(head, hn, size) > 0 ? dtap_torchlegacy_open(&src, m, &err)
                                                             : dtap_torchzip_open(&src, m, &err);
    if (st == DTA_OK) {
        dtap_model_finish(m);
        for (size_t i = 0; i < m->ntensors; i++) {
            const dta_tensor *t = &m->tensors[i];
            if (t->storage != SIZE_MAX) {
                const dta_storage *s = &m->storages[t->storage];
                /* a storage with a known offset lies inside the file */
                if (s->offset != UINT64_MAX && (s->offset > size || s->nbytes > size - s->offset))
                    abort();
            }
        }
    } else if (!err.msg[0]) {
        abort();
    }
    dtap_src_close(&src);
    dta_model_free(m);
    return 0;
}
