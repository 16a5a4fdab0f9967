// kf: the keyfoundry command line, shaped like `az`.
//
//   kf login [--server URL] [--ca FILE] [-u USER] [-p PASSWORD] [--service-principal] [--tenant T]
//   kf logout
//   kf account show
//   kf ad sp create --display-name NAME      kf ad sp list
//   kf role assignment create --assignee ID --role NAME|ID --scope SCOPE
//   kf role assignment list [--scope SCOPE] [--assignee ID]
//   kf role assignment delete --ids ID... | --assignee ID --role NAME|ID --scope SCOPE
//
// Output is JSON on stdout, as `az` prints by default; errors go to stderr with exit status 1.
// One file per command group: login.cc, account.cc, ad.cc, role.cc.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"kf: the keyfoundry command line"};
  app.require_subcommand(1);
  keyfoundry::cli::AddLoginCommands(app);
  keyfoundry::cli::AddAccountCommands(app);
  keyfoundry::cli::AddAdCommands(app);
  keyfoundry::cli::AddRoleCommands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return keyfoundry::cli::ExitCode();
}
