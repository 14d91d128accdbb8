#!/usr/bin/env bash
# test_wardd.sh - wardd as operators and workloads use it: curl over the admin socket and HTTPS, openssl, an independent X.509/JWT check in Python.
. "$(dirname "$0")/lib.sh"

W="$BIN/wardd"
TD=example.org
D="$TMP/data"
LOG="$TMP/wardd.log"
WPID="" RPID=""
trap '[ -n "$WPID" ] && kill -KILL "$WPID" 2>/dev/null; [ -n "$RPID" ] && kill -KILL "$RPID" 2>/dev/null; rm -rf "$TMP"' EXIT

if [ ! -x "$W" ]; then
    fail "wardd is built" "missing $W (run make)"
    finish
fi
for tool in curl openssl python3 timeout; do
    if ! command -v "$tool" >/dev/null; then
        fail "$tool is installed"
        finish
    fi
done

# ---- helpers -----------------------------------------------------------------------------

cat >"$TMP/wardd.yaml" <<'EOF'
# short deadlines so slow clients are seen quickly
header_timeout: 2s
body_timeout: 2s
attest_failures: 12
EOF

# launch DIR LOGFILE [extra flags...]: starts a wardd on a free port; sets LPID and LPORT.
launch() {
    local dir=$1 log=$2 before now
    shift 2
    before=$(grep -c 'bound port' "$log" 2>/dev/null)
    "$W" --trust-domain "$TD" --data-dir "$dir" --listen 127.0.0.1:0 --config "$TMP/wardd.yaml" "$@" \
        2>>"$log" &
    LPID=$!
    LPORT=""
    for _ in $(seq 100); do
        now=$(grep -c 'bound port' "$log" 2>/dev/null)
        if [ "${now:-0}" -gt "${before:-0}" ]; then
            LPORT=$(grep -o 'bound port [0-9]*' "$log" | tail -1 | awk '{print $3}')
            return 0
        fi
        kill -0 "$LPID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# start_wardd: the wardd under test (WPID, PORT).
start_wardd() {
    launch "$D" "$LOG" "$@"
    local rc=$?
    WPID=$LPID
    PORT=$LPORT
    return $rc
}

# stop_wardd: SIGTERM; sets STOP_RC.
stop_wardd() {
    kill -TERM "$WPID"
    STOP_RC=0
    timeout 10 tail --pid="$WPID" -f /dev/null || STOP_RC=124
    wait "$WPID" 2>/dev/null || STOP_RC=$?
    WPID=""
}

# api METHOD PATH [curl args...]: HTTPS to wardd (no CA pinning: curl -k; the served
# certificate is checked separately); sets CODE and BODY.
api() {
    local m=$1 p=$2
    shift 2
    local out
    out=$(timeout 15 curl -sk --max-time 10 -X "$m" -w '\n%{http_code}' "$@" "https://127.0.0.1:$PORT$p")
    CODE=${out##*$'\n'}
    BODY=${out%$'\n'*}
}

# admin METHOD PATH [curl args...]: the admin API over the Unix socket.
admin() {
    local m=$1 p=$2
    shift 2
    local out
    out=$(timeout 15 curl -s --max-time 10 --unix-socket "$D/admin.sock" -X "$m" -w '\n%{http_code}' \
        "$@" "http://wardd$p")
    CODE=${out##*$'\n'}
    BODY=${out%$'\n'*}
}

# jget KEY: a top-level member of the JSON on stdin.
jget() {
    python3 -c 'import json,sys
v = json.load(sys.stdin).get(sys.argv[1])
print(v if isinstance(v, str) else json.dumps(v))' "$1" 2>/dev/null
}

# new_token ID [TTL]: prints a join token.
# The audit trail of identity events (default DATA_DIR/audit).
TRAIL="$D/audit"
WARDCTL="$BIN/wardctl"
# trail_has DIR PATTERN: waits (up to 3 s) until a record of the trail in DIR matches
# the extended regex PATTERN (records are written by the writer thread, a few ms after
# the answer), then prints the matching records.
trail_has() {
    local dir=$1 pat=$2
    for _ in $(seq 30); do
        if cat "$dir"/segment-*.jsonl 2>/dev/null | grep -E -- "$pat"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}
# trail_n DIR: the number of records in the trail (after the writer caught up).
trail_n() {
    sleep 0.3
    cat "$1"/segment-*.jsonl 2>/dev/null | wc -l
}

new_token() {
    local body
    if [ $# -gt 1 ]; then
        body=$(printf '{"spiffe_id":"%s","ttl":"%s"}' "$1" "$2")
    else
        body=$(printf '{"spiffe_id":"%s"}' "$1")
    fi
    admin POST /v1/admin/tokens -H 'Content-Type: application/json' -d "$body"
    printf '%s' "$BODY" | jget token
}

# new_csr NAME [openssl req args...]: NAME.key, NAME.csr
new_csr() {
    local n=$1
    shift
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=x \
        -keyout "$TMP/$n.key" -out "$TMP/$n.csr" "$@" 2>/dev/null
}

# json_body FILE [token]: {"token": ..., "csr": <FILE>} (token omitted when not given)
json_body() {
    python3 -c 'import json,sys
d = {"csr": open(sys.argv[1]).read()}
if len(sys.argv) > 2: d["token"] = sys.argv[2]
print(json.dumps(d))' "$@"
}

attest() { # TOKEN CSRNAME
    json_body "$TMP/$2.csr" "$1" >"$TMP/body.json"
    api POST /v1/attest -H 'Content-Type: application/json' --data-binary @"$TMP/body.json"
}

# check_svid PEM_FILE KEY_FILE ID BUNDLE_JSON_FILE: an independent X509-SVID check
# (Python's cryptography): prints "ok" or what is wrong.
check_svid() {
    python3 - "$@" <<'EOF'
import base64, datetime, json, re, sys
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
pem, keyf, want, bundlef = sys.argv[1:5]
blocks = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", open(pem, "rb").read(), re.S)
chain = [x509.load_pem_x509_certificate(b) for b in blocks]
leaf = chain[0]
san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
uris = san.get_values_for_type(x509.UniformResourceIdentifier)
problems = []
if uris != [want] or len(list(san)) != 1:
    problems.append("SAN %r" % list(san))
bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
if bc.ca:
    problems.append("CA=true")
ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
if not ku.critical or not ku.value.digital_signature or ku.value.key_cert_sign or ku.value.crl_sign:
    problems.append("key usage")
eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
if ExtendedKeyUsageOID.SERVER_AUTH not in eku or ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
    problems.append("EKU")
if leaf.serial_number < 2 ** 56:
    problems.append("serial too small")
utc = datetime.timezone.utc
now = datetime.datetime.now(utc)
nb = getattr(leaf, "not_valid_before_utc", None) or leaf.not_valid_before.replace(tzinfo=utc)
na = getattr(leaf, "not_valid_after_utc", None) or leaf.not_valid_after.replace(tzinfo=utc)
if not (nb <= now <= na):
    problems.append("not valid now")
if not isinstance(leaf.public_key(), ec.EllipticCurvePublicKey) or leaf.public_key().curve.name != "secp256r1":
    problems.append("not P-256")
if keyf != "-":
    key = serialization.load_pem_private_key(open(keyf, "rb").read(), None)
    if key.public_key().public_numbers() != leaf.public_key().public_numbers():
        problems.append("not the CSR's key")
bundle = json.load(open(bundlef))
roots = [x509.load_der_x509_certificate(base64.b64decode(k["x5c"][0]))
         for k in bundle["keys"] if k.get("use") == "x509-svid"]
# walk the chain up to an authority of the bundle
cert, ok = leaf, False
for issuer in chain[1:] + roots:
    try:
        issuer.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                   ec.ECDSA(cert.signature_hash_algorithm))
    except Exception:
        continue
    if issuer in roots:
        ok = True
        break
    cert = issuer
if not ok:
    problems.append("does not chain to the bundle")
print("ok" if not problems else "; ".join(problems))
EOF
}

# ---- flags ---------------------------------------------------------------------------------

"$W" --help >"$TMP/out" 2>&1
expect_eq "wardd --help exits 0" 0 "$?"
expect_match "--help documents the flags" '--trust-domain.*--data-dir' "$(tr '\n' ' ' <"$TMP/out")"
"$W" --data-dir "$D" >/dev/null 2>"$TMP/err"
expect_eq "missing --trust-domain is a usage error" 2 "$?"
"$W" --trust-domain Bad_TD --data-dir "$D" >/dev/null 2>"$TMP/err"
expect_eq "an invalid trust domain is a usage error" 2 "$?"
printf 'trust_domain: example.org\nbogus: 1\n' >"$TMP/bad.yaml"
"$W" --data-dir "$D" --config "$TMP/bad.yaml" >/dev/null 2>"$TMP/err"
expect_eq "an unknown config key is a usage error" 2 "$?"
expect_match "... named with its position" 'bad.yaml:2:1: unknown key "bogus"' "$(cat "$TMP/err")"
"$W" --trust-domain "$TD" --data-dir "$D" --ca-ttl 5parsecs >/dev/null 2>"$TMP/err"
expect_eq "a bad duration is a usage error" 2 "$?"

# ---- start -------------------------------------------------------------------------------

# A second wardd with a one-minute CA rotates while the rest runs: it prepares
# the next CA at 30 s and activates it at 50 s.
RD="$TMP/rot"
RLOG="$TMP/rot.log"
rot_bundle() {
    timeout 15 curl -sk --max-time 10 "https://127.0.0.1:$RPORT/v1/bundle"
}
rot_akid() {
    timeout 10 openssl s_client -connect "127.0.0.1:$RPORT" </dev/null 2>/dev/null |
        openssl x509 -noout -ext authorityKeyIdentifier 2>/dev/null | tail -1
}
if launch "$RD" "$RLOG" --ca-ttl 60s --svid-ttl 20s; then
    RPID=$LPID
    RPORT=$LPORT
    ROT_T0=$(date +%s)
    seq_a=$(rot_bundle | jget spiffe_sequence) # before the rotation (at 30 s and 50 s)
    akid_a=$(rot_akid)
fi

if ! start_wardd; then
    fail "wardd starts" "$(tail -5 "$LOG")"
    finish
fi
pass "wardd starts on a free port ($PORT)"
expect_eq "the data dir is private" 700 "$(stat -c %a "$D")"
expect_eq "the admin socket is mode 0600" 600 "$(stat -c %a "$D/admin.sock")"
expect_eq "the admin socket is a socket" socket "$(stat -c %F "$D/admin.sock" | awk '{print $NF}')"
key_modes=$(stat -c %a "$D"/ca/*.key | sort -u | tr '\n' ' ')
expect_eq "CA keys are mode 0600" "600 " "$key_modes"

"$W" --trust-domain "$TD" --data-dir "$D" --listen 127.0.0.1:0 >/dev/null 2>"$TMP/err"
expect_eq "a second wardd on the same data dir refuses to start" 1 "$?"
expect_match "... and says why" 'another wardd' "$(cat "$TMP/err")"

# ---- the served certificate, checked independently ---------------------------------------

api GET /v1/bundle
expect_eq "GET /v1/bundle answers 200" 200 "$CODE"
printf '%s' "$BODY" >"$TMP/bundle.json"
expect_match "the bundle has x509-svid and jwt-svid keys" '"use":"x509-svid".*"use":"jwt-svid"|"use":"jwt-svid".*"use":"x509-svid"' "$BODY"
seq1=$(printf '%s' "$BODY" | jget spiffe_sequence)
expect_match "the bundle has a spiffe_sequence" '^[0-9]+$' "$seq1"
expect_match "the bundle has a spiffe_refresh_hint" '^[0-9]+$' "$(printf '%s' "$BODY" | jget spiffe_refresh_hint)"
python3 -c 'import json,sys,base64,textwrap
for k in json.load(open(sys.argv[1]))["keys"]:
    if k["use"] == "x509-svid":
        print("-----BEGIN CERTIFICATE-----\n" + "\n".join(textwrap.wrap(k["x5c"][0], 64)) + "\n-----END CERTIFICATE-----")
' "$TMP/bundle.json" >"$TMP/bundle.pem"

timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -showcerts </dev/null >"$TMP/sclient" 2>&1
sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' "$TMP/sclient" >"$TMP/server.pem"
expect_match "the server speaks TLS 1.3" 'TLSv1\.3' "$(cat "$TMP/sclient")"
expect_eq "the server's certificate is an X509-SVID of spiffe://$TD/ward/server chained to the bundle" ok \
    "$(check_svid "$TMP/server.pem" - "spiffe://$TD/ward/server" "$TMP/bundle.json")"
timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -tls1_2 </dev/null >"$TMP/sclient12" 2>&1
expect_match "TLS 1.2 is refused" 'alert|error|no protocols' "$(cat "$TMP/sclient12")"
expect_match "openssl verifies the served certificate against bundle.pem (no host name)" ': OK$' \
    "$(openssl verify -CAfile "$TMP/bundle.pem" "$TMP/server.pem" 2>&1)"

# ---- admin API ------------------------------------------------------------------------------

PAY="spiffe://$TD/ns/shop/sa/payments"
admin POST /v1/admin/tokens -H 'Content-Type: application/json' -d "{\"spiffe_id\":\"$PAY\",\"ttl\":\"10m\"}"
expect_eq "token create answers 200" 200 "$CODE"
TOKEN=$(printf '%s' "$BODY" | jget token)
expect_match "... a printable token of at least 128 bits" '^[A-Za-z0-9_-]{22,}$' "$TOKEN"
expect_eq "... bound to the SPIFFE ID" "$PAY" "$(printf '%s' "$BODY" | jget spiffe_id)"
expect_match "... with its expiry" '^20[0-9-]+T[0-9:]+Z$' "$(printf '%s' "$BODY" | jget expires_at)"
admin POST /v1/admin/tokens -H 'Content-Type: application/json' -d '{"spiffe_id":"spiffe://other.org/ns/x/sa/y"}'
expect_eq "a token for another trust domain is refused" 400 "$CODE"
admin POST /v1/admin/tokens -H 'Content-Type: application/json' -d "{\"spiffe_id\":\"spiffe://$TD/ward/server\"}"
expect_eq "a token for wardd's own ID is refused" 400 "$CODE"
admin POST /v1/admin/tokens -H 'Content-Type: application/json' -d '{"spiffe_id":"spiffe://example.org/a/../b"}'
expect_eq "a malformed SPIFFE ID is refused" 400 "$CODE"
admin POST /v1/admin/tokens -H 'Content-Type: application/json' -d "{\"spiffe_id\":\"$PAY\",\"extra\":1}"
expect_eq "an unknown member is refused" 400 "$CODE"
admin POST /v1/admin/tokens -d "{\"spiffe_id\":\"$PAY\"}"
expect_eq "admin: a form body is 415" 415 "$CODE"
admin GET /v1/admin/tokens
expect_eq "admin: a wrong method is 405" 405 "$CODE"
admin GET /v1/admin/nothing
expect_eq "admin: an unknown path is 404" 404 "$CODE"
if command -v runuser >/dev/null && id nobody >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    out=$(timeout 10 runuser -u nobody -- curl -s --max-time 5 --unix-socket "$D/admin.sock" \
        -o /dev/null -w '%{http_code}' http://wardd/v1/admin/issuance 2>&1)
    expect_match "another user cannot reach the admin socket" '^000$' "$out"
    # behind the file mode, the peer's uid is checked too (SO_PEERCRED)
    chmod 0711 "$TMP" "$D"
    chmod 0666 "$D/admin.sock"
    out=$(timeout 10 runuser -u nobody -- curl -s --max-time 5 --unix-socket "$D/admin.sock" \
        -w ' %{http_code}' http://wardd/v1/admin/issuance 2>&1)
    chmod 0600 "$D/admin.sock"
    chmod 0700 "$TMP" "$D"
    expect_match "another user's request is 403 forbidden even if the socket mode is opened" \
        '"error":"forbidden".* 403$' "$out"
fi

# ---- attestation ---------------------------------------------------------------------------------

new_csr w1
attest "$TOKEN" w1
expect_eq "attest with token + CSR answers 200" 200 "$CODE"
printf '%s' "$BODY" >"$TMP/attest.json"
expect_eq "... for the token's SPIFFE ID" "$PAY" "$(jget spiffe_id <"$TMP/attest.json")"
jget svid <"$TMP/attest.json" >"$TMP/w1.pem"
expect_match "... with a PEM chain" 'BEGIN CERTIFICATE' "$(cat "$TMP/w1.pem")"
expect_match "... and the bundle" '"spiffe_sequence"' "$(jget bundle <"$TMP/attest.json")"
expect_eq "the SVID passes an independent check (one URI SAN, CA=false, KU, EKU, chain, key)" ok \
    "$(check_svid "$TMP/w1.pem" "$TMP/w1.key" "$PAY" "$TMP/bundle.json")"
meta=$(python3 - "$TMP/w1.pem" "$TMP/attest.json" <<'EOF'
import json, sys
from cryptography import x509
leaf = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
na = getattr(leaf, "not_valid_after_utc", None) or leaf.not_valid_after
print(na.strftime("%Y-%m-%dT%H:%M:%SZ"), json.load(open(sys.argv[2]))["expires_at"], "%x" % leaf.serial_number)
EOF
)
read -r cert_exp resp_exp serial <<<"$meta"
expect_eq "expires_at is the certificate's notAfter" "$cert_exp" "$resp_exp"
expect_match "svid.issued names the certificate's serial (audit trail)" "\"serial\":\"0*$serial\"" \
    "$(trail_has "$TRAIL" '"event":"svid.issued"')"
expect_match "openssl verifies the SVID against bundle.pem" ': OK$' \
    "$(openssl verify -CAfile "$TMP/bundle.pem" -purpose sslclient "$TMP/w1.pem" 2>&1)"

attest "$TOKEN" w1
expect_eq "reusing a token is 401" 401 "$CODE"
expect_eq "... token_used" token_used "$(printf '%s' "$BODY" | jget error)"
attest "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" w1
expect_eq "an unknown token is 401" 401 "$CODE"
expect_eq "... token_unknown" token_unknown "$(printf '%s' "$BODY" | jget error)"
SHORT=$(new_token "$PAY" 1s)
sleep 2
attest "$SHORT" w1
expect_eq "an expired token is 401 token_expired" "401 token_expired" "$CODE $(printf '%s' "$BODY" | jget error)"

T2=$(new_token "$PAY")
api POST /v1/attest -H 'Content-Type: application/json' --data-binary '{"token": "x", "csr": '
expect_eq "malformed JSON is 400" 400 "$CODE"
expect_eq "... bad_request" bad_request "$(printf '%s' "$BODY" | jget error)"
api POST /v1/attest -H 'Content-Type: application/json' --data-binary '["token"]'
expect_eq "a JSON array body is 400" 400 "$CODE"
api POST /v1/attest -H 'Content-Type: application/json' --data-binary "{\"token\":\"$T2\"}"
expect_eq "a missing csr is 400" 400 "$CODE"
json_body "$TMP/w1.csr" "$T2" >"$TMP/body.json"
api POST /v1/attest -H 'Content-Type: text/plain' --data-binary @"$TMP/body.json"
expect_eq "a wrong content type is 415" 415 "$CODE"
expect_eq "... unsupported_media_type" unsupported_media_type "$(printf '%s' "$BODY" | jget error)"
api POST /v1/attest -H 'Content-Type: application/json'
expect_eq "no body at all is 411" 411 "$CODE"
python3 -c 'import json; print(json.dumps({"token": "x", "csr": "A" * 70000}))' >"$TMP/big.json"
api POST /v1/attest -H 'Content-Type: application/json' --data-binary @"$TMP/big.json"
expect_eq "an oversized body is 413" 413 "$CODE"
expect_eq "... body_too_large" body_too_large "$(printf '%s' "$BODY" | jget error)"
api POST /v1/attest -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' --data-binary @"$TMP/body.json"
expect_eq "a chunked body is 501" 501 "$CODE"
api GET /v1/bundle -H "X-Big: $(head -c 70000 /dev/zero | tr '\0' a)"
expect_eq "headers over 60 KiB are 431" 431 "$CODE"
api POST /v1/attest -H 'Content-Type: application/json' --data-binary "{\"token\":\"$T2\",\"csr\":\"not a csr\"}"
expect_eq "a malformed CSR is 400" 400 "$CODE"
new_csr ca -addext basicConstraints=critical,CA:TRUE
attest "$T2" ca
expect_eq "a CSR asking for CA=true is 400" 400 "$CODE"
expect_match "... saying so" 'CA=true' "$(printf '%s' "$BODY" | jget message)"
new_csr w2
attest "$T2" w2
expect_eq "a token survives the refused CSRs and then attests" 200 "$CODE"
api GET /v1/nothing
expect_eq "an unknown path is 404" 404 "$CODE"
api GET /v1/attest
expect_eq "GET /v1/attest is 405" 405 "$CODE"

# ---- renewal and JWT-SVIDs over mTLS ---------------------------------------------------------------

new_csr r1
json_body "$TMP/r1.csr" >"$TMP/renew.json"
api POST /v1/renew --cert "$TMP/w1.pem" --key "$TMP/w1.key" -H 'Content-Type: application/json' \
    --data-binary @"$TMP/renew.json"
expect_eq "renew over mTLS answers 200" 200 "$CODE"
expect_eq "... with the same SPIFFE ID" "$PAY" "$(printf '%s' "$BODY" | jget spiffe_id)"
printf '%s' "$BODY" | jget svid >"$TMP/r1.pem"
expect_eq "... an SVID for the new key that passes the independent check" ok \
    "$(check_svid "$TMP/r1.pem" "$TMP/r1.key" "$PAY" "$TMP/bundle.json")"
api POST /v1/renew -H 'Content-Type: application/json' --data-binary @"$TMP/renew.json"
expect_eq "renew without a client certificate is 401" 401 "$CODE"
expect_eq "... client_certificate_required" client_certificate_required "$(printf '%s' "$BODY" | jget error)"

# a certificate of another trust domain (its own CA, made with openssl)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=other-ca -days 1 \
    -keyout "$TMP/oca.key" -out "$TMP/oca.pem" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign 2>/dev/null
new_csr o
printf 'subjectAltName=URI:spiffe://other.org/ns/x/sa/y\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' >"$TMP/o.ext"
openssl x509 -req -in "$TMP/o.csr" -CA "$TMP/oca.pem" -CAkey "$TMP/oca.key" -CAcreateserial -days 1 \
    -extfile "$TMP/o.ext" -out "$TMP/o.pem" 2>/dev/null
api POST /v1/renew --cert "$TMP/o.pem" --key "$TMP/o.key" -H 'Content-Type: application/json' \
    --data-binary @"$TMP/renew.json"
expect_eq "renew with another trust domain's certificate is 401 client_certificate_invalid" \
    "401 client_certificate_invalid" "$CODE $(printf '%s' "$BODY" | jget error)"

# an expired SVID signed by wardd's own CA key (as root we can read it)
python3 - "$D" "$TMP/exp.pem" "$TMP/exp.key" "$PAY" <<'EOF' 2>"$TMP/pyerr"
import datetime, glob, sys
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
d, out, keyout, sid = sys.argv[1:5]
pem = sorted(glob.glob(d + "/ca/*.pem"))[0]
ca = x509.load_pem_x509_certificate(open(pem, "rb").read())
cakey = serialization.load_pem_private_key(open(pem[:-4] + ".key", "rb").read(), None)
key = ec.generate_private_key(ec.SECP256R1())
now = datetime.datetime.utcnow()
cert = (x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=2))
        .not_valid_after(now - datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(sid)]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(cakey, hashes.SHA256()))
open(out, "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(keyout, "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
EOF
if [ -s "$TMP/exp.pem" ]; then
    api POST /v1/renew --cert "$TMP/exp.pem" --key "$TMP/exp.key" -H 'Content-Type: application/json' \
        --data-binary @"$TMP/renew.json"
    expect_eq "renew with an expired SVID is 401 client_certificate_invalid" \
        "401 client_certificate_invalid" "$CODE $(printf '%s' "$BODY" | jget error)"
    expect_match "... naming the expiry" 'expire' "$(printf '%s' "$BODY" | jget message)"
else
    fail "an expired test SVID could be made" "$(cat "$TMP/pyerr")"
fi

AUD="spiffe://$TD/ns/shop/sa/inventory"
api POST /v1/jwt --cert "$TMP/w1.pem" --key "$TMP/w1.key" -H 'Content-Type: application/json' \
    --data-binary "{\"audience\":[\"$AUD\"],\"ttl\":\"2m\"}"
expect_eq "a JWT-SVID over mTLS answers 200" 200 "$CODE"
JWT=$(printf '%s' "$BODY" | jget token)
expect_eq "... for the client's ID" "$PAY" "$(printf '%s' "$BODY" | jget spiffe_id)"
jwt_check=$(python3 - "$JWT" "$TMP/bundle.json" "$PAY" "$AUD" <<'EOF'
import base64, json, sys, time
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
tok, bundlef, sub, aud = sys.argv[1:5]
b64 = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
h, p, s = tok.split(".")
hdr, claims, sig = json.loads(b64(h)), json.loads(b64(p)), b64(s)
assert sorted(hdr) == ["alg", "kid", "typ"] and hdr["alg"] == "ES256", hdr
jwk = [k for k in json.load(open(bundlef))["keys"] if k.get("use") == "jwt-svid" and k["kid"] == hdr["kid"]][0]
num = lambda v: int.from_bytes(b64(v), "big")
pub = ec.EllipticCurvePublicNumbers(num(jwk["x"]), num(jwk["y"]), ec.SECP256R1()).public_key()
pub.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")),
           (h + "." + p).encode(), ec.ECDSA(hashes.SHA256()))
aud_ok = claims["aud"] == [aud] or claims["aud"] == aud
assert claims["sub"] == sub and aud_ok and 0 < claims["exp"] - time.time() <= 120, claims
print("ok")
EOF
)
expect_eq "... an ES256 JWT verified independently against the bundle's jwt-svid key" ok "$jwt_check"
api POST /v1/jwt -H 'Content-Type: application/json' --data-binary "{\"audience\":[\"$AUD\"]}"
expect_eq "a JWT-SVID without a client certificate is 401" 401 "$CODE"
api POST /v1/jwt --cert "$TMP/w1.pem" --key "$TMP/w1.key" -H 'Content-Type: application/json' \
    --data-binary '{"audience":[]}'
expect_eq "an empty audience is 400" 400 "$CODE"

# ---- slow clients ------------------------------------------------------------------------------------

exec {silent}<>"/dev/tcp/127.0.0.1/$PORT"
slow=()
for _ in 1 2 3 4 5 6 7 8; do
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
    slow+=("$fd")
done
api GET /v1/bundle
expect_eq "others are served while silent connections are open" 200 "$CODE"
out=$({ printf 'GET /v1/bundle HTTP/1.1\r\nHost: wardd\r\n'; sleep 4; } |
    timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -quiet 2>/dev/null)
expect_match "a request head that never ends gets 408" '^HTTP/1.1 408' "$out"
expect_match "... request_timeout" '"error":"request_timeout"' "$out"
start=$(date +%s)
timeout 8 cat <&"$silent" >"$TMP/silent.out"
rc=$?
expect_eq "a silent connection is closed by the server (header deadline)" "0" "$rc"
expect_eq "... without a byte" 0 "$(wc -c <"$TMP/silent.out")"
expect_match "... within the deadline" '^[0-5]$' "$(($(date +%s) - start))"
exec {silent}<&-
for fd in "${slow[@]}"; do exec {fd}<&-; done
api GET /v1/bundle
expect_eq "the server still serves after slow clients" 200 "$CODE"

# ---- events ------------------------------------------------------------------------------------------

# Identity events are records of wardd's audit trail (docs/audit.md, "Identity-event records").
trail_n "$TRAIL" >/dev/null
cat "$TRAIL"/segment-*.jsonl >"$TMP/trail.jsonl"
rec() { # EVENT PYTHON-CONDITION: "ok" when a record of that event satisfies the condition on r
    python3 - "$TMP/trail.jsonl" "$1" "$2" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
hits = [r for r in recs if r.get("event") == sys.argv[2]]
ok = any(eval(sys.argv[3], {"r": r}) for r in hits)
print("ok" if ok else "no %s record with %s among %d: %s" % (sys.argv[2], sys.argv[3], len(hits), hits[-1:]))
EOF
}
expect_eq "svid.issued: subject, serial, not_after, via, token_id, client address, 200" ok \
    "$(rec svid.issued 'r["subject"]=="spiffe://example.org/ns/shop/sa/payments" and len(r["serial"])>=16 and r["not_after"].endswith("Z") and r["via"]=="attest" and len(r["token_id"])==16 and r["source"]["ip"]=="127.0.0.1" and r["source"]["port"]>0 and r["response"]=={"status":200} and r["outcome"]=="success" and r["node"]=="spiffe://example.org/ward/server"')"
expect_eq "svid.issued on renewal names the client's SPIFFE ID as source.principal" ok \
    "$(rec svid.issued 'r["via"]=="renew" and r["source"]["principal"]==r["subject"]')"
expect_eq "token.refused: outcome failure, error token_used, reason, status 401" ok \
    "$(rec token.refused 'r["outcome"]=="failure" and r["error"]=="token_used" and "used" in r["reason"] and r["response"]["status"]==401 and len(r["token_id"])==16')"
expect_eq "token.created: subject, token_id, not_after, the admin's uid" ok \
    "$(rec token.created 'r["subject"].startswith("spiffe://example.org/") and len(r["token_id"])==16 and r["not_after"] and r["source"]["uid"] is not None and r["via"]=="admin"')"
expect_eq "jwt.issued: audience list, not_after, the client's SPIFFE ID" ok \
    "$(rec jwt.issued 'isinstance(r["audience"], list) and len(r["audience"])>=1 and r["not_after"] and r["source"]["principal"]==r["subject"]')"
expect_eq "refusals by the HTTP layer are recorded (http.refused 413 body_too_large)" ok \
    "$(rec http.refused 'r["response"]["status"]==413 and r["error"]=="body_too_large"')"
expect_eq "svid.refused is recorded for a bad CSR (with the reason)" ok \
    "$(rec svid.refused '"CA=true" in (r["reason"] or "") and r["error"]=="bad_request"')"
expect_eq "wardd's own server SVID is recorded (via server)" ok \
    "$(rec svid.issued 'r["via"]=="server" and r["subject"]=="spiffe://example.org/ward/server"')"
bad_lines=$(python3 -c 'import json,sys
n = 0
keys = ["v","seq","ts","id","node","event","outcome","subject","serial","not_after","via","token_id","audience","key_id","bundle_sequence","source","response","error","reason","prev","hash"]
for line in open(sys.argv[1]):
    e = json.loads(line)
    if [k for k in e if k != "truncated"] != keys or not e["ts"].endswith("Z") or e["v"] != 1: n += 1
print(n)' "$TMP/trail.jsonl")
expect_eq "every record has the identity-event keys, in order" 0 "$bad_lines"
leaked=0
for t in "$TOKEN" "$T2" "$SHORT"; do
    grep -qF -- "$t" "$TRAIL"/segment-*.jsonl "$LOG" && leaked=1
done
expect_eq "join tokens are never written (audit trail, stderr)" 0 "$leaked"
expect_eq "events.jsonl is no longer written" no "$([ -e "$D/events.jsonl" ] && echo yes || echo no)"

# one record per issuance and per refusal, in order
n0=$(trail_n "$TRAIL")
T6=$(new_token "$PAY")
new_csr w6
attest "$T6" w6
code_ok=$CODE
attest "$T6" w6
code_again=$CODE
n1=$(trail_n "$TRAIL")
expect_eq "token created, attested, reused: 200 then 401" "200 401" "$code_ok $code_again"
expect_eq "... exactly four new records: token.created token.redeemed svid.issued token.refused" \
    "4 token.created token.redeemed svid.issued token.refused" \
    "$((n1 - n0)) $(cat "$TRAIL"/segment-*.jsonl | tail -n +$((n0 + 1)) | python3 -c 'import json,sys; print(*[json.loads(l)["event"] for l in sys.stdin])')"

# the trail verifies, exports and answers queries
"$WARDCTL" audit verify "$TRAIL" >"$TMP/verify.out" 2>&1
expect_eq "wardctl audit verify passes on wardd's trail" "0" "$?"
expect_match "... every record checked" "verified: $n1 records" "$(cat "$TMP/verify.out")"
rm -rf "$TMP/tampered"
cp -a "$TRAIL" "$TMP/tampered"
seg=$(ls "$TMP/tampered"/segment-*.jsonl | tail -1)
chmod u+w "$seg"
sed -i '0,/"error":"token_used"/s//"error":"token_fine"/' "$seg"
"$WARDCTL" audit verify "$TMP/tampered" >"$TMP/verify2.out" 2>&1
vrc=$?
expect_eq "changing one identity record is detected (exit 1, modified)" "1 modified" \
    "$vrc $(grep -o 'modified' "$TMP/verify2.out" | head -1)"
"$WARDCTL" audit export "$TRAIL" --format csv >"$TMP/trail.csv"
expect_eq "CSV export parses back with the identity columns" ok "$(python3 - "$TMP/trail.csv" "$n1" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
ok = len(rows) == int(sys.argv[2])
ok = ok and any(r["event"] == "svid.issued" and r["outcome"] == "success" and r["serial"] and r["subject"] and r["via"] == "attest" and r["source.ip"] == "127.0.0.1" for r in rows)
ok = ok and any(r["event"] == "token.refused" and r["error"] == "token_used" and r["response.status"] == "401" for r in rows)
ok = ok and any(r["event"] == "jwt.issued" and r["audience"] for r in rows)
print("ok" if ok else "bad: %d rows" % len(rows))
EOF
)"
"$WARDCTL" audit export "$TRAIL" --format ocsf >"$TMP/trail.ocsf" 2>"$TMP/ocsf.err"
expect_eq "OCSF export: Authentication (3002) and Account Change (3001) events" ok "$(python3 - "$TMP/trail.ocsf" <<'EOF'
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
def ev(e): return e["unmapped"]["ward"]["event"]
iss = [e for e in evs if ev(e) == "svid.issued" and e["unmapped"]["ward"].get("via") == "attest"]
ref = [e for e in evs if ev(e) == "token.refused" and e["unmapped"]["ward"].get("via") == "attest"]
adm = [e for e in evs if ev(e) == "token.refused" and e["unmapped"]["ward"].get("via") == "admin"]
cre = [e for e in evs if ev(e) == "token.created"]
jwt = [e for e in evs if ev(e) == "jwt.issued"]
ok = bool(iss) and all(e["class_uid"] == 3002 and e["activity_id"] == 3 and e["status_id"] == 1 and e["user"]["uid"].startswith("spiffe://") and e["src_endpoint"]["ip"] == "127.0.0.1" and e["metadata"]["version"] == "1.1.0" for e in iss)
ok = ok and bool(ref) and all(e["class_uid"] == 3002 and e["status_id"] == 2 for e in ref) and any(e.get("status_code") == "token_used" for e in ref)
ok = ok and bool(cre) and all(e["class_uid"] == 3001 and e["activity_id"] == 1 for e in cre)
ok = ok and bool(jwt) and all(e["activity_id"] == 4 for e in jwt)
ok = ok and bool(adm) and all(e["class_uid"] == 3001 and e["activity_id"] == 99 for e in adm)
print("ok" if ok else "bad")
EOF
)"
"$WARDCTL" audit export "$TRAIL" --format cef >"$TMP/trail.cef"
expect_eq "CEF export: one line per record, signature identity:<event>" "$n1 ok" \
    "$(wc -l <"$TMP/trail.cef") $(grep -c '^CEF:0|Ward|wardd|[^|]*|identity:svid.issued|identity event|1|.* duser=spiffe://' "$TMP/trail.cef" | sed 's/^[1-9][0-9]*$/ok/')"
"$WARDCTL" audit export "$TRAIL" --format jsonl >"$TMP/trail.out.jsonl"
expect_eq "JSONL export is the records as stored" "" "$(cat "$TRAIL"/segment-*.jsonl | cmp - "$TMP/trail.out.jsonl" 2>&1)"
want=$(python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if (lambda r: r["event"]=="svid.issued" and r["via"]=="attest")(json.loads(l))))' "$TMP/trail.out.jsonl")
expect_eq "query --where event=svid.issued --where via=attest --count" "$want" \
    "$("$WARDCTL" audit query "$TRAIL" --where event=svid.issued --where via=attest --count)"
expect_match "query --where outcome=failure --count-by error counts refusals per error" \
    '[0-9]+ token_used' "$("$WARDCTL" audit query "$TRAIL" --where outcome=failure --count-by error)"
expect_match "query --where audience=... matches one of a JWT's audiences" '^[1-9]' \
    "$("$WARDCTL" audit query "$TRAIL" --where 'audience=spiffe://example.org/*' --count)"
expect_match "query lists identity events readably" 'svid.issued success spiffe://example.org/ns/shop/sa/payments <- 127.0.0.1 200 - serial=' \
    "$("$WARDCTL" audit query "$TRAIL" --where event=svid.issued)"
admin GET '/v1/admin/issuance?limit=2'
expect_eq "recent issuance answers 200" 200 "$CODE"
expect_eq "... at most limit records, most recent first (the attestation above)" '2 svid.issued True' \
    "$(printf '%s' "$BODY" | python3 -c 'import json,sys; r=json.load(sys.stdin)["records"]; print(len(r), r[0]["event"], r[0]["seq"] > r[1]["seq"])')"
admin GET '/v1/admin/issuance?limit=0'
expect_eq "a bad limit is 400" 400 "$CODE"

# ---- revocation ----------------------------------------------------------------------------------------

T3=$(new_token "$PAY")
admin DELETE "/v1/admin/tokens/$T3"
expect_eq "revoking a token answers 204" 204 "$CODE"
attest "$T3" w2
expect_eq "a revoked token cannot attest" 401 "$CODE"
admin DELETE "/v1/admin/tokens/$T3"
expect_eq "revoking it again is 404" 404 "$CODE"
expect_match "revocation is recorded" '"event":"token.revoked"' "$(trail_has "$TRAIL" '"event":"token.revoked"')"

# ---- failed guesses are rate-limited per address -------------------------------------------------------

T4=$(new_token "$PAY")
got429=""
for i in $(seq 15); do
    attest "guess-$i" w2
    if [ "$CODE" = 429 ]; then
        got429=$(printf '%s' "$BODY" | jget error)
        break
    fi
done
expect_eq "repeated failed token guesses get 429 rate_limited" rate_limited "$got429"
attest "$T4" w2
expect_eq "... and even a good token waits out the window from that address" 429 "$CODE"

# ---- restart: nothing lost -------------------------------------------------------------------------------

T5=$(new_token "$PAY")
api GET /v1/bundle
bundle_before=$BODY
stop_wardd
expect_eq "SIGTERM stops wardd with status 0" 0 "$STOP_RC"
expect_match "... saying so" 'wardd: stopped' "$(tail -2 "$LOG")"
expect_eq "... and removes its admin socket" no "$([ -e "$D/admin.sock" ] && echo yes || echo no)"
if ! start_wardd; then
    fail "wardd restarts" "$(tail -5 "$LOG")"
    finish
fi
api GET /v1/bundle
expect_eq "after a restart the bundle (CA, keys, sequence) is unchanged" "$bundle_before" "$BODY"
attest "$T5" w2
expect_eq "a token created before the restart attests after it" 200 "$CODE"
attest "$TOKEN" w2
expect_eq "a token used before the restart stays used" "401 token_used" "$CODE $(printf '%s' "$BODY" | jget error)"
api POST /v1/renew --cert "$TMP/w1.pem" --key "$TMP/w1.key" -H 'Content-Type: application/json' \
    --data-binary @"$TMP/renew.json"
expect_eq "an SVID issued before the restart still renews" 200 "$CODE"
admin GET '/v1/admin/issuance?limit=1000'
expect_match "recent issuance survives the restart (read back from the trail)" '"via":"attest"' "$BODY"

# kill -9, then a restart continues the chain
T7=$(new_token "$PAY")
attest "$T7" w2
sleep 0.3
last_before=$(tail -1 "$(ls "$TRAIL"/segment-*.jsonl | tail -1)" | jget seq)
kill -KILL "$WPID"
wait "$WPID" 2>/dev/null
WPID=""
if ! start_wardd; then
    fail "wardd restarts after kill -9" "$(tail -5 "$LOG")"
    finish
fi
T8=$(new_token "$PAY")
attest "$T8" w2
expect_eq "after kill -9 wardd issues again" 200 "$CODE"
sleep 0.3
"$WARDCTL" audit verify "$TRAIL" >"$TMP/verify3.out" 2>&1
expect_eq "... and the trail still verifies" 0 "$?"
seqs=$(cat "$TRAIL"/segment-*.jsonl | python3 -c 'import json,sys
s = [json.loads(l)["seq"] for l in sys.stdin]
print("contiguous" if s == list(range(1, len(s) + 1)) else "gap", len(s))')
expect_match "... seq continues past the last record before the kill ($last_before)" '^contiguous [0-9]+$' "$seqs"
if [ "${seqs#contiguous }" -gt "${last_before:-0}" ]; then
    pass "... with new records after it"
else
    fail "... with new records after it" "$seqs, before: $last_before"
fi
stop_wardd
expect_eq "wardd stops cleanly again" 0 "$STOP_RC"


# ---- an operator's upstream CA --------------------------------------------------------------------------

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=upstream -days 30 \
    -keyout "$TMP/up.key" -out "$TMP/up.pem" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
if launch "$TMP/updata" "$TMP/up.log" --upstream-cert "$TMP/up.pem" --upstream-key "$TMP/up.key"; then
    UPID=$LPID
    timeout 10 openssl s_client -connect "127.0.0.1:$LPORT" -showcerts </dev/null 2>/dev/null |
        sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' >"$TMP/upchain.pem"
    expect_match "under an upstream CA the served chain verifies to the upstream root" ': OK$' \
        "$(openssl verify -CAfile "$TMP/up.pem" -untrusted "$TMP/upchain.pem" "$TMP/upchain.pem" 2>&1)"
    timeout 15 curl -sk --max-time 10 "https://127.0.0.1:$LPORT/v1/bundle" >"$TMP/upbundle.json"
    expect_eq "... and the bundle publishes the upstream root" "$(openssl x509 -in "$TMP/up.pem" -outform DER | base64 -w0)" \
        "$(python3 -c 'import json,sys; print(*[k["x5c"][0] for k in json.load(open(sys.argv[1]))["keys"] if k["use"] == "x509-svid"])' "$TMP/upbundle.json")"
    kill -TERM "$UPID"
    wait "$UPID"
    expect_eq "... and stops cleanly" 0 "$?"
else
    fail "wardd starts under an upstream CA" "$(tail -3 "$TMP/up.log")"
fi

# ---- CA rotation: prepared, published, activated, the server SVID re-minted ------------------------------

if [ -n "$RPID" ]; then
    # wait for the activation at 5/6 of its lifetime (NotBefore is backdated 10 s: ~48 s)
    while [ $(($(date +%s) - ROT_T0)) -lt 51 ]; do sleep 1; done
    rot_bundle >"$TMP/bundle2.json"
    seq_b=$(jget spiffe_sequence <"$TMP/bundle2.json")
    n_x509=$(python3 -c 'import json,sys; print(sum(k["use"]=="x509-svid" for k in json.load(open(sys.argv[1]))["keys"]))' "$TMP/bundle2.json")
    if [ "${seq_b:-0}" -gt "${seq_a:-0}" ]; then
        pass "CA rotation raised the bundle sequence ($seq_a -> $seq_b)"
    else
        fail "CA rotation raised the bundle sequence" "$seq_a -> $seq_b"
    fi
    expect_match "the previous CA stays published beside the new one" '^[2-9]$' "$n_x509"
    expect_match "ca.prepared then ca.activated are logged" '^ca.prepared ca.activated ' \
        "$(grep -ho '"event":"ca\.[a-z]*"' "$RD"/audit/segment-*.jsonl | sed 's/.*:"//; s/"$//' | tr '\n' ' ')"
    akid_b=$(rot_akid)
    if [ -n "$akid_a" ] && [ -n "$akid_b" ] && [ "$akid_a" != "$akid_b" ]; then
        pass "the served certificate is re-minted by the new CA"
    else
        fail "the served certificate is re-minted by the new CA" "before: $akid_a" "after: $akid_b"
    fi
    timeout 10 openssl s_client -connect "127.0.0.1:$RPORT" -showcerts </dev/null 2>/dev/null |
        sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' >"$TMP/server2.pem"
    expect_eq "... and verifies against the rotated bundle" ok \
        "$(check_svid "$TMP/server2.pem" - "spiffe://$TD/ward/server" "$TMP/bundle2.json")"
    kill -TERM "$RPID"
    wait "$RPID"
    expect_eq "the rotating wardd stops cleanly" 0 "$?"
    RPID=""
else
    fail "a wardd with --ca-ttl 60s starts" "$(tail -5 "$RLOG")"
fi

finish
