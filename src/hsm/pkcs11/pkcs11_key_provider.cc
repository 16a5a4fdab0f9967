// Pkcs11KeyProvider: keyfoundry's keys in a PKCS#11 token.
//
// Opening. The module is loaded and initialised through Pkcs11Module (counted per process, so a
// provider can be opened, destroyed and opened again). The token is found by its label among
// the slots with a token present. If none has it and initialize_if_missing is set, the first
// token without CKF_TOKEN_INITIALIZED is initialised: C_InitToken with the SO PIN and the
// label; SoftHSM2 then moves the token to a new slot number, so the slots are listed again and
// the token found by label. A token without CKF_USER_PIN_INITIALIZED gets its user PIN from a
// session logged in as SO (C_InitPIN). Two tokens with the label are refused rather than
// guessed between. Then the user logs in, through the session pool (pkcs11_session_pool.h,
// which also says how lost sessions and logins are recovered).
//
// The root key is the token's one secret key labelled "keyfoundry-root": AES-256, CKA_TOKEN,
// CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE, usable only to encrypt and decrypt. Open
// generates it in the token (CKM_AES_KEY_GEN) when there is none, and refuses a token with two
// of them, or with one whose attributes are weaker than these (FailedPrecondition): a key that
// could leave the token is not the root of anything. Its object handle is cached, and looked
// up again (never created) after the pool had to log in afresh or when the token calls the
// handle invalid: SoftHSM2 renumbers private objects after a logout. Only Open ever creates
// it. SealWithRoot / OpenWithRoot run CKM_AES_GCM in the token with a 96-bit random nonce
// from our CSPRNG, the caller's AAD and a 128-bit tag; the sealed format is in key_provider.h.
// Hard limits: 1 MiB of plaintext, 64 KiB of AAD.
//
// Key pairs. Each pair is two token objects (CKO_PRIVATE_KEY, CKO_PUBLIC_KEY) sharing a CKA_ID
// of 16 random bytes, whose hex is the handle. Private keys: CKA_TOKEN, CKA_PRIVATE,
// CKA_SENSITIVE, not CKA_EXTRACTABLE, and only the usages of their type (RSA: decrypt, sign; EC:
// sign). Public keys: CKA_TOKEN, not CKA_PRIVATE (readable without the PIN), encrypt / verify.
// Generated pairs come from C_GenerateKeyPair (RSA e = 65537; EC named curves by their DER
// OIDs); imported ones from C_CreateObject after the key was validated in software (the crypto
// module checks primes, CRT values and pairwise consistency, or that the EC point is on the
// curve and matches d). Private components pass to the token straight from their SecretBytes;
// no copy is made.
//
// Signing takes a digest: PKCS#1 v1.5 prepends the DigestInfo (RFC 8017 section 9.2, note 1)
// and uses CKM_RSA_PKCS; PSS uses CKM_RSA_PKCS_PSS with MGF1 of the same hash and a salt as
// long as the hash; ECDSA (CKM_ECDSA) returns r || s already.
//
// Decryption failures (OpenWithRoot, RsaDecrypt) give one DataLoss error with one message
// whatever the token said, so nothing tells a caller which check failed; only an unreachable
// token (Unavailable) or exhausted memory stays distinct, as it says nothing of the
// ciphertext. RSA-OAEP with SHA-256 is asked for with CK_RSA_PKCS_OAEP_PARAMS (SHA-256,
// MGF1-SHA-256, empty label); a token that refuses those parameters at C_DecryptInit (SoftHSM2
// before 2.7 knows only SHA-1) gives Unimplemented, before any ciphertext is touched.
//
// Module quirks handled here:
//   - A null output buffer asks for the output size and leaves the operation active, so an
//     empty output still gets a non-null buffer: an empty GCM plaintext would otherwise be
//     "decrypted" without its tag being checked. Output is sized with a first call.
//   - CKA_EC_POINT comes DER OCTET STRING-wrapped (PKCS#11 2.x, SoftHSM2) or raw (some 3.0
//     modules); both are parsed with a bounds-checked reader. We store it wrapped.
//
// Crash story. Every token change is one PKCS#11 call, atomic in the token. A crash between
// C_InitToken and C_InitPIN leaves a token without user PIN, which the next Open (with the SO
// PIN) finishes. A crash after a pair is created but before its handle reaches the caller
// leaves objects nobody names: unusable, and found only by an operator listing the token.
// Import creates the private key first and destroys it again if the public one fails;
// Destroy removes the private key first, so a crash half-way leaves a public key only, which
// Describe treats as gone and a repeated Destroy removes.
#include "hsm/pkcs11/pkcs11_key_provider.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <vector>

#include "common/encoding.h"
#include "crypto/random.h"
#include "hsm/pkcs11/pkcs11_module.h"
#include "hsm/pkcs11/pkcs11_session_pool.h"

