/* libFuzzer target: the zip directory reader (dtap_zip_open) over a memory source, then
 * every entry: lookup by name, data offset, and a bounded read (stored or inflated). */
#include "fuzz_common.h"
#include "zipread.h"

#define FUZZ_ZIP_READ_CAP (1u << 20) /* bytes per entry read here (keeps RSS small) */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dtap_src src;
    dta_error err = {0};
    dtap_zip *z = NULL;
    dtap_src_open_mem(&src, FUZZ_SRC_NAME, data, size);
    if (dtap_zip_open(&src, &z, &err) != DTA_OK) {
        if (z || !err.msg[0]) abort();
        dtap_src_close(&src);
        return 0;
    }
    (void)dtap_zip_prefix(z);
    (void)dtap_zip_find(z, "data.pkl");
    (void)dtap_zip_find(z, "byteorder");
    size_t n = dtap_zip_count(z);
    for (size_t i = 0; i < n && i < 64; i++) {
        const dtap_zip_entry *e = dtap_zip_entry_at(z, i);
        if (!e || !e->name || strlen(e->name) != e->name_len) abort();
        uint64_t off;
        if (dtap_zip_data_offset(z, e, &off, &err) == DTA_OK &&
            (off > size || e->comp_size > size - off))
            abort(); /* an offset it vouches for must lie inside the source */
        unsigned char *buf = NULL;
        size_t got = 0;
        if (dtap_zip_read(z, e, FUZZ_ZIP_READ_CAP, &buf, &got, &err) == DTA_OK) {
            if (!buf || got != e->size || buf[got] != 0) abort();
            free(buf);
        } else if (buf) {
            abort();
        }
    }
    if (dtap_zip_entry_at(z, n)) abort();
    dtap_zip_close(z);
    dtap_src_close(&src);
    return 0;
}
