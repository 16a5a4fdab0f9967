// The n-gram language model with retrieval; the design and the byte format are in
// language_model.h. Notes on the implementation:
//
// Counting. ModelBuilder keeps the n-gram trie as one open-addressing table from (parent node,
// word) to child node, and per node its weighted count, its Kneser-Ney continuation count and,
// as a context, the sum and the discounted mass of its children's counts. Walking a reply, the
// nodes of the last 0..order tokens at position i are the children, by the token at i, of the
// nodes of the last 0..order-1 tokens at position i-1: order lookups per token. A count going
// from a to b adds min(b,1) - min(a,1) to the continuation count of the n-gram without its first
// word, and the contexts' sums follow; so probabilities (Loss) are available at any time.
//
// Probability, for a context h = (h_1 .. h_{k-1}) and word w, from the lowest order up:
//   P_0(w)     = 1 / max(V + 2, 65536)
//   P_k(w | h) = (c(h w) - d(c(h w))) / S(h) + M(h) / S(h) * P_{k-1}(w | h_2 ..)
// where c is the weighted count at the top order and the continuation count below it,
// d(c) = 0.75 min(c, 1), S(h) the sum of c(h .) and M(h) the sum of d(c(h .)). A context never
// seen (or with S = 0) passes P_{k-1} through.
//
// Sampling. LanguageModel expands the same sum per step, but only over each context's children
// (for a context with more than kTopChildren children, its kTopChildren likeliest), merges the
// candidates by word, damps n-grams already generated (so greedy decoding does not loop),
// mixes in the retrieval prior and applies the temperature. The uniform floor is left out.
#include "foundry/language_model.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <unordered_set>
#include <utility>

namespace keyfoundry::foundry {
namespace {

using Json = nlohmann::json;

// Token ids with a meaning of their own; words are numbered from kFirstWord.
constexpr uint32_t kStart = 0;
constexpr uint32_t kEnd = 1;
constexpr uint32_t kUnknown = 2;
constexpr uint32_t kFirstWord = 3;
constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();

constexpr std::string_view kMagic = "KFLM";
constexpr double kDiscount = 0.75;
constexpr double kMinUniformVocabulary = 65536;
constexpr float kMaxCount = 1e15f;
constexpr double kMaxWeight = 1000;

// Sampling and retrieval.
constexpr size_t kTopChildren = 48;
constexpr double kRepeatPenalty = 0.05;
// Candidates less likely than this fraction of the likeliest are dropped before sampling: with
// little data, the tail (mostly the lower orders' frequent words) reads as noise.
constexpr double kMinRelativeProbability = 0.1;
// The retrieval prior's strength: 0 below kWeakMatch (cosine similarity), rising to
// kStrongPrior at kStrongMatch and to kExactPrior at 1.
constexpr double kWeakMatch = 0.2;
constexpr double kStrongMatch = 0.5;
constexpr double kStrongPrior = 0.9;
constexpr double kExactPrior = 0.98;
constexpr size_t kRealignWindow = 8;   // how far ahead a skipped-to token may be
constexpr size_t kRecoverWindow = 64;  // how far ahead a lost alignment is looked for

double Discount(double count) { return kDiscount * std::min(count, 1.0); }

// --- Tokens ---------------------------------------------------------------------------------

bool IsWordByte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '\'' ||
         c >= 0x80;
}
bool IsConnector(unsigned char c) {
  return c == '-' || c == '_' || c == '.' || c == '/' || c == '@';
}
// Whitespace and control characters; '\n' is handled before this is asked.
bool IsSeparator(unsigned char c) { return c <= ' ' || c == 0x7f; }
bool IsUtf8Continuation(unsigned char c) { return (c & 0xC0) == 0x80; }
bool IsWordToken(std::string_view token) {
  return !token.empty() && IsWordByte(static_cast<unsigned char>(token[0]));
}

// Calls fn(token) for each token of `text`, in order (see the header for what a token is).
template <typename Fn>
void ForEachToken(std::string_view text, Fn&& fn) {
  const auto at = [text](size_t i) { return static_cast<unsigned char>(text[i]); };
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = at(i);
    if (c == '\n') {
      fn(text.substr(i++, 1));
      continue;
    }
    if (IsSeparator(c)) {
      ++i;
      continue;
    }
    if (!IsWordByte(c)) {
      fn(text.substr(i++, 1));
      continue;
    }
    // A word: word bytes, and connectors each followed by a word byte.
    size_t start = i;
    while (i < text.size() && (IsWordByte(at(i)) || (IsConnector(at(i)) && i + 1 < text.size() &&
                                                     IsWordByte(at(i + 1))))) {
      ++i;
    }
    // Cut a long word between two word bytes, at a character boundary, so that each piece is a
    // word that tokenizes to itself; failing that, at a connector (which becomes punctuation).
    while (i - start > kMaxTokenBytes) {
      size_t cut = start + kMaxTokenBytes;
      while (cut > start &&
             !(IsWordByte(at(cut - 1)) && IsWordByte(at(cut)) && !IsUtf8Continuation(at(cut)))) {
        --cut;
      }
      if (cut > start) {
        fn(text.substr(start, cut - start));
        start = cut;
        continue;
      }
      cut = start + kMaxTokenBytes;
      while (cut > start && !IsConnector(at(cut))) --cut;
      if (cut > start) {
        fn(text.substr(start, cut - start));
        fn(text.substr(cut, 1));
        start = cut + 1;
        continue;
      }
      fn(text.substr(start, kMaxTokenBytes));  // only for bytes that are not UTF-8
      start += kMaxTokenBytes;
    }
    fn(text.substr(start, i - start));
  }
}

// Whether `token` is what the tokenizer makes of it alone.
bool TokenizesToItself(std::string_view token) {
  size_t count = 0;
  bool same = false;
  ForEachToken(token, [&](std::string_view t) {
    ++count;
    same = t == token;
  });
  return count == 1 && same;
}

bool IsValidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t length = 0;
    uint32_t code = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      length = 2;
      code = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      length = 3;
      code = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      length = 4;
      code = c & 0x07;
    } else {
      return false;
    }
    if (text.size() - i < length) return false;
    for (size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if (!IsUtf8Continuation(next)) return false;
      code = (code << 6) | (next & 0x3F);
    }
    if ((length == 3 && (code < 0x800 || (code >= 0xD800 && code <= 0xDFFF))) ||
        (length == 4 && (code < 0x10000 || code > 0x10FFFF))) {
      return false;
    }
    i += length;
  }
  return true;
}

// The retrieval form of a word: ASCII letters lower-cased.
std::string Term(std::string_view word) {
  std::string term(word);
  for (char& c : term) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return term;
}

// Joins tokens into text, with the spacing rules of the header.
class Spacer {
 public:
  // Appends `token` (and the space before it, if any) to *out.
  void Append(std::string_view token, std::string* out) {
    bool space = !glued_;
    bool glue_next = false;
    if (token == "\"") {
      if (quote_open_) {
        space = false;
      } else {
        glue_next = true;
      }
      quote_open_ = !quote_open_;
    } else if (token.size() == 1) {
      const char c = token[0];
      if (std::strchr(".,!?;:)]}%\n", c) != nullptr) space = false;
      glue_next = std::strchr("([{$\n", c) != nullptr;
    }
    if (space) out->push_back(' ');
    out->append(token);
    glued_ = glue_next;
  }
  // Takes the state after `text`, which is not output again.
  void Follow(std::string_view text) {
    std::string ignored;
    ForEachToken(text, [&](std::string_view token) {
      ignored.clear();
      Append(token, &ignored);
    });
    if (text.empty() || IsSeparator(static_cast<unsigned char>(text.back()))) glued_ = true;
  }

 private:
  bool glued_ = true;  // no space before the next token
  bool quote_open_ = false;
};

// A hash for string keys that also finds std::string_view without a copy.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringIds = std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>>;

uint64_t Mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
  return h * 0xBF58476D1CE4E5B9ULL;
}

// --- Training lines ---------------------------------------------------------------------------

bool IsBlank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
  });
}

