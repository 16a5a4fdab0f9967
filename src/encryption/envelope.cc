// Design notes for the envelope format (the byte layout is in envelope.h and, in full, in
// docs/envelope-format.md).
//
// Keys and nonces. Each sealing draws a fresh 256-bit DEK from the CSPRNG and uses it for one
// object only. Under that DEK, segment i is sealed with the nonce 00 00 00 | last | i, and a
// writer seals each index exactly once, so no (key, nonce) pair ever repeats without relying
// on randomness for nonces. The DEK itself is sealed under the generation key with a random
// 96-bit nonce; NIST SP 800-38D §8.3 bounds that to 2^32 wraps per generation key, far more
// objects than one generation protects (docs/envelope-format.md).
//
// Bindings. The header (object id, segment size, a random salt, version) is the associated
// data of every segment and of the key block, so a header edited, or taken from another
// object or another sealing of the same object, fails. The segment index and the last flag
// are in the nonce, so reordering, dropping, duplicating or truncating segments fails. The
// key block names its generation inside its associated data, so relabelling it fails.
//
// Reading. The reader computes the segment count from the stored size and verifies the last
// segment when it opens, so the plaintext size it reports is authenticated before any byte is
// returned; every other segment is verified before any of its bytes leave the reader.
#include "encryption/envelope.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace keyfoundry::encryption {
namespace {

constexpr std::array<uint8_t, 4> kMagic = {'K', 'F', 'E', 'N'};
constexpr uint8_t kContentAlgAes256GcmSegments = 1;
constexpr uint8_t kKeyBlockVersion = 1;
constexpr uint8_t kWrapAlgAes256Gcm = 1;
constexpr size_t kSaltSize = 16;
constexpr size_t kHeaderFixedSize = 4 + 1 + 1 + 4 + kSaltSize + 1;  // 27
constexpr size_t kMaxHeaderSize = kHeaderFixedSize + kMaxObjectIdSize;
constexpr size_t kDataKeySize = 32;
constexpr size_t kKeyBlockPrefixSize = 1 + 1 + 8;  // version, algorithm, generation
constexpr std::string_view kDekLabel = "keyfoundry/dek/v1";

Status Corrupt() { return DataLossError("the stored object is corrupt or has been tampered with"); }

Status CheckObjectId(std::string_view object_id) {
  if (object_id.empty() || object_id.size() > kMaxObjectIdSize) {
    return InvalidArgumentError("an object id is 1 to 255 bytes");
  }
  return OkStatus();
}

Status CheckSegmentSize(uint32_t segment_size) {
  if (segment_size < kMinSegmentSize || segment_size > kMaxSegmentSize) {
    return InvalidArgumentError("the segment size must be between 4 KiB and 4 MiB");
  }
  return OkStatus();
}

std::array<uint8_t, crypto::AesGcm::kNonceSize> SegmentNonce(uint64_t index, bool last) {
  std::array<uint8_t, crypto::AesGcm::kNonceSize> nonce{};
  nonce[3] = last ? 1 : 0;
  StoreBigEndian(index, std::span<uint8_t>(nonce).subspan(4, 8));
  return nonce;
}

Bytes DekAad(ByteView key_block_prefix, ByteView header) {
  ByteWriter w(kDekLabel.size() + key_block_prefix.size() + header.size());
  w.WriteBytes(AsBytes(kDekLabel));
  w.WriteBytes(key_block_prefix);
  w.WriteBytes(header);
  return w.Take();
}

// `nonce` is fresh from the CSPRNG; `aead` holds generation's key.
StatusOr<Bytes> WrapDataKey(const GenerationKey& generation, crypto::AesGcm& aead,
                            const SecretBytes& dek, ByteView header, ByteView nonce) {
  ByteWriter w(kKeyBlockSize);
  w.WriteU8(kKeyBlockVersion);
  w.WriteU8(kWrapAlgAes256Gcm);
  w.WriteU64(generation.generation());
  ASSIGN_OR_RETURN(Bytes sealed,
                   aead.Seal(nonce, DekAad(w.bytes(), header), dek.Reveal(InsecureSecretAccess())));
  w.WriteBytes(nonce);
  w.WriteBytes(sealed);
  return w.Take();
}

StatusOr<Bytes> WrapDataKey(const GenerationKey& generation, const SecretBytes& dek,
                            ByteView header, ByteView nonce) {
  ASSIGN_OR_RETURN(auto aead, crypto::AesGcm::New(generation.key()));
  return WrapDataKey(generation, *aead, dek, header, nonce);
}

// `aead` holds generation's key.
StatusOr<SecretBytes> UnwrapDataKey(ByteView key_block, ByteView header,
                                    const GenerationKey& generation, crypto::AesGcm& aead) {
  ASSIGN_OR_RETURN(uint64_t named, KeyBlockGeneration(key_block));
  if (named != generation.generation()) {
    return InvalidArgumentError("the object's data key is wrapped under generation " +
                                std::to_string(named) + ", not " +
                                std::to_string(generation.generation()));
  }
  ByteView prefix = key_block.first(kKeyBlockPrefixSize);
  ByteView nonce = key_block.subspan(kKeyBlockPrefixSize, crypto::AesGcm::kNonceSize);
  ByteView sealed = key_block.subspan(kKeyBlockPrefixSize + crypto::AesGcm::kNonceSize);
  SecretBytes dek(kDataKeySize);
  if (!aead.Open(nonce, DekAad(prefix, header), sealed, dek.Mutable(InsecureSecretAccess())).ok()) {
    return Corrupt();
  }
  return dek;
}

StatusOr<SecretBytes> UnwrapDataKey(ByteView key_block, ByteView header,
                                    const GenerationKey& generation) {
  ASSIGN_OR_RETURN(auto aead, crypto::AesGcm::New(generation.key()));
  return UnwrapDataKey(key_block, header, generation, *aead);
}

// A parsed content header.
struct Header {
  uint32_t segment_size = 0;
  std::string_view object_id;
  size_t size = 0;  // bytes of the header itself
};

bool ParseHeader(ByteView data, Header* out) {
  ByteReader in(data);
  ByteView magic, salt, id;
  uint8_t version, alg, id_size;
  uint32_t segment_size;
  if (!in.ReadBytes(kMagic.size(), &magic) ||
      !std::equal(magic.begin(), magic.end(), kMagic.begin()) || !in.ReadU8(&version) ||
      version != kEnvelopeVersion || !in.ReadU8(&alg) || alg != kContentAlgAes256GcmSegments ||
      !in.ReadU32(&segment_size) || !CheckSegmentSize(segment_size).ok() ||
      !in.ReadBytes(kSaltSize, &salt) || !in.ReadU8(&id_size) || id_size == 0 ||
      !in.ReadBytes(id_size, &id)) {
    return false;
  }
  out->segment_size = segment_size;
  out->object_id = AsStringView(id);
  out->size = in.position();
  return true;
}

Status ReadFully(const EnvelopeSource& source, uint64_t offset, std::span<uint8_t> out) {
  while (!out.empty()) {
    ASSIGN_OR_RETURN(size_t n, source(offset, out));
    if (n == 0 || n > out.size()) return Corrupt();
    offset += n;
    out = out.subspan(n);
  }
  return OkStatus();
}

}  // namespace

