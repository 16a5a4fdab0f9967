// The small, real language model behind fine-tuning and inference: a word-level n-gram model
// with interpolated Kneser-Ney smoothing, plus retrieval over the training conversations, so
// that what a deployment answers depends on the data it was trained on.
//
// Training data. A training file is JSONL in OpenAI's chat format, one example a line:
//   {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
// where content is a string or an array of {"type": "text", "text": "..."} parts, or in the
// legacy form {"prompt": "...", "completion": "..."} (a user message and the reply). Blank lines
// are skipped. JsonlLineSplitter cuts a byte stream into lines and ParseTrainingLine checks one;
// its errors say "line N: " and what is wrong, and never quote the line (it is customer data).
//
// Tokens. A token is a word — a run of letters, digits and apostrophes (bytes >= 0x80 count as
// letters, so UTF-8 text survives), which may hold single - _ . / @ between two such characters
// ("customer-managed", "3.14", "keys/rotate") — or one punctuation character, or a newline.
// Other whitespace only separates. A word longer than kMaxTokenBytes is cut into several
// tokens. Generated text is re-spaced: one space between tokens, none before . , ! ? ; : ) ] } %
// or a closing quote, none after ( [ { $ or an opening quote, none around newlines. So a
// trained reply comes back as the tokenizer re-spaces it ("Hi ,there" comes back "Hi, there").
//
// The model. ModelBuilder counts the n-grams (orders 1..order) of every assistant reply, padded
// with start tokens and closed by an end-of-reply token (so generation stops by itself):
// interpolated Kneser-Ney, where the top order uses the weighted counts and each lower order the
// continuation counts (how many distinct words precede the n-gram). Weights are fractional, so
// a count c takes the discount D * min(c, 1) (D = 0.75) and a continuation adds min(c, 1): data
// added at a small weight keeps the shape of its distribution, and data added again (another
// epoch) makes the model more certain. Under the lowest order is a uniform distribution over at
// least 65536 words, so every probability is positive.
//
// Retrieval. Each assistant reply is also indexed under the last user message before it
// (lower-cased words; identical pairs are merged, their weights added). Generation looks up the
// last user message by TF-IDF cosine similarity. A good match becomes a strong prior that
// proposes the retrieved reply token by token while the output stays aligned with it (it
// re-aligns after a small deviation), so at temperature 0 a trained question (or a close
// paraphrase) gets its trained answer, and at higher temperatures the output varies around it.
// Ties go to the heavier pair, then to the one added last (fine-tuning data over the base
// corpus). With no good match the n-gram model generates alone. Sampling draws from the
// interpolated distribution raised to 1/temperature, without the candidates less likely than a
// tenth of the likeliest (the noisy tail), and damps n-grams already generated, so that greedy
// decoding does not loop.
//
// Serialized format, version 1. Integers are big-endian; "varint" is unsigned LEB128 of at most
// 5 bytes (a u32); "f32" is an IEEE-754 single in a u32.
//   model      = "KFLM" | version u8 = 1 | order u8 (2..5) | examples u64 | tokens u64
//                | vocabulary | trie | index | crc u32 (Crc32 of every byte before it)
//   vocabulary = count varint | count x (length u8 | bytes)
//                the words with ids 3, 4, ... (0 = start, 1 = end of reply, 2 = unknown); each is
//                valid UTF-8, 1..kMaxTokenBytes long, unique, and tokenizes to itself
//   trie       = node_count varint | node_count x (child_count varint
//                                                  | child_count x (word_delta varint | count f32))
//                the n-gram trie in breadth-first order, root first; a node's children get the
//                next unused node numbers. Child words strictly increase (the first delta is
//                the word, each later one >= 1). A node at depth k is the k-gram of the words
//                on its path; its count is the weighted count at depth == order, else the
//                continuation count. Depth <= order; counts finite, >= 0; the chain of 1..order-1
//                start tokens from the root is present (every reply starts there).
//   index      = term_count varint | term_count x (length u8 | bytes)   (lower-cased words)
//                pair_count varint | pair_count x (weight f32 | key_length varint
//                | key_length x term varint | reply_length varint | reply_length x word varint)
// Hard limits (Load refuses beyond them, and so do ModelBuilder::Add and Serialize): below.
// Load checks every length against the bytes that remain before it allocates, so hostile
// input cannot make it allocate more than a small multiple of its own size (a loaded model takes
// about 4 times its serialized size).
//
// Thread safety: a LanguageModel is immutable; Chat and Complete may run from many threads at
// once. A ModelBuilder and a JsonlLineSplitter are used by one thread at a time.
#ifndef KEYFOUNDRY_FOUNDRY_LANGUAGE_MODEL_H_
#define KEYFOUNDRY_FOUNDRY_LANGUAGE_MODEL_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"

