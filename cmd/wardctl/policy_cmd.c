/* policy_cmd.c - the `wardctl policy` group: dispatch, plus the check and compile commands */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/wardctl/wardctl.h"

static const wctl_command policy_commands[] = {
    {"check", wctl_policy_check, "validate policy files; print file:line:col errors"},
    {"compile", wctl_policy_compile, "print the Lua the policies compile to"},
    {"eval", wctl_policy_eval, "decide requests (JSON or JSON Lines) and print decisions"},
    {"explain", wctl_policy_explain, "decide requests and explain each decision in words"},
    {"test", wctl_policy_test, "run policy test files (cases with expected decisions)"},
    {"bench", wctl_policy_bench, "measure decisions per second and latency"},
    {NULL, NULL, NULL},
};

static void group_usage(FILE *f)
{
    fputs("Usage: wardctl policy COMMAND [ARGS...]\n"
          "\n"
          "Work with Ward policies (apiVersion ward/v1): AuthorizationPolicy and Route.\n"
          "PATH arguments are policy files (*.yaml, *.yml, *.json) or folders, read\n"
          "recursively in name order; folders named \"tests\" are skipped.\n"
          "\n"
          "Commands:\n",
          f);
    wctl_commands_print(f, policy_commands);
    fputs("\nRun 'wardctl policy COMMAND --help' for a command's options.\n\n" WCTL_EXIT_CODES_HELP,
          f);
}

int wctl_policy_main(const char *prog, int argc, char **argv)
{
    return wctl_commands_run(prog, argc, argv, policy_commands, group_usage);
}

/* ---- check ------------------------------------------------------------------ */

static const char check_help[] =
    "Usage: wardctl policy check PATH...\n"
    "\n"
    "Validate policies (AuthorizationPolicy and Route documents): load every file,\n"
    "check every field, compile the set and load it into a sandboxed engine. Each\n"
    "problem is printed on stderr as\n"
    "  file:line:col: field.path: message\n"
    "Warnings (a Route entry that an earlier entry shadows, so it can never\n"
    "match; a rewrite that doubles a slash ...) are printed on stderr as\n"
    "  file:line:col: warning: field.path: message\n"
    "and do not fail the check. On success prints \"ok: N policies in M files\"\n"
    "(\"ok: N policies and R routes in M files\" when there are Routes, with\n"
    "\", W warnings\" when there are any).\n"
    "\n"
    "Options:\n"
    "  -h, --help  show this help\n"
    "\n" WCTL_EXIT_CODES_HELP;

enum { OPT_HELP = 1, OPT_POLICY, OPT_SERVICE, OPT_DEFAULT };

static const wctl_opt check_opts[] = {
    {"help", 'h', false, OPT_HELP},
    {NULL, 0, false, 0},
};

/* The file of document i: the AuthorizationPolicies, then the Routes. */
static const char *doc_file(const policy_set *set, size_t i)
{
    size_t n = policy_set_count(set);
    return i < n ? policy_set_get(set, i)->pos.file : policy_set_route(set, i - n)->pos.file;
}

/* Files that hold at least one policy or route. */
static size_t count_files(const policy_set *set)
{
    size_t n = policy_set_count(set) + policy_set_route_count(set), files = 0;
    for (size_t i = 0; i < n; i++) {
        const char *f = doc_file(set, i);
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) {
            const char *g = doc_file(set, j);
            seen = f == g || (f != NULL && g != NULL && strcmp(f, g) == 0);
        }
        files += !seen;
    }
    return files;
}