StatusOr<GenerationKey> GenerationKey::New(uint64_t generation, SecretBytes key) {
  if (generation == 0) return InvalidArgumentError("generation numbers start at 1");
  if (key.size() != kDataKeySize) return InvalidArgumentError("a generation key is 32 bytes");
  return GenerationKey(generation, std::move(key));
}

StatusOr<uint64_t> KeyBlockGeneration(ByteView key_block) {
  ByteReader in(key_block);
  uint8_t version, alg;
  uint64_t generation;
  if (key_block.size() != kKeyBlockSize || !in.ReadU8(&version) || version != kKeyBlockVersion ||
      !in.ReadU8(&alg) || alg != kWrapAlgAes256Gcm || !in.ReadU64(&generation) || generation == 0) {
    return Corrupt();
  }
  return generation;
}

StatusOr<Bytes> RewrapKeyBlock(ByteView key_block, ByteView content_header,
                               const GenerationKey& from, const GenerationKey& to,
                               crypto::Random& random) {
  ASSIGN_OR_RETURN(SecretBytes dek, UnwrapDataKey(key_block, content_header, from));
  ASSIGN_OR_RETURN(Bytes nonce, crypto::RandomBytes(crypto::AesGcm::kNonceSize, random));
  return WrapDataKey(to, dek, content_header, nonce);
}

