// The audit trail's API: query and verify the hash-chained log (src/audit).
//
//   GET /subscriptions/{s}/providers/Microsoft.KeyFoundry/auditEvents
//       ?api-version=...&operation=&caller=&resourceId=&result=&from=&to=&top=&order=&$skiptoken=
//       from/to are unix milliseconds; top 1..1000 (default 100); order desc (default) | asc.
//       -> {"value": [event...], "nextLink": absolute URL or null}
//   GET /subscriptions/{s}/providers/Microsoft.KeyFoundry/auditEvents/verify?api-version=...
//       -> {"valid": bool, "checked": N, "firstBrokenSequence": N or null, "reason": "..."}
// Both need Microsoft.KeyFoundry/auditEvents/read at the subscription (Owner, Contributor and
// Reader have it through their wildcards).
#include <charconv>

#include "audit/audit_log.h"
#include "http/url.h"
#include "identity/ids.h"
#include "server/services.h"

namespace keyfoundry::server {
namespace {

using http::Request;
using http::Response;

constexpr std::string_view kReadAction = "Microsoft.KeyFoundry/auditEvents/read";

std::optional<int64_t> ParseInt(const std::string& text) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

// Authenticates, checks the api-version, the subscription and the caller's right to read.
std::optional<Response> Check(const Services& s, Request& r, identity::Caller* caller_out) {
  AuthResult auth = AuthenticateManagement(s, r);
  if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
  if (auto missing = RequireApiVersion(r)) return *missing;
  if (!identity::EqualsIgnoreCase(r.params["subscriptionId"], s.subscription_id)) {
    return http::AzureError(
        404, "SubscriptionNotFound",
        "The subscription '" + r.params["subscriptionId"] + "' could not be found.");
  }
  *caller_out = std::get<identity::Caller>(auth);
  if (auto denied = Authorize(s, *caller_out, "/subscriptions/" + s.subscription_id, kReadAction)) {
    return *denied;
  }
  return std::nullopt;
}

Response ListEvents(const Services& s, Request& r) {
  identity::Caller caller;
  if (auto failed = Check(s, r, &caller)) return *failed;
  audit::AuditQuery query;
  auto get = [&](const char* name) -> std::string {
    auto it = r.query.find(name);
    return it == r.query.end() ? "" : it->second;
  };
  query.operation = get("operation");
  query.caller_object_id = get("caller");
  query.resource_id_prefix = get("resourceId");
  query.result = get("result");
  query.continuation = get("$skiptoken");
  for (const char* name : {"from", "to", "top"}) {
    std::string text = get(name);
    if (text.empty()) continue;
    std::optional<int64_t> v = ParseInt(text);
    if (!v) {
      return http::AzureError(
          400, "InvalidParameter",
          std::string("'") + name + "' must be an integer" +
              (std::string(name) == "top" ? " (1..1000)." : " (unix milliseconds)."));
    }
    if (std::string(name) == "from") query.from_time_ms = *v;
    if (std::string(name) == "to") query.to_time_ms = *v;
    if (std::string(name) == "top") {
      if (*v < 1 || *v > 1000) {
        return http::AzureError(400, "InvalidParameter", "'top' must be from 1 to 1000.");
      }
      query.limit = static_cast<int>(*v);
    }
  }
  const std::string order = get("order");
  if (order.empty() || order == "desc") {
    query.order = audit::AuditOrder::kNewestFirst;
  } else if (order == "asc") {
    query.order = audit::AuditOrder::kOldestFirst;
  } else {
    return http::AzureError(400, "InvalidParameter", "'order' is asc or desc.");
  }
  StatusOr<audit::AuditPage> page = s.audit->Query(query);
  if (!page.ok()) {
    if (page.status().code() == StatusCode::kInvalidArgument) {
      return http::AzureError(400, "InvalidParameter", page.status().message());
    }
    return InternalFailure(r, page.status());
  }
  nlohmann::json value = nlohmann::json::array();
  for (const audit::AuditEvent& e : page->events) value.push_back(audit::AuditEventJson(e));
  nlohmann::json next;
  if (!page->continuation.empty()) {
    std::string link = s.base_url + r.path + "?";
    for (const auto& [k, v] : r.query) {
      if (k == "$skiptoken") continue;
      link += http::PercentEncode(k) + "=" + http::PercentEncode(v) + "&";
    }
    next = link + "$skiptoken=" + http::PercentEncode(page->continuation);
  }
  return http::Json(200, {{"value", value}, {"nextLink", next}});
}

Response VerifyChain(const Services& s, Request& r) {
  identity::Caller caller;
  if (auto failed = Check(s, r, &caller)) return *failed;
  StatusOr<audit::VerifyResult> result = s.audit->Verify();
  if (!result.ok()) return InternalFailure(r, result.status());
  nlohmann::json out = {{"valid", result->intact()}, {"checked", result->checked}};
  out["firstBrokenSequence"] =
      result->intact() ? nlohmann::json() : nlohmann::json(result->first_broken_sequence);
  if (!result->intact()) out["reason"] = result->reason;
  return http::Json(200, out);
}

}  // namespace

void AddAuditRoutes(http::Router& router, std::shared_ptr<Services> services) {
  auto s = std::move(services);
  router.Add("GET", "*",
             "/subscriptions/{subscriptionId}/providers/Microsoft.KeyFoundry/auditEvents",
             [s](Request& r) { return ListEvents(*s, r); });
  router.Add("GET", "*",
             "/subscriptions/{subscriptionId}/providers/Microsoft.KeyFoundry/auditEvents/verify",
             [s](Request& r) { return VerifyChain(*s, r); });
}

}  // namespace keyfoundry::server
