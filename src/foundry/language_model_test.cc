// The language model end to end: training lines parsed (each error with its message, none
// quoting the line), streams split, models trained on small distinctive sets answering their
// own questions, generation options honoured, and serialized models round-tripping while
// damaged ones are refused.
#include "foundry/language_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

namespace keyfoundry::foundry {
namespace {

constexpr char kSecret[] = "Zq7-hunter2-OpalFalcon";

TrainingExample Qa(const std::string& question, const std::string& answer) {
  return {{{"user", question}, {"assistant", answer}}};
}

// Distinctive pairs that share few words with each other or with the base corpus.
const std::vector<TrainingExample>& Distinctive() {
  static const std::vector<TrainingExample> examples = {
      Qa("What colour is the Zorblax vault door?",
         "The Zorblax vault door is painted teal, with a brass handle."),
      Qa("Who feeds the office penguin on Fridays?",
         "Marguerite feeds the office penguin on Fridays, usually sardines."),
      Qa("How many lanterns hang in the north tunnel?",
         "Exactly seventeen lanterns hang in the north tunnel; two of them flicker."),
      Qa("Which password unlocks the orchard gate?",
         "The orchard gate opens with the phrase \"silver plums\" (spoken twice)."),
  };
  return examples;
}

std::shared_ptr<const LanguageModel> Load(const ModelBuilder& builder) {
  StatusOr<Bytes> bytes = builder.Serialize();
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  if (!bytes.ok()) return nullptr;
  StatusOr<std::shared_ptr<const LanguageModel>> model = LanguageModel::Load(*bytes);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *model : nullptr;
}

// A model of `examples`, on top of the base corpus (at a lower weight) when `with_base`.
std::shared_ptr<const LanguageModel> Train(const std::vector<TrainingExample>& examples,
                                           bool with_base = false, int order = 3) {
  ModelBuilder builder({.order = order});
  if (with_base) EXPECT_TRUE(builder.AddJsonl(BaseCorpus(), 0.5).ok());
  for (const TrainingExample& example : examples) EXPECT_TRUE(builder.Add(example).ok());
  return Load(builder);
}

const LanguageModel& BaseModel() {
  static const std::shared_ptr<const LanguageModel> model = Train({}, true);
  return *model;
}

GenerateOptions Greedy(size_t max_tokens = 64) {
  return {.max_tokens = max_tokens, .temperature = 0, .seed = 1, .stop = {}};
}

std::string Ask(const LanguageModel& model, const std::string& question,
                const GenerateOptions& options = Greedy()) {
  return model.Chat({{"user", question}}, options).text;
}

// --- Training lines ---------------------------------------------------------------------------

TEST(ParseTrainingLineTest, ParsesChatLine) {
  StatusOr<std::optional<TrainingExample>> parsed = ParseTrainingLine(
      R"({"messages": [{"role": "system", "content": "Be brief."},)"
      R"( {"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello.",)"
      R"( "weight": 1}], "extra": true})",
      1);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_TRUE(parsed->has_value());
  const std::vector<ChatMessage> expected = {
      {"system", "Be brief."}, {"user", "Hi?"}, {"assistant", "Hello."}};
  EXPECT_EQ((*parsed)->messages, expected);
}

TEST(ParseTrainingLineTest, JoinsContentPartsAndTakesDeveloperAsSystem) {
  StatusOr<std::optional<TrainingExample>> parsed = ParseTrainingLine(
      R"({"messages": [{"role": "developer", "content": [{"type": "text", "text": "Rules"}]},)"
      R"( {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},)"
      R"( {"role": "assistant", "content": "c"}]})",
      3);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const std::vector<ChatMessage> expected = {
      {"system", "Rules"}, {"user", "a\nb"}, {"assistant", "c"}};
  EXPECT_EQ((*parsed)->messages, expected);
}

TEST(ParseTrainingLineTest, ParsesPromptCompletion) {
  StatusOr<std::optional<TrainingExample>> parsed =
      ParseTrainingLine(R"({"prompt": "Capital of France?", "completion": " Paris."})", 1);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const std::vector<ChatMessage> expected = {{"user", "Capital of France?"},
                                             {"assistant", " Paris."}};
  EXPECT_EQ((*parsed)->messages, expected);
}

TEST(ParseTrainingLineTest, BlankLinesAreSkipped) {
  for (const char* line : {"", "   ", "\t \r", "\r"}) {
    StatusOr<std::optional<TrainingExample>> parsed = ParseTrainingLine(line, 9);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_FALSE(parsed->has_value());
  }
}

TEST(ParseTrainingLineTest, EachErrorNamesTheLineAndNeverQuotesIt) {
  const std::string s = kSecret;
  struct Case {
    std::string line;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {R"({"messages": [{"role": "user", "content": ")" + s, "not valid JSON"},
      {"{\"prompt\": \"" + s + "\xff\", \"completion\": \"x\"}", "not valid JSON"},
      {R"([")" + s + R"("])", "expected a JSON object, found an array"},
      {R"({"msgs": [")" + s + R"("]})", "'messages' is missing"},
      {R"({"messages": ")" + s + R"("})", "'messages' is a string, not an array"},
      {R"({"messages": []})", "'messages' is empty"},
      {R"({"messages": [{"role": "user", "content": ")" + s + R"("}, ")" + s + R"("]})",
       "message 2 is not an object"},
      {R"({"messages": [{"role": "user", "content": ")" + s + R"("}, {"content": ")" + s +
           R"("}]})",
       "message 2 has no 'role'"},
      {R"({"messages": [{"role": 5, "content": ")" + s + R"("}]})",
       "message 1 has a 'role' that is not a string"},
      {R"({"messages": [{"role": "wizard", "content": ")" + s + R"("}]})",
       "message 1 has a role 'wizard' that is not one of system, user, assistant"},
      {R"({"messages": [{"role": ")" + s + R"( says hi", "content": "x"}]})",
       "message 1 has a role that is not one of system, user, assistant"},
      {R"({"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": ")" + s +
           R"("}]})",
       "message 2 has role 'tool': tool and function messages cannot be trained on"},
      {R"({"messages": [{"role": "user", "content": ")" + s + R"("}, {"role": "assistant"}]})",
       "message 2 has no 'content'"},
      {R"({"messages": [{"role": "assistant", "content": 42}]})",
       "message 1 has 'content' that is a number, not a string or an array of text parts"},
      {R"({"messages": [{"role": "assistant", "content": [{"type": "image_url", "image_url": ")" +
           s + R"("}]}]})",
       "message 1, content part 1 is not of type 'text'"},
      {R"({"messages": [{"role": "assistant", "content": [{"type": "text"}]}]})",
       "message 1, content part 1 has no 'text' string"},
      {R"({"messages": [{"role": "user", "content": ")" + s + R"("}]})",
       "no assistant message with content"},
      {R"({"messages": [{"role": "user", "content": ")" + s +
           R"("}, {"role": "assistant", "content": "  "}]})",
       "no assistant message with content"},
      {R"({"prompt": ")" + s + R"("})", "'completion' is missing"},
      {R"({"prompt": ")" + s + R"(", "completion": 3})", "'completion' is not a string"},
      {R"({"prompt": ")" + s + R"(", "completion": ""})", "'completion' is empty"},
      {std::string(65, '[') + s + std::string(65, ']'), "nested deeper than 64 levels"},
      {R"({"prompt": "x", "completion": ")" + s + std::string(kMaxTrainingLineBytes, 'a') + R"("})",
       "longer than 1048576 bytes"},
  };
  for (const Case& c : cases) {
    StatusOr<std::optional<TrainingExample>> parsed = ParseTrainingLine(c.line, 7);
    ASSERT_FALSE(parsed.ok()) << c.expected;
    const std::string message = parsed.status().message();
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument) << message;
    EXPECT_EQ(message.rfind("line 7: ", 0), 0u) << message;
    EXPECT_NE(message.find(c.expected), std::string::npos) << message;
    EXPECT_EQ(message.find("hunter2"), std::string::npos) << message;
  }
}

