/* test_metrics.c - unit tests of the proxy's metrics: rendering, escaping, histograms, bounds */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy.h"

#define CHECKOUT  "spiffe://example.org/ns/shop/sa/checkout"
#define PAYMENTS  "spiffe://example.org/ns/shop/sa/payments"
#define INVENTORY "spiffe://example.org/ns/shop/sa/inventory"

static proxy_metrics *metrics_new(void)
{
    proxy_metrics *m;
    assert_int_equal(proxy_metrics_new(&m), 0);
    return m;
}

static void request(proxy_metrics *m, bool inbound, bool allow, int status, const char *src,
                    const char *svc, const char *dst, uint64_t decision_ns, uint64_t request_ns)
{
    proxy_metrics_request_info i = {
        .inbound = inbound,
        .allow = allow,
        .status = status,
        .source_principal = src,
        .destination_service = svc,
        .destination_principal = dst,
        .decision_ns = decision_ns,
        .request_ns = request_ns,
    };
    proxy_metrics_request(m, &i);
}

/* The rendering of n workers (and st), NUL-terminated, to free. */
static char *render(proxy_metrics *const *w, size_t n, proxy_admin_state *st)
{
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(proxy_metrics_render(w, n, st, &b), 0);
    assert_non_null(b.ptr);
    return ward_buf_steal(&b);
}

/* The value on the line that starts with prefix (which must be there exactly once). */
static uint64_t value_of(const char *text, const char *prefix)
{
    uint64_t v = 0;
    int found = 0;
    size_t plen = strlen(prefix);
    for (const char *p = text; p != NULL && *p != '\0';) {
        const char *nl = strchr(p, '\n');
        if (strncmp(p, prefix, plen) == 0 && p[plen] == ' ') {
            found++;
            v = strtoull(p + plen + 1, NULL, 10);
        }
        p = nl != NULL ? nl + 1 : NULL;
    }
    if (found != 1)
        fail_msg("%d lines start with %s", found, prefix);
    return v;
}

static int lines_starting(const char *text, const char *prefix)
{
    int n = 0;
    size_t plen = strlen(prefix);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, prefix, plen) == 0)
            n++;
        const char *nl = strchr(p, '\n');
        p = nl != NULL ? nl + 1 : NULL;
    }
    return n;
}

/* ---- the whole output, exactly --------------------------------------------------------------- */