// Whether brackets nest deeper than kMaxJsonDepth (checked before parsing, so that the parser's
// depth and the document's size stay small).
bool NestedTooDeep(std::string_view text) {
  size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

// A role as it may appear in an error: quoted when it is a short identifier (roles are
// schema words, not customer text), else not at all.
std::string QuotedRole(const std::string& role) {
  const bool identifier =
      !role.empty() && role.size() <= 24 && std::all_of(role.begin(), role.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
      });
  return identifier ? " '" + role + "'" : "";
}

std::string JsonTypeName(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::object:
      return "an object";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float:
      return "a number";
    case Json::value_t::binary:
    case Json::value_t::discarded:
      return "not JSON";
  }
  return "not JSON";
}

// The text of message `m` (1-based)'s content, or a description of what is wrong with it.
StatusOr<std::string> ContentText(const Json& message, size_t m) {
  const std::string where = "message " + std::to_string(m);
  const auto found = message.find("content");
  if (found == message.end() || found->is_null()) {
    return InvalidArgumentError(where + " has no 'content'");
  }
  if (found->is_string()) return found->get<std::string>();
  if (!found->is_array()) {
    return InvalidArgumentError(where + " has 'content' that is " + JsonTypeName(*found) +
                                ", not a string or an array of text parts");
  }
  std::string text;
  size_t part_number = 0;
  for (const Json& part : *found) {
    const std::string part_where = where + ", content part " + std::to_string(++part_number);
    if (!part.is_object()) return InvalidArgumentError(part_where + " is not an object");
    const auto type = part.find("type");
    if (type == part.end() || !type->is_string() || *type != "text") {
      return InvalidArgumentError(part_where +
                                  " is not of type 'text' (only text parts can be trained on)");
    }
    const auto part_text = part.find("text");
    if (part_text == part.end() || !part_text->is_string()) {
      return InvalidArgumentError(part_where + " has no 'text' string");
    }
    if (!text.empty()) text += '\n';
    text += part_text->get<std::string>();
  }
  return text;
}

StatusOr<TrainingExample> ExampleFromJson(const Json& doc) {
  TrainingExample example;
  const auto messages = doc.find("messages");
  if (messages == doc.end()) {
    const auto prompt = doc.find("prompt");
    const auto completion = doc.find("completion");
    if (prompt == doc.end() && completion == doc.end()) {
      return InvalidArgumentError(
          "'messages' is missing (expected {\"messages\": [{\"role\": ..., \"content\": ...}, "
          "...]} or {\"prompt\": ..., \"completion\": ...})");
    }
    if (prompt == doc.end()) return InvalidArgumentError("'prompt' is missing");
    if (completion == doc.end()) return InvalidArgumentError("'completion' is missing");
    if (!prompt->is_string()) return InvalidArgumentError("'prompt' is not a string");
    if (!completion->is_string()) return InvalidArgumentError("'completion' is not a string");
    if (IsBlank(completion->get_ref<const std::string&>())) {
      return InvalidArgumentError("'completion' is empty");
    }
    example.messages.push_back({"user", prompt->get<std::string>()});
    example.messages.push_back({"assistant", completion->get<std::string>()});
    return example;
  }
  if (!messages->is_array()) {
    return InvalidArgumentError("'messages' is " + JsonTypeName(*messages) + ", not an array");
  }
  if (messages->empty()) return InvalidArgumentError("'messages' is empty");
  if (messages->size() > kMaxMessagesPerExample) {
    return InvalidArgumentError("'messages' has more than " +
                                std::to_string(kMaxMessagesPerExample) + " messages");
  }
  bool has_reply = false;
  size_t m = 0;
  for (const Json& message : *messages) {
    const std::string where = "message " + std::to_string(++m);
    if (!message.is_object()) return InvalidArgumentError(where + " is not an object");
    const auto role_field = message.find("role");
    if (role_field == message.end()) return InvalidArgumentError(where + " has no 'role'");
    if (!role_field->is_string()) {
      return InvalidArgumentError(where + " has a 'role' that is not a string");
    }
    std::string role = role_field->get<std::string>();
    if (role == "tool" || role == "function") {
      std::string error = where;
      error += " has role '";
      error += role;
      error += "': tool and function messages cannot be trained on; use system, user and ";
      error += "assistant messages";
      return InvalidArgumentError(std::move(error));
    }
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant") {
      return InvalidArgumentError(where + " has a role" + QuotedRole(role) +
                                  " that is not one of system, user, assistant");
    }
    ASSIGN_OR_RETURN(std::string content, ContentText(message, m));
    if (role == "assistant" && !IsBlank(content)) has_reply = true;
    example.messages.push_back({std::move(role), std::move(content)});
  }
  if (!has_reply) {
    return InvalidArgumentError(
        "no assistant message with content: each example needs a reply to learn from");
  }
  return example;
}

// --- Bytes ------------------------------------------------------------------------------------

void WriteVarint(ByteWriter& out, uint32_t v) {
  while (v >= 0x80) {
    out.WriteU8(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.WriteU8(static_cast<uint8_t>(v));
}

// Reads a canonical (shortest) varint of at most 32 bits.
[[nodiscard]] bool ReadVarint(ByteReader& in, uint32_t* out) {
  uint32_t v = 0;
  for (int shift = 0; shift < 35; shift += 7) {
    uint8_t b = 0;
    if (!in.ReadU8(&b)) return false;
    if (shift == 28 && b > 0x0F) return false;  // past 32 bits
    if (shift > 0 && b == 0) return false;      // not the shortest encoding
    v |= static_cast<uint32_t>(b & 0x7F) << shift;
    if ((b & 0x80) == 0) {
      *out = v;
      return true;
    }
  }
  return false;
}

void WriteF32(ByteWriter& out, float v) { out.WriteU32(std::bit_cast<uint32_t>(v)); }

[[nodiscard]] bool ReadF32(ByteReader& in, float* out) {
  uint32_t bits = 0;
  if (!in.ReadU32(&bits)) return false;
  *out = std::bit_cast<float>(bits);
  return true;
}

void WriteShortString(ByteWriter& out, std::string_view s) {
  out.WriteU8(static_cast<uint8_t>(s.size()));
  out.WriteBytes(AsBytes(s));
}

constexpr std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrcTable = MakeCrcTable();

// (parent node, word) -> child node: open addressing, linear probing, at most half full.
class ChildTable {
 public:
  ChildTable() : slots_(1024) {}

  uint32_t Find(uint32_t parent, uint32_t word) const {
    const uint64_t key = Key(parent, word);
    for (size_t i = Home(key);; i = (i + 1) & (slots_.size() - 1)) {
      const Slot& slot = slots_[i];
      if (slot.node == kNone) return kNone;
      if (slot.key == key) return slot.node;
    }
  }

  // The child; when there is none, records `next` as the child and returns it.
  uint32_t FindOrInsert(uint32_t parent, uint32_t word, uint32_t next) {
    if ((size_ + 1) * 2 > slots_.size()) Grow();
    const uint64_t key = Key(parent, word);
    for (size_t i = Home(key);; i = (i + 1) & (slots_.size() - 1)) {
      Slot& slot = slots_[i];
      if (slot.node == kNone) {
        slot = {key, next};
        ++size_;
        return next;
      }
      if (slot.key == key) return slot.node;
    }
  }

  // fn(parent, word, child) for every entry, in no particular order.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (const Slot& slot : slots_) {
      if (slot.node != kNone) {
        fn(static_cast<uint32_t>(slot.key >> 32), static_cast<uint32_t>(slot.key), slot.node);
      }
    }
  }

  size_t size() const { return size_; }

 private:
  struct Slot {
    uint64_t key = 0;
    uint32_t node = kNone;
  };
  static uint64_t Key(uint32_t parent, uint32_t word) {
    return (static_cast<uint64_t>(parent) << 32) | word;
  }
  size_t Home(uint64_t key) const {
    return static_cast<size_t>((key * 0x9E3779B97F4A7C15ULL) >> 20) & (slots_.size() - 1);
  }
  void Grow() {
    std::vector<Slot> old(slots_.size() * 2);
    old.swap(slots_);
    for (const Slot& slot : old) {
      if (slot.node == kNone) continue;
      size_t i = Home(slot.key);
      while (slots_[i].node != kNone) i = (i + 1) & (slots_.size() - 1);
      slots_[i] = slot;
    }
  }

  std::vector<Slot> slots_;  // a power of two
  size_t size_ = 0;
};

}  // namespace