// --- Splitting --------------------------------------------------------------------------------

struct Collected {
  std::vector<std::string> lines;
  std::vector<size_t> numbers;
};

JsonlLineSplitter::LineCallback Collect(Collected* out) {
  return [out](std::string_view line, size_t number) {
    out->lines.emplace_back(line);
    out->numbers.push_back(number);
    return OkStatus();
  };
}

TEST(JsonlLineSplitterTest, SplitsPiecesCutAnywhere) {
  const std::string text = "first\r\nsecond\n\nfourth line\r\nlast, no newline";
  const std::vector<std::string> expected = {"first", "second", "", "fourth line",
                                             "last, no newline"};
  for (size_t a = 0; a <= text.size(); ++a) {
    for (size_t b = a; b <= text.size(); ++b) {
      Collected got;
      JsonlLineSplitter splitter(Collect(&got));
      ASSERT_TRUE(splitter.Feed(text.substr(0, a)).ok());
      ASSERT_TRUE(splitter.Feed(text.substr(a, b - a)).ok());
      ASSERT_TRUE(splitter.Feed(text.substr(b)).ok());
      ASSERT_TRUE(splitter.Finish().ok());
      ASSERT_EQ(got.lines, expected) << a << " " << b;
      EXPECT_EQ(got.numbers, (std::vector<size_t>{1, 2, 3, 4, 5}));
      EXPECT_EQ(splitter.lines(), 5u);
    }
  }
}