static const char golden[] =
    "# HELP ward_requests_total Requests by direction, decision, response code and peers.\n"
    "# TYPE ward_requests_total counter\n"
    "ward_requests_total{direction=\"inbound\",decision=\"allow\",code=\"200\","
    "source_principal=\"" CHECKOUT "\",destination_service=\"payments\","
    "destination_principal=\"" PAYMENTS "\"} 3\n"
    "ward_requests_total{direction=\"inbound\",decision=\"deny\",code=\"403\","
    "source_principal=\"" CHECKOUT "\",destination_service=\"payments\","
    "destination_principal=\"" PAYMENTS "\"} 1\n"
    "ward_requests_total{direction=\"outbound\",decision=\"allow\",code=\"0\","
    "source_principal=\"" PAYMENTS "\",destination_service=\"inventory\","
    "destination_principal=\"\"} 1\n"
    "# HELP ward_decision_duration_seconds Time the policy engine took to decide a request.\n"
    "# TYPE ward_decision_duration_seconds histogram\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"1e-06\"} 1\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"2.5e-06\"} 3\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"5e-06\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"1e-05\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"2.5e-05\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"5e-05\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"0.0001\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"0.00025\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"0.0005\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"0.001\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"0.0025\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"0.005\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"0.01\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"0.025\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"0.05\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"0.1\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"0.25\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"0.5\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"1\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"2.5\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"5\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"10\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"inbound\",le=\"+Inf\"} 4\n"
    "ward_decision_duration_seconds_sum{direction=\"inbound\"} 0.0000078\n"
    "ward_decision_duration_seconds_count{direction=\"inbound\"} 4\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"1e-06\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"2.5e-06\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"5e-06\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"1e-05\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"2.5e-05\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"5e-05\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"0.0001\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"0.00025\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"0.0005\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"0.001\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"0.0025\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"0.005\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"0.01\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"0.025\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"0.05\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"0.1\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"0.25\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"0.5\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"1\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"2.5\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"5\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"10\"} 0\n"
    "ward_decision_duration_seconds_bucket{direction=\"outbound\",le=\"+Inf\"} 0\n"
    "ward_decision_duration_seconds_sum{direction=\"outbound\"} 0\n"
    "ward_decision_duration_seconds_count{direction=\"outbound\"} 0\n"
    "# HELP ward_request_duration_seconds Time from a request's head to its response.\n"
    "# TYPE ward_request_duration_seconds histogram\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"1e-06\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"2.5e-06\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"5e-06\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"1e-05\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"2.5e-05\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"5e-05\"} 1\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"0.0001\"} 1\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"0.00025\"} 1\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"0.0005\"} 1\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"0.001\"} 1\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"0.0025\"} 3\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"0.005\"} 4\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"0.01\"} 4\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"0.025\"} 4\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"0.05\"} 4\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"0.1\"} 4\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"0.25\"} 4\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"0.5\"} 4\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"1\"} 4\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"2.5\"} 4\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"5\"} 4\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"10\"} 4\n"
    "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"+Inf\"} 4\n"
    "ward_request_duration_seconds_sum{direction=\"inbound\"} 0.00805\n"
    "ward_request_duration_seconds_count{direction=\"inbound\"} 4\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"1e-06\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"2.5e-06\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"5e-06\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"1e-05\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"2.5e-05\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"5e-05\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"0.0001\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"0.00025\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"0.0005\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"0.001\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"0.0025\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"0.005\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"0.01\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"0.025\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"0.05\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"0.1\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"0.25\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"0.5\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"1\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"2.5\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"5\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"10\"} 0\n"
    "ward_request_duration_seconds_bucket{direction=\"outbound\",le=\"+Inf\"} 1\n"
    "ward_request_duration_seconds_sum{direction=\"outbound\"} 12\n"
    "ward_request_duration_seconds_count{direction=\"outbound\"} 1\n"
    "# HELP ward_tls_handshake_failures_total Failed TLS handshakes by direction and reason "
    "class.\n"
    "# TYPE ward_tls_handshake_failures_total counter\n"
    "ward_tls_handshake_failures_total{direction=\"inbound\",reason=\"no_certificate\"} 0\n"
    "ward_tls_handshake_failures_total{direction=\"inbound\",reason=\"untrusted\"} 1\n"
    "ward_tls_handshake_failures_total{direction=\"inbound\",reason=\"expired\"} 2\n"
    "ward_tls_handshake_failures_total{direction=\"inbound\",reason=\"wrong_trust_domain\"} 0\n"
    "ward_tls_handshake_failures_total{direction=\"inbound\",reason=\"protocol\"} 0\n"
    "ward_tls_handshake_failures_total{direction=\"inbound\",reason=\"other\"} 0\n"
    "ward_tls_handshake_failures_total{direction=\"outbound\",reason=\"no_certificate\"} 0\n"
    "ward_tls_handshake_failures_total{direction=\"outbound\",reason=\"untrusted\"} 0\n"
    "ward_tls_handshake_failures_total{direction=\"outbound\",reason=\"expired\"} 0\n"
    "ward_tls_handshake_failures_total{direction=\"outbound\",reason=\"wrong_trust_domain\"} 1\n"
    "ward_tls_handshake_failures_total{direction=\"outbound\",reason=\"protocol\"} 0\n"
    "ward_tls_handshake_failures_total{direction=\"outbound\",reason=\"other\"} 0\n"
    "# HELP ward_connections_active Open connections per listener.\n"
    "# TYPE ward_connections_active gauge\n"
    "ward_connections_active{listener=\"inbound\"} 2\n"
    "ward_connections_active{listener=\"outbound\"} 1\n"
    "# HELP ward_upstream_connect_failures_total Failed connections to the workload (inbound) "
    "or an upstream service (outbound).\n"
    "# TYPE ward_upstream_connect_failures_total counter\n"
    "ward_upstream_connect_failures_total{direction=\"inbound\",service=\"payments\"} 1\n"
    "ward_upstream_connect_failures_total{direction=\"outbound\",service=\"inventory\"} 2\n"
    "# HELP ward_route_requests_total Requests a Route entry served, by response class.\n"
    "# TYPE ward_route_requests_total counter\n"
    "ward_route_requests_total{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",code_class=\"4xx\"} 1\n"
    "ward_route_requests_total{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",code_class=\"2xx\"} 1\n"
    "ward_route_requests_total{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",code_class=\"5xx\"} 1\n"
    "# HELP ward_route_retries_total Retries of the requests a Route entry served.\n"
    "# TYPE ward_route_retries_total counter\n"
    "ward_route_retries_total{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\"} 0\n"
    "ward_route_retries_total{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\"} 3\n"
    "# HELP ward_route_rate_limited_total Requests a Route entry's rate limit refused (429).\n"
    "# TYPE ward_route_rate_limited_total counter\n"
    "ward_route_rate_limited_total{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\"} 1\n"
    "ward_route_rate_limited_total{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\"} 0\n"
    "# HELP ward_route_mirrored_total Requests a Route entry copied to its mirror.\n"
    "# TYPE ward_route_mirrored_total counter\n"
    "ward_route_mirrored_total{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\"} 0\n"
    "ward_route_mirrored_total{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\"} 1\n"
    "# HELP ward_route_request_duration_seconds Time from a request's head to its response, per Route entry.\n"
    "# TYPE ward_route_request_duration_seconds histogram\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"1e-06\"} 0\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"2.5e-06\"} 0\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"5e-06\"} 0\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"1e-05\"} 0\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"2.5e-05\"} 0\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"5e-05\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"0.0001\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"0.00025\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"0.0005\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"0.001\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"0.0025\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"0.005\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"0.01\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"0.025\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"0.05\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"0.1\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"0.25\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"0.5\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"1\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"2.5\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"5\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"10\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\",le=\"+Inf\"} 1\n"
    "ward_route_request_duration_seconds_sum{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\"} 0.00005\n"
    "ward_route_request_duration_seconds_count{direction=\"inbound\",route=\"shop/payments\",entry=\"http[1]\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"1e-06\"} 0\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"2.5e-06\"} 0\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"5e-06\"} 0\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"1e-05\"} 0\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"2.5e-05\"} 0\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"5e-05\"} 0\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"0.0001\"} 0\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"0.00025\"} 0\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"0.0005\"} 0\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"0.001\"} 0\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"0.0025\"} 0\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"0.005\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"0.01\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"0.025\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"0.05\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"0.1\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"0.25\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"0.5\"} 1\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"1\"} 2\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"2.5\"} 2\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"5\"} 2\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"10\"} 2\n"
    "ward_route_request_duration_seconds_bucket{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\",le=\"+Inf\"} 2\n"
    "ward_route_request_duration_seconds_sum{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\"} 0.603\n"
    "ward_route_request_duration_seconds_count{direction=\"outbound\",route=\"shop/payments\",entry=\"v2-canary\"} 2\n"
    "# HELP ward_svid_expiry_timestamp_seconds When the proxy's current X509-SVID expires (Unix "
    "time).\n"
    "# TYPE ward_svid_expiry_timestamp_seconds gauge\n"
    "ward_svid_expiry_timestamp_seconds 1700000000\n"
    "# HELP ward_policy_info The policy revision in force.\n"
    "# TYPE ward_policy_info gauge\n"
    "ward_policy_info{revision=\"sha256:ab12\"} 1\n"
    "# HELP ward_policy_reloads_total Successful policy reloads (the initial load not "
    "counted).\n"
    "# TYPE ward_policy_reloads_total counter\n"
    "ward_policy_reloads_total 1\n"
    "# HELP ward_policy_reload_failures_total Policy reloads that failed (the policy in force "
    "stayed).\n"
    "# TYPE ward_policy_reload_failures_total counter\n"
    "ward_policy_reload_failures_total 1\n";

