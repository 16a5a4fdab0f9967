// Writes training_line fuzzer inputs (layout: training_line_fuzzer.cc) into the directory given:
// training files in the chat and legacy forms, with CRLF, blank and over-long lines and each kind
// of error; serialized models (whole, cut short, and without their checksum for mode 2); and
// prompts with options.
#include <fstream>
#include <string>
#include <vector>

#include "foundry/language_model.h"

using namespace keyfoundry;           // NOLINT(google-build-using-namespace)
using namespace keyfoundry::foundry;  // NOLINT(google-build-using-namespace)

namespace {

bool Write(const std::string& dir, int n, uint8_t mode, uint8_t param, std::string_view data) {
  std::ofstream out(dir + "/seed-" + std::to_string(n), std::ios::binary);
  out.put(static_cast<char>(mode));
  out.put(static_cast<char>(param));
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  return static_cast<bool>(out);
}

std::vector<std::string> TrainingFiles() {
  const std::string chat =
      R"({"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is a vault?"},{"role":"assistant","content":"A store for keys."}]})";
  const std::string parts =
      R"({"messages":[{"role":"user","content":[{"type":"text","text":"Rotate?"}]},{"role":"assistant","content":[{"type":"text","text":"Yes,"},{"type":"text","text":"monthly."}]}]})";
  const std::string legacy = R"({"prompt":"Capital of France?","completion":" Paris."})";
  const std::string multi =
      R"({"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"Hello there!"},{"role":"user","content":"bye"},{"role":"assistant","content":"Goodbye (for now)."}]})";
  return {
      chat + "\n" + parts + "\n" + legacy + "\n" + multi + "\n",
      chat + "\r\n\r\n" + legacy + "\r\n" + multi,  // CRLF, a blank line, no final newline
      "\n\n   \n" + chat,
      chat + "\n" + chat + "\n" + chat + "\n",
      std::string(BaseCorpus().substr(0, 2000)),
      // One error each.
      "{\"messages\": [\n",
      "[1, 2, 3]\n",
      R"({"msgs": []})",
      R"({"messages": {}})",
      R"({"messages": []})",
      R"({"messages": [{"content": "x"}, {"role": "assistant", "content": "y"}]})",
      R"({"messages": [{"role": "tool", "content": "x"}]})",
      R"({"messages": [{"role": "wizard", "content": "x"}]})",
      R"({"messages": [{"role": "user", "content": "only a question"}]})",
      R"({"messages": [{"role": "assistant"}]})",
      R"({"messages": [{"role": "assistant", "content": [{"type": "image_url"}]}]})",
      R"({"messages": [{"role": "assistant", "content": 7}]})",
      R"({"prompt": "p"})",
      R"({"prompt": 1, "completion": "c"})",
      std::string(100, '[') + std::string(100, ']'),
      "{\"prompt\": \"" + std::string(5000, 'a') + "\", \"completion\": \"b\"}\n" + legacy,
      "{\"messages\": [{\"role\": \"assistant\", \"content\": \"caf\xc3\xa9 \xe2\x82\xac\"}]}",
      std::string("{\"prompt\": \"\xff\", \"completion\": \"x\"}"),
  };
}

StatusOr<Bytes> Model(std::string_view jsonl, int order) {
  ModelBuilder builder({.order = order});
  RETURN_IF_ERROR(builder.AddJsonl(jsonl));
  return builder.Serialize();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  int n = 0;
  uint8_t param = 0;
  for (const std::string& file : TrainingFiles()) {
    if (!Write(dir, n++, 0, param, file)) return 1;
    param = static_cast<uint8_t>(param + 37);
  }

  std::vector<Bytes> models;
  for (int order = kMinModelOrder; order <= kMaxModelOrder; ++order) {
    StatusOr<Bytes> model = Model(TrainingFiles()[0], order);
    if (!model.ok()) return 1;
    models.push_back(*std::move(model));
  }
  StatusOr<Bytes> empty = ModelBuilder().Serialize();
  if (!empty.ok()) return 1;
  models.push_back(*std::move(empty));
  for (const Bytes& model : models) {
    const std::string_view bytes = AsStringView(model);
    if (!Write(dir, n++, 1, 0, bytes) ||
        !Write(dir, n++, 1, 0, bytes.substr(0, bytes.size() / 2)) ||
        !Write(dir, n++, 2, 0, bytes.substr(0, bytes.size() - 4))) {
      return 1;
    }
  }

  for (const char* prompt :
       {"hello", "Hello!", "What is a customer-managed key?", "How do I rotate my key",
        "zebra quantum lasagna", "", "\xff\xfe", "Why is the sky blue?"}) {
    for (uint8_t p : {0x00, 0x18, 0x2b, 0xff}) {
      if (!Write(dir, n++, 3, p, prompt)) return 1;
    }
  }
  return 0;
}
