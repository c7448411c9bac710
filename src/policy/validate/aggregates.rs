//! Checking `[aggregates.*]`: the subject and table, the `by` path to the subject's table,
//! every filter condition against its column, and the operation with its columns. Each
//! problem is reported at its place; an aggregate that cannot be checked further is left out.

use super::*;

/// Build and check every declared aggregate.
pub(super) fn build_aggregates(
    cx: &mut Ctx,
    decls: &[(model::Declarations, FileId)],
    schema: &Schema,
    subjects: &IndexMap<String, SubjectKind>,
    params: &IndexMap<String, Param>,
    periods: &[(String, Spanned<model::PeriodDef>, FileId)],
) -> IndexMap<String, Aggregate> {
    check_unique(
        cx,
        decls
            .iter()
            .flat_map(|(d, f)| d.aggregates.iter().map(move |(n, a)| (n, a.span(), *f))),
        "aggregate",
    );
    let all = || decls.iter().flat_map(|(d, _)| d.aggregates.iter());
    let agg_subjects: HashMap<String, String> = all()
        .map(|(n, a)| (n.clone(), a.get_ref().subject.get_ref().clone()))
        .collect();
    let agg_ops: HashMap<String, AggOp> = all()
        .map(|(n, a)| (n.clone(), *a.get_ref().op.get_ref()))
        .collect();
    let period_names: Vec<&str> = periods.iter().map(|(n, _, _)| n.as_str()).collect();
    let names = Names {
        schema,
        params,
        agg_subjects: &agg_subjects,
        agg_ops: &agg_ops,
        period_names: &period_names,
    };
    let mut out = IndexMap::new();
    for (d, file) in decls {
        for (name, a) in &d.aggregates {
            if let Some(agg) = names.aggregate(cx, name, a, *file, subjects) {
                out.insert(name.clone(), agg);
            }
        }
    }
    out
}

/// What an aggregate's names are checked against.
struct Names<'a> {
    schema: &'a Schema,
    params: &'a IndexMap<String, Param>,
    /// Every aggregate's subject kind, by name.
    agg_subjects: &'a HashMap<String, String>,
    agg_ops: &'a HashMap<String, AggOp>,
    period_names: &'a [&'a str],
}

/// The aggregate being checked.
struct One<'a> {
    name: &'a str,
    file: FileId,
    subject: &'a str,
    /// The subject kind's table (`None` when the subject is unknown).
    subject_table: Option<&'a TableSchema>,
    /// The table the aggregate reads.
    table: &'a TableSchema,
}