int wctl_policy_check(const char *prog, int argc, char **argv)
{
    wctl_strs paths = {0};
    wctl_args a;
    const char *v;
    int id, status = WCTL_EXIT_FAIL;
    policy_set *set = NULL;
    authz_engine *engine = NULL;
    wctl_args_init(&a, prog, argc, argv, check_opts);
    while ((id = wctl_args_next(&a, &v)) != WCTL_ARG_END) {
        if (id == WCTL_ARG_ERROR) {
            status = WCTL_EXIT_USAGE;
            goto done;
        }
        if (id == OPT_HELP) {
            fputs(check_help, stdout);
            status = WCTL_EXIT_OK;
            goto done;
        }
        if (wctl_strs_push(&paths, v) < 0)
            goto done;
    }
    if (paths.n == 0) {
        status = wctl_usage_error(prog, "no policy PATH given");
        goto done;
    }
    if (wctl_policies_load(&paths, &set) < 0)
        goto done;
    if (wctl_engine_build(set, false, &engine, NULL) < 0)
        goto done;
    const ward_diag *warnings = policy_set_warnings(set);
    for (size_t i = 0; i < warnings->n; i++)
        fprintf(stderr, "%s\n", warnings->msgs[i]);
    size_t n = policy_set_count(set), routes = policy_set_route_count(set), files = count_files(set);
    printf("ok: %zu polic%s", n, n == 1 ? "y" : "ies");
    if (routes > 0)
        printf(" and %zu route%s", routes, routes == 1 ? "" : "s");
    printf(" in %zu file%s", files, files == 1 ? "" : "s");
    if (warnings->n > 0)
        printf(", %zu warning%s", warnings->n, warnings->n == 1 ? "" : "s");
    putchar('\n');
    status = WCTL_EXIT_OK;
done:
    if (engine != NULL)
        authz_engine_free(engine);
    if (set != NULL)
        policy_set_free(set);
    wctl_strs_dispose(&paths);
    return status;
}

/* ---- compile ---------------------------------------------------------------- */

static const char compile_help[] =
    "Usage: wardctl policy compile PATH... [--service S] [--default allow|deny]\n"
    "\n"
    "Print the Lua source the policies compile to. The output is deterministic:\n"
    "the same policies always give byte-identical Lua, with comments pointing\n"
    "back at file:line of each rule.\n"
    "\n"
    "Options:\n"
    "  -p, --policy PATH       a policy file or folder (same as a PATH argument)\n"
    "  -s, --service S         compile only the policies that select service S\n"
    "                          (Routes are always compiled: they apply to the\n"
    "                          calls a workload makes, whatever it is)\n"
    "  -d, --default allow|deny  decision when no ALLOW policy selects the\n"
    "                          service (default: deny)\n"
    "  -h, --help              show this help\n"
    "\n" WCTL_EXIT_CODES_HELP;

static const wctl_opt compile_opts[] = {
    {"help", 'h', false, OPT_HELP},
    {"policy", 'p', true, OPT_POLICY},
    {"service", 's', true, OPT_SERVICE},
    {"default", 'd', true, OPT_DEFAULT},
    {NULL, 0, false, 0},
};

int wctl_policy_compile(const char *prog, int argc, char **argv)
{
    wctl_strs paths = {0};
    wctl_args a;
    const char *v;
    int id, status = WCTL_EXIT_FAIL;
    policy_set *set = NULL;
    policy_compile_opts opts = {0};
    ward_buf lua;
    ward_err err;
    ward_buf_init(&lua);
    ward_err_clear(&err);
    wctl_args_init(&a, prog, argc, argv, compile_opts);
    while ((id = wctl_args_next(&a, &v)) != WCTL_ARG_END) {
        switch (id) {
        case WCTL_ARG_ERROR: status = WCTL_EXIT_USAGE; goto done;
        case OPT_HELP: fputs(compile_help, stdout); status = WCTL_EXIT_OK; goto done;
        case OPT_SERVICE: opts.only_service = v; break;
        case OPT_DEFAULT:
            if (wctl_parse_default(v, &opts.default_allow) < 0) {
                status = wctl_usage_error(prog, "--default must be allow or deny, not '%s'", v);
                goto done;
            }
            break;
        default:
            if (wctl_strs_push(&paths, v) < 0)
                goto done;
        }
    }
    if (paths.n == 0) {
        status = wctl_usage_error(prog, "no policy PATH given");
        goto done;
    }
    if (wctl_policies_load(&paths, &set) < 0)
        goto done;
    int rc = policy_set_compile(set, &opts, &lua, &err);
    if (rc < 0) {
        fprintf(stderr, "error: compiling policies: %s\n", err.msg[0] ? err.msg : ward_strerror(rc));
        goto done;
    }
    if (lua.len > 0 && fwrite(lua.ptr, 1, lua.len, stdout) != lua.len) {
        fprintf(stderr, "error: writing output failed\n");
        goto done;
    }
    status = fflush(stdout) == 0 ? WCTL_EXIT_OK : WCTL_EXIT_FAIL;
done:
    ward_buf_dispose(&lua);
    if (set != NULL)
        policy_set_free(set);
    wctl_strs_dispose(&paths);
    return status;
}
