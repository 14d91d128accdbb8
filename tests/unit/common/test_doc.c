/* test_doc.c - unit tests of common/doc.c: YAML/JSON trees, positions, refusals and bounds */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/ward.h"

/* Parses text; returns the rc, leaving docs/diag for inspection. */
static int parse(const char *text, size_t len, ward_docs *docs, ward_diag *d)
{
    ward_diag_init(d);
    return ward_docs_parse("f.yaml", text, len, docs, d);
}

static int parse_str(const char *text, ward_docs *docs, ward_diag *d)
{
    return parse(text, strlen(text), docs, d);
}

static void assert_diag(const ward_diag *d, const char *msg)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->msgs[i], msg) == 0)
            return;
    fprintf(stderr, "expected diagnostic: %s\ngot %zu:\n", msg, d->n);
    for (size_t i = 0; i < d->n; i++)
        fprintf(stderr, "  %s\n", d->msgs[i]);
    fail();
}

/* The text must be refused with exactly one diagnostic, msg. */
static void assert_refused(const char *text, int want_rc, const char *msg)
{
    ward_docs docs;
    ward_diag d;
    int rc = parse_str(text, &docs, &d);
    assert_int_equal(rc, want_rc);
    assert_int_equal(docs.n, 0);
    assert_null(docs.docs);
    assert_diag(&d, msg);
    assert_int_equal(d.n, 1);
    ward_diag_dispose(&d);
}

static void assert_scalar(const ward_node *n, const char *s, int line, int col, bool quoted)
{
    assert_non_null(n);
    assert_int_equal(n->kind, WARD_NODE_SCALAR);
    assert_int_equal(n->len, strlen(s));
    assert_string_equal(n->str, s);
    assert_int_equal(n->line, line);
    assert_int_equal(n->col, col);
    assert_int_equal(n->quoted, quoted);
}

static void test_map_positions(void **state)
{
    (void)state;
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse_str("a: 1\nb:\n  - x\n  - 'y'\nc: {k: \"v\"}\n", &docs, &d), 0);
    assert_int_equal(d.n, 0);
    assert_int_equal(docs.n, 1);
    const ward_node *root = docs.docs[0];
    assert_int_equal(root->kind, WARD_NODE_MAP);
    assert_int_equal(root->line, 1);
    assert_int_equal(root->col, 1);
    assert_int_equal(root->n, 3);
    assert_scalar(root->pairs[0].key, "a", 1, 1, false);
    assert_scalar(root->pairs[0].value, "1", 1, 4, false);
    const ward_node *b = ward_node_get(root, "b");
    assert_non_null(b);
    assert_int_equal(b->kind, WARD_NODE_SEQ);
    assert_int_equal(b->line, 3);
    assert_int_equal(b->col, 3);
    assert_int_equal(b->n, 2);
    assert_scalar(b->items[0], "x", 3, 5, false);
    assert_scalar(b->items[1], "y", 4, 5, true);
    const ward_node *c = ward_node_get(root, "c");
    assert_int_equal(c->kind, WARD_NODE_MAP);
    assert_int_equal(c->line, 5);
    assert_int_equal(c->col, 4);
    assert_scalar(ward_node_get(c, "k"), "v", 5, 8, true);
    ward_docs_dispose(&docs);
    ward_diag_dispose(&d);
}

static void test_node_get(void **state)
{
    (void)state;
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse_str("{a: 1, \"a\\0b\": 2, ab: 3, '': 4}", &docs, &d), 0);
    const ward_node *root = docs.docs[0];
    assert_string_equal(ward_node_get(root, "a")->str, "1");
    assert_string_equal(ward_node_get(root, "ab")->str, "3");
    assert_string_equal(ward_node_get(root, "")->str, "4");
    assert_null(ward_node_get(root, "b"));
    assert_null(ward_node_get(root, "A"));
    /* a key holding a NUL byte is not "a" */
    assert_int_equal(root->pairs[1].key->len, 3);
    assert_null(ward_node_get(root->pairs[0].value, "a")); /* not a map */
    assert_null(ward_node_get(NULL, "a"));
    ward_docs_dispose(&docs);
    ward_diag_dispose(&d);
}

