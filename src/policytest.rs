//! Policy tests (`rulebook test`): cases written beside the rules in `policies/tests/*.toml`,
//! each a tiny inline dataset, an `as_of` date and the expected status (and optionally
//! evidence or message text) per rule and subject; plus coverage of rules, rule versions and
//! dated parameter values.

use crate::data::{self, LoadOptions};
use crate::eval;
use crate::findings::{Finding, Status};
use crate::policy::PolicySet;
use chrono::NaiveDate;
use indexmap::IndexMap;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A file of test cases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Tables shared by every case of the file (CSV text with a header line).
    #[serde(default)]
    pub data: IndexMap<String, String>,
    /// The cases (`[[case]]`), run in order.
    #[serde(default, rename = "case")]
    pub cases: Vec<Case>,
}

/// One test case: a small dataset, the evaluation date and what the rules must find.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Name of the case, shown with its failures.
    pub name: String,
    /// The clause of the source the case checks, quoted.
    pub clause: Option<String>,
    /// The evaluation date (`--as-of`) of the case.
    pub as_of: toml::value::Datetime,
    /// Tables of this case; they replace the file's tables of the same name.
    #[serde(default)]
    pub data: IndexMap<String, String>,
    /// Expected findings per rule and subject.
    #[serde(default)]
    pub expect: Vec<Expect>,
    /// Expected grades (`policies/assessment.toml`) of members and organizations.
    #[serde(default)]
    pub grade: Vec<GradeExpect>,
}

/// The grade a subject must get.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradeExpect {
    /// The subject's id.
    pub subject: String,
    /// The grade's name, as `policies/assessment.toml` names it.
    pub grade: String,
}

/// The finding one rule must give one subject.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The rule's id.
    pub rule: String,
    /// The subject's id.
    pub subject: String,
    /// The status; leave it out with `no_finding = true`.
    pub status: Option<Status>,
    /// The rule gives no finding for the subject (its directive or version is not in force).
    #[serde(default)]
    pub no_finding: bool,
    /// Evidence values that must match exactly.
    #[serde(default)]
    pub evidence: IndexMap<String, toml::Value>,
    /// Text the message must contain.
    pub message_contains: Option<String>,
}

/// One expectation that did not hold.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The test file, as shown.
    pub file: String,
    /// The case's name.
    pub case: String,
    /// The rule's id, or `(grade)` for a grade expectation.
    pub rule: String,
    /// The subject's id.
    pub subject: String,
    /// What was expected, in words (a status, `no finding`, an evidence value, a grade …).
    pub expected: String,
    /// What the run gave, in the same words.
    pub actual: String,
    /// The finding's message, or why there was no finding; empty when there is nothing to add.
    pub message: String,
}

/// What the tests exercised.
#[derive(Debug, Default)]
pub struct Coverage {
    /// Rule ids with at least one expectation.
    pub rules_tested: BTreeSet<String>,
    /// (rule id, version) evaluated in some case.
    pub versions_run: BTreeSet<(String, String)>,
    /// (parameter, from-date) in force in some case.
    pub params_run: BTreeSet<(String, NaiveDate)>,
}

/// The result of running the test files of a policy set.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Test files run.
    pub files: usize,
    /// Cases found, including those that could not run.
    pub cases: usize,
    /// Expectations (findings and grades) checked in the cases that ran.
    pub expectations: usize,
    /// Expectations that did not hold; one expectation may fail on several counts.
    pub failures: Vec<Failure>,
    /// Cases that could not run (bad data, unknown rule), with why.
    pub broken: Vec<String>,
    /// What the cases that ran exercised.
    pub coverage: Coverage,
}

impl Outcome {
    /// Rules (ids) of the set with no expectation in any test.
    pub fn untested_rules(&self, policy: &PolicySet) -> Vec<String> {
        let all: BTreeSet<&str> = policy.rules.iter().map(|r| r.id.as_str()).collect();
        all.into_iter()
            .filter(|r| !self.coverage.rules_tested.contains(*r))
            .map(String::from)
            .collect()
    }