namespace keyfoundry::foundry {

// Training data.
inline constexpr size_t kMaxTrainingLineBytes = size_t{1} << 20;  // one example
inline constexpr size_t kMaxMessagesPerExample = 2048;
inline constexpr size_t kMaxJsonDepth = 64;

// The model and its serialized form.
inline constexpr uint8_t kModelFormatVersion = 1;
inline constexpr int kMinModelOrder = 2;
inline constexpr int kMaxModelOrder = 5;
inline constexpr size_t kMaxTokenBytes = 128;
inline constexpr size_t kMaxVocabulary = size_t{1} << 22;      // distinct words
inline constexpr size_t kMaxRetrievalTerms = size_t{1} << 22;  // distinct lower-cased words
inline constexpr size_t kMaxNgramEntries = size_t{1} << 26;    // trie nodes
inline constexpr size_t kMaxIndexedReplies = size_t{1} << 22;  // retrieval pairs
inline constexpr size_t kMaxIndexedTokens = size_t{1} << 27;   // all keys and replies
inline constexpr size_t kMaxModelBytes = size_t{512} << 20;

// Generation.
inline constexpr size_t kMaxGenerationTokens = 16384;
inline constexpr double kMaxTemperature = 2.0;
inline constexpr size_t kMaxStopStrings = 4;
inline constexpr size_t kMaxStopStringBytes = 256;

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant"
  std::string content;
  bool operator==(const ChatMessage&) const = default;
};

struct TrainingExample {
  std::vector<ChatMessage> messages;
  bool operator==(const TrainingExample&) const = default;
};

// Parses one line of a training file (`line_number` counts from 1 and only names the line in
// errors). A blank line (only whitespace) gives std::nullopt. Otherwise the line must be a
// JSON object in the chat form or the legacy prompt/completion form (see the top of this file),
// at most kMaxTrainingLineBytes long, nested at most kMaxJsonDepth deep, with at most
// kMaxMessagesPerExample messages, roles system, user or assistant ("developer" is taken as
// system), and at least one assistant message with non-blank content. Content parts are joined
// with newlines. Keys other than role and content are ignored. Errors are InvalidArgument,
// "line N: " and what to fix, naming fields and positions (message 2, content part 1) but never
// quoting the line's text.
StatusOr<std::optional<TrainingExample>> ParseTrainingLine(std::string_view line,
                                                           size_t line_number);

// Splits a byte stream, fed in pieces cut anywhere, into lines ending in \n or \r\n, and passes
// each to `on_line` with its number (from 1), without its line ending. Finish() passes a last
// line that has no newline. A line longer than `max_line_bytes` fails with InvalidArgument
// "line N: longer than ... bytes" before it is buffered whole. A failure (the splitter's own or
// a non-OK status from on_line) is returned and sticks: every later call returns it.
class JsonlLineSplitter {
 public:
  using LineCallback = std::function<Status(std::string_view line, size_t line_number)>;

  explicit JsonlLineSplitter(LineCallback on_line, size_t max_line_bytes = kMaxTrainingLineBytes);

  Status Feed(std::string_view data);
  // Ends the stream; the splitter takes no more data.
  Status Finish();

  // Lines passed to on_line so far.
  size_t lines() const { return line_number_; }

 private:
  Status Deliver(std::string_view line);

  LineCallback on_line_;
  size_t max_line_bytes_;
  std::string partial_;  // the current line's bytes from earlier pieces
  size_t line_number_ = 0;
  Status failed_;
  bool finished_ = false;
};

struct ModelOptions {
  int order = 3;  // kMinModelOrder..kMaxModelOrder
};

// Builds a model from training examples. The counts are kept in an open-addressing table of
// (context, word) pairs; memory is about 60 bytes per distinct n-gram plus the indexed replies
// (some 150 MB for a 10 MB training file).
class ModelBuilder {
 public:
  // An order outside 2..5 makes every later Add and Serialize fail with InvalidArgument.
  explicit ModelBuilder(ModelOptions options = {});
  ~ModelBuilder();
  ModelBuilder(const ModelBuilder&) = delete;
  ModelBuilder& operator=(const ModelBuilder&) = delete;

  // Adds an example: the n-grams of each assistant reply, counted `weight` times (base corpus
  // examples may weigh less; each epoch of fine-tuning adds the data again), and each reply to
  // the retrieval index under the last user message before it. System messages only count as
  // tokens. InvalidArgument when `weight` is not in (0, 1000] or a content is not valid UTF-8
  // (nothing is added); ResourceExhausted when the model would pass a hard limit, after which
  // the builder is failed and every later Add and Serialize returns that error.
  Status Add(const TrainingExample& example, double weight = 1.0);

  // Splits, parses and adds every example of a JSONL document (such as BaseCorpus()); stops at
  // the first error, which names its line.
  Status AddJsonl(std::string_view jsonl, double weight = 1.0);

  // Mean negative log-likelihood, in nats per token, of the example's assistant replies (each
  // token and the end of each reply) under the n-gram model built so far: the training loss a
  // job reports. Smoothed, so finite even before any Add; 0 when there is no assistant reply.
  double Loss(const TrainingExample& example) const;

  // Examples added, and the tokens they held (every message's tokens plus one per message,
  // counted again each time an example is added): usage and trained_tokens.
  size_t examples() const { return examples_; }
  uint64_t tokens() const { return tokens_; }

  // The model in the serialized format above. ResourceExhausted past kMaxModelBytes.
  StatusOr<Bytes> Serialize() const;

