// kf: the keyfoundry command line, shaped like `az`.
//
//   kf login [--server URL] [--ca FILE] [-u USER] [-p PASSWORD] [--service-principal] [--tenant T]
//   kf logout
//   kf account show
//   kf ad sp create --display-name NAME      kf ad sp list
//   kf role assignment create --assignee ID --role NAME|ID --scope SCOPE
//   kf role assignment list [--scope SCOPE] [--assignee ID]
//   kf role assignment delete --ids ID... | --assignee ID --role NAME|ID --scope SCOPE
//   kf group create|list|show|delete
//   kf keyvault create|show|list|update|delete|list-deleted|recover|purge
//   kf keyvault set-policy|delete-policy    kf keyvault network-rule add|remove|list
//   kf keyvault key create|import|show|list|list-versions|set-attributes|delete|show-deleted|
//                   list-deleted|recover|purge|backup|restore|rotate|encrypt|decrypt|sign|verify
//   kf keyvault key rotation-policy show|update
//   kf audit list|verify
//   kf cognitiveservices account create|update|show|list|delete
//   kf cognitiveservices account identity assign|remove|show    ... keys list|regenerate
//   kf cognitiveservices account encryption show|reprocess|retire
//   kf cognitiveservices account deployment create|list|show|delete
//   kf cognitiveservices cmk-approval grant|revoke|list
//   kf openai file upload|list|show|download|delete
//   kf openai fine-tuning job create|list|show|events|checkpoints|cancel
//   kf openai model list    kf openai chat
// (docs/cli.md has every flag.)
//
// Output is JSON on stdout, as `az` prints by default, or a table with -o table (anywhere on the
// command line); errors go to stderr with exit status 1. One file per command group: login.cc,
// account.cc, ad.cc, role.cc, group.cc, keyvault.cc, key.cc, audit.cc; shared: session.cc
// (profile, tokens, paging), output.cc, args.cc.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"kf: the keyfoundry command line"};
  app.require_subcommand(1);
  // Subcommands hand options they do not know to their parents, so the global -o works after
  // them, as az's does (`kf keyvault list -o table`).
  app.fallthrough();
  keyfoundry::cli::AddOutputOption(app);
  keyfoundry::cli::AddLoginCommands(app);
  keyfoundry::cli::AddAccountCommands(app);
  keyfoundry::cli::AddAdCommands(app);
  keyfoundry::cli::AddRoleCommands(app);
  keyfoundry::cli::AddGroupCommands(app);
  keyfoundry::cli::AddKeyVaultCommands(app);
  keyfoundry::cli::AddAuditCommands(app);
  keyfoundry::cli::AddCognitiveServicesCommands(app);
  keyfoundry::cli::AddOpenAiCommands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return keyfoundry::cli::ExitCode();
}
