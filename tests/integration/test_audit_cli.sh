#!/usr/bin/env bash
# test_audit_cli.sh - wardctl audit verify/export/query on trails written by audit_fixture.py (docs/audit.md): tampering of every kind, CSV/CEF/OCSF output parsed back, filters, counts.
. "$(dirname "$0")/lib.sh"

W="$BIN/wardctl"
PY=/usr/bin/python3
FIX="$ROOT/tests/integration/audit_fixture.py"
SEG1=segment-00000000000000000001.jsonl
SEG2=segment-00000000000000000401.jsonl
SEG3=segment-00000000000000000801.jsonl

if [ ! -x "$W" ]; then
    fail "wardctl is built" "missing $W (run make)"
    finish
fi
if ! $PY -c 'import cryptography' 2>/dev/null; then
    fail "python3-cryptography is installed" "apt-get install python3-cryptography (make deps)"
    finish
fi

# run CMD... : sets OUT, ERR, RC
run() {
    "$@" >"$TMP/out" 2>"$TMP/err"
    RC=$?
    OUT=$(cat "$TMP/out")
    ERR=$(cat "$TMP/err")
}

# A clean trail: 1000 records in 3 segments (400 each), a checkpoint every 100
# records and at each seal, hostile values at seq 2 and 3, a gap record at 500.
CLEAN="$TMP/clean"
$PY "$FIX" gen "$CLEAN" --hostile --gap-at 500 >/dev/null || { fail "fixture generated"; finish; }
cp "$CLEAN/checkpoint.pub" "$TMP/auditor.pub" # the key as an auditor holds it
$PY "$FIX" keygen "$TMP/wrong.pub"

fresh() { rm -rf "$TMP/t"; cp -a "$CLEAN" "$TMP/t"; }

# ---- help and usage ----------------------------------------------------------------------------

run "$W" --help
expect_match "wardctl --help lists the audit group" 'audit +verify, export and query' "$OUT"
run "$W" audit --help
expect_eq "audit --help exits 0" 0 "$RC"
expect_match "audit --help lists verify, export and query" 'verify .*export .*query' "$(echo $OUT)"
for c in verify export query; do
    run "$W" audit "$c" --help
    expect_eq "audit $c --help exits 0" 0 "$RC"
    expect_match "audit $c --help is a man page with exit statuses" 'SYNOPSIS.*(EXIT STATUS|Exit status).*3 ' "$(echo $OUT)"
done
run "$W" audit export --help
expect_match "export --help documents formula neutralization" "leading '" "$OUT"

run "$W" audit verify
expect_eq "verify without DIR exits 2" 2 "$RC"
run "$W" audit verify "$CLEAN" --bogus
expect_eq "verify with an unknown option exits 2" 2 "$RC"
run "$W" audit verify "$CLEAN" "$CLEAN"
expect_eq "verify with two DIRs exits 2" 2 "$RC"
run "$W" audit frobnicate "$CLEAN"
expect_eq "an unknown audit command exits 2" 2 "$RC"
run "$W" audit export "$CLEAN" --format xml
expect_eq "export --format xml exits 2" 2 "$RC"
expect_match "a bad format is named" "jsonl, csv, ocsf or cef, not 'xml'" "$ERR"
run "$W" audit export "$CLEAN" --since yesterday
expect_eq "a bad --since exits 2" 2 "$RC"
expect_match "a bad --since says what a time looks like" 'RFC 3339' "$ERR"
run "$W" audit export "$CLEAN" --since 1h --until 2h
expect_eq "--since after --until exits 2" 2 "$RC"
run "$W" audit query "$CLEAN" --where verdict=deny --count
expect_eq "an unknown --where key exits 2" 2 "$RC"
expect_match "an unknown --where key lists the keys" "unknown key 'verdict'.*source.principal" "$ERR"
run "$W" audit query "$CLEAN" --count --count-by decision
expect_eq "--count with --count-by exits 2" 2 "$RC"
run "$W" audit query "$CLEAN" --count-by nope
expect_eq "--count-by an unknown key exits 2" 2 "$RC"