namespace keyfoundry::hsm {

static_assert(std::is_same_v<CK_OBJECT_HANDLE, unsigned long>,
              "root_key_ holds a CK_OBJECT_HANDLE");

namespace {

using Lease = Pkcs11Lease;

constexpr char kRootKeyLabel[] = "keyfoundry-root";
constexpr CK_ULONG kRootKeyBytes = 32;
constexpr uint8_t kSealVersion = 1;
constexpr size_t kGcmNonceSize = 12;
constexpr size_t kGcmTagSize = 16;
constexpr size_t kIdSize = 16;
constexpr size_t kTokenLabelSize = 32;  // CK_TOKEN_INFO.label
constexpr size_t kMaxSessions = 256;
constexpr int kMinImportRsaBits = 2048;
constexpr int kMaxImportRsaBits = 4096;
// Bounds on what we accept back from the token.
constexpr size_t kMaxAttributeSize = 1 << 16;
constexpr size_t kMaxFoundObjects = 1024;           // our searches expect one or two
constexpr size_t kMaxRsaOutput = 4096 / 8;          // a 4096-bit modulus
constexpr size_t kMaxEcSignature = size_t{2} * 66;  // P-521

constexpr char kDecryptFailed[] = "the ciphertext does not decrypt";
constexpr char kSealedFailed[] = "the sealed data does not open";

// PKCS#11 takes attribute values through non-const void pointers even when it only reads
// them; these are never written.
const CK_BBOOL kTrue = CK_TRUE;
const CK_BBOOL kFalse = CK_FALSE;
const CK_OBJECT_CLASS kSecretKeyClass = CKO_SECRET_KEY;
const CK_OBJECT_CLASS kPublicKeyClass = CKO_PUBLIC_KEY;
const CK_OBJECT_CLASS kPrivateKeyClass = CKO_PRIVATE_KEY;
const CK_KEY_TYPE kAesKeyType = CKK_AES;
const CK_KEY_TYPE kRsaKeyType = CKK_RSA;
const CK_KEY_TYPE kEcKeyType = CKK_EC;
const uint8_t kF4[] = {0x01, 0x00, 0x01};  // 65537

const crypto::EcCurve kCurves[] = {crypto::EcCurve::kP256, crypto::EcCurve::kP384,
                                   crypto::EcCurve::kP521};
// DER OBJECT IDENTIFIERs of the named curves, as CKA_EC_PARAMS wants them (RFC 5480).
const uint8_t kP256Oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
const uint8_t kP384Oid[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
const uint8_t kP521Oid[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};

// DER DigestInfo prefixes, each followed by the digest (RFC 8017 section 9.2, note 1).
const uint8_t kSha256DigestInfo[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                     0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
const uint8_t kSha384DigestInfo[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                     0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30};
const uint8_t kSha512DigestInfo[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                     0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40};

// --- attribute templates

CK_ATTRIBUTE Attr(CK_ATTRIBUTE_TYPE type, const void* value, size_t size) {
  return {type, const_cast<void*>(value), static_cast<CK_ULONG>(size)};
}
CK_ATTRIBUTE BoolAttr(CK_ATTRIBUTE_TYPE type, bool value) {
  return Attr(type, value ? &kTrue : &kFalse, sizeof(CK_BBOOL));
}
CK_ATTRIBUTE ULongAttr(CK_ATTRIBUTE_TYPE type, const CK_ULONG& value) {
  return Attr(type, &value, sizeof(CK_ULONG));
}
CK_ATTRIBUTE BytesAttr(CK_ATTRIBUTE_TYPE type, ByteView value) {
  return Attr(type, value.data(), value.size());
}
CK_ATTRIBUTE SecretAttr(CK_ATTRIBUTE_TYPE type, const SecretBytes& value) {
  return BytesAttr(type, value.Reveal(InsecureSecretAccess()));
}

// Never null: PKCS#11 functions refuse a null input (CKR_ARGUMENTS_BAD) even when it is empty.
CK_BYTE_PTR InputPointer(ByteView data) {
  static const uint8_t kEmpty = 0;
  return const_cast<CK_BYTE_PTR>(data.empty() ? &kEmpty : data.data());
}

// --- text fields and handles

// A blank-padded CK_TOKEN_INFO field as a string.
std::string TrimField(const unsigned char* field, size_t size) {
  std::string text(reinterpret_cast<const char*>(field), size);
  size_t end = text.find_last_not_of(std::string_view(" \0", 2));
  return end == std::string::npos ? std::string() : text.substr(0, end + 1);
}

std::array<CK_UTF8CHAR, kTokenLabelSize> PaddedLabel(std::string_view label) {
  std::array<CK_UTF8CHAR, kTokenLabelSize> padded;
  padded.fill(' ');
  std::memcpy(padded.data(), label.data(), std::min(label.size(), padded.size()));
  return padded;
}

// The CKA_ID named by a handle: exactly 32 lower-case hex characters.
StatusOr<Bytes> ParseHandle(std::string_view handle) {
  bool well_formed =
      handle.size() == 2 * kIdSize && std::all_of(handle.begin(), handle.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      });
  if (!well_formed) return InvalidArgumentError("an HSM key handle is 32 lower-case hex digits");
  return HexDecode(handle);
}

Bytes StripLeadingZeros(Bytes value) {
  auto first = std::find_if(value.begin(), value.end(), [](uint8_t b) { return b != 0; });
  value.erase(value.begin(), first);
  return value;
}

// --- curves and points

ByteView CurveOid(crypto::EcCurve curve) {
  switch (curve) {
    case crypto::EcCurve::kP256:
      return kP256Oid;
    case crypto::EcCurve::kP384:
      return kP384Oid;
    case crypto::EcCurve::kP521:
      return kP521Oid;
  }
  return {};
}

std::optional<crypto::EcCurve> CurveFromOid(ByteView oid) {
  for (crypto::EcCurve curve : kCurves) {
    ByteView known = CurveOid(curve);
    if (std::equal(oid.begin(), oid.end(), known.begin(), known.end())) return curve;
  }
  return std::nullopt;
}

// 0x04 || x || y inside a DER OCTET STRING, as CKA_EC_POINT is stored.
Bytes WrapEcPoint(const crypto::EcCoordinates& point) {
  size_t size = 1 + point.x.size() + point.y.size();  // at most 133 (P-521)
  ByteWriter out(size + 3);
  out.WriteU8(0x04);  // OCTET STRING
  if (size >= 0x80) out.WriteU8(0x81);
  out.WriteU8(static_cast<uint8_t>(size));
  out.WriteU8(0x04);  // uncompressed point
  out.WriteBytes(point.x);
  out.WriteBytes(point.y);
  return out.Take();
}

// Parses CKA_EC_POINT: the uncompressed point, raw or in a DER OCTET STRING.
StatusOr<crypto::EcCoordinates> ParseEcPoint(crypto::EcCurve curve, ByteView value) {
  const size_t field = crypto::EcFieldSize(curve);
  const size_t point_size = 1 + 2 * field;
  auto bad = [] { return InternalError("the token returned a malformed CKA_EC_POINT"); };
  ByteView point = value;
  if (value.size() != point_size) {
    ByteReader in(value);
    uint8_t tag = 0;
    uint8_t length = 0;
    if (!in.ReadU8(&tag) || tag != 0x04 || !in.ReadU8(&length)) return bad();
    if (length == 0x81) {  // long form, one length byte (>= 0x80 by DER's rule)
      if (!in.ReadU8(&length) || length < 0x80) return bad();
    } else if (length >= 0x80) {
      return bad();
    }
    if (length != point_size || !in.ReadBytes(length, &point) || !in.empty()) return bad();
  }
  if (point.size() != point_size || point[0] != 0x04) return bad();
  crypto::EcCoordinates coordinates;
  ByteView x = point.subspan(1, field);
  ByteView y = point.subspan(1 + field, field);
  coordinates.x.assign(x.begin(), x.end());
  coordinates.y.assign(y.begin(), y.end());
  return coordinates;
}

// --- hashes

CK_MECHANISM_TYPE HashMechanism(crypto::HashAlgorithm hash) {
  switch (hash) {
    case crypto::HashAlgorithm::kSha256:
      return CKM_SHA256;
    case crypto::HashAlgorithm::kSha384:
      return CKM_SHA384;
    case crypto::HashAlgorithm::kSha512:
      return CKM_SHA512;
  }
  return CK_UNAVAILABLE_INFORMATION;
}

CK_RSA_PKCS_MGF_TYPE Mgf1(crypto::HashAlgorithm hash) {
  switch (hash) {
    case crypto::HashAlgorithm::kSha256:
      return CKG_MGF1_SHA256;
    case crypto::HashAlgorithm::kSha384:
      return CKG_MGF1_SHA384;
    case crypto::HashAlgorithm::kSha512:
      return CKG_MGF1_SHA512;
  }
  return CK_UNAVAILABLE_INFORMATION;
}

ByteView DigestInfoPrefix(crypto::HashAlgorithm hash) {
  switch (hash) {
    case crypto::HashAlgorithm::kSha256:
      return kSha256DigestInfo;
    case crypto::HashAlgorithm::kSha384:
      return kSha384DigestInfo;
    case crypto::HashAlgorithm::kSha512:
      return kSha512DigestInfo;
  }
  return {};
}

// --- decryption failures

// One error for every way a decryption can fail, except that the token is unreachable or out
// of memory (which says nothing of the ciphertext).
Status DecryptionFailure(const Status& status, const char* message) {
  if (status.code() == StatusCode::kUnavailable ||
      status.code() == StatusCode::kResourceExhausted) {
    return status;
  }
  return DataLossError(message);
}

// --- calls on a session

// Output buffers for RunSized.
std::span<uint8_t> Allocate(Bytes* out, size_t size) {
  out->assign(size, 0);
  return *out;
}
std::span<uint8_t> Allocate(SecretBytes* out, size_t size) {
  *out = SecretBytes(size);
  return out->Mutable(InsecureSecretAccess());
}
void Shrink(Bytes* out, size_t size) { out->resize(size); }
void Shrink(SecretBytes* out, size_t size) {
  if (size < out->size()) {
    *out = SecretBytes(out->Reveal(InsecureSecretAccess()).first(size), InsecureSecretAccess());
  }
}

// Finishes a single-part operation initialised on the lease's session (C_Encrypt, C_Decrypt,
// C_Sign; `call(out, &size)` makes the call) the PKCS#11 way: a first call with a null buffer
// for the size, then the real one. The output is at most `max_size` bytes.
template <typename Buffer, typename Call>
Status RunSized(Lease& lease, const char* function, size_t max_size, Buffer* out, Call call) {
  CK_ULONG size = 0;
  RETURN_IF_ERROR(lease.Check(function, call(nullptr, &size)));  // ends the operation if not OK
  if (size > max_size) {
    lease.Discard();  // the operation is still active
    return InternalError(std::string(function) + " announced an output larger than expected");
  }
  std::span<uint8_t> buffer = Allocate(out, size);
  uint8_t placeholder = 0;  // a null buffer would only ask for the size again
  CK_RV rv = call(buffer.empty() ? &placeholder : buffer.data(), &size);
  if (rv == CKR_BUFFER_TOO_SMALL) lease.Discard();  // the operation is still active
  RETURN_IF_ERROR(lease.Check(function, rv));
  if (size > buffer.size()) return InternalError(std::string(function) + " overran its buffer");
  Shrink(out, size);
  return OkStatus();
}

StatusOr<std::vector<CK_OBJECT_HANDLE>> FindObjects(Lease& lease,
                                                    std::span<CK_ATTRIBUTE> attributes) {
  CK_FUNCTION_LIST* f = lease.functions();
  RETURN_IF_ERROR(
      lease.Check("C_FindObjectsInit",
                  f->C_FindObjectsInit(lease.session(), attributes.data(), attributes.size())));
  std::vector<CK_OBJECT_HANDLE> found;
  Status status;
  for (;;) {
    std::array<CK_OBJECT_HANDLE, 16> batch;
    CK_ULONG count = 0;
    status = lease.Check("C_FindObjects",
                         f->C_FindObjects(lease.session(), batch.data(), batch.size(), &count));
    if (!status.ok() || count == 0) break;
    if (found.size() + count > kMaxFoundObjects) {
      status = InternalError("C_FindObjects found more objects than keyfoundry ever makes");
      break;
    }
    found.insert(found.end(), batch.begin(), batch.begin() + std::min<size_t>(count, batch.size()));
  }
  Status final = lease.Check("C_FindObjectsFinal", f->C_FindObjectsFinal(lease.session()));
  if (!final.ok()) lease.Discard();  // the search may still be active
  RETURN_IF_ERROR(status);
  RETURN_IF_ERROR(final);
  return found;
}

StatusOr<Bytes> GetAttribute(Lease& lease, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
  CK_FUNCTION_LIST* f = lease.functions();
  CK_ATTRIBUTE attribute = Attr(type, nullptr, 0);
  RETURN_IF_ERROR(lease.Check("C_GetAttributeValue",
                              f->C_GetAttributeValue(lease.session(), object, &attribute, 1)));
  if (attribute.ulValueLen == CK_UNAVAILABLE_INFORMATION ||
      attribute.ulValueLen > kMaxAttributeSize) {
    return InternalError("C_GetAttributeValue returned an impossible size");
  }
  Bytes value(attribute.ulValueLen);
  if (value.empty()) return value;
  attribute.pValue = value.data();
  RETURN_IF_ERROR(lease.Check("C_GetAttributeValue",
                              f->C_GetAttributeValue(lease.session(), object, &attribute, 1)));
  if (attribute.ulValueLen > value.size()) {
    return InternalError("C_GetAttributeValue overran its buffer");
  }
  value.resize(attribute.ulValueLen);
  return value;
}

StatusOr<CK_ULONG> GetULong(Lease& lease, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
  CK_ULONG value = 0;
  CK_ATTRIBUTE attribute = Attr(type, &value, sizeof(value));
  RETURN_IF_ERROR(lease.Check("C_GetAttributeValue", lease.functions()->C_GetAttributeValue(
                                                         lease.session(), object, &attribute, 1)));
  if (attribute.ulValueLen != sizeof(value)) {
    return InternalError("C_GetAttributeValue returned an integer of the wrong size");
  }
  return value;
}

StatusOr<bool> GetBool(Lease& lease, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
  CK_BBOOL value = CK_FALSE;
  CK_ATTRIBUTE attribute = Attr(type, &value, sizeof(value));
  RETURN_IF_ERROR(lease.Check("C_GetAttributeValue", lease.functions()->C_GetAttributeValue(
                                                         lease.session(), object, &attribute, 1)));
  if (attribute.ulValueLen != sizeof(value)) {
    return InternalError("C_GetAttributeValue returned a boolean of the wrong size");
  }
  return value == CK_TRUE;
}

// The one object of `object_class` with CKA_ID `id`: NotFound when there is none.
StatusOr<CK_OBJECT_HANDLE> FindKey(Lease& lease, CK_OBJECT_CLASS object_class, ByteView id) {
  CK_ATTRIBUTE attributes[] = {ULongAttr(CKA_CLASS, object_class), BytesAttr(CKA_ID, id)};
  ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> found, FindObjects(lease, attributes));
  if (found.empty()) return NotFoundError("no HSM key has this handle");
  if (found.size() > 1) return FailedPreconditionError("several HSM keys have this handle");
  return found.front();
}

// The private key of the pair `id`, which must be of `key_type` (CKK_RSA or CKK_EC): some
// tokens (SoftHSM2) accept a mechanism for the wrong key type and fail only in the operation.
StatusOr<CK_OBJECT_HANDLE> FindPrivateKey(Lease& lease, ByteView id, CK_KEY_TYPE key_type) {
  ASSIGN_OR_RETURN(CK_OBJECT_HANDLE key, FindKey(lease, CKO_PRIVATE_KEY, id));
  ASSIGN_OR_RETURN(CK_ULONG actual, GetULong(lease, key, CKA_KEY_TYPE));
  if (actual != key_type) {
    return InvalidArgumentError(key_type == CKK_RSA ? "the HSM key is not an RSA key"
                                                    : "the HSM key is not an EC key");
  }
  return key;
}

// Best effort, after a failure: the objects of a pair that will not be handed out.
void DestroyQuietly(Lease& lease, std::initializer_list<CK_OBJECT_HANDLE> objects) {
  for (CK_OBJECT_HANDLE object : objects) {
    lease.Note(lease.functions()->C_DestroyObject(lease.session(), object));
  }
}

// The public half of a pair, read from its public key object.
StatusOr<HsmKeyInfo> ReadPublicKey(Lease& lease, CK_OBJECT_HANDLE public_key, ByteView id) {
  HsmKeyInfo info;
  info.handle = HexEncode(id);
  ASSIGN_OR_RETURN(CK_ULONG key_type, GetULong(lease, public_key, CKA_KEY_TYPE));
  if (key_type == CKK_RSA) {
    ASSIGN_OR_RETURN(Bytes n, GetAttribute(lease, public_key, CKA_MODULUS));
    ASSIGN_OR_RETURN(Bytes e, GetAttribute(lease, public_key, CKA_PUBLIC_EXPONENT));
    info.rsa = crypto::RsaPublicComponents{StripLeadingZeros(std::move(n)),
                                           StripLeadingZeros(std::move(e))};
    return info;
  }
  if (key_type == CKK_EC) {
    ASSIGN_OR_RETURN(Bytes params, GetAttribute(lease, public_key, CKA_EC_PARAMS));
    std::optional<crypto::EcCurve> curve = CurveFromOid(params);
    if (!curve) return FailedPreconditionError("the HSM key is on a curve keyfoundry does not use");
    ASSIGN_OR_RETURN(Bytes point, GetAttribute(lease, public_key, CKA_EC_POINT));
    ASSIGN_OR_RETURN(crypto::EcCoordinates coordinates, ParseEcPoint(*curve, point));
    info.ec_curve = *curve;
    info.ec_point = std::move(coordinates);
    return info;
  }
  return FailedPreconditionError("the HSM key is of a type keyfoundry does not use");
}

// Signs `input` with `mechanism` and the private key of the pair `id`, of `key_type`.
StatusOr<Bytes> SignWith(Lease& lease, ByteView id, CK_KEY_TYPE key_type, CK_MECHANISM* mechanism,
                         ByteView input, size_t max_size) {
  CK_FUNCTION_LIST* f = lease.functions();
  ASSIGN_OR_RETURN(CK_OBJECT_HANDLE key, FindPrivateKey(lease, id, key_type));
  RETURN_IF_ERROR(lease.Check("C_SignInit", f->C_SignInit(lease.session(), mechanism, key)));
  Bytes signature;
  RETURN_IF_ERROR(
      RunSized(lease, "C_Sign", max_size, &signature, [&](CK_BYTE_PTR out, CK_ULONG* size) {
        return f->C_Sign(lease.session(), InputPointer(input), input.size(), out, size);
      }));
  return signature;
}

// --- opening

Status ValidateOptions(const Pkcs11Options& options) {
  if (options.module_path.empty() || options.module_path.front() != '/') {
    return InvalidArgumentError("the PKCS#11 module path must be absolute");
  }
  const std::string& label = options.token_label;
  if (label.empty() || label.size() > kTokenLabelSize || label.back() == ' ' ||
      label.find('\0') != std::string::npos) {
    return InvalidArgumentError(
        "the token label must be 1 to 32 bytes, without NUL or trailing space");
  }
  if (options.user_pin.empty()) return InvalidArgumentError("the user PIN is required");
  if (options.max_sessions < 1 || options.max_sessions > kMaxSessions) {
    return InvalidArgumentError("max_sessions must be 1 to 256");
  }
  return OkStatus();
}

struct Token {
  CK_SLOT_ID slot;
  CK_TOKEN_INFO info;
};

StatusOr<std::vector<CK_SLOT_ID>> ListSlots(CK_FUNCTION_LIST* f) {
  std::vector<CK_SLOT_ID> slots;
  for (int attempt = 0; attempt < 3; ++attempt) {  // slots may appear between the two calls
    CK_ULONG count = 0;
    CK_RV rv = f->C_GetSlotList(CK_TRUE, nullptr, &count);
    if (rv != CKR_OK) return Pkcs11Error("C_GetSlotList", rv);
    slots.resize(count);
    if (count == 0) return slots;
    rv = f->C_GetSlotList(CK_TRUE, slots.data(), &count);
    if (rv == CKR_BUFFER_TOO_SMALL) continue;
    if (rv != CKR_OK) return Pkcs11Error("C_GetSlotList", rv);
    slots.resize(std::min<size_t>(count, slots.size()));
    return slots;
  }
  return UnavailableError("C_GetSlotList: the slot list keeps changing");
}

StatusOr<std::vector<Token>> ListTokens(CK_FUNCTION_LIST* f) {
  ASSIGN_OR_RETURN(std::vector<CK_SLOT_ID> slots, ListSlots(f));
  std::vector<Token> tokens;
  for (CK_SLOT_ID slot : slots) {
    Token token{slot, {}};
    CK_RV rv = f->C_GetTokenInfo(slot, &token.info);
    if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_SLOT_ID_INVALID) continue;  // just removed
    if (rv != CKR_OK) return Pkcs11Error("C_GetTokenInfo", rv);
    tokens.push_back(token);
  }
  return tokens;
}

StatusOr<std::optional<Token>> FindToken(CK_FUNCTION_LIST* f, std::string_view label) {
  ASSIGN_OR_RETURN(std::vector<Token> tokens, ListTokens(f));
  std::optional<Token> match;
  for (const Token& token : tokens) {
    if ((token.info.flags & CKF_TOKEN_INITIALIZED) == 0) continue;
    if (TrimField(token.info.label, sizeof(token.info.label)) != label) continue;
    if (match) return FailedPreconditionError("several PKCS#11 tokens have the label");
    match = token;
  }
  return match;
}

// A session opened for token set-up, closed (and so logged out) at scope exit.
class SetupSession {
 public:
  explicit SetupSession(CK_FUNCTION_LIST* f) : f_(f) {}
  ~SetupSession() {
    if (session_ != CK_INVALID_HANDLE) (void)f_->C_CloseSession(session_);
  }
  SetupSession(const SetupSession&) = delete;
  SetupSession& operator=(const SetupSession&) = delete;

