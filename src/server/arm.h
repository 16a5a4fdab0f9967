// The steps every ARM-shaped (control-plane) handler shares: the subscription check, ARM's
// error shapes, JSON bodies, authorization helpers and THE audit hook of management changes.
// Used by the resource group, vault and account routes.
//
// Thread safety: stateless functions over Services.
#ifndef KEYFOUNDRY_SERVER_ARM_H_
#define KEYFOUNDRY_SERVER_ARM_H_

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "server/services.h"

namespace keyfoundry::server {

// "/subscriptions/{s}" and "/subscriptions/{s}/resourceGroups/{group}".
std::string SubscriptionScope(const Services& s);
std::string GroupScope(const Services& s, std::string_view group);

// Authentication, api-version and the subscription, as every handler here starts.
template <typename Body>
http::Response WithSubscription(const Services& s, http::Request& request, Body body) {
  AuthResult auth = AuthenticateManagement(s, request);
  if (auto* denied = std::get_if<http::Response>(&auth)) return std::move(*denied);
  if (auto missing = RequireApiVersion(request)) return *missing;
  const std::string& subscription = request.params["subscriptionId"];
  if (!EqualsIgnoreCase(subscription, s.subscription_id)) {
    return http::AzureError(404, "SubscriptionNotFound",
                            "The subscription '" + subscription + "' could not be found.");
  }
  return body(std::get<identity::Caller>(auth));
}

// A Status from the stores or the parsers as ARM's error: its reason is the code
// (InvalidArgument 400, NotFound 404, AlreadyExists / FailedPrecondition 409, else 500/503).
http::Response ErrorResponse(const http::Request& request, const Status& status);

// The body as a JSON object, or InvalidArgument with reason "InvalidRequestContent".
StatusOr<nlohmann::json> ParseJsonBody(const http::Request& request);

http::Response ResourceGroupNotFound(std::string_view group);

// nullopt when the group exists; its 404 (or a failure) otherwise.
std::optional<http::Response> RequireGroup(const Services& s, const http::Request& request,
                                           std::string_view group);

// May the caller perform `action` at `scope`? For filtering lists: fails closed.
bool Allowed(const Services& s, const identity::Caller& caller, std::string_view scope,
             std::string_view action);

// THE audit hook of management changes: every change, success or failure, is recorded here.
// `detail` is the error code of a refusal (empty on success).
Status AuditChange(const Services& s, const http::Request& request, const identity::Caller& caller,
                   std::string_view operation, std::string_view resource_id, int status,
                   std::string_view detail = "");

// Audits `response` as the outcome of `operation` and returns what to send: the response, or
// a 503 when a change that succeeded could not be audited (nothing acknowledged is
// unaudited). A failure that could not be audited is still answered as it was.
http::Response Audited(const Services& s, const http::Request& request,
                       const identity::Caller& caller, std::string_view operation,
                       std::string_view resource_id, http::Response response);

void LogChange(const http::Request& request, const identity::Caller& caller, std::string_view event,
               std::string_view resource_id);

// $top: a positive count, or SIZE_MAX when absent; InvalidArgument otherwise.
StatusOr<size_t> Top(const http::Request& request);

}  // namespace keyfoundry::server

#endif  // KEYFOUNDRY_SERVER_ARM_H_
