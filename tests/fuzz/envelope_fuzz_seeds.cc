// Writes valid envelope inputs (key block || content) under the fuzzer's fixed key into the
// directory given, one file per plaintext size, for the fuzzer to start from.
#include <fstream>
#include <string>

#include "envelope_fuzz_common.h"

using namespace keyfoundry;

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const size_t sizes[] = {0,
                          1,
                          100,
                          encryption::kMinSegmentSize,
                          encryption::kMinSegmentSize + 1,
                          3 * encryption::kMinSegmentSize + 7};
  for (size_t size : sizes) {
    Bytes content;
    auto writer =
        encryption::EnvelopeWriter::New(fuzz::kFuzzObjectId, fuzz::FuzzGenerationKey(),
                                        [&](ByteView b) {
                                          content.insert(content.end(), b.begin(), b.end());
                                          return OkStatus();
                                        },
                                        {.segment_size = encryption::kMinSegmentSize});
    if (!writer.ok() || !(*writer)->Write(Bytes(size, 'a')).ok() || !(*writer)->Finish().ok()) {
      return 1;
    }
    std::ofstream out(std::string(argv[1]) + "/seed-" + std::to_string(size), std::ios::binary);
    const Bytes& kb = (*writer)->key_block();
    out.write(reinterpret_cast<const char*>(kb.data()), static_cast<std::streamsize>(kb.size()));
    out.write(reinterpret_cast<const char*>(content.data()),
              static_cast<std::streamsize>(content.size()));
  }
  return 0;
}