/* Two workers, so every line is also a sum across them. */
static void test_render_golden(void **state)
{
    proxy_metrics *w[2] = {metrics_new(), metrics_new()};
    /* inbound allow 200 three times (two workers), one deny */
    request(w[0], true, true, 200, CHECKOUT, "payments", PAYMENTS, 1000, 2000000);
    request(w[1], true, true, 200, CHECKOUT, "payments", PAYMENTS, 1500, 2500000);
    request(w[1], true, true, 200, CHECKOUT, "payments", PAYMENTS, 2500, 3500000);
    request(w[0], true, false, 403, CHECKOUT, "payments", PAYMENTS, 2800, 50000);
    /* outbound, no decision made, no response, no peer principal, 12 s */
    request(w[1], false, true, 0, PAYMENTS, "inventory", NULL, 0, 12000000000ULL);
    proxy_metrics_tls_failure(w[0], true,
                              "TLS handshake: peer certificate: leaf certificate "
                              "has expired (at 2024-01-01T00:00:00Z)");
    proxy_metrics_tls_failure(w[1], true, "tlsv1 alert certificate expired");
    proxy_metrics_tls_failure(w[1], true, "tlsv1 alert unknown ca");
    proxy_metrics_tls_failure(w[0], false,
                              "peer certificate: trust domain evil.org is not "
                              "example.org");
    proxy_metrics_connections(w[0], true, 1);
    proxy_metrics_connections(w[1], true, 1);
    proxy_metrics_connections(w[1], true, 1);
    proxy_metrics_connections(w[0], true, -1);
    proxy_metrics_connections(w[0], false, 1);
    proxy_metrics_upstream_failure(w[0], false, "inventory");
    proxy_metrics_upstream_failure(w[1], false, "inventory");
    proxy_metrics_upstream_failure(w[1], true, "payments");
    /* a Route entry on both workers (summed), one rate limited inbound */
    proxy_metrics_route(w[0], &(proxy_metrics_route_info){.route = "shop/payments",
                                                          .entry = "v2-canary",
                                                          .status = 200,
                                                          .retries = 1,
                                                          .mirrored = true,
                                                          .request_ns = 3000000});
    proxy_metrics_route(w[1], &(proxy_metrics_route_info){.route = "shop/payments",
                                                          .entry = "v2-canary",
                                                          .status = 503,
                                                          .retries = 2,
                                                          .request_ns = 600000000});
    proxy_metrics_route(w[1], &(proxy_metrics_route_info){.inbound = true,
                                                          .route = "shop/payments",
                                                          .entry = "http[1]",
                                                          .status = 429,
                                                          .rate_limited = true,
                                                          .request_ns = 50000});

    proxy_admin_state *st;
    assert_int_equal(proxy_admin_state_new(&st), 0);
    proxy_admin_state_set_svid(st, PAYMENTS, 1700000000);
    const char *names[] = {"shop/payments-read"};
    assert_int_equal(proxy_admin_state_policy_loaded(st, "sha256:0000", names, 1), 0);
    proxy_admin_state_policy_failed(st, "policy.yaml:3:1: kind: unknown kind");
    assert_int_equal(proxy_admin_state_policy_loaded(st, "sha256:ab12", names, 1), 0);

    char *got = render(w, 2, st);
    if (strcmp(got, golden) != 0) {
        size_t i = 0;
        while (got[i] == golden[i])
            i++;
        fail_msg("output differs at byte %zu:\n--- got:\n%s\n--- expected:\n%s", i, got + i,
                 golden + i);
    }
    free(got);
    proxy_admin_state_free(st);
    proxy_metrics_free(w[0]);
    proxy_metrics_free(w[1]);
}

