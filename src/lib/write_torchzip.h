/* Rewriting torch zip checkpoints (torch.save >= 1.6) with changed storage dtypes.
 *
 * Flow: dtap_torchzip_load() opens the input and fills a dta_model exactly as
 * dtap_torchzip_open() would (storages keyed by pid key, tensors pointing at them), and
 * keeps the archive and the parsed data.pkl graph. The caller picks a new dtype per model
 * storage and calls dtap_torchzip_write(), which re-emits data.pkl (protocol 2, the
 * weights_only opcode set; docs/formats.md 2.6, 2.9, 3.1) and streams a new archive with
 * torch's own zip layout (docs/formats.md 2.3, 2.4) through a dtap_zipw.
 *
 * Decisions (docs/formats.md 3.1 leaves them open):
 *   - Storage keys are kept as they are (no renumbering); data/<key> records are written
 *     in first-appearance order of the new pickle; storages no pid references are dropped.
 *   - Globals are written with the Python 3 names the reader mapped them to (`builtins`,
 *     `copyreg`): torch.load and the weights_only unpickler accept both spellings.
 *   - Records: data.pkl, byteorder ("little"), data/<key>..., the input's other records
 *     (copied, STORED), version (the input's when >= 3, else "3\n"). No .format_version,
 *     .storage_alignment or .data/serialization_id.
 *   - Refused with DTA_E_UNSUPPORTED: big-endian inputs (byteorder "big"; byte swapping is
 *     not done yet), TorchScript archives, a retyped storage that some object other than
 *     a tensor rebuild (_rebuild_tensor, _v2, _v3, inside _rebuild_parameter* or
 *     _rebuild_from_type_v2) uses, and sub-byte or quantized target dtypes.
 *   - Objects the writer does not understand round-trip in meaning: NEWOBJ, NEWOBJ_EX,
 *     EXTn, LONG4 and the rare POP/POP_MARK of recursive tuples are written when (and only
 *     when) the graph needs them; such a file fails weights_only as the input did. Items
 *     (APPENDS/SETITEMS) are always written before BUILD states, as Python's pickler does.
 *   - bytes become _codecs.encode(str, 'latin1'), bytearray builtins.bytearray(bytes),
 *     set/frozenset builtins.set/frozenset(list), protocol-0 strings BINUNICODE.
 *
 * Ownership: a dtap_torchzip borrows the dtap_src given to load (it must outlive it) and
 * owns the archive and the graph. Everything else is returned through the model. */
#ifndef DTAP_WRITE_TORCHZIP_H
#define DTAP_WRITE_TORCHZIP_H

#include <stddef.h>
#include <stdint.h>

#include "dtaudit/dtype.h"
#include "dtaudit/error.h"
#include "dtaudit/model.h"
#include "src.h"
#include "zip_write.h"

/* ---- reading ----------------------------------------------------------------------- */

typedef struct dtap_torchzip dtap_torchzip;

/* Opens src for rewriting and fills m as dtap_torchzip_open does. */
dta_status dtap_torchzip_load(const dtap_src *src, dta_model *m, dtap_torchzip **out, dta_error *err);
void dtap_torchzip_free(dtap_torchzip *t);
/* The archive directory name ("archive", "pytorch_model", ...). */
const char *dtap_torchzip_prefix(const dtap_torchzip *t);
/* The parsed data.pkl graph (tests compare graphs). */
const struct dtap_pickle *dtap_torchzip_pickle(const dtap_torchzip *t);

/* Receives bytes in order; returns DTA_OK to go on. */
typedef dta_status (*dtap_bytes_sink)(void *ctx, const void *p, size_t n, dta_error *err);

/* Streams the input bytes of model storage i (nbytes of its input dtype) to sink, in
 * chunks that are multiples of 64 bytes except the last. STORED records are read in
 * place; a compressed record is inflated into memory first (DTA_E_LIMIT above
 * DTA_MAX_PICKLE_BYTES). */
dta_status dtap_torchzip_read_storage(const dtap_torchzip *t, const dta_model *m, size_t storage,
                                      dtap_bytes_sink sink, void *ctx, dta_error *err);

/* ---- writing ----------------------------------------------------------------------- */

/* Writes exactly numel * elsize(new_dtype[storage]) bytes of that storage with
 * dtap_zipw_write (the caller converts and streams them). */
typedef dta_status (*dtap_storage_writer)(void *ctx, size_t storage, dtap_zipw *z, dta_error *err);

/* Writes the converted checkpoint to fd. new_dtype[i] is the output dtype of model
 * storage i (m->nstorages entries). A storage whose dtype is unchanged is copied from the
 * input by the writer; write_data is called once for each retyped storage, in output
 * order (it may be NULL when nothing is retyped). Before anything is written the new
 * pickle is parsed back and checked (docs/formats.md 3.3): every tensor keeps its shape,
 * strides and offset and has its storage's new dtype, every pid of a key names one
 * storage type whose size matches the record, v3 rebuilds use UntypedStorage and v2 ones
 * a typed storage. m must be the model load filled (more may have been added since). */
dta_status dtap_torchzip_write(const dtap_torchzip *t, const dta_model *m, const dta_dtype *new_dtype,
                               int fd, dtap_storage_writer write_data, void *ctx, dta_error *err);

/* dtap_torchzip_write that frees the input's data.pkl graph as soon as the new pickle is
 * made, before that is parsed back and checked (the graph is most of a large checkpoint's
 * memory): t is written once, and dtap_torchzip_pickle(t) is NULL after. */
dta_status dtap_torchzip_write_once(dtap_torchzip *t, const dta_model *m, const dta_dtype *new_dtype,
                                    int fd, dtap_storage_writer write_data, void *ctx,
                                    dta_error *err);

/* Test hook: the zip64 threshold dtap_torchzip_write gives its dtap_zipw (0: default). */
void dtap_torchzip_set_zip64_threshold(dtap_torchzip *t, uint64_t threshold);

#endif
