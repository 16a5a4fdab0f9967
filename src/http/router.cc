#include "http/router.h"

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <set>

#include "common/logging.h"
#include "http/url.h"

namespace keyfoundry::http {
namespace {

// Ranks order specificity: a higher rank wins.
enum class HostKind { kAny = 0, kLabel = 1, kExact = 2 };
enum class SegmentKind { kCatchAll = 0, kParam = 1, kLiteral = 2 };

struct Segment {
  SegmentKind kind;
  std::string text;  // kLiteral: lower case; else the parameter name
};

constexpr size_t kMaxPathInMessage = 256;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool IsParamName(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// The segments of a path: no leading slash, one trailing slash ignored. "/" has none.
std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.starts_with('/')) path.remove_prefix(1);
  if (path.ends_with('/')) path.remove_suffix(1);
  if (path.empty()) return out;
  while (true) {
    const size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) return out;
    path.remove_prefix(slash + 1);
  }
}

[[noreturn]] void InvalidRoute(const std::string& method, const std::string& host,
                               const std::string& path, std::string_view reason) {
  Log(LogLevel::kError, "http.router.invalid_route",
      {{"method", method}, {"host", host}, {"path", path}, {"reason", reason}});
  std::abort();
}

}  // namespace

struct Router::CompiledRoute {
  Route route;
  HostKind host_kind = HostKind::kAny;
  std::string host_param;  // kLabel
  std::string host_text;   // kLabel: the suffix after the label, with its dot; kExact: the host
  std::vector<Segment> segments;
  std::string shape;  // Shape(), computed once

  // The shape that two ambiguous routes share: parameter names do not count.
  std::string Shape() const {
    std::string out =
        route.method + " " + std::to_string(static_cast<int>(host_kind)) + " " + host_text + " ";
    for (const Segment& s : segments) {
      out += s.kind == SegmentKind::kLiteral ? "/" + s.text
             : s.kind == SegmentKind::kParam ? std::string("/{}")
                                             : std::string("/{...}");
    }
    return out;
  }

  bool MatchHost(std::string_view host, std::map<std::string, std::string>* params) const {
    switch (host_kind) {
      case HostKind::kAny:
        return true;
      case HostKind::kExact:
        return host == host_text;
      case HostKind::kLabel: {
        if (host.size() <= host_text.size() || !host.ends_with(host_text)) return false;
        const std::string_view label = host.substr(0, host.size() - host_text.size());
        if (label.find('.') != std::string_view::npos) return false;
        if (params != nullptr) (*params)[host_param] = std::string(label);
        return true;
      }
    }
    return false;
  }

  // `raw` are the path's segments, `decoded` the same percent-decoded; `path` is the whole
  // path (for a catch-all's remainder).
  bool MatchPath(std::string_view path, const std::vector<std::string_view>& raw,
                 const std::vector<std::string>& decoded,
                 std::map<std::string, std::string>* params) const {
    for (size_t i = 0; i < segments.size(); ++i) {
      const Segment& s = segments[i];
      if (s.kind == SegmentKind::kCatchAll) {
        if (params == nullptr) return true;
        std::string_view rest;
        if (i < raw.size()) {
          const size_t start = static_cast<size_t>(raw[i].data() - path.data());
          const size_t end =
              static_cast<size_t>(raw.back().data() + raw.back().size() - path.data());
          rest = path.substr(start, end - start);
        }
        auto value = PercentDecode(rest, false);
        if (!value.ok()) return false;
        (*params)[s.text] = *std::move(value);
        return true;
      }
      if (i >= raw.size()) return false;
      if (s.kind == SegmentKind::kLiteral) {
        if (!EqualsIgnoreCase(decoded[i], s.text)) return false;
      } else {
        if (decoded[i].empty()) return false;
        if (params != nullptr) (*params)[s.text] = decoded[i];
      }
    }
    return segments.size() == raw.size();
  }

  // True when this route is more specific than `other` (both matched the same request).
  bool MoreSpecificThan(const CompiledRoute& other) const {
    if (host_kind != other.host_kind) return host_kind > other.host_kind;
    const size_t n = std::min(segments.size(), other.segments.size());
    for (size_t i = 0; i < n; ++i) {
      if (segments[i].kind != other.segments[i].kind) {
        return segments[i].kind > other.segments[i].kind;
      }
    }
    // One is the other plus a catch-all that matched nothing: the shorter is the exact one.
    return segments.size() < other.segments.size();
  }
};