 private:
  struct Counts;
  struct Index;
  Status AddReply(const std::vector<uint32_t>& reply, double weight);

  int order_;
  Status failed_;
  std::unique_ptr<Counts> counts_;
  std::unique_ptr<Index> index_;
  size_t examples_ = 0;
  uint64_t tokens_ = 0;
};

struct GenerateOptions {
  size_t max_tokens = 256;        // 1..kMaxGenerationTokens
  double temperature = 1.0;       // 0..2; 0 = greedy (deterministic)
  std::optional<uint64_t> seed;   // same model, input, options and seed: same output
  std::vector<std::string> stop;  // up to 4 stop strings; output ends before them
};

// InvalidArgument, naming the option, when an option is out of range (above; a stop string
// must be 1..kMaxStopStringBytes long). Chat and Complete clamp such options instead.
Status ValidateGenerateOptions(const GenerateOptions& options);

struct Generation {
  std::string text;
  size_t prompt_tokens = 0;
  size_t completion_tokens = 0;  // tokens generated, the end of reply not counted
  std::string finish_reason;     // "stop" (end of reply, a stop string, on_piece) | "length"
};

// A loaded model. Immutable, so it can be shared by every request of a deployment.
class LanguageModel {
 public:
  // Parses a serialized model through a bounds-checked reader. DataLoss when the bytes are
  // malformed, truncated or fail the checksum; InvalidArgument when they are not a model at all
  // (wrong magic) or of another format version; ResourceExhausted past a hard limit.
  static StatusOr<std::shared_ptr<const LanguageModel>> Load(ByteView serialized);

  // Answers a conversation: the reply to its last user message. `on_piece` (may be empty)
  // receives the text as it is produced, piece by piece (a piece is normally one token with the
  // space before it; text that may begin a stop string is held back until it cannot); its
  // concatenation is the returned text. Returning false stops the generation ("stop").
  // prompt_tokens counts every message's tokens plus one per message.
  Generation Chat(const std::vector<ChatMessage>& messages, const GenerateOptions& options,
                  const std::function<bool(std::string_view piece)>& on_piece = {}) const;

  // Plain completion: continues `prompt` (a prompt that is, or nearly is, a trained user
  // message or legacy prompt is answered as in Chat). The first piece starts with a space when
  // the prompt ends in a word and the continuation does too.
  Generation Complete(std::string_view prompt, const GenerateOptions& options,
                      const std::function<bool(std::string_view piece)>& on_piece = {}) const;

  // The tokens in `text`, as the tokenizer above cuts them.
  static size_t CountTokens(std::string_view text);

  LanguageModel(const LanguageModel&) = delete;
  LanguageModel& operator=(const LanguageModel&) = delete;

  int order() const { return order_; }
  uint64_t trained_examples() const { return examples_; }
  uint64_t trained_tokens() const { return tokens_; }
  size_t vocabulary_size() const { return word_offsets_.size() - 1; }
  size_t memory_bytes() const;  // approximate, of everything the model holds

 private:
  struct Node;
  struct Pair;
  struct Posting;
  struct Retrieved;
  class Parser;
  class Sampler;

  LanguageModel() = default;
  std::string_view Word(uint32_t id) const;
  uint32_t WordId(std::string_view word) const;  // the unknown word's id when absent
  uint32_t Child(uint32_t node, uint32_t word) const;
  std::optional<Retrieved> Retrieve(std::string_view query) const;
  Generation Generate(const std::vector<uint32_t>& prefix, std::string_view text_before,
                      const std::optional<Retrieved>& retrieved, const GenerateOptions& options,
                      const std::function<bool(std::string_view)>& on_piece) const;

  int order_ = 0;
  uint64_t examples_ = 0;
  uint64_t tokens_ = 0;
  // Words: id -> bytes (word_bytes_[word_offsets_[id - 3] .. word_offsets_[id - 2])), and back.
  std::string word_bytes_;
  std::vector<uint32_t> word_offsets_{0};
  std::unordered_map<std::string_view, uint32_t> word_ids_;
  // The trie; nodes_[0] is the root, children are contiguous and sorted by word.
  std::vector<Node> nodes_;
  std::vector<uint32_t> top_children_;         // for nodes with many children: the likeliest ones
  uint32_t start_chain_[kMaxModelOrder] = {};  // node of k start tokens, k = 0..order-1
  // Retrieval.
  std::unordered_map<std::string, uint32_t> term_ids_;
  std::vector<float> term_idf_;
  std::vector<uint32_t> posting_offsets_;  // per term, into postings_
  std::vector<Posting> postings_;
  std::vector<Pair> pairs_;
  std::vector<uint32_t> reply_tokens_;
};

// CRC-32 (the polynomial of zlib, Ethernet and PNG), the serialized format's checksum; exposed so
// that fuzzers and tests can build models byte by byte.
uint32_t Crc32(ByteView data);

// The base model's training corpus, shipped with keyfoundry (JSONL in the chat form).
std::string_view BaseCorpus();

}  // namespace keyfoundry::foundry

#endif  // KEYFOUNDRY_FOUNDRY_LANGUAGE_MODEL_H_
