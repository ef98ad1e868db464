/* Unit tests for the symbolic pickle VM (src/lib/pickle.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "pickle.h"

static dtap_pickle *load_ok(const void *p, size_t n)
{
    dtap_pickle *pk = NULL;
    dta_error err = {0};
    dta_status st = dtap_pickle_load(p, n, NULL, &pk, NULL, &err);
    cr_assert_eq(st, DTA_OK, "load failed: %s", err.msg);
    return pk;
}

static dta_status load_st(const void *p, size_t n, dta_error *err)
{
    dtap_pickle *pk = NULL;
    dta_status st = dtap_pickle_load(p, n, NULL, &pk, NULL, err);
    dtap_pickle_free(pk);
    return st;
}

#define LOAD(lit) load_ok(lit, sizeof(lit) - 1)
#define STATUS(lit, e) load_st(lit, sizeof(lit) - 1, e)

Test(pickle, memo_aliases_mutated_containers)
{
    /* d = {}; put 0; 'a': L (put 1); SETITEM; get 1; APPEND 5 to L; POP; STOP -> d */
    static const char p[] = "\x80\x02}q\x00X\x01\x00\x00\x00" "a]q\x01sh\x01K\x05" "a0.";
    dtap_pickle *pk = LOAD(p);
    const dtap_pnode *d = dtap_pickle_root(pk);
    cr_assert_eq(d->kind, DTAP_PK_DICT);
    cr_assert_eq(d->kv.n, 2);
    const dtap_pnode *l = d->kv.v[1];
    cr_assert_eq(l->kind, DTAP_PK_LIST);
    cr_assert_eq(l->seq.n, 1, "the list appended through BINGET must show its item");
    cr_assert_eq(l->seq.v[0]->i, 5);
    dtap_pickle_free(pk);
}

Test(pickle, integers)
{
    /* (BININT -1, BININT2 513, LONG1 2^31, LONG1 9-byte big, LONG4 -2, INT text, bool text, LONG text) */
    static const char p[] = "\x80\x02(J\xff\xff\xff\xffM\x01\x02\x8a\x05\x00\x00\x00\x80\x00"
                            "\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01"
                            "\x8b\x01\x00\x00\x00\xfe" "I42\nI01\nL-12345678901234567890123L\nt.";
    dtap_pickle *pk = LOAD(p);
    const dtap_pnode *t = dtap_pickle_root(pk);
    cr_assert_eq(t->kind, DTAP_PK_TUPLE);
    cr_assert_eq(t->seq.n, 8);
    int64_t v;
    cr_assert(dtap_pnode_int(t->seq.v[0], &v) && v == -1);
    cr_assert(dtap_pnode_int(t->seq.v[1], &v) && v == 513);
    cr_assert(dtap_pnode_int(t->seq.v[2], &v) && v == 2147483648LL);
    cr_assert(t->seq.v[3]->big, "2^64 does not fit int64");
    cr_assert_eq(t->seq.v[3]->len, 9);
    cr_assert(dtap_pnode_int(t->seq.v[4], &v) && v == -2);
    cr_assert(dtap_pnode_int(t->seq.v[5], &v) && v == 42);
    cr_assert_eq(t->seq.v[6]->kind, DTAP_PK_BOOL);
    cr_assert(t->seq.v[7]->big);
    cr_assert(t->seq.v[7]->s[t->seq.v[7]->len - 1] & 0x80, "negative big int keeps its sign");
    dtap_pickle_free(pk);
}

Test(pickle, binfloat_is_big_endian)
{
    static const char p[] = "\x80\x02G\x3f\xf8\x00\x00\x00\x00\x00\x00.";
    dtap_pickle *pk = LOAD(p);
    cr_assert_eq(dtap_pickle_root(pk)->kind, DTAP_PK_FLOAT);
    cr_assert_float_eq(dtap_pickle_root(pk)->f, 1.5, 1e-12);
    dtap_pickle_free(pk);
}

Test(pickle, protocol4_frame_stack_global_memoize)
{
    /* FRAME, SHORT_BINUNICODE module/name, MEMOIZE x2, STACK_GLOBAL, MEMOIZE, EMPTY_TUPLE, REDUCE */
    static const char p[] = "\x80\x04\x95\x2a\x00\x00\x00\x00\x00\x00\x00"
                            "\x8c\x0b" "collections\x94\x8c\x0b" "OrderedDict\x94\x93\x94)R\x94h\x01.";
    dtap_pickle *pk = LOAD(p);
    cr_assert_eq(dtap_pickle_protocol(pk), 4);
    const dtap_pnode *r = dtap_pickle_root(pk);
    cr_assert(dtap_pnode_is_str(r, "OrderedDict"), "BINGET 1 is the second MEMOIZE'd string");
    cr_assert_eq(dtap_pickle_unsafe_count(pk), 0);
    dtap_pickle_free(pk);
}