run "$W" audit verify "$TMP/does-not-exist"
expect_eq "verify of a missing folder exits 3" 3 "$RC"
mkdir -p "$TMP/empty"
run "$W" audit verify "$TMP/empty"
expect_eq "verify of a folder without a trail exits 3" 3 "$RC"
expect_match "... and says it is not an audit trail" 'not an audit trail' "$ERR"
run "$W" audit verify "$CLEAN" --key "$TMP/nope.pub"
expect_eq "verify with a missing --key exits 3" 3 "$RC"
echo garbage >"$TMP/garbage.pub"
run "$W" audit verify "$CLEAN" --key "$TMP/garbage.pub"
expect_eq "verify with a --key that is not a key exits 3" 3 "$RC"
run "$W" audit export "$TMP/does-not-exist"
expect_eq "export of a missing folder exits 3" 3 "$RC"
run "$W" audit query "$TMP/empty" --count
expect_eq "query of a folder without a trail exits 3" 3 "$RC"

# ---- verify: a clean trail ----------------------------------------------------------------------

run $PY "$FIX" check "$CLEAN"
expect_eq "the fixture passes the independent Python verifier" 0 "$RC"
run "$W" audit verify "$CLEAN"
expect_eq "a clean trail verifies (exit 0)" 0 "$RC"
expect_match "counts records, segments and checkpoints" '^verified: 1000 records \(seq 1\.\.1000, with gap records\) in 3 segments, 10 checkpoints' "$OUT"
expect_match "says the last checkpoint covers everything" 'last checkpoint: seq 1000 \(it covers every record\)' "$OUT"
expect_match "without --key says the key beside the trail proves little" 'checkpoint.pub .*kept beside the trail.*--key' "$(echo $OUT)"
expect_match "reports the time and rate" 'time: [0-9.]+ s \([0-9]+ records/s' "$OUT"
run "$W" audit verify "$CLEAN" --key "$TMP/auditor.pub"
expect_eq "a clean trail verifies with the auditor's key" 0 "$RC"
expect_match "with --key names the key and its id" "key: $TMP/auditor.pub \(id [0-9a-f]{16}\)" "$OUT"
run "$W" audit verify -q "$CLEAN" --key "$TMP/auditor.pub"
expect_eq "verify -q prints nothing" "0:" "$RC:$OUT"

# a crash's torn last line is not tampering
fresh
printf '{"v":1,"seq":1001,"ts":"2026-11-26T02:1' >>"$TMP/t/$SEG3"
run "$W" audit verify "$TMP/t" --key "$TMP/auditor.pub"
expect_eq "a torn last line (crash) still verifies" 0 "$RC"
expect_match "... with a note naming it" "note: $SEG3:201: a torn last line" "$OUT"

# ---- verify: every kind of tampering -----------------------------------------------------------

# tamper KIND ARGS... : tamper a fresh copy; EXPECT is what verify must name first
tamper() {
    fresh
    LOC=$($PY "$FIX" tamper "$TMP/t" "$@")
    F=$(echo "$LOC" | sed -n 's/.*file=\([^ ]*\).*/\1/p')
    L=$(echo "$LOC" | sed -n 's/.*line=\([0-9]*\).*/\1/p')
    S=$(echo "$LOC" | sed -n 's/.*seq=\([0-9]*\).*/\1/p')
}

# check_tamper NAME KIND : verify exits 1 and names KIND at F:L seq S first
check_tamper() {
    local where="$F:$L: seq $S"
    [ "$L" = 0 ] && where="$F: seq $S"
    run "$W" audit verify "$TMP/t" --key "$TMP/auditor.pub"
    expect_eq "$1: exit 1" 1 "$RC"
    expect_match "$1: the summary names seq $S and the kind" "^TAMPERED: the first bad record is seq $S .*: $2\$" "$(printf '%s\n' "$OUT" | head -1)"
    expect_match "$1: the first finding is $2 at $where" "^$2: $where: " "$(printf '%s\n' "$OUT" | sed -n 2p)"
    run $PY "$FIX" check "$TMP/t" --key "$TMP/auditor.pub"
    expect_match "$1: the Python verifier agrees on the kind" "^$2: " "$OUT"
}

