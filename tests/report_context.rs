//! The data report templates receive: typed in `src/report/context.rs`, its JSON Schema
//! shipped as `report-templates/context.schema.json`. These tests keep the shipped schema
//! equal to what `rulebook schema --kind report` prints, check that every report of both
//! samples validates against it, and that `report-templates/README.md` documents every key
//! (and names no key that does not exist).

mod common;

use common::*;
use rulebook::report::{self, Level};
use serde_json::Value;
use std::collections::BTreeSet;

const REGENERATE: &str = "regenerate with `cargo run -- schema --kind report > report-templates/context.schema.json` and commit it";

fn printed() -> String {
    let out = rulebook()
        .args(["schema", "--kind", "report"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", texts(&out).1);
    String::from_utf8(out.stdout).unwrap()
}

fn shipped() -> String {
    let path = root().join("report-templates/context.schema.json");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; {REGENERATE}", path.display()))
}

#[test]
fn shipped_schema_is_what_the_code_prints() {
    let (shipped, printed) = (shipped(), printed());
    if shipped != printed {
        let line = shipped
            .lines()
            .zip(printed.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "the length".to_string(), |i| format!("line {}", i + 1));
        panic!(
            "report-templates/context.schema.json differs from the code at {line}; {REGENERATE}"
        );
    }
}

#[test]
fn every_report_of_both_samples_validates() {
    let schema: Value = serde_json::from_str(&shipped()).unwrap();
    let validator = jsonschema::draft7::options()
        .build(&schema)
        .expect("the schema compiles");
    let set = rulebook::policy::load(&policies()).unwrap();
    for sample in ["samples/hubei-2020", "samples/hubei-2021"] {
        let ds =
            rulebook::data::load(&root().join(sample), &set.schema, &Default::default()).unwrap();
        let run = rulebook::eval::prepare(&set, &ds, None).unwrap();
        let outcomes = run.outcomes().unwrap();
        let model = report::Model::new(&run, &outcomes);
        let mut jobs = model.jobs(Level::All);
        // Bundles, and reports of a scope (its summary and the common `scope`).
        for (bundle, scope) in [
            (report::BundleKind::Branch, "branch:B01"),
            (report::BundleKind::Community, "district:武昌区"),
        ] {
            let scope = [scope.parse().unwrap()];
            let plan = model
                .plan(&report::PlanOptions {
                    level: Level::All,
                    scope: &scope,
                    bundle: Some(bundle),
                })
                .unwrap();
            for i in 0..plan.items.len() {
                let job = model.job(&plan, i);
                jobs.extend(job.parts.iter().cloned());
                jobs.push(job);
            }
        }
        let kinds: BTreeSet<&str> = jobs.iter().map(|j| j.kind).collect();
        assert_eq!(kinds.len(), 5, "{sample}: every kind of report: {kinds:?}");
        for job in &jobs {
            let errors: Vec<String> = validator
                .iter_errors(&job.context)
                .map(|e| format!("{}: {e}", e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{sample} {} {}: {errors:#?}",
                job.kind,
                job.id
            );
            assert!(
                job.context.get(job.kind).is_some(),
                "{sample} {} {}: no `{}` key",
                job.kind,
                job.id,
                job.kind
            );
        }
    }
}

/// The keys under a schema: those a README section must document, and those it may name.
#[derive(Default)]
struct Keys {
    /// Property names and enumerated words of types first met in this section.
    required: BTreeSet<String>,
    /// Those and the keys of types documented in an earlier section ("grouped like a
    /// member's `directives`").
    allowed: BTreeSet<String>,
    /// The definitions met in this section.
    met: BTreeSet<String>,
}

/// Collect the keys under `v` (following references, lists and optional values) into
/// `keys`; the keys of definitions in `earlier` are allowed, not required.
fn keys(
    schema: &Value,
    v: &Value,
    skip: &[&str],
    earlier: &BTreeSet<String>,
    required: bool,
    keys_out: &mut Keys,
    depth: usize,
) {
    assert!(depth < 20, "schema nests too deep");
    let mut required = required;
    let v = match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            if earlier.contains(name) {
                required = false;
            } else {
                keys_out.met.insert(name.to_string());
            }
            &schema["definitions"][name]
        }
        None => v,
    };
    let add = |k: &str, keys_out: &mut Keys| {
        if required {
            keys_out.required.insert(k.to_string());
        }
        keys_out.allowed.insert(k.to_string());
    };
    if let Some(props) = v.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            if skip.contains(&k.as_str()) {
                continue;
            }
            add(k, keys_out);
            keys(schema, p, &[], earlier, required, keys_out, depth + 1);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for s in v.get(key).and_then(Value::as_array).into_iter().flatten() {
            keys(schema, s, skip, earlier, required, keys_out, depth + 1);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(s) = v.get(key).filter(|s| s.is_object()) {
            keys(schema, s, &[], earlier, required, keys_out, depth + 1);
        }
    }
    let words = (v.get("const").into_iter())
        .chain(
            v.get("enum")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        )
        .filter_map(Value::as_str);
    for w in words {
        add(w, keys_out);
    }
}

/// The README's text from `heading` to the next `## ` heading.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("report-templates/README.md has no `{heading}`"));
    let rest = &readme[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// Words in backticks that look like keys (`snake_case`).
fn backticked(text: &str) -> BTreeSet<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_documents_every_key_and_no_other() {
    let schema: Value = serde_json::from_str(&shipped()).unwrap();
    let readme = std::fs::read_to_string(root().join("report-templates/README.md")).unwrap();
    let bodies = ["member", "branch", "community", "summary", "bundle"];
    // Words a section may name that are not keys: the report kinds and template names, and
    // names from the policy files it refers to.
    let not_keys = [
        "member",
        "branch",
        "community",
        "summary",
        "bundle",
        "hours",
    ];
    let mut earlier = BTreeSet::new();
    // Keys of earlier sections, which a section may name ("like a member's `directives`").
    let mut named_before: BTreeSet<String> = BTreeSet::new();
    for (heading, body) in [
        ("## Data every template gets", None),
        ("## `member`", Some("member")),
        ("## `branch`", Some("branch")),
        ("## `community`", Some("community")),
        ("## `summary`", Some("summary")),
        ("## `bundle`", Some("bundle")),
    ] {
        let mut found = Keys::default();
        match body {
            None => keys(&schema, &schema, &bodies, &earlier, true, &mut found, 0),
            Some(b) => keys(
                &schema,
                &schema["properties"][b],
                &[],
                &earlier,
                true,
                &mut found,
                0,
            ),
        }
        earlier.extend(found.met.iter().cloned());
        let expected = &found.required;
        named_before.extend(found.allowed.iter().cloned());
        let text = section(&readme, heading);
        let written = backticked(text);
        let missing: Vec<&String> = expected.difference(&written).collect();
        assert!(
            missing.is_empty(),
            "report-templates/README.md, section {heading}: keys of the template data not documented: {missing:?} (see src/report/context.rs)"
        );
        let unknown: Vec<&String> = written
            .difference(&found.allowed)
            .filter(|w| !not_keys.contains(&w.as_str()) && !named_before.contains(*w))
            .collect();
        assert!(
            unknown.is_empty(),
            "report-templates/README.md, section {heading}: names keys the template data does not have: {unknown:?} (see src/report/context.rs)"
        );
    }
}
