#!/usr/bin/env bash
# test_identity_cli.sh - wardctl identity/svid against real wardd processes: join tokens, attestation, pinning, SVIDs checked by openssl and Python
. "$(dirname "$0")/lib.sh"

W="$BIN/wardctl"
D="$BIN/wardd"
TD=example.org
ID="spiffe://$TD/ns/shop/sa/payments"
PY=/usr/bin/python3 # Debian's, with python3-cryptography
PIDS=()

cleanup() {
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT

if [ ! -x "$W" ]; then
    fail "wardctl is built" "missing $W (run make)"
    finish
fi

# run CMD... : sets OUT, ERR, RC (every command under a timeout)
run() {
    timeout 20 "$@" >"$TMP/out" 2>"$TMP/err"
    RC=$?
    OUT=$(cat "$TMP/out")
    ERR=$(cat "$TMP/err")
}

# ---- help and usage errors (no wardd needed) ---------------------------------------

run "$W" --help
expect_match "wardctl --help lists identity and svid" 'identity .*svid ' "$(echo $OUT)"
for c in "identity" "identity token" "identity token create" "identity bundle" "svid" "svid fetch" "svid show"; do
    run "$W" $c --help
    expect_eq "$c --help exits 0" 0 "$RC"
    expect_match "$c --help documents exit statuses" '2  usage error' "$OUT"
done
run "$W" identity token create --help
expect_match "token create --help documents the default admin socket" 'WARD_ADMIN_SOCKET.*/var/lib/ward/admin.sock' "$(echo $OUT)"
run "$W" identity token create
expect_eq "token create without --spiffe-id exits 2" 2 "$RC"
run "$W" identity token create --spiffe-id spiffe://Example.org/x
expect_eq "token create with an invalid SPIFFE ID exits 2" 2 "$RC"
expect_match "the invalid ID is explained" 'spiffe-id' "$ERR"
run "$W" identity token create --spiffe-id "$ID" --ttl soon
expect_eq "token create with a bad --ttl exits 2" 2 "$RC"
run "$W" identity token create --spiffe-id "$ID" --admin-socket "$TMP/nope.sock"
expect_eq "token create with no wardd behind the socket exits 1" 1 "$RC"
expect_match "the unreachable socket is named" 'nope.sock' "$ERR"
run "$W" identity bundle --server https://127.0.0.1:1
expect_eq "bundle without a pin exits 2" 2 "$RC"
expect_match "bundle without a pin says how to pin" '--bundle FILE.*--insecure-bootstrap' "$ERR"
run "$W" identity bundle --server http://127.0.0.1:1 --insecure-bootstrap
expect_eq "bundle with a non-https server exits 2" 2 "$RC"
run "$W" svid fetch --server https://127.0.0.1:1 --token t --out "$TMP/x" --bundle /dev/null --insecure-bootstrap
expect_eq "fetch with both --bundle and --insecure-bootstrap exits 2" 2 "$RC"
run "$W" svid fetch --server https://127.0.0.1:1 --out "$TMP/x" --insecure-bootstrap
expect_eq "fetch without a token exits 2" 2 "$RC"
run "$W" svid fetch --server https://127.0.0.1:1 --token t --out "$TMP/x" --insecure-bootstrap
expect_eq "fetch from nobody exits 1" 1 "$RC"
expect_match "fetch from nobody names the address" 'connecting to 127.0.0.1:1' "$ERR"
run "$W" svid show
expect_eq "svid show without FILE exits 2" 2 "$RC"
run "$W" svid show "$TMP/missing.pem"
expect_eq "svid show of a missing file exits 2" 2 "$RC"

# ---- svid show on certificates made with openssl (no wardd needed) ----------------

mkcert() { # NAME EXTFILE-LINES... : a leaf NAME.pem signed by the test CA
    local name=$1; shift
    printf '%s\n' "$@" >"$TMP/$name.ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=t" \
        -keyout "$TMP/$name.key" -out "$TMP/$name.csr" 2>/dev/null &&
        openssl x509 -req -in "$TMP/$name.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" \
            -CAcreateserial -days 1 -extfile "$TMP/$name.ext" -out "$TMP/$name.pem" 2>/dev/null
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=Test CA" -days 2 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectAltName=URI:spiffe://$TD" -keyout "$TMP/ca.key" -out "$TMP/ca.pem" 2>/dev/null
mkcert good "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=URI:$ID"
mkcert two_uris "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "subjectAltName=URI:$ID,URI:spiffe://$TD/ns/x/sa/y"
mkcert signer "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyCertSign" \
    "subjectAltName=URI:$ID"
mkcert noncrit "basicConstraints=critical,CA:FALSE" "keyUsage=digitalSignature" "subjectAltName=URI:$ID"

run "$W" svid show "$TMP/good.pem"
expect_eq "svid show of a good SVID exits 0" 0 "$RC"
expect_match "svid show prints the SPIFFE ID" "SPIFFE ID: +$ID" "$OUT"
expect_match "svid show prints the issuer" 'Issuer: +O=Test CA' "$OUT"
expect_match "svid show prints serial and validity" 'Serial: +[0-9A-F]+.*Not before: +20[0-9-]+T.*Not after: +20.*expires in' "$(echo $OUT)"
expect_match "without --bundle only the leaf rules are claimed" 'valid X509-SVID \(leaf rules; chain and validity period not checked' "$OUT"
run "$W" svid show "$TMP/good.pem" --bundle "$TMP/ca.pem"
expect_eq "svid show --bundle of a good SVID exits 0" 0 "$RC"
expect_match "svid show --bundle checks the chain" 'Status: +valid X509-SVID \(chain to the bundle of example.org' "$OUT"
run "$W" svid show "$TMP/two_uris.pem"
expect_eq "two URI SANs: exit 1" 1 "$RC"
expect_match "two URI SANs: the reason" 'not a valid X509-SVID: .*2 URI SANs' "$OUT"
expect_match "two URI SANs: both are listed" "URI SANs: +$ID" "$OUT"
run "$W" svid show "$TMP/signer.pem"
expect_match "keyCertSign on a leaf is refused" 'not a valid X509-SVID: .*keyCertSign' "$OUT"
run "$W" svid show "$TMP/noncrit.pem"
expect_match "non-critical key usage is refused" 'not a valid X509-SVID: .*not critical' "$OUT"
run "$W" svid show "$TMP/ca.pem"
expect_eq "a CA certificate is not an SVID: exit 1" 1 "$RC"
run "$W" svid show "$TMP/good.pem" --bundle "$TMP/signer.pem"
expect_eq "a chain to an unrelated bundle: exit 1" 1 "$RC"
expect_match "a chain to an unrelated bundle: the reason" 'not a valid X509-SVID: .*unknown authority' "$OUT"
run "$W" svid show "$TMP/good.key"
expect_eq "svid show of a key file exits 2" 2 "$RC"

# ---- against real wardd processes -------------------------------------------------

if [ ! -x "$D" ]; then
    fail "wardd is built" "missing $D: wardd (cmd/wardd) is not built, so attestation, pinning and" \
        "the issued SVIDs cannot be tested end to end"
    finish
fi

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_wardd NAME TD : starts wardd with data dir $TMP/NAME; sets PORT_<NAME>
start_wardd() {
    local name=$1 td=$2 port
    port=$(free_port)
    mkdir -p "$TMP/$name"
    "$D" --trust-domain "$td" --data-dir "$TMP/$name" --listen "127.0.0.1:$port" \
        >"$TMP/$name.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        if [ -S "$TMP/$name/admin.sock" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            eval "PORT_$name=$port"
            return 0
        fi
        sleep 0.1
    done
    fail "wardd $name ($td) starts" "$(tail -5 "$TMP/$name.log")"
    return 1
}

if ! start_wardd w1 "$TD"; then finish; fi
S1="https://127.0.0.1:$PORT_w1"
SOCK="$TMP/w1/admin.sock"

run "$W" identity token create --spiffe-id "$ID" --admin-socket "$SOCK"
expect_eq "token create exits 0" 0 "$RC"
T1=$OUT
expect_match "token create prints one token" '^[A-Za-z0-9._~+/=-]{16,}$' "$T1"
WARD_ADMIN_SOCKET="$SOCK" run "$W" identity token create --spiffe-id "$ID" --ttl 5m --json
expect_eq "token create via WARD_ADMIN_SOCKET exits 0" 0 "$RC"
expect_match "token create --json has token, ID and expiry" '"token".*"spiffe_id".*"expires_at"' "$OUT"
T2=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["token"])' "$OUT" 2>/dev/null)
run "$W" identity token create --spiffe-id "$ID" --admin-socket "$SOCK"
T3=$OUT
run "$W" identity token create --spiffe-id "$ID" --admin-socket "$SOCK"
T4=$OUT

# first contact: insecure bootstrap
O1="$TMP/svid1"
run "$W" svid fetch --server "$S1" --token "$T1" --out "$O1" --insecure-bootstrap
expect_eq "svid fetch --insecure-bootstrap exits 0" 0 "$RC"
expect_match "insecure bootstrap says so on stderr" 'NOT verified' "$ERR"
expect_match "svid fetch reports the ID" "$ID valid until" "$OUT"
for f in svid.pem svid.key bundle.pem bundle.json; do
    if [ -s "$O1/$f" ]; then pass "fetch wrote $f"; else fail "fetch wrote $f"; fi
done
expect_eq "svid.key is mode 0600" 600 "$(stat -c %a "$O1/svid.key" 2>/dev/null)"
expect_match "svid.key is PKCS#8" '^-----BEGIN PRIVATE KEY-----' "$(head -1 "$O1/svid.key")"
expect_match "bundle.json is a SPIFFE bundle" '"spiffe_sequence"' "$(cat "$O1/bundle.json")"

# pinned: the bundle from the first fetch
O2="$TMP/svid2"
run "$W" svid fetch --server "$S1" --token "$T2" --out "$O2" --bundle "$O1/bundle.pem"
expect_eq "svid fetch --bundle (pinned PEM) exits 0" 0 "$RC"
if printf '%s' "$ERR" | grep -q 'NOT verified'; then fail "a pinned fetch does not warn"; else pass "a pinned fetch does not warn"; fi
O3="$TMP/svid3"
run "$W" svid fetch --server "$S1" --token "$T3" --out "$O3" --bundle "$O1/bundle.json"
expect_eq "svid fetch --bundle (pinned SPIFFE JSON) exits 0" 0 "$RC"

run "$W" svid show "$O2/svid.pem" --bundle "$O2/bundle.pem"
expect_eq "svid show of the fetched SVID exits 0" 0 "$RC"
expect_match "svid show: the fetched SVID is valid" 'Status: +valid X509-SVID \(chain' "$OUT"
expect_match "svid show: the fetched SVID has the ID" "SPIFFE ID: +$ID" "$OUT"
run "$W" svid show "$O2/svid.pem" --bundle "$O2/bundle.json"
expect_eq "svid show --bundle bundle.json exits 0" 0 "$RC"

# an independent look with openssl
TXT=$(openssl x509 -in "$O2/svid.pem" -noout -text 2>&1)
expect_eq "openssl: exactly one URI SAN" 1 "$(printf '%s\n' "$TXT" | grep -o 'URI:' | wc -l)"
expect_match "openssl: the URI SAN is the ID" "URI:$ID" "$TXT"
expect_match "openssl: CA:FALSE" 'CA:FALSE' "$TXT"
expect_match "openssl: key usage is critical with Digital Signature" 'Key Usage: critical.{0,40}Digital Signature' "$(echo $TXT)"
if printf '%s' "$TXT" | grep -Eq 'Certificate Sign|CRL Sign'; then fail "openssl: no keyCertSign/cRLSign"; else pass "openssl: no keyCertSign/cRLSign"; fi
expect_match "openssl: EKU server and client auth" 'TLS Web Server Authentication, TLS Web Client Authentication' "$TXT"
expect_match "openssl: ECDSA P-256" 'prime256v1|P-256' "$TXT"
run openssl verify -partial_chain -CAfile "$O2/bundle.pem" -untrusted "$O2/svid.pem" "$O2/svid.pem"
expect_eq "openssl verify: the SVID chains to bundle.pem" 0 "$RC"
expect_match "openssl verify says OK" 'svid.pem: OK' "$OUT"
run openssl pkey -in "$O2/svid.key" -pubout
KPUB=$OUT
run openssl x509 -in "$O2/svid.pem" -noout -pubkey
expect_eq "svid.key is the key of svid.pem" "$KPUB" "$OUT"

# and with Python's cryptography
if "$PY" -c 'import cryptography' 2>/dev/null; then
    run "$PY" - "$O2/svid.pem" "$O2/bundle.pem" "$ID" <<'EOF'
import sys
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.hazmat.primitives.asymmetric import ec
def load(path):  # every PEM certificate of a file (Debian 12's cryptography 38 has no loader for several)
    end = b"-----END CERTIFICATE-----"
    return [x509.load_pem_x509_certificate(b.strip() + b"\n" + end + b"\n")
            for b in open(path, "rb").read().split(end) if b.strip()]
certs, cas = load(sys.argv[1]), load(sys.argv[2])
leaf = certs[0]
san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
uris = san.get_values_for_type(x509.UniformResourceIdentifier)
assert uris == [sys.argv[3]], uris
assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
assert ku.critical and ku.value.digital_signature
assert not ku.value.key_cert_sign and not ku.value.crl_sign
eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey) and leaf.public_key().curve.name == "secp256r1"
assert leaf.serial_number.bit_length() >= 63
chain = certs[1:] + cas
issuer, cert = None, leaf
for _ in range(len(chain) + 1):
    issuer = next((c for c in chain if c.subject == cert.issuer), None)
    assert issuer is not None, "no issuer for " + cert.subject.rfc4514_string()
    issuer.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    if issuer in cas:
        break
    cert = issuer
