/* audit_cmd.c - the `wardctl audit` group: verify a trail, export it for a SIEM, query it */
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "cmd/wardctl/wardctl.h"

/* Exit statuses of the audit commands (docs/audit.md). */
enum { AUDIT_EXIT_OK = 0, AUDIT_EXIT_BAD = 1, AUDIT_EXIT_USAGE = 2, AUDIT_EXIT_UNREADABLE = 3 };

static int audit_verify_cmd(const char *prog, int argc, char **argv);
static int audit_export_cmd(const char *prog, int argc, char **argv);
static int audit_query_cmd(const char *prog, int argc, char **argv);

static const wctl_command audit_commands[] = {
    {"verify", audit_verify_cmd, "check the hash chain and the signed checkpoints of a trail"},
    {"export", audit_export_cmd, "export records as JSONL, CSV, OCSF or CEF"},
    {"query", audit_query_cmd, "list or count the records that match filters"},
    {NULL, NULL, NULL},
};

static void group_usage(FILE *f)
{
    fputs("Usage: wardctl audit COMMAND DIR [OPTIONS]\n"
          "\n"
          "Read the audit trail ward-proxy (and wardd) write in DIR: segment-*.jsonl files of\n"
          "hash-chained records and checkpoints.jsonl, signed with Ed25519 (docs/audit.md).\n"
          "\n"
          "Commands:\n",
          f);
    wctl_commands_print(f, audit_commands);
    fputs("\nRun 'wardctl audit COMMAND --help' for a command's options.\n"
          "\n"
          "Exit status:\n"
          "  0  success (verify: the trail verified)\n"
          "  1  verify: tampering found; export, query: lines that are not records\n"
          "  2  usage error\n"
          "  3  the trail, the key or the output cannot be read or written\n",
          f);
}

int wctl_audit_main(const char *prog, int argc, char **argv)
{
    return wctl_commands_run(prog, argc, argv, audit_commands, group_usage);
}

/* ---- shared --------------------------------------------------------------------------------- */

/* A progress line on stderr, only when stderr is a terminal, at most 5 times a second. */
typedef struct progress {
    const char *verb;
    bool on;
    double last;
    bool drawn;
} progress;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress_draw(uint64_t done, uint64_t total, uint64_t lines, void *data)
{
    progress *p = data;
    double t = now_s();
    if (!p->on || t - p->last < 0.2)
        return;
    p->last = t;
    p->drawn = true;
    double pct = total > 0 ? 100.0 * (double)done / (double)total : 100.0;
    fprintf(stderr, "\r%s: %5.1f%%  %.1f of %.1f MB, %" PRIu64 " records\033[K", p->verb,
            pct > 100 ? 100.0 : pct, (double)done / 1e6, (double)total / 1e6, lines);
    fflush(stderr);
}

static void progress_init(progress *p, const char *verb)
{
    p->verb = verb;
    p->on = isatty(STDERR_FILENO) == 1;
    p->last = now_s();
    p->drawn = false;
}

static void progress_clear(progress *p)
{
    if (p->drawn)
        fputs("\r\033[K", stderr);
}

static int error_exit(const char *prog, int rc, const ward_err *err)
{
    fprintf(stderr, "%s: %s\n", prog, err->msg[0] ? err->msg : ward_strerror(rc));
    return AUDIT_EXIT_UNREADABLE;
}

/* Options common to export and query. */
enum {
    OPT_HELP = 1,
    OPT_KEY,
    OPT_QUIET,
    OPT_FORMAT,
    OPT_SINCE,
    OPT_UNTIL,
    OPT_WHERE,
    OPT_OUTPUT,
    OPT_COUNT,
    OPT_COUNT_BY,
    OPT_TOP,
    OPT_LIMIT,
};

typedef struct selection {
    const char *dir;
    audit_filter *filter;
    const char *since, *until;
} selection;

/* Takes a filter option or DIR; returns 1 when it was one, 0 when not, or an exit status + 100. */
static int selection_take(selection *s, const char *prog, int id, const char *v)
{
    ward_err err;
    ward_err_clear(&err);
    switch (id) {
    case OPT_SINCE: s->since = v; return 1;
    case OPT_UNTIL: s->until = v; return 1;
    case OPT_WHERE:
        if (audit_filter_where(s->filter, v, &err) < 0)
            return 100 + wctl_usage_error(prog, "--where: %s", err.msg);
        return 1;
    case WCTL_ARG_POSITIONAL:
        if (s->dir != NULL)
            return 100 + wctl_usage_error(prog, "one DIR only ('%s', then '%s')", s->dir, v);
        s->dir = v;
        return 1;
    default: return 0;
    }
}