  Status Open(CK_SLOT_ID slot) {
    return Pkcs11Error("C_OpenSession", f_->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                                          nullptr, nullptr, &session_));
  }
  CK_SESSION_HANDLE get() const { return session_; }

 private:
  CK_FUNCTION_LIST* const f_;
  CK_SESSION_HANDLE session_ = CK_INVALID_HANDLE;
};

CK_UTF8CHAR_PTR PinPointer(const SecretBytes& pin) {
  return const_cast<CK_UTF8CHAR_PTR>(pin.Reveal(InsecureSecretAccess()).data());
}

// Sets the user PIN of a token that has none, as its SO.
Status InitUserPin(CK_FUNCTION_LIST* f, CK_SLOT_ID slot, const Pkcs11Options& options) {
  if (options.so_pin.empty()) {
    return FailedPreconditionError(
        "the token has no user PIN yet; initialising it needs the SO PIN");
  }
  SetupSession session(f);
  RETURN_IF_ERROR(session.Open(slot));
  RETURN_IF_ERROR(Pkcs11Error(
      "C_Login",
      f->C_Login(session.get(), CKU_SO, PinPointer(options.so_pin), options.so_pin.size())));
  Status status = Pkcs11Error("C_InitPIN", f->C_InitPIN(session.get(), PinPointer(options.user_pin),
                                                        options.user_pin.size()));
  (void)f->C_Logout(session.get());
  return status;
}

