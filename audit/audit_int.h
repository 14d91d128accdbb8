/* audit_int.h - audit internals shared by log.c, record.c and file.c: the ring slot layout, the renderers, the file */
#ifndef AUDIT_INT_H
#define AUDIT_INT_H

#include <stdint.h>

#include "audit/audit.h"

/* The strings of a record, in the order they are packed into a slot (the
 * order that decides who keeps room when the slot's budget runs out). */
typedef enum audit_field {
    AF_POLICY,
    AF_DRY_RUN_POLICY,
    AF_REASON,
    AF_BUNDLE,
    AF_CERT,
    AF_SOURCE_PRINCIPAL,
    AF_SOURCE_IP,
    AF_DESTINATION_SERVICE,
    AF_DESTINATION_PRINCIPAL,
    AF_METHOD,
    AF_PROTOCOL,
    AF_HOST,
    AF_TRACE_ID,
    AF_PATH,
    AF_COUNT
} audit_field;

#define AUDIT_ABSENT UINT16_MAX /* len[] of an absent string */
#define AUDIT_FLAG_AUDIT 1u
#define AUDIT_FLAG_DRY_RUN 2u

/* One record as copied by the producer: fixed fields, then the strings
 * packed in data[] (off/len per field). Plain bytes: the ring's head/tail
 * atomics order them between the two threads. */
typedef struct audit_slot_hdr {
    int64_t ts_ns;
    int64_t latency_ns;
    uint64_t gap; /* records this producer dropped just before this one */
    int32_t rule, dry_run_rule, source_port, destination_port, status;
    uint8_t direction, decision, dry_run_decision, flags;
    uint16_t truncated; /* bit per audit_field */
    uint16_t off[AF_COUNT];
    uint16_t len[AF_COUNT];
    char id[AUDIT_ID_HEX];
} audit_slot_hdr;

typedef union audit_slot {
    struct {
        audit_slot_hdr h;
        char data[AUDIT_SLOT_DATA];
    } r;
    char size_[AUDIT_SLOT_SIZE];
} audit_slot;

_Static_assert(sizeof(audit_slot_hdr) + AUDIT_SLOT_DATA <= AUDIT_SLOT_SIZE,
               "AUDIT_SLOT_DATA too large for AUDIT_SLOT_SIZE");
_Static_assert(AUDIT_SLOT_DATA < AUDIT_ABSENT, "slot offsets are 16-bit");
_Static_assert(AF_COUNT <= 16, "truncated is a 16-bit mask");

/* Appends one record line (with '\n') to out. On failure out is unchanged. */
int audit_render_record(ward_buf *out, const audit_slot *s, uint64_t seq, const char *node,
                        size_t node_len);
/* Appends a gap record line: k records lost before seq. */
int audit_render_gap(ward_buf *out, uint64_t seq, int64_t ts_ns, const char *node,
                     size_t node_len, uint64_t k);

/* file.c: creates dir (0700, with parents) if absent, refuses a non-folder or
 * one it cannot write, opens path (0600, O_APPEND, no symlink, exclusive
 * flock), cuts off a torn last line and gives the seq after the last record. */
int audit_file_open(const char *dir, const char *path, int *fd, uint64_t *next_seq, ward_err *err);

#endif