static void test_quoted_flag(void **state)
{
    (void)state;
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse_str("- plain\n- 'single'\n- \"double\"\n- |\n  literal\n- >\n  folded\n"
                               "- !!str 123\n- !!int 5\n- yes\n- \"yes\"\n- ~\n- ''\n",
                               &docs, &d),
                     0);
    const ward_node *s = docs.docs[0];
    assert_int_equal(s->n, 11);
    assert_false(s->items[0]->quoted);
    assert_true(s->items[1]->quoted);
    assert_true(s->items[2]->quoted);
    assert_true(s->items[3]->quoted); /* block scalars are strings too */
    assert_string_equal(s->items[3]->str, "literal\n");
    assert_true(s->items[4]->quoted);
    assert_true(s->items[5]->quoted); /* !!str */
    assert_string_equal(s->items[5]->str, "123");
    assert_false(s->items[6]->quoted); /* !!int */
    assert_false(s->items[7]->quoted);
    assert_true(s->items[8]->quoted);
    assert_false(s->items[9]->quoted);
    assert_string_equal(s->items[9]->str, "~");
    assert_true(s->items[10]->quoted);
    assert_int_equal(s->items[10]->len, 0);
    ward_docs_dispose(&docs);
    ward_diag_dispose(&d);
}

static void test_nul_bytes_kept(void **state)
{
    (void)state;
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse_str("v: \"a\\0b\\x00\"\nw: \"]]\\n'\\\"\"\n", &docs, &d), 0);
    const ward_node *v = ward_node_get(docs.docs[0], "v");
    assert_int_equal(v->len, 4);
    assert_memory_equal(v->str, "a\0b\0", 5); /* and NUL-terminated */
    const ward_node *w = ward_node_get(docs.docs[0], "w");
    assert_int_equal(w->len, 5);
    assert_memory_equal(w->str, "]]\n'\"", 6);
    ward_docs_dispose(&docs);
    ward_diag_dispose(&d);
}

static void test_json(void **state)
{
    (void)state;
    ward_docs docs;
    ward_diag d;
    const char *json = "{\n  \"name\": \"x\\u0000y\",\n  \"n\": 42,\n  \"b\": true,\n"
                       "  \"z\": null,\n  \"list\": [1, \"two\", {\"k\": []}]\n}\n";
    assert_int_equal(parse_str(json, &docs, &d), 0);
    assert_int_equal(docs.n, 1);
    const ward_node *root = docs.docs[0];
    assert_int_equal(root->n, 5);
    assert_scalar(root->pairs[0].key, "name", 2, 3, true);
    const ward_node *name = ward_node_get(root, "name");
    assert_int_equal(name->len, 3);
    assert_memory_equal(name->str, "x\0y", 3);
    assert_true(name->quoted);
    assert_scalar(ward_node_get(root, "n"), "42", 3, 8, false);
    assert_scalar(ward_node_get(root, "b"), "true", 4, 8, false);
    assert_scalar(ward_node_get(root, "z"), "null", 5, 8, false);
    const ward_node *list = ward_node_get(root, "list");
    assert_int_equal(list->kind, WARD_NODE_SEQ);
    assert_int_equal(list->n, 3);
    assert_scalar(list->items[1], "two", 6, 15, true);
    assert_int_equal(list->items[2]->kind, WARD_NODE_MAP);
    assert_int_equal(ward_node_get(list->items[2], "k")->kind, WARD_NODE_SEQ);
    ward_docs_dispose(&docs);
    ward_diag_dispose(&d);
}

static void test_json_compact(void **state)
{
    (void)state;
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse_str("{\"a\":1,\"b\":[\"c\",\"d\"]}", &docs, &d), 0);
    assert_int_equal(docs.docs[0]->n, 2);
    assert_int_equal(ward_node_get(docs.docs[0], "b")->n, 2);
    ward_docs_dispose(&docs);
    ward_diag_dispose(&d);
}