// --- JsonlLineSplitter --------------------------------------------------------------------------

StatusOr<std::optional<TrainingExample>> ParseTrainingLine(std::string_view line,
                                                           size_t line_number) {
  const std::string where = "line " + std::to_string(line_number) + ": ";
  if (line.size() > kMaxTrainingLineBytes) {
    return InvalidArgumentError(where + "longer than " + std::to_string(kMaxTrainingLineBytes) +
                                " bytes, the limit for one training example");
  }
  if (IsBlank(line)) return std::optional<TrainingExample>();
  if (NestedTooDeep(line)) {
    return InvalidArgumentError(where + "nested deeper than " + std::to_string(kMaxJsonDepth) +
                                " levels");
  }
  Json doc;
  try {
    doc = Json::parse(line.begin(), line.end());
  } catch (const Json::parse_error& e) {
    // e.what() quotes the text near the error: only the position is given.
    return InvalidArgumentError(where + "not valid JSON (error at byte " + std::to_string(e.byte) +
                                ")");
  } catch (const Json::exception&) {
    return InvalidArgumentError(where + "not valid JSON");
  }
  if (!doc.is_object()) {
    return InvalidArgumentError(where + "expected a JSON object, found " + JsonTypeName(doc));
  }
  StatusOr<TrainingExample> example = ExampleFromJson(doc);
  if (!example.ok()) return InvalidArgumentError(where + example.status().message());
  return std::optional<TrainingExample>(std::move(example).value());
}

JsonlLineSplitter::JsonlLineSplitter(LineCallback on_line, size_t max_line_bytes)
    : on_line_(std::move(on_line)), max_line_bytes_(max_line_bytes) {}

Status JsonlLineSplitter::Deliver(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  ++line_number_;
  if (line.size() > max_line_bytes_) {
    failed_ = InvalidArgumentError("line " + std::to_string(line_number_) + ": longer than " +
                                   std::to_string(max_line_bytes_) +
                                   " bytes, the limit for one training example");
    return failed_;
  }
  failed_ = on_line_(line, line_number_);
  return failed_;
}

Status JsonlLineSplitter::Feed(std::string_view data) {
  if (!failed_.ok()) return failed_;
  if (finished_) return FailedPreconditionError("the JSONL stream has already ended");
  while (!data.empty()) {
    const size_t newline = data.find('\n');
    const std::string_view piece = data.substr(0, newline);
    // The +1 leaves room for the '\r' of a line of exactly max_line_bytes_.
    if (partial_.size() + piece.size() > max_line_bytes_ + 1) {
      failed_ = InvalidArgumentError("line " + std::to_string(line_number_ + 1) + ": longer than " +
                                     std::to_string(max_line_bytes_) +
                                     " bytes, the limit for one training example");
      return failed_;
    }
    if (newline == std::string_view::npos) {
      partial_.append(piece);
      return OkStatus();
    }
    if (partial_.empty()) {
      RETURN_IF_ERROR(Deliver(piece));
    } else {
      partial_.append(piece);
      RETURN_IF_ERROR(Deliver(partial_));
      partial_.clear();
    }
    data.remove_prefix(newline + 1);
  }
  return OkStatus();
}

Status JsonlLineSplitter::Finish() {
  if (!failed_.ok()) return failed_;
  if (finished_) return OkStatus();
  finished_ = true;
  if (partial_.empty()) return OkStatus();
  Status status = Deliver(partial_);
  partial_.clear();
  partial_.shrink_to_fit();
  return status;
}

// --- ModelBuilder -----------------------------------------------------------------------------

struct ModelBuilder::Counts {
  struct Node {
    float raw = 0;   // weighted count of this n-gram
    float kn = 0;    // continuation count: sum over the words v before it of min(raw(v n-gram), 1)
    double sum = 0;  // as a context: the sum of its children's counts (raw at the top order)
    double dmass = 0;  // as a context: the sum of their discounts
  };

  StringIds word_ids;
  std::vector<const std::string*> words;  // id - kFirstWord -> the key in word_ids
  ChildTable children;
  std::vector<Node> nodes;  // [0] is the root
  std::array<uint32_t, kMaxModelOrder> start_chain{};

  // Appends the ids of `text`'s tokens, numbering new words. ResourceExhausted past the limit.
  Status WordIds(std::string_view text, std::vector<uint32_t>* ids) {
    Status status;
    ForEachToken(text, [&](std::string_view token) {
      if (!status.ok()) return;
      const auto found = word_ids.find(token);
      if (found != word_ids.end()) {
        ids->push_back(found->second);
        return;
      }
      if (words.size() >= kMaxVocabulary) {
        status = ResourceExhaustedError("the training data has more than " +
                                        std::to_string(kMaxVocabulary) + " distinct words");
        return;
      }
      const uint32_t id = kFirstWord + static_cast<uint32_t>(words.size());
      words.push_back(&word_ids.emplace(std::string(token), id).first->first);
      ids->push_back(id);
    });
    return status;
  }

  // P(w | the context whose nodes, by length 0..order-1, are ctx): the formula at the top.
  double Probability(int order, const std::array<uint32_t, kMaxModelOrder>& ctx, uint32_t w) const {
    double p = 1.0 / std::max(static_cast<double>(words.size() + 2), kMinUniformVocabulary);
    for (int k = 1; k <= order; ++k) {
      const uint32_t context = ctx[k - 1];
      if (context == kNone) break;  // longer contexts are unseen too
      const Node& node = nodes[context];
      if (node.sum <= 0) continue;
      const uint32_t child = children.Find(context, w);
      double c = 0;
      if (child != kNone) c = k == order ? nodes[child].raw : nodes[child].kn;
      p = (c - Discount(c)) / node.sum + node.dmass / node.sum * p;
    }
    return p;
  }
};

struct ModelBuilder::Index {
  struct Pair {
    std::vector<uint32_t> key;    // term ids of the user message
    std::vector<uint32_t> reply;  // word ids of the reply
    double weight = 0;
  };
  StringIds term_ids;
  std::vector<const std::string*> terms;
  std::vector<Pair> pairs;
  std::unordered_multimap<uint64_t, uint32_t> by_hash;  // of key and reply -> pair
  uint64_t indexed_tokens = 0;

  Status Terms(std::string_view text, std::vector<uint32_t>* ids) {
    Status status;
    ForEachToken(text, [&](std::string_view token) {
      if (!status.ok() || !IsWordToken(token)) return;
      std::string term = Term(token);
      const auto found = term_ids.find(term);
      if (found != term_ids.end()) {
        ids->push_back(found->second);
        return;
      }
      if (terms.size() >= kMaxRetrievalTerms) {
        status = ResourceExhaustedError("the training data has more than " +
                                        std::to_string(kMaxRetrievalTerms) +
                                        " distinct words in user messages");
        return;
      }
      const auto id = static_cast<uint32_t>(terms.size());
      terms.push_back(&term_ids.emplace(std::move(term), id).first->first);
      ids->push_back(id);
    });
    return status;
  }

  Status Insert(const std::vector<uint32_t>& key, const std::vector<uint32_t>& reply,
                double weight) {
    uint64_t h = Mix(0, key.size());
    for (uint32_t t : key) h = Mix(h, t);
    for (uint32_t w : reply) h = Mix(h, w);
    const auto [first, last] = by_hash.equal_range(h);
    for (auto it = first; it != last; ++it) {
      Pair& pair = pairs[it->second];
      if (pair.key == key && pair.reply == reply) {
        pair.weight = std::min(pair.weight + weight, static_cast<double>(kMaxCount));
        return OkStatus();
      }
    }
    if (pairs.size() >= kMaxIndexedReplies ||
        indexed_tokens + key.size() + reply.size() > kMaxIndexedTokens) {
      return ResourceExhaustedError("the training data has more replies than a model can index");
    }
    indexed_tokens += key.size() + reply.size();
    by_hash.emplace(h, static_cast<uint32_t>(pairs.size()));
    pairs.push_back({key, reply, weight});
    return OkStatus();
  }
};