static int selection_finish(selection *s, const char *prog)
{
    ward_err err;
    int64_t now = audit_now_ns(), since = INT64_MIN, until = INT64_MAX;
    ward_err_clear(&err);
    if (s->dir == NULL)
        return wctl_usage_error(prog, "no audit folder DIR given");
    if (s->since != NULL && audit_time_parse(s->since, now, &since, &err) < 0)
        return wctl_usage_error(prog, "--since: %s", err.msg);
    if (s->until != NULL && audit_time_parse(s->until, now, &until, &err) < 0)
        return wctl_usage_error(prog, "--until: %s", err.msg);
    if (since != INT64_MIN && until != INT64_MAX && since >= until)
        return wctl_usage_error(prog, "--since (%s) is not before --until (%s)", s->since,
                                s->until);
    audit_filter_range(s->filter, since, until);
    return 0;
}

/* Warnings after a scan; AUDIT_EXIT_BAD when lines were not records. */
static int scan_warnings(const char *prog, const audit_scan_stats *st)
{
    if (st->torn)
        fprintf(stderr,
                "%s: note: the last segment ends in a torn line (an interrupted write); "
                "it was left out\n",
                prog);
    if (st->malformed == 0)
        return AUDIT_EXIT_OK;
    fprintf(stderr,
            "%s: %" PRIu64 " line%s not a record and left out, the first at %s; run "
            "'wardctl audit verify'\n",
            prog, st->malformed, st->malformed == 1 ? " is" : "s are", st->first_malformed);
    return AUDIT_EXIT_BAD;
}

#define SELECTION_HELP                                                                             \
    "  --since T           only records at or after T\n"                                           \
    "  --until T           only records before T\n"                                                \
    "                      T is an RFC 3339 time (2026-11-26T02:03:14Z, with a fraction or an\n"   \
    "                      offset such as +01:00, or a date alone: 2026-11-26 = midnight UTC),\n"  \
    "                      \"now\", or a time back from now: 90s, 15m, 1h, 1h30m, 7d\n"            \
    "  -w, --where KEY=VALUE  only records whose KEY is VALUE (repeatable); KEY!=VALUE\n"          \
    "                      excludes; VALUE* matches a prefix; an empty VALUE matches null.\n"      \
    "                      Several values of one KEY are alternatives (OR), different KEYs\n"      \
    "                      must all match (AND).\n"                                                \
    "                      KEYs: seq ts id node direction decision policy rule reason audit\n"     \
    "                      dry_run.decision dry_run.policy dry_run.rule source.principal\n"        \
    "                      source.ip source.port destination.service destination.principal\n"      \
    "                      destination.port request.method request.host request.path\n"            \
    "                      request.protocol response.status bundle trace_id latency_ns\n"          \
    "                      peer_cert_sha256 gap event hash\n"

#define AUDIT_EXIT_HELP                                                                            \
    "EXIT STATUS\n"                                                                                \
    "  0  success\n"                                                                               \
    "  1  some lines are not records (left out; the first is named on stderr)\n"                   \
    "  2  usage error\n"                                                                           \
    "  3  the trail cannot be read, or the output cannot be written\n"

/* ---- verify -------------------------------------------------------------------------------------
 */