static void test_multi_documents(void **state)
{
    (void)state;
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse_str("a: 1\n---\n---\nb: 2\n...\n--- [3]\n", &docs, &d), 0);
    assert_int_equal(docs.n, 4);
    assert_int_equal(docs.docs[0]->kind, WARD_NODE_MAP);
    /* an empty document is a null scalar: the caller decides to skip it */
    assert_int_equal(docs.docs[1]->kind, WARD_NODE_SCALAR);
    assert_int_equal(docs.docs[1]->len, 0);
    assert_false(docs.docs[1]->quoted);
    assert_int_equal(docs.docs[2]->line, 4);
    assert_int_equal(docs.docs[3]->kind, WARD_NODE_SEQ);
    assert_int_equal(docs.docs[3]->line, 6);
    assert_int_equal(docs.docs[3]->col, 5);
    ward_docs_dispose(&docs);
    ward_diag_dispose(&d);
}

static void test_empty_input(void **state)
{
    (void)state;
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse("", 0, &docs, &d), 0);
    assert_int_equal(docs.n, 0);
    assert_int_equal(parse_str("# only a comment\n", &docs, &d), 0);
    assert_int_equal(docs.n, 0);
    assert_int_equal(d.n, 0);
    ward_docs_dispose(&docs);
    ward_diag_dispose(&d);
}

static void test_length_bounds_input(void **state)
{
    (void)state;
    /* only len bytes are read: the rest of the buffer is never looked at */
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse("a: 1\n: : bad [", 5, &docs, &d), 0);
    assert_int_equal(docs.n, 1);
    assert_int_equal(docs.docs[0]->n, 1);
    ward_docs_dispose(&docs);
    ward_diag_dispose(&d);
}

static void test_refuses_alias_and_anchor(void **state)
{
    (void)state;
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse_str("a: &x [1]\nb: *x\n", &docs, &d), WARD_ESYNTAX);
    assert_int_equal(docs.n, 0);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.msgs[0],
                        "f.yaml:1:4: anchor &x is not supported (anchors and aliases are refused)");
    assert_string_equal(d.msgs[1],
                        "f.yaml:2:4: alias *x is not supported (anchors and aliases are refused)");
    ward_diag_dispose(&d);
}

static void test_refuses_anchor_on_scalar(void **state)
{
    (void)state;
    assert_refused("- &a v\n", WARD_ESYNTAX,
                   "f.yaml:1:3: anchor &a is not supported (anchors and aliases are refused)");
}

static void test_refuses_billion_laughs(void **state)
{
    (void)state;
    ward_docs docs;
    ward_diag d;
    const char *bomb = "a: &a [\"lol\",\"lol\"]\nb: &b [*a,*a,*a]\nc: &c [*b,*b,*b]\n";
    assert_int_equal(parse_str(bomb, &docs, &d), WARD_ESYNTAX);
    assert_int_equal(docs.n, 0);
    assert_true(d.n >= 3);
    ward_diag_dispose(&d);
}

static void test_refuses_custom_tags(void **state)
{
    (void)state;
    assert_refused("a: !foo 1\n", WARD_ESYNTAX,
                   "f.yaml:1:4: tag \"!foo\" is not supported (only !!str, !!int, !!float, "
                   "!!bool, !!null, !!seq, !!map)");
    assert_refused("a: !!python/object:os.system x\n", WARD_ESYNTAX,
                   "f.yaml:1:4: tag !!python/object:os.system is not supported (only !!str, "
                   "!!int, !!float, !!bool, !!null, !!seq, !!map)");
    assert_refused("a: !!binary aGk=\n", WARD_ESYNTAX,
                   "f.yaml:1:4: tag !!binary is not supported (only !!str, !!int, !!float, "
                   "!!bool, !!null, !!seq, !!map)");
    assert_refused("a: !<tag:example.com,2000:x> 1\n", WARD_ESYNTAX,
                   "f.yaml:1:4: tag \"tag:example.com,2000:x\" is not supported (only !!str, "
                   "!!int, !!float, !!bool, !!null, !!seq, !!map)");
}