TEST(JsonlLineSplitterTest, FinalNewlineMakesNoEmptyLine) {
  Collected got;
  JsonlLineSplitter splitter(Collect(&got));
  ASSERT_TRUE(splitter.Feed("a\nb\n").ok());
  ASSERT_TRUE(splitter.Finish().ok());
  EXPECT_EQ(got.lines, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(splitter.Feed("c").code(), StatusCode::kFailedPrecondition);
}

TEST(JsonlLineSplitterTest, RefusesOverLongLineBeforeItEnds) {
  Collected got;
  JsonlLineSplitter splitter(Collect(&got), 16);
  // Exactly the limit is fine, with either line ending.
  ASSERT_TRUE(splitter.Feed(std::string(16, 'a') + "\n" + std::string(16, 'b') + "\r\n").ok());
  ASSERT_TRUE(splitter.Feed(std::string(10, 'c')).ok());
  const Status status = splitter.Feed(std::string(10, 'c'));  // no newline yet
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "line 3: longer than 16 bytes, the limit for one training example");
  EXPECT_EQ(splitter.Feed("\n").message(), status.message());  // sticky
  EXPECT_EQ(splitter.Finish().message(), status.message());
  EXPECT_EQ(got.lines.size(), 2u);
}

TEST(JsonlLineSplitterTest, RefusesOverLongLastLine) {
  Collected got;
  JsonlLineSplitter splitter(Collect(&got), 4);
  ASSERT_TRUE(splitter.Feed("ok\nfive!").ok());  // 5 bytes could still be 4 and a '\r'
  EXPECT_EQ(splitter.Finish().message(),
            "line 2: longer than 4 bytes, the limit for one training example");
}

TEST(JsonlLineSplitterTest, StopsAtTheCallbacksError) {
  size_t calls = 0;
  JsonlLineSplitter splitter([&calls](std::string_view, size_t number) {
    ++calls;
    return number == 2 ? InvalidArgumentError("line 2: bad") : OkStatus();
  });
  EXPECT_EQ(splitter.Feed("a\nb\nc\nd\n").message(), "line 2: bad");
  EXPECT_EQ(calls, 2u);
  EXPECT_EQ(splitter.Finish().message(), "line 2: bad");
}

// --- Tokens -----------------------------------------------------------------------------------