// Initialises a free token with the label and returns it, in its (new) slot.
StatusOr<Token> InitializeToken(CK_FUNCTION_LIST* f, const Pkcs11Options& options) {
  if (options.so_pin.empty()) {
    return InvalidArgumentError("initialising the token needs the SO PIN");
  }
  ASSIGN_OR_RETURN(std::vector<Token> tokens, ListTokens(f));
  auto free_token = std::find_if(tokens.begin(), tokens.end(), [](const Token& token) {
    return (token.info.flags & CKF_TOKEN_INITIALIZED) == 0;
  });
  if (free_token == tokens.end()) {
    return FailedPreconditionError("no PKCS#11 slot has an uninitialised token");
  }
  std::array<CK_UTF8CHAR, kTokenLabelSize> label = PaddedLabel(options.token_label);
  RETURN_IF_ERROR(
      Pkcs11Error("C_InitToken", f->C_InitToken(free_token->slot, PinPointer(options.so_pin),
                                                options.so_pin.size(), label.data())));
  // SoftHSM2 gives the initialised token a new slot number: look it up again.
  ASSIGN_OR_RETURN(std::optional<Token> token, FindToken(f, options.token_label));
  if (!token) return InternalError("the token initialised does not show its label");
  return *token;
}

std::string PlatformName(const CK_TOKEN_INFO& info) {
  std::string manufacturer = TrimField(info.manufacturerID, sizeof(info.manufacturerID));
  std::string model = TrimField(info.model, sizeof(info.model));
  if (manufacturer.find("SoftHSM") != std::string::npos) return "softhsm2";
  if (model.empty()) return manufacturer;
  return manufacturer.empty() ? model : manufacturer + " " + model;
}