static void test_refuses_misplaced_standard_tags(void **state)
{
    (void)state;
    assert_refused("a: !!map x\n", WARD_ESYNTAX, "f.yaml:1:4: tag !!map does not fit a scalar");
    assert_refused("a: !!str [x]\n", WARD_ESYNTAX,
                   "f.yaml:1:4: tag !!str does not fit a sequence");
    assert_refused("a: !!seq {x: 1}\n", WARD_ESYNTAX,
                   "f.yaml:1:4: tag !!seq does not fit a mapping");
}

static void test_accepts_standard_tags(void **state)
{
    (void)state;
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse_str("!!map {a: !!seq [!!int 1, !!float 2.5, !!bool true, !!null ~, "
                               "! x]}\n",
                               &docs, &d),
                     0);
    assert_int_equal(docs.n, 1);
    ward_docs_dispose(&docs);
    ward_diag_dispose(&d);
}

static void test_refuses_duplicate_keys(void **state)
{
    (void)state;
    assert_refused("a: 1\nb: 2\na: 3\n", WARD_ESYNTAX,
                   "f.yaml:3:1: duplicate key \"a\" (first defined at line 1, column 1)");
    /* quoting does not make a different key */
    assert_refused("{\"k\": 1, k: 2}", WARD_ESYNTAX,
                   "f.yaml:1:10: duplicate key \"k\" (first defined at line 1, column 2)");
    /* nested maps are checked too */
    assert_refused("x:\n  y: {p: 1, p: 2}\n", WARD_ESYNTAX,
                   "f.yaml:2:13: duplicate key \"p\" (first defined at line 2, column 7)");
}

static void test_duplicate_keys_all_reported(void **state)
{
    (void)state;
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse_str("a: 1\na: 2\nb: 1\na: 3\nb: 2\n", &docs, &d), WARD_ESYNTAX);
    assert_int_equal(d.n, 3);
    assert_string_equal(d.msgs[0],
                        "f.yaml:2:1: duplicate key \"a\" (first defined at line 1, column 1)");
    assert_string_equal(d.msgs[1],
                        "f.yaml:4:1: duplicate key \"a\" (first defined at line 1, column 1)");
    assert_string_equal(d.msgs[2],
                        "f.yaml:5:1: duplicate key \"b\" (first defined at line 3, column 1)");
    ward_diag_dispose(&d);
}

static void test_distinct_keys_with_nul_are_not_duplicates(void **state)
{
    (void)state;
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse_str("{\"a\\0x\": 1, \"a\\0y\": 2, \"a\": 3}", &docs, &d), 0);
    assert_int_equal(docs.docs[0]->n, 3);
    ward_docs_dispose(&docs);
    ward_diag_dispose(&d);
}

static void test_large_map_duplicate(void **state)
{
    (void)state;
    ward_buf b;
    ward_buf_init(&b);
    for (int i = 0; i < 5000; i++)
        ward_buf_printf(&b, "k%d: %d\n", i, i);
    ward_buf_printf(&b, "k1234: dup\n");
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse(b.ptr, b.len, &docs, &d), WARD_ESYNTAX);
    assert_diag(&d, "f.yaml:5001:1: duplicate key \"k1234\" (first defined at line 1235, column 1)");
    ward_diag_dispose(&d);
    ward_buf_dispose(&b);
}

static void test_refuses_non_scalar_keys(void **state)
{
    (void)state;
    assert_refused("? [a, b]\n: 1\n", WARD_ESYNTAX,
                   "f.yaml:1:3: map keys must be scalars, not sequences");
    assert_refused("{{a: 1}: 2}", WARD_ESYNTAX,
                   "f.yaml:1:2: map keys must be scalars, not mappings");
}

