#include "http/router.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace keyfoundry::http {
namespace {

// A handler that answers with its own name, so a test sees which route ran.
Handler Named(std::string name) {
  return [name](Request&) { return Text(200, name); };
}

Request Make(std::string method, std::string host, std::string path) {
  Request r;
  r.method = std::move(method);
  r.host = std::move(host);
  r.path = std::move(path);
  return r;
}

// Runs a request through the router; returns "status body".
std::string Serve(const Router& router, std::string method, std::string host, std::string path) {
  Request request = Make(std::move(method), std::move(host), std::move(path));
  Response response = router.Handle(request);
  return std::to_string(response.status) + " " + response.body;
}

TEST(RouterTest, MatchesLiteralAndParamSegments) {
  Router router;
  router.Add("GET", "*", "/", Named("root"));
  router.Add("GET", "*", "/keys", Named("list"));
  router.Add("GET", "*", "/keys/{name}", Named("get"));
  router.Add("GET", "*", "/keys/{name}/{version}", Named("get-version"));
  router.Add("POST", "*", "/keys/{name}/create", Named("create"));
  EXPECT_EQ(Serve(router, "GET", "h", "/"), "200 root");
  EXPECT_EQ(Serve(router, "GET", "h", "/keys"), "200 list");
  EXPECT_EQ(Serve(router, "GET", "h", "/keys/k1"), "200 get");
  EXPECT_EQ(Serve(router, "GET", "h", "/keys/k1/v2"), "200 get-version");
  EXPECT_EQ(Serve(router, "POST", "h", "/keys/k1/create"), "200 create");
  EXPECT_EQ(Serve(router, "GET", "h", "/keys/k1/v2/extra").substr(0, 3), "404");
  EXPECT_EQ(Serve(router, "GET", "h", "/other").substr(0, 3), "404");

  const RouteMatch m = router.Match("GET", "h", "/keys/k1/v2");
  ASSERT_EQ(m.kind, MatchKind::kFound);
  EXPECT_EQ(m.route->path_pattern, "/keys/{name}/{version}");
  EXPECT_EQ(m.route->label, "/keys/{name}/{version}");
  EXPECT_EQ(m.params, (std::map<std::string, std::string>{{"name", "k1"}, {"version", "v2"}}));
}

TEST(RouterTest, HandlerSeesParams) {
  Router router;
  router.Add("GET", "{vault}.vault.localhost", "/keys/{name}", [](Request& r) {
    return Text(200, r.params.at("vault") + "/" + r.params.at("name"));
  });
  EXPECT_EQ(Serve(router, "GET", "myvault.vault.localhost", "/keys/k1"), "200 myvault/k1");
}

TEST(RouterTest, LiteralSegmentsMatchCaseInsensitivelyParamsKeepTheirCase) {
  Router router;
  router.Add("GET", "*", "/subscriptions/{sub}/resourceGroups/{rg}", Named("rg"));
  const RouteMatch m = router.Match("GET", "h", "/SUBSCRIPTIONS/S1/resourcegroups/MyGroup");
  ASSERT_EQ(m.kind, MatchKind::kFound);
  EXPECT_EQ(m.params.at("sub"), "S1");
  EXPECT_EQ(m.params.at("rg"), "MyGroup");
  EXPECT_EQ(router.Match("GET", "h", "/subscriptions/S1/ResourceGroups/g").kind, MatchKind::kFound);
}

TEST(RouterTest, OneTrailingSlashIsTolerated) {
  Router router;
  router.Add("GET", "*", "/keys/{name}", Named("get"));
  router.Add("GET", "*", "/deletedkeys/", Named("deleted"));  // a pattern's slash is ignored too
  EXPECT_EQ(Serve(router, "GET", "h", "/keys/k1/"), "200 get");
  EXPECT_EQ(Serve(router, "GET", "h", "/keys/k1"), "200 get");
  EXPECT_EQ(Serve(router, "GET", "h", "/deletedkeys"), "200 deleted");
  EXPECT_EQ(Serve(router, "GET", "h", "/keys/k1//").substr(0, 3), "404");
  EXPECT_EQ(Serve(router, "GET", "h", "/keys//").substr(0, 3), "404");  // an empty {name}
}

TEST(RouterTest, PathParamsArePercentDecodedAfterSplitting) {
  Router router;
  router.Add("GET", "*", "/keys/{name}", Named("get"));
  const RouteMatch m = router.Match("GET", "h", "/keys/a%2Fb%20c");
  ASSERT_EQ(m.kind, MatchKind::kFound);
  EXPECT_EQ(m.params.at("name"), "a/b c");
  // A literal may be escaped too.
  EXPECT_EQ(router.Match("GET", "h", "/%6Beys/x").kind, MatchKind::kFound);
  // Undecodable: no match (the server refuses such paths with 400 before routing).
  EXPECT_EQ(router.Match("GET", "h", "/keys/%zz").kind, MatchKind::kNotFound);
}

TEST(RouterTest, HostPatterns) {
  Router router;
  router.Add("GET", "{vault}.vault.localhost", "/keys", Named("vault"));
  router.Add("GET", "management.localhost", "/keys", Named("exact"));
  router.Add("GET", "*", "/keys", Named("any"));
  EXPECT_EQ(Serve(router, "GET", "v1.vault.localhost", "/keys"), "200 vault");
  EXPECT_EQ(Serve(router, "GET", "management.localhost", "/keys"), "200 exact");
  EXPECT_EQ(Serve(router, "GET", "127.0.0.1", "/keys"), "200 any");
  EXPECT_EQ(Serve(router, "GET", "vault.localhost", "/keys"), "200 any");      // no label
  EXPECT_EQ(Serve(router, "GET", "a.b.vault.localhost", "/keys"), "200 any");  // two labels
  EXPECT_EQ(Serve(router, "GET", "v1.vault.localhost.evil", "/keys"), "200 any");
  EXPECT_EQ(router.Match("GET", "v1.vault.localhost", "/keys").params.at("vault"), "v1");

  Router only_vault;
  only_vault.Add("GET", "{vault}.VAULT.localhost", "/keys", Named("vault"));
  EXPECT_EQ(Serve(only_vault, "GET", "v1.vault.localhost", "/keys"), "200 vault");
  EXPECT_EQ(Serve(only_vault, "GET", "localhost", "/keys").substr(0, 3), "404");
  EXPECT_EQ(Serve(only_vault, "GET", "xvault.localhost", "/keys").substr(0, 3), "404");
}

TEST(RouterTest, NotFoundAndMethodNotAllowedUseTheAzureEnvelope) {
  Router router;
  router.Add("GET", "*", "/keys/{name}", Named("get"));
  router.Add("DELETE", "*", "/keys/{name}", Named("delete"));
  router.Add("PUT", "other.localhost", "/keys/{name}", Named("put-elsewhere"));

  Request request = Make("POST", "h", "/keys/k1");
  Response response = router.Handle(request);
  EXPECT_EQ(response.status, 405);
  EXPECT_EQ(nlohmann::json::parse(response.body)["error"]["code"], "MethodNotAllowed");
  ASSERT_EQ(response.headers.size(), 1u);
  EXPECT_EQ(response.headers[0], (std::pair<std::string, std::string>{"Allow", "DELETE, GET"}));
  EXPECT_EQ(router.Match("POST", "h", "/keys/k1").allowed_methods,
            (std::vector<std::string>{"DELETE", "GET"}));

  request = Make("GET", "h", "/nothing/here");
  response = router.Handle(request);
  EXPECT_EQ(response.status, 404);
  EXPECT_EQ(nlohmann::json::parse(response.body)["error"]["code"], "NotFound");
  EXPECT_EQ(nlohmann::json::parse(response.body)["error"]["message"],
            "No resource matches GET /nothing/here.");
  EXPECT_EQ(router.Match("get", "h", "/keys/k1").kind, MatchKind::kMethodNotAllowed);
}

TEST(RouterTest, MoreSpecificRoutesWinWhateverTheOrderOfAdding) {
  Router router;
  router.Add("GET", "*", "/files/{rest...}", Named("catch-all"));
  router.Add("GET", "*", "/files/{id}", Named("param"));
  router.Add("GET", "*", "/files/{id}/content", Named("content"));
  router.Add("GET", "*", "/{a}/{b}/content", Named("two-params"));
  router.Add("GET", "*", "/files/latest", Named("literal"));
  router.Add("GET", "*", "/files", Named("exact"));
  EXPECT_EQ(Serve(router, "GET", "h", "/files/latest"), "200 literal");
  EXPECT_EQ(Serve(router, "GET", "h", "/files/f1"), "200 param");
  EXPECT_EQ(Serve(router, "GET", "h", "/files/f1/content"), "200 content");
  EXPECT_EQ(Serve(router, "GET", "h", "/other/f1/content"), "200 two-params");
  EXPECT_EQ(Serve(router, "GET", "h", "/files/a/b/c"), "200 catch-all");
  EXPECT_EQ(Serve(router, "GET", "h", "/files"), "200 exact");
}

TEST(RouterTest, CatchAllTakesTheDecodedRestOfThePath) {
  Router router;
  router.Add("GET", "*", "/portal/{file...}", Named("portal"));
  EXPECT_EQ(router.Match("GET", "h", "/portal/js/app%20x.js").params.at("file"), "js/app x.js");
  EXPECT_EQ(router.Match("GET", "h", "/portal/index.html/").params.at("file"), "index.html");
  EXPECT_EQ(router.Match("GET", "h", "/portal/").params.at("file"), "");
  EXPECT_EQ(router.Match("GET", "h", "/portal").params.at("file"), "");
  EXPECT_EQ(router.Match("GET", "h", "/portalx").kind, MatchKind::kNotFound);
}

TEST(RouterTest, MethodFirstThenSpecificity) {
  // GET /keys/create is a key named "create": only the POST route has the literal.
  Router router;
  router.Add("GET", "*", "/keys/{name}", Named("get"));
  router.Add("POST", "*", "/keys/create", Named("create"));
  EXPECT_EQ(Serve(router, "GET", "h", "/keys/create"), "200 get");
  EXPECT_EQ(Serve(router, "POST", "h", "/keys/create"), "200 create");
  EXPECT_EQ(Serve(router, "POST", "h", "/keys/other").substr(0, 3), "405");
}

TEST(RouterTest, OptionsAndLabel) {
  Router router;
  router.Add("PUT", "*", "/files/{id}", Named("upload"),
             {.max_body_bytes = 512 << 20, .metrics_name = "files.upload"});
  const RouteMatch m = router.Match("PUT", "h", "/files/f1");
  ASSERT_EQ(m.kind, MatchKind::kFound);
  EXPECT_EQ(m.route->options.max_body_bytes, size_t{512} << 20);
  EXPECT_EQ(m.route->label, "files.upload");
}

TEST(RouterTest, ExceptionsBecomeA500WithoutDetails) {
  Router router;
  router.Add("GET", "*", "/boom",
             [](Request&) -> Response { throw std::runtime_error("secret detail"); });
  router.Add("GET", "*", "/boom2", [](Request&) -> Response { throw 42; });
  for (const char* path : {"/boom", "/boom2"}) {
    Request request = Make("GET", "h", path);
    request.request_id = "rid";
    Response response = router.Handle(request);
    EXPECT_EQ(response.status, 500);
    EXPECT_EQ(nlohmann::json::parse(response.body)["error"]["code"], "InternalServerError");
    EXPECT_EQ(response.body.find("secret"), std::string::npos);
  }
}

TEST(RouterDeathTest, MalformedOrAmbiguousRoutesAbort) {
  auto add = [](std::string method, std::string host, std::string path) {
    Router router;
    router.Add("GET", "*", "/keys/{name}", Named("x"));
    router.Add(std::move(method), std::move(host), std::move(path), Named("y"));
  };
  EXPECT_DEATH(add("GET", "*", "/keys/{other}"), "ambiguous");
  EXPECT_DEATH(add("GET", "*", "keys"), "starts with");
  EXPECT_DEATH(add("GET", "*", "/a/{x}/{x}"), "named twice");
  EXPECT_DEATH(add("GET", "*", "/a/{x-y}"), "parameter name");
  EXPECT_DEATH(add("GET", "*", "/a/{rest...}/b"), "catch-all");
  EXPECT_DEATH(add("GET", "*", "/a//b"), "literal path segment");
  EXPECT_DEATH(add("GET", "{v}", "/a"), "host pattern");
  EXPECT_DEATH(add("GET", "*.vault.localhost", "/a"), "host pattern");
  EXPECT_DEATH(add("", "*", "/a"), "method");
  // Not ambiguous: another method, another host pattern.
  add("PUT", "*", "/keys/{other}");
  add("GET", "{v}.vault.localhost", "/keys/{name}");
}

}  // namespace
}  // namespace keyfoundry::http