// --- KeyBlockRewrapper ---

KeyBlockRewrapper::KeyBlockRewrapper(const GenerationKey& from, const GenerationKey& to,
                                     crypto::Random& random, std::unique_ptr<crypto::AesGcm> unwrap,
                                     std::unique_ptr<crypto::AesGcm> wrap)
    : from_(from), to_(to), random_(random), unwrap_(std::move(unwrap)), wrap_(std::move(wrap)) {}

StatusOr<std::unique_ptr<KeyBlockRewrapper>> KeyBlockRewrapper::New(const GenerationKey& from,
                                                                    const GenerationKey& to,
                                                                    crypto::Random& random) {
  if (from.generation() == to.generation()) {
    return InvalidArgumentError("a key block is rewrapped to another generation");
  }
  ASSIGN_OR_RETURN(auto unwrap, crypto::AesGcm::New(from.key()));
  ASSIGN_OR_RETURN(auto wrap, crypto::AesGcm::New(to.key()));
  return std::unique_ptr<KeyBlockRewrapper>(
      new KeyBlockRewrapper(from, to, random, std::move(unwrap), std::move(wrap)));
}

StatusOr<Bytes> KeyBlockRewrapper::Rewrap(ByteView key_block, ByteView content_header) {
  ASSIGN_OR_RETURN(SecretBytes dek, UnwrapDataKey(key_block, content_header, from_, *unwrap_));
  if (used_ == nonces_.size() / crypto::AesGcm::kNonceSize) {
    ASSIGN_OR_RETURN(nonces_,
                     crypto::RandomBytes(kNonceBatch * crypto::AesGcm::kNonceSize, random_));
    used_ = 0;
  }
  // Each nonce is handed out once: used_ only grows until a fresh batch replaces them all.
  const ByteView nonce =
      ByteView(nonces_).subspan(used_++ * crypto::AesGcm::kNonceSize, crypto::AesGcm::kNonceSize);
  return WrapDataKey(to_, *wrap_, dek, content_header, nonce);
}

uint64_t SealedSize(uint64_t plaintext_size, size_t object_id_size, uint32_t segment_size) {
  uint64_t segments = plaintext_size == 0 ? 1 : (plaintext_size + segment_size - 1) / segment_size;
  return kHeaderFixedSize + object_id_size + plaintext_size + segments * kSegmentOverhead;
}

// --- EnvelopeWriter ---

EnvelopeWriter::EnvelopeWriter(std::unique_ptr<crypto::AesGcm> aead, Bytes header, Bytes key_block,
                               EnvelopeSink sink, uint32_t segment_size)
    : aead_(std::move(aead)),
      header_(std::move(header)),
      key_block_(std::move(key_block)),
      sink_(std::move(sink)),
      segment_size_(segment_size) {}