tamper modify --seq 57
check_tamper "one byte of a field modified" modified
tamper delete --seq 420
check_tamper "a record deleted" deleted
tamper swap --seq 650
check_tamper "two records swapped" reordered
expect_eq "a swap names the record out of place (seq 651 at line 250)" "$SEG2:250:651" "$F:$L:$S"
tamper truncate --seq 950
check_tamper "the last segment truncated below the last checkpoint" truncated
tamper drop-segment --index 1
check_tamper "a whole segment deleted" truncated
run "$W" audit verify "$TMP/t" --key "$TMP/auditor.pub"
expect_match "... naming the records it held" 'records 401\.\.800 are missing' "$OUT"
tamper forge-sig --line 3
check_tamper "a checkpoint signature forged" "forged checkpoint"
tamper rechain --seq 250
check_tamper "a record modified and the chain recomputed (caught by the signed head)" "forged checkpoint"
run "$W" audit verify "$TMP/t" --key "$TMP/auditor.pub"
expect_match "... the range of rewritten records is named" 'records 201\.\.300 were rewritten and re-chained' "$OUT"

run "$W" audit verify "$CLEAN" --key "$TMP/wrong.pub"
expect_eq "the wrong --key: exit 1" 1 "$RC"
expect_match "the wrong --key: every checkpoint is refused" '^forged checkpoint: checkpoints.jsonl:1: seq 100: signed with key id' "$(printf '%s\n' "$OUT" | sed -n 2p)"
expect_match "the wrong --key: a note asks whether the key is right" 'is it the right key' "$OUT"

fresh
rm "$TMP/t/$SEG3"
run "$W" audit verify "$TMP/t" --key "$TMP/auditor.pub"
expect_eq "the last segment deleted: exit 1" 1 "$RC"
expect_match "the last segment deleted: truncated below the last checkpoint" "^truncated: $SEG2:401: seq 801: the trail ends at seq 800" "$(printf '%s\n' "$OUT" | sed -n 2p)"

# ---- export: CSV ---------------------------------------------------------------------------------

run "$W" audit export "$CLEAN" --format csv -o "$TMP/all.csv"
expect_eq "export csv exits 0" 0 "$RC"
expect_eq "export writes nothing on stderr when it is not a terminal" "" "$ERR"
run $PY - "$TMP/all.csv" "$CLEAN" <<'PY'
import csv, json, os, sys
raw = open(sys.argv[1], "rb").read()
assert raw.endswith(b"\r\n")
rows = list(csv.reader(open(sys.argv[1], newline="", encoding="utf-8")))
head = rows[0]
assert head == ("seq,ts,id,node,direction,decision,policy,rule,reason,audit,dry_run.decision,"
    "dry_run.policy,dry_run.rule,source.principal,source.ip,source.port,destination.service,"
    "destination.principal,destination.port,request.method,request.host,request.path,"
    "request.protocol,response.status,bundle,trace_id,latency_ns,peer_cert_sha256,truncated,gap,"
    "event,hash,outcome,subject,serial,not_after,via,token_id,audience,key_id,bundle_sequence,"
    "source.uid,error,connection.bytes_in,connection.bytes_out,connection.duration_ms,request.headers").split(","), head
recs = {}
d = sys.argv[2]
for n in sorted(os.listdir(d)):
    if n.startswith("segment-"):
        for l in open(os.path.join(d, n), encoding="utf-8"):
            r = json.loads(l); recs[r["seq"]] = r
assert len(rows) == 1 + len(recs), len(rows)
byseq = {int(r[0]): dict(zip(head, r)) for r in rows[1:]}
def neut(s):
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s
for seq, r in recs.items():
    c = byseq[seq]
    if "gap" in r:
        assert c["gap"] == str(r["gap"]) and c["decision"] == "", c
        continue
    assert c["decision"] == r["decision"] and c["ts"] == r["ts"] and c["hash"] == r["hash"]
    assert c["source.principal"] == neut(r["source"]["principal"]), (c["source.principal"], r["source"])
    assert c["request.path"] == neut(r["request"]["path"])
    assert c["reason"] == neut(r["reason"])
    assert c["response.status"] == (str(r["response"]["status"]) if r["response"] else "")
    assert c["policy"] == (neut(r["policy"]) if r["policy"] else "")