static const char verify_help[] =
    "NAME\n"
    "  wardctl audit verify - prove an audit trail was not altered\n"
    "\n"
    "SYNOPSIS\n"
    "  wardctl audit verify DIR [--key PUB] [--quiet]\n"
    "\n"
    "DESCRIPTION\n"
    "  Reads every segment of DIR in seq order and checks, as docs/audit.md specifies:\n"
    "  each record's hash over its bytes, each prev against the record before (through\n"
    "  every segment), contiguous seq numbers, no missing segment, every checkpoint's\n"
    "  Ed25519 signature and key id, that each checkpoint's head is the hash of the\n"
    "  record it names, and that the trail reaches the last checkpoint's seq.\n"
    "\n"
    "  The first bad record is named with its file, line and seq, and the kind of\n"
    "  tampering:\n"
    "    modified           a record's bytes, or its link to the record before, changed\n"
    "    deleted            records are missing inside a segment (seq jumps forward)\n"
    "    reordered          seq goes backward or repeats, or comes before a missing one\n"
    "                       that appears later\n"
    "    truncated          a segment is missing, or the trail ends below a checkpoint\n"
    "    forged checkpoint  a checkpoint's signature or key is wrong, or its signed head\n"
    "                       is not the hash of its record (records rewritten, re-chained)\n"
    "  Checking the chain stops at the first bad record; every checkpoint is checked.\n"
    "  A torn last line of the active segment (a crash in the middle of a write, cut by\n"
    "  the writer when it reopens) is reported as a note, not as tampering.\n"
    "\n"
    "  Without --key, DIR/checkpoint.pub is used and the output says so: a key kept\n"
    "  beside the trail only proves the trail consistent with itself. An auditor passes\n"
    "  the public key obtained independently.\n"
    "\n"
    "OPTIONS\n"
    "  -k, --key PUB   the checkpoints' Ed25519 public key (PEM, as checkpoint.pub)\n"
    "  -q, --quiet     print nothing; only the exit status tells\n"
    "  -h, --help      show this help\n"
    "\n"
    "OUTPUT\n"
    "  verified: N records (seq A..B) in S segments, C checkpoints\n"
    "or, for each finding (the first bad record first):\n"
    "  KIND: FILE:LINE: seq N: what is wrong\n"
    "then the key used, notes, and the time taken (records/s). A progress line is drawn\n"
    "on stderr while reading when stderr is a terminal.\n"
    "\n"
    "EXIT STATUS\n"
    "  0  the trail verified\n"
    "  1  tampering found\n"
    "  2  usage error\n"
    "  3  DIR, a segment, checkpoints.jsonl or the key cannot be read\n"
    "\n"
    "EXAMPLES\n"
    "  wardctl audit verify /var/lib/ward/audit --key /secure/payments-audit.pub\n";

static const wctl_opt verify_opts[] = {
    {"help", 'h', false, OPT_HELP},
    {"key", 'k', true, OPT_KEY},
    {"quiet", 'q', false, OPT_QUIET},
    {NULL, 0, false, 0},
};

static void print_finding(const audit_finding *f)
{
    if (f->line > 0)
        printf("%s: %s:%" PRIu64 ": seq %" PRIu64 ": %s\n", audit_finding_kind_name(f->kind),
               f->file, f->line, f->seq, f->detail);
    else
        printf("%s: %s: seq %" PRIu64 ": %s\n", audit_finding_kind_name(f->kind), f->file, f->seq,
               f->detail);
}

