/* fuzz_request.c - libFuzzer target: request JSON -> authz_request -> decision against a fixed policy set (never fails open, always valid JSON out) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "authz/authz.h"
#include "common/ward.h"
#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every matcher kind, a DENY, an AUDIT, a dry run and a lua: condition. */
static const char POLICIES[] =
    "apiVersion: ward/v1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: deny-admin, namespace: mesh}\n"
    "spec:\n"
    "  action: DENY\n"
    "  rules:\n"
    "    - to: [{paths: [\"/admin*\", \"/internal/{**}\"]}]\n"
    "---\n"
    "apiVersion: ward/v1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: payments, namespace: shop}\n"
    "spec:\n"
    "  selector: {services: [payments]}\n"
    "  action: ALLOW\n"
    "  rules:\n"
    "    - from:\n"
    "        - principals: [\"spiffe://example.org/ns/shop/sa/checkout\", \"spiffe://example.org/ns/ops/*\"]\n"
    "          notIpBlocks: [\"10.66.0.0/16\", \"2001:db8:bad::/48\"]\n"
    "      to:\n"
    "        - methods: [GET, HEAD]\n"
    "          paths: [\"/v1/items\", \"/v1/items/*\", \"/v1/users/{*}/orders/{**}\", {regex: \"^/v2/[0-9]+$\"}]\n"
    "          hosts: [\"payments\", \"*.example.com\"]\n"
    "          notPorts: [9999]\n"
    "      when:\n"
    "        - key: request.headers[x-tenant]\n"
    "          values: [\"acme\", \"beta-*\"]\n"
    "    - from: [{namespaces: [ops], trustDomains: [example.org], ipBlocks: [\"10.0.0.0/8\", \"::1\"]}]\n"
    "      when:\n"
    "        - lua: \"req.request.method ~= 'DELETE' and #req.request.path < 64\"\n"
    "---\n"
    "apiVersion: ward/v1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: audit-writes, namespace: sec}\n"
    "spec:\n"
    "  action: AUDIT\n"
    "  rules: [{to: [{notMethods: [GET, HEAD]}]}]\n"
    "---\n"
    "apiVersion: ward/v1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: tighten, namespace: shop}\n"
    "spec:\n"
    "  selector: {services: [payments]}\n"
    "  action: DENY\n"
    "  mode: dry-run\n"
    "  rules: [{from: [{notTrustDomains: [example.org]}]}]\n";

static authz_engine *engine;

static void die(const char *what, const char *detail, const uint8_t *data, size_t size)
{
    fprintf(stderr, "fuzz_request: %s: %s\ninput: %.*s\n", what, detail ? detail : "",
            (int)(size > 2000 ? 2000 : size), (const char *)data);
    abort();
}

static void setup(void)
{
    policy_set *set = NULL;
    ward_diag diag;
    ward_diag_init(&diag);
    ward_err err;
    ward_err_clear(&err);
    authz_bundle *bundle = NULL;
    if (policy_set_new(&set) != 0 ||
        policy_set_load_buffer(set, "fuzz.yaml", POLICIES, sizeof(POLICIES) - 1, &diag) != 0) {
        fprintf(stderr, "fuzz_request: the built-in policies do not load: %s\n",
                diag.n ? diag.msgs[0] : "?");
        abort();
    }
    authz_options opts = {.default_allow = false};
    if (authz_bundle_new(set, &opts, &bundle, &err) != 0 ||
        authz_engine_new(bundle, &engine, &err) != 0) {
        fprintf(stderr, "fuzz_request: the built-in policies do not build: %s\n", err.msg);
        abort();
    }
    authz_bundle_unref(bundle); /* the engine holds its own reference */
    ward_diag_dispose(&diag);
    policy_set_free(set);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (engine == NULL)
        setup();
    authz_request req;
    authz_request_storage *storage = NULL;
    ward_err err;
    ward_err_clear(&err);
    int rc = authz_request_from_json((const char *)data, size, &req, &storage, &err);
    if (rc != 0) {
        if (err.msg[0] == '\0')
            die("request rejected without a message", ward_strerror(rc), data, size);
        authz_request_storage_free(storage);
        return 0;
    }
    for (int explain = 0; explain <= 1; explain++) {
        authz_decision d;
        authz_decision_init(&d);
        rc = authz_decide(engine, &req, explain != 0, &d);
        if (rc != 0 && rc != WARD_ENOMEM)
            die("authz_decide failed", ward_strerror(rc), data, size);
        if (d.decision != AUTHZ_ALLOW && d.decision != AUTHZ_DENY)
            die("decision is neither allow nor deny", NULL, data, size);
        if (d.decision == AUTHZ_ALLOW && (d.policy == NULL || d.rule < 0))
            die("allowed without naming the policy and rule", d.reason, data, size);
        /* an allow may only come from the ALLOW policy (default is deny) */
        if (d.decision == AUTHZ_ALLOW && strcmp(d.policy, "shop/payments") != 0)
            die("allowed by a policy that cannot allow", d.policy, data, size);
        ward_buf json;
        ward_buf_init(&json);
        if (authz_decision_to_json(&d, &json) == 0) {
            cJSON *doc = cJSON_ParseWithLength(json.ptr, json.len);
            if (doc == NULL)
                die("decision JSON does not parse", json.ptr, data, size);
            const cJSON *dec = cJSON_GetObjectItemCaseSensitive(doc, "decision");
            const char *want = d.decision == AUTHZ_ALLOW ? "allow" : "deny";
            if (!cJSON_IsString(dec) || strcmp(dec->valuestring, want) != 0)
                die("decision JSON disagrees with the decision", json.ptr, data, size);
            if (explain && d.explain_json != NULL) {
                cJSON *ex = cJSON_Parse(d.explain_json);
                if (ex == NULL)
                    die("explain JSON does not parse", d.explain_json, data, size);
                cJSON_Delete(ex);
            }
            cJSON_Delete(doc);
        }
        ward_buf_dispose(&json);
        authz_decision_dispose(&d);
    }
    authz_request_storage_free(storage);
    return 0;
}
