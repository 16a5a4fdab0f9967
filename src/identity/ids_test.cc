#include "identity/ids.h"

#include <gtest/gtest.h>

namespace keyfoundry::identity {
namespace {

TEST(IdsTest, IsUuid) {
  EXPECT_TRUE(IsUuid("8e3af657-a8ff-443c-a75c-2fe8c4bcb635"));
  EXPECT_TRUE(IsUuid("8E3AF657-A8FF-443C-A75C-2FE8C4BCB635"));
  EXPECT_FALSE(IsUuid(""));
  EXPECT_FALSE(IsUuid("8e3af657a8ff443ca75c2fe8c4bcb635"));
  EXPECT_FALSE(IsUuid("8e3af657-a8ff-443c-a75c-2fe8c4bcb63"));
  EXPECT_FALSE(IsUuid("8e3af657-a8ff-443c-a75c-2fe8c4bcb6355"));
  EXPECT_FALSE(IsUuid("{8e3af657-a8ff-443c-a75c-2fe8c4bcb63}"));
  EXPECT_FALSE(IsUuid("8e3af657-a8ff-443c-a75c_2fe8c4bcb635"));
  EXPECT_FALSE(IsUuid("ge3af657-a8ff-443c-a75c-2fe8c4bcb635"));
}

TEST(IdsTest, PrintableUtf8) {
  EXPECT_TRUE(IsPrintableUtf8("plain"));
  EXPECT_TRUE(IsPrintableUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91"));
  EXPECT_TRUE(IsPrintableUtf8(""));
  EXPECT_FALSE(IsPrintableUtf8("tab\there"));
  EXPECT_FALSE(IsPrintableUtf8(std::string_view("nul\0", 4)));
  EXPECT_FALSE(IsPrintableUtf8("del\x7f"));
  EXPECT_FALSE(IsPrintableUtf8("\xc2\x85"));          // C1 control (NEL)
  EXPECT_FALSE(IsPrintableUtf8("\xc3"));              // truncated
  EXPECT_FALSE(IsPrintableUtf8("\xe2\x82"));          // truncated
  EXPECT_FALSE(IsPrintableUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsPrintableUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsPrintableUtf8("\xf4\x90\x80\x80"));  // beyond U+10FFFF
  EXPECT_FALSE(IsPrintableUtf8("\xff"));
  EXPECT_FALSE(IsPrintableUtf8("\x80"));
}

TEST(IdsTest, ValidateScopeAcceptsArmScopes) {
  for (const char* scope : {
           "/subscriptions/s1",
           "/subscriptions/s1/",
           "/SUBSCRIPTIONS/s1/resourceGroups/rg",
           "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v",
           "/subscriptions/s1/resourcegroups/rg/providers/Microsoft.CognitiveServices/accounts/a/"
           "projects/p",
       }) {
    EXPECT_TRUE(ValidateScope(scope).ok()) << scope;
  }
}

TEST(IdsTest, ValidateScopeRefusesOthers) {
  for (const char* scope : {
           "",
           "/",
           "subscriptions/s1",
           "/subscriptions",
           "/subscriptions/",
           "/tenants/t",
           "/subscriptions//rg",
           "/subscriptions/s1//resourceGroups",
           "/subscriptions/s1/../s2",
           "/subscriptions/s1/./x",
           "/subscriptions/s1?x=1",
           "/subscriptions/s1#frag",
           "/subscriptions/s1\\x",
           "/subscriptions/s1\n",
       }) {
    EXPECT_EQ(ValidateScope(scope).code(), StatusCode::kInvalidArgument) << scope;
  }
  EXPECT_EQ(ValidateScope("/subscriptions/" + std::string(kMaxScopeSize, 'a')).code(),
            StatusCode::kInvalidArgument);
}

TEST(IdsTest, ScopeContainsIsSegmentWiseAndCaseInsensitive) {
  const std::string sub = "/subscriptions/s1";
  const std::string rg = sub + "/resourceGroups/rg";
  const std::string vault = rg + "/providers/Microsoft.KeyVault/vaults/v";
  EXPECT_TRUE(ScopeContains(sub, vault));
  EXPECT_TRUE(ScopeContains(rg, vault));
  EXPECT_TRUE(ScopeContains(vault, vault));
  EXPECT_TRUE(ScopeContains("/SUBSCRIPTIONS/S1/resourcegroups/RG/", vault));
  EXPECT_FALSE(ScopeContains(vault, rg));
  EXPECT_FALSE(ScopeContains(vault, vault + "2"));
  EXPECT_FALSE(ScopeContains(sub, "/subscriptions/s10"));
  EXPECT_FALSE(ScopeContains(rg, sub + "/resourceGroups/rg2/providers/x/y/z"));
}

TEST(IdsTest, NormalizeAndSubscription) {
  EXPECT_EQ(NormalizeScope("/Subscriptions/S1/ResourceGroups/RG/"),
            "/subscriptions/s1/resourcegroups/rg");
  EXPECT_EQ(SubscriptionOfScope("/subscriptions/S1/resourceGroups/rg"), "S1");
  EXPECT_EQ(SubscriptionOfScope("/Subscriptions/abc"), "abc");
  EXPECT_EQ(SubscriptionOfScope("/tenants/abc"), "");
}

}  // namespace
}  // namespace keyfoundry::identity
