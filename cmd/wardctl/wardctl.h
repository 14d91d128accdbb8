/* wardctl.h - private interfaces shared by the files of the wardctl command */
#ifndef WARDCTL_H
#define WARDCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "authz/authz.h"
#include "common/ward.h"
#include "policy/policy.h"

/* Exit statuses, the same for every command (documented in every --help). */
enum {
    WCTL_EXIT_OK = 0,      /* success */
    WCTL_EXIT_FAIL = 1,    /* invalid policies, failed tests */
    WCTL_EXIT_USAGE = 2,   /* bad command line, unreadable or malformed input */
};

#define WCTL_EXIT_CODES_HELP                                                                       \
    "Exit status:\n"                                                                               \
    "  0  success\n"                                                                               \
    "  1  invalid policies, or a test case failed\n"                                               \
    "  2  usage error, or unreadable / malformed input\n"

/* ---- command tables (main.c, policy_cmd.c) ---------------------------------- */

/* A command or group entry point: argv[0] is the command's own name. Returns
 * an exit status. `prog` is the command path for messages ("wardctl policy"). */
typedef int (*wctl_run_fn)(const char *prog, int argc, char **argv);

typedef struct wctl_command {
    const char *name;
    wctl_run_fn run;
    const char *summary;
} wctl_command;

int wctl_policy_main(const char *prog, int argc, char **argv);
int wctl_identity_main(const char *prog, int argc, char **argv); /* identity_cmd.c */
int wctl_svid_main(const char *prog, int argc, char **argv);     /* svid_cmd.c */
int wctl_audit_main(const char *prog, int argc, char **argv);    /* audit_cmd.c */

int wctl_policy_check(const char *prog, int argc, char **argv);
int wctl_policy_compile(const char *prog, int argc, char **argv);
int wctl_policy_eval(const char *prog, int argc, char **argv);
int wctl_policy_explain(const char *prog, int argc, char **argv);
int wctl_policy_test(const char *prog, int argc, char **argv);
int wctl_policy_bench(const char *prog, int argc, char **argv);

/* Prints "usage" of a command table; used by the group dispatchers. */
void wctl_commands_print(FILE *f, const wctl_command *cmds);
const wctl_command *wctl_commands_find(const wctl_command *cmds, const char *name);
/* Runs the command argv[1] of cmds (with "PROG NAME" as its prog), or prints
 * usage for -h/--help/help and a usage error for anything else. */
int wctl_commands_run(const char *prog, int argc, char **argv, const wctl_command *cmds,
                      void (*usage)(FILE *));

/* ---- argument parsing (args.c) ----------------------------------------------- */

typedef struct wctl_opt {
    const char *name; /* long name without "--" */
    char short_name;  /* 0 = none */
    bool has_arg;
    int id; /* > 0 */
} wctl_opt;

enum {
    WCTL_ARG_END = 0,         /* no more arguments */
    WCTL_ARG_POSITIONAL = -1, /* *value is a positional argument */
    WCTL_ARG_ERROR = -2,      /* a usage error, already printed on stderr */
};

typedef struct wctl_args {
    const char *prog;
    int argc;
    char **argv;
    int i;          /* next argv index */
    bool only_pos;  /* after "--" */
    const wctl_opt *opts; /* terminated by an entry with name == NULL */
} wctl_args;

void wctl_args_init(wctl_args *a, const char *prog, int argc, char **argv, const wctl_opt *opts);
/* Returns an option id (with *value set when it takes one), WCTL_ARG_POSITIONAL,
 * WCTL_ARG_END or WCTL_ARG_ERROR. "-" alone is a positional argument. */
int wctl_args_next(wctl_args *a, const char **value);

/* Prints "PROG: message" and a hint to use --help on stderr; returns WCTL_EXIT_USAGE. */
int wctl_usage_error(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A list of strings collected from the command line (pointers into argv). */
typedef struct wctl_strs {
    const char **v;
    size_t n, cap;
} wctl_strs;

int wctl_strs_push(wctl_strs *s, const char *str);
void wctl_strs_dispose(wctl_strs *s);

/* "allow" / "deny" -> *allow. Returns 0 or WARD_EINVAL. */
int wctl_parse_default(const char *s, bool *allow);

/* ---- policies and engines (engine.c) ------------------------------------------ */

/* Loads policy paths; prints every diagnostic on stderr. Returns 0, or
 * WARD_EPOLICY (diagnostics printed) or another error (printed). */
int wctl_policies_load(const wctl_strs *paths, policy_set **out);

typedef struct wctl_timing {
    double compile_ms; /* authz_bundle_new */
    double engine_ms;  /* authz_engine_new */
    long long heap_bytes; /* heap growth while compiling and loading the engine, -1 unknown */
} wctl_timing;

/* Compiles `set` into a bundle and an engine; prints errors on stderr. timing may be NULL. */
int wctl_engine_build(const policy_set *set, bool default_allow, authz_engine **out,
                      wctl_timing *timing);

double wctl_now_ms(void);

/* ---- JSON Lines input (input.c) ---------------------------------------------- */

/* Reads records: one JSON value per line, blank lines skipped. A line that
 * holds only "{" starts a pretty-printed object, which goes on until its
 * brackets close or a blank line comes. */
typedef struct wctl_reader {
    FILE *f;
    bool own;
    const char *name;
    char *line;
    size_t line_cap;
    long lineno;
    ward_buf rec;
} wctl_reader;

#define WCTL_RECORD_MAX ((size_t)1 << 20)

/* path NULL or "-" reads stdin. */
int wctl_reader_open(wctl_reader *r, const char *path, ward_err *err);
/* 1: a record (*rec, *len, *first_line set); 0: end of input; <0: I/O error.
 * A record larger than WCTL_RECORD_MAX comes back with *too_large set. */
int wctl_reader_next(wctl_reader *r, const char **rec, size_t *len, long *first_line,
                     bool *too_large, ward_err *err);
void wctl_reader_close(wctl_reader *r);

/* ---- JSON helpers (json.c) --------------------------------------------------- */

/* Appends s as a JSON string literal (quotes included). */
int wctl_json_str(ward_buf *out, const char *s, size_t len);
/* Converts a YAML node to JSON: quoted scalars are strings; unquoted null/~/
 * empty become null, true/false booleans, JSON-shaped numbers numbers. */
int wctl_node_to_json(const ward_node *n, ward_buf *out);
/* The unquoted-scalar classification used above. */
bool wctl_node_is_null(const ward_node *n);
int wctl_node_bool(const ward_node *n, bool *out);      /* 0 or WARD_EINVAL */
int wctl_node_int(const ward_node *n, long long *out);  /* 0 or WARD_EINVAL */

/* ---- decisions ---------------------------------------------------------------- */

/* Human-readable explain output of one decision, each line prefixed by
 * indent (explain.c): the label line, every policy considered with each rule
 * matched or the field that failed, then the decision. */
int wctl_explain_print(FILE *f, const authz_decision *d, const char *label, const char *indent);
/* "route: ns/name http[N] NAME -> service W%, ..." when the decision has a
 * route (explain.c); after an explain trace that names a Route, says so when
 * no entry matched. */
void wctl_route_print(FILE *f, const authz_decision *d, const char *indent);
/* "METHOD PATH from PRINCIPAL|IP to SERVICE", bounded to size. */
void wctl_request_summary(const authz_request *req, char *buf, size_t size);

#endif
