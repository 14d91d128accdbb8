/* authz_int.h - internal to authz/: helpers shared by its files */
#ifndef AUTHZ_INT_H
#define AUTHZ_INT_H

#include <lua.h>

#include "common/ward.h"

/* Serializes the Lua value at idx as JSON (tables with keys 1..n become
 * arrays, others objects with sorted string keys; depth-bounded). */
int authz_lua_to_json(lua_State *L, int idx, ward_buf *out, ward_err *err);

#endif
