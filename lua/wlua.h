/* wlua.h - the sandboxed Lua 5.4 runtime: budgets, text-only loading, host functions */
#ifndef WLUA_H
#define WLUA_H

#include <lua.h>
#include <stdint.h>

#include "common/ward.h"

typedef struct wlua_limits {
    uint64_t max_instructions; /* per wlua_call; 0 = default (1,000,000) */
    size_t max_memory;         /* bytes for the whole state; 0 = default (64 MiB) */
    /* true: the instruction budget meters only untrusted code, i.e. functions
     * made by ward.condition; the loaded chunks themselves (compiled policies,
     * bounded by construction) run unmetered, because any count hook puts
     * every Lua 5.4 instruction on a slow path. The memory cap always applies. */
    bool meter_untrusted_only;
} wlua_limits;

typedef struct wlua_state wlua_state;

/* Creates a state with a capped allocator, an instruction-count hook and the
 * sandbox environment (see below). */
int wlua_new(const wlua_limits *limits, wlua_state **out, ward_err *err);
void wlua_free(wlua_state *st);

/* The raw state, for pushing arguments and reading results between
 * wlua_load/wlua_call. Never call lua_call/lua_pcall on it directly. */
lua_State *wlua_L(wlua_state *st);

/* Loads `src` as text only (mode "t": bytecode is refused) with the sandbox as
 * its _ENV, runs it once under the budget and leaves its single return value
 * on the stack (a nil return is an error). chunkname appears in error messages. */
int wlua_load(wlua_state *st, const char *chunkname, const char *src, size_t len, ward_err *err);

/* Calls the function below nargs arguments on the stack, like lua_pcall with a
 * fresh instruction budget. Returns 0, WARD_EBUDGET (instructions or memory),
 * or WARD_ELUA (any other error); on error nothing is left on the stack and
 * err says why. The state stays usable after any error. */
int wlua_call(wlua_state *st, int nargs, int nresults, ward_err *err);

/* Checks that src compiles as a `lua:` condition (an expression, or a block
 * that returns), exactly as ward.condition will compile it, without running
 * anything. On error err holds Lua's message ("line 1: unexpected symbol near
 * <eof>"). */
int wlua_condition_check(const char *src, size_t len, ward_err *err);

/* Bytes currently allocated by the state. */
size_t wlua_memory(const wlua_state *st);

/*
 * The sandbox environment every chunk runs in (a fresh table, not _G):
 *   base:   assert error ipairs next pairs pcall rawequal rawget rawlen rawset
 *           select tonumber tostring type xpcall setmetatable getmetatable
 *           (no load, loadstring, dofile, loadfile, require, collectgarbage, print)
 *   string: all but dump (string metatable __index still works for s:sub etc.)
 *   table, math (without random/randomseed), utf8
 *   ward:   the host functions below, implemented in C.
 *
 * Host functions (errors raise Lua errors with a clear message):
 *   ward.regex(pattern)        -> matcher; PCRE2, anchored at both ends, JIT
 *                                 compiled once, match and depth limits set.
 *   ward.regex_match(m, s)     -> bool (a failed/limit-exceeded match raises)
 *   ward.cidr(list)            -> set of CIDR blocks (list of strings)
 *   ward.cidr_match(set, ip)   -> bool; ip is a string; unparsable ip -> false
 *   ward.template(tpl)         -> path template matcher: literal segments,
 *                                 "{*}" one non-empty segment, "{**}" any number
 *                                 of segments (last only, may be zero)
 *   ward.template_match(t, path) -> bool
 *   ward.prefix(s, p) / ward.suffix(s, p) -> bool (byte comparison, no allocation)
 *   ward.prefix_index(map)     -> index over {prefix = value}; map is a table
 *   ward.prefix_lookup(idx, s, out) -> appends to table `out` the value of
 *                                 every prefix of s present in the index (in
 *                                 increasing prefix length); returns out
 *   ward.cidr_index(map)       -> index over {cidr = value}
 *   ward.cidr_lookup(idx, ip, out) -> appends the values of every block that
 *                                 contains ip; returns out
 *   ward.spiffe(id)            -> trust_domain, path, namespace (namespace nil
 *                                 when there is no /ns/<ns> segment); nil when
 *                                 id is not a valid SPIFFE ID
 *   ward.lower(s)              -> ASCII lowercase
 *   ward.condition(src [, name]) -> function(req): src compiled as text in a
 *                                 fresh sandbox environment; always metered
 *                                 by the instruction budget
 */

#endif