    /// Rule versions never evaluated by a test.
    pub fn unexercised_versions(&self, policy: &PolicySet) -> Vec<(String, String)> {
        policy
            .rules
            .iter()
            .map(|r| (r.id.clone(), r.version.clone()))
            .filter(|k| !self.coverage.versions_run.contains(k))
            .collect()
    }

    /// Dated parameter values never in force in a test.
    pub fn unexercised_params(&self, policy: &PolicySet) -> Vec<(String, NaiveDate)> {
        policy
            .params
            .values()
            .flat_map(|p| p.values.iter().map(move |(d, _)| (p.name.clone(), *d)))
            .filter(|k| !self.coverage.params_run.contains(k))
            .collect()
    }
}

/// The test files of a policy folder (`tests/*.toml`), sorted.
pub fn test_files(policies: &Path) -> Vec<PathBuf> {
    let dir = policies.join("tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn toml_matches(actual: &serde_json::Value, want: &toml::Value) -> bool {
    match (actual, want) {
        (serde_json::Value::Number(a), toml::Value::Integer(b)) => a.as_f64() == Some(*b as f64),
        (serde_json::Value::Number(a), toml::Value::Float(b)) => {
            a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
        }
        (serde_json::Value::String(a), toml::Value::String(b)) => a == b,
        (serde_json::Value::String(a), toml::Value::Datetime(b)) => *a == b.to_string(),
        (serde_json::Value::Bool(a), toml::Value::Boolean(b)) => a == b,
        (serde_json::Value::Array(a), toml::Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| toml_matches(x, y))
        }
        (serde_json::Value::Null, toml::Value::String(b)) => b.is_empty(),
        _ => false,
    }
}

/// Why policy tests cannot run: a test file that cannot be read or parsed, or (reported as
/// a broken case, not returned) a case that cannot be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A test file cannot be read.
    #[error("reading {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A test file is not valid TOML for a test file.
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// Line of the problem (0 when TOML gives no place).
        line: usize,
        /// Column of the problem (0 when TOML gives no place).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A case's `as_of` is a date-time or a time, not a date.
    #[error("as_of `{value}` is not a date")]
    AsOf {
        /// The value written.
        value: toml::value::Datetime,
    },
    /// No temporary folder can be made for the case's data.
    #[error(transparent)]
    TempFolder(std::io::Error),
    /// A table of the case's data cannot be written (the message is the I/O error's).
    #[error("{error}")]
    CaseData {
        /// The folder or file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A case gives data for a table the policy set does not declare.
    #[error("table `{table}` is not part of the policy set")]
    UnknownTable {
        /// The table.
        table: String,
    },
    /// The case's data cannot be loaded (its problems on one line).
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Data(data::Error),
    /// A row of the case's data is rejected.
    #[error(
        "test data row rejected: {file}:{line}: {}{reason}",
        .column.as_deref().map(|c| format!("{c}: ")).unwrap_or_default()
    )]
    Rejected {
        /// The file.
        file: String,
        /// The line.
        line: u32,
        /// The column, where one is at fault.
        column: Option<String>,
        /// Why.
        reason: String,
    },
    /// The case cannot be evaluated.
    #[error(transparent)]
    Eval(#[from] eval::Error),
}

/// An error and its causes, as `error: cause: cause` (how a broken case is shown).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

