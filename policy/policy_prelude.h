/* policy_prelude.h - internal: the embedded Lua runtime of compiled bundles */
#ifndef POLICY_PRELUDE_H
#define POLICY_PRELUDE_H

extern const char policy_prelude_start[];
extern const char policy_prelude_end[];

#endif
