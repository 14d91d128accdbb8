/* wlua_int.h - internal to lua/: the state body, budget plumbing and the host function tables */
#ifndef WLUA_INT_H
#define WLUA_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <lua.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lua/wlua.h"

#define WLUA_DEFAULT_INSTRUCTIONS 1000000u
#define WLUA_DEFAULT_MEMORY ((size_t)64 << 20)
#define WLUA_HOOK_STEP 1000       /* instructions between two budget checks */
#define WLUA_BYTES_PER_INSTR 64   /* bytes allocated inside a call cost one instruction */

/* PCRE2 limits applied to every match (see DESIGN.md: bounded matchers). */
#define WLUA_RE_MATCH_LIMIT 100000u
#define WLUA_RE_DEPTH_LIMIT 10000u
#define WLUA_RE_HEAP_LIMIT_KIB 4096u
#define WLUA_RE_JIT_STACK_MAX (1024u * 1024u)

/* Why the running call's budget is gone (sticky until the outer call returns). */
enum { WLUA_BUDGET_OK = 0, WLUA_BUDGET_INSTRUCTIONS = 1, WLUA_BUDGET_MEMORY = 2 };

struct wlua_state {
    lua_State *L;
    size_t used;        /* bytes held by Lua and PCRE2 */
    size_t cap;         /* hard cap, enforced inside calls */
    uint64_t max_instr; /* per outer call */
    uint64_t instr;     /* charged so far in the running call */
    int step;           /* hook period */
    int depth;          /* nesting of protected runs (0 = host code is running) */
    int exhausted;      /* WLUA_BUDGET_*, sticky for the running call */
    bool meter_untrusted_only; /* see wlua_limits */
    int untrusted;             /* nesting of wlua_call_metered in the running call */
    bool pcre_refused;  /* the PCRE2 allocator refused a block */
    pcre2_general_context *pgen;
    pcre2_compile_context *pcomp;
    pcre2_match_context *pmatch;
    pcre2_jit_stack *pjit; /* created with the first regex */
};

/* Whether work done now counts against the instruction budget. */
static inline bool wlua_metering(const struct wlua_state *st)
{
    return !st->meter_untrusted_only || st->untrusted > 0;
}

/* The wlua_state owning L (kept in L's extra space). */
static inline wlua_state *wlua_state_of(lua_State *L)
{
    return *(wlua_state **)lua_getextraspace(L);
}

/* Marks the running call's budget exhausted (kind WLUA_BUDGET_*) and raises the
 * budget error. Sandboxed code cannot catch it: pcall/xpcall re-raise it and
 * the hook raises again at every instruction until the outer call returns. */
int wlua_budget_raise(lua_State *L, int kind) __attribute__((noreturn));

/* Runs the function below nargs arguments (lua_call style, errors propagate)
 * with the instruction budget's hook armed, whatever the state's mode. */
void wlua_call_metered(lua_State *L, int nargs, int nresults);

/* Charges `cost` instructions of C-level work to the running call; raises the
 * budget error when that exhausts the budget. No-op outside a call. */
void wlua_charge(lua_State *L, uint64_t cost);

/* sandbox.c: run once (protected) by wlua_new; opens the libraries, locks the
 * string metatable and stores the environment template in the registry. */
int wlua_sandbox_open(lua_State *L);
/* Pushes a fresh sandbox environment (a new table; library tables copied). */
void wlua_sandbox_push_env(lua_State *L);
/* Loads text-only source as a sandboxed function (pushes it) or raises. */
void wlua_sandbox_load(lua_State *L, const char *chunkname, const char *src, size_t len);

/* strlib.c: string.find/match/gmatch/gsub with a step budget, rep and byte
 * charged per element; linear utf8 and pack functions charged per byte. */
void wlua_strlib_patch(lua_State *L, int string_table);
void wlua_utf8lib_patch(lua_State *L, int utf8_table);
/* tablib.c: table library functions whose loops are charged to the budget. */
void wlua_tablib_patch(lua_State *L, int table_table);

/* Host function groups; each adds its functions to the table at the top. */
void wlua_host_regex(lua_State *L);
void wlua_host_match(lua_State *L);
void wlua_host_index(lua_State *L);

/* For host functions: the bytes of an optional subject argument (string or
 * number); NULL when the argument is nil or absent, a type error otherwise. */
const char *wlua_opt_subject(lua_State *L, int idx, size_t *len);
/* The userdata at idx if its metatable is the one at upvalue 1, else a type error. */
void *wlua_check_host(lua_State *L, int idx, const char *tname);
/* Creates a host metatable (locked, __name = tname) and leaves it on the stack. */
void wlua_new_host_mt(lua_State *L, const char *tname, lua_CFunction gc);

#endif