static void test_depth_limit(void **state)
{
    (void)state;
    char ok[64 * 2 + 2], deep[65 * 2 + 2];
    memset(ok, '[', 64);
    memset(ok + 64, ']', 64);
    ok[128] = '\0';
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    deep[130] = '\0';
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse_str(ok, &docs, &d), 0);
    assert_int_equal(docs.n, 1);
    ward_docs_dispose(&docs);
    ward_diag_dispose(&d);
    assert_refused(deep, WARD_ELIMIT, "f.yaml:1:65: nesting too deep (limit 64)");
}

static void test_depth_limit_block_maps(void **state)
{
    (void)state;
    ward_buf b;
    ward_buf_init(&b);
    for (int i = 0; i < 70; i++) {
        for (int j = 0; j < i; j++)
            ward_buf_puts(&b, " ");
        ward_buf_puts(&b, "k:\n");
    }
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse(b.ptr, b.len, &docs, &d), WARD_ELIMIT);
    assert_diag(&d, "f.yaml:65:65: nesting too deep (limit 64)");
    ward_diag_dispose(&d);
    ward_buf_dispose(&b);
}

static void test_deep_input_does_not_crash(void **state)
{
    (void)state;
    size_t n = 200000;
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, '[', n);
    s[n] = '\0';
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse(s, n, &docs, &d), WARD_ELIMIT);
    assert_int_equal(docs.n, 0);
    ward_diag_dispose(&d);
    free(s);
}

static void test_node_limit(void **state)
{
    (void)state;
    /* 1 sequence + 999,999 scalars = 1,000,000 nodes: accepted */
    ward_buf b;
    ward_buf_init(&b);
    ward_buf_putc(&b, '[');
    for (int i = 0; i < 999999; i++)
        ward_buf_append(&b, i ? ",0" : "0", i ? 2 : 1);
    ward_buf_putc(&b, ']');
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse(b.ptr, b.len, &docs, &d), 0);
    assert_int_equal(docs.docs[0]->n, 999999);
    ward_docs_dispose(&docs);
    ward_diag_dispose(&d);
    /* one more is refused */
    b.len--;
    ward_buf_append(&b, ",0]", 3);
    assert_int_equal(parse(b.ptr, b.len, &docs, &d), WARD_ELIMIT);
    assert_int_equal(docs.n, 0);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.msgs[0], "f.yaml:1:2000000: too many nodes (limit 1000000)");
    ward_diag_dispose(&d);
    ward_buf_dispose(&b);
}

static void test_node_limit_spans_documents(void **state)
{
    (void)state;
    ward_buf b;
    ward_buf_init(&b);
    for (int i = 0; i < 2; i++) {
        ward_buf_puts(&b, "--- [0");
        for (int j = 0; j < 500000; j++)
            ward_buf_append(&b, ",0", 2);
        ward_buf_puts(&b, "]\n");
    }
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse(b.ptr, b.len, &docs, &d), WARD_ELIMIT);
    assert_int_equal(docs.n, 0);
    ward_diag_dispose(&d);
    ward_buf_dispose(&b);
}

static void test_syntax_error_position(void **state)
{
    (void)state;
    assert_refused("a: [1, 2\nb: 3\n", WARD_ESYNTAX,
                   "f.yaml:2:2: did not find expected ',' or ']' (while parsing a flow sequence "
                   "at line 1, column 4)");
    assert_refused("a:\n\t- 1\n", WARD_ESYNTAX,
                   "f.yaml:2:1: found character that cannot start any token (while scanning for "
                   "the next token)");
    assert_refused("a: \"unterminated\n", WARD_ESYNTAX,
                   "f.yaml:2:1: found unexpected end of stream (while scanning a quoted scalar "
                   "at line 1, column 4)");
}

static void test_syntax_error_later_document_drops_all(void **state)
{
    (void)state;
    ward_docs docs;
    ward_diag d;
    assert_int_equal(parse_str("a: 1\n---\nb: [\n", &docs, &d), WARD_ESYNTAX);
    assert_int_equal(docs.n, 0);
    assert_int_equal(d.n, 1);
    ward_diag_dispose(&d);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    assert_refused("a: 1\nb: \xff\n", WARD_ESYNTAX,
                   "f.yaml:2:4: invalid leading UTF-8 octet (byte 0xff at offset 8)");
}