StatusOr<std::unique_ptr<EnvelopeWriter>> EnvelopeWriter::New(std::string_view object_id,
                                                              const GenerationKey& generation,
                                                              EnvelopeSink sink, Options options,
                                                              crypto::Random& random) {
  RETURN_IF_ERROR(CheckObjectId(object_id));
  RETURN_IF_ERROR(CheckSegmentSize(options.segment_size));
  // One draw from the CSPRNG for the salt, the key-block nonce and the DEK: each call into
  // OpenSSL's DRBG costs system calls (its fork check), which dominated small objects.
  ASSIGN_OR_RETURN(
      SecretBytes fresh,
      crypto::RandomSecret(kSaltSize + crypto::AesGcm::kNonceSize + kDataKeySize, random));
  ByteView drawn = fresh.Reveal(InsecureSecretAccess());
  ByteView salt = drawn.first(kSaltSize);
  ByteView wrap_nonce = drawn.subspan(kSaltSize, crypto::AesGcm::kNonceSize);
  SecretBytes dek(drawn.subspan(kSaltSize + crypto::AesGcm::kNonceSize), InsecureSecretAccess());
  ByteWriter h(kHeaderFixedSize + object_id.size());
  h.WriteBytes(kMagic);
  h.WriteU8(kEnvelopeVersion);
  h.WriteU8(kContentAlgAes256GcmSegments);
  h.WriteU32(options.segment_size);
  h.WriteBytes(salt);
  h.WriteU8(static_cast<uint8_t>(object_id.size()));
  h.WriteBytes(AsBytes(object_id));
  Bytes header = h.Take();

  ASSIGN_OR_RETURN(Bytes key_block, WrapDataKey(generation, dek, header, wrap_nonce));
  ASSIGN_OR_RETURN(auto aead, crypto::AesGcm::New(dek));
  RETURN_IF_ERROR(sink(header));
  return std::unique_ptr<EnvelopeWriter>(new EnvelopeWriter(std::move(aead), std::move(header),
                                                            std::move(key_block), std::move(sink),
                                                            options.segment_size));
}

Status EnvelopeWriter::SealSegment(ByteView plaintext, bool last) {
  if (next_segment_ >= kMaxSegments) {
    return OutOfRangeError("the object is larger than the envelope format allows");
  }
  auto nonce = SegmentNonce(next_segment_, last);
  // In-place seals always have room (Write grows the buffer with it); this covers sealing
  // straight from the input and the empty last segment of an empty object.
  if (buffer_.size() < plaintext.size() + kSegmentOverhead) {
    buffer_.resize(plaintext.size() + kSegmentOverhead);
  }
  std::span<uint8_t> sealed(buffer_.data(), plaintext.size() + kSegmentOverhead);
  RETURN_IF_ERROR(aead_->Seal(nonce, header_, plaintext, sealed));
  RETURN_IF_ERROR(sink_(sealed));
  ++next_segment_;
  buffered_ = 0;
  return OkStatus();
}

Status EnvelopeWriter::Write(ByteView plaintext) {
  RETURN_IF_ERROR(failed_);
  if (finished_) return FailedPreconditionError("the object has already been finished");
  while (!plaintext.empty()) {
    // A full buffer is sealed only once more data arrives: until then it may be the last.
    if (buffered_ == segment_size_) {
      failed_ = SealSegment(ByteView(buffer_.data(), buffered_), /*last=*/false);
      RETURN_IF_ERROR(failed_);
    }
    if (buffered_ == 0 && plaintext.size() > segment_size_) {
      // A whole segment with more data after it is not the last: seal it straight from the
      // input and skip the copy into the buffer.
      failed_ = SealSegment(plaintext.first(segment_size_), /*last=*/false);
      RETURN_IF_ERROR(failed_);
      plaintext_size_ += segment_size_;
      plaintext = plaintext.subspan(segment_size_);
      continue;
    }
    size_t n = std::min<size_t>(segment_size_ - buffered_, plaintext.size());
    // The buffer grows to what the object needs (small objects stay small), with room for the
    // tag so the segment can be sealed in place.
    if (buffer_.size() < buffered_ + n + kSegmentOverhead) {
      buffer_.resize(buffered_ + n + kSegmentOverhead);
    }
    std::memcpy(buffer_.data() + buffered_, plaintext.data(), n);
    buffered_ += n;
    plaintext_size_ += n;
    plaintext = plaintext.subspan(n);
  }
  return OkStatus();
}

Status EnvelopeWriter::Finish() {
  RETURN_IF_ERROR(failed_);
  if (finished_) return FailedPreconditionError("the object has already been finished");
  failed_ = SealSegment(ByteView(buffer_.data(), buffered_), /*last=*/true);
  RETURN_IF_ERROR(failed_);
  finished_ = true;
  return OkStatus();
}

// --- EnvelopeReader ---

EnvelopeReader::EnvelopeReader(std::unique_ptr<crypto::AesGcm> aead, Bytes header,
                               EnvelopeSource source, uint32_t segment_size, uint64_t segments,
                               uint64_t plaintext_size)
    : aead_(std::move(aead)),
      header_(std::move(header)),
      source_(std::move(source)),
      segment_size_(segment_size),
      segments_(segments),
      plaintext_size_(plaintext_size) {}