static int audit_verify_cmd(const char *prog, int argc, char **argv)
{
    audit_verify_options o = {0};
    audit_verify_report *rep = NULL;
    bool quiet = false;
    wctl_args a;
    const char *v;
    int id, status;
    progress pr;
    ward_err err;
    ward_err_clear(&err);
    wctl_args_init(&a, prog, argc, argv, verify_opts);
    while ((id = wctl_args_next(&a, &v)) != WCTL_ARG_END) {
        switch (id) {
        case WCTL_ARG_ERROR: return AUDIT_EXIT_USAGE;
        case OPT_HELP: fputs(verify_help, stdout); return AUDIT_EXIT_OK;
        case OPT_KEY: o.key_file = v; break;
        case OPT_QUIET: quiet = true; break;
        default:
            if (o.dir != NULL)
                return wctl_usage_error(prog, "one DIR only ('%s', then '%s')", o.dir, v);
            o.dir = v;
        }
    }
    if (o.dir == NULL)
        return wctl_usage_error(prog, "no audit folder DIR given");
    rep = calloc(1, sizeof(*rep));
    if (rep == NULL)
        return AUDIT_EXIT_UNREADABLE;
    progress_init(&pr, "verifying");
    pr.on = pr.on && !quiet;
    o.progress = progress_draw;
    o.data = &pr;
    int rc = audit_verify(&o, rep, &err);
    progress_clear(&pr);
    if (rc < 0) {
        status = quiet ? AUDIT_EXIT_UNREADABLE : error_exit(prog, rc, &err);
        goto done;
    }
    status = rep->n_findings == 0 ? AUDIT_EXIT_OK : AUDIT_EXIT_BAD;
    if (quiet)
        goto done;
    if (rep->n_findings == 0) {
        printf("verified: %" PRIu64 " record%s", rep->records, rep->records == 1 ? "" : "s");
        if (rep->records > 0)
            printf(" (seq %" PRIu64 "..%" PRIu64 "%s)", rep->first_seq, rep->last_seq,
                   rep->gaps > 0 ? ", with gap records" : "");
        printf(" in %" PRIu64 " segment%s, %" PRIu64 " checkpoint%s\n", rep->segments,
               rep->segments == 1 ? "" : "s", rep->checkpoints, rep->checkpoints == 1 ? "" : "s");
        uint64_t after = rep->last_seq - rep->checkpoint_seq;
        if (rep->checkpoint_seq > 0 && after == 0)
            printf("last checkpoint: seq %" PRIu64 " (it covers every record)\n",
                   rep->checkpoint_seq);
        else if (rep->checkpoint_seq > 0)
            printf("last checkpoint: seq %" PRIu64 " (%" PRIu64
                   " record%s after it, not yet covered by a checkpoint)\n",
                   rep->checkpoint_seq, after, after == 1 ? "" : "s");
    } else {
        const audit_finding *first = &rep->findings[0];
        char where[96];
        if (first->line > 0)
            snprintf(where, sizeof(where), "%s:%" PRIu64, first->file, first->line);
        else
            snprintf(where, sizeof(where), "%s", first->file);
        printf("TAMPERED: the first bad record is seq %" PRIu64 " (%s): %s\n", first->seq, where,
               audit_finding_kind_name(first->kind));
        size_t kept = rep->n_findings < AUDIT_VERIFY_MAX_FINDINGS ? rep->n_findings
                                                                  : AUDIT_VERIFY_MAX_FINDINGS;
        for (size_t i = 0; i < kept; i++)
            print_finding(&rep->findings[i]);
        if (rep->n_findings > kept)
            printf("... and %zu more findings\n", rep->n_findings - kept);
        printf("checked: %" PRIu64 " record%s in %" PRIu64 " segment%s, %" PRIu64 " checkpoint%s\n",
               rep->records, rep->records == 1 ? "" : "s", rep->segments,
               rep->segments == 1 ? "" : "s", rep->checkpoints, rep->checkpoints == 1 ? "" : "s");
    }
    if (rep->have_key && rep->key_from_dir)
        printf("key: %s/checkpoint.pub (id %s), kept beside the trail: this proves the trail "
               "consistent with itself only; an auditor passes the public key obtained "
               "independently with --key\n",
               o.dir, rep->key_id);
    else if (rep->have_key)
        printf("key: %s (id %s)\n", o.key_file, rep->key_id);
    else
        printf("key: none (no checkpoints to check)\n");
    for (size_t i = 0; i < rep->n_notes; i++)
        printf("note: %s\n", rep->notes[i]);
    printf("time: %.3f s (%.0f records/s, %.1f MB/s); CPU %.3f s (%.0f records/s)\n", rep->seconds,
           rep->seconds > 0 ? (double)rep->records / rep->seconds : 0.0,
           rep->seconds > 0 ? (double)rep->bytes / rep->seconds / 1e6 : 0.0, rep->cpu_seconds,
           rep->cpu_seconds > 0 ? (double)rep->records / rep->cpu_seconds : 0.0);
    fflush(stdout);
done:
    free(rep);
    return status;
}

/* ---- export -------------------------------------------------------------------------------------
 */

static const char export_help[] =
    "NAME\n"
    "  wardctl audit export - export audit records for a SIEM or a spreadsheet\n"
    "\n"
    "SYNOPSIS\n"
    "  wardctl audit export DIR [--format jsonl|csv|ocsf|cef] [--since T] [--until T]\n"
    "                       [--where KEY=VALUE]... [--output FILE]\n"
    "\n"
    "DESCRIPTION\n"
    "  Streams the records of DIR, in seq order, that match every filter, in constant\n"
    "  memory; a progress line is drawn on stderr when stderr is a terminal. Export does\n"
    "  not check the hash chain: run 'wardctl audit verify' for that.\n"
    "\n"
    "  Formats (docs/audit.md, \"Export formats\", gives every field):\n"
    "    jsonl  the record lines exactly as stored (default)\n"
    "    csv    RFC 4180: a header row, then one row per record, CRLF line ends, fields\n"
    "           with a comma, quote, CR or LF quoted (quotes doubled). Columns:\n"
    "           seq ts id node direction decision policy rule reason audit\n"
    "           dry_run.decision dry_run.policy dry_run.rule source.principal source.ip\n"
    "           source.port destination.service destination.principal destination.port\n"
    "           request.method request.host request.path request.protocol response.status\n"
    "           bundle trace_id latency_ns peer_cert_sha256 truncated gap event hash\n"
    "           A text value beginning with = + - @ TAB or CR gets a leading ' so that a\n"
    "           spreadsheet shows it instead of running it as a formula.\n"
    "    ocsf   OCSF " AUDIT_OCSF_VERSION " API Activity events (class_uid 6003), one JSON object\n"
    "           per line; wardd's identity events as Authentication (3002) or Account\n"
    "           Change (3001) events; gap records and CA rotation events (ca.*) have no\n"
    "           OCSF form and are left out (counted on stderr)\n"
    "    cef    ArcSight CEF:0|Ward|ward-proxy|" AUDIT_PRODUCT_VERSION
    "|SIGNATURE|NAME|SEVERITY|EXTENSIONS\n"
    "           lines; header fields escape \\ and |, extension values \\ and = and write\n"
    "           CR and LF as \\r and \\n\n"
    "\n"
    "OPTIONS\n"
    "  -f, --format F      jsonl, csv, ocsf or cef\n" SELECTION_HELP
    "  -o, --output FILE   write to FILE (created 0600) instead of standard output\n"
    "  -h, --help          show this help\n"
    "\n" AUDIT_EXIT_HELP "\n"
    "EXAMPLES\n"
    "  wardctl audit export /var/lib/ward/audit --format csv --since 24h --where decision=deny\n"
    "  wardctl audit export DIR --format ocsf --since 2026-11-26 --until 2026-11-27 -o day.json\n";

