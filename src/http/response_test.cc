#include "http/response.h"

#include <gtest/gtest.h>

namespace keyfoundry::http {
namespace {

TEST(ResponseTest, AzureErrorIsTheEnvelopeAndNothingElse) {
  Response r = AzureError(404, "KeyNotFound", "A key named k1 was not found in this vault.");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.content_type, "application/json; charset=utf-8");
  EXPECT_EQ(nlohmann::json::parse(r.body),
            nlohmann::json::parse(R"({"error":{"code":"KeyNotFound",)"
                                  R"("message":"A key named k1 was not found in this vault."}})"));
  EXPECT_TRUE(r.headers.empty());
}

TEST(ResponseTest, AzureErrorCarriesInnerErrorWhenGiven) {
  Response r = AzureError(403, "Forbidden", "no", nlohmann::json{{"code", "AccessDenied"}});
  EXPECT_EQ(nlohmann::json::parse(r.body),
            nlohmann::json::parse(R"({"error":{"code":"Forbidden","message":"no",)"
                                  R"("innererror":{"code":"AccessDenied"}}})"));
}

TEST(ResponseTest, JsonIsCompactAndSurvivesInvalidUtf8) {
  EXPECT_EQ(Json(201, {{"a", 1}}).body, R"({"a":1})");
  EXPECT_EQ(Json(201, {{"a", 1}}).status, 201);
  Response r = Json(200, {{"s", "bad\xff"}});
  EXPECT_EQ(r.body, "{\"s\":\"bad\xef\xbf\xbd\"}");
}

TEST(ResponseTest, TextKeepsBodyAndContentType) {
  Response r = Text(200, "# HELP x\n", "text/plain; version=0.0.4");
  EXPECT_EQ(r.body, "# HELP x\n");
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4");
  EXPECT_EQ(Text(204, "", "").content_type, "");
}

}  // namespace
}  // namespace keyfoundry::http