Router::Router() = default;
Router::~Router() = default;
Router::Router(Router&&) noexcept = default;
Router& Router::operator=(Router&&) noexcept = default;

void Router::Add(std::string method, std::string host_pattern, std::string path_pattern,
                 Handler handler, RouteOptions options) {
  Route route;
  route.method = std::move(method);
  route.host_pattern = std::move(host_pattern);
  route.path_pattern = std::move(path_pattern);
  route.handler = std::move(handler);
  route.options = std::move(options);
  AddRoute(std::move(route));
}

void Router::AddStreaming(std::string method, std::string host_pattern, std::string path_pattern,
                          StreamingHandler handler, RouteOptions options) {
  Route route;
  route.method = std::move(method);
  route.host_pattern = std::move(host_pattern);
  route.path_pattern = std::move(path_pattern);
  route.streaming = std::move(handler);
  route.options = std::move(options);
  AddRoute(std::move(route));
}

void Router::AddRoute(Route route) {
  const std::string& method = route.method;
  const std::string& host_pattern = route.host_pattern;
  const std::string& path_pattern = route.path_pattern;
  CompiledRoute c;
  auto invalid = [&](std::string_view reason) {
    InvalidRoute(method, host_pattern, path_pattern, reason);
  };
  if (method.empty() || (!route.handler && !route.streaming)) {
    invalid("a route needs a method and a handler");
  }
  std::set<std::string> names;
  auto add_name = [&](const std::string& name) {
    if (!IsParamName(name)) invalid("a parameter name must be letters, digits and '_'");
    if (!names.insert(name).second) invalid("a parameter is named twice");
  };

  if (host_pattern == "*") {
    c.host_kind = HostKind::kAny;
  } else if (host_pattern.starts_with('{')) {
    const size_t close = host_pattern.find("}.");
    if (close == std::string::npos || close + 2 == host_pattern.size()) {
      invalid("a host pattern is \"*\", a host, or \"{label}.host\"");
    }
    c.host_kind = HostKind::kLabel;
    c.host_param = host_pattern.substr(1, close - 1);
    add_name(c.host_param);
    c.host_text = Lower(std::string_view(host_pattern).substr(close + 1));
  } else {
    c.host_kind = HostKind::kExact;
    c.host_text = Lower(host_pattern);
  }
  if (c.host_kind != HostKind::kAny &&
      (c.host_text.empty() || c.host_text.find_first_of("{}*/") != std::string::npos)) {
    invalid("a host pattern is \"*\", a host, or \"{label}.host\"");
  }

  if (!path_pattern.starts_with('/')) invalid("a path pattern starts with '/'");
  const std::vector<std::string_view> parts = SplitPath(path_pattern);
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string_view part = parts[i];
    if (part.starts_with('{') && part.ends_with("...}")) {
      if (i + 1 != parts.size()) invalid("a catch-all {name...} must be the last segment");
      c.segments.push_back({SegmentKind::kCatchAll, std::string(part.substr(1, part.size() - 5))});
      add_name(c.segments.back().text);
    } else if (part.starts_with('{') && part.ends_with('}')) {
      c.segments.push_back({SegmentKind::kParam, std::string(part.substr(1, part.size() - 2))});
      add_name(c.segments.back().text);
    } else if (part.empty() || part.find_first_of("{}%") != std::string_view::npos) {
      invalid("a literal path segment is non-empty and holds no '{', '}' or '%'");
    } else {
      c.segments.push_back({SegmentKind::kLiteral, Lower(part)});
    }
  }

  route.label = route.options.metrics_name.empty() ? route.path_pattern
                                                   : std::string(route.options.metrics_name);
  c.route = std::move(route);
  c.shape = c.Shape();
  for (const CompiledRoute& existing : routes_) {
    if (existing.shape == c.shape) {
      InvalidRoute(c.route.method, c.route.host_pattern, c.route.path_pattern,
                   "ambiguous with the route " + existing.route.method + " " +
                       existing.route.host_pattern + " " + existing.route.path_pattern);
    }
  }
  routes_.push_back(std::move(c));
}