static const wctl_opt export_opts[] = {
    {"help", 'h', false, OPT_HELP},
    {"format", 'f', true, OPT_FORMAT},
    {"since", 0, true, OPT_SINCE},
    {"until", 0, true, OPT_UNTIL},
    {"where", 'w', true, OPT_WHERE},
    {"output", 'o', true, OPT_OUTPUT},
    {NULL, 0, false, 0},
};

static int audit_export_cmd(const char *prog, int argc, char **argv)
{
    selection sel = {0};
    audit_format fmt = AUDIT_FORMAT_JSONL;
    const char *output = NULL;
    FILE *out = stdout;
    wctl_args a;
    const char *v;
    int id, status = AUDIT_EXIT_USAGE, t;
    progress pr;
    ward_err err;
    static char obuf[1 << 16];
    ward_err_clear(&err);
    if (audit_filter_new(&sel.filter) < 0)
        return AUDIT_EXIT_UNREADABLE;
    wctl_args_init(&a, prog, argc, argv, export_opts);
    while ((id = wctl_args_next(&a, &v)) != WCTL_ARG_END) {
        if (id == WCTL_ARG_ERROR)
            goto done;
        if ((t = selection_take(&sel, prog, id, v)) >= 100) {
            status = t - 100;
            goto done;
        }
        if (t == 1)
            continue;
        switch (id) {
        case OPT_HELP:
            fputs(export_help, stdout);
            status = AUDIT_EXIT_OK;
            goto done;
        case OPT_FORMAT:
            if (audit_format_parse(v, &fmt) < 0) {
                status =
                    wctl_usage_error(prog, "--format must be jsonl, csv, ocsf or cef, not '%s'", v);
                goto done;
            }
            break;
        case OPT_OUTPUT: output = v; break;
        }
    }
    if ((status = selection_finish(&sel, prog)) != 0)
        goto done;
    if (output != NULL && strcmp(output, "-") != 0) {
        /* records name who accessed what: the export is as private as the trail */
        int fd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        out = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (out == NULL) {
            if (fd >= 0)
                close(fd);
            fprintf(stderr, "%s: %s: %m\n", prog, output);
            status = AUDIT_EXIT_UNREADABLE;
            goto done;
        }
    } else {
        setvbuf(stdout, obuf, _IOFBF, sizeof(obuf));
    }
    progress_init(&pr, "exporting");
    audit_scan_options o = {sel.dir, sel.filter, progress_draw, &pr, false};
    audit_export_stats st;
    int rc = audit_export(&o, fmt, out, &st, &err);
    progress_clear(&pr);
    if (out != stdout && fclose(out) != 0 && rc == 0) {
        ward_err_set(&err, "%s: %m", output);
        rc = WARD_EIO;
    }
    if (rc < 0) {
        status = error_exit(prog, rc, &err);
        goto done;
    }
    status = scan_warnings(prog, &st.scan);
    if (st.left_out > 0)
        fprintf(stderr,
                "%s: %" PRIu64 " gap record%s or CA rotation event%s left out: they have no "
                "%s form\n",
                prog, st.left_out, st.left_out == 1 ? "" : "s", st.left_out == 1 ? "" : "s",
                audit_format_name(fmt));
    if (pr.on)
        fprintf(stderr, "exported %" PRIu64 " of %" PRIu64 " records in %.2f s\n", st.exported,
                st.scan.lines, st.scan.seconds);
done:
    audit_filter_free(sel.filter);
    return status;
}