/* Without a state, no SVID or policy families; without workers, zeros. */
static void test_render_empty(void **state)
{
    char *got = render(NULL, 0, NULL);
    assert_int_equal(lines_starting(got, "ward_requests_total{"), 0);
    assert_int_equal(value_of(got, "ward_request_duration_seconds_count{direction=\"inbound\"}"),
                     0);
    assert_int_equal(value_of(got, "ward_connections_active{listener=\"inbound\"}"), 0);
    assert_null(strstr(got, "ward_svid_expiry_timestamp_seconds"));
    assert_null(strstr(got, "ward_policy_info"));
    free(got);

    /* a state with nothing loaded: the families, no samples */
    proxy_admin_state *st;
    assert_int_equal(proxy_admin_state_new(&st), 0);
    got = render(NULL, 0, st);
    assert_non_null(strstr(got, "# TYPE ward_svid_expiry_timestamp_seconds gauge\n"));
    assert_int_equal(lines_starting(got, "ward_svid_expiry_timestamp_seconds"), 0);
    assert_int_equal(lines_starting(got, "ward_policy_info"), 0);
    assert_int_equal(value_of(got, "ward_policy_reloads_total"), 0);
    free(got);
    proxy_admin_state_free(st);
}

/* ---- hostile label values -------------------------------------------------------------------- */

static void test_escape_hostile(void **state)
{
    proxy_metrics *m = metrics_new();
    request(m, true, false, 403, "spiffe://e.org/a\"b\\c\nd", "svc", "", 1, 1);
    /* an attempt to inject a sample of its own */
    request(m, true, false, 403, "x\"} 999\nward_requests_total{a=\"b", "svc", "", 1, 1);
    /* bytes that are not UTF-8, and valid UTF-8 kept */
    request(m, true, false, 403, "bad\xff\xc3(\xe2\x82\xacok", "svc", "", 1, 1);
    proxy_metrics *w[1] = {m};
    char *got = render(w, 1, NULL);

    assert_non_null(strstr(got, "source_principal=\"spiffe://e.org/a\\\"b\\\\c\\nd\","));
    assert_non_null(strstr(got, "source_principal=\"x\\\"} 999\\nward_requests_total{a=\\\"b\","));
    assert_non_null(strstr(got, "source_principal=\"bad\xef\xbf\xbd\xef\xbf\xbd(\xe2\x82\xac"
                                "ok\","));
    /* every line is a comment or one of our samples, and exactly 3 request lines */
    assert_int_equal(lines_starting(got, "ward_requests_total{direction="), 3);
    assert_int_equal(lines_starting(got, "ward_requests_total{a="), 0);
    for (const char *p = got; *p != '\0';) {
        assert_true(strncmp(p, "# ", 2) == 0 || strncmp(p, "ward_", 5) == 0);
        p = strchr(p, '\n');
        assert_non_null(p);
        p++;
    }
    free(got);
    proxy_metrics_free(m);
}