ModelBuilder::ModelBuilder(ModelOptions options)
    : order_(options.order),
      counts_(std::make_unique<Counts>()),
      index_(std::make_unique<Index>()) {
  if (order_ < kMinModelOrder || order_ > kMaxModelOrder) {
    failed_ = InvalidArgumentError("model order " + std::to_string(order_) + " is not between " +
                                   std::to_string(kMinModelOrder) + " and " +
                                   std::to_string(kMaxModelOrder));
    order_ = kMinModelOrder;
  }
  // The root, and the contexts of 1..order-1 start tokens that begin every reply.
  Counts& c = *counts_;
  c.nodes.emplace_back();
  c.start_chain[0] = 0;
  for (int k = 1; k < order_; ++k) {
    const auto next = static_cast<uint32_t>(c.nodes.size());
    c.start_chain[k] = c.children.FindOrInsert(c.start_chain[k - 1], kStart, next);
    c.nodes.emplace_back();
  }
}

ModelBuilder::~ModelBuilder() = default;

Status ModelBuilder::AddReply(const std::vector<uint32_t>& reply, double weight) {
  Counts& c = *counts_;
  const int n = order_;
  // prev[k]: the node of the last k tokens before the current one; cur[k]: with it.
  std::array<uint32_t, kMaxModelOrder + 1> prev{};
  std::array<uint32_t, kMaxModelOrder + 1> cur{};
  for (int k = 0; k < n; ++k) prev[k] = c.start_chain[k];
  for (size_t i = 0; i <= reply.size(); ++i) {
    const uint32_t w = i < reply.size() ? reply[i] : kEnd;
    if (c.nodes.size() + n > kMaxNgramEntries) {
      return ResourceExhaustedError("the training data has more than " +
                                    std::to_string(kMaxNgramEntries) + " distinct n-grams");
    }
    cur[0] = 0;
    for (int k = 1; k <= n; ++k) {
      const auto next = static_cast<uint32_t>(c.nodes.size());
      cur[k] = c.children.FindOrInsert(prev[k - 1], w, next);
      if (cur[k] == next) c.nodes.emplace_back();
    }
    for (int k = n; k >= 1; --k) {
      Counts::Node& node = c.nodes[cur[k]];
      const double a = node.raw;
      node.raw = static_cast<float>(std::min(a + weight, static_cast<double>(kMaxCount)));
      const double b = node.raw;
      if (k == n) {
        Counts::Node& context = c.nodes[prev[n - 1]];
        context.sum += b - a;
        context.dmass += Discount(b) - Discount(a);
      }
      // The n-gram without its first word gained a distinct predecessor (or part of one).
      const double delta = std::min(b, 1.0) - std::min(a, 1.0);
      if (k >= 2 && delta > 0) {
        Counts::Node& suffix = c.nodes[cur[k - 1]];
        const double kn_a = suffix.kn;
        suffix.kn = static_cast<float>(kn_a + delta);
        const double kn_b = suffix.kn;
        Counts::Node& context = c.nodes[prev[k - 2]];
        context.sum += kn_b - kn_a;
        context.dmass += Discount(kn_b) - Discount(kn_a);
      }
    }
    for (int k = 0; k < n; ++k) prev[k] = cur[k];
  }
  return OkStatus();
}

Status ModelBuilder::Add(const TrainingExample& example, double weight) {
  if (!failed_.ok()) return failed_;
  if (!(weight > 0 && weight <= kMaxWeight)) {
    return InvalidArgumentError("example weight must be in (0, 1000]");
  }
  for (size_t m = 0; m < example.messages.size(); ++m) {
    if (!IsValidUtf8(example.messages[m].content)) {
      return InvalidArgumentError("the content of message " + std::to_string(m + 1) +
                                  " is not valid UTF-8");
    }
  }
  uint64_t tokens = 0;
  std::vector<uint32_t> key;
  std::vector<uint32_t> reply;
  for (const ChatMessage& message : example.messages) {
    tokens += LanguageModel::CountTokens(message.content) + 1;
    Status status;
    if (message.role == "user") {
      key.clear();
      status = index_->Terms(message.content, &key);
    } else if (message.role == "assistant") {
      reply.clear();
      status = counts_->WordIds(message.content, &reply);
      if (status.ok() && !reply.empty()) status = AddReply(reply, weight);
      if (status.ok() && !reply.empty() && !key.empty()) {
        status = index_->Insert(key, reply, weight);
      }
    }
    if (!status.ok()) {
      failed_ = status;  // counts may be partly added: the builder is unusable
      return status;
    }
  }
  ++examples_;
  tokens_ += tokens;
  return OkStatus();
}

Status ModelBuilder::AddJsonl(std::string_view jsonl, double weight) {
  JsonlLineSplitter splitter([&](std::string_view line, size_t line_number) -> Status {
    ASSIGN_OR_RETURN(std::optional<TrainingExample> example, ParseTrainingLine(line, line_number));
    if (!example) return OkStatus();
    Status status = Add(*example, weight);
    return status.ok() ? status : status.WithContext("line " + std::to_string(line_number));
  });
  RETURN_IF_ERROR(splitter.Feed(jsonl));
  return splitter.Finish();
}

double ModelBuilder::Loss(const TrainingExample& example) const {
  const Counts& c = *counts_;
  double total = 0;
  size_t count = 0;
  std::array<uint32_t, kMaxModelOrder> ctx{};
  std::array<uint32_t, kMaxModelOrder> next{};
  std::vector<uint32_t> ids;
  for (const ChatMessage& message : example.messages) {
    if (message.role != "assistant") continue;
    ids.clear();
    ForEachToken(message.content, [&](std::string_view token) {
      const auto found = c.word_ids.find(token);
      ids.push_back(found == c.word_ids.end() ? kUnknown : found->second);
    });
    if (ids.empty()) continue;
    ids.push_back(kEnd);
    for (int k = 0; k < order_; ++k) ctx[k] = c.start_chain[k];
    for (uint32_t w : ids) {
      total -= std::log(c.Probability(order_, ctx, w));
      ++count;
      next[0] = 0;
      for (int k = 1; k < order_; ++k) {
        next[k] = ctx[k - 1] == kNone ? kNone : c.children.Find(ctx[k - 1], w);
      }
      ctx = next;
    }
  }
  return count == 0 ? 0 : total / static_cast<double>(count);
}

StatusOr<Bytes> ModelBuilder::Serialize() const {
  if (!failed_.ok()) return failed_;
  const Counts& c = *counts_;
  const Index& index = *index_;
  ByteWriter out(64 + c.nodes.size() * 7);
  out.WriteBytes(AsBytes(kMagic));
  out.WriteU8(kModelFormatVersion);
  out.WriteU8(static_cast<uint8_t>(order_));
  out.WriteU64(examples_);
  out.WriteU64(tokens_);

  WriteVarint(out, static_cast<uint32_t>(c.words.size()));
  for (const std::string* word : c.words) WriteShortString(out, *word);

  // The trie, breadth first, each node's children sorted by word.
  const size_t node_count = c.nodes.size();
  std::vector<uint32_t> child_begin(node_count + 1, 0);
  c.children.ForEach([&](uint32_t parent, uint32_t, uint32_t) { ++child_begin[parent + 1]; });
  for (size_t i = 0; i < node_count; ++i) child_begin[i + 1] += child_begin[i];
  std::vector<std::pair<uint32_t, uint32_t>> children(c.children.size());  // (word, node)
  {
    std::vector<uint32_t> fill(child_begin.begin(), child_begin.end() - 1);
    c.children.ForEach([&](uint32_t parent, uint32_t word, uint32_t child) {
      children[fill[parent]++] = {word, child};
    });
  }
  std::vector<uint32_t> order;
  order.reserve(node_count);
  order.push_back(0);
  WriteVarint(out, static_cast<uint32_t>(node_count));
  int depth = 0;
  size_t level_end = 1;
  for (size_t i = 0; i < order.size(); ++i) {
    if (i == level_end) {
      ++depth;
      level_end = order.size();
    }
    const uint32_t node = order[i];
    const auto first = children.begin() + child_begin[node];
    const auto last = children.begin() + child_begin[node + 1];
    std::sort(first, last);
    WriteVarint(out, static_cast<uint32_t>(last - first));
    uint32_t previous = 0;
    for (auto it = first; it != last; ++it) {
      WriteVarint(out, it->first - previous);
      previous = it->first;
      const Counts::Node& child = c.nodes[it->second];
      WriteF32(out, depth + 1 == order_ ? child.raw : child.kn);
      order.push_back(it->second);
    }
  }

  WriteVarint(out, static_cast<uint32_t>(index.terms.size()));
  for (const std::string* term : index.terms) WriteShortString(out, *term);
  WriteVarint(out, static_cast<uint32_t>(index.pairs.size()));
  for (const Index::Pair& pair : index.pairs) {
    WriteF32(out, static_cast<float>(pair.weight));
    WriteVarint(out, static_cast<uint32_t>(pair.key.size()));
    for (uint32_t t : pair.key) WriteVarint(out, t);
    WriteVarint(out, static_cast<uint32_t>(pair.reply.size()));
    for (uint32_t w : pair.reply) WriteVarint(out, w);
  }

  if (out.size() + 4 > kMaxModelBytes) {
    return ResourceExhaustedError("the model would be larger than " +
                                  std::to_string(kMaxModelBytes >> 20) + " MiB");
  }
  out.WriteU32(Crc32(out.bytes()));
  return out.Take();
}