/* ---- query --------------------------------------------------------------------------------------
 */

static const char query_help[] =
    "NAME\n"
    "  wardctl audit query - list or count the audit records that match filters\n"
    "\n"
    "SYNOPSIS\n"
    "  wardctl audit query DIR [--since T] [--until T] [--where KEY=VALUE]...\n"
    "                      [--count | --count-by KEY [--top N]] [--limit N]\n"
    "\n"
    "DESCRIPTION\n"
    "  Without --count or --count-by, prints one line per matching record:\n"
    "    TS DECISION DIRECTION SOURCE -> SERVICE METHOD HOST PATH STATUS POLICY#RULE seq=N\n"
    "  (SOURCE is the peer's SPIFFE ID, or its IP without one; control characters are\n"
    "  shown escaped); an identity event of wardd as\n"
    "    TS EVENT OUTCOME SUBJECT <- SOURCE STATUS ERROR [serial=S] seq=N\n"
    "  (SOURCE: the client's SPIFFE ID, uid:N on the admin socket, or its IP).\n"
    "  --count prints the number of matching records; --count-by KEY\n"
    "  prints \"COUNT VALUE\" lines, most frequent first, with (none) for null.\n"
    "\n"
    "OPTIONS\n" SELECTION_HELP "  -c, --count         print how many records match\n"
    "  -b, --count-by KEY  count the matching records per value of KEY\n"
    "  -n, --top N         with --count-by: only the N most frequent values\n"
    "  -l, --limit N       list at most N records\n"
    "  -h, --help          show this help\n"
    "\n" AUDIT_EXIT_HELP "\n"
    "EXAMPLES\n"
    "  denies per caller over the last hour:\n"
    "    wardctl audit query DIR --since 1h --where decision=deny --count-by source.principal\n"
    "  what one workload was refused today:\n"
    "    wardctl audit query DIR --since 2026-11-26 --where decision=deny \\\n"
    "        --where source.principal=spiffe://example.org/ns/shop/sa/checkout\n"
    "  wardd's refusals per error code:\n"
    "    wardctl audit query /var/lib/wardd/audit --where outcome=failure --count-by error\n";

static const wctl_opt query_opts[] = {
    {"help", 'h', false, OPT_HELP},
    {"since", 0, true, OPT_SINCE},
    {"until", 0, true, OPT_UNTIL},
    {"where", 'w', true, OPT_WHERE},
    {"count", 'c', false, OPT_COUNT},
    {"count-by", 'b', true, OPT_COUNT_BY},
    {"top", 'n', true, OPT_TOP},
    {"limit", 'l', true, OPT_LIMIT},
    {NULL, 0, false, 0},
};

typedef struct lister {
    ward_buf line, tmp;
    uint64_t left; /* UINT64_MAX: no --limit */
    audit_counter *counter;
    uint64_t count;
    int mode; /* 0 list, 1 count, 2 count-by */
} lister;

/* s for a terminal: control bytes escaped. */
static int put_safe(ward_buf *out, const char *s, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            WARD_TRY(ward_buf_puts(out, "\\n"));
        else if (c == '\r')
            WARD_TRY(ward_buf_puts(out, "\\r"));
        else if (c < 0x20 || c == 0x7F)
            WARD_TRY(ward_buf_printf(out, "\\x%02x", c));
        else
            WARD_TRY(ward_buf_putc(out, (char)c));
    }
fail:
    return rc;
}

static int put_field(lister *l, const audit_value *v, const char *none)
{
    if (v->type == AUDIT_V_ABSENT || v->type == AUDIT_V_NULL)
        return ward_buf_puts(&l->line, none);
    ward_buf_reset(&l->tmp);
    int rc = audit_value_text(v, &l->tmp);
    if (rc == 0)
        rc = put_safe(&l->line, l->tmp.len ? l->tmp.ptr : "", l->tmp.len);
    return rc;
}