/* Label values are cut at PROXY_METRICS_LABEL_MAX bytes: a long one costs no more. */
static void test_label_value_cut(void **state)
{
    size_t n = PROXY_METRICS_LABEL_MAX + 1000;
    char *big = malloc(n + 1);
    memset(big, 'p', n);
    big[n] = '\0';
    proxy_metrics *m = metrics_new();
    request(m, true, true, 200, big, "svc", big, 1, 1);
    big[PROXY_METRICS_LABEL_MAX + 10] = 'X'; /* differs only beyond the cut: the same set */
    request(m, true, true, 200, big, "svc", big, 1, 1);
    proxy_metrics *w[1] = {m};
    char *got = render(w, 1, NULL);
    char want[PROXY_METRICS_LABEL_MAX + 64];
    snprintf(want, sizeof(want), "source_principal=\"%.*s\",", PROXY_METRICS_LABEL_MAX, big);
    assert_non_null(strstr(got, want));
    assert_int_equal(lines_starting(got, "ward_requests_total{"), 1);
    assert_non_null(strstr(got, "\"} 2\n"));
    free(got);
    free(big);
    proxy_metrics_free(m);
}

/* ---- histograms ------------------------------------------------------------------------------ */

#define RBUCKET(le) "ward_request_duration_seconds_bucket{direction=\"inbound\",le=\"" le "\"}"

static void test_histogram_buckets(void **state)
{
    proxy_metrics *m = metrics_new();
    /* le is inclusive: 1000 ns is in le=1e-06, 1001 ns is not */
    uint64_t obs[] = {0, 1000, 1001, 2500, 10000000000ULL, 10000000001ULL};
    for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++)
        request(m, true, true, 200, "s", "svc", "d", 0, obs[i]);
    proxy_metrics *w[1] = {m};
    char *got = render(w, 1, NULL);
    assert_int_equal(value_of(got, RBUCKET("1e-06")), 2);
    assert_int_equal(value_of(got, RBUCKET("2.5e-06")), 4);
    assert_int_equal(value_of(got, RBUCKET("5e-06")), 4);
    assert_int_equal(value_of(got, RBUCKET("5")), 4);
    assert_int_equal(value_of(got, RBUCKET("10")), 5);
    assert_int_equal(value_of(got, RBUCKET("+Inf")), 6);
    assert_int_equal(value_of(got, "ward_request_duration_seconds_count{direction=\"inbound\"}"),
                     6);
    assert_non_null(
        strstr(got, "ward_request_duration_seconds_sum{direction=\"inbound\"} 20.000004502\n"));
    /* cumulative: never decreasing, 23 buckets */
    assert_int_equal(lines_starting(got, "ward_request_duration_seconds_bucket{direction=\"inb"),
                     23);
    uint64_t prev = 0;
    for (const char *p = strstr(got, RBUCKET("1e-06")); p != NULL;
         p = strstr(p + 1, "ward_request_duration_seconds_bucket{direction=\"inbound\"")) {
        uint64_t v = strtoull(strchr(p, '}') + 2, NULL, 10);
        assert_true(v >= prev);
        prev = v;
    }
    /* decision_ns 0: the engine did not run, nothing observed */
    assert_int_equal(value_of(got, "ward_decision_duration_seconds_count{direction=\"inbound\"}"),
                     0);
    free(got);
    proxy_metrics_free(m);
}

/* ---- bounded label sets ---------------------------------------------------------------------- */

