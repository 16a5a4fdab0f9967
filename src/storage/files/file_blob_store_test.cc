#include "storage/files/file_blob_store.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/test_util.h"

namespace keyfoundry::storage {
namespace {

using ::keyfoundry::testutil::KillSelf;
using ::keyfoundry::testutil::RunInChildUntilKilled;
using ::keyfoundry::testutil::ScopedTempDir;

constexpr size_t kBuffer = FileBlobStore::kWriteBufferSize;

// Pseudo-random bytes, so that a byte read from the wrong offset shows.
Bytes Pattern(size_t size, uint32_t seed = 1) {
  std::mt19937 random(seed);
  Bytes out(size);
  for (uint8_t& b : out) b = static_cast<uint8_t>(random());
  return out;
}

Status WriteBlob(BlobStore& store, std::string_view name, ByteView data, size_t chunk) {
  ASSIGN_OR_RETURN(std::unique_ptr<BlobWriter> writer, store.Create(name));
  for (size_t offset = 0; offset < data.size(); offset += chunk) {
    RETURN_IF_ERROR(writer->Append(data.subspan(offset, std::min(chunk, data.size() - offset))));
  }
  return writer->Commit();
}

// Reads a whole blob in `chunk`-sized ReadAt calls.
StatusOr<Bytes> ReadBlob(BlobStore& store, std::string_view name, size_t chunk = 4099) {
  ASSIGN_OR_RETURN(std::unique_ptr<BlobReader> reader, store.Open(name));
  Bytes out;
  Bytes buffer(chunk);
  for (;;) {
    ASSIGN_OR_RETURN(size_t n, reader->ReadAt(out.size(), buffer));
    if (n == 0) break;
    out.insert(out.end(), buffer.begin(), buffer.begin() + static_cast<ptrdiff_t>(n));
  }
  if (out.size() != reader->size()) return InternalError("read a different size than size()");
  return out;
}

class FileBlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  std::string root() const { return dir_.path() + "/blobs"; }

  void Reopen() {
    store_.reset();
    auto store = FileBlobStore::OpenDirectory(root());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  // The files under root/tmp, with their sizes.
  std::vector<std::pair<std::string, uintmax_t>> TmpFiles() const {
    std::vector<std::pair<std::string, uintmax_t>> files;
    for (const auto& entry : std::filesystem::directory_iterator(root() + "/tmp")) {
      files.emplace_back(entry.path().filename(), entry.file_size());
    }
    return files;
  }

  // The number of files under root/objects.
  int ObjectCount() const {
    int count = 0;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(root() + "/objects")) {
      count += entry.is_regular_file() ? 1 : 0;
    }
    return count;
  }

  ScopedTempDir dir_;
  std::unique_ptr<FileBlobStore> store_;
};

TEST_F(FileBlobStoreTest, RoundTripsBlobsOfEverySize) {
  const size_t sizes[] = {
      0, 1, 7, 4095, 4097, kBuffer - 1, kBuffer, kBuffer + 1, 3 * kBuffer + 12345};
  for (size_t size : sizes) {
    for (size_t chunk : {size_t{65539}, std::max(size, size_t{1})}) {
      SCOPED_TRACE(testing::Message() << "size " << size << ", chunk " << chunk);
      const std::string name = "blob-" + std::to_string(size) + "-" + std::to_string(chunk);
      const Bytes data = Pattern(size, static_cast<uint32_t>(size));
      ASSERT_TRUE(WriteBlob(*store_, name, data, chunk).ok());
      auto read = ReadBlob(*store_, name);
      ASSERT_TRUE(read.ok()) << read.status();
      EXPECT_TRUE(*read == data);
    }
  }
  EXPECT_TRUE(TmpFiles().empty());
}

TEST_F(FileBlobStoreTest, ReadAtReadsAnyRangeAndNothingPastTheEnd) {
  const Bytes data = Pattern(10000);
  ASSERT_TRUE(WriteBlob(*store_, "b", data, data.size()).ok());
  auto reader = store_->Open("b");
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->size(), data.size());

  Bytes buffer(100);
  for (uint64_t offset : {0, 1, 4999, 9900, 9950, 9999}) {
    SCOPED_TRACE(offset);
    auto n = (*reader)->ReadAt(offset, buffer);
    ASSERT_TRUE(n.ok()) << n.status();
    ASSERT_EQ(*n, std::min<size_t>(buffer.size(), data.size() - offset));
    EXPECT_TRUE(std::equal(buffer.begin(), buffer.begin() + static_cast<ptrdiff_t>(*n),
                           data.begin() + static_cast<ptrdiff_t>(offset)));
  }
  for (uint64_t offset : {uint64_t{10000}, uint64_t{10001}, std::numeric_limits<uint64_t>::max()}) {
    SCOPED_TRACE(offset);
    auto n = (*reader)->ReadAt(offset, buffer);
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(*n, 0u);
  }
  Bytes whole(20000);
  auto n = (*reader)->ReadAt(0, whole);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, data.size());
  EXPECT_TRUE(std::equal(data.begin(), data.end(), whole.begin()));
  EXPECT_EQ(*(*reader)->ReadAt(5, std::span<uint8_t>()), 0u);
}