static void test_control_characters_refused(void **state)
{
    (void)state;
    ward_docs docs;
    ward_diag d;
    /* a raw NUL byte is not YAML (the "\0" escape is) */
    assert_int_equal(parse("a: x\0y\n", 7, &docs, &d), WARD_ESYNTAX);
    assert_int_equal(docs.n, 0);
    assert_int_equal(d.n, 1);
    assert_non_null(strstr(d.msgs[0], "f.yaml:1:5: control characters are not allowed"));
    ward_diag_dispose(&d);
}

static void test_errors_sorted_by_position(void **state)
{
    (void)state;
    ward_docs docs;
    ward_diag d;
    /* the duplicate key is found when its map closes, after the alias inside */
    assert_int_equal(parse_str("m:\n  k: 1\n  k: [*z]\n", &docs, &d), WARD_ESYNTAX);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.msgs[0],
                        "f.yaml:3:3: duplicate key \"k\" (first defined at line 2, column 3)");
    assert_string_equal(d.msgs[1],
                        "f.yaml:3:7: alias *z is not supported (anchors and aliases are refused)");
    ward_diag_dispose(&d);
}

static void test_dispose_twice_and_empty(void **state)
{
    (void)state;
    ward_docs docs = {NULL, 0};
    ward_docs_dispose(&docs);
    ward_docs_dispose(&docs);
    ward_docs_dispose(NULL);
    ward_diag d;
    assert_int_equal(parse_str("a: 1\n", &docs, &d), 0);
    ward_docs_dispose(&docs);
    assert_int_equal(docs.n, 0);
    ward_docs_dispose(&docs);
    ward_diag_dispose(&d);
}

static void test_null_diag_allowed(void **state)
{
    (void)state;
    ward_docs docs;
    assert_int_equal(ward_docs_parse("f", "a: *x", 5, &docs, NULL), WARD_ESYNTAX);
    assert_int_equal(docs.n, 0);
    assert_int_equal(ward_docs_parse(NULL, "a: 1", 4, &docs, NULL), 0);
    ward_docs_dispose(&docs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_positions),
        cmocka_unit_test(test_node_get),
        cmocka_unit_test(test_quoted_flag),
        cmocka_unit_test(test_nul_bytes_kept),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_json_compact),
        cmocka_unit_test(test_multi_documents),
        cmocka_unit_test(test_empty_input),
        cmocka_unit_test(test_length_bounds_input),
        cmocka_unit_test(test_refuses_alias_and_anchor),
        cmocka_unit_test(test_refuses_anchor_on_scalar),
        cmocka_unit_test(test_refuses_billion_laughs),
        cmocka_unit_test(test_refuses_custom_tags),
        cmocka_unit_test(test_refuses_misplaced_standard_tags),
        cmocka_unit_test(test_accepts_standard_tags),
        cmocka_unit_test(test_refuses_duplicate_keys),
        cmocka_unit_test(test_duplicate_keys_all_reported),
        cmocka_unit_test(test_distinct_keys_with_nul_are_not_duplicates),
        cmocka_unit_test(test_large_map_duplicate),
        cmocka_unit_test(test_refuses_non_scalar_keys),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_depth_limit_block_maps),
        cmocka_unit_test(test_deep_input_does_not_crash),
        cmocka_unit_test(test_node_limit),
        cmocka_unit_test(test_node_limit_spans_documents),
        cmocka_unit_test(test_syntax_error_position),
        cmocka_unit_test(test_syntax_error_later_document_drops_all),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_control_characters_refused),
        cmocka_unit_test(test_errors_sorted_by_position),
        cmocka_unit_test(test_dispose_twice_and_empty),
        cmocka_unit_test(test_null_diag_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