StatusOr<std::unique_ptr<EnvelopeReader>> EnvelopeReader::Open(std::string_view object_id,
                                                               ByteView key_block,
                                                               const GenerationKey& generation,
                                                               EnvelopeSource source,
                                                               uint64_t stored_size) {
  RETURN_IF_ERROR(CheckObjectId(object_id));
  Bytes prefix(std::min<uint64_t>(stored_size, kMaxHeaderSize));
  RETURN_IF_ERROR(ReadFully(source, 0, prefix));
  Header parsed;
  if (!ParseHeader(prefix, &parsed) || parsed.object_id != object_id) return Corrupt();
  Bytes header(prefix.begin(), prefix.begin() + static_cast<ptrdiff_t>(parsed.size));

  // The segment layout follows from the stored size; the last segment may be full.
  const uint64_t stored_segment = uint64_t{parsed.segment_size} + kSegmentOverhead;
  const uint64_t body = stored_size - header.size();
  const uint64_t segments = (body + stored_segment - 1) / stored_segment;
  if (segments == 0 || segments > kMaxSegments) return Corrupt();
  const uint64_t last_stored = body - (segments - 1) * stored_segment;
  if (last_stored < kSegmentOverhead) return Corrupt();
  const uint64_t plaintext_size =
      (segments - 1) * parsed.segment_size + (last_stored - kSegmentOverhead);

  ASSIGN_OR_RETURN(SecretBytes dek, UnwrapDataKey(key_block, header, generation));
  ASSIGN_OR_RETURN(auto aead, crypto::AesGcm::New(dek));
  std::unique_ptr<EnvelopeReader> reader(new EnvelopeReader(std::move(aead), std::move(header),
                                                            std::move(source), parsed.segment_size,
                                                            segments, plaintext_size));
  RETURN_IF_ERROR(reader->OpenSegment(segments - 1, reader->last_segment_));
  return reader;
}

Status EnvelopeReader::OpenSegment(uint64_t index, Bytes& out) {
  const uint64_t stored_segment = uint64_t{segment_size_} + kSegmentOverhead;
  const bool last = index == segments_ - 1;
  const uint64_t plaintext =
      last ? plaintext_size_ - index * segment_size_ : uint64_t{segment_size_};
  scratch_.resize(plaintext + kSegmentOverhead);
  RETURN_IF_ERROR(ReadFully(source_, header_.size() + index * stored_segment, scratch_));
  out.resize(plaintext);
  if (!aead_->Open(SegmentNonce(index, last), header_, scratch_, out).ok()) {
    out.clear();
    return Corrupt();
  }
  return OkStatus();
}

StatusOr<ByteView> EnvelopeReader::Segment(uint64_t index) {
  if (index == segments_ - 1) return ByteView(last_segment_);
  if (index != current_index_) {
    current_index_ = UINT64_MAX;
    RETURN_IF_ERROR(OpenSegment(index, current_));
    current_index_ = index;
  }
  return ByteView(current_);
}

StatusOr<size_t> EnvelopeReader::ReadAt(uint64_t offset, std::span<uint8_t> out) {
  size_t copied = 0;
  RETURN_IF_ERROR(ReadRange(offset, out.size(), [&](ByteView piece) {
    std::memcpy(out.data() + copied, piece.data(), piece.size());
    copied += piece.size();
    return OkStatus();
  }));
  return copied;
}

Status EnvelopeReader::ReadRange(uint64_t offset, uint64_t length, const EnvelopeSink& sink) {
  if (offset >= plaintext_size_) return OkStatus();
  uint64_t end = offset + std::min(length, plaintext_size_ - offset);
  while (offset < end) {
    uint64_t index = offset / segment_size_;
    uint64_t within = offset % segment_size_;
    ASSIGN_OR_RETURN(ByteView segment, Segment(index));
    uint64_t n = std::min<uint64_t>(segment.size() - within, end - offset);
    RETURN_IF_ERROR(sink(segment.subspan(within, n)));
    offset += n;
  }
  return OkStatus();
}

}  // namespace keyfoundry::encryption
