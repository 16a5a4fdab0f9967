#include "common/bytes.h"

#include <cassert>

namespace keyfoundry {

bool ByteReader::ReadBigEndian(size_t width, uint64_t* out) {
  if (remaining() < width) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < width; ++i) v = (v << 8) | data_[pos_ + i];
  pos_ += width;
  *out = v;
  return true;
}

bool ByteReader::ReadU8(uint8_t* out) {
  uint64_t v;
  if (!ReadBigEndian(1, &v)) return false;
  *out = static_cast<uint8_t>(v);
  return true;
}

bool ByteReader::ReadU16(uint16_t* out) {
  uint64_t v;
  if (!ReadBigEndian(2, &v)) return false;
  *out = static_cast<uint16_t>(v);
  return true;
}

bool ByteReader::ReadU32(uint32_t* out) {
  uint64_t v;
  if (!ReadBigEndian(4, &v)) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

bool ByteReader::ReadU64(uint64_t* out) { return ReadBigEndian(8, out); }

bool ByteReader::ReadBytes(size_t n, ByteView* out) {
  if (remaining() < n) return false;
  *out = data_.subspan(pos_, n);
  pos_ += n;
  return true;
}

bool ByteReader::Skip(size_t n) {
  if (remaining() < n) return false;
  pos_ += n;
  return true;
}

void StoreBigEndian(uint64_t v, std::span<uint8_t> out) {
  assert(!out.empty() && out.size() <= 8);
  for (size_t i = out.size(); i-- > 0;) {
    out[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}

void ByteWriter::WriteBigEndian(uint64_t v, size_t width) {
  uint8_t buf[8];
  StoreBigEndian(v, std::span<uint8_t>(buf, width));
  out_.insert(out_.end(), buf, buf + width);
}

}  // namespace keyfoundry