// --- LanguageModel: loading ---------------------------------------------------------------------

struct LanguageModel::Node {
  uint32_t word = kStart;
  float count = 0;
  uint32_t first_child = 0;
  uint32_t child_count = 0;
  float sum = 0;         // of the children's counts
  float dmass = 0;       // of the children's discounts
  uint32_t top = kNone;  // when set, top_children_[top ..] holds the likeliest children
};

struct LanguageModel::Pair {
  uint32_t reply_begin = 0;  // into reply_tokens_
  uint32_t reply_length = 0;
  float weight = 0;
};

struct LanguageModel::Posting {
  uint32_t pair = 0;
  float weight = 0;  // the term's share of the pair's normalised TF-IDF vector
};

struct LanguageModel::Retrieved {
  uint32_t pair = 0;
  double score = 0;     // cosine similarity, 0..1
  double strength = 0;  // of the prior, 0..kExactPrior
};

// Reads the body of a serialized model into a LanguageModel, checking everything.
class LanguageModel::Parser {
 public:
  Parser(ByteView body, LanguageModel& model) : in_(body), m_(model) {}

  Status Parse() {
    RETURN_IF_ERROR(ParseVocabulary());
    RETURN_IF_ERROR(ParseTrie());
    RETURN_IF_ERROR(ParseIndex());
    if (!in_.empty()) return Corrupt("bytes after the index");
    return OkStatus();
  }

 private:
  static Status Corrupt(std::string_view what) {
    return DataLossError("the model is corrupt: " + std::string(what));
  }

  // A count of items each at least `min_bytes` long, at most `limit`.
  Status ReadCount(size_t min_bytes, size_t limit, std::string_view what, uint32_t* out) {
    if (!ReadVarint(in_, out)) return Corrupt(what);
    if (*out > limit) {
      return ResourceExhaustedError("the model has more " + std::string(what) +
                                    " than the limit of " + std::to_string(limit));
    }
    if (static_cast<uint64_t>(*out) * min_bytes > in_.remaining()) return Corrupt(what);
    return OkStatus();
  }

  Status ReadShortString(std::string_view what, std::string_view* out) {
    uint8_t length = 0;
    ByteView bytes;
    if (!in_.ReadU8(&length) || length == 0 || length > kMaxTokenBytes ||
        !in_.ReadBytes(length, &bytes)) {
      return Corrupt(what);
    }
    *out = AsStringView(bytes);
    if (!IsValidUtf8(*out) || !TokenizesToItself(*out)) return Corrupt(what);
    return OkStatus();
  }

  Status ParseVocabulary() {
    uint32_t count = 0;
    RETURN_IF_ERROR(ReadCount(2, kMaxVocabulary, "words", &count));
    m_.word_offsets_.reserve(count + 1);
    for (uint32_t i = 0; i < count; ++i) {
      std::string_view word;
      RETURN_IF_ERROR(ReadShortString("words", &word));
      m_.word_bytes_.append(word);
      m_.word_offsets_.push_back(static_cast<uint32_t>(m_.word_bytes_.size()));
    }
    // word_bytes_ is complete: the views below stay valid.
    m_.word_ids_.reserve(count);
    for (uint32_t i = 0; i < count; ++i) {
      if (!m_.word_ids_.emplace(m_.Word(kFirstWord + i), kFirstWord + i).second) {
        return Corrupt("a word is listed twice");
      }
    }
    return OkStatus();
  }

  Status ParseTrie() {
    const uint32_t word_limit = kFirstWord + static_cast<uint32_t>(m_.vocabulary_size());
    uint32_t node_count = 0;
    // Every node but the root is someone's child (>= 5 bytes) and lists its children (>= 1).
    if (!ReadVarint(in_, &node_count) || node_count == 0) return Corrupt("n-gram trie");
    if (node_count > kMaxNgramEntries) {
      return ResourceExhaustedError("the model has more n-grams than the limit of " +
                                    std::to_string(kMaxNgramEntries));
    }
    if (static_cast<uint64_t>(node_count - 1) * 6 + 1 > in_.remaining()) {
      return Corrupt("n-gram trie");
    }
    std::vector<Node>& nodes = m_.nodes_;
    nodes.resize(node_count);
    size_t next = 1;
    int depth = 0;
    size_t level_end = 1;
    for (size_t i = 0; i < node_count; ++i) {
      if (i == level_end) {
        ++depth;
        level_end = next;
      }
      if (i >= next) return Corrupt("an n-gram is not in the trie");
      uint32_t child_count = 0;
      if (!ReadVarint(in_, &child_count) || child_count > node_count - next ||
          (depth == m_.order_ && child_count > 0)) {
        return Corrupt("n-gram trie");
      }
      Node& node = nodes[i];
      node.first_child = static_cast<uint32_t>(next);
      node.child_count = child_count;
      double sum = 0;
      double dmass = 0;
      uint32_t word = 0;
      for (uint32_t j = 0; j < child_count; ++j) {
        uint32_t delta = 0;
        float count = 0;
        if (!ReadVarint(in_, &delta) || (j > 0 && delta == 0) || delta >= word_limit - word ||
            !ReadF32(in_, &count) || !std::isfinite(count) || count < 0 || count > kMaxCount) {
          return Corrupt("n-gram trie");
        }
        word += delta;
        if (word == kUnknown) return Corrupt("n-gram trie");
        nodes[next].word = word;
        nodes[next].count = count;
        ++next;
        sum += count;
        dmass += Discount(count);
      }
      node.sum = static_cast<float>(sum);
      node.dmass = static_cast<float>(dmass);
      if (child_count > kTopChildren) {
        node.top = static_cast<uint32_t>(m_.top_children_.size());
        std::vector<uint32_t> ids(child_count);
        for (uint32_t j = 0; j < child_count; ++j) ids[j] = node.first_child + j;
        std::partial_sort(
            ids.begin(), ids.begin() + kTopChildren, ids.end(), [&nodes](uint32_t a, uint32_t b) {
              return nodes[a].count > nodes[b].count || (nodes[a].count == nodes[b].count && a < b);
            });
        m_.top_children_.insert(m_.top_children_.end(), ids.begin(), ids.begin() + kTopChildren);
      }
    }
    if (next != node_count) return Corrupt("n-gram trie");
    // Every reply starts from the contexts of 1..order-1 start tokens.
    for (int k = 1; k < m_.order_; ++k) {
      m_.start_chain_[k] = m_.Child(m_.start_chain_[k - 1], kStart);
      if (m_.start_chain_[k] == kNone) return Corrupt("n-gram trie");
    }
    return OkStatus();
  }