h = byseq[2]
assert h["reason"] == "'=HYPERLINK(\"http://evil\",\"click\")", h["reason"]
assert h["request.host"] == "'+cmd|' /C calc'!A0"
assert h["policy"] == "'@evil/policy,with \"quotes\""
assert h["source.principal"] == "spiffe://example.org/ns/evil/sa/a|b=c\\d\ne"
assert h["request.path"] == "/x|y=z\\w\r\nInjected: 1"
assert byseq[3]["reason"] == "'-2+3" and byseq[3]["request.host"] == "'\tpayments"
# every record ends with CRLF; quoted fields may hold bare LF
assert raw.count(b"\r\n") >= len(rows)
print("ok")
PY
expect_eq "CSV parses back with Python's csv: columns, quoting, formulas neutralized" "0:ok" "$RC:$OUT${ERR:+ $ERR}"

expect_eq "export -o creates its file 0600 (the export is as private as the trail)" 600 "$(stat -c %a "$TMP/all.csv")"
if command -v script >/dev/null 2>&1; then
    script -qec "$W audit export $CLEAN --format cef -o $TMP/tty.cef" /dev/null >"$TMP/tty.out" 2>&1
    expect_match "on a terminal, export reports progress on stderr" 'exported 1000 of 1000 records' "$(cat "$TMP/tty.out")"
fi

# ---- export: CEF ---------------------------------------------------------------------------------

run "$W" audit export "$CLEAN" --format cef -o "$TMP/all.cef"
expect_eq "export cef exits 0" 0 "$RC"
expect_eq "CEF: one line per record" 1000 "$(wc -l <"$TMP/all.cef")"
H2=$(grep -E ' cn3=2$' "$TMP/all.cef")
expect_match "CEF: = and \\ escaped, newline as \\n in suser" ' suser=spiffe://example\.org/ns/evil/sa/a\|b\\=c\\\\d\\ne ' "$H2"
expect_match "CEF: CR LF as \\r\\n in request" ' request=/x\|y\\=z\\\\w\\r\\nInjected: 1 ' "$H2"
run $PY - "$TMP/all.cef" "$CLEAN/$SEG1" <<'PY'
import json, re, sys
lines = open(sys.argv[1], "rb").read().split(b"\n")
assert lines[-1] == b"" and all(b"\r" not in l for l in lines), "raw CR in CEF"
def header(l):
    parts, cur, i = [], "", 0
    while len(parts) < 7:
        c = l[i]
        if c == "\\": cur += l[i + 1]; i += 2; continue
        if c == "|": parts.append(cur); cur = ""; i += 1; continue
        cur += c; i += 1
    return parts, l[i:]
def ext(s):
    out, key, val, i = {}, None, "", 0
    toks = re.split(r"(?<!\\) (?=[A-Za-z0-9]+=)", s)
    for t in toks:
        k, v = re.match(r"([A-Za-z0-9]+)=(.*)", t, re.S).groups()
        v = re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), v)
        out[k] = v
    return out
recs = {json.loads(l)["seq"]: json.loads(l) for l in open(sys.argv[2], encoding="utf-8")}
n = 0
for l in lines[:-1]:
    hdr, rest = header(l.decode("utf-8"))
    assert hdr[0] == "CEF:0" and hdr[1] == "Ward" and hdr[2] == "ward-proxy", hdr
    e = ext(rest)
    seq = int(e["cn3"])
    if seq not in recs: continue
    r = recs[seq]
    assert hdr[4] == "authz:" + r["decision"], hdr
    # other control characters than TAB, CR and LF become U+FFFD
    norm = lambda s: re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "\ufffd", s)
    assert e["act"] == r["decision"] and e["suser"] == norm(r["source"]["principal"]), (e, r)
    assert e["request"] == norm(r["request"]["path"]), (e["request"], r["request"])
    assert e["requestMethod"] == r["request"]["method"]
    assert e["reason"] == norm(r["reason"]) and e["externalId"] == r["id"]
    n += 1
assert n == 400, n
print("ok")
PY
expect_eq "CEF parses back: header fields, escaped extensions decode to the record" "0:ok" "$RC:$OUT${ERR:+ $ERR}"

# ---- export: OCSF --------------------------------------------------------------------------------

run "$W" audit export "$CLEAN" --format ocsf -o "$TMP/all.ocsf"
expect_eq "export ocsf exits 0" 0 "$RC"
expect_match "OCSF: the gap record is left out and counted on stderr" '1 gap record or CA rotation event left out' "$ERR"
run $PY - "$TMP/all.ocsf" "$CLEAN" <<'PY'
import calendar, datetime, json, os, sys
recs = {}
d = sys.argv[2]
for n in sorted(os.listdir(d)):
    if n.startswith("segment-"):
        for l in open(os.path.join(d, n), encoding="utf-8"):
            r = json.loads(l)
            if "gap" not in r: recs[r["id"]] = r