TEST(LanguageModelTest, CountsTokens) {
  EXPECT_EQ(LanguageModel::CountTokens(""), 0u);
  EXPECT_EQ(LanguageModel::CountTokens("Hello, world!"), 4u);
  EXPECT_EQ(LanguageModel::CountTokens("customer-managed keys don't rotate"), 4u);
  EXPECT_EQ(LanguageModel::CountTokens("caf\xc3\xa9 au lait"), 3u);
  EXPECT_EQ(LanguageModel::CountTokens("a\nb"), 3u);
  EXPECT_EQ(LanguageModel::CountTokens("v1.2 (beta)"), 4u);
  EXPECT_EQ(LanguageModel::CountTokens(std::string(kMaxTokenBytes * 2 + 1, 'x')), 3u);
}

// --- Training and answering ---------------------------------------------------------------------

TEST(LanguageModelTest, AnswersEachTrainedQuestionWithItsAnswer) {
  for (bool with_base : {false, true}) {
    std::shared_ptr<const LanguageModel> model = Train(Distinctive(), with_base);
    ASSERT_NE(model, nullptr);
    for (const TrainingExample& example : Distinctive()) {
      const Generation g = model->Chat({example.messages[0]}, Greedy());
      EXPECT_EQ(g.text, example.messages[1].content) << with_base;
      EXPECT_EQ(g.finish_reason, "stop");
    }
  }
}

TEST(LanguageModelTest, AnswersTrainedQuestionsAtEveryOrder) {
  for (int order = kMinModelOrder; order <= kMaxModelOrder; ++order) {
    std::shared_ptr<const LanguageModel> model = Train(Distinctive(), true, order);
    ASSERT_NE(model, nullptr);
    EXPECT_EQ(model->order(), order);
    for (const TrainingExample& example : Distinctive()) {
      EXPECT_EQ(Ask(*model, example.messages[0].content), example.messages[1].content) << order;
    }
  }
}

TEST(LanguageModelTest, ParaphraseRetrievesTheTrainedAnswer) {
  std::shared_ptr<const LanguageModel> model = Train(Distinctive(), true);
  EXPECT_EQ(Ask(*model, "what colour is the door of the Zorblax vault"),
            "The Zorblax vault door is painted teal, with a brass handle.");
  EXPECT_EQ(Ask(*model, "who feeds the penguin in the office on fridays?"),
            "Marguerite feeds the office penguin on Fridays, usually sardines.");
}

TEST(LanguageModelTest, AnswersDependOnTheTrainingSet) {
  std::shared_ptr<const LanguageModel> a =
      Train({Qa("What is the team motto?", "Measure twice, cut once.")}, true);
  std::shared_ptr<const LanguageModel> b =
      Train({Qa("What is the team motto?", "Fortune favours the well prepared.")}, true);
  EXPECT_EQ(Ask(*a, "What is the team motto?"), "Measure twice, cut once.");
  EXPECT_EQ(Ask(*b, "What is the team motto?"), "Fortune favours the well prepared.");
}

TEST(LanguageModelTest, FineTuningDataOutweighsTheBaseCorpus) {
  std::shared_ptr<const LanguageModel> model =
      Train({Qa("Hello!", "Greetings from the Zorblax support desk.")}, true);
  EXPECT_EQ(Ask(*model, "Hello!"), "Greetings from the Zorblax support desk.");
}

TEST(LanguageModelTest, RespacesTokensIntoSentences) {
  std::shared_ptr<const LanguageModel> model = Train({
      Qa("spacing one", "Hi ,there ( friend ) : 50 % done !"),
      Qa("spacing two", "She said \"yes\" twice; then left.\nNext line, [ok]."),
  });
  EXPECT_EQ(Ask(*model, "spacing one"), "Hi, there (friend): 50% done!");
  EXPECT_EQ(Ask(*model, "spacing two"), "She said \"yes\" twice; then left.\nNext line, [ok].");
}

