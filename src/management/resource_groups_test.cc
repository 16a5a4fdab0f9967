#include "management/resource_groups.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "storage/sqlite/sqlite_metadata_store.h"
#include "support/test_util.h"

namespace keyfoundry::management {
namespace {

using Json = nlohmann::json;
using ::testing::HasSubstr;

constexpr char kSubscription[] = "00000000-1111-2222-3333-444444444444";
constexpr char kOtherSubscription[] = "99999999-1111-2222-3333-444444444444";
constexpr char kAlice[] = "aaaaaaaa-0000-4000-8000-000000000001";
constexpr int64_t kStart = 1700000000;

ResourceGroup NewGroup(std::string name = "rg1", std::string location = "local") {
  ResourceGroup g;
  g.subscription_id = kSubscription;
  g.name = std::move(name);
  g.location = std::move(location);
  g.updated_by = kAlice;
  return g;
}

TEST(ValidateResourceGroupNameTest, FollowsArmRules) {
  for (const std::string& good :
       {std::string("rg"), std::string("a"), std::string("My_RG-1.(test)"), std::string(90, 'r'),
        std::string("rg.x")}) {
    EXPECT_TRUE(ValidateResourceGroupName(good).ok()) << good;
  }
  for (const std::string& bad :
       {std::string(""), std::string(91, 'r'), std::string("rg."), std::string("r g"),
        std::string("rg/x"), std::string("rg%"), std::string("r\xc3\xa9")}) {
    Status s = ValidateResourceGroupName(bad);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(s.reason(), "InvalidResourceGroupName");
  }
}

TEST(ResourceGroupFromArmTest, PutNeedsALocationAndReplacesTags) {
  StatusOr<ResourceGroup> g =
      ResourceGroupFromArm({{"location", "West US"}, {"tags", {{"a", "b"}}}}, NewGroup(), false);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->location, "West US");
  EXPECT_EQ(g->tags, Json({{"a", "b"}}));

  ResourceGroup existing = *g;
  existing.created_at = kStart;
  g = ResourceGroupFromArm({{"location", "westus"}}, existing, false);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->location, "West US");
  EXPECT_EQ(g->tags, Json::object());  // a PUT without tags clears them

  g = ResourceGroupFromArm({{"location", "eastus"}}, existing, false);
  EXPECT_EQ(g.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(g.status().reason(), "InvalidResourceGroupLocation");
  EXPECT_THAT(g.status().message(), HasSubstr("already exists in location 'West US'"));
}

TEST(ResourceGroupFromArmTest, PatchChangesTagsOnly) {
  ResourceGroup existing = NewGroup();
  existing.tags = {{"keep", "me"}};
  existing.created_at = kStart;
  StatusOr<ResourceGroup> g = ResourceGroupFromArm(Json::object(), existing, true);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->tags, Json({{"keep", "me"}}));
  g = ResourceGroupFromArm({{"tags", {{"new", "tag"}}}}, existing, true);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->tags, Json({{"new", "tag"}}));
  EXPECT_FALSE(ResourceGroupFromArm({{"location", "elsewhere"}}, existing, true).ok());
}

TEST(ResourceGroupFromArmTest, RefusesBadFieldsNamingThem) {
  struct Case {
    Json body;
    const char* expected;
  };
  for (const Case& c :
       {Case{Json::object(), "location: is required"}, Case{{{"location", 3}}, "location"},
        Case{{{"location", ""}}, "location"}, Case{{{"location", "local"}, {"tags", "x"}}, "tags"},
        Case{{{"location", "local"}, {"tags", {{"a", 1}}}}, "tags.a"},
        Case{{{"location", "local"}, {"managedBy", 1}}, "managedBy"},
        Case{{{"location", "local"}, {"properties", "x"}}, "properties"}}) {
    StatusOr<ResourceGroup> g = ResourceGroupFromArm(c.body, NewGroup(), false);
    ASSERT_FALSE(g.ok()) << c.body.dump();
    EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(g.status().message(), HasSubstr(c.expected)) << c.body.dump();
  }
  EXPECT_EQ(ResourceGroupFromArm(Json::array(), NewGroup(), false).status().reason(),
            "InvalidRequestContent");
}

TEST(ResourceGroupToArmTest, HasArmsShape) {
  ResourceGroup g = NewGroup("MyGroup");
  g.tags = {{"env", "dev"}};
  EXPECT_EQ(ResourceGroupToArm(g),
            Json::parse(std::string(R"({"id":"/subscriptions/)") + kSubscription +
                        R"(/resourceGroups/MyGroup","name":"MyGroup",
                "type":"Microsoft.Resources/resourceGroups","location":"local",
                "tags":{"env":"dev"},"properties":{"provisioningState":"Succeeded"}})"));
}

class ResourceGroupStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = storage::SqliteMetadataStore::Open(dir_.path() + "/metadata.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    groups_ = std::make_unique<ResourceGroupStore>(*store_, clock_);
  }

  testutil::ScopedTempDir dir_;
  FakeClock clock_{std::chrono::system_clock::time_point(std::chrono::seconds(kStart))};
  std::unique_ptr<storage::SqliteMetadataStore> store_;
  std::unique_ptr<ResourceGroupStore> groups_;
};

TEST_F(ResourceGroupStoreTest, PutCreatesThenUpdatesKeepingTheFirstSpelling) {
  bool created = false;
  StatusOr<ResourceGroup> g = groups_->Put(NewGroup("MyGroup"), &created);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(created);
  EXPECT_EQ(g->created_at, kStart);
  EXPECT_EQ(g->created_by, kAlice);

  clock_.Advance(std::chrono::seconds(30));
  ResourceGroup update = NewGroup("MYGROUP");
  update.tags = {{"a", "b"}};
  update.updated_by = "someone-else";
  g = groups_->Put(update, &created);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_FALSE(created);
  EXPECT_EQ(g->name, "MyGroup");
  EXPECT_EQ(g->tags, Json({{"a", "b"}}));
  EXPECT_EQ(g->created_at, kStart);
  EXPECT_EQ(g->created_by, kAlice);
  EXPECT_EQ(g->updated_at, kStart + 30);

  StatusOr<ResourceGroup> got = groups_->Get(kSubscription, "mygroup");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->name, "MyGroup");
  EXPECT_EQ(got->tags, Json({{"a", "b"}}));
}

TEST_F(ResourceGroupStoreTest, LocationIsFixed) {
  ASSERT_TRUE(groups_->Put(NewGroup("rg1", "West Europe")).ok());
  EXPECT_TRUE(groups_->Put(NewGroup("rg1", "westeurope")).ok());
  StatusOr<ResourceGroup> moved = groups_->Put(NewGroup("rg1", "eastus"));
  EXPECT_EQ(moved.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(moved.status().reason(), "InvalidResourceGroupLocation");
  EXPECT_EQ(groups_->Get(kSubscription, "rg1")->location, "West Europe");
}

TEST_F(ResourceGroupStoreTest, PutValidates) {
  EXPECT_EQ(groups_->Put(NewGroup("bad.")).status().reason(), "InvalidResourceGroupName");
  EXPECT_EQ(groups_->Put(NewGroup("rg", "")).status().code(), StatusCode::kInvalidArgument);
  ResourceGroup g = NewGroup();
  g.subscription_id = "not-a-guid";
  EXPECT_EQ(groups_->Put(g).status().code(), StatusCode::kInvalidArgument);
  g = NewGroup();
  g.tags = {{"a/b", "c"}};
  EXPECT_EQ(groups_->Put(g).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(groups_->List(kSubscription)->empty());
}

TEST_F(ResourceGroupStoreTest, ListsOneSubscriptionInNameOrder) {
  ASSERT_TRUE(groups_->Put(NewGroup("zeta")).ok());
  ASSERT_TRUE(groups_->Put(NewGroup("Alpha")).ok());
  ResourceGroup other = NewGroup("other");
  other.subscription_id = kOtherSubscription;
  ASSERT_TRUE(groups_->Put(other).ok());
  StatusOr<std::vector<ResourceGroup>> list = groups_->List(kSubscription);
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "Alpha");
  EXPECT_EQ((*list)[1].name, "zeta");
  EXPECT_EQ(groups_->List(kOtherSubscription)->size(), 1u);
  EXPECT_EQ(groups_->Get(kOtherSubscription, "zeta").status().code(), StatusCode::kNotFound);
}

TEST_F(ResourceGroupStoreTest, DeleteRemovesAndReportsMissing) {
  ASSERT_TRUE(groups_->Put(NewGroup("rg1")).ok());
  StatusOr<ResourceGroup> deleted = groups_->Delete(kSubscription, "RG1");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->name, "rg1");
  StatusOr<ResourceGroup> gone = groups_->Get(kSubscription, "rg1");
  EXPECT_EQ(gone.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(gone.status().reason(), "ResourceGroupNotFound");
  EXPECT_EQ(groups_->Delete(kSubscription, "rg1").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(groups_->Get(kSubscription, "bad/name").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace keyfoundry::management