static int list_one(const audit_view *v, void *data)
{
    lister *l = data;
    const audit_value *f = v->f;
    int rc = 0;
    if (l->mode == 1) {
        l->count++;
        return 0;
    }
    if (l->mode == 2)
        return audit_counter_add(l->counter, v);
    if (l->left == 0)
        return WARD_ELIMIT;
    l->left--;
    ward_buf_reset(&l->line);
    WARD_TRY(put_field(l, &f[AUDIT_A_TS], "-"));
    if (f[AUDIT_A_GAP].type != AUDIT_V_ABSENT) {
        WARD_TRY(ward_buf_puts(&l->line, " gap: "));
        WARD_TRY(put_field(l, &f[AUDIT_A_GAP], "?"));
        WARD_TRY(ward_buf_puts(&l->line, " record(s) dropped"));
    } else if (f[AUDIT_A_EVENT].type == AUDIT_V_STRING) {
        /* an identity event of wardd: ts event outcome subject <- source status error */
        WARD_TRY(ward_buf_putc(&l->line, ' '));
        WARD_TRY(put_field(l, &f[AUDIT_A_EVENT], "-"));
        WARD_TRY(ward_buf_putc(&l->line, ' '));
        WARD_TRY(put_field(l, &f[AUDIT_A_OUTCOME], "-"));
        WARD_TRY(ward_buf_putc(&l->line, ' '));
        WARD_TRY(put_field(l, &f[AUDIT_A_SUBJECT], "-"));
        WARD_TRY(ward_buf_puts(&l->line, " <- "));
        if (f[AUDIT_A_SOURCE_PRINCIPAL].type == AUDIT_V_STRING) {
            WARD_TRY(put_field(l, &f[AUDIT_A_SOURCE_PRINCIPAL], "-"));
        } else if (f[AUDIT_A_SOURCE_UID].type == AUDIT_V_NUMBER) {
            WARD_TRY(ward_buf_puts(&l->line, "uid:"));
            WARD_TRY(put_field(l, &f[AUDIT_A_SOURCE_UID], "-"));
        } else {
            WARD_TRY(put_field(l, &f[AUDIT_A_SOURCE_IP], "-"));
        }
        WARD_TRY(ward_buf_putc(&l->line, ' '));
        WARD_TRY(put_field(l, &f[AUDIT_A_RESPONSE_STATUS], "-"));
        WARD_TRY(ward_buf_putc(&l->line, ' '));
        WARD_TRY(put_field(l, &f[AUDIT_A_ERROR], "-"));
        if (f[AUDIT_A_SERIAL].type == AUDIT_V_STRING) {
            WARD_TRY(ward_buf_puts(&l->line, " serial="));
            WARD_TRY(put_field(l, &f[AUDIT_A_SERIAL], ""));
        }
    } else {
        WARD_TRY(ward_buf_putc(&l->line, ' '));
        WARD_TRY(put_field(l, &f[AUDIT_A_DECISION], "-"));
        WARD_TRY(ward_buf_putc(&l->line, ' '));
        WARD_TRY(put_field(l, &f[AUDIT_A_DIRECTION], "-"));
        WARD_TRY(ward_buf_putc(&l->line, ' '));
        const audit_value *src = &f[AUDIT_A_SOURCE_PRINCIPAL];
        WARD_TRY(put_field(l, src->type == AUDIT_V_STRING ? src : &f[AUDIT_A_SOURCE_IP], "-"));
        WARD_TRY(ward_buf_puts(&l->line, " -> "));
        WARD_TRY(put_field(l, &f[AUDIT_A_DESTINATION_SERVICE], "-"));
        WARD_TRY(ward_buf_putc(&l->line, ' '));
        WARD_TRY(put_field(l, &f[AUDIT_A_REQUEST_METHOD], "-"));
        WARD_TRY(ward_buf_putc(&l->line, ' '));
        WARD_TRY(put_field(l, &f[AUDIT_A_REQUEST_HOST], "-"));
        WARD_TRY(ward_buf_putc(&l->line, ' '));
        WARD_TRY(put_field(l, &f[AUDIT_A_REQUEST_PATH], "-"));
        WARD_TRY(ward_buf_putc(&l->line, ' '));
        WARD_TRY(put_field(l, &f[AUDIT_A_RESPONSE_STATUS], "-"));
        WARD_TRY(ward_buf_putc(&l->line, ' '));
        WARD_TRY(put_field(l, &f[AUDIT_A_POLICY], "default"));
        if (f[AUDIT_A_RULE].type == AUDIT_V_NUMBER) {
            WARD_TRY(ward_buf_putc(&l->line, '#'));
            WARD_TRY(put_field(l, &f[AUDIT_A_RULE], ""));
        }
    }
    WARD_TRY(ward_buf_puts(&l->line, " seq="));
    WARD_TRY(put_field(l, &f[AUDIT_A_SEQ], "?"));
    WARD_TRY(ward_buf_putc(&l->line, '\n'));
    if (fwrite(l->line.ptr, 1, l->line.len, stdout) != l->line.len)
        return WARD_EIO;
fail:
    return rc;
}

