/* fuzz_audit.c - libFuzzer target: a hostile audit trail read by the verifier and the exporters */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

/* The input is one segment; every line of it also goes through the record
 * parser and each export format. Nothing may crash, and verify must give a
 * verdict or a clean error. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (dir[0] == '\0') {
        snprintf(dir, sizeof(dir), "/tmp/fuzz-audit-XXXXXX");
        if (mkdtemp(dir) == NULL)
            abort();
    }
    char seg[128];
    snprintf(seg, sizeof(seg), "%s/segment-00000000000000000001.jsonl", dir);
    FILE *f = fopen(seg, "wb");
    if (f == NULL)
        abort();
    fwrite(data, 1, size, f);
    fclose(f);

    audit_verify_options o = {.dir = dir};
    audit_verify_report rep;
    ward_err err;
    ward_err_clear(&err);
    int rc = audit_verify(&o, &rep, &err);
    if (rc == 0 && rep.n_findings > 0 && rep.findings[0].file[0] == '\0')
        abort(); /* a finding always names where */

    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        audit_view v;
        if (audit_view_parse(&v, p, len) == 0) {
            for (int fmt = AUDIT_FORMAT_JSONL; fmt <= AUDIT_FORMAT_CEF; fmt++) {
                ward_buf out;
                ward_buf_init(&out);
                audit_export_record((audit_format)fmt, &v, &out);
                ward_buf_dispose(&out);
            }
        }
        p += len + 1;
    }
    return 0;
}