  Status ParseIndex() {
    uint32_t term_count = 0;
    RETURN_IF_ERROR(ReadCount(2, kMaxRetrievalTerms, "retrieval terms", &term_count));
    m_.term_ids_.reserve(term_count);
    for (uint32_t i = 0; i < term_count; ++i) {
      std::string_view term;
      RETURN_IF_ERROR(ReadShortString("retrieval terms", &term));
      if (!IsWordToken(term) || Term(term) != term) return Corrupt("retrieval terms");
      if (!m_.term_ids_.emplace(std::string(term), i).second) {
        return Corrupt("a retrieval term is listed twice");
      }
    }
    uint32_t pair_count = 0;
    RETURN_IF_ERROR(ReadCount(8, kMaxIndexedReplies, "indexed replies", &pair_count));
    const uint32_t word_limit = kFirstWord + static_cast<uint32_t>(m_.vocabulary_size());
    std::vector<uint32_t> keys;  // every pair's terms
    std::vector<uint32_t> key_begin{0};
    key_begin.reserve(pair_count + 1);
    m_.pairs_.reserve(pair_count);
    uint64_t tokens = 0;
    for (uint32_t i = 0; i < pair_count; ++i) {
      Pair pair;
      uint32_t key_length = 0;
      if (!ReadF32(in_, &pair.weight) || !std::isfinite(pair.weight) || pair.weight <= 0 ||
          pair.weight > kMaxCount || !ReadVarint(in_, &key_length) || key_length == 0 ||
          key_length > in_.remaining()) {
        return Corrupt("indexed replies");
      }
      for (uint32_t j = 0; j < key_length; ++j) {
        uint32_t term = 0;
        if (!ReadVarint(in_, &term) || term >= term_count) return Corrupt("indexed replies");
        keys.push_back(term);
      }
      key_begin.push_back(static_cast<uint32_t>(keys.size()));
      if (!ReadVarint(in_, &pair.reply_length) || pair.reply_length == 0 ||
          pair.reply_length > in_.remaining()) {
        return Corrupt("indexed replies");
      }
      tokens += key_length + pair.reply_length;
      if (tokens > kMaxIndexedTokens) {
        return ResourceExhaustedError("the model indexes more tokens than the limit of " +
                                      std::to_string(kMaxIndexedTokens));
      }
      pair.reply_begin = static_cast<uint32_t>(m_.reply_tokens_.size());
      for (uint32_t j = 0; j < pair.reply_length; ++j) {
        uint32_t word = 0;
        if (!ReadVarint(in_, &word) || word < kFirstWord || word >= word_limit) {
          return Corrupt("indexed replies");
        }
        m_.reply_tokens_.push_back(word);
      }
      m_.pairs_.push_back(pair);
    }
    BuildPostings(term_count, keys, key_begin);
    return OkStatus();
  }

  // TF-IDF: idf(t) = ln((P + 1) / (df(t) + 1)) + 1; each pair's vector of tf * idf, normalised,
  // is stored by term, so that a query adds up only the pairs that share its terms.
  void BuildPostings(uint32_t term_count, std::vector<uint32_t>& keys,
                     const std::vector<uint32_t>& key_begin) {
    const size_t pair_count = m_.pairs_.size();
    std::vector<uint32_t> df(term_count, 0);
    for (size_t p = 0; p < pair_count; ++p) {
      const auto first = keys.begin() + key_begin[p];
      const auto last = keys.begin() + key_begin[p + 1];
      std::sort(first, last);
      for (auto it = first; it != last; ++it) {
        if (it == first || *it != *(it - 1)) ++df[*it];
      }
    }
    m_.term_idf_.resize(term_count);
    for (uint32_t t = 0; t < term_count; ++t) {
      m_.term_idf_[t] = static_cast<float>(
          std::log((static_cast<double>(pair_count) + 1) / (static_cast<double>(df[t]) + 1)) + 1);
    }
    m_.posting_offsets_.assign(term_count + 1, 0);
    for (uint32_t t = 0; t < term_count; ++t) m_.posting_offsets_[t + 1] = df[t];
    for (uint32_t t = 0; t < term_count; ++t) {
      m_.posting_offsets_[t + 1] += m_.posting_offsets_[t];
    }
    m_.postings_.resize(m_.posting_offsets_[term_count]);
    std::vector<uint32_t> fill(m_.posting_offsets_.begin(), m_.posting_offsets_.end() - 1);
    std::vector<std::pair<uint32_t, double>> vector;  // (term, tf * idf) of one pair
    for (size_t p = 0; p < pair_count; ++p) {
      vector.clear();
      for (uint32_t k = key_begin[p]; k < key_begin[p + 1]; ++k) {
        if (!vector.empty() && vector.back().first == keys[k]) {
          vector.back().second += m_.term_idf_[keys[k]];
        } else {
          vector.emplace_back(keys[k], m_.term_idf_[keys[k]]);
        }
      }
      double norm = 0;
      for (const auto& [term, weight] : vector) norm += weight * weight;
      norm = std::sqrt(norm);
      for (const auto& [term, weight] : vector) {
        m_.postings_[fill[term]++] = {static_cast<uint32_t>(p), static_cast<float>(weight / norm)};
      }
    }
  }

  ByteReader in_;
  LanguageModel& m_;
};

StatusOr<std::shared_ptr<const LanguageModel>> LanguageModel::Load(ByteView serialized) {
  if (serialized.size() > kMaxModelBytes) {
    return ResourceExhaustedError("the model is larger than the limit of " +
                                  std::to_string(kMaxModelBytes >> 20) + " MiB");
  }
  if (serialized.size() < kMagic.size() + 1 ||
      AsStringView(serialized.first(kMagic.size())) != kMagic) {
    return InvalidArgumentError("not a keyfoundry language model");
  }
  const uint8_t version = serialized[kMagic.size()];
  if (version != kModelFormatVersion) {
    return InvalidArgumentError("language model format version " + std::to_string(version) +
                                " is not supported (this build reads version " +
                                std::to_string(kModelFormatVersion) + ")");
  }
  ByteReader in(serialized);
  ByteView head;
  uint8_t order = 0;
  uint32_t crc = 0;
  constexpr size_t kHeadSize = 4 + 1 + 1 + 8 + 8;
  if (serialized.size() < kHeadSize + 4) return DataLossError("the model is truncated");
  const ByteView covered = serialized.first(serialized.size() - 4);
  ByteReader trailer(serialized.last(4));
  if (!trailer.ReadU32(&crc) || crc != Crc32(covered)) {
    return DataLossError("the model is corrupt (its checksum does not match)");
  }
  std::shared_ptr<LanguageModel> model(new LanguageModel());
  if (!in.ReadBytes(kMagic.size() + 1, &head) || !in.ReadU8(&order) ||
      !in.ReadU64(&model->examples_) || !in.ReadU64(&model->tokens_)) {
    return DataLossError("the model is truncated");
  }
  if (order < kMinModelOrder || order > kMaxModelOrder) {
    return DataLossError("the model is corrupt: order " + std::to_string(order));
  }
  model->order_ = order;
  Parser parser(covered.subspan(kHeadSize), *model);
  RETURN_IF_ERROR(parser.Parse());
  return std::shared_ptr<const LanguageModel>(std::move(model));
}

std::string_view LanguageModel::Word(uint32_t id) const {
  const uint32_t i = id - kFirstWord;
  return std::string_view(word_bytes_)
      .substr(word_offsets_[i], word_offsets_[i + 1] - word_offsets_[i]);
}

uint32_t LanguageModel::WordId(std::string_view word) const {
  const auto found = word_ids_.find(word);
  return found == word_ids_.end() ? kUnknown : found->second;
}

uint32_t LanguageModel::Child(uint32_t node, uint32_t word) const {
  if (node == kNone) return kNone;
  const Node& parent = nodes_[node];
  const auto first = nodes_.begin() + parent.first_child;
  const auto last = first + parent.child_count;
  const auto found =
      std::lower_bound(first, last, word, [](const Node& n, uint32_t w) { return n.word < w; });
  return found != last && found->word == word ? static_cast<uint32_t>(found - nodes_.begin())
                                              : kNone;
}

