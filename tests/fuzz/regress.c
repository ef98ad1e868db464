/* Regression driver: replays files through one fuzz target without libFuzzer.
 *
 *   regress_<target> PATH...
 *
 * Each PATH is a file or a directory (its regular files, sorted, not recursive). Every
 * input is passed to the target's LLVMFuzzerTestOneInput; a crash, sanitizer report or
 * abort() in the target fails the run, so `make check` catches regressions of every
 * corpus entry and saved crasher. LLVMFuzzerInitialize is called first when the target
 * defines it. Exit: 0 all replayed, 1 an input could not be read, 2 usage. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int replay(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "regress: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, n = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(f);
            fprintf(stderr, "regress: out of memory\n");
            return -1;
        }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        unsigned char *nb = realloc(buf, cap * 2);
        if (!nb) free(buf);
        buf = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "regress: %s: read error\n", path);
        free(buf);
        return -1;
    }
    /* an exact-size copy, so ASan sees reads past the input's end */
    unsigned char *exact = malloc(n ? n : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, n);
    free(buf);
    if (getenv("REGRESS_VERBOSE")) fprintf(stderr, "regress: %s (%zu bytes)\n", path, n);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    size_t done = 0;
    int rc = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "regress: %s: %s\n", argv[i], strerror(errno));
            rc = 1;
            continue;
        }
        if (!S_ISDIR(sb.st_mode)) {
            if (replay(argv[i]) == 0) done++;
            else rc = 1;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            fprintf(stderr, "regress: %s: %s\n", argv[i], strerror(errno));
            rc = 1;
            continue;
        }
        char **names = NULL;
        size_t nn = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char **p = realloc(names, (nn + 1) * sizeof *names);
            if (!p || !(p[nn] = strdup(e->d_name))) {
                fprintf(stderr, "regress: out of memory\n");
                return 1;
            }
            names = p;
            nn++;
        }
        closedir(d);
        if (nn > 1) qsort(names, nn, sizeof *names, cmp);
        for (size_t k = 0; k < nn; k++) {
            size_t len = strlen(argv[i]) + strlen(names[k]) + 2;
            char *path = malloc(len);
            if (!path) return 1;
            snprintf(path, len, "%s/%s", argv[i], names[k]);
            if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
                if (replay(path) == 0) done++;
                else rc = 1;
            }
            free(path);
            free(names[k]);
        }
        free(names);
    }
    printf("regress: %zu inputs replayed\n", done);
    return rc;
}