Test(pickle, unsafe_globals_recorded_not_run)
{
    static const char p[] = "\x80\x02" "cos\nsystem\nX\x05\x00\x00\x00touch\x85R"
                            "c__builtin__\neval\nX\x01\x00\x00\x00" "1\x85R" "cos\nsystem\n" "\x86\x86.";
    dtap_pickle *pk = LOAD(p);
    cr_assert_eq(dtap_pickle_unsafe_count(pk), 2, "os.system once, builtins.eval once");
    cr_assert_str_eq(dtap_pickle_unsafe(pk, 0), "os.system");
    cr_assert_str_eq(dtap_pickle_unsafe(pk, 1), "builtins.eval", "Python-2 names are mapped");
    dtap_pickle_free(pk);
}

Test(pickle, allowlist)
{
    cr_assert(dtap_pickle_global_allowed("torch._utils", "_rebuild_tensor_v2", false));
    cr_assert(dtap_pickle_global_allowed("torch", "BFloat16Storage", false));
    cr_assert(dtap_pickle_global_allowed("torch", "float8_e4m3fn", false));
    cr_assert(dtap_pickle_global_allowed("collections", "OrderedDict", false));
    cr_assert(dtap_pickle_global_allowed("torch.storage", "UntypedStorage", false));
    cr_assert(!dtap_pickle_global_allowed("torch", "load", false));
    cr_assert(!dtap_pickle_global_allowed("builtins", "getattr", false));
    cr_assert(!dtap_pickle_global_allowed("__torch__.Net", "Net", false));
    cr_assert(dtap_pickle_global_allowed("__torch__.Net", "Net", true));
}

Test(pickle, inst_obj_newobj_ex_ext)
{
    static const char p[] = "\x80\x04((X\x01\x00\x00\x00" "aisubprocess\nPopen\n"
                            "(cposix\nsystem\nX\x01\x00\x00\x00" "bo"
                            "cbuiltins\nobject\n)}\x92" "\x82\x07" "t.";
    dtap_pickle *pk = LOAD(p);
    const dtap_pnode *t = dtap_pickle_root(pk);
    cr_assert_eq(t->seq.n, 4);
    cr_assert_eq(t->seq.v[0]->kind, DTAP_PK_REDUCE);
    cr_assert(dtap_pnode_is_global(t->seq.v[0]->fn, "subprocess", "Popen"));
    cr_assert_eq(t->seq.v[1]->kind, DTAP_PK_REDUCE);
    cr_assert(dtap_pnode_is_global(t->seq.v[1]->fn, "posix", "system"));
    cr_assert_eq(t->seq.v[2]->kind, DTAP_PK_NEWOBJ);
    cr_assert_eq(t->seq.v[3]->kind, DTAP_PK_OPAQUE);
    cr_assert_eq(t->seq.v[3]->i, 7);
    cr_assert_eq(dtap_pickle_unsafe_count(pk), 4); /* Popen, posix.system, builtins.object, EXT1 */
    dtap_pickle_free(pk);
}

Test(pickle, protocol0_text)
{
    static const char p[] = "(dp0\nS'a\\'b'\np1\n(lp2\nI1\naF2.5\naV\\u00e9\np3\nas.";
    dtap_pickle *pk = LOAD(p);
    const dtap_pnode *d = dtap_pickle_root(pk);
    cr_assert_eq(d->kind, DTAP_PK_DICT);
    cr_assert(dtap_pnode_is_str(d->kv.v[0], "a'b"));
    cr_assert_eq(d->kv.v[1]->seq.n, 3);
    cr_assert_float_eq(d->kv.v[1]->seq.v[1]->f, 2.5, 1e-12);
    dtap_pickle_free(pk);
}

Test(pickle, build_attaches_state)
{
    static const char p[] = "\x80\x02" "ccollections\nOrderedDict\n)R}X\x09\x00\x00\x00_metadataK\x01sb.";
    dtap_pickle *pk = LOAD(p);
    const dtap_pnode *r = dtap_pickle_root(pk);
    cr_assert_eq(r->kind, DTAP_PK_REDUCE);
    cr_assert_eq(r->states.n, 1);
    cr_assert_eq(r->states.v[0]->kind, DTAP_PK_DICT);
    dtap_pickle_free(pk);
}