static void test_label_sets_capped(void **state)
{
    proxy_metrics *m = metrics_new();
    char src[64];
    for (int i = 0; i < PROXY_METRICS_SERIES_MAX; i++) {
        snprintf(src, sizeof(src), "spiffe://e.org/ns/n/sa/%d", i);
        request(m, true, true, 200, src, "svc", "dst", 1, 1);
    }
    /* beyond the cap: new sets go to _other_ (by direction, decision and code) */
    for (int i = 0; i < 10; i++) {
        snprintf(src, sizeof(src), "spiffe://e.org/ns/n/sa/new-%d", i);
        request(m, true, true, 200, src, "svc", "dst", 1, 1);
    }
    request(m, true, false, 403, "spiffe://e.org/ns/n/sa/late", "svc", "dst", 1, 1);
    /* known sets still count as themselves */
    for (int i = 0; i < 5; i++)
        request(m, true, true, 200, "spiffe://e.org/ns/n/sa/0", "svc", "dst", 1, 1);
    proxy_metrics *w[2] = {m, m}; /* the same worker twice: sums double */
    char *got = render(w, 1, NULL);
    assert_int_equal(lines_starting(got, "ward_requests_total{"), PROXY_METRICS_SERIES_MAX + 2);
    assert_int_equal(value_of(got, "ward_requests_total{direction=\"inbound\",decision=\"allow\","
                                   "code=\"200\",source_principal=\"_other_\",destination_"
                                   "service=\"_other_\",destination_principal=\"_other_\"}"),
                     10);
    assert_int_equal(value_of(got, "ward_requests_total{direction=\"inbound\",decision=\"deny\","
                                   "code=\"403\",source_principal=\"_other_\",destination_"
                                   "service=\"_other_\",destination_principal=\"_other_\"}"),
                     1);
    assert_int_equal(value_of(got, "ward_requests_total{direction=\"inbound\",decision=\"allow\","
                                   "code=\"200\",source_principal=\"spiffe://e.org/ns/n/sa/0\","
                                   "destination_service=\"svc\",destination_principal=\"dst\"}"),
                     6);
    free(got);
    /* the same label sets from two workers merge into one line each */
    got = render(w, 2, NULL);
    assert_int_equal(lines_starting(got, "ward_requests_total{"), PROXY_METRICS_SERIES_MAX + 2);
    assert_int_equal(value_of(got, "ward_requests_total{direction=\"inbound\",decision=\"allow\","
                                   "code=\"200\",source_principal=\"_other_\",destination_"
                                   "service=\"_other_\",destination_principal=\"_other_\"}"),
                     20);
    free(got);

    /* upstream services too */
    for (int i = 0; i < PROXY_METRICS_UPSTREAMS_MAX + 3; i++) {
        snprintf(src, sizeof(src), "svc-%d", i);
        proxy_metrics_upstream_failure(m, false, src);
    }
    got = render(w, 1, NULL);
    assert_int_equal(lines_starting(got, "ward_upstream_connect_failures_total{"),
                     PROXY_METRICS_UPSTREAMS_MAX + 1);
    assert_int_equal(value_of(got, "ward_upstream_connect_failures_total{direction=\"outbound\","
                                   "service=\"_other_\"}"),
                     3);
    free(got);
    proxy_metrics_free(m);
}

/* Status codes outside 100..599 are one code, "0": they cannot grow the table. */
static void test_odd_status_codes(void **state)
{
    proxy_metrics *m = metrics_new();
    int codes[] = {-1, 0, 42, 99, 600, 1000, 65536};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        request(m, false, false, codes[i], "s", "svc", "d", 1, 1);
    request(m, false, false, 599, "s", "svc", "d", 1, 1);
    request(m, false, false, 100, "s", "svc", "d", 1, 1);
    proxy_metrics *w[1] = {m};
    char *got = render(w, 1, NULL);
    assert_int_equal(lines_starting(got, "ward_requests_total{"), 3);
    assert_int_equal(value_of(got, "ward_requests_total{direction=\"outbound\",decision=\"deny\","
                                   "code=\"0\",source_principal=\"s\",destination_service=\"svc\","
                                   "destination_principal=\"d\"}"),
                     7);
    /* sorted by code within a direction and decision */
    assert_true(strstr(got, "code=\"0\"") < strstr(got, "code=\"100\""));
    assert_true(strstr(got, "code=\"100\"") < strstr(got, "code=\"599\""));
    free(got);
    proxy_metrics_free(m);
}

/* ---- TLS failure classes --------------------------------------------------------------------- */

