/* dtaudit: command dispatch and exit status. The library does the work, the commands
 * (cmd_*.c) drive it and the renderers (report_*.c) write the results; this file only picks
 * the command and makes a failed write of its output the exit status. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "cmd.h"
#include "options.h"
#include "settings.h"
#include "term.h"

static const struct {
    const char *name;
    int command;  /* CMD_* */
    int (*run)(cli_options *o);
} commands[] = {
    {"scan", CMD_SCAN, cmd_inspect},          {"audit", CMD_AUDIT, cmd_inspect},
    {"diff", CMD_DIFF, cmd_diff},             {"convert", CMD_CONVERT, cmd_convert},
    {"verify", CMD_VERIFY, cmd_verify},
};

/* The report is the product: when it could not be written whole (disk full, closed pipe)
 * the run failed, whatever it found: exit 2 with one line, for every command and format. */
static int output_status(int rc)
{
    errno = 0;
    int bad = fflush(stdout) != 0;
    int e = errno;
    if (!bad && !ferror(stdout))
        return rc;
    fprintf(stderr, "dtaudit: cannot write the report to standard output%s%s\n", e ? ": " : "",
            e ? strerror(e) : "");
    return 2;
}

int main(int argc, char **argv)
{
#if defined(__GLIBC__) && defined(M_MMAP_THRESHOLD)
    /* Memory proportional to content: a fixed threshold keeps every block over 128 KiB in
     * its own mapping, returned to the system when freed. glibc's default raises the
     * threshold after such a free, and the large transient arrays of a big header (parse
     * entries, hash tables, per-node arrays) then come from the heap, where growing and
     * freeing them leaves resident holes: 41 MB at the peak of a 1M-tensor scan. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
    cli_options o;
    memset(&o, 0, sizeof o);
    o.color = -1;
    o.expect = DTA_DTYPE_NONE;
    o.to = DTA_DTYPE_NONE;
    o.keep_intended = -1;
    o.fail_on = DTA_SEV_WARNING;
    o.target = DTA_DTYPE_NONE;
    o.underflow_share = DTA_UNDERFLOW_SHARE_DEFAULT;

    static char outbuf[1 << 16]; /* reports are large: fewer write calls */
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    signal(SIGPIPE, SIG_IGN); /* a closed pipe is a write error (EPIPE), reported as one */
    if (argc < 2) {
        cli_usage(stderr, 0);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        cli_usage(stdout, 0);
        return output_status(0);
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        cli_version(stdout);
        return output_status(0);
    }
    size_t k = 0, ncommands = sizeof commands / sizeof commands[0];
    while (k < ncommands && strcmp(cmd, commands[k].name) != 0)
        k++;
    if (k == ncommands) {
        fprintf(stderr, "dtaudit: unknown command '%s' (see 'dtaudit --help')\n", shown(cmd));
        return 2;
    }
    o.command = commands[k].command;
#if defined(__GLIBC__) && defined(M_TOP_PAD)
    /* scan and audit read a model, report and exit: 16 MiB kept at the top of the heap
     * when it grows or shrinks lets the blocks freed along the way (shard headers, parse
     * entries, the analysis' tables) serve later requests, the large ones included, instead
     * of new mappings faulted in page by page. 163-shard DeepSeek-V3 layouts: FP8 10.5 k ->
     * 7.6 k page faults, BF16 6.9 k -> 4.2 k, for 7 and 5 MB more resident at the peak
     * (calloc and realloc then clear and copy in the heap: more instructions, less time).
     * Convert and verify keep the default (tests/cli/memory.sh bounds their memory by the
     * header's size: a 250k-tensor convert would take 13 MB more). */
    if (o.command == CMD_SCAN || o.command == CMD_AUDIT)
        mallopt(M_TOP_PAD, 16 << 20);
#endif
    o.command_name = cmd;
    cli_settings set;
    memset(&set, 0, sizeof set);
    int rc = cli_parse(argc - 1, argv + 1, &o);
    if (rc < 0)
        rc = cli_settings_load(&o, &set);
    if (rc < 0)
        rc = commands[k].run(&o);
    cli_settings_free(&o, &set);
    cli_options_free(&o);
    return output_status(rc);
}