RouteMatch Router::Match(std::string_view method, std::string_view host,
                         std::string_view path) const {
  RouteMatch result;
  const std::vector<std::string_view> raw = SplitPath(path);
  std::vector<std::string> decoded;
  decoded.reserve(raw.size());
  for (std::string_view segment : raw) {
    auto d = PercentDecode(segment, false);
    if (!d.ok()) return result;  // the server validated the path; other callers get a 404
    decoded.push_back(*std::move(d));
  }

  const CompiledRoute* best = nullptr;
  std::set<std::string> allowed;
  for (const CompiledRoute& c : routes_) {
    if (!c.MatchHost(host, nullptr) || !c.MatchPath(path, raw, decoded, nullptr)) continue;
    if (c.route.method != method) {
      allowed.insert(c.route.method);
    } else if (best == nullptr || c.MoreSpecificThan(*best)) {
      best = &c;
    }
  }
  if (best != nullptr) {
    result.kind = MatchKind::kFound;
    result.route = &best->route;
    best->MatchHost(host, &result.params);
    if (!best->MatchPath(path, raw, decoded, &result.params)) result = RouteMatch();
  } else if (!allowed.empty()) {
    result.kind = MatchKind::kMethodNotAllowed;
    result.allowed_methods.assign(allowed.begin(), allowed.end());
  }
  return result;
}

Response Router::Handle(Request& request) const {
  RouteMatch match = Match(request.method, request.host, request.path);
  switch (match.kind) {
    case MatchKind::kFound: {
      request.params = std::move(match.params);
      if (!match.route->streaming) return InvokeHandler(*match.route, request);
      auto started = InvokeStreamingHandler(*match.route, request);
      if (auto* response = std::get_if<Response>(&started)) return std::move(*response);
      auto& consumer = std::get<std::unique_ptr<BodyConsumer>>(started);
      if (Status s = consumer->Consume(AsBytes(request.body)); !s.ok()) return consumer->Fail(s);
      return consumer->Finish();
    }
    case MatchKind::kMethodNotAllowed:
      return MethodNotAllowedResponse(request.method, match.allowed_methods);
    case MatchKind::kNotFound:
      break;
  }
  return NotFoundResponse(request.method, request.path);
}

namespace {

// Runs `fn`, turning an exception into a logged 500.
template <typename Result, typename Fn>
Result Guarded(const Route& route, const Request& request, Fn&& fn) {
  std::string what;
  try {
    return fn();
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
    what = "an exception not derived from std::exception";
  }
  Log(LogLevel::kError, "http.handler_exception",
      {{"request_id", request.request_id}, {"route", route.label}, {"exception", what}});
  return AzureError(500, "InternalServerError",
                    "The server failed to process the request. Quote the x-ms-request-id "
                    "response header when reporting this.");
}

}  // namespace

Response InvokeHandler(const Route& route, Request& request) {
  return Guarded<Response>(route, request, [&] { return route.handler(request); });
}

std::variant<Response, std::unique_ptr<BodyConsumer>> InvokeStreamingHandler(const Route& route,
                                                                             Request& request) {
  using Result = std::variant<Response, std::unique_ptr<BodyConsumer>>;
  return Guarded<Result>(route, request, [&] { return route.streaming(request); });
}

Response InvokeFinish(const Route& route, const Request& request, BodyConsumer& consumer) {
  return Guarded<Response>(route, request, [&] { return consumer.Finish(); });
}

Response NotFoundResponse(std::string_view method, std::string_view path) {
  return AzureError(404, "NotFound",
                    "No resource matches " + std::string(method) + " " +
                        std::string(path.substr(0, kMaxPathInMessage)) + ".");
}

Response MethodNotAllowedResponse(std::string_view method,
                                  const std::vector<std::string>& allowed_methods) {
  std::string allow;
  for (const std::string& m : allowed_methods) allow += (allow.empty() ? "" : ", ") + m;
  Response response = AzureError(
      405, "MethodNotAllowed",
      "The method " + std::string(method) + " is not supported here; supported: " + allow + ".");
  response.headers.emplace_back("Allow", allow);
  return response;
}

}  // namespace keyfoundry::http