static void test_tls_failure_classify(void **state)
{
    static const struct {
        const char *reason;
        proxy_tls_failure want;
    } cases[] = {
        {"TLS handshake: error:0A0000C7:SSL routines::peer did not return a certificate",
         PROXY_TLS_FAILURE_NO_CERTIFICATE},
        {"TLS handshake: error:0A00045C:SSL routines::tlsv13 alert certificate required",
         PROXY_TLS_FAILURE_NO_CERTIFICATE},
        {"no client certificate", PROXY_TLS_FAILURE_NO_CERTIFICATE},
        {"peer certificate: empty certificate chain", PROXY_TLS_FAILURE_NO_CERTIFICATE},
        {"TLS handshake: peer certificate: leaf certificate is signed by an unknown authority "
         "(not in the bundle of example.org)",
         PROXY_TLS_FAILURE_UNTRUSTED},
        {"TLS handshake: error:0A000418:SSL routines::tlsv1 alert unknown ca",
         PROXY_TLS_FAILURE_UNTRUSTED},
        {"sslv3 alert bad certificate", PROXY_TLS_FAILURE_UNTRUSTED},
        {"peer certificate: certificate has no URI SAN", PROXY_TLS_FAILURE_UNTRUSTED},
        {"peer certificate: peer is spiffe://example.org/a, expected spiffe://example.org/b",
         PROXY_TLS_FAILURE_UNTRUSTED},
        {"TLS handshake: error:0A000086:SSL routines::certificate verify failed",
         PROXY_TLS_FAILURE_UNTRUSTED},
        {"TLS handshake: peer certificate: leaf certificate has expired (at 2024-01-01T00:00:00Z)",
         PROXY_TLS_FAILURE_EXPIRED},
        {"CA certificate at depth 1 is not yet valid (valid from 2030-01-01T00:00:00Z)",
         PROXY_TLS_FAILURE_EXPIRED},
        {"SSLV3 ALERT CERTIFICATE EXPIRED", PROXY_TLS_FAILURE_EXPIRED},
        {"TLS handshake: peer certificate: trust domain evil.org is not example.org",
         PROXY_TLS_FAILURE_WRONG_TRUST_DOMAIN},
        {"TLS handshake: error:0A00010B:SSL routines::wrong version number",
         PROXY_TLS_FAILURE_PROTOCOL},
        {"TLS handshake: error:0A0000C1:SSL routines::no shared cipher",
         PROXY_TLS_FAILURE_PROTOCOL},
        {"TLS handshake: error:0A00009C:SSL routines::http request", PROXY_TLS_FAILURE_PROTOCOL},
        {"tlsv1 alert protocol version", PROXY_TLS_FAILURE_PROTOCOL},
        {"TLS handshake: connection closed by peer", PROXY_TLS_FAILURE_OTHER},
        {"TLS handshake: connection reset", PROXY_TLS_FAILURE_OTHER},
        {"", PROXY_TLS_FAILURE_OTHER},
        {NULL, PROXY_TLS_FAILURE_OTHER},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        proxy_tls_failure got = proxy_tls_failure_classify(cases[i].reason);
        if (got != cases[i].want)
            fail_msg("\"%s\": %s, expected %s", cases[i].reason ? cases[i].reason : "(null)",
                     proxy_tls_failure_name(got), proxy_tls_failure_name(cases[i].want));
    }
    assert_string_equal(proxy_tls_failure_name(PROXY_TLS_FAILURE_WRONG_TRUST_DOMAIN),
                        "wrong_trust_domain");
    assert_string_equal(proxy_tls_failure_name((proxy_tls_failure)99), "other");
}

/* ---- concurrency: two writers and a reader --------------------------------------------------- */

#define ITERS    200000
#define CONNS_IN "ward_connections_active{listener=\"inbound\"} "

typedef struct writer {
    proxy_metrics *m;
    int id;
    atomic_bool *done;
} writer;

static const char *const shared_src[4] = {"spiffe://e.org/a", "spiffe://e.org/b",
                                          "spiffe://e.org/c", "spiffe://e.org/d"};

static void *write_loop(void *arg)
{
    writer *w = arg;
    char src[64];
    for (int i = 0; i < ITERS; i++) {
        proxy_metrics_connections(w->m, true, 1);
        if (i % 1000 == 0) { /* new sets appear while the reader reads */
            snprintf(src, sizeof(src), "spiffe://e.org/w%d/%d", w->id, i);
            request(w->m, true, true, 200, src, "svc", "d", 100, 1000);
        } else {
            request(w->m, true, true, 200, shared_src[i % 4], "svc", "d", 100, 1000);
        }
        proxy_metrics_tls_failure(w->m, false, "no shared cipher");
        proxy_metrics_connections(w->m, true, -1);
    }
    atomic_store(w->done, true);
    return NULL;
}

static uint64_t sum_requests(const char *text)
{
    uint64_t sum = 0;
    for (const char *p = strstr(text, "\nward_requests_total{"); p != NULL;
         p = strstr(p + 1, "\nward_requests_total{")) {
        const char *end = strchr(p + 1, '\n');
        const char *sp = end - 1;
        while (*sp != ' ')
            sp--;
        sum += strtoull(sp + 1, NULL, 10);
    }
    return sum;
}