impl Names<'_> {
    /// One aggregate, checked; `None` when its table is unknown.
    fn aggregate(
        &self,
        cx: &mut Ctx,
        name: &str,
        a: &Spanned<model::AggDef>,
        file: FileId,
        subjects: &IndexMap<String, SubjectKind>,
    ) -> Option<Aggregate> {
        let ad = a.get_ref();
        let subject = ad.subject.get_ref();
        let subject_table = match subjects.get(subject) {
            Some(s) => self.schema.tables.get(&s.table),
            None => {
                let mut d = Diag::error(
                    Code::RB0104,
                    format!("aggregate `{name}`: unknown subject `{subject}`"),
                )
                .at(cx.loc(file, &ad.subject));
                if let Some(h) = did_you_mean(subject, subjects.keys().map(|s| s.as_str())) {
                    d = d.help(h);
                }
                cx.err(d);
                None
            }
        };
        let Some(table) = self.schema.tables.get(ad.table.get_ref()) else {
            let mut d = Diag::error(
                Code::RB0102,
                format!("aggregate `{name}`: unknown table `{}`", ad.table.get_ref()),
            )
            .at(cx.loc(file, &ad.table))
            .label("no such table");
            if let Some(h) = did_you_mean(
                ad.table.get_ref(),
                self.schema.tables.keys().map(|s| s.as_str()),
            ) {
                d = d.help(h);
            } else {
                d = d.help("declare the table under [tables.NAME] in policy.toml or in this file");
            }
            cx.err(d);
            cx.broken.insert(name.to_string());
            return None;
        };
        let one = One {
            name,
            file,
            subject,
            subject_table,
            table,
        };
        let by: Vec<String> = ad
            .by
            .get_ref()
            .split('.')
            .map(|s| s.trim().to_string())
            .collect();
        if let Some(st) = subject_table {
            self.check_by(cx, &one, st, &by, Loc::new(file, ad.by.span()));
        }
        let filters = ad
            .filters
            .iter()
            .flat_map(|f| self.filter(cx, &one, f))
            .collect();
        self.check_op(cx, &one, ad);
        Some(Aggregate {
            name: name.to_string(),
            label: ad.label.clone().unwrap_or_else(|| name.to_string()),
            subject: subject.clone(),
            table: table.name.clone(),
            by,
            filters,
            op: *ad.op.get_ref(),
            column: ad.column.as_ref().map(|c| c.get_ref().clone()),
            end_column: ad.end_column.as_ref().map(|c| c.get_ref().clone()),
            pick: ad.pick.as_ref().map(|c| c.get_ref().clone()),
            except_days: ad.except_days.as_ref().map(|c| c.get_ref().clone()),
            merge_overlaps: ad.merge_overlaps,
            loc: Loc::new(file, a.span()),
        })
    }

    /// The `by` path: each step a column, each but the last a reference, ending at the
    /// subject's table (or its key).
    fn check_by(&self, cx: &mut Ctx, one: &One, st: &TableSchema, by: &[String], by_loc: Loc) {
        let (name, subject) = (one.name, one.subject);
        let mut cur = one.table;
        for (i, step) in by.iter().enumerate() {
            let Some(ci) = cur.column(step) else {
                let mut d = Diag::error(
                    Code::RB0112,
                    format!(
                        "aggregate `{name}`: `by` step `{step}` is not a column of `{}`",
                        cur.name
                    ),
                )
                .at(Some(by_loc.clone()));
                if let Some(h) = did_you_mean(step, cur.columns.iter().map(|c| c.name.as_str())) {
                    d = d.help(h);
                }
                cx.err(d);
                return;
            };
            let col = &cur.columns[ci];
            let last = i + 1 == by.len();
            if last && cur.name == st.name && cur.key == Some(ci) {
                return;
            }
            match col
                .references
                .as_deref()
                .and_then(|r| self.schema.tables.get(r))
            {
                Some(next) => {
                    if last && next.name != st.name {
                        cx.err(
                            Diag::error(Code::RB0112, format!("aggregate `{name}`: `by` ends at table `{}`, but subject `{subject}` is table `{}`", next.name, st.name))
                                .at(Some(by_loc.clone()))
                                .help("follow references until the subject's table, e.g. `member_id.branch_id`"),
                        );
                    }
                    cur = next;
                }
                None => {
                    cx.err(
                        Diag::error(Code::RB0112, format!("aggregate `{name}`: `{}.{step}` does not reference another table", cur.name))
                            .at(Some(by_loc.clone()))
                            .help("`by` must name a column with `references = …` leading to the subject's table"),
                    );
                    return;
                }
            }
        }
    }

    /// One `[[aggregates.X.where]]` entry: its conditions, each checked against the column.
    fn filter(&self, cx: &mut Ctx, one: &One, f: &Spanned<FilterDef>) -> Vec<Filter> {
        let (name, table) = (one.name, one.table);
        let floc = Loc::new(one.file, f.span());
        let fd: &FilterDef = f.get_ref();
        let Some(ci) = table.column(&fd.column) else {
            let mut d = Diag::error(
                Code::RB0103,
                format!(
                    "aggregate `{name}`: table `{}` has no column `{}`",
                    table.name, fd.column
                ),
            )
            .at(Some(floc));
            if let Some(h) = did_you_mean(&fd.column, table.columns.iter().map(|c| c.name.as_str()))
            {
                d = d.help(h);
            }
            cx.err(d);
            return Vec::new();
        };
        let col = &table.columns[ci];
        let conds = filter_conds(fd);
        if conds.is_empty() {
            cx.err(Diag::error(Code::RB0110, format!("aggregate `{name}`: condition on `{}` says nothing", fd.column))
                .at(Some(floc.clone()))
                .help("add one of: is, is_not, in, not_in, within, from, until, weekday, time_from, time_before, present"));
        }
        let mut out = Vec::new();
        for cond in conds {
            match cond {
                Ok(cond) => {
                    self.check_cond(cx, one, col, &cond, &floc);
                    out.push(Filter {
                        column: fd.column.clone(),
                        cond,
                    });
                }
                Err(msg) => cx.err(
                    Diag::error(Code::RB0110, format!("aggregate `{name}`: {msg}"))
                        .at(Some(floc.clone())),
                ),
            }
        }
        out
    }

    /// A condition fits its column's type, and the names it uses exist.
    fn check_cond(&self, cx: &mut Ctx, one: &One, col: &ColumnSchema, cond: &Cond, floc: &Loc) {
        let name = one.name;
        let is_time = matches!(col.ty, ColumnType::Date | ColumnType::Datetime);
        let mut bad = |msg: String| cx.err(Diag::error(Code::RB0110, msg).at(Some(floc.clone())));
        let mut refs: Vec<(&ValueRef, Option<&ColumnSchema>)> = Vec::new();
        match cond {
            Cond::Is(r) | Cond::IsNot(r) => refs.push((r, Some(col))),
            Cond::In(rs) | Cond::NotIn(rs) => refs.extend(rs.iter().map(|r| (r, Some(col)))),
            Cond::From(r) | Cond::Until(r) => {
                if !is_time && col.ty != ColumnType::Number {
                    bad(format!(
                        "aggregate `{name}`: `from`/`until` need a date or number column; `{}` is {}",
                        col.name,
                        col.ty.name()
                    ));
                }
                refs.push((r, Some(col)));
            }
            Cond::Within(p) => {
                if !is_time {
                    bad(format!(
                        "aggregate `{name}`: `within` needs a date column; `{}` is {}",
                        col.name,
                        col.ty.name()
                    ));
                }
                if !self.period_names.contains(&p.as_str()) && !cx.broken.contains(p) {
                    let mut d = Diag::error(
                        Code::RB0107,
                        format!("aggregate `{name}`: unknown period `{p}`"),
                    )
                    .at(Some(floc.clone()));
                    if let Some(h) = did_you_mean(p, self.period_names.iter().copied()) {
                        d = d.help(h);
                    }
                    cx.err(d);
                }
            }
            Cond::Weekday(r) => {
                if !is_time {
                    bad(format!("aggregate `{name}`: `weekday` needs a date column"));
                }
                refs.push((r, None));
            }
            Cond::WorkingDay(_) if !is_time => {
                bad(format!(
                    "aggregate `{name}`: `working_day` needs a date or datetime column; `{}` is {}",
                    col.name,
                    col.ty.name()
                ));
            }
            Cond::WorkingTime { end, .. } => {
                let end_ty = one.table.column(end).map(|i| one.table.columns[i].ty);
                if col.ty != ColumnType::Datetime || end_ty != Some(ColumnType::Datetime) {
                    bad(format!(
                        "aggregate `{name}`: `working_time` needs `column` and `end_column` naming datetime columns of `{}`",
                        one.table.name
                    ));
                }
            }
            Cond::TimeFrom(r) | Cond::TimeBefore(r) => {
                if col.ty != ColumnType::Datetime {
                    bad(format!(
                        "aggregate `{name}`: time of day needs a datetime column; `{}` is {}",
                        col.name,
                        col.ty.name()
                    ));
                }
                refs.push((r, None));
            }
            _ => {}
        }
        for (r, col) in refs {
            self.check_ref(cx, one, r, floc, col);
        }
    }

    /// The operation has the columns it needs, and `merge_overlaps` / `except_days` fit it.
    fn check_op(&self, cx: &mut Ctx, one: &One, ad: &model::AggDef) {
        let (name, file, table) = (one.name, one.file, one.table);
        let col_of = |cx: &mut Ctx, c: &Spanned<String>, what: &str| -> Option<ColumnSchema> {
            match table.column(c.get_ref()) {
                Some(i) => Some(table.columns[i].clone()),
                None => {
                    let mut d = Diag::error(
                        Code::RB0103,
                        format!(
                            "aggregate `{name}`: table `{}` has no column `{}` ({what})",
                            table.name,
                            c.get_ref()
                        ),
                    )
                    .at(Some(Loc::new(file, c.span())));
                    if let Some(h) =
                        did_you_mean(c.get_ref(), table.columns.iter().map(|c| c.name.as_str()))
                    {
                        d = d.help(h);
                    }
                    cx.err(d);
                    None
                }
            }
        };
        let op = *ad.op.get_ref();
        let column = ad.column.as_ref().and_then(|c| col_of(cx, c, "column"));
        let end_column = ad
            .end_column
            .as_ref()
            .and_then(|c| col_of(cx, c, "end_column"));
        if let Some(p) = &ad.pick {
            col_of(cx, p, "pick");
        }
        let need = |cx: &mut Ctx, ok: bool, what: &str| {
            if !ok {
                cx.err(
                    Diag::error(
                        Code::RB0110,
                        format!("aggregate `{name}`: op `{}` needs {what}", op.name()),
                    )
                    .at(Some(Loc::new(file, ad.op.span()))),
                );
            }
        };
        let ty = column.as_ref().map(|c| c.ty);
        let dated = matches!(ty, Some(ColumnType::Date | ColumnType::Datetime));
        match op {
            AggOp::Count | AggOp::Exists | AggOp::Records => {}
            AggOp::CountDays | AggOp::Days => {
                need(cx, dated, "`column` naming a date or datetime column")
            }
            AggOp::Sum => need(
                cx,
                ty == Some(ColumnType::Number),
                "`column` naming a number column",
            ),
            AggOp::CountDistinct => need(cx, ad.column.is_some(), "`column`"),
            AggOp::SumHours | AggOp::SumWorkingHours => need(
                cx,
                ty == Some(ColumnType::Datetime)
                    && end_column
                        .as_ref()
                        .is_some_and(|c| c.ty == ColumnType::Datetime),
                "`column` (start) and `end_column` (end), both datetime columns",
            ),
            AggOp::Min | AggOp::Max => need(cx, ad.column.is_some(), "`column`"),
        }
        if ad.merge_overlaps && !matches!(op, AggOp::SumHours | AggOp::SumWorkingHours) {
            need(
                cx,
                false,
                "op `sum_hours` or `sum_working_hours` to use `merge_overlaps`",
            );
        }
        if let Some(e) = &ad.except_days {
            if !matches!(op, AggOp::Days | AggOp::CountDays) {
                need(cx, false, "op `days` or `count_days` to use `except_days`");
            }
            match self.agg_ops.get(e.get_ref()) {
                Some(AggOp::Days) if self.agg_subjects.get(e.get_ref()).map(String::as_str) == Some(one.subject) => {}
                Some(_) => cx.err(Diag::error(Code::RB0106, format!("aggregate `{name}`: `except_days` must name a `days` aggregate of the same subject")).at(Some(Loc::new(file, e.span())))),
                None if cx.broken.contains(e.get_ref()) => {}
                None => {
                    let mut d = Diag::error(Code::RB0106, format!("aggregate `{name}`: unknown aggregate `{}`", e.get_ref())).at(Some(Loc::new(file, e.span())));
                    if let Some(h) = did_you_mean(e.get_ref(), self.agg_ops.keys().map(|s| s.as_str())) {
                        d = d.help(h);
                    }
                    cx.err(d);
                }
            }
        }
    }

    /// A value a condition compares with: a subject column, parameter or aggregate that
    /// exists (an aggregate of the same subject), or a literal that fits `col`.
    fn check_ref(
        &self,
        cx: &mut Ctx,
        one: &One,
        r: &ValueRef,
        loc: &Loc,
        col: Option<&ColumnSchema>,
    ) {
        let subject = one.subject;
        match r {
            ValueRef::Subject(c) => {
                if let Some(t) = one.subject_table
                    && t.column(c).is_none()
                {
                    let mut d = Diag::error(
                        Code::RB0103,
                        format!("`$subject.{c}`: table `{}` has no column `{c}`", t.name),
                    )
                    .at(Some(loc.clone()));
                    if let Some(h) = did_you_mean(c, t.columns.iter().map(|c| c.name.as_str())) {
                        d = d.help(h);
                    }
                    cx.err(d);
                }
            }
            ValueRef::Param(p) => {
                if !self.params.contains_key(p) && !cx.broken.contains(p) {
                    let mut d = Diag::error(Code::RB0105, format!("unknown parameter `{p}`"))
                        .at(Some(loc.clone()));
                    if let Some(h) = did_you_mean(p, self.params.keys().map(|s| s.as_str())) {
                        d = d.help(h);
                    }
                    cx.err(d);
                }
            }
            ValueRef::Agg(a) => match self.agg_subjects.get(a) {
                None if cx.broken.contains(a) => {}
                None => {
                    let mut d = Diag::error(Code::RB0106, format!("unknown aggregate `{a}`"))
                        .at(Some(loc.clone()));
                    if let Some(h) = did_you_mean(a, self.agg_subjects.keys().map(|s| s.as_str())) {
                        d = d.help(h);
                    }
                    cx.err(d);
                }
                Some(s) if s != subject => cx.err(
                    Diag::error(
                        Code::RB0106,
                        format!("aggregate `{a}` is computed for `{s}`, not `{subject}`"),
                    )
                    .at(Some(loc.clone())),
                ),
                _ => {}
            },
            ValueRef::Lit(v) => {
                if let Some(col) = col
                    && let Err(msg) = check_literal(col, v)
                {
                    cx.err(Diag::error(Code::RB0110, msg).at(Some(loc.clone())));
                }
            }
            ValueRef::AsOf => {}
        }
    }
}

