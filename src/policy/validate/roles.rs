//! `[roles]` and the subjects' `name` columns: every name written there must be a table or
//! column the schema declares, of the kind the role needs. Names left to their defaults are
//! not required: a set without service records simply has no hours in its reports.

use super::*;
use crate::policy::roles::{Roles, RolesDef};

/// A role as checked: its name, its table (if known), the names written with where, and
/// where its table was written.
type RoleNames<'a> = (
    &'static str,
    Option<String>,
    Vec<(&'static str, &'a Spanned<String>)>,
    Option<&'a Spanned<String>>,
);

/// Check what `[roles]` and the subjects' `name` say, and resolve the roles.
pub(super) fn check_roles(
    cx: &mut Ctx,
    manifest: &ManifestFile,
    file: FileId,
    schema: &Schema,
    subjects: &IndexMap<String, SubjectKind>,
) -> Roles {
    for (kind, s) in &manifest.subjects {
        if let Some(name) = &s.get_ref().name {
            let table = s.get_ref().table.get_ref();
            column_of(
                cx,
                file,
                schema,
                &format!("subject `{kind}`"),
                table,
                name,
                &[],
            );
        }
    }
    let Some(def) = &manifest.roles else {
        return Roles::default();
    };
    let roles = def.resolve();
    let table_of = |kind: &str| subjects.get(kind).map(|s| s.table.clone());
    let tables: [RoleNames; 5] = [
        (
            "services",
            Some(roles.services.table.clone()),
            def.services.written(),
            def.services.table.as_ref(),
        ),
        (
            "communities",
            Some(roles.communities.table.clone()),
            def.communities.written(),
            def.communities.table.as_ref(),
        ),
        ("members", table_of("member"), def.members.written(), None),
        (
            "organizations",
            table_of("organization"),
            def.organizations.written(),
            None,
        ),
        (
            "waivers",
            Some(roles.waivers.table.clone()),
            def.waivers.written(),
            def.waivers.table.as_ref(),
        ),
    ];
    for (role, table, mut written, table_written) in tables {
        written.sort_by_key(|(_, name)| name.span().start);
        let what = format!("`[roles.{role}]`");
        if let Some(t) = table_written
            && !schema.tables.contains_key(t.get_ref())
        {
            let mut d = Diag::error(
                Code::RB0113,
                format!("{what}: unknown table `{}`", t.get_ref()),
            )
            .at(cx.loc(file, t))
            .label("not a table of the schema");
            if let Some(h) = did_you_mean(t.get_ref(), schema.tables.keys().map(|s| s.as_str())) {
                d = d.help(h);
            }
            cx.err(d);
            continue;
        }
        for (field, name) in written {
            if field == "table" || (role, field) == ("organizations", "branch") {
                continue;
            }
            let Some(table) = &table else {
                cx.err(
                    Diag::error(
                        Code::RB0113,
                        format!("{what}: there is no `{}` subject", &role[..role.len() - 1]),
                    )
                    .at(cx.loc(file, name)),
                );
                break;
            };
            let kinds = needed_kinds(role, field);
            column_of(cx, file, schema, &what, table, name, kinds);
        }
    }
    check_branch_kind(cx, def, file, schema, &roles, table_of("organization"));
    roles
}

/// The column kinds a role's column must have (empty: any).
fn needed_kinds(role: &str, field: &str) -> &'static [ColumnType] {
    match (role, field) {
        ("services", "start" | "end") => &[ColumnType::Datetime],
        ("services", "verified") => &[ColumnType::Bool],
        ("waivers", "valid_from" | "valid_until") => &[ColumnType::Date],
        _ => &[],
    }
}

/// Error unless `table` (if declared) has the column `name` of one of `kinds`.
fn column_of(
    cx: &mut Ctx,
    file: FileId,
    schema: &Schema,
    what: &str,
    table: &str,
    name: &Spanned<String>,
    kinds: &[ColumnType],
) {
    let Some(t) = schema.tables.get(table) else {
        cx.err(
            Diag::error(
                Code::RB0113,
                format!(
                    "{what}: table `{table}` is not declared, so it has no column `{}`",
                    name.get_ref()
                ),
            )
            .at(cx.loc(file, name))
            .help(format!(
                "declare `[tables.{table}]`, or name its table in `[roles]`"
            )),
        );
        return;
    };
    match t.columns.iter().find(|c| c.name == *name.get_ref()) {
        None => {
            let mut d = Diag::error(
                Code::RB0113,
                format!("{what}: table `{table}` has no column `{}`", name.get_ref()),
            )
            .at(cx.loc(file, name))
            .label("not a column of that table");
            if let Some(h) = did_you_mean(name.get_ref(), t.columns.iter().map(|c| c.name.as_str()))
            {
                d = d.help(h);
            }
            cx.err(d);
        }
        Some(c) if !kinds.is_empty() && !kinds.contains(&c.ty) => cx.err(
            Diag::error(
                Code::RB0113,
                format!(
                    "{what}: column `{table}.{}` is {}, not {}",
                    c.name,
                    c.ty.name(),
                    kinds
                        .iter()
                        .map(|k| k.name())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            )
            .at(cx.loc(file, name))
            .help(format!(
                "name a {} column of `{table}`",
                kinds
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )),
        ),
        Some(_) => {}
    }
}

/// `[roles.organizations] branch` must be a value of the kind column when that is an enum.
fn check_branch_kind(
    cx: &mut Ctx,
    def: &RolesDef,
    file: FileId,
    schema: &Schema,
    roles: &Roles,
    org_table: Option<String>,
) {
    let Some(written) = &def.organizations.branch else {
        return;
    };
    let Some(c) = (org_table.as_deref())
        .and_then(|t| schema.tables.get(t))
        .and_then(|t| {
            t.columns
                .iter()
                .find(|c| c.name == roles.organizations.kind)
        })
    else {
        return;
    };
    if c.ty == ColumnType::Enum && !c.values.iter().any(|(v, _)| v == written.get_ref()) {
        let words: Vec<&str> = c.values.iter().map(|(v, _)| v.as_str()).collect();
        let mut d = Diag::error(
            Code::RB0113,
            format!(
                "`[roles.organizations]`: `{}` is not a value of column `{}`",
                written.get_ref(),
                c.name
            ),
        )
        .at(cx.loc(file, written))
        .help(format!("its values: {}", words.join(", ")));
        if let Some(h) = did_you_mean(written.get_ref(), words.iter().copied()) {
            d = d.help(h);
        }
        cx.err(d);
    }
}
