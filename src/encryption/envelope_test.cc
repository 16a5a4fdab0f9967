#include "encryption/envelope.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include <cstring>
#include <optional>

namespace keyfoundry::encryption {
namespace {

constexpr uint32_t kSeg = kMinSegmentSize;

GenerationKey Gen(uint64_t n, uint8_t fill) {
  return *GenerationKey::New(n, SecretBytes(Bytes(32, fill), InsecureSecretAccess()));
}

Bytes Pattern(size_t n, uint8_t seed = 1) {
  Bytes out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(i * 31 + seed + (i >> 8));
  return out;
}

struct Sealed {
  Bytes key_block;
  Bytes content;
};

Sealed Seal(std::string_view id, const GenerationKey& gen, ByteView plaintext,
            size_t chunk = SIZE_MAX, uint32_t segment_size = kSeg) {
  Sealed out;
  auto writer = EnvelopeWriter::New(id, gen,
                                    [&](ByteView b) {
                                      out.content.insert(out.content.end(), b.begin(), b.end());
                                      return OkStatus();
                                    },
                                    {.segment_size = segment_size});
  EXPECT_TRUE(writer.ok()) << writer.status();
  for (size_t i = 0; i < plaintext.size(); i += chunk) {
    EXPECT_TRUE((*writer)->Write(plaintext.subspan(i, std::min(chunk, plaintext.size() - i))).ok());
  }
  EXPECT_TRUE((*writer)->Finish().ok());
  out.key_block = (*writer)->key_block();
  return out;
}

EnvelopeSource SourceOf(const Bytes& content) {
  return [&content](uint64_t offset, std::span<uint8_t> out) -> StatusOr<size_t> {
    if (offset >= content.size()) return size_t{0};
    size_t n = std::min<size_t>(out.size(), content.size() - offset);
    std::memcpy(out.data(), content.data() + offset, n);
    return n;
  };
}

StatusOr<std::unique_ptr<EnvelopeReader>> OpenSealed(std::string_view id, const Sealed& s,
                                                     const GenerationKey& gen) {
  return EnvelopeReader::Open(id, s.key_block, gen, SourceOf(s.content), s.content.size());
}

// Opens and reads everything. Returns the plaintext, or nullopt on any failure.
std::optional<Bytes> OpenAll(std::string_view id, const Sealed& s, const GenerationKey& gen) {
  auto reader = OpenSealed(id, s, gen);
  if (!reader.ok()) return std::nullopt;
  Bytes out;
  Status st = (*reader)->ReadRange(0, UINT64_MAX, [&](ByteView piece) {
    out.insert(out.end(), piece.begin(), piece.end());
    return OkStatus();
  });
  if (!st.ok()) return std::nullopt;
  return out;
}

// Asserts that reading `s` fails and so never returns wrong plaintext.
void ExpectRejected(std::string_view id, const Sealed& s, const GenerationKey& gen,
                    const std::string& what) {
  std::optional<Bytes> got = OpenAll(id, s, gen);
  EXPECT_FALSE(got.has_value()) << what;
}

class EnvelopeRoundTripTest : public ::testing::TestWithParam<std::tuple<size_t, size_t>> {};

TEST_P(EnvelopeRoundTripTest, ReadsBackWhatWasWritten) {
  auto [size, chunk] = GetParam();
  GenerationKey gen = Gen(1, 7);
  Bytes plain = Pattern(size);
  Sealed s = Seal("file-abc", gen, plain, chunk);
  EXPECT_EQ(s.content.size(), SealedSize(size, 8, kSeg));
  EXPECT_EQ(s.key_block.size(), kKeyBlockSize);
  auto reader = OpenSealed("file-abc", s, gen);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->plaintext_size(), size);
  EXPECT_EQ(OpenAll("file-abc", s, gen), plain);
}

INSTANTIATE_TEST_SUITE_P(SizesAndChunks, EnvelopeRoundTripTest,
                         ::testing::Combine(::testing::Values(0, 1, 17, kSeg - 1, kSeg, kSeg + 1,
                                                              3 * kSeg, 3 * kSeg + 1001,
                                                              40 * kSeg + 3),
                                            ::testing::Values(1, 1000, kSeg, SIZE_MAX)));

TEST(EnvelopeTest, ReadAtReturnsAnyRange) {
  GenerationKey gen = Gen(1, 7);
  Bytes plain = Pattern(5 * kSeg + 123);
  Sealed s = Seal("obj", gen, plain);
  auto reader = *OpenSealed("obj", s, gen);
  const std::pair<uint64_t, size_t> ranges[] = {{0, 1},
                                                {0, plain.size()},
                                                {kSeg - 1, 2},
                                                {kSeg, kSeg},
                                                {3 * kSeg + 7, 2 * kSeg},
                                                {plain.size() - 1, 1},
                                                {plain.size() - 1, 100},
                                                {plain.size(), 10},
                                                {plain.size() + 5, 1}};
  for (auto [offset, length] : ranges) {
    Bytes out(length, 0xEE);
    auto n = reader->ReadAt(offset, out);
    ASSERT_TRUE(n.ok());
    size_t expected = offset >= plain.size() ? 0 : std::min<size_t>(length, plain.size() - offset);
    ASSERT_EQ(*n, expected) << offset;
    EXPECT_TRUE(
        std::equal(out.begin(), out.begin() + static_cast<ptrdiff_t>(expected),
                   plain.begin() + static_cast<ptrdiff_t>(std::min<size_t>(offset, plain.size()))))
        << offset;
  }
}

TEST(EnvelopeTest, LargeSegmentsRoundTrip) {
  GenerationKey gen = Gen(3, 1);
  Bytes plain = Pattern(3 * 1024 * 1024 + 5);
  Sealed s = Seal("big", gen, plain, 100000, kMaxSegmentSize);
  EXPECT_EQ(OpenAll("big", s, gen), plain);
}

TEST(EnvelopeTest, EverySingleByteFlipIsDetected) {
  GenerationKey gen = Gen(1, 9);
  Bytes plain = Pattern(2 * kSeg + 100);
  const Sealed good = Seal("flip", gen, plain);
  ASSERT_EQ(OpenAll("flip", good, gen), plain);
  for (size_t i = 0; i < good.content.size(); ++i) {
    Sealed bad = good;
    bad.content[i] ^= static_cast<uint8_t>(1u << (i % 8));
    ExpectRejected("flip", bad, gen, "content byte " + std::to_string(i));
  }
  for (size_t i = 0; i < good.key_block.size(); ++i) {
    Sealed bad = good;
    bad.key_block[i] ^= 0x80;
    ExpectRejected("flip", bad, gen, "key block byte " + std::to_string(i));
  }
}

TEST(EnvelopeTest, TruncationAtEverySegmentBoundaryAndInsideIsDetected) {
  GenerationKey gen = Gen(1, 9);
  Bytes plain = Pattern(4 * kSeg);  // the last segment is full: truncation lands on a boundary
  const Sealed good = Seal("trunc", gen, plain);
  const size_t header = good.content.size() - 4 * (kSeg + kSegmentOverhead);
  for (size_t segments = 0; segments < 4; ++segments) {
    for (size_t cut : {size_t{0}, size_t{1}, size_t{kSegmentOverhead}}) {
      size_t keep = header + segments * (kSeg + kSegmentOverhead) - std::min(cut, header);
      Sealed bad = good;
      bad.content.resize(keep);
      ExpectRejected("trunc", bad, gen, "truncated to " + std::to_string(keep));
    }
  }
  Sealed bad = good;
  bad.content.pop_back();
  ExpectRejected("trunc", bad, gen, "last byte dropped");
}

TEST(EnvelopeTest, ExtensionWithAnExtraSegmentIsDetected) {
  GenerationKey gen = Gen(1, 9);
  const Sealed good = Seal("ext", gen, Pattern(2 * kSeg));
  Sealed bad = good;
  // Duplicate the first segment at the end.
  size_t header = good.content.size() - 2 * (kSeg + kSegmentOverhead);
  bad.content.insert(
      bad.content.end(), good.content.begin() + static_cast<ptrdiff_t>(header),
      good.content.begin() + static_cast<ptrdiff_t>(header + kSeg + kSegmentOverhead));
  ExpectRejected("ext", bad, gen, "extra segment");
}

TEST(EnvelopeTest, DecryptFailsWhenSegmentsSwapped) {
  GenerationKey gen = Gen(1, 9);
  const Sealed good = Seal("swap", gen, Pattern(3 * kSeg + 10));
  const size_t stored = kSeg + kSegmentOverhead;
  const size_t header = good.content.size() - (3 * stored + 10 + kSegmentOverhead);
  Sealed bad = good;
  std::swap_ranges(bad.content.begin() + static_cast<ptrdiff_t>(header),
                   bad.content.begin() + static_cast<ptrdiff_t>(header + stored),
                   bad.content.begin() + static_cast<ptrdiff_t>(header + stored));
  ExpectRejected("swap", bad, gen, "segments 0 and 1 swapped");
}

TEST(EnvelopeTest, SegmentFromAnotherObjectIsDetected) {
  GenerationKey gen = Gen(1, 9);
  const Sealed a = Seal("object-a", gen, Pattern(3 * kSeg, 1));
  const Sealed b = Seal("object-b", gen, Pattern(3 * kSeg, 1));  // same plaintext and sizes
  const size_t stored = kSeg + kSegmentOverhead;
  const size_t header = a.content.size() - 3 * stored;
  Sealed bad = a;
  std::copy_n(b.content.begin() + static_cast<ptrdiff_t>(header + stored), stored,
              bad.content.begin() + static_cast<ptrdiff_t>(header + stored));
  ExpectRejected("object-a", bad, gen, "segment 1 of another object");
}

TEST(EnvelopeTest, HeaderOrKeyBlockFromAnotherObjectIsDetected) {
  GenerationKey gen = Gen(1, 9);
  Bytes plain = Pattern(kSeg + 5);
  const Sealed a = Seal("object-a", gen, plain);
  const Sealed b = Seal("object-b", gen, plain);
  const Sealed a2 = Seal("object-a", gen, plain);  // the same object sealed again
  const size_t header = a.content.size() - (kSeg + 5 + 2 * kSegmentOverhead);

  Sealed bad = a;
  bad.key_block = b.key_block;
  ExpectRejected("object-a", bad, gen, "key block of another object");
  bad.key_block = a2.key_block;
  ExpectRejected("object-a", bad, gen, "key block of another sealing of the same object");

  bad = a;
  std::copy_n(a2.content.begin(), header, bad.content.begin());
  ExpectRejected("object-a", bad, gen, "header of another sealing of the same object");

  // The whole of object b presented as object a.
  ExpectRejected("object-a", b, gen, "another object's content and key block");
}

TEST(EnvelopeTest, WrongGenerationKeyIsRefused) {
  GenerationKey gen = Gen(1, 9);
  const Sealed s = Seal("g", gen, Pattern(100));
  auto same_number = OpenSealed("g", s, Gen(1, 10));
  EXPECT_EQ(same_number.status().code(), StatusCode::kDataLoss);
  auto other_number = OpenSealed("g", s, Gen(2, 9));
  EXPECT_EQ(other_number.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(*KeyBlockGeneration(s.key_block), 1u);
}

TEST(EnvelopeTest, RewrapMovesTheDataKeyWithoutTouchingContent) {
  GenerationKey g1 = Gen(1, 1), g2 = Gen(2, 2);
  Bytes plain = Pattern(2 * kSeg + 9);
  Sealed s = Seal("rw", g1, plain);
  auto reader = *OpenSealed("rw", s, g1);
  auto rewrapped = RewrapKeyBlock(s.key_block, reader->header(), g1, g2);
  ASSERT_TRUE(rewrapped.ok()) << rewrapped.status();
  EXPECT_EQ(*KeyBlockGeneration(*rewrapped), 2u);
  Sealed moved{*rewrapped, s.content};
  EXPECT_EQ(OpenAll("rw", moved, g2), plain);
  EXPECT_FALSE(OpenSealed("rw", moved, g1).ok());
  EXPECT_FALSE(RewrapKeyBlock(s.key_block, reader->header(), Gen(1, 5), g2).ok());
}

// The batch rewrapper: every key block it makes opens under the new generation, each with a
// nonce of its own (across several nonce batches), and a block of another generation, or of
// another object, is refused without spending the rewrapper.
TEST(EnvelopeTest, KeyBlockRewrapperMovesManyObjectsWithDistinctNonces) {
  GenerationKey g1 = Gen(1, 1), g2 = Gen(2, 2);
  EXPECT_EQ(KeyBlockRewrapper::New(g1, Gen(1, 1)).status().code(), StatusCode::kInvalidArgument);
  auto rewrapper = KeyBlockRewrapper::New(g1, g2);
  ASSERT_TRUE(rewrapper.ok()) << rewrapper.status();
  const size_t objects = KeyBlockRewrapper::kNonceBatch * 2 + 3;
  std::set<Bytes> nonces;
  for (size_t i = 0; i < objects; ++i) {
    const std::string id = "obj-" + std::to_string(i);
    const Bytes plain = Pattern(10 + i % 7);
    const Sealed s = Seal(id, g1, plain);
    auto reader = OpenSealed(id, s, g1);
    ASSERT_TRUE(reader.ok());
    auto moved = (*rewrapper)->Rewrap(s.key_block, (*reader)->header());
    ASSERT_TRUE(moved.ok()) << moved.status();
    EXPECT_EQ(*KeyBlockGeneration(*moved), 2u);
    EXPECT_EQ(OpenAll(id, Sealed{*moved, s.content}, g2), plain);
    // The key block is version, algorithm, generation (10 bytes), then the nonce.
    nonces.insert(Bytes(moved->begin() + 10, moved->begin() + 10 + crypto::AesGcm::kNonceSize));
    if (i == 5) {
      EXPECT_EQ((*rewrapper)->Rewrap(*moved, (*reader)->header()).status().code(),
                StatusCode::kInvalidArgument);  // already under generation 2
      const Sealed other = Seal("other", g1, plain);
      EXPECT_EQ((*rewrapper)->Rewrap(other.key_block, (*reader)->header()).status().code(),
                StatusCode::kDataLoss);  // another object's header
    }
  }
  EXPECT_EQ(nonces.size(), objects);
}

TEST(EnvelopeTest, ObjectIdMustMatch) {
  GenerationKey gen = Gen(1, 9);
  const Sealed s = Seal("right", gen, Pattern(10));
  EXPECT_EQ(OpenSealed("wrong", s, gen).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(OpenSealed("", s, gen).status().code(), StatusCode::kInvalidArgument);
}

TEST(EnvelopeTest, RejectsBadParameters) {
  GenerationKey gen = Gen(1, 9);
  auto sink = [](ByteView) { return OkStatus(); };
  EXPECT_FALSE(EnvelopeWriter::New("", gen, sink, {}).ok());
  EXPECT_FALSE(EnvelopeWriter::New(std::string(256, 'x'), gen, sink, {}).ok());
  EXPECT_TRUE(EnvelopeWriter::New(std::string(255, 'x'), gen, sink, {}).ok());
  EXPECT_FALSE(EnvelopeWriter::New("a", gen, sink, {.segment_size = kMinSegmentSize - 1}).ok());
  EXPECT_FALSE(EnvelopeWriter::New("a", gen, sink, {.segment_size = kMaxSegmentSize + 1}).ok());
  EXPECT_FALSE(GenerationKey::New(0, SecretBytes(32)).ok());
  EXPECT_FALSE(GenerationKey::New(1, SecretBytes(16)).ok());
}

TEST(EnvelopeTest, SinkFailureIsSticky) {
  GenerationKey gen = Gen(1, 9);
  int calls = 0;
  auto writer = *EnvelopeWriter::New(
      "s", gen, [&](ByteView) { return ++calls > 1 ? UnavailableError("disk full") : OkStatus(); },
      {});
  Bytes plain = Pattern(kDefaultSegmentSize + 1);
  EXPECT_EQ(writer->Write(plain).code(), StatusCode::kUnavailable);
  EXPECT_EQ(writer->Write(plain).code(), StatusCode::kUnavailable);
  EXPECT_EQ(writer->Finish().code(), StatusCode::kUnavailable);
}

TEST(EnvelopeTest, FinishTwiceOrWriteAfterFinishIsRefused) {
  GenerationKey gen = Gen(1, 9);
  auto writer = *EnvelopeWriter::New("f", gen, [](ByteView) { return OkStatus(); }, {});
  ASSERT_TRUE(writer->Finish().ok());
  EXPECT_EQ(writer->Finish().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(writer->Write(AsBytes("x")).code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace keyfoundry::encryption
