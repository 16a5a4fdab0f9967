// What kf prints: JSON (az's default) or, with -o table, az's compact tables; and errors.
#include <algorithm>
#include <iostream>

#include "cli/commands.h"

namespace keyfoundry::cli {
namespace {

int exit_code = 0;
std::string output_format = "json";

// A cell as az's table shows it: strings as they are, booleans as Python prints them.
std::string CellText(const nlohmann::json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  return v.dump();
}

void PrintTable(const nlohmann::json& value, const std::vector<Column>& columns) {
  if (value.is_null()) return;
  std::vector<nlohmann::json> rows;
  if (value.is_array()) {
    rows.assign(value.begin(), value.end());
  } else {
    rows.push_back(value);
  }
  std::vector<std::vector<std::string>> cells;
  cells.reserve(rows.size());
  std::vector<size_t> widths;
  widths.reserve(columns.size());
  for (const Column& c : columns) widths.push_back(c.heading.size());
  for (const auto& row : rows) {
    std::vector<std::string> line;
    line.reserve(columns.size());
    for (size_t i = 0; i < columns.size(); ++i) {
      line.push_back(CellText(columns[i].cell(row)));
      widths[i] = std::max(widths[i], line.back().size());
    }
    cells.push_back(std::move(line));
  }
  auto print_line = [&](const std::vector<std::string>& line) {
    std::string text;
    for (size_t i = 0; i < line.size(); ++i) {
      text += line[i];
      if (i + 1 < line.size()) text += std::string(widths[i] - line[i].size() + 2, ' ');
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    std::cout << text << "\n";
  };
  std::vector<std::string> headings;
  std::vector<std::string> rules;
  for (size_t i = 0; i < columns.size(); ++i) {
    headings.push_back(columns[i].heading);
    rules.push_back(std::string(widths[i], '-'));
  }
  print_line(headings);
  print_line(rules);
  for (const auto& line : cells) print_line(line);
}

// az's generic table: the scalar members of the (first) row, as columns.
std::vector<Column> ScalarColumns(const nlohmann::json& value) {
  const nlohmann::json* first = &value;
  if (value.is_array()) {
    if (value.empty()) return {};
    first = &value[0];
  }
  std::vector<Column> columns;
  if (!first->is_object()) {
    columns.push_back({"Result", [](const nlohmann::json& row) { return row; }});
    return columns;
  }
  for (const auto& [name, v] : first->items()) {
    if (v.is_structured()) continue;
    std::string heading = name;
    if (!heading.empty()) heading[0] = static_cast<char>(std::toupper(heading[0]));
    columns.push_back(Field(heading, "/" + name));
  }
  return columns;
}

}  // namespace

void AddOutputOption(CLI::App& app) {
  app.add_option("-o,--output", output_format, "output format: json (default) or table")
      ->check(CLI::IsMember({"json", "table"}, CLI::ignore_case))
      ->transform(CLI::IsMember({"json", "table"}, CLI::ignore_case));
}

OutputFormat Output() {
  return output_format == "table" ? OutputFormat::kTable : OutputFormat::kJson;
}

Column Field(std::string heading, const std::string& json_pointer) {
  nlohmann::json::json_pointer pointer(json_pointer);
  return {std::move(heading), [pointer](const nlohmann::json& row) {
            return row.contains(pointer) ? row.at(pointer) : nlohmann::json();
          }};
}

Column TimeField(std::string heading, const std::string& json_pointer) {
  nlohmann::json::json_pointer pointer(json_pointer);
  return {std::move(heading), [pointer](const nlohmann::json& row) {
            if (!row.contains(pointer) || !row.at(pointer).is_number_integer()) {
              return nlohmann::json();
            }
            return nlohmann::json(FormatIso8601(row.at(pointer).get<int64_t>()));
          }};
}

void Print(const nlohmann::json& value, const std::vector<Column>& columns) {
  if (Output() == OutputFormat::kTable) {
    PrintTable(value, columns);
    return;
  }
  if (value.is_null()) return;
  std::cout << value.dump(2) << "\n";
}

void PrintJson(const nlohmann::json& value) { Print(value, ScalarColumns(value)); }

bool Check(const Status& status) {
  if (status.ok()) return true;
  std::cerr << "ERROR: " << status.message() << "\n";
  exit_code = 1;
  return false;
}

int ExitCode() { return exit_code; }

}  // namespace keyfoundry::cli