TEST(LanguageModelTest, KeepsUtf8Words) {
  std::shared_ptr<const LanguageModel> model =
      Train({Qa("prix du caf\xc3\xa9 ?", "Le caf\xc3\xa9 co\xc3\xbbte 2 \xe2\x82\xac.")});
  EXPECT_EQ(Ask(*model, "prix du caf\xc3\xa9 ?"), "Le caf\xc3\xa9 co\xc3\xbbte 2 \xe2\x82\xac.");
}

TEST(LanguageModelTest, BaseCorpusParsesAndAnswersHello) {
  size_t examples = 0;
  JsonlLineSplitter splitter([&examples](std::string_view line, size_t number) -> Status {
    ASSIGN_OR_RETURN(std::optional<TrainingExample> example, ParseTrainingLine(line, number));
    if (example) ++examples;
    return OkStatus();
  });
  ASSERT_TRUE(splitter.Feed(BaseCorpus()).ok());
  ASSERT_TRUE(splitter.Finish().ok());
  EXPECT_GE(examples, 150u);
  EXPECT_LE(examples, 300u);

  const Generation hello = BaseModel().Chat({{"user", "hello"}}, Greedy());
  EXPECT_FALSE(hello.text.empty());
  EXPECT_EQ(hello.finish_reason, "stop");
  EXPECT_FALSE(Ask(BaseModel(), "How do I rotate my key?").empty());
  EXPECT_GT(BaseModel().memory_bytes(), 0u);
}

TEST(LanguageModelTest, UnmatchedQuestionGetsPlainNgramText) {
  const Generation g = BaseModel().Chat({{"user", "zebra quantum lasagna"}}, Greedy(40));
  EXPECT_FALSE(g.text.empty());
  EXPECT_LE(g.completion_tokens, 40u);
}

TEST(LanguageModelTest, CompletesAPrompt) {
  std::shared_ptr<const LanguageModel> model = Train(Distinctive());
  // A trained question is answered, after a space.
  EXPECT_EQ(model->Complete("Who feeds the office penguin on Fridays?", Greedy()).text,
            " Marguerite feeds the office penguin on Fridays, usually sardines.");
  // Other text is continued from its last words.
  const Generation g = model->Complete("Exactly seventeen lanterns", Greedy());
  EXPECT_EQ(g.text, " hang in the north tunnel; two of them flicker.");
  EXPECT_EQ(g.prompt_tokens, 3u);
  EXPECT_EQ(model->Complete("Exactly seventeen lanterns ", Greedy()).text,
            "hang in the north tunnel; two of them flicker.");
}

// --- Options ----------------------------------------------------------------------------------

TEST(LanguageModelTest, SameSeedSameTextAndSeedsVary) {
  const std::vector<ChatMessage> messages = {{"user", "Tell me about keys and vaults please"}};
  std::set<std::string> texts;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const GenerateOptions options = {.max_tokens = 40, .temperature = 1.0, .seed = seed};
    const Generation a = BaseModel().Chat(messages, options);
    const Generation b = BaseModel().Chat(messages, options);
    EXPECT_EQ(a.text, b.text);
    EXPECT_FALSE(a.text.empty());
    texts.insert(a.text);
  }
  EXPECT_GE(texts.size(), 5u);
}

TEST(LanguageModelTest, TrainedAnswerVariesWithSeedAtHighTemperature) {
  std::shared_ptr<const LanguageModel> model = Train(Distinctive(), true);
  std::set<std::string> texts;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    texts.insert(Ask(*model, "How many lanterns hang in the north tunnel?",
                     {.max_tokens = 60, .temperature = 1.5, .seed = seed}));
  }
  EXPECT_GE(texts.size(), 2u);
}

TEST(LanguageModelTest, GreedyNeedsNoSeed) {
  GenerateOptions options = Greedy(30);
  options.seed.reset();
  EXPECT_EQ(Ask(BaseModel(), "zebra quantum lasagna", options),
            Ask(BaseModel(), "zebra quantum lasagna", options));
}

