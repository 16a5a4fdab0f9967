// The envelope format: how one object's content is sealed at rest (BRIEF §4).
//
// An object is sealed under its own random 256-bit data key (DEK). The DEK is wrapped under
// an account key generation G_n and the wrapped form is kept apart from the content, in a
// small *key block* stored with the object's metadata, so that rotation can rewrap an object
// (new key block) without rewriting its content. The content is a *content header* followed by
// segments, each sealed with AES-256-GCM under the DEK:
//
//   content   = header || segment_0 || ... || segment_{n-1}          (n >= 1)
//   header    = "KFEN" | version=1 | alg=1 | segment_size u32 | salt[16] | id_len u8 | id
//   segment_i = GCM(DEK, nonce = 00 00 00 | last | i u64, aad = header, plaintext_i) (+16 tag)
//   key block = version=1 | alg=1 | generation u64 | nonce[12] | GCM(G_n, DEK) (32 + 16 tag)
//               with aad = "keyfoundry/dek/v1" | key block[0..10) | header
//
// Every full segment holds segment_size plaintext bytes; the last one holds 0..segment_size
// (0 only for an empty object). docs/envelope-format.md gives every byte, every limit and the
// argument for why truncation, reordering, swapping and header edits are all detected.
//
// Failure behaviour: any corruption or tampering gives DataLoss with one opaque message and
// never plaintext that was not authenticated. Wrong sizes or ids from the caller give
// InvalidArgument.
//
// Thread safety: EnvelopeWriter and EnvelopeReader are single-threaded objects.
#ifndef KEYFOUNDRY_ENCRYPTION_ENVELOPE_H_
#define KEYFOUNDRY_ENCRYPTION_ENVELOPE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "crypto/aes_gcm.h"
#include "crypto/random.h"

namespace keyfoundry::encryption {

inline constexpr uint8_t kEnvelopeVersion = 1;
inline constexpr uint32_t kMinSegmentSize = 4 * 1024;
inline constexpr uint32_t kDefaultSegmentSize = 64 * 1024;
inline constexpr uint32_t kMaxSegmentSize = 4 * 1024 * 1024;
inline constexpr size_t kMaxObjectIdSize = 255;
inline constexpr uint64_t kMaxSegments = uint64_t{1} << 32;
inline constexpr size_t kKeyBlockSize = 70;
inline constexpr size_t kSegmentOverhead = crypto::AesGcm::kTagSize;

// An account key generation: the AES-256 key that wraps data keys, and its number.
class GenerationKey {
 public:
  // InvalidArgument unless `key` is 32 bytes and `generation` is not 0.
  static StatusOr<GenerationKey> New(uint64_t generation, SecretBytes key);

  uint64_t generation() const { return generation_; }
  const SecretBytes& key() const { return key_; }

 private:
  GenerationKey(uint64_t generation, SecretBytes key)
      : generation_(generation), key_(std::move(key)) {}
  uint64_t generation_;
  SecretBytes key_;
};

// Receives sealed bytes in order; a non-OK status aborts the writer.
using EnvelopeSink = std::function<Status(ByteView)>;
// Reads up to out.size() stored bytes at `offset`; returns how many were read (fewer only at
// the end of the stored object).
using EnvelopeSource = std::function<StatusOr<size_t>(uint64_t offset, std::span<uint8_t> out)>;

// The generation a key block names, read without unwrapping it, so the caller can find the
// right GenerationKey. DataLoss if the block is malformed.
StatusOr<uint64_t> KeyBlockGeneration(ByteView key_block);

// Rewraps an object's data key under another generation (reprocessing in "rewrap" mode): the
// content is untouched. `content_header` is the object's stored header bytes (see
// EnvelopeReader::header()).
StatusOr<Bytes> RewrapKeyBlock(ByteView key_block, ByteView content_header,
                               const GenerationKey& from, const GenerationKey& to,
                               crypto::Random& random = crypto::Random::Secure());

// RewrapKeyBlock for many objects from one generation to another (reprocessing rewraps
// thousands a second): the two AES-GCM key schedules are set up once, and the nonces are drawn
// from the CSPRNG kNonceBatch at a time (each draw is a fresh random nonce used once; a draw
// costs a system call). Not thread-safe; `from`, `to` and `random` must outlive it.
class KeyBlockRewrapper {
 public:
  static constexpr size_t kNonceBatch = 256;

  // InvalidArgument when the generations are the same.
  static StatusOr<std::unique_ptr<KeyBlockRewrapper>> New(
      const GenerationKey& from, const GenerationKey& to,
      crypto::Random& random = crypto::Random::Secure());

  // As RewrapKeyBlock(key_block, content_header, from, to).
  StatusOr<Bytes> Rewrap(ByteView key_block, ByteView content_header);

