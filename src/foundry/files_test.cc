// FileStore against real components: SQLite, a file blob store and AccountKeys over SoftHSM2 (a
// token in a temporary directory; the accounts are service-managed, so no vault is involved).
// Time is a FakeClock, so that many files can share one created_at second. Records of the
// previous format (version 1) are written by hand, as an older keyfoundryd left them. A
// counting decorator around the real metadata store shows how many records a List reads (it
// forwards every call; nothing is faked).
#include "foundry/files.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "common/encoding.h"
#include "storage/files/file_blob_store.h"
#include "storage/sqlite/sqlite_metadata_store.h"
#include "support/softhsm.h"
#include "support/test_util.h"

namespace keyfoundry::foundry {
namespace {

using std::chrono::seconds;
using Json = nlohmann::json;

constexpr char kAccount[] =
    "/subscriptions/s/resourcegroups/rg/providers/microsoft.cognitiveservices/accounts/a1";
// kAccount is a prefix of its key: its files must not show in kAccount's lists.
constexpr char kOtherAccount[] =
    "/subscriptions/s/resourcegroups/rg/providers/microsoft.cognitiveservices/accounts/a10";

std::vector<std::string> Ids(const std::vector<FileInfo>& files) {
  std::vector<std::string> ids;
  ids.reserve(files.size());
  for (const FileInfo& f : files) ids.push_back(f.id);
  return ids;
}

// Forwards every call to a real store, counting the records that reads return, per table.
class CountingStore final : public storage::MetadataStore {
 public:
  explicit CountingStore(storage::MetadataStore& real) : real_(real) {}

  Status Read(const storage::TransactionFn& fn) override {
    return real_.Read([&](storage::Transaction& txn) { return fn(*Counting(txn)); });
  }
  Status Write(const storage::TransactionFn& fn) override {
    return real_.Write([&](storage::Transaction& txn) { return fn(*Counting(txn)); });
  }

  // Records read per table since the last call.
  std::map<std::string, size_t> TakeReads() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(reads_, {});
  }

 private:
  class Txn final : public storage::Transaction {
   public:
    Txn(storage::Transaction& real, CountingStore& store) : real_(real), store_(store) {}
    StatusOr<std::optional<storage::Record>> Get(std::string_view table,
                                                 std::string_view key) override {
      auto r = real_.Get(table, key);
      if (r.ok() && r->has_value()) store_.Count(table, 1);
      return r;
    }
    StatusOr<std::vector<storage::Record>> Scan(std::string_view table, std::string_view prefix,
                                                std::string_view start_after,
                                                size_t limit) override {
      auto r = real_.Scan(table, prefix, start_after, limit);
      if (r.ok()) store_.Count(table, r->size());
      return r;
    }
    Status Insert(std::string_view table, std::string_view key, ByteView value) override {
      return real_.Insert(table, key, value);
    }
    Status Put(std::string_view table, std::string_view key, ByteView value) override {
      return real_.Put(table, key, value);
    }
    Status Update(std::string_view table, std::string_view key, ByteView value,
                  int64_t expected_version) override {
      return real_.Update(table, key, value, expected_version);
    }
    Status Delete(std::string_view table, std::string_view key) override {
      return real_.Delete(table, key);
    }
    StatusOr<int64_t> Count(std::string_view table, std::string_view prefix) override {
      return real_.Count(table, prefix);
    }

   private:
    storage::Transaction& real_;
    CountingStore& store_;
  };

  std::unique_ptr<Txn> Counting(storage::Transaction& txn) {
    return std::make_unique<Txn>(txn, *this);
  }
  void Count(std::string_view table, size_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    reads_[std::string(table)] += n;
  }

