// Envelope seal and open throughput for 4 KiB and 1 MiB objects, beside raw AES-256-GCM on
// 16 KiB blocks through the same EVP calls (the physical limit the envelope is held to;
// bench/run.sh also records `openssl speed -evp aes-256-gcm` from the same run).
#include <benchmark/benchmark.h>

#include <cstring>

#include "encryption/envelope.h"

namespace keyfoundry::encryption {
namespace {

const GenerationKey& Gen() {
  static const GenerationKey gen =
      *GenerationKey::New(1, SecretBytes(Bytes(32, 0x11), InsecureSecretAccess()));
  return gen;
}

struct Sealed {
  Bytes key_block;
  Bytes content;
};

Sealed SealOnce(const Bytes& plaintext, Bytes& content) {
  content.clear();
  auto writer = *EnvelopeWriter::New("bench-object", Gen(),
                                     [&](ByteView b) {
                                       content.insert(content.end(), b.begin(), b.end());
                                       return OkStatus();
                                     },
                                     {});
  if (!writer->Write(plaintext).ok() || !writer->Finish().ok()) std::abort();
  return {writer->key_block(), {}};
}

void BM_EnvelopeSeal(benchmark::State& state) {
  Bytes plaintext(static_cast<size_t>(state.range(0)), 0x5a);
  Bytes content;
  content.reserve(plaintext.size() + 4096);
  for (auto _ : state) {
    Sealed s = SealOnce(plaintext, content);
    benchmark::DoNotOptimize(content.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}

void BM_EnvelopeOpen(benchmark::State& state) {
  Bytes plaintext(static_cast<size_t>(state.range(0)), 0x5a);
  Bytes content;
  Sealed s = SealOnce(plaintext, content);
  Bytes out(plaintext.size());
  auto source = [&](uint64_t offset, std::span<uint8_t> dst) -> StatusOr<size_t> {
    size_t n = std::min<size_t>(dst.size(), content.size() - offset);
    std::memcpy(dst.data(), content.data() + offset, n);
    return n;
  };
  for (auto _ : state) {
    auto reader = *EnvelopeReader::Open("bench-object", s.key_block, Gen(), source, content.size());
    if (*reader->ReadAt(0, out) != out.size()) std::abort();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}

// The peer: AES-256-GCM over 16 KiB blocks with a fixed key, as `openssl speed` measures it.
void BM_RawAesGcm(benchmark::State& state) {
  auto aead = *crypto::AesGcm::New(SecretBytes(Bytes(32, 0x22), InsecureSecretAccess()));
  Bytes buf(static_cast<size_t>(state.range(0)) + crypto::AesGcm::kTagSize, 0x5a);
  Bytes nonce(crypto::AesGcm::kNonceSize, 0);
  uint64_t counter = 0;
  for (auto _ : state) {
    StoreBigEndian(++counter, std::span<uint8_t>(nonce).subspan(4));
    if (!aead->Seal(nonce, {}, ByteView(buf.data(), buf.size() - crypto::AesGcm::kTagSize), buf)
             .ok()) {
      std::abort();
    }
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}

BENCHMARK(BM_EnvelopeSeal)->Arg(4 << 10)->Arg(1 << 20);
BENCHMARK(BM_EnvelopeOpen)->Arg(4 << 10)->Arg(1 << 20);
BENCHMARK(BM_RawAesGcm)->Arg(16 << 10);

}  // namespace
}  // namespace keyfoundry::encryption

BENCHMARK_MAIN();
