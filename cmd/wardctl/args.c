/* args.c - command-line parsing shared by every wardctl command: options, usage errors, command tables */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/wardctl/wardctl.h"

void wctl_args_init(wctl_args *a, const char *prog, int argc, char **argv, const wctl_opt *opts)
{
    a->prog = prog;
    a->argc = argc;
    a->argv = argv;
    a->i = 1; /* argv[0] is the command's own name */
    a->only_pos = false;
    a->opts = opts;
}

static const wctl_opt *opt_find_long(const wctl_opt *opts, const char *name, size_t len)
{
    for (const wctl_opt *o = opts; o->name != NULL; o++)
        if (strlen(o->name) == len && memcmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

static const wctl_opt *opt_find_short(const wctl_opt *opts, char c)
{
    for (const wctl_opt *o = opts; o->name != NULL; o++)
        if (o->short_name != 0 && o->short_name == c)
            return o;
    return NULL;
}

/* Takes the option's value from "=value", the rest of a short option, or the next argument. */
static int opt_value(wctl_args *a, const wctl_opt *o, const char *attached, const char *shown,
                     const char **value)
{
    if (!o->has_arg) {
        if (attached != NULL) {
            wctl_usage_error(a->prog, "option '%s' takes no value", shown);
            return WCTL_ARG_ERROR;
        }
        *value = NULL;
        return o->id;
    }
    if (attached != NULL) {
        *value = attached;
        return o->id;
    }
    if (a->i >= a->argc) {
        wctl_usage_error(a->prog, "option '%s' needs a value", shown);
        return WCTL_ARG_ERROR;
    }
    *value = a->argv[a->i++];
    return o->id;
}

int wctl_args_next(wctl_args *a, const char **value)
{
    *value = NULL;
    if (a->i >= a->argc)
        return WCTL_ARG_END;
    const char *arg = a->argv[a->i++];
    if (a->only_pos || arg[0] != '-' || arg[1] == '\0') {
        *value = arg;
        return WCTL_ARG_POSITIONAL;
    }
    if (strcmp(arg, "--") == 0) {
        a->only_pos = true;
        return wctl_args_next(a, value);
    }
    if (arg[1] == '-') {
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const wctl_opt *o = opt_find_long(a->opts, name, len);
        if (o == NULL) {
            wctl_usage_error(a->prog, "unknown option '--%.*s'", (int)len, name);
            return WCTL_ARG_ERROR;
        }
        char shown[80];
        snprintf(shown, sizeof(shown), "--%s", o->name);
        return opt_value(a, o, eq != NULL ? eq + 1 : NULL, shown, value);
    }
    const wctl_opt *o = opt_find_short(a->opts, arg[1]);
    if (o == NULL) {
        wctl_usage_error(a->prog, "unknown option '-%c'", arg[1]);
        return WCTL_ARG_ERROR;
    }
    char shown[8];
    snprintf(shown, sizeof(shown), "-%c", arg[1]);
    return opt_value(a, o, arg[2] != '\0' ? arg + 2 : NULL, shown, value);
}

int wctl_usage_error(const char *prog, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help' for more information.\n", prog);
    return WCTL_EXIT_USAGE;
}

int wctl_strs_push(wctl_strs *s, const char *str)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        const char **v = realloc(s->v, cap * sizeof(*v));
        if (v == NULL)
            return WARD_ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = str;
    return 0;
}

void wctl_strs_dispose(wctl_strs *s)
{
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

int wctl_parse_default(const char *s, bool *allow)
{
    if (strcmp(s, "allow") == 0)
        *allow = true;
    else if (strcmp(s, "deny") == 0)
        *allow = false;
    else
        return WARD_EINVAL;
    return 0;
}

void wctl_commands_print(FILE *f, const wctl_command *cmds)
{
    for (const wctl_command *c = cmds; c->name != NULL; c++)
        fprintf(f, "  %-10s %s\n", c->name, c->summary);
}

const wctl_command *wctl_commands_find(const wctl_command *cmds, const char *name)
{
    for (const wctl_command *c = cmds; c->name != NULL; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

/* Runs the command `argv[1]` of table `cmds`, or prints usage. */
int wctl_commands_run(const char *prog, int argc, char **argv, const wctl_command *cmds,
                      void (*usage)(FILE *))
{
    if (argc < 2) {
        usage(stderr);
        return WCTL_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return WCTL_EXIT_OK;
    }
    if (name[0] == '-')
        return wctl_usage_error(prog, "unknown option '%s'", name);
    const wctl_command *c = wctl_commands_find(cmds, name);
    if (c == NULL)
        return wctl_usage_error(prog, "unknown command '%s'", name);
    char sub[96];
    snprintf(sub, sizeof(sub), "%s %s", prog, c->name);
    return c->run(sub, argc - 1, argv + 1);
}