size_t LanguageModel::memory_bytes() const {
  // A hash map entry costs about its value, a node pointer and a bucket.
  constexpr size_t kMapOverhead = 3 * sizeof(void*);
  size_t bytes =
      sizeof(*this) + word_bytes_.capacity() + word_offsets_.capacity() * sizeof(uint32_t) +
      word_ids_.size() * (sizeof(std::string_view) + 4 + kMapOverhead) +
      nodes_.capacity() * sizeof(Node) + top_children_.capacity() * sizeof(uint32_t) +
      term_idf_.capacity() * sizeof(float) + posting_offsets_.capacity() * sizeof(uint32_t) +
      postings_.capacity() * sizeof(Posting) + pairs_.capacity() * sizeof(Pair) +
      reply_tokens_.capacity() * sizeof(uint32_t);
  for (const auto& [term, id] : term_ids_) {
    bytes += sizeof(std::string) + term.capacity() + 4 + kMapOverhead;
  }
  return bytes;
}

// --- LanguageModel: generation ------------------------------------------------------------------

size_t LanguageModel::CountTokens(std::string_view text) {
  size_t count = 0;
  ForEachToken(text, [&count](std::string_view) { ++count; });
  return count;
}

std::optional<LanguageModel::Retrieved> LanguageModel::Retrieve(std::string_view query) const {
  if (pairs_.empty()) return std::nullopt;
  // The query's terms with their counts; unknown terms weigh as the rarest known ones.
  std::vector<std::pair<uint32_t, uint32_t>> terms;  // (term id, count)
  size_t unknown = 0;
  ForEachToken(query, [&](std::string_view token) {
    if (!IsWordToken(token)) return;
    const auto found = term_ids_.find(Term(token));
    if (found == term_ids_.end()) {
      ++unknown;
      return;
    }
    terms.emplace_back(found->second, 1);
  });
  std::sort(terms.begin(), terms.end());
  size_t distinct = 0;
  for (size_t i = 0; i < terms.size(); ++i) {
    if (distinct > 0 && terms[distinct - 1].first == terms[i].first) {
      ++terms[distinct - 1].second;
    } else {
      terms[distinct++] = terms[i];
    }
  }
  terms.resize(distinct);
  const double max_idf = std::log(static_cast<double>(pairs_.size()) + 1) + 1;
  double norm = static_cast<double>(unknown) * max_idf * max_idf;
  for (const auto& [term, count] : terms) {
    const double weight = static_cast<double>(count) * term_idf_[term];
    norm += weight * weight;
  }
  if (terms.empty() || norm <= 0) return std::nullopt;
  norm = std::sqrt(norm);

  std::vector<float> scores(pairs_.size(), 0.0f);
  for (const auto& [term, count] : terms) {
    const auto query_weight =
        static_cast<float>(static_cast<double>(count) * term_idf_[term] / norm);
    for (uint32_t i = posting_offsets_[term]; i < posting_offsets_[term + 1]; ++i) {
      scores[postings_[i].pair] += query_weight * postings_[i].weight;
    }
  }
  // The best score; ties (within rounding) go to the heavier pair, then to the later one.
  uint32_t best = 0;
  for (uint32_t p = 1; p < scores.size(); ++p) {
    const float difference = scores[p] - scores[best];
    if (difference > 1e-5f || (difference > -1e-5f && pairs_[p].weight >= pairs_[best].weight)) {
      best = p;
    }
  }
  const double score = scores[best];
  if (score < kWeakMatch) return std::nullopt;
  Retrieved retrieved;
  retrieved.pair = best;
  retrieved.score = score;
  retrieved.strength =
      score >= kStrongMatch
          ? kStrongPrior + (kExactPrior - kStrongPrior) *
                               std::min(1.0, (score - kStrongMatch) / (1 - kStrongMatch))
          : kStrongPrior * (score - kWeakMatch) / (kStrongMatch - kWeakMatch);
  return retrieved;
}

Status ValidateGenerateOptions(const GenerateOptions& options) {
  if (options.max_tokens < 1 || options.max_tokens > kMaxGenerationTokens) {
    return InvalidArgumentError("max_tokens must be between 1 and " +
                                std::to_string(kMaxGenerationTokens));
  }
  if (!(options.temperature >= 0 && options.temperature <= kMaxTemperature)) {
    return InvalidArgumentError("temperature must be between 0 and 2");
  }
  if (options.stop.size() > kMaxStopStrings) {
    return InvalidArgumentError("stop may hold at most " + std::to_string(kMaxStopStrings) +
                                " strings");
  }
  for (const std::string& stop : options.stop) {
    if (stop.empty() || stop.size() > kMaxStopStringBytes) {
      return InvalidArgumentError("each stop string must be 1 to " +
                                  std::to_string(kMaxStopStringBytes) + " bytes long");
    }
  }
  return OkStatus();
}

// One generation: the contexts, the candidates of each step, the retrieval alignment and the
// text with its stop strings.
class LanguageModel::Sampler {
 public:
  Sampler(const LanguageModel& model, const GenerateOptions& options,
          const std::optional<Retrieved>& retrieved)
      : m_(model), n_(model.order_), rng_(SeedOf(options)) {
    max_tokens_ = std::clamp<size_t>(options.max_tokens, 1, kMaxGenerationTokens);
    temperature_ = std::isnan(options.temperature)
                       ? 1.0
                       : std::clamp(options.temperature, 0.0, kMaxTemperature);
    for (const std::string& stop : options.stop) {
      if (!stop.empty() && stops_.size() < kMaxStopStrings) {
        stops_.emplace_back(stop.substr(0, kMaxStopStringBytes));
      }
    }
    for (int k = 0; k < n_; ++k) ctx_[k] = m_.start_chain_[k];
    if (retrieved) {
      const Pair& pair = m_.pairs_[retrieved->pair];
      reply_ =
          std::span<const uint32_t>(m_.reply_tokens_).subspan(pair.reply_begin, pair.reply_length);
      strength_ = retrieved->strength;
      aligned_ = true;
    }
  }

  // Moves the contexts past `word` (a prompt token, or one generated).
  void Advance(uint32_t word) {
    for (int k = n_ - 1; k >= 1; --k) ctx_[k] = m_.Child(ctx_[k - 1], word);
    for (int k = 1; k < n_; ++k) recent_[k - 1] = recent_[k];
    if (n_ > 1) recent_[n_ - 2] = word;
  }

  void Run(Spacer spacer, const std::function<bool(std::string_view)>& on_piece, Generation* out) {
    std::string& text = out->text;
    std::unordered_set<uint64_t> seen;  // hashes of the n-grams generated
    for (size_t produced = 0;; ++produced) {
      if (produced == max_tokens_) {
        out->finish_reason = "length";
        break;
      }
      Candidates();
      if (aligned_) MixPrior();
      if (candidates_.empty()) {
        out->finish_reason = "stop";
        break;
      }
      PenalizeRepeats(seen);
      const uint32_t word = Choose();
      if (word == kEnd) {
        out->finish_reason = "stop";
        break;
      }
      Align(word);
      seen.insert(NgramHash(word));
      Advance(word);
      ++out->completion_tokens;

      const size_t before = text.size();
      spacer.Append(m_.Word(word), &text);
      // A stop string ends the text just before it.
      size_t stop_at = std::string::npos;
      size_t hold = 0;
      for (const std::string& stop : stops_) {
        const size_t from = before >= stop.size() ? before - stop.size() + 1 : 0;
        stop_at = std::min(stop_at, text.find(stop, from));
        hold = std::max(hold, PrefixAtEnd(text, stop));
      }
      if (stop_at != std::string::npos) {
        text.resize(std::max(stop_at, emitted_));
        out->finish_reason = "stop";
        break;
      }
      // Text that may begin a stop string waits until it cannot.
      if (!Emit(text, text.size() - hold, on_piece)) {
        text.resize(emitted_);
        out->finish_reason = "stop";
        return;
      }
    }
    Emit(text, text.size(), on_piece);
  }

 private:
  struct Candidate {
    uint32_t word;
    double p;
  };