acts = {"POST": 1, "GET": 2, "HEAD": 2, "PUT": 3, "PATCH": 3, "DELETE": 4}
n = 0
for l in open(sys.argv[1], encoding="utf-8"):
    e = json.loads(l)
    for k in ("activity_id", "category_uid", "class_uid", "type_uid", "severity_id", "time",
              "metadata", "actor", "api", "src_endpoint", "dst_endpoint", "http_request",
              "authorizations", "status_id"):
        assert k in e, k
    assert e["class_uid"] == 6003 and e["category_uid"] == 6
    assert e["type_uid"] == 6003 * 100 + e["activity_id"]
    assert e["metadata"]["version"] == "1.1.0"
    assert e["metadata"]["product"]["name"] == "Ward" and e["metadata"]["product"]["vendor_name"] == "Ward"
    r = recs[e["metadata"]["uid"]]
    assert e["activity_id"] == acts.get(r["request"]["method"], 99), (e["activity_id"], r["request"])
    assert e["api"]["operation"] == r["request"]["method"]
    assert e["api"]["request"]["uid"] == r["id"]
    assert e["api"]["service"]["name"] == r["destination"]["service"]
    assert e["actor"]["user"]["uid"] == r["source"]["principal"] == e["actor"]["user"]["name"]
    assert e["src_endpoint"] == {"ip": r["source"]["ip"], "port": r["source"]["port"]}
    assert e["dst_endpoint"] == {"port": r["destination"]["port"], "svc_name": r["destination"]["service"]}
    assert e["http_request"]["url"] == {"hostname": r["request"]["host"], "path": r["request"]["path"]}
    assert e["http_response"]["code"] == r["response"]["status"]
    assert e["metadata"]["correlation_uid"] == r["trace_id"]
    a = e["authorizations"][0]
    assert a["decision"] == r["decision"] and a["policy"]["name"] == (r["policy"] or "default")
    if r["policy"]:
        assert a["policy"]["uid"] == "%s#%d" % (r["policy"], r["rule"])
    assert (len(e["authorizations"]) == 2) == (r["dry_run"] is not None)
    assert e["status_id"] == (1 if r["decision"] == "allow" else 2)
    t = datetime.datetime.strptime(r["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert e["time"] == calendar.timegm(t.timetuple()) * 1000 + t.microsecond // 1000
    n += 1
assert n == len(recs) == 999, (n, len(recs))
print("ok")
PY
expect_eq "OCSF parses with Python json: class 6003, required fields, every mapping" "0:ok" "$RC:$OUT${ERR:+ $ERR}"

# ---- export: filters -----------------------------------------------------------------------------

# expected FILTER... : records of the clean trail that Python selects (count)
expected() {
    $PY - "$CLEAN" "$@" <<'PY'
import json, os, sys
d, expr = sys.argv[1], sys.argv[2]
n = 0
for f in sorted(os.listdir(d)):
    if f.startswith("segment-"):
        for l in open(os.path.join(d, f), encoding="utf-8"):
            r = json.loads(l)
            if eval(expr): n += 1
print(n)
PY
}

run "$W" audit export "$CLEAN" --since 2026-11-26T02:05:00Z --until 2026-11-26T02:06:00Z
expect_eq "--since/--until: since inclusive, until exclusive (seq 301..360)" "60 301 360" \
    "$(echo "$OUT" | wc -l) $(echo "$OUT" | head -1 | sed 's/.*"seq":\([0-9]*\),.*/\1/') $(echo "$OUT" | tail -1 | sed 's/.*"seq":\([0-9]*\),.*/\1/')"
run "$W" audit export "$CLEAN" --since 2026-11-26T03:05:00+01:00 --until 2026-11-26T02:05:01.5Z
expect_eq "--since with an offset, --until with a fraction" 2 "$(echo "$OUT" | wc -l)"
run "$W" audit export "$CLEAN" --format jsonl --where decision=deny
expect_eq "--where decision=deny" "$(expected 'r.get("decision") == "deny"')" "$(echo "$OUT" | wc -l)"
expect_eq "--where decision=deny: JSONL lines are as stored" "" "$(echo "$OUT" | grep -v '"decision":"deny"')"
P=spiffe://example.org/ns/shop/sa/checkout
run "$W" audit export "$CLEAN" --where decision=deny --where "source.principal=$P"
expect_eq "--where with two keys (AND)" "$(expected "r.get('decision') == 'deny' and r.get('source', {}).get('principal') == '$P'")" "$(echo "$OUT" | wc -l)"
run "$W" audit export "$CLEAN" --where request.method=PUT --where request.method=DELETE --where direction=outbound
expect_eq "--where with one key twice (OR)" "$(expected "r.get('request', {}).get('method') in ('PUT', 'DELETE') and r.get('direction') == 'outbound'")" "$(echo "$OUT" | wc -l)"
run "$W" audit export "$CLEAN" --where 'source.principal=spiffe://example.org/ns/shop/*' --where 'destination.service!=payments'
expect_eq "--where with a prefix and a negation" "$(expected "r.get('source', {}).get('principal', '').startswith('spiffe://example.org/ns/shop/') and r.get('destination', {}).get('service') != 'payments' and 'gap' not in r")" "$(echo "$OUT" | wc -l)"
run "$W" audit export "$CLEAN" --where policy=
expect_eq "--where policy= (null: default decisions and the gap record)" "$(expected "r.get('policy') is None")" "$(echo "$OUT" | wc -l)"

# relative times: records 10 minutes apart, the newest 5 minutes old
START=$(date -u -d '-115 minutes' +%Y-%m-%dT%H:%M:%SZ)
$PY "$FIX" gen "$TMP/recent" --records 12 --step-ms 600000 --start "$START" >/dev/null
run "$W" audit query "$TMP/recent" --since 1h --count
expect_eq "--since 1h: the records of the last hour" 6 "$OUT"
run "$W" audit query "$TMP/recent" --since 90m --until 30m --count
expect_eq "--since 90m --until 30m" 6 "$OUT"

# ---- query ---------------------------------------------------------------------------------------

run "$W" audit query "$CLEAN" --where decision=deny --count
expect_eq "query --count" "$(expected 'r.get("decision") == "deny"')" "$OUT"
run "$W" audit query "$CLEAN" --where decision=deny --count-by source.principal
expect_eq "query --count-by exits 0" 0 "$RC"
WANT=$($PY - "$CLEAN" <<'PY'
import collections, json, os, sys
d = sys.argv[1]
c = collections.Counter()
for f in sorted(os.listdir(d)):
    if f.startswith("segment-"):
        for l in open(os.path.join(d, f), encoding="utf-8"):
            r = json.loads(l)
            if r.get("decision") == "deny":
                c[r["source"]["principal"].replace("\n", "\\n")] += 1
w = len(str(max(c.values())))
for k, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0].encode())):
    print("%*d %s" % (w, n, k))