static void test_concurrent_updates(void **state)
{
    proxy_metrics *m[2] = {metrics_new(), metrics_new()};
    atomic_bool done[2];
    writer wr[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        atomic_init(&done[i], false);
        wr[i] = (writer){m[i], i, &done[i]};
        assert_int_equal(pthread_create(&th[i], NULL, write_loop, &wr[i]), 0);
    }
    int renders = 0;
    uint64_t prev_count = 0, prev_sum = 0;
    while (!atomic_load(&done[0]) || !atomic_load(&done[1]) || renders < 3) {
        char *got = render(m, 2, NULL);
        uint64_t count =
            value_of(got, "ward_request_duration_seconds_count{direction=\"inbound\"}");
        uint64_t sum = sum_requests(got);
        int64_t conns = (int64_t)strtoll(strstr(got, CONNS_IN) + strlen(CONNS_IN), NULL, 10);
        assert_true(count >= prev_count && count <= 2 * ITERS);
        assert_true(sum >= prev_sum && sum <= 2 * ITERS);
        assert_true(conns >= 0 && conns <= 2);
        prev_count = count;
        prev_sum = sum;
        free(got);
        renders++;
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);

    char *got = render(m, 2, NULL);
    assert_int_equal(sum_requests(got), 2 * ITERS);
    assert_int_equal(value_of(got, "ward_request_duration_seconds_count{direction=\"inbound\"}"),
                     2 * ITERS);
    assert_int_equal(value_of(got, "ward_decision_duration_seconds_bucket{direction=\"inbound\","
                                   "le=\"1e-06\"}"),
                     2 * ITERS);
    assert_non_null(strstr(got, "ward_request_duration_seconds_sum{direction=\"inbound\"} 0.4\n"));
    assert_int_equal(value_of(got, "ward_connections_active{listener=\"inbound\"}"), 0);
    assert_int_equal(value_of(got, "ward_tls_handshake_failures_total{direction=\"outbound\","
                                   "reason=\"protocol\"}"),
                     2 * ITERS);
    /* a shared set, counted by both workers: 4 of every 1000 iterations go elsewhere */
    uint64_t per = 0;
    for (int i = 0; i < ITERS; i++)
        if (i % 1000 != 0 && i % 4 == 1)
            per++;
    assert_int_equal(value_of(got, "ward_requests_total{direction=\"inbound\",decision=\"allow\","
                                   "code=\"200\",source_principal=\"spiffe://e.org/b\","
                                   "destination_service=\"svc\",destination_principal=\"d\"}"),
                     2 * per);
    /* 4 shared + 200 new per worker */
    assert_int_equal(lines_starting(got, "ward_requests_total{"), 4 + 2 * (ITERS / 1000));
    free(got);
    proxy_metrics_free(m[0]);
    proxy_metrics_free(m[1]);
}

/* ---- readiness ------------------------------------------------------------------------------- */

static void test_ready_reasons(void **state)
{
    proxy_admin_state *st;
    proxy_admin_status s;
    char why[512];
    time_t now = 1700000000;
    assert_int_equal(proxy_admin_state_new(&st), 0);

    assert_int_equal(proxy_admin_state_get(st, &s), 0);
    assert_false(proxy_admin_status_ready(&s, now, why, sizeof(why)));
    assert_string_equal(why, "no SVID; no policy loaded");
    proxy_admin_status_dispose(&s);

    proxy_admin_state_set_svid(st, PAYMENTS, now - 1);
    assert_int_equal(proxy_admin_state_policy_loaded(st, "r1", NULL, 0), 0);
    proxy_admin_state_set_audit_error(st, "disk full");
    assert_int_equal(proxy_admin_state_get(st, &s), 0);
    assert_false(proxy_admin_status_ready(&s, now, why, sizeof(why)));
    assert_string_equal(why, "the SVID expired at 2023-11-14T22:13:19Z; audit: disk full");
    proxy_admin_status_dispose(&s);

    proxy_admin_state_set_svid(st, PAYMENTS, now + 3600);
    proxy_admin_state_set_audit_error(st, NULL);
    assert_int_equal(proxy_admin_state_get(st, &s), 0);
    assert_true(proxy_admin_status_ready(&s, now, why, sizeof(why)));
    assert_string_equal(why, "");
    proxy_admin_status_dispose(&s);

    /* a failed reload keeps the policy in force: still ready */
    proxy_admin_state_policy_failed(st, "bad rule");
    assert_int_equal(proxy_admin_state_get(st, &s), 0);
    assert_true(proxy_admin_status_ready(&s, now, why, sizeof(why)));
    assert_string_equal(s.policy_error, "bad rule");
    assert_int_equal(s.policy_reload_failures, 1);
    assert_int_equal(s.policy_reloads, 0);
    proxy_admin_status_dispose(&s);

    /* losing the SVID: not ready; a small buffer is cut, not overrun */
    proxy_admin_state_set_svid(st, NULL, 0);
    assert_int_equal(proxy_admin_state_get(st, &s), 0);
    char tiny[4];
    assert_false(proxy_admin_status_ready(&s, now, tiny, sizeof(tiny)));
    assert_string_equal(tiny, "no ");
    proxy_admin_status_dispose(&s);
    proxy_admin_state_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_golden),      cmocka_unit_test(test_render_empty),
        cmocka_unit_test(test_escape_hostile),     cmocka_unit_test(test_label_value_cut),
        cmocka_unit_test(test_histogram_buckets),  cmocka_unit_test(test_label_sets_capped),
        cmocka_unit_test(test_odd_status_codes),   cmocka_unit_test(test_tls_failure_classify),
        cmocka_unit_test(test_concurrent_updates), cmocka_unit_test(test_ready_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
