// Fuzzes the envelope decoder: key block parsing, header parsing, segment layout arithmetic
// and segment opening. Input: key block (kKeyBlockSize bytes) || stored content.
#include <cstring>

#include "envelope_fuzz_common.h"

using namespace keyfoundry;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ByteView input(data, size);
  (void)encryption::KeyBlockGeneration(input.first(std::min(size, encryption::kKeyBlockSize)));
  if (size < encryption::kKeyBlockSize) return 0;
  ByteView key_block = input.first(encryption::kKeyBlockSize);
  ByteView content = input.subspan(encryption::kKeyBlockSize);
  auto source = [content](uint64_t offset, std::span<uint8_t> out) -> StatusOr<size_t> {
    if (offset >= content.size()) return size_t{0};
    size_t n = std::min<size_t>(out.size(), content.size() - offset);
    std::memcpy(out.data(), content.data() + offset, n);
    return n;
  };
  auto reader = encryption::EnvelopeReader::Open(fuzz::kFuzzObjectId, key_block,
                                                 fuzz::FuzzGenerationKey(), source, content.size());
  if (!reader.ok()) return 0;
  uint64_t seen = 0;
  Status st = (*reader)->ReadRange(0, UINT64_MAX, [&](ByteView piece) {
    seen += piece.size();
    return OkStatus();
  });
  // A reader that opened must deliver exactly its authenticated size, or fail.
  if (st.ok() && seen != (*reader)->plaintext_size()) __builtin_trap();
  return 0;
}