PY
)
expect_eq "query --count-by source.principal: 'count key' lines, most first" "$WANT" "$OUT"
run "$W" audit query "$CLEAN" --where decision=deny --count-by source.principal --top 2
expect_eq "query --top 2" "$(echo "$WANT" | head -2)" "$OUT"
run "$W" audit query "$CLEAN" --limit 3
expect_eq "query --limit 3 lists 3 records" 3 "$(echo "$OUT" | wc -l)"
expect_match "query lists ts, decision, source, service, method, path, policy and seq" '^2026-11-26T02:00:00\.000000Z (allow|deny) (inbound|outbound) spiffe://[^ ]+ -> [a-z]+ [A-Z]+ payments /[^ ]* [0-9]+ [^ ]+ seq=1$' "$(echo "$OUT" | head -1)"
expect_match "query escapes control characters" 'a\|b=c\\d\\ne -> ' "$(echo "$OUT" | sed -n 2p)"
run "$W" audit query "$CLEAN" --where gap=3
expect_match "query shows gap records" ' gap: 3 record\(s\) dropped seq=500$' "$OUT"

# a line that is not a record: left out, named, exit 1
fresh
chmod u+w "$TMP/t/$SEG2"
sed -i '10s/.*/not a record/' "$TMP/t/$SEG2"
run "$W" audit query "$TMP/t" --count
expect_eq "query over a damaged line: exit 1" 1 "$RC"
expect_eq "... counts the records around it" 999 "$OUT"
expect_match "... and names the line" "$SEG2:10" "$ERR"

finish
