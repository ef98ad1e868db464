/* The pickle opcodes (Python's Lib/pickletools.py, protocols 0-5), one X-macro list that
 * the VM (pickle.c), the emitter (write_torchzip.c) and the legacy format's bid
 * (format_torchlegacy.c) all expand, so no file spells an opcode as a raw byte.
 *
 *   PK_OP(NAME, byte, protocol it first appeared in)
 *
 * Use: #define PK_OP(name, code, proto) ... then DTAP_PICKLE_OPCODES; or the enum below. */
#ifndef DTAP_PICKLE_OPCODES_H
#define DTAP_PICKLE_OPCODES_H

#define DTAP_PICKLE_OPCODES                                                                  \
    PK_OP(MARK, '(', 0)              /* push a mark */                                       \
    PK_OP(STOP, '.', 0)              /* end of the pickle */                                 \
    PK_OP(POP, '0', 0)               /* drop the top item */                                 \
    PK_OP(POP_MARK, '1', 1)          /* drop items down to the top mark */                   \
    PK_OP(DUP, '2', 0)               /* duplicate the top item */                            \
    PK_OP(FLOAT, 'F', 0)             /* float as repr text */                                \
    PK_OP(INT, 'I', 0)               /* int as decimal text ("00"/"01": bools) */            \
    PK_OP(BININT, 'J', 1)            /* i32 */                                               \
    PK_OP(BININT1, 'K', 1)           /* u8 */                                                \
    PK_OP(LONG, 'L', 0)              /* long as decimal text */                              \
    PK_OP(BININT2, 'M', 1)           /* u16 */                                               \
    PK_OP(NONE, 'N', 0)                                                                      \
    PK_OP(PERSID, 'P', 0)            /* persistent id as text */                             \
    PK_OP(BINPERSID, 'Q', 1)         /* persistent id from the stack */                      \
    PK_OP(REDUCE, 'R', 0)            /* callable(*args) */                                   \
    PK_OP(STRING, 'S', 0)            /* quoted str text */                                   \
    PK_OP(BINSTRING, 'T', 1)         /* i32 length + bytes */                                \
    PK_OP(SHORT_BINSTRING, 'U', 1)   /* u8 length + bytes */                                 \
    PK_OP(UNICODE, 'V', 0)           /* raw-unicode-escape text */                           \
    PK_OP(BINUNICODE, 'X', 1)        /* u32 length + UTF-8 */                                \
    PK_OP(APPEND, 'a', 0)                                                                    \
    PK_OP(BUILD, 'b', 0)             /* __setstate__ / dict update */                        \
    PK_OP(GLOBAL, 'c', 0)            /* module\nname\n */                                    \
    PK_OP(DICT, 'd', 0)              /* dict from the items above the mark */                \
    PK_OP(EMPTY_DICT, '}', 1)                                                                \
    PK_OP(APPENDS, 'e', 1)                                                                   \
    PK_OP(GET, 'g', 0)               /* memo get, index as text */                           \
    PK_OP(BINGET, 'h', 1)            /* memo get, u8 index */                                \
    PK_OP(INST, 'i', 0)              /* module\nname\n, args above the mark */               \
    PK_OP(LONG_BINGET, 'j', 1)       /* memo get, u32 index */                               \
    PK_OP(LIST, 'l', 0)              /* list from the items above the mark */                \
    PK_OP(EMPTY_LIST, ']', 1)                                                                \
    PK_OP(OBJ, 'o', 1)               /* class and args above the mark */                     \
    PK_OP(PUT, 'p', 0)               /* memo put, index as text */                           \
    PK_OP(BINPUT, 'q', 1)            /* memo put, u8 index */                                \
    PK_OP(LONG_BINPUT, 'r', 1)       /* memo put, u32 index */                               \
    PK_OP(SETITEM, 's', 0)                                                                   \
    PK_OP(TUPLE, 't', 0)             /* tuple from the items above the mark */               \
    PK_OP(EMPTY_TUPLE, ')', 1)                                                               \
    PK_OP(SETITEMS, 'u', 1)                                                                  \
    PK_OP(BINFLOAT, 'G', 1)          /* big-endian f64 */                                    \
    PK_OP(BINBYTES, 'B', 3)          /* u32 length + bytes */                                \
    PK_OP(SHORT_BINBYTES, 'C', 3)    /* u8 length + bytes */                                 \
    PK_OP(PROTO, 0x80, 2)            /* protocol number */                                   \
    PK_OP(NEWOBJ, 0x81, 2)           /* cls.__new__(cls, *args) */                           \
    PK_OP(EXT1, 0x82, 2)             /* extension registry code, u8 */                       \
    PK_OP(EXT2, 0x83, 2)             /* u16 */                                               \
    PK_OP(EXT4, 0x84, 2)             /* i32 */                                               \
    PK_OP(TUPLE1, 0x85, 2)                                                                   \
    PK_OP(TUPLE2, 0x86, 2)                                                                   \
    PK_OP(TUPLE3, 0x87, 2)                                                                   \
    PK_OP(NEWTRUE, 0x88, 2)                                                                  \
    PK_OP(NEWFALSE, 0x89, 2)                                                                 \
    PK_OP(LONG1, 0x8a, 2)            /* u8 length + little-endian two's complement */        \
    PK_OP(LONG4, 0x8b, 2)            /* i32 length + the same */                             \
    PK_OP(SHORT_BINUNICODE, 0x8c, 4) /* u8 length + UTF-8 */                                 \
    PK_OP(BINUNICODE8, 0x8d, 4)      /* u64 length + UTF-8 */                                \
    PK_OP(BINBYTES8, 0x8e, 4)        /* u64 length + bytes */                                \
    PK_OP(EMPTY_SET, 0x8f, 4)                                                                \
    PK_OP(ADDITEMS, 0x90, 4)         /* set.add for the items above the mark */              \
    PK_OP(FROZENSET, 0x91, 4)        /* frozenset from the items above the mark */           \
    PK_OP(NEWOBJ_EX, 0x92, 4)        /* cls.__new__(cls, *args, **kwargs) */                 \
    PK_OP(STACK_GLOBAL, 0x93, 4)     /* module and name from the stack */                    \
    PK_OP(MEMOIZE, 0x94, 4)          /* memo put at the next index */                        \
    PK_OP(FRAME, 0x95, 4)            /* u64 frame length (framing only) */                   \
    PK_OP(BYTEARRAY8, 0x96, 5)       /* u64 length + bytes */                                \
    PK_OP(NEXT_BUFFER, 0x97, 5)      /* out-of-band buffer */                                \
    PK_OP(READONLY_BUFFER, 0x98, 5)

enum dtap_pickle_op {
#define PK_OP(name, code, proto) DTAP_OP_##name = code,
    DTAP_PICKLE_OPCODES
#undef PK_OP
};

#endif