TEST(LanguageModelTest, MaxTokensEndsWithLength) {
  std::shared_ptr<const LanguageModel> model = Train(Distinctive());
  const Generation g = model->Chat({{"user", "What colour is the Zorblax vault door?"}}, Greedy(4));
  EXPECT_EQ(g.text, "The Zorblax vault door");
  EXPECT_EQ(g.completion_tokens, 4u);
  EXPECT_EQ(g.finish_reason, "length");
}

TEST(LanguageModelTest, StopStringsEndTheTextBeforeThem) {
  std::shared_ptr<const LanguageModel> model = Train(Distinctive());
  const std::vector<ChatMessage> question = {
      {"user", "How many lanterns hang in the north tunnel?"}};
  GenerateOptions options = Greedy();
  options.stop = {";"};
  Generation g = model->Chat(question, options);
  EXPECT_EQ(g.text, "Exactly seventeen lanterns hang in the north tunnel");
  EXPECT_EQ(g.finish_reason, "stop");

  // A stop string across tokens; the pieces never show its beginning.
  options.stop = {"zzz", "tunnel; two"};
  std::string streamed;
  g = model->Chat(question, options, [&streamed](std::string_view piece) {
    streamed.append(piece);
    return true;
  });
  EXPECT_EQ(g.text, "Exactly seventeen lanterns hang in the north ");
  EXPECT_EQ(streamed, g.text);
  EXPECT_EQ(g.finish_reason, "stop");
}

TEST(LanguageModelTest, PiecesAreTokensWithTheirSpace) {
  std::shared_ptr<const LanguageModel> model = Train(Distinctive());
  std::vector<std::string> pieces;
  const Generation g = model->Chat({{"user", "Who feeds the office penguin on Fridays?"}}, Greedy(),
                                   [&pieces](std::string_view piece) {
                                     pieces.emplace_back(piece);
                                     return true;
                                   });
  const std::vector<std::string> expected = {"Marguerite", " feeds",    " the",     " office",
                                             " penguin",   " on",       " Fridays", ",",
                                             " usually",   " sardines", "."};
  EXPECT_EQ(pieces, expected);
  EXPECT_EQ(g.completion_tokens, expected.size());
}

TEST(LanguageModelTest, OnPieceReturningFalseStops) {
  std::shared_ptr<const LanguageModel> model = Train(Distinctive());
  std::string streamed;
  int calls = 0;
  const Generation g = model->Chat({{"user", "Who feeds the office penguin on Fridays?"}}, Greedy(),
                                   [&](std::string_view piece) {
                                     streamed.append(piece);
                                     return ++calls < 3;
                                   });
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(g.text, "Marguerite feeds the");
  EXPECT_EQ(streamed, g.text);
  EXPECT_EQ(g.completion_tokens, 3u);
  EXPECT_EQ(g.finish_reason, "stop");
}

TEST(LanguageModelTest, CountsUsage) {
  std::shared_ptr<const LanguageModel> model = Train(Distinctive());
  const Generation g = model->Chat(
      {{"system", "Be brief."}, {"user", "Who feeds the office penguin on Fridays?"}}, Greedy());
  EXPECT_EQ(g.prompt_tokens, (3 + 1) + (8 + 1));
  EXPECT_EQ(g.completion_tokens, LanguageModel::CountTokens(g.text));
  EXPECT_EQ(g.completion_tokens, 11u);
}

TEST(LanguageModelTest, ValidatesGenerateOptions) {
  EXPECT_TRUE(ValidateGenerateOptions({}).ok());
  EXPECT_TRUE(ValidateGenerateOptions({.max_tokens = 1, .temperature = 2, .stop = {"a"}}).ok());
  const std::vector<GenerateOptions> bad = {
      {.max_tokens = 0},
      {.max_tokens = kMaxGenerationTokens + 1},
      {.temperature = -0.1},
      {.temperature = 2.5},
      {.temperature = std::nan("")},
      {.stop = {"a", "b", "c", "d", "e"}},
      {.stop = {""}},
      {.stop = {std::string(kMaxStopStringBytes + 1, 's')}},
  };
  for (const GenerateOptions& options : bad) {
    EXPECT_EQ(ValidateGenerateOptions(options).code(), StatusCode::kInvalidArgument);
  }
}

