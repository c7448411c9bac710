//! The catalogue of diagnostic codes: what each means, an example, and how to fix it
//! (`rulebook check --explain RB0201`). A diagnostic can only be made with a [`Code`], and
//! every code has its explanation here, so "every code is explained" holds by construction.

/// Declares [`Code`] with each code's title and explanation.
macro_rules! codes {
    ($($code:ident, $title:literal, $text:literal;)*) => {
        /// A diagnostic code (`RB` and four digits: the first two say the area).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $(
                #[doc = $title]
                $code,
            )*
        }

        impl Code {
            /// Every code, in order.
            pub const ALL: &[Code] = &[$(Code::$code),*];

            /// The code as written: `RB0201`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$code => stringify!($code),)*
                }
            }

            /// A short title.
            pub fn title(self) -> &'static str {
                match self {
                    $(Code::$code => $title,)*
                }
            }

            /// What it means, with an example and the fix.
            pub fn text(self) -> &'static str {
                match self {
                    $(Code::$code => $text,)*
                }
            }
        }
    };
}

codes! {
    RB0001,
    "TOML syntax error",
    "The file is not valid TOML: a missing quote, bracket or `=`.\n\nExample:\n    version = \"1.0.0\n\nFix: close the string: version = \"1.0.0\". Strings need matching quotes; tables are [name]; lists are [a, b].";
    RB0002,
    "unknown field",
    "A field name is not one this kind of table has, usually a typo. The message suggests the closest allowed name and lists them all.\n\nExample:\n    [[rule.case]]\n    staus = \"pass\"\n\nFix: status = \"pass\".";
    RB0003,
    "missing field or wrong kind of value",
    "A required field is missing, or a value has the wrong kind (text where a number goes, a word that is not allowed).\n\nExample:\n    severity = \"huge\"\n\nFix: one of critical, major, minor. Required fields of a rule: id, version, title, subject, clause.";
    RB0004,
    "file cannot be read",
    "The policy folder or a file in it is missing, unreadable, or not UTF-8 text.\n\nFix: check the path given to --policies; save files as UTF-8.";
    RB0101,
    "name used twice",
    "Two tables, parameters, aggregates, periods or directives have the same name (names are global to the policy set), or a header alias means two columns.\n\nFix: rename one of them.";
    RB0102,
    "unknown table",
    "A reference names a table the policy set does not declare.\n\nExample:\n    table = \"servises\"\n\nFix: table = \"services\", or declare the new table under [tables.NAME].";
    RB0103,
    "unknown column",
    "A condition, key, `after` or `by` names a column the table does not have.\n\nExample:\n    where = [{ column = \"verifed\", is = true }]\n\nFix: column = \"verified\".";
    RB0104,
    "unknown subject kind",
    "`subject` must be a kind declared under [subjects] in policy.toml (member, organization).\n\nFix: subject = \"member\".";
    RB0105,
    "unknown parameter",
    "A `$param.NAME` reference names no parameter.\n\nFix: use a declared parameter, or declare it under [parameters.NAME] with dated values.";
    RB0106,
    "unknown aggregate",
    "A `$agg.NAME` reference or `except_days` names no aggregate, or one computed for another subject kind.\n\nFix: use an aggregate of the same subject.";
    RB0107,
    "unknown period",
    "`within` or a rule's `period` names no period.\n\nFix: use a declared period (epidemic, sinking, cycle …) or declare it under [periods.NAME].";
    RB0108,
    "unknown clause",
    "A rule's `clause` is not a key of its directive's [directive.clauses].\n\nFix: add the clause with its quoted text, or correct the key.";
    RB0109,
    "not a date",
    "A date field is not a date, or a rule's effective_until is before its effective_from.\n\nExample:\n    effective_from = 2020-02-30\n\nFix: write real dates as 2020-02-07.";
    RB0110,
    "wrong kind of column or value for this use",
    "A condition or operation does not fit the column: `within` on a text column, `sum_hours` without two date-time columns, a value that is not one of an enum's values.\n\nExample:\n    { column = \"campaign\", is = \"dual-registration\" }\n\nFix: { column = \"campaign\", is = \"dual_registration\" } (the values are listed in the message).";
    RB0111,
    "aggregates depend on each other in a circle",
    "An aggregate uses itself through `$agg` references, `except_days` or periods.\n\nFix: break the circle; an aggregate may only use aggregates computed before it.";
    RB0112,
    "bad `by` path or reference",
    "`by` must follow columns with `references = …` from the aggregate's table to the subject's table, and referenced tables need a key.\n\nExample (a branch's members' assignments):\n    by = \"member_id.branch_id\"\n\nFix: list the reference columns from the aggregate's table to the subject's, separated by dots, and give each referenced table a `key`.";
    RB0113,
    "unknown table or column in `[roles]` or a subject's `name`",
    "`[roles]` in policy.toml names the tables and columns reports and waivers read (service records, communities, waivers, columns of the subject tables); a subject's `name` names the column with its names. A name written there must be a table or column the schema declares, of the kind the role needs.\n\nExample:\n    [roles.services]\n    verified = \"checked\"   # the services table has no column `checked`\n\nFix: write the column's name as the schema declares it, or declare the column.";
    RB0201,
    "parameter values overlap or are missing",
    "Two values of a parameter start on the same date (each holds from its date until the next), or there is none.\n\nExample:\n    values = [{ from = 2020-01-01, value = 20 }, { from = 2020-01-01, value = 24 }]\n\nFix: values = [{ from = 2020-01-01, value = 20 }, { from = 2022-01-01, value = 24 }].";
    RB0202,
    "parameter basis without its quote or reason",
    "A parameter from the source needs `quote` (the words that fix it); an assumption needs `reason` (why this value, since the source does not say).\n\nFix: add quote = \"…\" or reason = \"…\".";
    RB0203,
    "parameter values of different kinds",
    "All values of one parameter must be of one kind (all numbers, all dates …).\n\nFix: make them alike.";
    RB0301,
    "rule versions overlap",
    "Two versions of a rule are in force on the same day, so --as-of could not choose.\n\nExample: v1 without effective_until and v2 from 2022-01-01.\n\nFix: effective_until = 2021-12-31 on v1.";
    RB0302,
    "cases or grades out of order",
    "A rule needs at least one [[rule.case]]; a case (or grade) without `when` always holds, so it must be the last.\n\nFix: move it to the end, or give it a `when`.";
    RB0303,
    "rule version used twice",
    "Two [[rule]] blocks with the same id have the same version.\n\nFix: number each version of a rule differently.";
    RB0304,
    "name means two things in a rule",
    "A parameter, aggregate, subject column, built-in name or `let` share a name, so an expression would be ambiguous.\n\nFix: rename the `let` or the parameter.";
    RB0401,
    "expression error",
    "A Rhai expression (applies, when, let, a {placeholder} in a message, a period bound, a helper file) does not parse. The caret points at the problem.\n\nExample:\n    when = \"unverified_hours > (0\"\n\nFix: when = \"unverified_hours > 0\". Compare with == != < <= > >=, combine with && || !, text in \"quotes\".";
    RB0402,
    "unknown name in an expression",
    "An expression or `evidence` uses a name that is not a parameter, an aggregate of the rule's subject, a subject column, an earlier `let` or a built-in name (as_of, period_start, period_end, subject_id). The message suggests the closest name.\n\nFix: correct the spelling, or declare the aggregate or parameter.";
    RB0403,
    "code outside functions in a helper file",
    "helpers/*.rhai may only define functions (fn name(args) { … }); statements outside a function would run before every expression.\n\nFix: put the code into a function.";
    RB0404,
    "unknown function",
    "Warning: an expression calls a function that is neither built in nor defined in policies/helpers/*.rhai, usually a typo; the rule would give `error` findings when it runs. The message suggests the closest name.\n\nExample:\n    message = \"{hours_txt(verified_hours)}\"\n\nFix: {hours_text(verified_hours)}.";
    RB0501,
    "parameter not used",
    "Warning: no rule, aggregate, period or grade uses the parameter.\n\nFix: remove it, or use it.";
    RB0502,
    "aggregate not used",
    "Warning: no rule, grade or other aggregate uses the aggregate; it is still computed for every subject.\n\nFix: remove it, or use it.";
    RB0503,
    "rule without a test",
    "Warning: policies/tests/*.toml has no case that expects a verdict of this rule.\n\nFix: add a [[case]] with [[case.expect]] rule = \"…\" (see README: Policy tests); `rulebook test --require-coverage` fails on such rules.";
    RB0504,
    "gap between rule versions",
    "Warning: between two versions of a rule there are days on which no version is in force, so --as-of on those days gives no finding for the rule.\n\nExample: v1 until 2021-12-31, v2 from 2022-03-01.\n\nFix: start v2 the day after v1 ends, if the gap is not intended.";
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The explanation of `code` (any case), formatted for a terminal.
pub fn explain(code: &str) -> Option<String> {
    let code = code.trim().to_ascii_uppercase();
    Code::ALL
        .iter()
        .find(|c| c.as_str() == code)
        .map(|c| format!("{c}: {}\n\n{}\n", c.title(), c.text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_explained_and_found_in_any_case() {
        assert!(explain("rb0201").unwrap().contains("overlap"));
        assert!(explain("RB9999").is_none());
        for c in Code::ALL {
            assert!(c.as_str().starts_with("RB") && c.as_str().len() == 6);
            assert!(!c.title().is_empty() && c.text().contains("Fix"), "{c}");
        }
    }
}
