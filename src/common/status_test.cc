#include "common/status.h"

#include <gtest/gtest.h>

#include <memory>

namespace keyfoundry {
namespace {

StatusOr<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgumentError("odd");
  return x / 2;
}

StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int half, Half(x));
  ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

Status CheckEven(int x) {
  RETURN_IF_ERROR(Half(x));
  return OkStatus();
}

TEST(StatusTest, DefaultIsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "OK");
}

TEST(StatusTest, ReasonRefinesTheCodeAndSurvivesContext) {
  Status denied = PermissionDeniedError("no").WithReason("AccessDenied");
  EXPECT_EQ(denied.reason(), "AccessDenied");
  EXPECT_EQ(denied.WithContext("vault v1").reason(), "AccessDenied");
  EXPECT_EQ(denied, PermissionDeniedError("no"));  // not part of equality
  EXPECT_EQ(OkStatus().WithReason("ignored").reason(), "");
}

TEST(StatusTest, ErrorCarriesCodeAndMessage) {
  Status s = NotFoundError("no such key");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.ToString(), "NOT_FOUND: no such key");
  EXPECT_EQ(s.WithContext("vault v1").message(), "vault v1: no such key");
  EXPECT_EQ(s.WithContext("x").code(), StatusCode::kNotFound);
}

TEST(StatusTest, AssignOrReturnPropagatesFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Quarter(7).status().message(), "odd");
  EXPECT_TRUE(CheckEven(4).ok());
  EXPECT_FALSE(CheckEven(5).ok());
}

TEST(StatusTest, StatusOrHoldsMoveOnlyValues) {
  StatusOr<std::unique_ptr<int>> v = std::make_unique<int>(3);
  ASSERT_TRUE(v.ok());
  std::unique_ptr<int> p = std::move(v).value();
  EXPECT_EQ(*p, 3);
}

}  // namespace
}  // namespace keyfoundry
