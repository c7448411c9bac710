//! rulebook: a rules-and-reporting engine driven by declarative policy files.
//!
//! Policy directives are versioned TOML rule files with small Rhai expressions; the engine
//! evaluates them against member activity data and produces compliance findings.
//!
//! Modules, in the order data flows through them:
//! - [`policy`]: loading, checking and compiling a policy folder (schema, parameters,
//!   aggregates, periods, directives, rules);
//! - [`data`]: loading a dataset folder (CSV in UTF-8 or GB18030, XLSX) into typed columnar
//!   tables, accounting for every row;
//! - [`eval`]: computing per-subject aggregates natively and running rule predicates;
//! - [`findings`]: the findings contract, output formats and the summary;
//! - [`report`]: grades and PDF assessment reports (Tera templates → Typst → PDF);
//! - [`script`]: the sandboxed Rhai engine and its function library;
//! - [`calendar`]: the working calendar (statutory holidays, adjusted working days, hours);
//! - [`diff`]: the impact of a policy change on a dataset (`rulebook diff`);
//! - [`policytest`]: policy tests beside the rules (`rulebook test`) and their coverage;
//! - [`lsp`]: the language server behind `rulebook lsp` (diagnostics as you type, hover,
//!   definition, references, completion, code lenses);
//! - [`diag`]: diagnostics with file, line, column and a caret;
//! - [`output`]: atomic file writes;
//! - [`progress`]: progress of the long stages, for a front end to show;
//! - [`dates`]: reading and writing dates and date-times (one place for every layer);
//! - `gen` (hidden from these docs; not part of the library's interface): the deterministic
//!   synthetic dataset generator behind `rulebook gen`, for benchmarks and tests.
//!
//! The library has no command line and draws nothing on a terminal: the `rulebook` binary
//! (`src/main.rs`, `src/cli.rs`) parses arguments with clap and shows progress bars, which the
//! library drives through [`progress::Progress`].

pub mod calendar;
pub mod data;
pub mod dates;
pub mod diag;
pub mod diff;
pub mod eval;
pub mod findings;
#[doc(hidden)]
pub mod r#gen;
pub mod lsp;
pub mod output;
pub mod policy;
pub mod policytest;
pub mod progress;
pub mod report;
pub mod script;