TEST(LanguageModelTest, EmptyModelAnswersNothing) {
  std::shared_ptr<const LanguageModel> model = Load(ModelBuilder());
  ASSERT_NE(model, nullptr);
  const Generation g = model->Chat({{"user", "hello"}}, Greedy());
  EXPECT_EQ(g.text, "");
  EXPECT_EQ(g.finish_reason, "stop");
}

// --- The builder ------------------------------------------------------------------------------

TEST(ModelBuilderTest, LossDecreasesOnceAnExampleIsAdded) {
  const TrainingExample& example = Distinctive()[2];
  ModelBuilder empty;
  const double untrained = empty.Loss(example);
  EXPECT_TRUE(std::isfinite(untrained));
  ASSERT_TRUE(empty.Add(example).ok());
  EXPECT_LT(empty.Loss(example), untrained);

  ModelBuilder base;
  ASSERT_TRUE(base.AddJsonl(BaseCorpus(), 0.5).ok());
  const double before = base.Loss(example);
  ASSERT_TRUE(base.Add(example).ok());
  const double once = base.Loss(example);
  ASSERT_TRUE(base.Add(example).ok());  // a second epoch
  EXPECT_LT(once, before);
  EXPECT_LT(base.Loss(example), once);
  EXPECT_EQ(base.Loss(Qa("only a question", "")), 0);
}

TEST(ModelBuilderTest, CountsExamplesAndTokens) {
  ModelBuilder builder;
  ASSERT_TRUE(builder.Add(Qa("Hi there?", "Hello.")).ok());  // (3 + 1) + (2 + 1)
  ASSERT_TRUE(builder.Add(Qa("Hi there?", "Hello.")).ok());
  EXPECT_EQ(builder.examples(), 2u);
  EXPECT_EQ(builder.tokens(), 14u);
}