// Refuses a root key this code would not have created.
Status CheckRootKey(Lease& lease, CK_OBJECT_HANDLE key) {
  auto weak = [](const char* what) {
    return FailedPreconditionError(
        std::string("the token's root key is not as keyfoundry makes it: ") + what);
  };
  ASSIGN_OR_RETURN(CK_ULONG key_type, GetULong(lease, key, CKA_KEY_TYPE));
  if (key_type != CKK_AES) return weak("not AES");
  ASSIGN_OR_RETURN(CK_ULONG size, GetULong(lease, key, CKA_VALUE_LEN));
  if (size != kRootKeyBytes) return weak("not 256 bits");
  ASSIGN_OR_RETURN(bool sensitive, GetBool(lease, key, CKA_SENSITIVE));
  if (!sensitive) return weak("not sensitive");
  ASSIGN_OR_RETURN(bool extractable, GetBool(lease, key, CKA_EXTRACTABLE));
  if (extractable) return weak("extractable");
  ASSIGN_OR_RETURN(bool is_private, GetBool(lease, key, CKA_PRIVATE));
  if (!is_private) return weak("readable without login");
  return OkStatus();
}

// The root key, checked; NotFound when the token has none.
StatusOr<CK_OBJECT_HANDLE> FindRootKey(Lease& lease) {
  CK_ATTRIBUTE search[] = {ULongAttr(CKA_CLASS, kSecretKeyClass),
                           BytesAttr(CKA_LABEL, AsBytes(kRootKeyLabel))};
  ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> found, FindObjects(lease, search));
  if (found.empty()) return NotFoundError("the token has no keyfoundry-root key");
  if (found.size() > 1) {
    return FailedPreconditionError("the token holds several keys labelled keyfoundry-root");
  }
  RETURN_IF_ERROR(CheckRootKey(lease, found.front()));
  return found.front();
}

// Only Open creates the root key: a later lookup that finds nothing (after a lost login, say)
// must never make a second one.
StatusOr<CK_OBJECT_HANDLE> FindOrCreateRootKey(Lease& lease) {
  StatusOr<CK_OBJECT_HANDLE> found = FindRootKey(lease);
  if (found.ok() || found.status().code() != StatusCode::kNotFound) return found;
  const ByteView label = AsBytes(kRootKeyLabel);
  CK_ATTRIBUTE attributes[] = {
      ULongAttr(CKA_CLASS, kSecretKeyClass),
      ULongAttr(CKA_KEY_TYPE, kAesKeyType),
      ULongAttr(CKA_VALUE_LEN, kRootKeyBytes),
      BytesAttr(CKA_LABEL, label),
      BoolAttr(CKA_TOKEN, true),
      BoolAttr(CKA_PRIVATE, true),
      BoolAttr(CKA_SENSITIVE, true),
      BoolAttr(CKA_EXTRACTABLE, false),
      BoolAttr(CKA_ENCRYPT, true),
      BoolAttr(CKA_DECRYPT, true),
      BoolAttr(CKA_WRAP, false),
      BoolAttr(CKA_UNWRAP, false),
      BoolAttr(CKA_SIGN, false),
      BoolAttr(CKA_VERIFY, false),
      BoolAttr(CKA_DERIVE, false),
  };
  CK_MECHANISM mechanism{CKM_AES_KEY_GEN, nullptr, 0};
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  RETURN_IF_ERROR(lease.Check(
      "C_GenerateKey", lease.functions()->C_GenerateKey(lease.session(), &mechanism, attributes,
                                                        std::size(attributes), &key)));
  return key;
}

}  // namespace

// --- Pkcs11KeyProvider

struct Pkcs11KeyProvider::Internal {
  // The root key's handle: the cached one unless `stale` or the pool has logged in afresh
  // since it was found.
  static StatusOr<CK_OBJECT_HANDLE> RootKey(Pkcs11KeyProvider& provider, Lease& lease, bool stale) {
    const uint64_t logins = provider.pool_->logins();
    if (!stale) {
      MutexLock lock(&provider.root_key_mu_);
      if (provider.root_key_login_ == logins) return provider.root_key_;
    }
    ASSIGN_OR_RETURN(CK_OBJECT_HANDLE key, FindRootKey(lease));
    MutexLock lock(&provider.root_key_mu_);
    provider.root_key_ = key;
    provider.root_key_login_ = logins;
    return key;
  }

  // `init` (C_EncryptInit or C_DecryptInit, named `function`) with the root key, looked up
  // again if the token no longer knows the cached handle.
  template <typename Init>
  static Status InitWithRootKey(Pkcs11KeyProvider& provider, Lease& lease, const char* function,
                                Init init, CK_MECHANISM* mechanism) {
    ASSIGN_OR_RETURN(CK_OBJECT_HANDLE key, RootKey(provider, lease, /*stale=*/false));
    CK_RV rv = init(lease.session(), mechanism, key);
    if (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID) {
      ASSIGN_OR_RETURN(key, RootKey(provider, lease, /*stale=*/true));
      rv = init(lease.session(), mechanism, key);
    }
    return lease.Check(function, rv);
  }
};

StatusOr<std::unique_ptr<Pkcs11KeyProvider>> Pkcs11KeyProvider::Open(const Pkcs11Options& options) {
  RETURN_IF_ERROR(ValidateOptions(options));
  ASSIGN_OR_RETURN(Pkcs11Module loaded, Pkcs11Module::Acquire(options.module_path));
  auto module = std::make_unique<Pkcs11Module>(std::move(loaded));
  CK_FUNCTION_LIST* f = module->functions();

  ASSIGN_OR_RETURN(std::optional<Token> token, FindToken(f, options.token_label));
  if (!token) {
    if (!options.initialize_if_missing) {
      return NotFoundError("no PKCS#11 token is labelled \"" + options.token_label + "\"");
    }
    ASSIGN_OR_RETURN(token, InitializeToken(f, options));
  }
  if ((token->info.flags & CKF_USER_PIN_INITIALIZED) == 0) {
    if (!options.initialize_if_missing) {
      return FailedPreconditionError("the token's user PIN is not initialised");
    }
    RETURN_IF_ERROR(InitUserPin(f, token->slot, options));
  }

  CK_INFO info{};
  RETURN_IF_ERROR(Pkcs11Error("C_GetInfo", f->C_GetInfo(&info)));
  std::pair<int, int> library_version{info.libraryVersion.major, info.libraryVersion.minor};

  auto pool = std::make_unique<Pkcs11SessionPool>(f, token->slot, options.user_pin.Clone(),
                                                  options.max_sessions);
  // The first lease opens a session and logs in: a wrong PIN fails here.
  ASSIGN_OR_RETURN(CK_OBJECT_HANDLE root_key, pool->Run(FindOrCreateRootKey));
  const uint64_t logins = pool->logins();
  return std::unique_ptr<Pkcs11KeyProvider>(
      new Pkcs11KeyProvider(std::move(module), std::move(pool), PlatformName(token->info),
                            library_version, root_key, logins));
}

Pkcs11KeyProvider::Pkcs11KeyProvider(std::unique_ptr<Pkcs11Module> module,
                                     std::unique_ptr<Pkcs11SessionPool> pool, std::string platform,
                                     std::pair<int, int> library_version, unsigned long root_key,
                                     uint64_t root_key_login)
    : module_(std::move(module)),
      pool_(std::move(pool)),
      platform_(std::move(platform)),
      library_version_(library_version),
      root_key_(root_key),
      root_key_login_(root_key_login) {}

Pkcs11KeyProvider::~Pkcs11KeyProvider() = default;

Status Pkcs11KeyProvider::Check() const {
  return pool_->Run([](Lease& lease) -> Status {
    CK_SESSION_INFO info{};
    RETURN_IF_ERROR(lease.Check("C_GetSessionInfo",
                                lease.functions()->C_GetSessionInfo(lease.session(), &info)));
    if (info.state != CKS_RW_USER_FUNCTIONS && info.state != CKS_RO_USER_FUNCTIONS) {
      // Logged out under us: the pool logs in again, and Run tries once more.
      return lease.Check("C_GetSessionInfo", CKR_USER_NOT_LOGGED_IN);
    }
    return OkStatus();
  });
}

