/* main.c - wardctl entry point: dispatch to a command group (policy, later audit, identity, svid) */
#include <stdio.h>
#include <string.h>

#include "cmd/wardctl/wardctl.h"

/* One entry per command group. Later groups (audit, identity, svid) are
 * added here when they exist; until then they are unknown groups. */
static const wctl_command groups[] = {
    {"policy", wctl_policy_main, "validate, compile, evaluate, test and benchmark policies"},
    {"identity", wctl_identity_main, "join tokens and the trust bundle (wardd)"},
    {"svid", wctl_svid_main, "fetch an X509-SVID from wardd, inspect one"},
    {"audit", wctl_audit_main, "verify, export and query the audit trail"},
    {NULL, NULL, NULL},
};

static void usage(FILE *f)
{
    fputs("Usage: wardctl GROUP COMMAND [ARGS...]\n"
          "       wardctl GROUP --help\n"
          "\n"
          "The command-line tool of Ward's security teams and operators.\n"
          "\n"
          "Groups:\n",
          f);
    wctl_commands_print(f, groups);
    fputs("\n"
          "Options:\n"
          "  -h, --help  show this help\n"
          "\n" WCTL_EXIT_CODES_HELP
          "  3  (audit) the trail, the key or the output cannot be read or written\n"
          "  (identity and svid: 1 also when wardd refused or could not be reached)\n"
          "\n"
          "Environment:\n"
          "  WARD_ADMIN_SOCKET  wardd's admin socket, for 'identity token create'\n"
          "                     (default /var/lib/ward/admin.sock)\n"
          "\n"
          "Examples:\n"
          "  wardctl policy check /etc/ward/policies\n"
          "  wardctl policy test -p /etc/ward/policies\n"
          "  wardctl policy eval -p /etc/ward/policies --explain --input request.json\n"
          "  wardctl identity token create --spiffe-id spiffe://example.org/ns/shop/sa/payments\n"
          "  wardctl audit verify /var/lib/ward/audit/payments --key payments-audit.pub\n"
          "  wardctl audit query /var/lib/ward/audit/payments --since 1h --where decision=deny\n"
          "\n"
          "Each command's options: 'wardctl GROUP COMMAND --help'. Manual pages:\n"
          "wardctl(1), ward-policy(5).\n",
          f);
}

int main(int argc, char **argv)
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
        return wctl_usage_error("wardctl", "unknown option '%s'", name);
    const wctl_command *g = wctl_commands_find(groups, name);
    if (g == NULL)
        return wctl_usage_error("wardctl", "unknown command group '%s'", name);
    char prog[64];
    snprintf(prog, sizeof(prog), "wardctl %s", g->name);
    return g->run(prog, argc - 1, argv + 1);
}
