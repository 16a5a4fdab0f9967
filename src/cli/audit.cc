// kf audit list / verify: the deployment's hash-chained audit trail
// (GET /subscriptions/{s}/providers/Microsoft.KeyFoundry/auditEvents[/verify]).
#include "cli/commands.h"
#include "http/url.h"

namespace keyfoundry::cli {
namespace {

using Json = nlohmann::json;

struct AuditOptions {
  std::string operation;
  std::string caller;
  std::string resource_id;
  std::string result;
  std::string from;
  std::string to;
  std::string order = "desc";
  int top = 0;
};

constexpr int kMaxPage = 1000;  // the API's largest page

std::string EventsPath(const Session& s) {
  return "/subscriptions/" + s.profile.subscription_id +
         "/providers/Microsoft.KeyFoundry/auditEvents";
}

Status List(const AuditOptions& o) {
  std::string query = std::string("?api-version=") + kAuditApiVersion + "&order=" + o.order;
  auto add = [&](const char* name, const std::string& value) {
    if (!value.empty()) query += std::string("&") + name + "=" + http::PercentEncode(value);
  };
  add("operation", o.operation);
  add("caller", o.caller);
  add("resourceId", o.resource_id);
  add("result", o.result);
  // The API takes unix milliseconds; kf takes what az's time arguments take.
  if (!o.from.empty()) {
    ASSIGN_OR_RETURN(int64_t from, ParseTime("--from", o.from));
    add("from", std::to_string(from * 1000));
  }
  if (!o.to.empty()) {
    ASSIGN_OR_RETURN(int64_t to, ParseTime("--to", o.to));
    add("to", std::to_string(to * 1000));
  }
  if (o.top > 0) add("top", std::to_string(std::min(o.top, kMaxPage)));
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(Json events,
                   ListPages(s, EventsPath(s) + query, static_cast<size_t>(std::max(o.top, 0))));
  Print(events,
        {Field("Time", "/time"), Field("Operation", "/operationName"), Field("Result", "/result"),
         Field("Status", "/status"), Field("Caller", "/callerObjectId"),
         Field("Resource", "/resourceId"), Field("KeyId", "/keyId")});
  return OkStatus();
}

Status Verify() {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(
      ApiResult result,
      s.client->Call("GET", EventsPath(s) + "/verify?api-version=" + kAuditApiVersion, s.token));
  PrintJson(result.body);
  if (result.body.value("valid", false)) return OkStatus();
  // A broken chain fails the command, so scripts and monitors notice.
  const Json& at = result.body.value("firstBrokenSequence", Json());
  return DataLossError(
      "the audit chain is broken" + (at.is_number() ? " at sequence " + at.dump() : std::string()) +
      (result.body.contains("reason") ? ": " + result.body.value("reason", "") : std::string()));
}

}  // namespace

void AddAuditCommands(CLI::App& app) {
  CLI::App* audit = app.add_subcommand("audit", "the audit trail of key and management operations");
  audit->require_subcommand(1);
  auto o = std::make_shared<AuditOptions>();

  CLI::App* list = audit->add_subcommand("list", "list audit events, newest first");
  list->add_option("--operation", o->operation, "only this operation (e.g. KeyDelete, VaultPut)");
  list->add_option("--caller", o->caller, "only this caller's object id");
  list->add_option("--resource-id", o->resource_id, "only resources whose id starts with this");
  list->add_option("--result", o->result, "Success or Failure")
      ->transform(CLI::IsMember({"Success", "Failure"}, CLI::ignore_case));
  list->add_option("--from", o->from, "from this time: ISO 8601 or unix seconds");
  list->add_option("--to", o->to, "up to this time: ISO 8601 or unix seconds");
  list->add_option("--order", o->order, "desc (newest first, the default) or asc")
      ->check(CLI::IsMember({"asc", "desc"}));
  list->add_option("--top", o->top, "at most this many events (default: all)")
      ->check(CLI::Range(1, 1000000));
  list->callback([o] { Check(List(*o)); });

  audit->add_subcommand("verify", "check the audit chain's hashes end to end")->callback([] {
    Check(Verify());
  });
}

}  // namespace keyfoundry::cli
