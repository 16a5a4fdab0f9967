#include "server/arm.h"

#include "audit/audit_log.h"
#include "common/logging.h"
#include "common/strings.h"
#include "management/resource_groups.h"

namespace keyfoundry::server {

using http::Request;
using http::Response;
using identity::Caller;
using management::ResourceGroup;
using Json = nlohmann::json;

std::string SubscriptionScope(const Services& s) { return "/subscriptions/" + s.subscription_id; }

std::string GroupScope(const Services& s, std::string_view group) {
  return SubscriptionScope(s) + "/resourceGroups/" + std::string(group);
}

// A Status from the stores or the parsers as ARM's error: its reason is the code.
Response ErrorResponse(const Request& request, const Status& status) {
  const std::string& reason = status.reason();
  auto code = [&](const char* fallback) { return reason.empty() ? std::string(fallback) : reason; };
  if (status.code() == StatusCode::kInvalidArgument) {
    return http::AzureError(400, code("BadRequest"), status.message());
  }
  if (status.code() == StatusCode::kNotFound) {
    return http::AzureError(404, code("ResourceNotFound"), status.message());
  }
  if (status.code() == StatusCode::kAlreadyExists ||
      status.code() == StatusCode::kFailedPrecondition) {
    return http::AzureError(409, code("Conflict"), status.message());
  }
  return InternalFailure(request, status);
}

StatusOr<Json> ParseJsonBody(const Request& request) {
  Json body = Json::parse(request.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) {
    return InvalidArgumentError(
               "The request content was invalid and could not be deserialized: the body must be "
               "a JSON object.")
        .WithReason("InvalidRequestContent");
  }
  return body;
}

Response ResourceGroupNotFound(std::string_view group) {
  return http::AzureError(404, "ResourceGroupNotFound",
                          "Resource group '" + std::string(group) + "' could not be found.");
}

// nullopt when the group exists; its 404 (or a failure) otherwise.
std::optional<Response> RequireGroup(const Services& s, const Request& request,
                                     std::string_view group) {
  StatusOr<ResourceGroup> found = s.resource_groups->Get(s.subscription_id, group);
  if (found.ok()) return std::nullopt;
  if (found.status().code() == StatusCode::kNotFound) return ResourceGroupNotFound(group);
  return InternalFailure(request, found.status());
}

// May the caller perform `action` at `scope`? For filtering lists: fails closed.
bool Allowed(const Services& s, const Caller& caller, std::string_view scope,
             std::string_view action) {
  StatusOr<identity::Decision> decision =
      s.authorizer->Decide(caller.object_id, scope, action, identity::ActionType::kAction);
  return decision.ok() && decision->allowed;
}

// THE audit hook of this file: every management change, success or failure, is recorded here.
// `detail` is the error code of a refusal (empty on success).
Status AuditChange(const Services& s, const Request& request, const Caller& caller,
                   std::string_view operation, std::string_view resource_id, int status,
                   std::string_view detail) {
  audit::AuditEvent event;
  event.operation = std::string(operation);
  event.category = "Management";
  event.resource_id = std::string(resource_id);
  event.result = status >= 200 && status < 400 ? "Success" : "Failure";
  event.status = status;
  event.detail = std::string(detail);
  return RecordAudit(s, request, &caller, std::move(event));
}

// Audits `response` as the outcome of `operation` and returns what to send: the response, or
// a 503 when a change that succeeded could not be audited (services.h: nothing acknowledged
// is unaudited). A failure that could not be audited is still answered as it was: nothing
// changed.
Response Audited(const Services& s, const Request& request, const Caller& caller,
                 std::string_view operation, std::string_view resource_id, Response response) {
  std::string code;
  if (response.status >= 400) {
    Json body = Json::parse(response.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_object() && body.contains("error") && body["error"].is_object()) {
      code = body["error"].value("code", "");
    }
  }
  Status audited = AuditChange(s, request, caller, operation, resource_id, response.status, code);
  if (audited.ok() || response.status >= 400) return response;
  return InternalFailure(request, UnavailableError("audit: " + audited.ToString()));
}

void LogChange(const Request& request, const Caller& caller, std::string_view event,
               std::string_view resource_id) {
  Log(LogLevel::kInfo, event,
      {{"request_id", request.request_id},
       {"caller", caller.object_id},
       {"resource", resource_id}});
}

// $top: a positive count, or every item when absent.
StatusOr<size_t> Top(const Request& request) {
  auto it = request.query.find("$top");
  if (it == request.query.end() || it->second.empty()) return SIZE_MAX;
  size_t n = 0;
  for (char c : it->second) {
    if (c < '0' || c > '9' || n > 1000000) {
      return InvalidArgumentError("$top must be a positive whole number").WithReason("BadRequest");
    }
    n = n * 10 + static_cast<size_t>(c - '0');
  }
  if (n == 0) {
    return InvalidArgumentError("$top must be a positive whole number").WithReason("BadRequest");
  }
  return n;
}

}  // namespace keyfoundry::server