else:
    raise AssertionError("chain does not end in the bundle")
print("ok")
EOF
    expect_eq "python cryptography: one URI SAN, KU, EKU, P-256, serial, chain to the bundle" ok "$OUT"
    [ "$RC" -eq 0 ] || printf '  %s\n' "$ERR"
else
    fail "python3-cryptography is installed (make deps)"
fi

# a used token is refused, clearly
O4="$TMP/svid4"
run "$W" svid fetch --server "$S1" --token "$T1" --out "$O4" --bundle "$O1/bundle.pem"
expect_eq "a reused token: exit 1" 1 "$RC"
expect_match "a reused token: the reason is clear" 'attestation refused by wardd: 401 token_used' "$ERR"
if [ -e "$O4/svid.pem" ]; then fail "a reused token writes nothing"; else pass "a reused token writes nothing"; fi
run "$W" svid fetch --server "$S1" --token not-a-real-token-0000000000 --out "$O4" --bundle "$O1/bundle.pem"
expect_eq "an unknown token: exit 1" 1 "$RC"
expect_match "an unknown token: the reason" '401 token_unknown' "$ERR"

# the bundle
run "$W" identity bundle --server "$S1" --bundle "$O1/bundle.pem"
expect_eq "identity bundle (pinned) exits 0" 0 "$RC"
expect_match "identity bundle prints spiffe_sequence" '"spiffe_sequence": *[0-9]+' "$OUT"
expect_match "identity bundle prints x509-svid keys" '"use": *"x509-svid"' "$OUT"
run "$W" identity bundle --server "$S1" --insecure-bootstrap
expect_eq "identity bundle --insecure-bootstrap exits 0" 0 "$RC"
expect_match "identity bundle --insecure-bootstrap warns" 'NOT verified' "$ERR"