static int parse_count(const char *prog, const char *opt, const char *v, uint64_t *out)
{
    if (ward_parse_u64(v, strlen(v), UINT64_MAX - 1, out) < 0)
        return wctl_usage_error(prog, "%s needs a whole number, not '%s'", opt, v);
    return 0;
}

static int audit_query_cmd(const char *prog, int argc, char **argv)
{
    selection sel = {0};
    lister l = {.left = UINT64_MAX};
    const char *count_by = NULL;
    uint64_t top = UINT64_MAX;
    wctl_args a;
    const char *v;
    int id, status = AUDIT_EXIT_USAGE, t;
    progress pr;
    ward_err err;
    static char obuf[1 << 16];
    ward_err_clear(&err);
    ward_buf_init(&l.line);
    ward_buf_init(&l.tmp);
    if (audit_filter_new(&sel.filter) < 0)
        return AUDIT_EXIT_UNREADABLE;
    wctl_args_init(&a, prog, argc, argv, query_opts);
    while ((id = wctl_args_next(&a, &v)) != WCTL_ARG_END) {
        if (id == WCTL_ARG_ERROR)
            goto done;
        if ((t = selection_take(&sel, prog, id, v)) >= 100) {
            status = t - 100;
            goto done;
        }
        if (t == 1)
            continue;
        switch (id) {
        case OPT_HELP:
            fputs(query_help, stdout);
            status = AUDIT_EXIT_OK;
            goto done;
        case OPT_COUNT: l.mode = 1; break;
        case OPT_COUNT_BY: count_by = v; break;
        case OPT_TOP:
            if ((status = parse_count(prog, "--top", v, &top)) != 0)
                goto done;
            break;
        case OPT_LIMIT:
            if ((status = parse_count(prog, "--limit", v, &l.left)) != 0)
                goto done;
            break;
        }
    }
    status = AUDIT_EXIT_USAGE;
    if (l.mode == 1 && count_by != NULL) {
        wctl_usage_error(prog, "--count and --count-by exclude each other");
        goto done;
    }
    if (top != UINT64_MAX && count_by == NULL) {
        wctl_usage_error(prog, "--top goes with --count-by");
        goto done;
    }
    if (count_by != NULL) {
        int attr = audit_attr_lookup(count_by, strlen(count_by));
        if (attr < 0) {
            wctl_usage_error(prog, "--count-by: unknown key '%s' (see --help for the keys)",
                             count_by);
            goto done;
        }
        if (audit_counter_new((audit_attr)attr, &l.counter) < 0) {
            status = AUDIT_EXIT_UNREADABLE;
            goto done;
        }
        l.mode = 2;
    }
    if ((status = selection_finish(&sel, prog)) != 0)
        goto done;
    setvbuf(stdout, obuf, isatty(STDOUT_FILENO) ? _IOLBF : _IOFBF, sizeof(obuf));
    progress_init(&pr, "reading");
    audit_scan_options o = {sel.dir, sel.filter, progress_draw, &pr, false};
    audit_scan_stats st;
    int rc = audit_scan(&o, list_one, &l, &st, &err);
    progress_clear(&pr);
    if (rc == WARD_ELIMIT && l.mode == 0)
        rc = 0; /* --limit reached */
    if (rc < 0) {
        status = error_exit(prog, rc, &err);
        goto done;
    }
    if (l.mode == 1) {
        printf("%" PRIu64 "\n", l.count);
    } else if (l.mode == 2) {
        const audit_count *c;
        size_t n;
        if (audit_counter_sorted(l.counter, &c, &n) < 0) {
            status = AUDIT_EXIT_UNREADABLE;
            goto done;
        }
        int width = n > 0 ? snprintf(NULL, 0, "%" PRIu64, c[0].n) : 1;
        for (size_t i = 0; i < n && i < top; i++) {
            ward_buf_reset(&l.line);
            if (c[i].value == NULL)
                ward_buf_puts(&l.line, "(none)");
            else
                put_safe(&l.line, c[i].value, c[i].len);
            printf("%*" PRIu64 " %s\n", width, c[i].n, l.line.len ? l.line.ptr : "");
        }
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "%s: writing the output: %m\n", prog);
        status = AUDIT_EXIT_UNREADABLE;
        goto done;
    }
    status = scan_warnings(prog, &st);
done:
    audit_counter_free(l.counter);
    ward_buf_dispose(&l.line);
    ward_buf_dispose(&l.tmp);
    audit_filter_free(sel.filter);
    return status;
}
