// Byte strings and the bounds-checked reader and writer through which every byte format in
// keyfoundry is built and parsed (STYLE habit 7). Integers are big-endian.
//
// ByteReader never reads past its end: every Read* returns false and leaves the output
// untouched when too few bytes remain, so parsers of untrusted input are written as
//   if (!in.ReadU16(&n) || n > kMax || !in.ReadBytes(n, &out)) return Corrupt();
#ifndef KEYFOUNDRY_COMMON_BYTES_H_
#define KEYFOUNDRY_COMMON_BYTES_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace keyfoundry {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

inline ByteView AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string_view AsStringView(ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
inline Bytes ToBytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

// A cursor over borrowed bytes. Not thread-safe; the bytes must outlive the reader.
class ByteReader {
 public:
  explicit ByteReader(ByteView data) : data_(data) {}

  size_t remaining() const { return data_.size() - pos_; }
  size_t position() const { return pos_; }
  bool empty() const { return remaining() == 0; }

  [[nodiscard]] bool ReadU8(uint8_t* out);
  [[nodiscard]] bool ReadU16(uint16_t* out);
  [[nodiscard]] bool ReadU32(uint32_t* out);
  [[nodiscard]] bool ReadU64(uint64_t* out);
  // Borrows `n` bytes (no copy) into *out.
  [[nodiscard]] bool ReadBytes(size_t n, ByteView* out);
  [[nodiscard]] bool Skip(size_t n);

 private:
  [[nodiscard]] bool ReadBigEndian(size_t width, uint64_t* out);

  ByteView data_;
  size_t pos_ = 0;
};

// Appends to a growable buffer. Not thread-safe.
class ByteWriter {
 public:
  ByteWriter() = default;
  explicit ByteWriter(size_t reserve) { out_.reserve(reserve); }

  void WriteU8(uint8_t v) { out_.push_back(v); }
  void WriteU16(uint16_t v) { WriteBigEndian(v, 2); }
  void WriteU32(uint32_t v) { WriteBigEndian(v, 4); }
  void WriteU64(uint64_t v) { WriteBigEndian(v, 8); }
  void WriteBytes(ByteView b) { out_.insert(out_.end(), b.begin(), b.end()); }

  size_t size() const { return out_.size(); }
  const Bytes& bytes() const { return out_; }
  Bytes Take() { return std::move(out_); }

 private:
  void WriteBigEndian(uint64_t v, size_t width);
  Bytes out_;
};

// Stores `v` big-endian into exactly `out.size()` (1..8) bytes.
void StoreBigEndian(uint64_t v, std::span<uint8_t> out);

}  // namespace keyfoundry

#endif  // KEYFOUNDRY_COMMON_BYTES_H_