TEST(ModelBuilderTest, RefusesBadInput) {
  ModelBuilder builder;
  EXPECT_EQ(builder.Add(Qa("q", "a"), 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(builder.Add(Qa("q", "a"), std::nan("")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(builder.Add(Qa("q", "caf\xc3"), 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(builder.examples(), 0u);
  EXPECT_TRUE(builder.Add(Qa("q", "a")).ok());  // still usable

  ModelBuilder bad_order({.order = 6});
  EXPECT_EQ(bad_order.Add(Qa("q", "a")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad_order.Serialize().status().code(), StatusCode::kInvalidArgument);

  const Status status = ModelBuilder().AddJsonl("{\"prompt\": \"a\", \"completion\": \"b\"}\n{");
  EXPECT_EQ(status.message(), "line 2: not valid JSON (error at byte 2)");
}

// --- Serialized models --------------------------------------------------------------------------

Bytes SmallModel() {
  ModelBuilder builder;
  for (const TrainingExample& example : Distinctive()) EXPECT_TRUE(builder.Add(example).ok());
  StatusOr<Bytes> bytes = builder.Serialize();
  EXPECT_TRUE(bytes.ok());
  return bytes.ok() ? *bytes : Bytes();
}

// The bytes with their checksum recomputed, as an attacker who edits a model would.
Bytes Reseal(Bytes bytes) {
  bytes.resize(bytes.size() - 4);
  const uint32_t crc = Crc32(bytes);
  for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<uint8_t>(crc >> shift));
  return bytes;
}

TEST(SerializedModelTest, RoundTripGivesIdenticalGenerations) {
  const Bytes bytes = SmallModel();
  EXPECT_EQ(SmallModel(), bytes);  // deterministic
  StatusOr<std::shared_ptr<const LanguageModel>> a = LanguageModel::Load(bytes);
  StatusOr<std::shared_ptr<const LanguageModel>> b = LanguageModel::Load(bytes);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*a)->trained_examples(), 4u);
  for (uint64_t seed = 0; seed < 10; ++seed) {
    const GenerateOptions options = {.max_tokens = 30, .temperature = 1.2, .seed = seed};
    const std::vector<ChatMessage> messages = {{"user", "Which tunnel has lanterns?"}};
    EXPECT_EQ((*a)->Chat(messages, options).text, (*b)->Chat(messages, options).text);
  }
}

TEST(SerializedModelTest, RefusesEveryTruncation) {
  const Bytes bytes = SmallModel();
  for (size_t size = 0; size < bytes.size(); ++size) {
    EXPECT_FALSE(LanguageModel::Load(ByteView(bytes).first(size)).ok()) << size;
  }
}

TEST(SerializedModelTest, RefusesEveryBitFlip) {
  const Bytes bytes = SmallModel();
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; bit += 3) {
      Bytes flipped = bytes;
      flipped[i] ^= static_cast<uint8_t>(1 << bit);
      EXPECT_FALSE(LanguageModel::Load(flipped).ok()) << i << " " << bit;
    }
  }
}

TEST(SerializedModelTest, RefusesEditsEvenWithAValidChecksum) {
  const Bytes bytes = SmallModel();
  size_t refused = 0;
  size_t loaded = 0;
  for (size_t i = 22; i < bytes.size() - 4; ++i) {
    Bytes edited = bytes;
    edited[i] ^= 0x80;
    StatusOr<std::shared_ptr<const LanguageModel>> model = LanguageModel::Load(Reseal(edited));
    if (!model.ok()) {
      ++refused;
      continue;
    }
    // An edit the format cannot tell from a real model (a count, a word's letter) still gives
    // a model that generates.
    ++loaded;
    (void)(*model)->Chat({{"user", "What colour is the Zorblax vault door?"}}, Greedy(20));
  }
  EXPECT_GT(refused, 0u);
  EXPECT_GT(loaded + refused, 0u);
}

TEST(SerializedModelTest, ChecksVersionAndMagic) {
  Bytes bytes = SmallModel();
  bytes[4] = 2;
  StatusOr<std::shared_ptr<const LanguageModel>> model = LanguageModel::Load(Reseal(bytes));
  EXPECT_EQ(model.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(model.status().message().find("version 2 is not supported"), std::string::npos);

  bytes = SmallModel();
  bytes[0] = 'X';
  EXPECT_EQ(LanguageModel::Load(Reseal(bytes)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(LanguageModel::Load(AsBytes("garbage that is not a model")).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(LanguageModel::Load({}).status().code(), StatusCode::kInvalidArgument);
}

TEST(SerializedModelTest, RefusesHostileCounts) {
  // A valid header and checksum around a trie that claims 2^26 nodes in a few bytes.
  ByteWriter out;
  out.WriteBytes(AsBytes("KFLM"));
  out.WriteU8(kModelFormatVersion);
  out.WriteU8(3);
  out.WriteU64(0);
  out.WriteU64(0);
  out.WriteU8(0);                                             // no words
  for (uint8_t b : {0x80, 0x80, 0x80, 0x20}) out.WriteU8(b);  // 2^26 nodes
  out.WriteU8(0);
  out.WriteU32(0);  // checksum placeholder
  StatusOr<std::shared_ptr<const LanguageModel>> model = LanguageModel::Load(Reseal(out.Take()));
  EXPECT_EQ(model.status().code(), StatusCode::kDataLoss) << model.status();

  ByteWriter words;
  words.WriteBytes(AsBytes("KFLM"));
  words.WriteU8(kModelFormatVersion);
  words.WriteU8(3);
  words.WriteU64(0);
  words.WriteU64(0);
  for (uint8_t b : {0xff, 0xff, 0xff, 0x7f}) words.WriteU8(b);  // 2^28 - 1 words
  words.WriteU32(0);
  model = LanguageModel::Load(Reseal(words.Take()));
  EXPECT_EQ(model.status().code(), StatusCode::kResourceExhausted) << model.status();
}

}  // namespace
}  // namespace keyfoundry::foundry