fn filter_conds(f: &FilterDef) -> Vec<Result<Cond, String>> {
    let mut out = Vec::new();
    let one = |v: &toml::Value| value_ref(v);
    if let Some(v) = &f.is {
        out.push(one(v).map(Cond::Is));
    }
    if let Some(v) = &f.is_not {
        out.push(one(v).map(Cond::IsNot));
    }
    if let Some(vs) = &f.one_of {
        out.push(
            vs.iter()
                .map(one)
                .collect::<Result<Vec<_>, _>>()
                .map(Cond::In),
        );
    }
    if let Some(vs) = &f.not_in {
        out.push(
            vs.iter()
                .map(one)
                .collect::<Result<Vec<_>, _>>()
                .map(Cond::NotIn),
        );
    }
    if let Some(p) = &f.within {
        out.push(Ok(Cond::Within(p.clone())));
    }
    if let Some(v) = &f.from {
        out.push(one(v).map(Cond::From));
    }
    if let Some(v) = &f.until {
        out.push(one(v).map(Cond::Until));
    }
    if let Some(w) = &f.weekday {
        out.push(one(w).and_then(|r| match &r {
            ValueRef::Lit(v) if weekdays(v).is_none() => {
                Err("weekdays are a list of 1 (Monday) to 7 (Sunday), e.g. [1, 2, 3, 4, 5]".into())
            }
            _ => Ok(Cond::Weekday(r)),
        }));
    }
    for (t, ctor) in [
        (&f.time_from, Cond::TimeFrom as fn(ValueRef) -> Cond),
        (&f.time_before, Cond::TimeBefore),
    ] {
        if let Some(t) = t {
            out.push(one(t).and_then(|r| match &r {
                ValueRef::Lit(v) if time_of_day(v).is_none() => {
                    Err(format!("`{v}` is not a time of day (write \"09:00\")"))
                }
                _ => Ok(ctor(r)),
            }));
        }
    }
    if let Some(p) = f.present {
        out.push(Ok(Cond::Present(p)));
    }
    if let Some(w) = f.working_day {
        out.push(Ok(Cond::WorkingDay(w)));
    }
    match (&f.working_time, &f.end_column) {
        (Some(w), Some(end)) => out.push(Ok(Cond::WorkingTime {
            overlaps: *w,
            end: end.clone(),
        })),
        (Some(_), None) => out.push(Err(
            "`working_time` needs `end_column`, the column where the span ends".into(),
        )),
        (None, Some(_)) => out.push(Err("`end_column` goes with `working_time`".into())),
        (None, None) => {}
    }
    out
}

