// Starts `rulebook lsp` for the TOML and Rhai files of a policy folder.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration("rulebook");
  const command = config.get("path") || "rulebook";
  const data = config.get("data");
  client = new LanguageClient(
    "rulebook",
    "rulebook",
    { command, args: ["lsp"] },
    {
      documentSelector: [
        { scheme: "file", pattern: "**/*.toml" },
        { scheme: "file", pattern: "**/*.rhai" },
      ],
      initializationOptions: data ? { rulebook: { data } } : {},
    }
  );
  client.start();
  context.subscriptions.push(client);
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