StatusOr<Bytes> Pkcs11KeyProvider::SealWithRoot(const SecretBytes& plaintext, ByteView aad) {
  if (plaintext.size() > kMaxSealPlaintext) {
    return InvalidArgumentError("the plaintext to seal is larger than 1 MiB");
  }
  if (aad.size() > kMaxSealAad) return InvalidArgumentError("the associated data is too large");
  ASSIGN_OR_RETURN(Bytes nonce, crypto::RandomBytes(kGcmNonceSize));
  CK_GCM_PARAMS gcm{nonce.data(),      nonce.size(), 8 * kGcmNonceSize,
                    InputPointer(aad), aad.size(),   8 * kGcmTagSize};
  CK_MECHANISM mechanism{CKM_AES_GCM, &gcm, sizeof(gcm)};
  const ByteView input = plaintext.Reveal(InsecureSecretAccess());
  return pool_->Run([&](Lease& lease) -> StatusOr<Bytes> {
    CK_FUNCTION_LIST* f = lease.functions();
    RETURN_IF_ERROR(
        Internal::InitWithRootKey(*this, lease, "C_EncryptInit", f->C_EncryptInit, &mechanism));
    Bytes sealed;
    RETURN_IF_ERROR(RunSized(lease, "C_Encrypt", input.size() + kGcmTagSize, &sealed,
                             [&](CK_BYTE_PTR out, CK_ULONG* size) {
                               return f->C_Encrypt(lease.session(), InputPointer(input),
                                                   input.size(), out, size);
                             }));
    if (sealed.size() != input.size() + kGcmTagSize) {
      return InternalError("C_Encrypt returned an AES-GCM output of the wrong size");
    }
    sealed.insert(sealed.begin(), nonce.begin(), nonce.end());
    sealed.insert(sealed.begin(), kSealVersion);
    return sealed;
  });
}

StatusOr<SecretBytes> Pkcs11KeyProvider::OpenWithRoot(ByteView sealed, ByteView aad) {
  if (aad.size() > kMaxSealAad) return InvalidArgumentError("the associated data is too large");
  ByteReader in(sealed);
  uint8_t version = 0;
  ByteView nonce;
  ByteView body;  // ciphertext || tag
  if (!in.ReadU8(&version) || version != kSealVersion || !in.ReadBytes(kGcmNonceSize, &nonce) ||
      in.remaining() < kGcmTagSize || in.remaining() > kMaxSealPlaintext + kGcmTagSize ||
      !in.ReadBytes(in.remaining(), &body)) {
    return DataLossError(kSealedFailed);
  }
  CK_GCM_PARAMS gcm{InputPointer(nonce), nonce.size(), 8 * kGcmNonceSize,
                    InputPointer(aad),   aad.size(),   8 * kGcmTagSize};
  CK_MECHANISM mechanism{CKM_AES_GCM, &gcm, sizeof(gcm)};
  return pool_->Run([&](Lease& lease) -> StatusOr<SecretBytes> {
    CK_FUNCTION_LIST* f = lease.functions();
    Status status =
        Internal::InitWithRootKey(*this, lease, "C_DecryptInit", f->C_DecryptInit, &mechanism);
    if (!status.ok()) return DecryptionFailure(status, kSealedFailed);
    SecretBytes plaintext;
    status =
        RunSized(lease, "C_Decrypt", body.size(), &plaintext, [&](CK_BYTE_PTR out, CK_ULONG* size) {
          return f->C_Decrypt(lease.session(), InputPointer(body), body.size(), out, size);
        });
    if (!status.ok()) return DecryptionFailure(status, kSealedFailed);
    if (plaintext.size() != body.size() - kGcmTagSize) return DataLossError(kSealedFailed);
    return plaintext;
  });
}