Test(pickle, malformed_inputs_fail_cleanly)
{
    dta_error e = {0};
    cr_assert_eq(STATUS("\x80\x02h\x05.", &e), DTA_E_FORMAT);
    cr_assert(strstr(e.msg, "memo index 5"), "%s", e.msg);
    cr_assert_eq(STATUS("\x80\x02K\x01", &e), DTA_E_FORMAT);       /* no STOP */
    cr_assert_eq(STATUS("\x80\x02X\x10\x00\x00\x00" "ab.", &e), DTA_E_FORMAT); /* truncated */
    cr_assert_eq(STATUS("\x80\x02\xff.", &e), DTA_E_FORMAT);       /* unknown opcode */
    cr_assert_eq(STATUS("\x80\x02R.", &e), DTA_E_FORMAT);          /* stack underflow */
    cr_assert_eq(STATUS("\x80\x02(K\x01K\x02u.", &e), DTA_E_FORMAT); /* SETITEMS without target */
    cr_assert_eq(STATUS("\x80\x02K\x01K\x02s.", &e), DTA_E_FORMAT); /* SETITEM on an int */
    cr_assert_eq(STATUS("\x80\x09.", &e), DTA_E_FORMAT);           /* protocol 9 */
    cr_assert_eq(STATUS("\x80\x02T\xff\xff\xff\xff.", &e), DTA_E_FORMAT); /* negative length */
    cr_assert_eq(STATUS("\x80\x02K\x01\x93.", &e), DTA_E_FORMAT);  /* STACK_GLOBAL underflow */
    cr_assert_eq(STATUS("", &e), DTA_E_FORMAT);
}

Test(pickle, caps_return_limit)
{
    dta_error e = {0};
    cr_assert_eq(STATUS("\x80\x02K\x01r\xff\xff\xff\xff.", &e), DTA_E_LIMIT); /* memo index */
    cr_assert_eq(STATUS("\x80\x02X\xff\xff\xff\x7f.", &e), DTA_E_LIMIT);     /* string length */
    /* MARK depth */
    size_t n = DTA_MAX_PICKLE_MARKS + 10;
    char *p = malloc(n + 3);
    cr_assert_not_null(p);
    p[0] = '\x80';
    p[1] = 2;
    memset(p + 2, '(', n);
    p[n + 2] = '.';
    cr_assert_eq(load_st(p, n + 3, &e), DTA_E_LIMIT);
    /* stack depth */
    free(p);
    n = DTA_MAX_PICKLE_STACK + 10;
    p = malloc(n + 3);
    cr_assert_not_null(p);
    p[0] = '\x80';
    p[1] = 2;
    memset(p + 2, 'N', n);
    p[n + 2] = '.';
    cr_assert_eq(load_st(p, n + 3, &e), DTA_E_LIMIT);
    free(p);
}

Test(pickle, consumed_allows_concatenated_pickles)
{
    static const char p[] = "\x80\x02K\x01.\x80\x02K\x02.";
    dtap_pickle *pk = NULL;
    size_t used = 0;
    cr_assert_eq(dtap_pickle_load((const unsigned char *)p, sizeof p - 1, NULL, &pk, &used, NULL), DTA_OK);
    cr_assert_eq(used, 5);
    dtap_pickle_free(pk);
}

Test(pickle, every_truncation_is_safe)
{
    static const char p[] = "\x80\x02}q\x00(X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n"
                            "((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00"
                            "0X\x03\x00\x00\x00" "cpuK\x02tQK\x00K\x02\x85K\x01\x85\x89"
                            "ccollections\nOrderedDict\n)RtRu.";
    for (size_t n = 0; n < sizeof p - 1; n++) {
        dta_error e = {0};
        cr_assert_neq(load_st(p, n, &e), DTA_OK, "prefix of %zu bytes must fail", n);
    }
    /* and every single-byte corruption loads or fails, never crashes */
    char q[sizeof p];
    for (size_t i = 0; i < sizeof p - 1; i++)
        for (int b = 0; b < 256; b += 17) {
            memcpy(q, p, sizeof p);
            q[i] = (char)b;
            dta_error e = {0};
            (void)load_st(q, sizeof p - 1, &e);
        }
}
