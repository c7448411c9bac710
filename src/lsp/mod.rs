//! `rulebook lsp`: a language server for policy folders, over stdio (JSON-RPC with
//! `Content-Length` framing, on `lsp-server`).
//!
//! - **Diagnostics as you type**: every change reloads the policy set with the editor's
//!   unsaved texts ([`crate::policy::load_overlay`]) and publishes `rulebook check`'s
//!   diagnostics for every file of the set (an empty list for a file that has none now).
//! - **Hover, definition, references** on the names of the set, also inside Rhai expressions
//!   in TOML strings ([`index`]); hover on a rule function ([`crate::script::BUILTIN_DOCS`])
//!   and on a diagnostic (its `check --explain` text) ([`hover`]).
//! - **Completion** inside expressions and `where` column names ([`complete`]).
//! - **Code lens** on each rule: pass/fail counts on a sample dataset ([`lens`]).
//!
//! Modules: [`text`] (positions, TOML strings), [`index`] (declarations and uses), [`hover`],
//! [`complete`], [`lens`]; this file holds the server loop and the diagnostics.

pub mod complete;
pub mod hover;
pub mod index;
pub mod lens;
pub mod text;

use crate::diag::{Diag, Level};
use crate::policy;
use crate::script::Limits;
use index::Index;
use lsp_server::{Connection, Message, Notification, Request, RequestId, Response};
use lsp_types::notification::Notification as _;
use lsp_types::request::Request as _;
use lsp_types::{
    CodeLensOptions, CompletionOptions, DiagnosticRelatedInformation, DiagnosticSeverity,
    InitializeParams, Location, NumberOrString, OneOf, PublishDiagnosticsParams,
    ServerCapabilities, TextDocumentSyncCapability, TextDocumentSyncKind, Url,
};
use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Errors that stop the server (the connection broke, a message could not be read).
pub type ServerError = Box<dyn Error + Send + Sync>;

/// Run the language server on stdin/stdout until the client says `exit`.
pub fn run() -> Result<(), ServerError> {
    let (conn, threads) = Connection::stdio();
    let caps = serde_json::to_value(capabilities())?;
    let init = conn.initialize(caps)?;
    let params: InitializeParams = serde_json::from_value(init)?;
    let mut server = Server::new(&params);
    server.reload(&conn)?;
    server.refresh_lenses();
    server.main_loop(&conn)?;
    drop(conn);
    threads.join()?;
    Ok(())
}

fn capabilities() -> ServerCapabilities {
    ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::FULL)),
        hover_provider: Some(lsp_types::HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec![".".into(), "\"".into(), "{".into()]),
            ..CompletionOptions::default()
        }),
        code_lens_provider: Some(CodeLensOptions {
            resolve_provider: Some(false),
        }),
        ..ServerCapabilities::default()
    }
}

/// The server's state: the policy folder, the editor's unsaved texts, the index.
pub struct Server {
    /// The policy folder (with `policy.toml`), once known.
    root: Option<PathBuf>,
    /// The sample dataset folder lenses are counted on, if configured.
    data: Option<PathBuf>,
    /// Texts of the open files, as the editor has them.
    open: HashMap<PathBuf, String>,
    /// Texts of every file of the set, as last loaded.
    texts: HashMap<PathBuf, String>,
    /// Declarations and uses.
    index: Index,
    /// Diagnostics by file: byte range and code (hovers explain the code).
    diags: HashMap<PathBuf, Vec<(Range<usize>, &'static str)>>,
    /// Files diagnostics were published for (to clear them).
    published: HashSet<PathBuf>,
    /// Code lenses by file, from the last save.
    lenses: HashMap<PathBuf, Vec<lsp_types::CodeLens>>,
}

/// The policy folder at or under `dir`: `dir` itself or its `policies/`.
fn find_root(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("policies")]
        .into_iter()
        .find(|d| d.join("policy.toml").is_file())
        .map(|d| canonical(&d))
}