/// Run every test file of the policy set.
pub fn run(policy: &PolicySet, files: &[PathBuf]) -> Result<Outcome, Error> {
    let mut out = Outcome {
        files: files.len(),
        ..Default::default()
    };
    for file in files {
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
            path: file.clone(),
            source,
        })?;
        let tf: TestFile = toml::from_str(&text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(&text, s.start)).unwrap_or((0, 0));
            Error::Parse {
                file: shown.clone(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        for case in &tf.cases {
            out.cases += 1;
            match run_case(policy, &tf, case, &mut out.coverage) {
                Ok((findings, grades)) => {
                    for ex in &case.expect {
                        out.expectations += 1;
                        out.coverage.rules_tested.insert(ex.rule.clone());
                        check(&shown, case, ex, &findings, &mut out.failures);
                    }
                    for (g, got) in case.grade.iter().zip(grades) {
                        out.expectations += 1;
                        if got != g.grade {
                            out.failures.push(Failure {
                                file: shown.clone(),
                                case: case.name.clone(),
                                rule: "(grade)".into(),
                                subject: g.subject.clone(),
                                expected: g.grade.clone(),
                                actual: got,
                                message: String::new(),
                            });
                        }
                    }
                }
                Err(e) => {
                    out.broken
                        .push(format!("{shown}: case \"{}\": {}", case.name, chain(&e)))
                }
            }
        }
    }
    Ok(out)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn run_case(
    policy: &PolicySet,
    tf: &TestFile,
    case: &Case,
    cov: &mut Coverage,
) -> Result<(Vec<Finding>, Vec<String>), Error> {
    let as_of = crate::policy::parse_date(&case.as_of.to_string())
        .ok_or(Error::AsOf { value: case.as_of })?;
    let dir = tempfile::tempdir().map_err(Error::TempFolder)?;
    let mut tables: IndexMap<&str, &str> = IndexMap::new();
    for (k, v) in tf.data.iter().chain(case.data.iter()) {
        tables.insert(k, v);
    }
    for (name, ts) in &policy.schema.tables {
        let header: Vec<&str> = ts.columns.iter().map(|c| c.name.as_str()).collect();
        let body = match tables.get(name.as_str()) {
            Some(t) => t.trim().to_string() + "\n",
            None if ts.optional => continue,
            None => header.join(",") + "\n",
        };
        let path = dir.path().join(format!("{name}.csv"));
        std::fs::write(&path, body).map_err(|error| Error::CaseData { path, error })?;
    }
    for name in tables.keys() {
        if !policy.schema.tables.contains_key(*name) {
            return Err(Error::UnknownTable {
                table: name.to_string(),
            });
        }
    }
    let ds =
        data::load(dir.path(), &policy.schema, &LoadOptions::default()).map_err(Error::Data)?;
    if let Some(r) = ds.rejects.first() {
        return Err(Error::Rejected {
            file: r.file.clone(),
            line: r.line,
            column: r.column.clone(),
            reason: r.reason.clone(),
        });
    }
    let run = eval::prepare(policy, &ds, Some(as_of))?;
    for r in run.rules() {
        cov.versions_run.insert((r.id.clone(), r.version.clone()));
    }
    for (name, v) in &run.params {
        if let Some(from) = v.from {
            cov.params_run.insert((name.clone(), from));
        }
    }
    let grades = if case.grade.is_empty() {
        Vec::new()
    } else {
        let outcomes = run.outcomes()?;
        let model = crate::report::Model::new(&run, &outcomes);
        case.grade
            .iter()
            .map(|g| {
                model
                    .grade_of(&g.subject)
                    .unwrap_or_else(|| format!("no subject `{}`", g.subject))
            })
            .collect()
    };
    Ok((run.findings(), grades))
}

fn check(file: &str, case: &Case, ex: &Expect, findings: &[Finding], failures: &mut Vec<Failure>) {
    let fail = |expected: String, actual: String, message: String, failures: &mut Vec<Failure>| {
        failures.push(Failure {
            file: file.to_string(),
            case: case.name.clone(),
            rule: ex.rule.clone(),
            subject: ex.subject.clone(),
            expected,
            actual,
            message,
        })
    };
    let found = findings
        .iter()
        .find(|f| *f.rule == ex.rule && f.subject_id == ex.subject);
    if ex.no_finding || ex.status.is_none() {
        if let Some(f) = found {
            fail(
                "no finding".into(),
                f.status.name().into(),
                f.message.clone(),
                failures,
            );
        }
        return;
    }
    let want = ex.status.unwrap_or(Status::Pass);
    let Some(f) = found else {
        let known: BTreeSet<&str> = findings.iter().map(|f| &*f.rule).collect();
        let why = if known.contains(ex.rule.as_str()) {
            format!("no subject `{}`", ex.subject)
        } else {
            format!(
                "rule `{}` is not in force on {} (or does not exist)",
                ex.rule, case.as_of
            )
        };
        fail(want.name().into(), "no finding".into(), why, failures);
        return;
    };
    if f.status != want {
        fail(
            want.name().into(),
            f.status.name().into(),
            f.message.clone(),
            failures,
        );
    }
    for (k, want) in &ex.evidence {
        let got = f
            .evidence
            .get(k)
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        if !toml_matches(&got, want) {
            fail(
                format!("evidence {k} = {want}"),
                format!("evidence {k} = {got}"),
                f.message.clone(),
                failures,
            );
        }
    }
    if let Some(t) = &ex.message_contains
        && !f.message.contains(t.as_str())
    {
        fail(
            format!("message containing \"{t}\""),
            format!("\"{}\"", f.message),
            String::new(),
            failures,
        );
    }
}

/// The report printed by `rulebook test`.
pub fn render(outcome: &Outcome, policy: &PolicySet) -> String {
    let mut s = String::new();
    for f in &outcome.failures {
        s.push_str(&format!(
            "FAIL {}: case \"{}\": {} {}\n  expected: {}\n  actual:   {}\n",
            f.file, f.case, f.rule, f.subject, f.expected, f.actual
        ));
        if !f.message.is_empty() {
            s.push_str(&format!("  message:  {}\n", f.message));
        }
    }
    for b in &outcome.broken {
        s.push_str(&format!("BROKEN {b}\n"));
    }
    let untested = outcome.untested_rules(policy);
    let versions = outcome.unexercised_versions(policy);
    let params = outcome.unexercised_params(policy);
    let total_rules: BTreeSet<&str> = policy.rules.iter().map(|r| r.id.as_str()).collect();
    s.push_str(&format!(
        "\ncoverage: {}/{} rules tested, {}/{} rule versions run, {}/{} dated parameter values in force\n",
        total_rules.len() - untested.len(),
        total_rules.len(),
        policy.rules.len() - versions.len(),
        policy.rules.len(),
        policy.params.values().map(|p| p.values.len()).sum::<usize>() - params.len(),
        policy.params.values().map(|p| p.values.len()).sum::<usize>(),
    ));
    if !untested.is_empty() {
        s.push_str(&format!("  rules with no test: {}\n", untested.join(", ")));
    }
    if !versions.is_empty() {
        let v: Vec<String> = versions.iter().map(|(r, v)| format!("{r} v{v}")).collect();
        s.push_str(&format!("  rule versions never run: {}\n", v.join(", ")));
    }
    if !params.is_empty() {
        let v: Vec<String> = params
            .iter()
            .map(|(p, d)| format!("{p} (from {d})"))
            .collect();
        s.push_str(&format!(
            "  parameter values never in force: {}\n",
            v.join(", ")
        ));
    }
    s.push_str(&format!(
        "expectations: {} passed, {} failed\n({} files, {} cases{})\n",
        outcome.expectations
            - outcome
                .failures
                .iter()
                .map(|f| (&f.file, &f.case, &f.rule, &f.subject))
                .collect::<BTreeSet<_>>()
                .len(),
        outcome
            .failures
            .iter()
            .map(|f| (&f.file, &f.case, &f.rule, &f.subject))
            .collect::<BTreeSet<_>>()
            .len(),
        outcome.files,
        outcome.cases,
        if outcome.broken.is_empty() {
            String::new()
        } else {
            format!(", {} broken", outcome.broken.len())
        }
    ));
    s
}
