/* libFuzzer target: the sharded-index reader (dtap_index_open) on a memory source whose
 * name places it in a private temp directory. That directory holds one valid shard,
 * "model-00001-of-00002.safetensors" (tensor "w", F32 [2]); every other shard an index
 * names is absent, so both the "shard read" and the "shard missing" paths run, and the
 * index/shard comparison and total_size check see real tensors. Shard names are checked
 * by the reader to stay inside that directory. */
#include "fuzz_common.h"

#include <sys/stat.h>

static char name[512];

static void cleanup(void)
{
    char p[600];
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", fuzz_tmpdir());
    unlink(p);
    rmdir(fuzz_tmpdir());
}

static void init(void)
{
    unsigned char buf[256];
    char p[600];
    size_t n = fuzz_tiny_safetensors(buf, sizeof buf);
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", fuzz_tmpdir());
    if (!n || fuzz_write_file(p, buf, n) != 0) abort();
    snprintf(name, sizeof name, "%s/model.safetensors.index.json", fuzz_tmpdir());
    atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dtap_src src;
    dta_error err = {0};
    if (!name[0]) init();
    dta_model *m = dtap_model_new(name, &err);
    if (!m) return 0;
    dtap_src_open_mem(&src, name, data, size);
    unsigned char head[DTAP_BID_BYTES];
    size_t hn = dtap_src_peek(&src, 0, head, sizeof head);
    (void)dtap_index_bid(head, hn, size);
    /* the reader is called whether or not it bids: its JSON handling is the target */
    if (dtap_index_open(&src, m, &err) == DTA_OK)
        dtap_model_finish(m);
    else if (!err.msg[0])
        abort();
    dtap_src_close(&src);
    dta_model_free(m);
    return 0;
}