StatusOr<HsmKeyInfo> Pkcs11KeyProvider::GenerateRsa(int modulus_bits) {
  if (modulus_bits != 2048 && modulus_bits != 3072 && modulus_bits != 4096) {
    return InvalidArgumentError("RSA keys are 2048, 3072 or 4096 bits");
  }
  ASSIGN_OR_RETURN(Bytes id, crypto::RandomBytes(kIdSize));
  const CK_ULONG bits = static_cast<CK_ULONG>(modulus_bits);
  CK_ATTRIBUTE public_key[] = {
      ULongAttr(CKA_CLASS, kPublicKeyClass),
      ULongAttr(CKA_KEY_TYPE, kRsaKeyType),
      BoolAttr(CKA_TOKEN, true),
      BoolAttr(CKA_PRIVATE, false),
      BytesAttr(CKA_ID, id),
      ULongAttr(CKA_MODULUS_BITS, bits),
      BytesAttr(CKA_PUBLIC_EXPONENT, kF4),
      BoolAttr(CKA_ENCRYPT, true),
      BoolAttr(CKA_VERIFY, true),
      BoolAttr(CKA_WRAP, false),
  };
  CK_ATTRIBUTE private_key[] = {
      ULongAttr(CKA_CLASS, kPrivateKeyClass),
      ULongAttr(CKA_KEY_TYPE, kRsaKeyType),
      BoolAttr(CKA_TOKEN, true),
      BoolAttr(CKA_PRIVATE, true),
      BytesAttr(CKA_ID, id),
      BoolAttr(CKA_SENSITIVE, true),
      BoolAttr(CKA_EXTRACTABLE, false),
      BoolAttr(CKA_DECRYPT, true),
      BoolAttr(CKA_SIGN, true),
      BoolAttr(CKA_UNWRAP, false),
      BoolAttr(CKA_DERIVE, false),
  };
  CK_MECHANISM mechanism{CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
  return pool_->Run([&](Lease& lease) -> StatusOr<HsmKeyInfo> {
    CK_OBJECT_HANDLE public_handle = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE private_handle = CK_INVALID_HANDLE;
    RETURN_IF_ERROR(
        lease.Check("C_GenerateKeyPair",
                    lease.functions()->C_GenerateKeyPair(
                        lease.session(), &mechanism, public_key, std::size(public_key), private_key,
                        std::size(private_key), &public_handle, &private_handle)));
    StatusOr<HsmKeyInfo> info = ReadPublicKey(lease, public_handle, id);
    if (!info.ok()) DestroyQuietly(lease, {private_handle, public_handle});
    return info;
  });
}

StatusOr<HsmKeyInfo> Pkcs11KeyProvider::GenerateEc(crypto::EcCurve curve) {
  const ByteView oid = CurveOid(curve);
  if (oid.empty()) return InvalidArgumentError("unknown EC curve");
  ASSIGN_OR_RETURN(Bytes id, crypto::RandomBytes(kIdSize));
  CK_ATTRIBUTE public_key[] = {
      ULongAttr(CKA_CLASS, kPublicKeyClass),
      ULongAttr(CKA_KEY_TYPE, kEcKeyType),
      BoolAttr(CKA_TOKEN, true),
      BoolAttr(CKA_PRIVATE, false),
      BytesAttr(CKA_ID, id),
      BytesAttr(CKA_EC_PARAMS, oid),
      BoolAttr(CKA_VERIFY, true),
  };
  CK_ATTRIBUTE private_key[] = {
      ULongAttr(CKA_CLASS, kPrivateKeyClass),
      ULongAttr(CKA_KEY_TYPE, kEcKeyType),
      BoolAttr(CKA_TOKEN, true),
      BoolAttr(CKA_PRIVATE, true),
      BytesAttr(CKA_ID, id),
      BoolAttr(CKA_SENSITIVE, true),
      BoolAttr(CKA_EXTRACTABLE, false),
      BoolAttr(CKA_SIGN, true),
      BoolAttr(CKA_DERIVE, false),
  };
  CK_MECHANISM mechanism{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
  return pool_->Run([&](Lease& lease) -> StatusOr<HsmKeyInfo> {
    CK_OBJECT_HANDLE public_handle = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE private_handle = CK_INVALID_HANDLE;
    RETURN_IF_ERROR(
        lease.Check("C_GenerateKeyPair",
                    lease.functions()->C_GenerateKeyPair(
                        lease.session(), &mechanism, public_key, std::size(public_key), private_key,
                        std::size(private_key), &public_handle, &private_handle)));
    StatusOr<HsmKeyInfo> info = ReadPublicKey(lease, public_handle, id);
    if (!info.ok()) DestroyQuietly(lease, {private_handle, public_handle});
    return info;
  });
}

StatusOr<HsmKeyInfo> Pkcs11KeyProvider::ImportRsa(const crypto::RsaPrivateComponents& key) {
  {
    // Full validation in software before anything reaches the token.
    ASSIGN_OR_RETURN(crypto::RsaPrivateKey parsed, crypto::RsaPrivateKey::FromComponents(key));
    if (parsed.ModulusBits() < kMinImportRsaBits || parsed.ModulusBits() > kMaxImportRsaBits) {
      return InvalidArgumentError("imported RSA keys are 2048 to 4096 bits");
    }
  }
  ASSIGN_OR_RETURN(Bytes id, crypto::RandomBytes(kIdSize));
  const Bytes n = StripLeadingZeros(key.n);
  const Bytes e = StripLeadingZeros(key.e);
  CK_ATTRIBUTE private_key[] = {
      ULongAttr(CKA_CLASS, kPrivateKeyClass),
      ULongAttr(CKA_KEY_TYPE, kRsaKeyType),
      BoolAttr(CKA_TOKEN, true),
      BoolAttr(CKA_PRIVATE, true),
      BytesAttr(CKA_ID, id),
      BoolAttr(CKA_SENSITIVE, true),
      BoolAttr(CKA_EXTRACTABLE, false),
      BoolAttr(CKA_DECRYPT, true),
      BoolAttr(CKA_SIGN, true),
      BoolAttr(CKA_UNWRAP, false),
      BoolAttr(CKA_DERIVE, false),
      BytesAttr(CKA_MODULUS, n),
      BytesAttr(CKA_PUBLIC_EXPONENT, e),
      SecretAttr(CKA_PRIVATE_EXPONENT, key.d),
      SecretAttr(CKA_PRIME_1, key.p),
      SecretAttr(CKA_PRIME_2, key.q),
      SecretAttr(CKA_EXPONENT_1, key.dp),
      SecretAttr(CKA_EXPONENT_2, key.dq),
      SecretAttr(CKA_COEFFICIENT, key.qi),
  };
  CK_ATTRIBUTE public_key[] = {
      ULongAttr(CKA_CLASS, kPublicKeyClass),
      ULongAttr(CKA_KEY_TYPE, kRsaKeyType),
      BoolAttr(CKA_TOKEN, true),
      BoolAttr(CKA_PRIVATE, false),
      BytesAttr(CKA_ID, id),
      BytesAttr(CKA_MODULUS, n),
      BytesAttr(CKA_PUBLIC_EXPONENT, e),
      BoolAttr(CKA_ENCRYPT, true),
      BoolAttr(CKA_VERIFY, true),
      BoolAttr(CKA_WRAP, false),
  };
  return pool_->Run([&](Lease& lease) -> StatusOr<HsmKeyInfo> {
    CK_FUNCTION_LIST* f = lease.functions();
    CK_OBJECT_HANDLE private_handle = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE public_handle = CK_INVALID_HANDLE;
    RETURN_IF_ERROR(lease.Check(
        "C_CreateObject",
        f->C_CreateObject(lease.session(), private_key, std::size(private_key), &private_handle)));
    Status status = lease.Check(
        "C_CreateObject",
        f->C_CreateObject(lease.session(), public_key, std::size(public_key), &public_handle));
    if (!status.ok()) {
      DestroyQuietly(lease, {private_handle});
      return status;
    }
    HsmKeyInfo info;
    info.handle = HexEncode(id);
    info.rsa = crypto::RsaPublicComponents{n, e};
    return info;
  });
}

StatusOr<HsmKeyInfo> Pkcs11KeyProvider::ImportEc(crypto::EcCurve curve,
                                                 const crypto::EcCoordinates& point,
                                                 const SecretBytes& d) {
  const ByteView oid = CurveOid(curve);
  if (oid.empty()) return InvalidArgumentError("unknown EC curve");
  const size_t field = crypto::EcFieldSize(curve);
  if (point.x.size() != field || point.y.size() != field || d.size() != field) {
    return InvalidArgumentError("EC coordinates and d must be the curve's field size");
  }
  // Checks the point is on the curve and is d's.
  RETURN_IF_ERROR(crypto::EcPrivateKey::FromComponents(curve, point.x, point.y, d).status());
  ASSIGN_OR_RETURN(Bytes id, crypto::RandomBytes(kIdSize));
  const Bytes wrapped_point = WrapEcPoint(point);
  CK_ATTRIBUTE private_key[] = {
      ULongAttr(CKA_CLASS, kPrivateKeyClass),
      ULongAttr(CKA_KEY_TYPE, kEcKeyType),
      BoolAttr(CKA_TOKEN, true),
      BoolAttr(CKA_PRIVATE, true),
      BytesAttr(CKA_ID, id),
      BoolAttr(CKA_SENSITIVE, true),
      BoolAttr(CKA_EXTRACTABLE, false),
      BoolAttr(CKA_SIGN, true),
      BoolAttr(CKA_DERIVE, false),
      BytesAttr(CKA_EC_PARAMS, oid),
      SecretAttr(CKA_VALUE, d),
  };
  CK_ATTRIBUTE public_key[] = {
      ULongAttr(CKA_CLASS, kPublicKeyClass),
      ULongAttr(CKA_KEY_TYPE, kEcKeyType),
      BoolAttr(CKA_TOKEN, true),
      BoolAttr(CKA_PRIVATE, false),
      BytesAttr(CKA_ID, id),
      BytesAttr(CKA_EC_PARAMS, oid),
      BytesAttr(CKA_EC_POINT, wrapped_point),
      BoolAttr(CKA_VERIFY, true),
  };
  return pool_->Run([&](Lease& lease) -> StatusOr<HsmKeyInfo> {
    CK_FUNCTION_LIST* f = lease.functions();
    CK_OBJECT_HANDLE private_handle = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE public_handle = CK_INVALID_HANDLE;
    RETURN_IF_ERROR(lease.Check(
        "C_CreateObject",
        f->C_CreateObject(lease.session(), private_key, std::size(private_key), &private_handle)));
    Status status = lease.Check(
        "C_CreateObject",
        f->C_CreateObject(lease.session(), public_key, std::size(public_key), &public_handle));
    if (!status.ok()) {
      DestroyQuietly(lease, {private_handle});
      return status;
    }
    HsmKeyInfo info;
    info.handle = HexEncode(id);
    info.ec_curve = curve;
    info.ec_point = point;
    return info;
  });
}

StatusOr<HsmKeyInfo> Pkcs11KeyProvider::Describe(std::string_view handle) {
  ASSIGN_OR_RETURN(Bytes id, ParseHandle(handle));
  return pool_->Run([&](Lease& lease) -> StatusOr<HsmKeyInfo> {
    // A public key without its private key is what a Destroy cut short leaves: gone.
    RETURN_IF_ERROR(FindKey(lease, CKO_PRIVATE_KEY, id).status());
    ASSIGN_OR_RETURN(CK_OBJECT_HANDLE public_key, FindKey(lease, CKO_PUBLIC_KEY, id));
    return ReadPublicKey(lease, public_key, id);
  });
}

StatusOr<SecretBytes> Pkcs11KeyProvider::RsaDecrypt(std::string_view handle,
                                                    crypto::RsaPadding padding,
                                                    ByteView ciphertext) {
  ASSIGN_OR_RETURN(Bytes id, ParseHandle(handle));
  CK_RSA_PKCS_OAEP_PARAMS oaep{};
  CK_MECHANISM mechanism{CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep)};
  bool known = false;
  switch (padding) {
    case crypto::RsaPadding::kOaepSha1:
      oaep = {CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, nullptr, 0};
      known = true;
      break;
    case crypto::RsaPadding::kOaepSha256:
      oaep = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, nullptr, 0};
      known = true;
      break;
    case crypto::RsaPadding::kPkcs1v15:
      mechanism = {CKM_RSA_PKCS, nullptr, 0};
      known = true;
      break;
  }
  if (!known) return InvalidArgumentError("unknown RSA padding");
  return pool_->Run([&](Lease& lease) -> StatusOr<SecretBytes> {
    CK_FUNCTION_LIST* f = lease.functions();
    ASSIGN_OR_RETURN(CK_OBJECT_HANDLE key, FindPrivateKey(lease, id, CKK_RSA));
    CK_RV rv = f->C_DecryptInit(lease.session(), &mechanism, key);
    if (rv != CKR_OK) {
      Status status = lease.Check("C_DecryptInit", rv);
      if (padding == crypto::RsaPadding::kOaepSha256 &&
          (rv == CKR_ARGUMENTS_BAD || rv == CKR_MECHANISM_PARAM_INVALID ||
           rv == CKR_MECHANISM_INVALID)) {
        return UnimplementedError("the token does not offer RSA-OAEP with SHA-256 (" +
                                  status.message() + ")");
      }
      return status;  // the key or the mechanism, not the ciphertext
    }
    SecretBytes plaintext;
    Status status = RunSized(lease, "C_Decrypt", kMaxRsaOutput, &plaintext,
                             [&](CK_BYTE_PTR out, CK_ULONG* size) {
                               return f->C_Decrypt(lease.session(), InputPointer(ciphertext),
                                                   ciphertext.size(), out, size);
                             });
    if (!status.ok()) return DecryptionFailure(status, kDecryptFailed);
    return plaintext;
  });
}

