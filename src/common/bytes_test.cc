#include "common/bytes.h"

#include <gtest/gtest.h>

namespace keyfoundry {
namespace {

TEST(ByteWriterTest, WritesBigEndian) {
  ByteWriter w;
  w.WriteU8(0x01);
  w.WriteU16(0x0203);
  w.WriteU32(0x04050607);
  w.WriteU64(0x08090a0b0c0d0e0fULL);
  w.WriteBytes(AsBytes("xy"));
  Bytes expected = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 'x', 'y'};
  EXPECT_EQ(w.bytes(), expected);
}

TEST(ByteReaderTest, ReadsWhatWriterWrote) {
  ByteWriter w;
  w.WriteU8(7);
  w.WriteU16(65535);
  w.WriteU32(0xdeadbeef);
  w.WriteU64(~0ULL);
  w.WriteBytes(AsBytes("abc"));
  Bytes data = w.Take();
  ByteReader r(data);
  uint8_t a;
  uint16_t b;
  uint32_t c;
  uint64_t d;
  ByteView e;
  ASSERT_TRUE(r.ReadU8(&a) && r.ReadU16(&b) && r.ReadU32(&c) && r.ReadU64(&d) &&
              r.ReadBytes(3, &e));
  EXPECT_EQ(a, 7);
  EXPECT_EQ(b, 65535);
  EXPECT_EQ(c, 0xdeadbeefu);
  EXPECT_EQ(d, ~0ULL);
  EXPECT_EQ(AsStringView(e), "abc");
  EXPECT_TRUE(r.empty());
}

TEST(ByteReaderTest, RefusesToReadPastTheEndAndLeavesOutputUntouched) {
  Bytes data = {1, 2, 3};
  ByteReader r(data);
  uint32_t v = 42;
  EXPECT_FALSE(r.ReadU32(&v));
  EXPECT_EQ(v, 42u);
  EXPECT_EQ(r.position(), 0u);
  ByteView out;
  EXPECT_FALSE(r.ReadBytes(4, &out));
  EXPECT_FALSE(r.Skip(4));
  EXPECT_TRUE(r.Skip(3));
  uint8_t b;
  EXPECT_FALSE(r.ReadU8(&b));
}

}  // namespace
}  // namespace keyfoundry
