/* prelude.c - embeds prelude.lua, the runtime every compiled bundle starts with */
#include <stddef.h>

#include "policy/policy_prelude.h"

/* The bytes of policy/prelude.lua (path relative to the top of the tree, where make runs). */
__asm__(".section .rodata\n"
        ".global policy_prelude_start\n"
        ".global policy_prelude_end\n"
        "policy_prelude_start:\n"
        ".incbin \"policy/prelude.lua\"\n"
        "policy_prelude_end:\n"
        ".previous\n");
