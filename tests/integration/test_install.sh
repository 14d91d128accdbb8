#!/usr/bin/env bash
# test_install.sh - `make install` / `make uninstall`: the three binaries and the manual
# pages land under DESTDIR/PREFIX, the installed binaries run and print complete --help,
# every page renders without a warning and names every option its binary's --help lists,
# and uninstall removes exactly what install put there.
. "$(dirname "$0")/lib.sh"

DEST="$TMP/stage"
PREFIX=/usr
REL_BUILD="${BUILD#"$ROOT"/}" # the Makefile's BUILD (build, build/sanitize) as make test gave it
for tool in groff man; do
    if ! command -v "$tool" >/dev/null; then
        fail "$tool is installed (make deps: groff-base, man-db)"
        finish
    fi
done

out=$(make -C "$ROOT" --no-print-directory install DESTDIR="$DEST" PREFIX="$PREFIX" BUILD="$REL_BUILD" 2>&1)
rc=$?
if [ "$rc" = 0 ]; then pass "make install DESTDIR=... PREFIX=/usr exits 0"; else
    fail "make install DESTDIR=... PREFIX=/usr exits 0" "exit $rc" "$out"
    finish
fi

for b in wardctl ward-proxy wardd; do
    f="$DEST$PREFIX/bin/$b"
    expect_eq "$PREFIX/bin/$b is installed, mode 755" 755 "$(stat -c %a "$f" 2>/dev/null)"
    help=$("$f" --help 2>&1)
    rc=$?
    expect_eq "... the installed $b --help exits 0" 0 "$rc"
    expect_match "... and its help has a usage line and the exit status" \
        '^[Uu]sage: '"$b"'.*Exit status' "$(printf '%s' "$help" | tr '\n' ' ')"
done
bad=$("$DEST$PREFIX/bin/ward-proxy" --bogus 2>&1)
expect_eq "the installed ward-proxy refuses an unknown option with exit 2" 2 "$?"
expect_match "... and prints its usage" '^usage: ward-proxy' "$(printf '%s' "$bad" | sed -n 2p)"

pages="man1/wardctl.1 man1/ward-proxy.1 man1/wardd.1 man5/ward-proxy.yaml.5 man5/ward-policy.5"
for p in $pages; do
    f="$DEST$PREFIX/share/man/$p"
    expect_eq "$PREFIX/share/man/$p is installed, mode 644" 644 "$(stat -c %a "$f" 2>/dev/null)"
    warn=$(groff -man -Tutf8 -ww -z "$f" 2>&1)
    expect_eq "... groff -man -Tutf8 -ww renders it without a warning" "" "$warn"
    txt=$(MANWIDTH=80 man --warnings -l "$f" 2>"$TMP/man.err")
    expect_eq "... man -l renders it without a warning" "" "$(cat "$TMP/man.err")"
    name=$(basename "$p"); name=${name%.*}
    expect_match "... with a NAME section naming $name" "^ +$name +- " "$(printf '%s\n' "$txt" | sed -n '/^NAME/,/^[A-Z]/p')"
done

# Every long option a binary's --help lists appears in its page (roff source, \- unescaped):
# a new option without documentation fails here.
opts_of() { grep -oE -- '--[a-z][a-z-]*[a-z]' | sort -u; }
missing_opts() { # PAGE HELP-TEXT
    local src o miss=""
    src=$(sed 's/\\-/-/g' "$1")
    for o in $(printf '%s\n' "$2" | opts_of); do
        grep -qF -- "$o" <<<"$src" || miss="$miss $o"
    done
    echo "${miss# }"
}
M="$DEST$PREFIX/share/man"
expect_eq "wardd(1) documents every option of wardd --help" "" \
    "$(missing_opts "$M/man1/wardd.1" "$("$DEST$PREFIX/bin/wardd" --help)")"
expect_eq "ward-proxy(1) documents every option of ward-proxy --help" "" \
    "$(missing_opts "$M/man1/ward-proxy.1" "$("$DEST$PREFIX/bin/ward-proxy" --help)")"
all=""
W="$DEST$PREFIX/bin/wardctl"
for c in "policy check" "policy compile" "policy eval" "policy explain" "policy test" "policy bench" \
    "identity token create" "identity bundle" "svid fetch" "svid show" \
    "audit verify" "audit export" "audit query"; do
    # shellcheck disable=SC2086 # the command's words
    all="$all$($W $c --help 2>&1)"$'\n'
done
expect_eq "wardctl(1) documents every option of every wardctl command's --help" "" \
    "$(missing_opts "$M/man1/wardctl.1" "$all")"
# the config keys of wardd --help in wardd(1), the top-level keys of ward-proxy.yaml in its page
keys=$("$DEST$PREFIX/bin/wardd" --help | sed -n '/^config file keys/,/^durations/p' | grep -oE '[a-z]+(_[a-z]+)+|listen' | sort -u)
miss=""
for k in $keys; do grep -qF "$k" "$M/man1/wardd.1" || miss="$miss $k"; done
expect_eq "wardd(1) documents every config file key of wardd --help" "" "${miss# }"
miss=""
for k in service identity inbound outbound upstreams policy audit admin workers timeouts limits tls \
    server token_file bundle_file state_dir cert_file key_file app spiffe_id endpoints balance \
    hash_key circuit_breakers outlier_detection retry_budget overflow segment_size segment_age \
    checkpoint_records fsync_interval sink headers redact fields tcp name listen service \
    server_name connect_timeout idle_timeout header_read idle upstream_connect request drain \
    max_header_bytes max_headers max_body max_connections min_version; do
    grep -qE "(^|[^a-z_])$k([^a-z_]|\$)" "$M/man5/ward-proxy.yaml.5" || miss="$miss $k"
done
expect_eq "ward-proxy.yaml(5) documents every key of the configuration" "" "${miss# }"

out=$(make -C "$ROOT" --no-print-directory uninstall DESTDIR="$DEST" PREFIX="$PREFIX" BUILD="$REL_BUILD" 2>&1)
expect_eq "make uninstall exits 0" 0 "$?"
expect_eq "... and removes every file install put there" "" "$(find "$DEST" -type f | sed "s|^$DEST||")"

finish
