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
//! - [`diag`]: diagnostics with file, line, column and a caret;
//! - [`output`]: atomic file writes;
//! - [`r#gen`]: the deterministic synthetic dataset generator;
//! - [`cli`]: the command-line interface (the binary is a thin wrapper around it).

pub mod calendar;
pub mod cli;
pub mod data;
pub mod diag;
pub mod diff;
pub mod eval;
pub mod findings;
pub mod r#gen;
pub mod output;
pub mod policy;
pub mod policytest;
pub mod report;
pub mod script;