# wrong pins: another wardd of another trust domain, and another wardd of the same one
if start_wardd w2 other.org && start_wardd w3 "$TD"; then
    run "$W" identity bundle --server "https://127.0.0.1:$PORT_w2" --insecure-bootstrap
    printf '%s\n' "$OUT" >"$TMP/other-td.json"
    run "$W" identity bundle --server "https://127.0.0.1:$PORT_w3" --insecure-bootstrap
    printf '%s\n' "$OUT" >"$TMP/same-td-other-ca.json"
    O5="$TMP/svid5"
    run "$W" svid fetch --server "$S1" --token "$T4" --out "$O5" --bundle "$TMP/other-td.json"
    expect_eq "a bundle of another trust domain refuses wardd: exit 1" 1 "$RC"
    expect_match "... and says why" 'wardd' "$ERR"
    run "$W" svid fetch --server "$S1" --token "$T4" --out "$O5" --bundle "$TMP/same-td-other-ca.json"
    expect_eq "another wardd's bundle (same trust domain) refuses wardd: exit 1" 1 "$RC"
    expect_match "... because the chain does not verify against the pin" 'does not verify against the pinned bundle' "$ERR"
    run "$W" identity bundle --server "https://127.0.0.1:$PORT_w3" --bundle "$O1/bundle.pem"
    expect_eq "identity bundle refuses an unpinned wardd: exit 1" 1 "$RC"
    # the token never reached the wrong server nor was spent
    run "$W" svid fetch --server "$S1" --token "$T4" --out "$O5" --bundle "$O1/bundle.pem"
    expect_eq "the token refused by the pin check is still good" 0 "$RC"
fi

finish
