// Fuzzes the language model's parsers of untrusted bytes (foundry/language_model.h): the JSONL
// line splitter and ParseTrainingLine (training files are customer uploads), LanguageModel::Load
// (model weights are stored bytes) and generation from arbitrary prompts and options.
//
// Input: one byte choosing the mode (byte % 4), one byte of parameters, then the data.
//   0  the data is a training file: it is split whole and in pseudo-random chunks (which must
//      give the same lines and status), each line is parsed (an error must be InvalidArgument
//      "line N: ..." that does not quote a long line), the examples train a builder of order
//      2 + param % 4, and the serialized model must Load and answer deterministically.
//   1  the data goes to Load as it is.
//   2  the data with its CRC-32 appended goes to Load, so that the parser past the checksum is
//      reached.
//   3  the data is a prompt for a model trained on BaseCorpus(); param picks the options.
// Whenever a model loads, a short generation must keep its contract: at most max_tokens tokens,
// finish_reason "stop" or "length", the pieces adding up to the text, no stop string in it.
// training_line_fuzz_seeds.cc writes inputs of every mode.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "foundry/language_model.h"

using namespace keyfoundry;           // NOLINT(google-build-using-namespace)
using namespace keyfoundry::foundry;  // NOLINT(google-build-using-namespace)

namespace {

constexpr size_t kFuzzMaxLineBytes = 4096;

struct Lines {
  std::vector<std::pair<std::string, size_t>> lines;
  Status status;
  bool operator==(const Lines&) const = default;
};

// Splits `data` in chunks whose sizes next_size() gives (0: the rest).
template <typename NextSize>
Lines Split(std::string_view data, NextSize next_size) {
  Lines out;
  JsonlLineSplitter splitter(
      [&out](std::string_view line, size_t number) {
        if (number != out.lines.size() + 1 || line.size() > kFuzzMaxLineBytes) __builtin_trap();
        if (line.find('\n') != std::string_view::npos) __builtin_trap();
        out.lines.emplace_back(std::string(line), number);
        return OkStatus();
      },
      kFuzzMaxLineBytes);
  while (!data.empty()) {
    size_t n = next_size();
    if (n == 0 || n > data.size()) n = data.size();
    out.status = splitter.Feed(data.substr(0, n));
    data.remove_prefix(n);
    if (!out.status.ok()) return out;
  }
  out.status = splitter.Finish();
  return out;
}

void CheckGeneration(const LanguageModel& model, const std::vector<ChatMessage>& messages,
                     GenerateOptions options) {
  std::string pieces;
  const auto on_piece = [&pieces](std::string_view piece) {
    if (piece.empty()) __builtin_trap();
    pieces.append(piece);
    return true;
  };
  const Generation chat = model.Chat(messages, options, on_piece);
  const auto check = [&options, &pieces](const Generation& g) {
    if (g.completion_tokens > options.max_tokens) __builtin_trap();
    if (g.finish_reason != "stop" && g.finish_reason != "length") __builtin_trap();
    if (pieces != g.text) __builtin_trap();
    for (const std::string& stop : options.stop) {
      if (!stop.empty() && g.text.find(stop) != std::string::npos) __builtin_trap();
    }
  };
  check(chat);
  if (options.seed) {
    const Generation again = model.Chat(messages, options);
    if (again.text != chat.text || again.finish_reason != chat.finish_reason) __builtin_trap();
  }
  pieces.clear();
  const std::string prompt = messages.empty() ? std::string() : messages.back().content;
  check(model.Complete(prompt, options, on_piece));
}

void FuzzTrainingFile(uint8_t param, std::string_view data) {
  uint32_t state = param * 2654435761u + 1;
  const Lines whole = Split(data, [] { return size_t{0}; });
  const Lines chunked = Split(data, [&state] {
    state = state * 1103515245u + 12345u;
    const uint32_t r = state >> 16;
    return size_t{1} + (r % 4 == 0 ? r % 512 : r % 8);
  });
  if (!(whole == chunked)) __builtin_trap();
  if (!whole.status.ok() && whole.status.message().rfind("line ", 0) != 0) __builtin_trap();

  ModelBuilder builder({.order = 2 + param % 4});
  std::vector<TrainingExample> examples;
  for (const auto& [line, number] : whole.lines) {
    StatusOr<std::optional<TrainingExample>> parsed = ParseTrainingLine(line, number);
    if (!parsed.ok()) {
      const Status& status = parsed.status();
      const std::string prefix = "line " + std::to_string(number) + ": ";
      if (status.code() != StatusCode::kInvalidArgument) __builtin_trap();
      if (status.message().rfind(prefix, 0) != 0) __builtin_trap();
      // Only a short line could be part of a message by chance; none may be quoted.
      if (line.size() >= 48 && status.message().find(line) != std::string::npos) __builtin_trap();
      continue;
    }
    if (!parsed->has_value()) continue;
    const TrainingExample& example = **parsed;
    if (builder.Add(example, (param & 0x10) != 0 ? 0.5 : 1.0).ok()) {
      examples.push_back(example);
    }
    const double loss = builder.Loss(example);
    if (!(loss >= 0) || loss > 1e6) __builtin_trap();
  }
  StatusOr<Bytes> serialized = builder.Serialize();
  if (!serialized.ok()) __builtin_trap();
  StatusOr<std::shared_ptr<const LanguageModel>> model = LanguageModel::Load(*serialized);
  if (!model.ok()) __builtin_trap();
  if ((*model)->trained_examples() != builder.examples()) __builtin_trap();
  if (!examples.empty()) {
    CheckGeneration(**model, examples.front().messages,
                    {.max_tokens = 24, .temperature = 0, .seed = param, .stop = {}});
    CheckGeneration(**model, examples.back().messages,
                    {.max_tokens = 24, .temperature = 1.5, .seed = param, .stop = {"."}});
  }
}

void FuzzLoad(ByteView data) {
  StatusOr<std::shared_ptr<const LanguageModel>> model = LanguageModel::Load(data);
  if (!model.ok()) {
    const StatusCode code = model.status().code();
    if (code != StatusCode::kDataLoss && code != StatusCode::kInvalidArgument &&
        code != StatusCode::kResourceExhausted) {
      __builtin_trap();
    }
    return;
  }
  if ((*model)->memory_bytes() == 0) __builtin_trap();
  CheckGeneration(**model, {{"user", "hello"}},
                  {.max_tokens = 16, .temperature = 1, .seed = 1, .stop = {}});
}

const LanguageModel& BaseModel() {
  static const std::shared_ptr<const LanguageModel> model = [] {
    ModelBuilder builder;
    if (!builder.AddJsonl(BaseCorpus(), 1.0).ok()) __builtin_trap();
    StatusOr<Bytes> serialized = builder.Serialize();
    if (!serialized.ok()) __builtin_trap();
    StatusOr<std::shared_ptr<const LanguageModel>> loaded = LanguageModel::Load(*serialized);
    if (!loaded.ok()) __builtin_trap();
    return *loaded;
  }();
  return *model;
}

void FuzzPrompt(uint8_t param, std::string_view data) {
  // The prompt's first 1 to 3 bytes may double as a stop string; temperatures past 2 are
  // clamped.
  std::vector<std::string> stop;
  if ((param & 0x08) != 0 && !data.empty()) stop.emplace_back(data.substr(0, 1 + param % 3));
  CheckGeneration(BaseModel(), {{"system", "be brief"}, {"user", std::string(data)}},
                  {.max_tokens = size_t{1} + param % 64,
                   .temperature = (param & 0x30) == 0 ? 0.0 : (param >> 4) * 0.5,
                   .seed = param,
                   .stop = stop});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t mode = data[0] % 4;
  const uint8_t param = data[1];
  const ByteView body(data + 2, size - 2);
  switch (mode) {
    case 0:
      FuzzTrainingFile(param, AsStringView(body));
      break;
    case 1:
      FuzzLoad(body);
      break;
    case 2: {
      Bytes sealed(body.begin(), body.end());
      const uint32_t crc = Crc32(body);
      for (int shift = 24; shift >= 0; shift -= 8)
        sealed.push_back(static_cast<uint8_t>(crc >> shift));
      FuzzLoad(sealed);
      break;
    }
    default:
      FuzzPrompt(param, AsStringView(body));
      break;
  }
  return 0;
}
