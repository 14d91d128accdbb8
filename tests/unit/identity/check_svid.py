#!/usr/bin/python3
# check_svid.py - an independent X509-SVID check with pyca/cryptography (not Ward's validator)
"""Usage: check_svid.py CHAIN_PEM BUNDLE_PEM SPIFFE_ID

CHAIN_PEM: the SVID, leaf first, then intermediates. BUNDLE_PEM: the trust
anchors. Checks the X509-SVID rules, the chain's signatures up to an anchor and
validity now. Prints "ok" and exits 0, or prints each problem and exits 1; exits
77 when python3-cryptography is missing."""
import datetime
import re
import sys

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID
except ImportError:
    print("python3-cryptography is not installed")
    sys.exit(77)

PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def load(path):
    with open(path, "rb") as f:
        return [x509.load_pem_x509_certificate(m.group(0)) for m in PEM_RE.finditer(f.read())]


def ext(cert, cls):
    try:
        return cert.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None


def signed_by(cert, issuer):
    key = issuer.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes,
                       ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                       cert.signature_hash_algorithm)
        else:
            return False
        return cert.issuer == issuer.subject
    except InvalidSignature:
        return False


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    chain, anchors, want = load(sys.argv[1]), load(sys.argv[2]), sys.argv[3]
    errors = []
    if not chain or not anchors:
        print("no certificates")
        return 1
    leaf = chain[0]
    now = datetime.datetime.utcnow()

    if leaf.version != x509.Version.v3:
        errors.append("not an X.509 v3 certificate")
    san = ext(leaf, x509.SubjectAlternativeName)
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier) if san else []
    if len(uris) != 1:
        errors.append(f"{len(uris)} URI SANs (want exactly 1)")
    elif uris[0] != want:
        errors.append(f"URI SAN {uris[0]!r} is not {want!r}")
    elif not re.fullmatch(r"spiffe://[a-z0-9._-]+(/[A-Za-z0-9._-]+)+", uris[0]):
        errors.append(f"URI SAN {uris[0]!r} is not a workload SPIFFE ID")

    bc = ext(leaf, x509.BasicConstraints)
    if bc is None or bc.value.ca or not bc.critical:
        errors.append("basicConstraints must be present, critical, CA:FALSE")
    ku = ext(leaf, x509.KeyUsage)
    if ku is None or not ku.critical:
        errors.append("key usage must be present and critical")
    elif not ku.value.digital_signature or ku.value.key_cert_sign or ku.value.crl_sign:
        errors.append("key usage: digitalSignature required, keyCertSign/cRLSign forbidden")
    eku = ext(leaf, x509.ExtendedKeyUsage)
    if eku is None or ExtendedKeyUsageOID.SERVER_AUTH not in eku.value or \
            ExtendedKeyUsageOID.CLIENT_AUTH not in eku.value:
        errors.append("extended key usage must hold serverAuth and clientAuth")
    if leaf.serial_number <= 0 or leaf.serial_number.bit_length() < 64:
        errors.append(f"serial {leaf.serial_number} is not a positive number of >= 64 bits")
    if ext(leaf, x509.SubjectKeyIdentifier) is None:
        errors.append("no subject key identifier")
    aki = ext(leaf, x509.AuthorityKeyIdentifier)
    if aki is None:
        errors.append("no authority key identifier")

    # the chain: each certificate signed by the next, the last by an anchor
    for i, cert in enumerate(chain):
        if not cert.not_valid_before <= now < cert.not_valid_after:
            errors.append(f"certificate {i} is not valid now")
        issuers = chain[i + 1:i + 2] or anchors
        issuer = next((a for a in issuers if signed_by(cert, a)), None)
        if issuer is None:
            errors.append(f"certificate {i} is not signed by "
                          + ("the next one" if i + 1 < len(chain) else "a bundle anchor"))
            continue
        ibc = ext(issuer, x509.BasicConstraints)
        iku = ext(issuer, x509.KeyUsage)
        if ibc is None or not ibc.value.ca or (iku is not None and not iku.value.key_cert_sign):
            errors.append(f"issuer of certificate {i} is not a CA")
        if cert.not_valid_after > issuer.not_valid_after:
            errors.append(f"certificate {i} outlives its issuer")
        if i == 0 and aki is not None:
            iski = ext(issuer, x509.SubjectKeyIdentifier)
            if iski is None or aki.value.key_identifier != iski.value.digest:
                errors.append("authority key identifier does not match the issuer's")

    for e in errors:
        print(e)
    if not errors:
        print("ok")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