TEST_F(FileBlobStoreTest, CreateRefusesAnExistingName) {
  ASSERT_TRUE(WriteBlob(*store_, "a", AsBytes("original"), 100).ok());
  EXPECT_EQ(store_->Create("a").status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(AsStringView(*ReadBlob(*store_, "a")), "original");
}

TEST_F(FileBlobStoreTest, OfTwoWritersOfOneNameTheFirstToCommitWins) {
  auto loser = store_->Create("a");
  auto winner = store_->Create("a");
  ASSERT_TRUE(loser.ok() && winner.ok());
  ASSERT_TRUE((*winner)->Append(AsBytes("winner")).ok());
  ASSERT_TRUE((*loser)->Append(AsBytes("loser")).ok());
  ASSERT_TRUE((*winner)->Commit().ok());
  EXPECT_EQ((*loser)->Commit().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ((*loser)->Append(AsBytes("more")).code(), StatusCode::kAlreadyExists);  // dead
  EXPECT_EQ(AsStringView(*ReadBlob(*store_, "a")), "winner");
  loser->reset();
  EXPECT_TRUE(TmpFiles().empty());
}

TEST_F(FileBlobStoreTest, AWriterDestroyedBeforeCommitLeavesNothing) {
  {
    auto writer = store_->Create("a");
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->Append(Pattern(kBuffer * 5 / 2)).ok());
    EXPECT_EQ(TmpFiles().size(), 1u);
  }
  EXPECT_FALSE(*store_->Exists("a"));
  EXPECT_EQ(store_->Open("a").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(TmpFiles().empty());
  EXPECT_EQ(ObjectCount(), 0);
}

TEST_F(FileBlobStoreTest, AppendStreamsToDiskRatherThanHoldingTheBlob) {
  const Bytes data = Pattern(5 * kBuffer + 3);
  auto writer = store_->Create("big");
  ASSERT_TRUE(writer.ok());
  for (size_t offset = 0; offset < data.size(); offset += 65536) {
    ASSERT_TRUE(
        (*writer)
            ->Append(ByteView(data).subspan(offset, std::min<size_t>(65536, data.size() - offset)))
            .ok());
  }
  auto tmp = TmpFiles();
  ASSERT_EQ(tmp.size(), 1u);
  EXPECT_GE(tmp[0].second + kBuffer, data.size());  // at most one buffer is held back
  EXPECT_FALSE(*store_->Exists("big"));             // and none of it is visible yet

  ASSERT_TRUE((*writer)->Commit().ok());
  EXPECT_TRUE(TmpFiles().empty());
  EXPECT_TRUE(*ReadBlob(*store_, "big") == data);
}

TEST_F(FileBlobStoreTest, ACommittedWriterRefusesMore) {
  auto writer = store_->Create("a");
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append(AsBytes("x")).ok());
  ASSERT_TRUE((*writer)->Commit().ok());
  EXPECT_EQ((*writer)->Append(AsBytes("y")).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ((*writer)->Commit().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(AsStringView(*ReadBlob(*store_, "a")), "x");
}

TEST_F(FileBlobStoreTest, BadNamesAreRefusedEverywhereAndTouchNothing) {
  const std::string bad_names[] = {"",
                                   ".",
                                   "..",
                                   "a/b",
                                   "../x",
                                   "/etc",
                                   "a\\b",
                                   std::string("a\0b", 3),
                                   "caf\xc3\xa9",
                                   "a b",
                                   "a\n",
                                   "a:b",
                                   std::string(kMaxBlobNameSize + 1, 'a')};
  for (const std::string& name : bad_names) {
    SCOPED_TRACE(name);
    EXPECT_EQ(store_->Create(name).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->Open(name).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->Delete(name).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->Exists(name).status().code(), StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(TmpFiles().empty());
  EXPECT_EQ(ObjectCount(), 0);

  const std::string good_names[] = {
      std::string(kMaxBlobNameSize, 'a'), "...", ".a", "a.", "-", "A-z_0.9"};
  for (const std::string& name : good_names) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(WriteBlob(*store_, name, AsBytes(name), 64).ok());
    EXPECT_EQ(AsStringView(*ReadBlob(*store_, name)), name);
  }
  EXPECT_EQ(ObjectCount(), 6);
}

TEST_F(FileBlobStoreTest, NamesAreCaseSensitive) {
  ASSERT_TRUE(WriteBlob(*store_, "Blob", AsBytes("upper"), 64).ok());
  ASSERT_TRUE(WriteBlob(*store_, "blob", AsBytes("lower"), 64).ok());
  EXPECT_EQ(AsStringView(*ReadBlob(*store_, "Blob")), "upper");
  EXPECT_EQ(AsStringView(*ReadBlob(*store_, "blob")), "lower");
}

TEST_F(FileBlobStoreTest, DeleteThenOpenIsNotFound) {
  ASSERT_TRUE(WriteBlob(*store_, "a", AsBytes("x"), 64).ok());
  ASSERT_TRUE(store_->Delete("a").ok());
  EXPECT_EQ(store_->Open("a").status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(*store_->Exists("a"));
  EXPECT_EQ(store_->Delete("a").code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->Delete("never").code(), StatusCode::kNotFound);

  ASSERT_TRUE(WriteBlob(*store_, "a", AsBytes("again"), 64).ok());
  EXPECT_EQ(AsStringView(*ReadBlob(*store_, "a")), "again");
}

TEST_F(FileBlobStoreTest, AReaderOpenedBeforeADeleteKeepsReading) {
  const Bytes data = Pattern(3000);
  ASSERT_TRUE(WriteBlob(*store_, "a", data, 1000).ok());
  auto reader = store_->Open("a");
  ASSERT_TRUE(reader.ok());
  ASSERT_TRUE(store_->Delete("a").ok());
  Bytes out(3000);
  ASSERT_EQ(*(*reader)->ReadAt(0, out), data.size());
  EXPECT_TRUE(out == data);
}

TEST_F(FileBlobStoreTest, BlobsSurviveReopening) {
  const Bytes data = Pattern(kBuffer + 77);
  ASSERT_TRUE(WriteBlob(*store_, "kept", data, 4096).ok());
  Reopen();
  EXPECT_TRUE(*ReadBlob(*store_, "kept") == data);
}

TEST_F(FileBlobStoreTest, ASecondStoreOnTheSameRootIsRefused) {
  auto second = FileBlobStore::OpenDirectory(root());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  store_.reset();
  EXPECT_TRUE(FileBlobStore::OpenDirectory(root()).ok());
}

TEST_F(FileBlobStoreTest, ABlobWriteKilledHalfWayLeavesNoObject) {
  const Bytes data = Pattern(6 * kBuffer);
  store_.reset();  // the child takes the lock

  const bool killed = RunInChildUntilKilled([&] {
    auto store = FileBlobStore::OpenDirectory(root());
    if (!store.ok()) return;
    auto writer = (*store)->Create("victim");
    if (!writer.ok()) return;
    if (!(*writer)->Append(ByteView(data).first(data.size() / 2)).ok()) return;
    KillSelf();
  });
  ASSERT_TRUE(killed);
  // The crash left the half-written file behind...
  auto tmp = TmpFiles();
  ASSERT_EQ(tmp.size(), 1u);
  EXPECT_GE(tmp[0].second, data.size() / 2 - kBuffer);

  // ...which reopening removes, and no blob of that name ever appeared.
  Reopen();
  EXPECT_TRUE(TmpFiles().empty());
  EXPECT_FALSE(*store_->Exists("victim"));
  EXPECT_EQ(store_->Open("victim").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(ObjectCount(), 0);
  ASSERT_TRUE(WriteBlob(*store_, "victim", data, 65536).ok());
  EXPECT_TRUE(*ReadBlob(*store_, "victim") == data);
}

TEST_F(FileBlobStoreTest, ThreadsWriteReadAndDeleteDistinctBlobs) {
  constexpr int kThreads = 4;
  constexpr int kBlobsEach = 6;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kBlobsEach; ++i) {
        const std::string name = "t" + std::to_string(t) + "-" + std::to_string(i);
        const Bytes data = Pattern(static_cast<size_t>(i) * 40000 + 1, static_cast<uint32_t>(t));
        EXPECT_TRUE(WriteBlob(*store_, name, data, 8191).ok());
        auto read = ReadBlob(*store_, name);
        EXPECT_TRUE(read.ok() && *read == data) << name;
        if (i % 2 == 0) EXPECT_TRUE(store_->Delete(name).ok());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(ObjectCount(), kThreads * kBlobsEach / 2);
  EXPECT_TRUE(TmpFiles().empty());
}

}  // namespace
}  // namespace keyfoundry::storage