/// The policy folder holding `file` (the nearest folder upwards with a `policy.toml`).
fn root_of(file: &Path) -> Option<PathBuf> {
    file.ancestors()
        .skip(1)
        .find(|d| d.join("policy.toml").is_file())
        .map(canonical)
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// The path of a `file:` URI (its canonical form when the file exists).
pub fn uri_path(uri: &Url) -> Option<PathBuf> {
    uri.to_file_path().ok().map(|p| canonical(&p))
}

/// The `file:` URI of a path.
pub fn path_uri(p: &Path) -> Option<Url> {
    Url::from_file_path(p).ok()
}

impl Server {
    /// A server for the workspace `params` names; its settings from `initializationOptions`
    /// (`{"rulebook": {"data": "…"}}` or `{"data": "…"}`) or the workspace's `rulebook.toml`.
    pub fn new(params: &InitializeParams) -> Server {
        #[allow(deprecated)]
        let workspace = params
            .workspace_folders
            .as_ref()
            .and_then(|f| f.first())
            .map(|f| f.uri.clone())
            .or_else(|| params.root_uri.clone())
            .and_then(|u| uri_path(&u));
        let root = workspace.as_deref().and_then(find_root);
        let data = lens::data_setting(params.initialization_options.as_ref(), workspace.as_deref());
        Server {
            root,
            data,
            open: HashMap::new(),
            texts: HashMap::new(),
            index: Index::default(),
            diags: HashMap::new(),
            published: HashSet::new(),
            lenses: HashMap::new(),
        }
    }

    fn main_loop(&mut self, conn: &Connection) -> Result<(), ServerError> {
        for msg in &conn.receiver {
            match msg {
                Message::Request(req) => {
                    if conn.handle_shutdown(&req)? {
                        return Ok(());
                    }
                    let resp = self.request(&req);
                    conn.sender.send(Message::Response(resp))?;
                }
                Message::Notification(n) => self.notification(conn, n)?,
                Message::Response(_) => {}
            }
        }
        Ok(())
    }

    fn request(&mut self, req: &Request) -> Response {
        let id: RequestId = req.id.clone();
        let result = match req.method.as_str() {
            lsp_types::request::HoverRequest::METHOD => {
                parse(req).map(|p| to_json(hover::hover(self, &p)))
            }
            lsp_types::request::GotoDefinition::METHOD => {
                parse(req).map(|p| to_json(self.definition(&p)))
            }
            lsp_types::request::References::METHOD => {
                parse(req).map(|p| to_json(self.references(&p)))
            }
            lsp_types::request::Completion::METHOD => {
                parse(req).map(|p| to_json(complete::complete(self, &p)))
            }
            lsp_types::request::CodeLensRequest::METHOD => parse::<lsp_types::CodeLensParams>(req)
                .map(|p| {
                    let lenses = uri_path(&p.text_document.uri)
                        .and_then(|f| self.lenses.get(&f).cloned())
                        .unwrap_or_default();
                    to_json(lenses)
                }),
            _ => {
                return Response::new_err(
                    id,
                    lsp_server::ErrorCode::MethodNotFound as i32,
                    format!("unknown method {}", req.method),
                );
            }
        };
        match result {
            Ok(v) => Response::new_ok(id, v),
            Err(e) => Response::new_err(id, lsp_server::ErrorCode::InvalidParams as i32, e),
        }
    }

    fn notification(&mut self, conn: &Connection, n: Notification) -> Result<(), ServerError> {
        use lsp_types::notification::{
            DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, DidSaveTextDocument,
        };
        match n.method.as_str() {
            DidOpenTextDocument::METHOD => {
                let p: lsp_types::DidOpenTextDocumentParams = serde_json::from_value(n.params)?;
                if let Some(path) = uri_path(&p.text_document.uri) {
                    if self.root.is_none() {
                        self.root = root_of(&path);
                        self.refresh_lenses();
                    }
                    self.open.insert(path, p.text_document.text);
                }
                self.reload(conn)?;
            }
            DidChangeTextDocument::METHOD => {
                let p: lsp_types::DidChangeTextDocumentParams = serde_json::from_value(n.params)?;
                if let (Some(path), Some(change)) = (
                    uri_path(&p.text_document.uri),
                    p.content_changes.into_iter().last(),
                ) {
                    self.open.insert(path, change.text);
                }
                self.reload(conn)?;
            }
            DidCloseTextDocument::METHOD => {
                let p: lsp_types::DidCloseTextDocumentParams = serde_json::from_value(n.params)?;
                if let Some(path) = uri_path(&p.text_document.uri) {
                    self.open.remove(&path);
                }
                self.reload(conn)?;
            }
            DidSaveTextDocument::METHOD => {
                self.refresh_lenses();
                // Editors ask for lenses again when told they changed.
                let req = Request::new(
                    RequestId::from("rulebook/codeLens/refresh".to_string()),
                    lsp_types::request::CodeLensRefresh::METHOD.to_string(),
                    serde_json::Value::Null,
                );
                conn.sender.send(Message::Request(req))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Load the set with the editor's texts, index it and publish its diagnostics.
    pub fn reload(&mut self, conn: &Connection) -> Result<(), ServerError> {
        let Some(root) = self.root.clone() else {
            return Ok(());
        };
        let (sources, diags) = match policy::load_overlay(&root, &Limits::default(), &self.open) {
            Ok(set) => (set.sources, set.warnings),
            Err(f) => (f.sources, f.diags),
        };
        let files: Vec<(PathBuf, String)> = (0..sources.len())
            .map(|id| {
                (
                    PathBuf::from(sources.name(id)),
                    sources.text(id).to_string(),
                )
            })
            .collect();
        self.index = Index::build(&files);
        self.texts = files.iter().cloned().collect();
        let mut by_file: HashMap<PathBuf, Vec<lsp_types::Diagnostic>> =
            files.iter().map(|(p, _)| (p.clone(), Vec::new())).collect();
        self.diags.clear();
        let manifest = root.join("policy.toml");
        for d in &diags {
            let (path, span) = match &d.loc {
                Some(loc) => (
                    files
                        .get(loc.file)
                        .map(|f| f.0.clone())
                        .unwrap_or(manifest.clone()),
                    loc.span.clone(),
                ),
                None => (manifest.clone(), 0..0),
            };
            let text = self.texts.get(&path).map(String::as_str).unwrap_or("");
            by_file
                .entry(path.clone())
                .or_default()
                .push(to_lsp(d, text, &span, &path));
            self.diags.entry(path).or_default().push((span, d.code));
        }
        let now: HashSet<PathBuf> = by_file.keys().cloned().collect();
        for gone in self.published.difference(&now) {
            by_file.insert(gone.clone(), Vec::new());
        }
        for (path, diagnostics) in by_file {
            let Some(uri) = path_uri(&path) else { continue };
            let params = PublishDiagnosticsParams {
                uri,
                diagnostics,
                version: None,
            };
            let n = Notification::new(
                lsp_types::notification::PublishDiagnostics::METHOD.to_string(),
                params,
            );
            conn.sender.send(Message::Notification(n))?;
        }
        self.published = now;
        Ok(())
    }

    fn refresh_lenses(&mut self) {
        self.lenses = match (&self.root, &self.data) {
            (Some(root), Some(data)) => lens::lenses(root, data, &self.open),
            _ => HashMap::new(),
        };
    }

    /// The text of `file` as last loaded (or as the editor has it).
    pub fn text(&self, file: &Path) -> Option<&str> {
        self.open
            .get(file)
            .or_else(|| self.texts.get(file))
            .map(String::as_str)
    }

    /// The index of the set.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Codes of the diagnostics covering byte `at` of `file`.
    pub fn codes_at(&self, file: &Path, at: usize) -> Vec<&'static str> {
        self.diags
            .get(file)
            .map(|ds| {
                ds.iter()
                    .filter(|(s, _)| s.start <= at && at <= s.end)
                    .map(|(_, c)| *c)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The file and byte offset of a position in a document.
    pub fn locate(&self, p: &lsp_types::TextDocumentPositionParams) -> Option<(PathBuf, usize)> {
        let file = uri_path(&p.text_document.uri)?;
        let at = text::offset(self.text(&file)?, p.position);
        Some((file, at))
    }

    fn location(&self, file: &Path, span: &Range<usize>) -> Option<Location> {
        let text = self.text(file)?;
        Some(Location::new(path_uri(file)?, text::range(text, span)))
    }

    fn definition(
        &self,
        p: &lsp_types::GotoDefinitionParams,
    ) -> Option<lsp_types::GotoDefinitionResponse> {
        let (file, at) = self.locate(&p.text_document_position_params)?;
        let t = self.index.target_at(&file, at)?;
        let d = self.index.def(&t)?;
        Some(lsp_types::GotoDefinitionResponse::Scalar(
            self.location(&d.file, &d.span)?,
        ))
    }

    fn references(&self, p: &lsp_types::ReferenceParams) -> Option<Vec<Location>> {
        let (file, at) = self.locate(&p.text_document_position)?;
        let t = self.index.target_at(&file, at)?;
        let mut out: Vec<Location> = Vec::new();
        if p.context.include_declaration
            && let Some(d) = self.index.def(&t)
        {
            out.extend(self.location(&d.file, &d.span));
        }
        out.extend(
            self.index
                .refs_of(&t)
                .filter_map(|r| self.location(&r.file, &r.span)),
        );
        Some(out)
    }
}

/// A diagnostic as LSP has it: range in UTF-16 units, code, the help lines after the message,
/// and the label as related information at the same place.
fn to_lsp(d: &Diag, text: &str, span: &Range<usize>, path: &Path) -> lsp_types::Diagnostic {
    let range = text::range(text, span);
    let mut message = d.message.clone();
    for h in &d.help {
        message.push_str("\nhelp: ");
        message.push_str(h);
    }
    let related = (!d.label.is_empty())
        .then(|| path_uri(path))
        .flatten()
        .map(|uri| {
            vec![DiagnosticRelatedInformation {
                location: Location::new(uri, range),
                message: d.label.clone(),
            }]
        });
    lsp_types::Diagnostic {
        range,
        severity: Some(match d.level {
            Level::Error => DiagnosticSeverity::ERROR,
            Level::Warning => DiagnosticSeverity::WARNING,
        }),
        code: Some(NumberOrString::String(d.code.to_string())),
        source: Some("rulebook".to_string()),
        message,
        related_information: related,
        ..lsp_types::Diagnostic::default()
    }
}

fn parse<P: serde::de::DeserializeOwned>(req: &Request) -> Result<P, String> {
    serde_json::from_value(req.params.clone()).map_err(|e| e.to_string())
}

fn to_json<T: serde::Serialize>(v: T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
