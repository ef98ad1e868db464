/* Symbolic pickle VM: turns a pickle stream (protocols 0-5) into an object graph
 * without executing anything.
 *
 * GLOBAL / STACK_GLOBAL / INST produce DTAP_PK_GLOBAL nodes; calling one (REDUCE,
 * NEWOBJ, OBJ, INST) produces a DTAP_PK_REDUCE / DTAP_PK_NEWOBJ node that records the
 * callable and its arguments and nothing more. The graph keeps every object in stream
 * order (including ones it does not understand) so a writer can re-serialise it.
 *
 * Ownership: every node and string lives in the arena of the dtap_pickle that produced
 * it and is freed with dtap_pickle_free(). Strings are NUL-terminated copies (they may
 * also contain NUL bytes: always use the length). */
#ifndef DTAP_PICKLE_H
#define DTAP_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtaudit/error.h"
#include "dtaudit/limits.h" /* the VM's caps, DTA_MAX_PICKLE_* (DTA_E_LIMIT past them) */

typedef enum {
    DTAP_PK_NONE = 0,
    DTAP_PK_BOOL,
    DTAP_PK_INT,     /* i, or big (bytes: little-endian two's complement) */
    DTAP_PK_FLOAT,
    DTAP_PK_STR,     /* utf-8 (or latin-1 for protocol-0/py2 strings) */
    DTAP_PK_BYTES,
    DTAP_PK_TUPLE,   /* seq */
    DTAP_PK_LIST,    /* seq */
    DTAP_PK_DICT,    /* kv: keys and values interleaved, insertion order */
    DTAP_PK_SET,     /* seq (frozen: flag) */
    DTAP_PK_GLOBAL,  /* module, name (after Python-2 name mapping) */
    DTAP_PK_REDUCE,  /* fn(args); also INST/OBJ (op tells which) */
    DTAP_PK_NEWOBJ,  /* fn = cls, args, kwargs (NEWOBJ_EX) */
    DTAP_PK_PERSID,  /* args = pid object */
    DTAP_PK_OPAQUE   /* EXTn (i = code), out-of-band buffers */
} dtap_pkind;

typedef struct dtap_pnode dtap_pnode;

typedef struct {
    dtap_pnode **v;
    uint32_t n, cap;     /* <= DTA_MAX_PICKLE_CONTAINER */
} dtap_pvec;

struct dtap_pnode {
    dtap_pkind kind;
    unsigned char op;    /* opcode that created it (for re-serialisation) */
    bool big;            /* INT: does not fit int64; s/len hold the LE bytes */
    bool allowed;        /* GLOBAL: on the weights_only allowlist */
    bool frozen;         /* SET: frozenset */
    bool visiting;       /* scratch for graph walkers (cycle guard) */
    uint32_t len;        /* of s: <= DTA_MAX_PICKLE_STRING */
    /* The payloads of different kinds share their storage (96 bytes a node, not 144):
     * read a field only for the kinds it is listed for. */
    union {
        int64_t i;       /* INT, BOOL, OPAQUE ext code */
        double f;        /* FLOAT */
    };
    union {
        struct {
            char *s;     /* STR/BYTES/big INT data; GLOBAL module */
            char *name;  /* GLOBAL name */
        };
        struct {
            dtap_pnode *fn;     /* REDUCE/NEWOBJ callable */
            dtap_pnode *args;   /* REDUCE/NEWOBJ args; PERSID pid */
            dtap_pnode *kwargs; /* NEWOBJ_EX */
        };
    };
    dtap_pvec seq;       /* TUPLE/LIST/SET items; APPEND(S)/ADDITEMS on other objects */
    dtap_pvec kv;        /* DICT items; SETITEM(S) on other objects */
    dtap_pvec states;    /* BUILD states in order (usually 0 or 1) */
};

typedef struct {
    bool torchscript;    /* allow __torch__.* and torch.jit._pickle.* globals */
} dtap_pickle_opts;

typedef struct dtap_pickle dtap_pickle;

/* Runs the VM over data[0..n). On success *out owns the graph (root via
 * dtap_pickle_root). *consumed (may be NULL) receives the offset just past STOP, for
 * streams of several concatenated pickles. */
dta_status dtap_pickle_load(const unsigned char *data, size_t n, const dtap_pickle_opts *opts,
                            dtap_pickle **out, size_t *consumed, dta_error *err);
void dtap_pickle_free(dtap_pickle *p);

const dtap_pnode *dtap_pickle_root(const dtap_pickle *p);
int dtap_pickle_protocol(const dtap_pickle *p); /* highest PROTO seen, 0 if none */
uint64_t dtap_pickle_ops(const dtap_pickle *p); /* opcodes the stream executed */
/* Distinct globals outside the allowlist, "module.name" (or "EXTn code"), first-use order. */
size_t dtap_pickle_unsafe_count(const dtap_pickle *p);
const char *dtap_pickle_unsafe(const dtap_pickle *p, size_t i);

/* Helpers for graph walkers. */
bool dtap_pnode_is_global(const dtap_pnode *n, const char *module, const char *name);
bool dtap_pnode_is_str(const dtap_pnode *n, const char *s);
/* The callable of a REDUCE/NEWOBJ node if it is a GLOBAL, else NULL. */
const dtap_pnode *dtap_pnode_callee(const dtap_pnode *n);
/* Item i of a TUPLE/LIST, or NULL. */
const dtap_pnode *dtap_pnode_item(const dtap_pnode *n, size_t i);
/* Value as int64 (INT that fits, or BOOL). */
bool dtap_pnode_int(const dtap_pnode *n, int64_t *v);
/* True for globals torch's weights_only unpickler accepts (after name mapping). */
bool dtap_pickle_global_allowed(const char *module, const char *name, bool torchscript);

/* Every PERSID node, in stream order. */
size_t dtap_pickle_persid_count(const dtap_pickle *p);
const dtap_pnode *dtap_pickle_persid(const dtap_pickle *p, size_t i);

#endif
