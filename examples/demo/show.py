#!/usr/bin/env python3
"""show.py - print JSON documents (one per line on stdin) for people.

    ... | python3 show.py [--pack]     each document indented (--pack: short members share
                                       lines of up to 100 columns)
    ... | python3 show.py KEY...       one compact line per document with only KEYs
                                       (dotted for nested keys: dry_run.decision)

The demo's stand-in for `jq`, which a fresh Debian does not have:
`show.py decision policy dry_run` is `jq -c '{decision, policy, dry_run}'`.
"""
import json
import sys


def flat(v):
    return not isinstance(v, (dict, list)) or not any(isinstance(x, (dict, list)) for x in
                                                      (v.values() if isinstance(v, dict) else v))


def pretty(v, ind=0, width=100, pack=False):
    """JSON, indented; what fits on one line stays on one (pack: short members share lines)."""
    one = json.dumps(v, ensure_ascii=False)
    if flat(v) and len(one) + 2 * ind <= width:
        return one
    pad = "  " * (ind + 1)
    if isinstance(v, dict):
        parts = ["%s: %s" % (json.dumps(k, ensure_ascii=False), pretty(x, ind + 1, width, pack))
                 for k, x in v.items()]
        open_, close = "{", "}"
    elif isinstance(v, list):
        parts = [pretty(x, ind + 1, width, pack) for x in v]
        open_, close = "[", "]"
    else:
        return one
    lines, cur = [], ""
    for i, part in enumerate(parts):
        part += "," if i < len(parts) - 1 else ""
        if "\n" in part:  # a nested block: on lines of its own
            if cur:
                lines.append(cur)
                cur = ""
            lines.append(pad + part)
        elif pack and cur and len(cur) + 1 + len(part) <= width:
            cur += " " + part
        else:
            if cur:
                lines.append(cur)
            cur = pad + part
    if cur:
        lines.append(cur)
    return open_ + "\n" + "\n".join(lines) + "\n" + "  " * ind + close


def get(doc, key):
    for part in key.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def main():
    pack = "--pack" in sys.argv[1:]
    keys = [a for a in sys.argv[1:] if a != "--pack"]
    status = 0
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            print(line)
            status = 1
            continue
        if keys:
            print(json.dumps({k: get(doc, k) for k in keys}, ensure_ascii=False,
                             separators=(",", ":")))
        else:
            print(pretty(doc, pack=pack))
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:
        sys.exit(0)