  storage::MetadataStore& real_;
  std::mutex mu_;
  std::map<std::string, size_t> reads_;
};

class FileStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto hsm = testutil::OpenSoftHsm(dir_.path());
    ASSERT_TRUE(hsm.ok()) << hsm.status();
    hsm_ = *std::move(hsm);
    auto store = storage::SqliteMetadataStore::Open(dir_.path() + "/metadata.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto blobs = storage::FileBlobStore::OpenDirectory(dir_.path() + "/blobs");
    ASSERT_TRUE(blobs.ok()) << blobs.status();
    blobs_ = *std::move(blobs);
    keys_ = std::make_unique<encryption::AccountKeys>(
        *store_, *hsm_, [](std::string_view) -> encryption::VaultClient* { return nullptr; },
        clock_);
    ASSERT_TRUE(keys_->CreateServiceManaged(kAccount).ok());
    ASSERT_TRUE(keys_->CreateServiceManaged(kOtherAccount).ok());
  }

  // Made at first use, so that a test can first leave a data directory as an older version did.
  FileStore& files() {
    if (files_ == nullptr) files_ = NewFileStore();
    return *files_;
  }
  std::unique_ptr<FileStore> NewFileStore() {
    return std::make_unique<FileStore>(*store_, *blobs_, *keys_, clock_);
  }

  StatusOr<FileInfo> Upload(const std::string& data, std::string_view purpose = "fine-tune",
                            std::string_view account = kAccount) {
    ASSIGN_OR_RETURN(std::unique_ptr<FileUpload> upload, files().BeginUpload(account));
    RETURN_IF_ERROR(upload->Write(AsBytes(data)));
    return upload->Finish("train.jsonl", purpose);
  }

