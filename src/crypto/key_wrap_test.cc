#include "crypto/key_wrap.h"

#include <gtest/gtest.h>

#include "crypto/test_util.h"

namespace keyfoundry::crypto {
namespace {

using Mode = AesKeyWrap::Mode;

SecretBytes SecretHex(std::string_view hex) { return Secret(Hex(hex)); }
SecretBytes Filled(size_t n, uint8_t fill) { return Secret(Bytes(n, fill)); }

std::unique_ptr<AesKeyWrap> New(const SecretBytes& kek, Mode mode) {
  auto wrap = AesKeyWrap::New(kek, mode);
  EXPECT_TRUE(wrap.ok()) << wrap.status();
  return wrap.ok() ? std::move(*wrap) : nullptr;
}

// RFC 3394 section 4.1: 128 bits of key data with a 128-bit KEK.
TEST(AesKeyWrapTest, MatchesRfc3394Example) {
  auto kw = New(SecretHex("000102030405060708090a0b0c0d0e0f"), Mode::kRfc3394);
  auto key = SecretHex("00112233445566778899aabbccddeeff");
  auto wrapped = kw->Wrap(key);
  ASSERT_TRUE(wrapped.ok()) << wrapped.status();
  EXPECT_EQ(HexEncode(*wrapped), "1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5");
  auto unwrapped = kw->Unwrap(*wrapped);
  ASSERT_TRUE(unwrapped.ok()) << unwrapped.status();
  EXPECT_TRUE(*unwrapped == key);
}

// RFC 5649 section 6: 20 bytes and 7 bytes of key data with a 192-bit KEK.
TEST(AesKeyWrapTest, MatchesRfc5649Examples) {
  auto kw = New(SecretHex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8"), Mode::kRfc5649);
  struct {
    std::string_view key, wrapped;
  } cases[] = {
      {"c37b7e6492584340bed12207808941155068f738",
       "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
      {"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
  };
  for (const auto& c : cases) {
    auto wrapped = kw->Wrap(SecretHex(c.key));
    ASSERT_TRUE(wrapped.ok()) << wrapped.status();
    EXPECT_EQ(HexEncode(*wrapped), c.wrapped);
    auto unwrapped = kw->Unwrap(Hex(c.wrapped));
    ASSERT_TRUE(unwrapped.ok()) << unwrapped.status();
    EXPECT_EQ(HexEncode(Reveal(*unwrapped)), c.key);
  }
}

TEST(AesKeyWrapTest, RoundTripsEveryKekSizeAndMode) {
  for (size_t kek_size : {16, 24, 32}) {
    for (Mode mode : {Mode::kRfc3394, Mode::kRfc5649}) {
      auto kw = New(Filled(kek_size, 0x42), mode);
      for (size_t n : {1, 7, 8, 9, 16, 24, 31, 32, 64, 4096}) {
        if (mode == Mode::kRfc3394 && (n < 16 || n % 8 != 0)) continue;
        SCOPED_TRACE(testing::Message()
                     << "kek " << kek_size << " mode " << static_cast<int>(mode) << " n " << n);
        auto key = Filled(n, static_cast<uint8_t>(n));
        auto wrapped = kw->Wrap(key);
        ASSERT_TRUE(wrapped.ok()) << wrapped.status();
        EXPECT_EQ(wrapped->size(), (n + 7) / 8 * 8 + 8);
        auto unwrapped = kw->Unwrap(*wrapped);
        ASSERT_TRUE(unwrapped.ok()) << unwrapped.status();
        EXPECT_TRUE(*unwrapped == key);
      }
    }
  }
}

TEST(AesKeyWrapTest, UnwrapFailsOpaquelyWhenAnyByteFlipped) {
  for (Mode mode : {Mode::kRfc3394, Mode::kRfc5649}) {
    auto kw = New(Filled(32, 1), mode);
    const Bytes wrapped = *kw->Wrap(Filled(32, 2));
    for (size_t i = 0; i < wrapped.size(); ++i) {
      Bytes bad = wrapped;
      bad[i] ^= 0x80;
      EXPECT_EQ(kw->Unwrap(bad).status(), DataLossError("AES key unwrap failed")) << i;
    }
  }
}

TEST(AesKeyWrapTest, UnwrapFailsUnderAnotherKekOrMode) {
  const Bytes wrapped = *New(Filled(32, 1), Mode::kRfc3394)->Wrap(Filled(32, 2));
  EXPECT_EQ(New(Filled(32, 3), Mode::kRfc3394)->Unwrap(wrapped).status().code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(New(Filled(32, 1), Mode::kRfc5649)->Unwrap(wrapped).status().code(),
            StatusCode::kDataLoss);
}

TEST(AesKeyWrapTest, UnwrapRefusesImpossibleSizesWithTheSameError) {
  for (Mode mode : {Mode::kRfc3394, Mode::kRfc5649}) {
    auto kw = New(Filled(16, 1), mode);
    for (size_t n : {0, 1, 8, 15, 17, 23, 25}) {
      EXPECT_EQ(kw->Unwrap(Bytes(n, 0xA6)).status(), DataLossError("AES key unwrap failed")) << n;
    }
    EXPECT_EQ(kw->Unwrap(Bytes(AesKeyWrap::kMaxKeyDataSize + 24, 0)).status().code(),
              StatusCode::kDataLoss);
  }
}

TEST(AesKeyWrapTest, WrapEnforcesTheRfcSizeRules) {
  auto kw3394 = New(Filled(16, 1), Mode::kRfc3394);
  for (size_t n : {0, 8, 15, 17, 20}) {
    EXPECT_EQ(kw3394->Wrap(Filled(n, 1)).status().code(), StatusCode::kInvalidArgument) << n;
  }
  auto kw5649 = New(Filled(16, 1), Mode::kRfc5649);
  EXPECT_EQ(kw5649->Wrap(SecretBytes()).status().code(), StatusCode::kInvalidArgument);
  for (auto* kw : {kw3394.get(), kw5649.get()}) {
    EXPECT_EQ(kw->Wrap(Filled(AesKeyWrap::kMaxKeyDataSize + 8, 1)).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_TRUE(kw->Wrap(Filled(AesKeyWrap::kMaxKeyDataSize, 1)).ok());
  }
}

TEST(AesKeyWrapTest, NewRefusesBadKeksAndModes) {
  for (size_t n : {0, 8, 15, 17, 31, 33, 64}) {
    EXPECT_EQ(AesKeyWrap::New(Filled(n, 1), Mode::kRfc3394).status().code(),
              StatusCode::kInvalidArgument)
        << n;
  }
  EXPECT_EQ(AesKeyWrap::New(Filled(16, 1), Mode{}).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace keyfoundry::crypto