  // The caller's seed, or a fresh random one.
  static uint64_t SeedOf(const GenerateOptions& options) {
    if (options.seed) return *options.seed;
    std::random_device device;
    return (static_cast<uint64_t>(device()) << 32) | device();
  }
  // The interpolated probabilities of the children of the current contexts, merged by word.
  void Candidates() {
    candidates_.clear();
    double lambda = 1;
    for (int k = n_; k >= 1; --k) {
      const uint32_t context = ctx_[k - 1];
      if (context == kNone) continue;
      const Node& node = m_.nodes_[context];
      if (node.sum <= 0) continue;
      const double scale = lambda / node.sum;
      const auto add = [&](const Node& child) {
        if (child.word == kStart || child.count <= 0) return;
        candidates_.push_back({child.word, scale * (child.count - Discount(child.count))});
      };
      if (node.top != kNone) {
        for (size_t i = 0; i < kTopChildren; ++i) add(m_.nodes_[m_.top_children_[node.top + i]]);
      } else {
        for (uint32_t i = 0; i < node.child_count; ++i) add(m_.nodes_[node.first_child + i]);
      }
      lambda *= node.dmass / node.sum;
    }
    std::sort(candidates_.begin(), candidates_.end(),
              [](const Candidate& a, const Candidate& b) { return a.word < b.word; });
    size_t merged = 0;
    for (const Candidate& c : candidates_) {
      if (merged > 0 && candidates_[merged - 1].word == c.word) {
        candidates_[merged - 1].p += c.p;
      } else {
        candidates_[merged++] = c;
      }
    }
    candidates_.resize(merged);
    double best = 0;
    for (const Candidate& c : candidates_) best = std::max(best, c.p);
    std::erase_if(candidates_,
                  [best](const Candidate& c) { return c.p < kMinRelativeProbability * best; });
  }

  uint64_t NgramHash(uint32_t word) const {
    uint64_t h = 0;
    for (int k = 0; k + 1 < n_; ++k) h = Mix(h, recent_[k]);
    return Mix(h, word);
  }

  void PenalizeRepeats(const std::unordered_set<uint64_t>& seen) {
    if (seen.empty()) return;
    for (Candidate& c : candidates_) {
      if (c.word != prior_word_ && seen.count(NgramHash(c.word)) != 0) c.p *= kRepeatPenalty;
    }
  }

  // (1 - s) * P_ngram + s * [the retrieved reply's next token].
  void MixPrior() {
    prior_word_ = next_ < reply_.size() ? reply_[next_] : kEnd;
    for (Candidate& c : candidates_) c.p *= 1 - strength_;
    const auto found = std::lower_bound(candidates_.begin(), candidates_.end(), prior_word_,
                                        [](const Candidate& c, uint32_t w) { return c.word < w; });
    if (found != candidates_.end() && found->word == prior_word_) {
      found->p += strength_;
    } else {
      candidates_.insert(found, {prior_word_, strength_});
    }
  }

  uint32_t Choose() {
    double best = 0;
    size_t best_index = 0;
    for (size_t i = 0; i < candidates_.size(); ++i) {
      if (candidates_[i].p > best) {
        best = candidates_[i].p;
        best_index = i;
      }
    }
    if (temperature_ < 1e-6 || best <= 0) return candidates_[best_index].word;
    // p^(1/T), scaled by the largest so that nothing overflows.
    double total = 0;
    for (Candidate& c : candidates_) {
      c.p = c.p > 0 ? std::exp(std::log(c.p / best) / temperature_) : 0;
      total += c.p;
    }
    double r = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * total;
    for (const Candidate& c : candidates_) {
      r -= c.p;
      if (r < 0) return c.word;
    }
    return candidates_[best_index].word;
  }

  // Follows the retrieved reply: on its next token, a little ahead of it, or (once lost) where
  // the last two tokens occur again.
  void Align(uint32_t word) {
    if (reply_.empty()) return;
    const size_t from = aligned_ ? next_ : last_aligned_;
    const size_t window = aligned_ ? kRealignWindow : kRecoverWindow;
    const size_t end = std::min(reply_.size(), from + window);
    for (size_t p = from; p < end; ++p) {
      if (reply_[p] != word) continue;
      if (!aligned_ && (p == 0 || reply_[p - 1] != recent_[n_ - 2])) continue;
      aligned_ = true;
      next_ = p + 1;
      last_aligned_ = next_;
      return;
    }
    if (aligned_) {
      aligned_ = false;
      last_aligned_ = next_;
      prior_word_ = kNone;
    }
  }

  // The length of the longest proper prefix of `stop` that `text` ends with.
  static size_t PrefixAtEnd(std::string_view text, std::string_view stop) {
    for (size_t k = std::min(stop.size() - 1, text.size()); k > 0; --k) {
      if (text[text.size() - k] == stop[0] && text.ends_with(stop.substr(0, k))) return k;
    }
    return 0;
  }

  // Passes text[emitted_, upto) on; false when on_piece asks to stop.
  bool Emit(std::string_view text, size_t upto, const std::function<bool(std::string_view)>& fn) {
    if (upto <= emitted_) return true;
    const std::string_view piece = text.substr(emitted_, upto - emitted_);
    emitted_ = upto;
    return !fn || fn(piece);
  }

  const LanguageModel& m_;
  const int n_;
  size_t max_tokens_ = 0;
  double temperature_ = 0;
  std::vector<std::string> stops_;
  std::mt19937_64 rng_;
  std::array<uint32_t, kMaxModelOrder> ctx_{};     // node of the last k tokens, k = 0..n-1
  std::array<uint32_t, kMaxModelOrder> recent_{};  // the last n-1 tokens, oldest first
  std::vector<Candidate> candidates_;
  // Retrieval: the reply, the position of its next token, whether the output still follows it.
  std::span<const uint32_t> reply_;
  double strength_ = 0;
  bool aligned_ = false;
  size_t next_ = 0;
  size_t last_aligned_ = 0;
  uint32_t prior_word_ = kNone;
  size_t emitted_ = 0;
};

Generation LanguageModel::Generate(const std::vector<uint32_t>& prefix,
                                   std::string_view text_before,
                                   const std::optional<Retrieved>& retrieved,
                                   const GenerateOptions& options,
                                   const std::function<bool(std::string_view)>& on_piece) const {
  Generation out;
  Sampler sampler(*this, options, retrieved);
  for (uint32_t word : prefix) sampler.Advance(word);
  Spacer spacer;
  spacer.Follow(text_before);
  sampler.Run(spacer, on_piece, &out);
  return out;
}

Generation LanguageModel::Chat(const std::vector<ChatMessage>& messages,
                               const GenerateOptions& options,
                               const std::function<bool(std::string_view)>& on_piece) const {
  size_t prompt_tokens = 0;
  const ChatMessage* last_user = nullptr;
  for (const ChatMessage& message : messages) {
    prompt_tokens += CountTokens(message.content) + 1;
    if (message.role == "user") last_user = &message;
  }
  std::optional<Retrieved> retrieved;
  if (last_user != nullptr) retrieved = Retrieve(last_user->content);
  Generation out = Generate({}, "", retrieved, options, on_piece);
  out.prompt_tokens = prompt_tokens;
  return out;
}

Generation LanguageModel::Complete(std::string_view prompt, const GenerateOptions& options,
                                   const std::function<bool(std::string_view)>& on_piece) const {
  // A prompt that matches a trained question well is answered from the start of a reply;
  // any other is continued from its last words.
  std::optional<Retrieved> retrieved = Retrieve(prompt);
  std::vector<uint32_t> prefix;
  if (!retrieved || retrieved->score < kStrongMatch) {
    retrieved.reset();
    ForEachToken(prompt, [&](std::string_view token) { prefix.push_back(WordId(token)); });
  }
  Generation out = Generate(prefix, prompt, retrieved, options, on_piece);
  out.prompt_tokens = CountTokens(prompt);
  return out;
}

uint32_t Crc32(ByteView data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (uint8_t byte : data) crc = kCrcTable[(crc ^ byte) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

}  // namespace keyfoundry::foundry