  // `n` small files, uploaded from 4 threads (so that their commits are grouped); their ids.
  std::vector<std::string> UploadMany(size_t n, std::string_view purpose = "fine-tune") {
    std::vector<std::string> ids(n);
    files();  // made here, not by the threads at once
    std::vector<std::thread> threads;
    for (size_t t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (size_t i = t; i < n; i += 4) {
          StatusOr<FileInfo> f = Upload("{\"prompt\": " + std::to_string(i) + "}", purpose);
          EXPECT_TRUE(f.ok()) << f.status();
          if (f.ok()) ids[i] = f->id;
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    return ids;
  }

  StatusOr<std::string> ReadAll(std::string_view id) {
    ASSIGN_OR_RETURN(std::unique_ptr<FileReader> reader, files().Open(kAccount, id));
    std::string out(reader->info().bytes, '\0');
    ASSIGN_OR_RETURN(size_t n,
                     reader->ReadAt(0, {reinterpret_cast<uint8_t*>(out.data()), out.size()}));
    out.resize(n);
    return out;
  }

  // Every page of a listing, following `after` while has_more; appends each page's size to
  // `sizes` when given.
  std::vector<FileInfo> ListAll(ListFilesOptions options, std::vector<size_t>* sizes = nullptr) {
    std::vector<FileInfo> all;
    for (;;) {
      StatusOr<FileList> page = files().List(kAccount, options);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) return all;
      if (sizes != nullptr) sizes->push_back(page->files.size());
      all.insert(all.end(), page->files.begin(), page->files.end());
      if (!page->has_more) return all;
      EXPECT_FALSE(page->files.empty());
      if (page->files.empty()) return all;
      options.after = page->files.back().id;
    }
  }

  std::optional<storage::Record> Raw(std::string_view table, std::string_view key) {
    std::optional<storage::Record> record;
    EXPECT_TRUE(store_
                    ->Read([&](storage::Transaction& txn) -> Status {
                      ASSIGN_OR_RETURN(record, txn.Get(table, key));
                      return OkStatus();
                    })
                    .ok());
    return record;
  }

  int64_t Count(std::string_view table, std::string_view prefix) {
    int64_t n = -1;
    EXPECT_TRUE(store_
                    ->Read([&](storage::Transaction& txn) -> Status {
                      ASSIGN_OR_RETURN(n, txn.Count(table, prefix));
                      return OkStatus();
                    })
                    .ok());
    return n;
  }

  Status WriteRaw(std::string_view table, std::string_view key, std::string_view value) {
    return store_->Write(
        [&](storage::Transaction& txn) -> Status { return txn.Put(table, key, AsBytes(value)); });
  }

  // A file as keyfoundry stored it before record version 2: `data` sealed, the sealed bytes
  // in the record as base64url, no file_contents entry and no order entries.
  FileInfo WriteVersion1File(const std::string& id, const std::string& data, int64_t created_at) {
    auto key = keys_->Active(kAccount);
    EXPECT_TRUE(key.ok()) << key.status();
    Bytes sealed;
    auto writer = encryption::EnvelopeWriter::New(id, **key,
                                                  [&](ByteView b) {
                                                    sealed.insert(sealed.end(), b.begin(), b.end());
                                                    return OkStatus();
                                                  },
                                                  {});
    EXPECT_TRUE(writer.ok()) << writer.status();
    EXPECT_TRUE((*writer)->Write(AsBytes(data)).ok());
    EXPECT_TRUE((*writer)->Finish().ok());
    FileInfo f;
    f.id = id;
    f.filename = "old.jsonl";
    f.purpose = "fine-tune";
    f.bytes = data.size();
    f.created_at = created_at;
    f.generation = (*key)->generation();
    f.key_block = (*writer)->key_block();
    f.stored_bytes = sealed.size();
    f.is_inline = true;
    EXPECT_TRUE(WriteVersion1Record(f, Base64UrlEncode(sealed)).ok());
    return f;
  }

  Status WriteVersion1Record(const FileInfo& f, const std::string& inline_content) {
    const Json record = {{"v", 1},
                         {"id", f.id},
                         {"filename", f.filename},
                         {"purpose", f.purpose},
                         {"bytes", f.bytes},
                         {"created_at", f.created_at},
                         {"generation", f.generation},
                         {"key_block", Base64UrlEncode(f.key_block)},
                         {"stored_bytes", f.stored_bytes},
                         {"inline", inline_content}};
    return store_->Write([&](storage::Transaction& txn) -> Status {
      RETURN_IF_ERROR(
          txn.Insert("files", std::string(kAccount) + "/" + f.id, AsBytes(record.dump())));
      return encryption::AccountKeys::AddUsage(txn, kAccount, f.generation, 1,
                                               static_cast<int64_t>(f.bytes));
    });
  }

  testutil::ScopedTempDir dir_;
  FakeClock clock_{std::chrono::system_clock::time_point(seconds(1'800'000'000))};
  std::unique_ptr<hsm::KeyProvider> hsm_;
  std::unique_ptr<storage::SqliteMetadataStore> store_;
  std::unique_ptr<storage::FileBlobStore> blobs_;
  std::unique_ptr<encryption::AccountKeys> keys_;
  std::unique_ptr<FileStore> files_;
};

TEST_F(FileStoreTest, PagesThroughThousandsOfFilesOfOneSecondInBothOrders) {
  std::vector<std::string> uploaded = UploadMany(2500);
  std::sort(uploaded.begin(), uploaded.end());
  ASSERT_TRUE(Upload("elsewhere", "fine-tune", kOtherAccount).ok());

  // One second: the order is the ids', and newest first is its exact reverse.
  std::vector<size_t> sizes;
  const std::vector<FileInfo> oldest =
      ListAll({.limit = 1000, .order = ListOrder::kOldestFirst}, &sizes);
  EXPECT_EQ(sizes, (std::vector<size_t>{1000, 1000, 500}));
  EXPECT_EQ(Ids(oldest), uploaded);

  sizes.clear();
  const std::vector<FileInfo> newest =
      ListAll({.limit = 1000, .order = ListOrder::kNewestFirst}, &sizes);
  EXPECT_EQ(sizes, (std::vector<size_t>{1000, 1000, 500}));
  std::vector<std::string> reversed(uploaded.rbegin(), uploaded.rend());
  EXPECT_EQ(Ids(newest), reversed);

  // A page ending exactly at the last file says so.
  StatusOr<FileList> last = files().List(
      kAccount, {.limit = 500, .order = ListOrder::kOldestFirst, .after = uploaded[1999]});
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->files.size(), 500u);
  EXPECT_FALSE(last->has_more);
  EXPECT_EQ(last->files.front().id, uploaded[2000]);
  EXPECT_EQ(last->files.back().id, uploaded.back());

  // A page's work is the page's: a page of one reads one record (and two order entries: the
  // second tells has_more), never a content.
  CountingStore counting(*store_);
  FileStore counted(counting, *blobs_, *keys_, clock_);
  (void)counting.TakeReads();  // the migration's state, read at construction
  for (ListOrder order : {ListOrder::kOldestFirst, ListOrder::kNewestFirst}) {
    StatusOr<FileList> one = counted.List(kAccount, {.limit = 1, .order = order});
    ASSERT_TRUE(one.ok()) << one.status();
    EXPECT_TRUE(one->has_more);
    const std::string table =
        order == ListOrder::kOldestFirst ? "files_oldest_first" : "files_newest_first";
    EXPECT_EQ(counting.TakeReads(), (std::map<std::string, size_t>{{"files", 1}, {table, 2}}));
  }
  StatusOr<FileList> after = counted.List(kAccount, {.limit = 1, .after = uploaded[7]});
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(Ids(after->files), (std::vector<std::string>{uploaded[6]}));
  EXPECT_EQ(counting.TakeReads(),
            (std::map<std::string, size_t>{{"files", 2}, {"files_newest_first", 2}}));

  // The default: newest first, up to 10000.
  StatusOr<FileList> all = files().List(kAccount, {});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(Ids(all->files), reversed);
  EXPECT_FALSE(all->has_more);
}

TEST_F(FileStoreTest, OrdersByCreationTimeThenIdAndFollowsTheCursor) {
  std::vector<std::pair<int64_t, std::string>> expected;
  for (int i = 0; i < 12; ++i) {
    if (i % 3 == 0) clock_.Advance(seconds(1));  // three files a second
    StatusOr<FileInfo> f = Upload("data " + std::to_string(i));
    ASSERT_TRUE(f.ok()) << f.status();
    expected.emplace_back(f->created_at, f->id);
  }
  std::sort(expected.begin(), expected.end());
  std::vector<std::string> ascending;
  ascending.reserve(expected.size());
  for (const auto& [time, id] : expected) ascending.push_back(id);
  std::vector<std::string> descending(ascending.rbegin(), ascending.rend());

  std::vector<size_t> sizes;
  EXPECT_EQ(Ids(ListAll({.limit = 5, .order = ListOrder::kOldestFirst}, &sizes)), ascending);
  EXPECT_EQ(sizes, (std::vector<size_t>{5, 5, 2}));
  EXPECT_EQ(Ids(ListAll({.limit = 5, .order = ListOrder::kNewestFirst})), descending);

  // `after` continues right after the named file, in the order asked for.
  StatusOr<FileList> page =
      files().List(kAccount, {.limit = 2, .order = ListOrder::kOldestFirst, .after = ascending[4]});
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(Ids(page->files), (std::vector<std::string>{ascending[5], ascending[6]}));
  EXPECT_TRUE(page->has_more);
  page =
      files().List(kAccount, {.limit = 2, .order = ListOrder::kNewestFirst, .after = ascending[4]});
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(Ids(page->files), (std::vector<std::string>{ascending[3], ascending[2]}));
  page = files().List(kAccount, {.order = ListOrder::kNewestFirst, .after = ascending[0]});
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_TRUE(page->files.empty());
  EXPECT_FALSE(page->has_more);
}

TEST_F(FileStoreTest, AnAfterThatNamesNoFileOfTheAccountIsInvalid) {
  StatusOr<FileInfo> mine = Upload("mine");
  StatusOr<FileInfo> other = Upload("other", "fine-tune", kOtherAccount);
  ASSERT_TRUE(mine.ok() && other.ok());
  ASSERT_TRUE(files().List(kAccount, {.after = mine->id}).ok());
  for (const std::string& after :
       {other->id, std::string("file-00000000000000000000000000000000"), std::string(65, 'a')}) {
    StatusOr<FileList> list = files().List(kAccount, {.after = after});
    EXPECT_EQ(list.status().code(), StatusCode::kInvalidArgument) << after;
    EXPECT_EQ(list.status().reason(), "invalidPayload");
  }
  ASSERT_TRUE(files().Delete(kAccount, mine->id).ok());
  EXPECT_EQ(files().List(kAccount, {.after = mine->id}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(FileStoreTest, LimitOutsideOneToTenThousandIsInvalid) {
  for (size_t limit : {size_t{0}, kMaxListLimit + 1}) {
    EXPECT_EQ(files().List(kAccount, {.limit = limit}).status().code(),
              StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(files().List(kAccount, {.limit = kMaxListLimit}).ok());
}

TEST_F(FileStoreTest, PurposeFilterPagesThroughOnlyThatPurpose) {
  std::vector<std::string> batch;
  for (int i = 0; i < 30; ++i) {
    StatusOr<FileInfo> f = Upload("line " + std::to_string(i), i % 3 == 0 ? "batch" : "fine-tune");
    ASSERT_TRUE(f.ok()) << f.status();
    if (f->purpose == "batch") batch.push_back(f->id);
  }
  std::sort(batch.begin(), batch.end());  // one second: id order
  std::vector<size_t> sizes;
  const std::vector<FileInfo> listed =
      ListAll({.purpose = "batch", .limit = 4, .order = ListOrder::kOldestFirst}, &sizes);
  EXPECT_EQ(Ids(listed), batch);
  EXPECT_EQ(sizes, (std::vector<size_t>{4, 4, 2}));
  for (const FileInfo& f : listed) EXPECT_EQ(f.purpose, "batch");

  // The last batch file is followed by fine-tune files only: no more.
  StatusOr<FileList> tail =
      files().List(kAccount, {.purpose = "batch", .limit = 1, .after = batch[1]});
  ASSERT_TRUE(tail.ok()) << tail.status();
  EXPECT_EQ(Ids(tail->files), (std::vector<std::string>{batch[0]}));
  EXPECT_FALSE(tail->has_more);
  StatusOr<FileList> none = files().List(kAccount, {.purpose = "vision"});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->files.empty());
  EXPECT_FALSE(none->has_more);
}

TEST_F(FileStoreTest, SmallContentIsKeptRawOutsideTheRecordAndLargeContentInABlob) {
  const std::string small = "{\"prompt\": \"hi\"}";
  StatusOr<FileInfo> f = Upload(small);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->is_inline);
  const std::string key = std::string(kAccount) + "/" + f->id;
  std::optional<storage::Record> record = Raw("files", key);
  ASSERT_TRUE(record.has_value());
  const Json j = Json::parse(AsStringView(record->value));
  EXPECT_EQ(j["v"], 2);
  EXPECT_EQ(j["inline"], true);
  EXPECT_LT(record->value.size(), 512u) << j.dump();
  std::optional<storage::Record> content = Raw("file_contents", key);
  ASSERT_TRUE(content.has_value());
  EXPECT_EQ(content->value.size(), f->stored_bytes);
  EXPECT_EQ(ReadAll(f->id).value_or("?"), small);

  const std::string large(kMaxInlineBytes + 1, 'x');
  StatusOr<FileInfo> big = Upload(large);
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_FALSE(big->is_inline);
  EXPECT_FALSE(Raw("file_contents", std::string(kAccount) + "/" + big->id).has_value());
  EXPECT_TRUE(blobs_->Exists(big->id).value_or(false));
  EXPECT_EQ(ReadAll(big->id).value_or("?"), large);
}

TEST_F(FileStoreTest, OpenThatMustNotWaitRefusesAKeyNotCachedUntilItIs) {
  StatusOr<FileInfo> f = Upload("{\"prompt\": \"cached\"}");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(files().Open(kAccount, f->id, FileStore::KeyWait::kNever).ok());  // cached

  clock_.Advance(seconds(3600));  // the key cache's entry expired
  auto refused = files().Open(kAccount, f->id, FileStore::KeyWait::kNever);
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(refused.status().reason(), "KeyNotCached");
  auto missing = files().Open(kAccount, "file-none", FileStore::KeyWait::kNever);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);

  EXPECT_TRUE(files().Open(kAccount, f->id, FileStore::KeyWait::kMay).ok());  // unwraps again
  auto opened = files().Open(kAccount, f->id, FileStore::KeyWait::kNever);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ((*opened)->info().id, f->id);
}

TEST_F(FileStoreTest, GetAndListNeverReadContent) {
  StatusOr<FileInfo> f = Upload("content");
  ASSERT_TRUE(f.ok()) << f.status();
  const std::string key = std::string(kAccount) + "/" + f->id;
  ASSERT_TRUE(store_
                  ->Write([&](storage::Transaction& txn) -> Status {
                    return txn.Delete("file_contents", key);
                  })
                  .ok());
  StatusOr<FileList> list = files().List(kAccount, {});
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(Ids(list->files), (std::vector<std::string>{f->id}));
  EXPECT_TRUE(files().Get(kAccount, f->id).ok());
  EXPECT_EQ(files().Open(kAccount, f->id).status().code(), StatusCode::kDataLoss);
}

TEST_F(FileStoreTest, DeleteRemovesTheFileFromBothOrdersAndItsContent) {
  std::vector<std::string> ids = UploadMany(3);
  std::sort(ids.begin(), ids.end());
  ASSERT_TRUE(files().Delete(kAccount, ids[1]).ok());
  EXPECT_EQ(files().Delete(kAccount, ids[1]).code(), StatusCode::kNotFound);
  EXPECT_EQ(Ids(ListAll({.order = ListOrder::kOldestFirst})),
            (std::vector<std::string>{ids[0], ids[2]}));
  EXPECT_EQ(Ids(ListAll({.order = ListOrder::kNewestFirst})),
            (std::vector<std::string>{ids[2], ids[0]}));
  const std::string prefix = std::string(kAccount) + "/";
  for (std::string_view table :
       {"files", "file_contents", "files_oldest_first", "files_newest_first"}) {
    EXPECT_EQ(Count(table, prefix), 2) << table;
  }

  ASSERT_TRUE(Upload("kept", "fine-tune", kOtherAccount).ok());
  ASSERT_TRUE(files().DeleteAll(kAccount).ok());
  for (std::string_view table :
       {"files", "file_contents", "files_oldest_first", "files_newest_first"}) {
    EXPECT_EQ(Count(table, prefix), 0) << table;
    EXPECT_EQ(Count(table, std::string(kOtherAccount) + "/"), 1) << table;
  }
  auto report = keys_->Report(kAccount, false);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->size(), 1u);
  EXPECT_EQ((*report)[0].objects, 0);
  EXPECT_EQ((*report)[0].bytes, 0);
}

TEST_F(FileStoreTest, ListsOpensAndDeletesAVersion1Record) {
  const int64_t t = UnixSeconds(clock_);
  const std::string data = "{\"prompt\": \"from an older keyfoundryd\"}";
  const FileInfo old = WriteVersion1File("file-0123456789abcdef0123456789abcdef", data, t - 10);

  // The store that finds it gives it its place in both orders.
  StatusOr<FileInfo> fresh = Upload("new");
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(Ids(ListAll({.order = ListOrder::kOldestFirst})),
            (std::vector<std::string>{old.id, fresh->id}));
  EXPECT_EQ(Ids(ListAll({.order = ListOrder::kNewestFirst})),
            (std::vector<std::string>{fresh->id, old.id}));
  StatusOr<FileInfo> got = files().Get(kAccount, old.id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->is_inline);
  EXPECT_EQ(got->bytes, data.size());
  EXPECT_EQ(ReadAll(old.id).value_or("?"), data);

  // Another start migrates nothing again.
  files_ = NewFileStore();
  EXPECT_EQ(Ids(ListAll({.order = ListOrder::kOldestFirst})),
            (std::vector<std::string>{old.id, fresh->id}));

  ASSERT_TRUE(files().Delete(kAccount, old.id).ok());
  EXPECT_EQ(Ids(ListAll({})), (std::vector<std::string>{fresh->id}));
  EXPECT_EQ(Count("files_oldest_first", ""), 1);
  EXPECT_EQ(Count("files_newest_first", ""), 1);
}

TEST_F(FileStoreTest, MigratesManyVersion1RecordsInBatchesWithoutDecodingTheirContent) {
  // Content that is not even base64: only Open may look at it.
  std::vector<std::string> ids;
  for (int i = 0; i < 600; ++i) {
    FileInfo f;
    std::array<uint8_t, 16> raw{};
    StoreBigEndian(static_cast<uint64_t>(i), std::span(raw).last(8));
    f.id = "file-" + HexEncode(raw);
    f.filename = "old.jsonl";
    f.purpose = i % 2 == 0 ? "fine-tune" : "batch";
    f.created_at = 1'700'000'000 + i / 100;
    f.generation = 1;
    f.key_block = ToBytes("block");
    ASSERT_TRUE(WriteVersion1Record(f, "%% not base64 %%").ok());
    ids.push_back(f.id);
  }
  std::sort(ids.begin(), ids.end());  // created_at follows i, and so do the ids

  std::vector<size_t> sizes;
  EXPECT_EQ(Ids(ListAll({.limit = 250, .order = ListOrder::kOldestFirst}, &sizes)), ids);
  EXPECT_EQ(sizes, (std::vector<size_t>{250, 250, 100}));
  EXPECT_EQ(ListAll({.purpose = "batch", .order = ListOrder::kNewestFirst}).size(), 300u);
  EXPECT_TRUE(files().Get(kAccount, ids[0]).ok());
  EXPECT_EQ(files().Open(kAccount, ids[0]).status().code(), StatusCode::kDataLoss);
  std::optional<storage::Record> state = Raw("file_migrations", "order_index");
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(Json::parse(AsStringView(state->value))["done"], true);
}

TEST_F(FileStoreTest, ListFailsClosedUntilTheMigrationCanRun) {
  ASSERT_TRUE(WriteRaw("file_migrations", "order_index", "not json").ok());
  StatusOr<FileInfo> f = Upload("still accepted");  // uploads do not wait for it
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(files().List(kAccount, {}).status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(files().Get(kAccount, f->id).ok());

  ASSERT_TRUE(store_
                  ->Write([](storage::Transaction& txn) -> Status {
                    return txn.Delete("file_migrations", "order_index");
                  })
                  .ok());
  StatusOr<FileList> list = files().List(kAccount, {});
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(Ids(list->files), (std::vector<std::string>{f->id}));
}

}  // namespace
}  // namespace keyfoundry::foundry

namespace keyfoundry::foundry {
namespace {

// Reprocessing: files of every kind move to the new generation, page by page, in both modes,
// and stay readable; usage follows; a second pass moves nothing; an inaccessible old
// generation leaves its files and says so.
TEST_F(FileStoreTest, ReprocessMovesEveryFileToTheActiveGenerationInBothModes) {
  std::map<std::string, std::string> data;
  for (size_t i = 0; i < 40; ++i) {
    // Small files (in the metadata store) and some past kMaxInlineBytes (blobs).
    const std::string content(i % 5 == 0 ? kMaxInlineBytes + 1000 * i : 10 + i, char('a' + i % 26));
    StatusOr<FileInfo> f = Upload(content);
    ASSERT_TRUE(f.ok()) << f.status();
    data[f->id] = content;
  }
  for (ReprocessMode mode : {ReprocessMode::kRewrap, ReprocessMode::kReencrypt}) {
    StatusOr<encryption::Generation> rotated = keys_->RotateServiceManaged(kAccount);
    ASSERT_TRUE(rotated.ok()) << rotated.status();
    auto target = keys_->Get(kAccount, rotated->number);
    ASSERT_TRUE(target.ok()) << target.status();
    std::string cursor;
    size_t moved = 0;
    for (bool done = false; !done;) {
      StatusOr<ReprocessPage> page =
          files().Reprocess(kAccount, mode, {}, **target, cursor, /*max_files=*/7);
      ASSERT_TRUE(page.ok()) << page.status();
      EXPECT_EQ(page->failed, 0u);
      moved += page->moved;
      cursor = page->last_id;
      done = page->done;
    }
    EXPECT_EQ(moved, data.size());
    for (const auto& [id, content] : data) {
      StatusOr<FileInfo> info = files().Get(kAccount, id);
      ASSERT_TRUE(info.ok()) << info.status();
      EXPECT_EQ(info->generation, rotated->number) << id;
      StatusOr<std::string> read = ReadAll(id);
      ASSERT_TRUE(read.ok()) << read.status();
      EXPECT_TRUE(*read == content) << id;
    }
    StatusOr<std::vector<encryption::GenerationReport>> report = keys_->Report(kAccount, false);
    ASSERT_TRUE(report.ok());
    for (const auto& g : *report) {
      EXPECT_EQ(g.objects, g.generation.number == rotated->number ? int64_t(data.size()) : 0)
          << "generation " << g.generation.number;
    }
    // Idempotent.
    StatusOr<ReprocessPage> again = files().Reprocess(kAccount, mode, {}, **target, "", 1000);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->moved, 0u);
    EXPECT_TRUE(again->done);
  }
  // Re-encryption leaves no old blob behind: one blob per large file.
  size_t blobs = 0;
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(dir_.path() + "/blobs/objects")) {
    blobs += entry.is_regular_file() ? 1 : 0;
  }
  EXPECT_EQ(blobs, 8u);
}

TEST_F(FileStoreTest, ReprocessOnlyTheGenerationsAskedFor) {
  StatusOr<FileInfo> first = Upload("under generation one");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(keys_->RotateServiceManaged(kAccount).ok());
  StatusOr<FileInfo> second = Upload("under generation two");
  ASSERT_TRUE(second.ok());
  StatusOr<encryption::Generation> third = keys_->RotateServiceManaged(kAccount);
  ASSERT_TRUE(third.ok());
  auto target = keys_->Get(kAccount, third->number);
  ASSERT_TRUE(target.ok());
  StatusOr<ReprocessPage> page =
      files().Reprocess(kAccount, ReprocessMode::kRewrap, {2}, **target, "", 100);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->moved, 1u);
  EXPECT_EQ(files().Get(kAccount, first->id)->generation, 1u);
  EXPECT_EQ(files().Get(kAccount, second->id)->generation, third->number);
}

}  // namespace
}  // namespace keyfoundry::foundry