 private:
  KeyBlockRewrapper(const GenerationKey& from, const GenerationKey& to, crypto::Random& random,
                    std::unique_ptr<crypto::AesGcm> unwrap, std::unique_ptr<crypto::AesGcm> wrap);

  const GenerationKey& from_;
  const GenerationKey& to_;
  crypto::Random& random_;
  std::unique_ptr<crypto::AesGcm> unwrap_;
  std::unique_ptr<crypto::AesGcm> wrap_;
  Bytes nonces_;     // kNonceBatch nonces drawn together
  size_t used_ = 0;  // nonces of nonces_ handed out
};

// Stored size of a sealed object of `plaintext_size` bytes.
uint64_t SealedSize(uint64_t plaintext_size, size_t object_id_size, uint32_t segment_size);

// Seals one object as a stream, holding one segment in memory.
class EnvelopeWriter {
 public:
  struct Options {
    uint32_t segment_size = kDefaultSegmentSize;
  };

  // Makes a fresh data key and wraps it under `generation`; emits the header through `sink`.
  static StatusOr<std::unique_ptr<EnvelopeWriter>> New(
      std::string_view object_id, const GenerationKey& generation, EnvelopeSink sink,
      Options options, crypto::Random& random = crypto::Random::Secure());

  // The key block to store with the object's metadata. Available at once.
  const Bytes& key_block() const { return key_block_; }

  // Appends plaintext. Fails (and stays failed) if the sink fails or the object grows past
  // the format's limit.
  Status Write(ByteView plaintext);
  // Seals the last segment. The object is complete once this returns OK.
  Status Finish();

  uint64_t plaintext_size() const { return plaintext_size_; }

 private:
  EnvelopeWriter(std::unique_ptr<crypto::AesGcm> aead, Bytes header, Bytes key_block,
                 EnvelopeSink sink, uint32_t segment_size);
  // Seals `plaintext` (the buffer's front, or input) as the next segment into buffer_.
  Status SealSegment(ByteView plaintext, bool last);

  std::unique_ptr<crypto::AesGcm> aead_;
  Bytes header_;
  Bytes key_block_;
  EnvelopeSink sink_;
  uint32_t segment_size_;
  Bytes buffer_;  // up to segment_size_ + tag; plaintext accumulates at the front
  size_t buffered_ = 0;
  uint64_t next_segment_ = 0;
  uint64_t plaintext_size_ = 0;
  Status failed_;  // sticky: once a write fails, so do all later calls
  bool finished_ = false;
};

// Opens a sealed object for streaming or random-access reads, holding one segment in memory
// (plus the last segment, verified at Open so that the plaintext size is authenticated).
class EnvelopeReader {
 public:
  // `stored_size` is the size of the stored content (header and segments). Fails with
  // DataLoss if the content is malformed, the key block does not unwrap under `generation`,
  // or the last segment does not verify; with InvalidArgument if `generation` is not the one
  // the key block names.
  static StatusOr<std::unique_ptr<EnvelopeReader>> Open(std::string_view object_id,
                                                        ByteView key_block,
                                                        const GenerationKey& generation,
                                                        EnvelopeSource source,
                                                        uint64_t stored_size);

  uint64_t plaintext_size() const { return plaintext_size_; }
  uint32_t segment_size() const { return segment_size_; }
  const Bytes& header() const { return header_; }

  // Reads plaintext [offset, offset + out.size()), clamped to the object's end; returns the
  // number of bytes read (0 at or past the end).
  StatusOr<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out);

  // Streams plaintext [offset, offset + length), clamped to the end, to `sink` in pieces of
  // at most one segment. Every piece is authenticated before it is passed on.
  Status ReadRange(uint64_t offset, uint64_t length, const EnvelopeSink& sink);

 private:
  EnvelopeReader(std::unique_ptr<crypto::AesGcm> aead, Bytes header, EnvelopeSource source,
                 uint32_t segment_size, uint64_t segments, uint64_t plaintext_size);
  // Returns the verified plaintext of segment `index`.
  StatusOr<ByteView> Segment(uint64_t index);
  Status OpenSegment(uint64_t index, Bytes& out);

  std::unique_ptr<crypto::AesGcm> aead_;
  Bytes header_;
  EnvelopeSource source_;
  uint32_t segment_size_;
  uint64_t segments_;
  uint64_t plaintext_size_;
  Bytes last_segment_;  // plaintext of the final segment
  Bytes current_;       // plaintext of the most recently opened other segment
  uint64_t current_index_ = UINT64_MAX;
  Bytes scratch_;  // stored bytes of one segment
};

}  // namespace keyfoundry::encryption

#endif  // KEYFOUNDRY_ENCRYPTION_ENVELOPE_H_