/// A literal compared with a column must fit the column's type.
fn check_literal(col: &ColumnSchema, v: &toml::Value) -> Result<(), String> {
    match (col.ty, v) {
        (ColumnType::Enum, toml::Value::String(s)) => {
            if col.values.iter().any(|(k, _)| k == s) {
                Ok(())
            } else {
                let names: Vec<&str> = col.values.iter().map(|(k, _)| k.as_str()).collect();
                let hint = did_you_mean(s, names.iter().copied())
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default();
                Err(format!(
                    "`{s}` is not a value of `{}` (values: {}){hint}",
                    col.name,
                    names.join(", ")
                ))
            }
        }
        (ColumnType::Bool, toml::Value::Boolean(_)) => Ok(()),
        (ColumnType::Bool, _) => Err(format!(
            "`{}` is a yes/no column: compare with true or false",
            col.name
        )),
        (ColumnType::Date | ColumnType::Datetime, toml::Value::Datetime(_)) => Ok(()),
        (ColumnType::Date | ColumnType::Datetime, toml::Value::String(s)) => {
            if parse_date(s).is_some() {
                Ok(())
            } else {
                Err(format!("`{s}` is not a date (write 2020-02-07)"))
            }
        }
        (ColumnType::Number, toml::Value::Integer(_) | toml::Value::Float(_)) => Ok(()),
        (ColumnType::Id | ColumnType::Text, toml::Value::String(_)) => Ok(()),
        (ty, v) => Err(format!(
            "column `{}` holds {} values; `{v}` does not fit",
            col.name,
            ty.name()
        )),
    }
}