namespace keyfoundry::foundry {
namespace {

// A generation is retired only once reprocessing has emptied it; then files cannot land under
// it any more, and everything stays readable.
TEST_F(FileStoreTest, AGenerationIsRetiredOnlyOnceItProtectsNothing) {
  StatusOr<FileInfo> old_file = Upload("sealed under generation one");
  ASSERT_TRUE(old_file.ok());
  StatusOr<encryption::Generation> rotated = keys_->RotateServiceManaged(kAccount);
  ASSERT_TRUE(rotated.ok());
  Status refused = keys_->Retire(kAccount, 1);
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition) << refused;
  EXPECT_EQ(refused.reason(), "GenerationInUse");
  EXPECT_EQ(keys_->Retire(kAccount, rotated->number).reason(), "GenerationInUse");  // active
  EXPECT_EQ(keys_->Retire(kAccount, 99).code(), StatusCode::kNotFound);

  auto target = keys_->Get(kAccount, rotated->number);
  ASSERT_TRUE(target.ok());
  ASSERT_TRUE(files().Reprocess(kAccount, ReprocessMode::kRewrap, {}, **target, "", 100).ok());
  ASSERT_TRUE(keys_->Retire(kAccount, 1).ok());
  StatusOr<std::vector<encryption::GenerationReport>> report = keys_->Report(kAccount, false);
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->size(), 1u);
  EXPECT_EQ((*report)[0].generation.number, rotated->number);
  StatusOr<std::string> read = ReadAll(old_file->id);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, "sealed under generation one");
  // Usage may not be added to a retired generation.
  Status late = store_->Write([&](storage::Transaction& txn) {
    return encryption::AccountKeys::AddUsage(txn, kAccount, 1, 1, 10);
  });
  EXPECT_EQ(late.code(), StatusCode::kFailedPrecondition) << late;
}

}  // namespace
}  // namespace keyfoundry::foundry