StatusOr<Bytes> Pkcs11KeyProvider::RsaSignDigest(std::string_view handle,
                                                 crypto::RsaSignatureScheme scheme,
                                                 crypto::HashAlgorithm hash, ByteView digest) {
  ASSIGN_OR_RETURN(Bytes id, ParseHandle(handle));
  const size_t hash_size = crypto::HashSize(hash);
  if (hash_size == 0) return InvalidArgumentError("unknown hash algorithm");
  if (digest.size() != hash_size) {
    return InvalidArgumentError("the digest's size does not match its hash algorithm");
  }
  CK_RSA_PKCS_PSS_PARAMS pss{HashMechanism(hash), Mgf1(hash), hash_size};
  CK_MECHANISM mechanism{};
  Bytes input;
  bool known = false;
  switch (scheme) {
    case crypto::RsaSignatureScheme::kPkcs1v15: {
      ByteView prefix = DigestInfoPrefix(hash);
      input.assign(prefix.begin(), prefix.end());
      input.insert(input.end(), digest.begin(), digest.end());
      mechanism = {CKM_RSA_PKCS, nullptr, 0};
      known = true;
      break;
    }
    case crypto::RsaSignatureScheme::kPss:
      input.assign(digest.begin(), digest.end());
      mechanism = {CKM_RSA_PKCS_PSS, &pss, sizeof(pss)};
      known = true;
      break;
  }
  if (!known) return InvalidArgumentError("unknown RSA signature scheme");
  return pool_->Run([&](Lease& lease) -> StatusOr<Bytes> {
    return SignWith(lease, id, CKK_RSA, &mechanism, input, kMaxRsaOutput);
  });
}

StatusOr<Bytes> Pkcs11KeyProvider::EcSignDigest(std::string_view handle, ByteView digest) {
  ASSIGN_OR_RETURN(Bytes id, ParseHandle(handle));
  if (digest.size() != 32 && digest.size() != 48 && digest.size() != 64) {
    return InvalidArgumentError("an ECDSA digest is 32, 48 or 64 bytes (SHA-256, -384, -512)");
  }
  CK_MECHANISM mechanism{CKM_ECDSA, nullptr, 0};
  ASSIGN_OR_RETURN(Bytes signature, pool_->Run([&](Lease& lease) -> StatusOr<Bytes> {
    return SignWith(lease, id, CKK_EC, &mechanism, digest, kMaxEcSignature);
  }));
  const bool curve_sized = std::any_of(
      std::begin(kCurves), std::end(kCurves),
      [&](crypto::EcCurve curve) { return signature.size() == 2 * crypto::EcFieldSize(curve); });
  if (!curve_sized) return InternalError("C_Sign returned an ECDSA signature of an odd size");
  return signature;
}

Status Pkcs11KeyProvider::Destroy(std::string_view handle) {
  ASSIGN_OR_RETURN(Bytes id, ParseHandle(handle));
  return pool_->Run([&](Lease& lease) -> Status {
    CK_FUNCTION_LIST* f = lease.functions();
    size_t destroyed = 0;
    // The private key first: once it is gone, the key is shredded whatever happens next.
    CK_ATTRIBUTE private_keys[] = {ULongAttr(CKA_CLASS, kPrivateKeyClass), BytesAttr(CKA_ID, id)};
    CK_ATTRIBUTE everything[] = {BytesAttr(CKA_ID, id)};
    for (std::span<CK_ATTRIBUTE> search :
         {std::span<CK_ATTRIBUTE>(private_keys), std::span<CK_ATTRIBUTE>(everything)}) {
      ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> found, FindObjects(lease, search));
      for (CK_OBJECT_HANDLE object : found) {
        RETURN_IF_ERROR(
            lease.Check("C_DestroyObject", f->C_DestroyObject(lease.session(), object)));
        ++destroyed;
      }
    }
    if (destroyed == 0) return NotFoundError("no HSM key has this handle");
    return OkStatus();
  });
}

StatusOr<Bytes> Pkcs11KeyProvider::GetAttributeForTest(ObjectForTest object,
                                                       std::string_view handle,
                                                       unsigned long attribute) {
  Bytes id;
  if (object != ObjectForTest::kRootKey) {
    ASSIGN_OR_RETURN(id, ParseHandle(handle));
  }
  return pool_->Run([&](Lease& lease) -> StatusOr<Bytes> {
    CK_OBJECT_HANDLE target = CK_INVALID_HANDLE;
    if (object == ObjectForTest::kRootKey) {
      ASSIGN_OR_RETURN(target, Internal::RootKey(*this, lease, /*stale=*/false));
    } else if (object == ObjectForTest::kPrivateKey) {
      ASSIGN_OR_RETURN(target, FindKey(lease, CKO_PRIVATE_KEY, id));
    } else if (object == ObjectForTest::kPublicKey) {
      ASSIGN_OR_RETURN(target, FindKey(lease, CKO_PUBLIC_KEY, id));
    }
    return GetAttribute(lease, target, attribute);
  });
}

Status Pkcs11KeyProvider::CloseAllSessionsForTest() {
  return Pkcs11Error("C_CloseAllSessions", pool_->functions()->C_CloseAllSessions(pool_->slot()));
}

}  // namespace keyfoundry::hsm
