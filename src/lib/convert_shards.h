/* The shards of a directory or sharded conversion: converted by several threads at once
 * (convert --jobs), and the scale-out of one conversion over several processes
 * (convert --part K/N; docs/design.md "Parts"). Internal to the library. */
#ifndef DTAUDIT_CONVERT_SHARDS_H
#define DTAUDIT_CONVERT_SHARDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "convert_job.h"
#include "dtaudit/model.h"

/* What dtap_shards_run does with each shard. */
typedef enum {
    DTAP_SHARDS_CONVERT = 0, /* convert into dir/rel (the temporary output directory) */
    DTAP_SHARDS_STAGE,       /* this part's shards: convert into the staging dir, each
                              * published there by rename, then its record written */
    DTAP_SHARDS_LINK         /* every shard: hard-link the staged file into dir/rel */
} dtap_shards_mode;

/* The parts (1..nparts) of n shards: by input size, largest first (ties: the name), each
 * to the part with the least bytes so far (ties: the lowest part). A function of the
 * names and sizes only, so every process computes the same sets. An empty shard weighs
 * one byte, so parts 1..min(n, nparts) get one shard each before any gets a second: part
 * K has none exactly when K > n. False when out of memory (part_of unset). */
bool dtap_parts_assign(const uint64_t *sizes, const char *const *names, size_t n,
                       unsigned nparts, unsigned *part_of);

/* Runs the shard loop of a directory conversion: shard i is m->files[i].path, written as
 * rel[i] under dir. With mode STAGE only shards with part_of[i] == j->o->part are done
 * (staged under j->stage, records beside them); with LINK every staged shard is linked
 * from j->stage into dir. bytes[i] gets shard i's tensor data bytes (the index's
 * total_size). Up to j->o->jobs threads of the pool (convert_pool.h; 0: the CPUs; 1 with
 * CUDA or LINK); the first failure stops the others and is returned; results are added to
 * j->res in shard order. */
dta_status dtap_shards_run(dtap_job *j, const dta_model *m, const char *const *rel,
                           const char *dir, dtap_shards_mode mode, const unsigned *part_of,
                           uint64_t *bytes);

/* ---- parts (convert --part K/N) ---- */

/* convert --part: stages this part's shards of the directory or index in (index: in is an
 * index file) beside out, then publishes out when every shard is staged (j->res->published,
 * ->written, ->shards_staged). An overflow refusal sets j->res->refused and stages nothing
 * of that shard. *format gets "directory". */
dta_status dtap_convert_parts(dtap_job *j, const char *in, const char *out, bool index,
                              const char **format);

typedef struct {
    char dir[4096];   /* the staging directory: OUT's folder/.BASE.dtaudit.parts */
    int lock;         /* its lock file, flocked while held; -1 */
} dtap_stage;

/* Creates (or joins) the staging directory of out and checks that it belongs to this
 * conversion: the first part writes a plan (options, N, shard names and sizes), later ones
 * compare theirs with it (another conversion's staging is refused, DTA_E_ARG). An out that
 * exists is refused as convert refuses it. */
dta_status dtap_stage_open(dtap_stage *s, const char *in, const char *out, const dtap_job *j,
                           const dta_model *m, dta_error *err);
/* Locks the staging directory; *gone set when it vanished (another part published). */
dta_status dtap_stage_lock(dtap_stage *s, bool *gone, dta_error *err);
/* Number of shards of m staged (their records present). */
size_t dtap_stage_count(const dtap_stage *s, size_t nshards);
/* Removes the staging directory (after publishing) and releases the lock. */
void dtap_stage_remove(dtap_stage *s);
void dtap_stage_close(dtap_stage *s);

#endif
