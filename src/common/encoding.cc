#include "common/encoding.h"

#include <array>

namespace keyfoundry {
namespace {

constexpr std::string_view kStdAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kUrlAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr uint8_t kInvalid = 0xFF;

constexpr std::array<uint8_t, 256> ReverseTable(std::string_view alphabet) {
  std::array<uint8_t, 256> table{};
  table.fill(kInvalid);
  for (size_t i = 0; i < alphabet.size(); ++i) {
    table[static_cast<uint8_t>(alphabet[i])] = static_cast<uint8_t>(i);
  }
  return table;
}

constexpr auto kStdReverse = ReverseTable(kStdAlphabet);
constexpr auto kUrlReverse = ReverseTable(kUrlAlphabet);

std::string Encode(ByteView data, std::string_view alphabet, bool pad) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t v = (uint32_t{data[i]} << 16) | (uint32_t{data[i + 1]} << 8) | data[i + 2];
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  size_t rest = data.size() - i;
  if (rest == 1) {
    uint32_t v = uint32_t{data[i]} << 16;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    if (pad) out += "==";
  } else if (rest == 2) {
    uint32_t v = (uint32_t{data[i]} << 16) | (uint32_t{data[i + 1]} << 8);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    if (pad) out += '=';
  }
  return out;
}

StatusOr<Bytes> Decode(std::string_view text, const std::array<uint8_t, 256>& reverse,
                       std::string_view name) {
  // Strip padding: allowed only to complete the last quantum to a multiple of 4.
  size_t padding = 0;
  while (!text.empty() && text.back() == '=' && padding < 2) {
    text.remove_suffix(1);
    ++padding;
  }
  if (padding > 0 && (text.size() + padding) % 4 != 0) {
    return InvalidArgumentError(std::string(name) + " input has misplaced padding");
  }
  if (text.size() % 4 == 1) {
    return InvalidArgumentError(std::string(name) + " input has an impossible length");
  }
  Bytes out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    uint8_t v = reverse[static_cast<uint8_t>(c)];
    if (v == kInvalid) {
      return InvalidArgumentError(std::string(name) +
                                  " input has a character outside its alphabet");
    }
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>(acc >> bits));
      acc &= (1u << bits) - 1;
    }
  }
  if (acc != 0) {
    return InvalidArgumentError(std::string(name) + " input has non-zero trailing bits");
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string Base64Encode(ByteView data) { return Encode(data, kStdAlphabet, /*pad=*/true); }
std::string Base64UrlEncode(ByteView data) { return Encode(data, kUrlAlphabet, /*pad=*/false); }
StatusOr<Bytes> Base64Decode(std::string_view text) { return Decode(text, kStdReverse, "base64"); }
StatusOr<Bytes> Base64UrlDecode(std::string_view text) {
  return Decode(text, kUrlReverse, "base64url");
}

std::string HexEncode(ByteView data) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(data.size() * 2);
  for (uint8_t b : data) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

StatusOr<Bytes> HexDecode(std::string_view text) {
  if (text.size() % 2 != 0) return InvalidArgumentError("hex input has an odd length");
  Bytes out(text.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = HexValue(text[2 * i]);
    int lo = HexValue(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return InvalidArgumentError("hex input has a non-hex character");
    out[i] = static_cast<uint8_t>((hi << 4) | lo);
  }
  return out;
}

}  // namespace keyfoundry
