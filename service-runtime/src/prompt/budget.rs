//! A static bound on what rendering a template can build.
//!
//! minijinja bounds instructions (fuel) but not the size of values: `~` is a
//! `format!`, `*` repeats a string up to 100 MB, and filters such as
//! `replace`, `join`, `indent` or `format` multiply their input. A few hundred
//! bytes of template can thus build gigabytes in a handful of instructions.
//!
//! Before a template is compiled, this module walks its syntax tree (shallow,
//! once [`faas_model::prompt::structure`] has passed) and computes for every expression an
//! upper bound of the bytes its value can take, from the sizes of the
//! variables (nominal ones when a template is saved, the real ones when it is
//! rendered). It refuses the template when one value, the memory a render
//! holds, or the work it does could pass the limits below, when a loop could
//! make a value grow from one pass to the next, and when it uses constructs
//! whose output the bound cannot follow (macros, call, filter and set blocks,
//! autoescape, recursive loops, include/import/extends, unknown filters and
//! functions).

use std::collections::HashMap;

use minijinja::machinery::ast::{self, Expr, Stmt};
use minijinja::machinery::{Span, WhitespaceConfig};

/// The largest value (string, list, map) one expression may build.
pub const MAX_VALUE_BYTES: u64 = 4 * 1024 * 1024;
/// Values a render holds at once: stored by `set`/`with`/`for` plus the
/// temporaries of one expression.
pub const MAX_MEMORY_BYTES: u64 = 16 * 1024 * 1024;
/// Bytes a render may allocate, copy or compare, loops counted.
pub const MAX_WORK_BYTES: u64 = 128 * 1024 * 1024;
/// Nesting of lists, maps and namespaces a value may reach.
pub const MAX_VALUE_DEPTH: u32 = 64;
/// Items `batch` and `slice` may make, and `range` yields (minijinja's own cap).
const MAX_COUNT: u64 = 100_000;
/// Nodes the analysis visits before it gives up on a template.
const MAX_STEPS: u64 = 2_000_000;
/// Bytes a scalar value or an empty container takes.
const SMALL: u64 = 32;

/// What a value can be, as far as the analysis knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A number, boolean or none.
    Number,
    Str,
    /// A list, map or other object, never a string.
    Other,
    Any,
}

/// An upper bound of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    pub bytes: u64,
    pub depth: u32,
    pub kind: Kind,
    /// For numbers, the largest magnitude when it is known.
    pub num: Option<u64>,
    /// Iterating yields numbers of at most this magnitude (ranges).
    pub items_num: Option<u64>,
    /// What iterating yields, when all items are of one kind.
    pub item_kind: Option<Kind>,
    /// The value is or contains a namespace, the one mutable kind of value.
    pub holds_ns: bool,
    /// The shape of a given value (see [`Inputs`]).
    shape: Option<u32>,
    /// Stands for all items of a list at once: what is reached through it
    /// has the kinds of one item and the bytes of all.
    sum_view: bool,
}

impl Bound {
    const UNDEFINED: Bound = Bound {
        bytes: SMALL,
        depth: 0,
        kind: Kind::Any,
        num: None,
        items_num: None,
        item_kind: None,
        holds_ns: false,
        shape: None,
        sum_view: false,
    };
    const NOTHING: Bound = Bound {
        bytes: 0,
        depth: 0,
        kind: Kind::Any,
        num: None,
        items_num: None,
        item_kind: None,
        holds_ns: false,
        shape: None,
        sum_view: false,
    };

    pub fn number(num: Option<u64>) -> Bound {
        Bound {
            kind: Kind::Number,
            num,
            ..Bound::UNDEFINED
        }
    }

    pub fn string(len: u64) -> Bound {
        Bound {
            bytes: SMALL.saturating_add(len),
            kind: Kind::Str,
            ..Bound::UNDEFINED
        }
    }

    fn other(bytes: u64, depth: u32) -> Bound {
        Bound {
            bytes,
            depth,
            kind: Kind::Other,
            ..Bound::UNDEFINED
        }
    }

    /// A value of `bytes` whose kind only its declaration tells.
    pub fn nominal(kind: Kind, bytes: u64, depth: u32) -> Bound {
        Bound {
            bytes,
            depth,
            kind,
            num: (kind == Kind::Number).then_some(bytes),
            ..Bound::UNDEFINED
        }
    }

    /// The bound of a JSON value given by a client.
    pub fn of_json(v: &serde_json::Value) -> Bound {
        use serde_json::Value as J;
        match v {
            J::Null | J::Bool(_) => Bound::number(Some(1)),
            J::Number(n) => Bound::number(magnitude(n.as_f64().unwrap_or(f64::MAX))),
            J::String(s) => Bound::string(s.len() as u64),
            J::Array(items) => {
                let inner = items.iter().map(Bound::of_json);
                container(inner.map(|b| (b, SMALL)))
            }
            J::Object(m) => {
                let inner = m
                    .iter()
                    .map(|(k, v)| (Bound::of_json(v), SMALL + k.len() as u64));
                map_of(inner, Some(Kind::Str))
            }
        }
    }

    fn of_const(v: &minijinja::Value) -> Bound {
        use minijinja::value::ValueKind as V;
        match v.kind() {
            V::Undefined | V::None | V::Bool => Bound::number(Some(1)),
            V::Number => Bound::number(magnitude(f64::try_from(v.clone()).unwrap_or(f64::MAX))),
            V::String => Bound::string(v.as_str().map_or(0, |s| s.len() as u64)),
            V::Seq | V::Map => {
                let items = v.try_iter().into_iter().flatten();
                let map = v.kind() == V::Map;
                let b = container(items.map(|k| {
                    let value = if map {
                        v.get_item(&k).unwrap_or_default()
                    } else {
                        k.clone()
                    };
                    let key = if map { Bound::of_const(&k).bytes } else { 0 };
                    (Bound::of_const(&value), key)
                }));
                if map {
                    Bound {
                        items_num: None,
                        item_kind: None,
                        ..b
                    }
                } else {
                    b
                }
            }
            _ => Bound::UNDEFINED,
        }
    }

    fn join(self, o: Bound) -> Bound {
        let both_numbers = self.kind == Kind::Number && o.kind == Kind::Number;
        Bound {
            bytes: self.bytes.max(o.bytes),
            depth: self.depth.max(o.depth),
            kind: if self.kind == o.kind {
                self.kind
            } else {
                Kind::Any
            },
            num: if both_numbers {
                max_known(self.num, o.num)
            } else {
                None
            },
            items_num: match (self.items_num, o.items_num) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            },
            item_kind: if self.item_kind == o.item_kind {
                self.item_kind
            } else {
                None
            },
            holds_ns: self.holds_ns || o.holds_ns,
            shape: if self.shape == o.shape {
                self.shape
            } else {
                None
            },
            sum_view: self.sum_view || o.sum_view,
        }
    }

    /// Bytes of the value turned into text: strings and numbers as they are,
    /// containers through their representation, which quotes and escapes.
    fn text(&self) -> u64 {
        match self.kind {
            Kind::Str | Kind::Number => self.bytes,
            Kind::Other | Kind::Any => self.bytes.saturating_mul(6),
        }
    }

    /// Characters of the value as text, without the size of the value itself:
    /// what a separator or replacement adds each time it is inserted.
    fn len(&self) -> u64 {
        self.text().saturating_sub(SMALL)
    }

    /// How many items iterating over the value can yield.
    fn items(&self) -> u64 {
        match self.kind {
            Kind::Number => 0,
            Kind::Other => self.bytes / SMALL + 1,
            Kind::Str | Kind::Any => self.bytes,
        }
    }

    /// One item, attribute or element of the value, shape unknown.
    fn item(&self) -> Bound {
        if let Some(n) = self.items_num {
            return Bound::number(Some(n));
        }
        if self.kind == Kind::Number {
            return Bound::UNDEFINED;
        }
        Bound {
            bytes: self.bytes,
            depth: self.depth.saturating_sub(1),
            kind: self.item_kind.unwrap_or(Kind::Any),
            holds_ns: self.holds_ns,
            ..Bound::UNDEFINED
        }
    }

    /// Bytes of the items turned into text one by one (`join`).
    fn items_text(&self) -> u64 {
        match self.item_kind {
            Some(Kind::Str | Kind::Number) => self.bytes,
            _ if self.items_num.is_some() => self.bytes,
            _ => self.bytes.saturating_mul(6),
        }
    }

    /// A new list of the items (sorted, filtered, reversed…).
    fn copy_items(&self) -> Bound {
        let per_item = if self.kind == Kind::Other { 2 } else { SMALL };
        Bound {
            bytes: self.bytes.saturating_mul(per_item).saturating_add(SMALL),
            kind: if self.kind == Kind::Str {
                Kind::Str
            } else {
                Kind::Other
            },
            num: None,
            // The same items, so the same shape.
            ..*self
        }
    }
}

fn magnitude(f: f64) -> Option<u64> {
    let m = f.abs().ceil();
    // `as` saturates; infinities and NaN have no useful magnitude.
    m.is_finite().then_some(m as u64)
}

fn max_known(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(a?.max(b?))
}

/// A list of `(item, 0)`, or a map of `(value, key bytes)`; iterating over a
/// map yields its keys, so a caller building one sets `item_kind` to theirs.
fn container(items: impl Iterator<Item = (Bound, u64)>) -> Bound {
    let mut b = Bound::other(SMALL, 1);
    let mut numbers = Some(0u64);
    let mut kind: Option<Option<Kind>> = None;
    for (item, key) in items {
        kind = Some(match kind {
            None => Some(item.kind),
            Some(k) if k == Some(item.kind) => k,
            Some(_) => None,
        });
        b.bytes = b.bytes.saturating_add(item.bytes).saturating_add(key);
        b.depth = b.depth.max(item.depth.saturating_add(1));
        b.holds_ns |= item.holds_ns;
        numbers = match (numbers, item.kind, item.num) {
            (Some(n), Kind::Number, Some(m)) => Some(n.max(m)),
            _ => None,
        };
    }
    b.items_num = numbers;
    b.item_kind = kind.flatten();
    b
}

/// A map: like a list of its values, but iterating yields its keys.
fn map_of(items: impl Iterator<Item = (Bound, u64)>, keys: Option<Kind>) -> Bound {
    Bound {
        items_num: None,
        item_kind: keys,
        ..container(items)
    }
}

/// What an accepted template may cost at most.
#[derive(Debug)]
pub struct Report {
    pub memory: u64,
    pub work: u64,
}

/// Analyses `src` with the variables bounded by `inputs`.
pub fn analyse(src: &str, inputs: &Inputs) -> Result<Report, String> {
    let ast = minijinja::machinery::parse(
        src,
        "<template>",
        Default::default(),
        WhitespaceConfig::default(),
    )
    .map_err(|e| faas_model::prompt::structure::describe(&e))?;
    let mut a = Analyser {
        inputs,
        vars: HashMap::new(),
        ns: Bound::NOTHING,
        loops: Vec::new(),
        stored: HashMap::new(),
        depth: 0,
        transient: 0,
        expr_alloc: 0,
        expr_work: 0,
        steps: 0,
        checking: true,
    };
    let work = a.stmt(&ast)?;
    let memory = a
        .stored
        .values()
        .fold(a.transient, |acc, b| acc.saturating_add(*b));
    if memory > MAX_MEMORY_BYTES {
        return Err(format!(
            "rendering could hold up to {memory} bytes of values, more than the limit of {MAX_MEMORY_BYTES}"
        ));
    }
    if work > MAX_WORK_BYTES {
        return Err(format!(
            "rendering could process up to {work} bytes, more than the limit of {MAX_WORK_BYTES}"
        ));
    }
    Ok(Report { memory, work })
}

/// Where a stored value lives: a name of a scope (a later `set` of the same
/// name in the same scope drops the earlier value), or a statement.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Slot {
    Name(String, u32),
    Statement(u32),
}

struct LoopInfo {
    count: u64,
    item: Bound,
}

#[derive(Clone, PartialEq)]
struct Scope {
    vars: HashMap<String, Bound>,
    ns: Bound,
}

struct Analyser<'i> {
    inputs: &'i Inputs,
    /// Names assigned by `set`, `with` and `for`.
    vars: HashMap<String, Bound>,
    /// Every namespace attribute, whichever namespace it belongs to.
    ns: Bound,
    loops: Vec<LoopInfo>,
    /// The largest value each storing statement keeps, by source offset.
    stored: HashMap<Slot, u64>,
    /// Loops and `with` blocks around the statement being walked: each
    /// opens a scope whose names live beside the outer ones.
    depth: u32,
    /// The largest sum of temporaries of one expression.
    transient: u64,
    expr_alloc: u64,
    expr_work: u64,
    steps: u64,
    /// Off while a loop body is walked only for its work, with item bounds
    /// that are not those of one item.
    checking: bool,
}

fn at(span: Span) -> String {
    format!("line {}", span.start_line)
}

fn unsupported(what: &str, span: Span) -> String {
    format!(
        "{}: {what} is not available in prompt templates (macros, call, filter and set blocks, \
         autoescape, recursive loops, blocks, include, import and extends are not)",
        at(span)
    )
}

impl Analyser<'_> {
    fn scope(&self) -> Scope {
        Scope {
            vars: self.vars.clone(),
            ns: self.ns,
        }
    }

    fn restore(&mut self, s: Scope) {
        self.vars = s.vars;
        self.ns = s.ns;
    }

    fn lookup(&self, name: &str) -> Bound {
        if let Some(b) = self.vars.get(name).or_else(|| self.inputs.vars.get(name)) {
            return *b;
        }
        match (name, self.loops.last()) {
            ("loop", Some(l)) => Bound {
                holds_ns: l.item.holds_ns,
                ..Bound::other(
                    l.item.bytes.saturating_mul(2).saturating_add(256),
                    l.item.depth + 1,
                )
            },
            _ => Bound::UNDEFINED,
        }
    }

    /// Scopes after two alternatives: every name at its larger bound.
    fn merge(&mut self, a: Scope, b: Scope) {
        let mut vars = a.vars.clone();
        for (k, vb) in &b.vars {
            let va = a
                .vars
                .get(k)
                .copied()
                .unwrap_or_else(|| self.input_or_undefined(k));
            vars.insert(k.clone(), va.join(*vb));
        }
        for (k, va) in &a.vars {
            if !b.vars.contains_key(k) {
                vars.insert(k.clone(), va.join(self.input_or_undefined(k)));
            }
        }
        self.vars = vars;
        self.ns = a.ns.join(b.ns);
    }

    fn input_or_undefined(&self, name: &str) -> Bound {
        self.inputs
            .vars
            .get(name)
            .copied()
            .unwrap_or(Bound::UNDEFINED)
    }

    fn block(&mut self, stmts: &[Stmt<'_>]) -> Result<u64, String> {
        let mut work = 0u64;
        for s in stmts {
            work = work.saturating_add(self.stmt(s)?);
        }
        Ok(work)
    }

    /// The work of one execution of `s`.
    fn stmt(&mut self, s: &Stmt<'_>) -> Result<u64, String> {
        match s {
            Stmt::Template(t) => self.block(&t.children),
            Stmt::EmitExpr(e) => Ok(self.top(&e.expr)?.1),
            Stmt::EmitRaw(_) => Ok(1),
            Stmt::ForLoop(l) => self.for_loop(l),
            Stmt::IfCond(c) => self.if_cond(c),
            Stmt::WithBlock(w) => self.with_block(w),
            Stmt::Set(set) => self.set(&set.target, &set.expr),
            // Escaping makes `replace` and `join` grow their parts as well.
            Stmt::AutoEscape(a) => Err(unsupported("autoescape", a.span())),
            Stmt::Do(d) => {
                self.begin();
                self.call(&d.call)?;
                Ok(self.end(d.span())?)
            }
            Stmt::SetBlock(b) => Err(unsupported(
                "a set block ({% set x %}…{% endset %})",
                b.span(),
            )),
            Stmt::FilterBlock(b) => Err(unsupported("a filter block", b.span())),
            Stmt::Macro(m) => Err(unsupported("a macro", m.span())),
            Stmt::CallBlock(c) => Err(unsupported("a call block", c.span())),
            Stmt::Block(b) => Err(unsupported("a block", b.span())),
            Stmt::Import(i) => Err(unsupported("import", i.span())),
            Stmt::FromImport(i) => Err(unsupported("import", i.span())),
            Stmt::Extends(e) => Err(unsupported("extends", e.span())),
            Stmt::Include(i) => Err(unsupported("include", i.span())),
        }
    }

    fn if_cond(&mut self, c: &ast::Spanned<ast::IfCond<'_>>) -> Result<u64, String> {
        let cond = self.top(&c.expr)?.1;
        let before = self.scope();
        let wt = self.block(&c.true_body)?;
        let after_true = std::mem::replace(&mut self.vars, before.vars.clone());
        let ns_true = std::mem::replace(&mut self.ns, before.ns);
        let wf = self.block(&c.false_body)?;
        let after_false = self.scope();
        self.merge(
            Scope {
                vars: after_true,
                ns: ns_true,
            },
            after_false,
        );
        Ok(cond.saturating_add(wt.max(wf)))
    }

    fn with_block(&mut self, w: &ast::Spanned<ast::WithBlock<'_>>) -> Result<u64, String> {
        let before = self.scope();
        self.depth += 1;
        let mut work = 0u64;
        let mut walk = || -> Result<(), String> {
            for (target, expr) in &w.assignments {
                work = work.saturating_add(self.set(target, expr)?);
            }
            work = work.saturating_add(self.block(&w.body)?);
            Ok(())
        };
        let walked = walk();
        self.depth -= 1;
        walked?;
        let after = self.scope();
        self.merge(before, after);
        Ok(work)
    }

    fn set(&mut self, target: &Expr<'_>, expr: &Expr<'_>) -> Result<u64, String> {
        let (b, work) = self.top(expr)?;
        let slot = match target {
            Expr::Var(v) => Slot::Name(v.id.to_string(), self.depth),
            other => Slot::Statement(other.span().start_offset),
        };
        self.keep(slot, b.bytes);
        self.assign(target, b)?;
        Ok(work)
    }

    /// Records what a statement stores: at most what its expression built,
    /// since a value taken from elsewhere is shared, not copied.
    fn keep(&mut self, slot: Slot, bytes: u64) {
        if !self.checking {
            return;
        }
        let bytes = bytes.min(self.expr_alloc);
        let slot = self.stored.entry(slot).or_insert(0);
        *slot = (*slot).max(bytes);
    }

    fn assign(&mut self, target: &Expr<'_>, b: Bound) -> Result<(), String> {
        match target {
            Expr::Var(v) => {
                self.vars.insert(v.id.to_string(), b);
            }
            Expr::GetAttr(a) => {
                if b.holds_ns {
                    return Err(format!(
                        "{}: a namespace attribute cannot hold a namespace",
                        at(a.span())
                    ));
                }
                self.ns = self.ns.join(b);
            }
            Expr::List(l) => {
                for t in &l.items {
                    self.assign(t, self.inputs.item(&b))?;
                }
            }
            other => return Err(format!("{}: cannot assign to this", at(other.span()))),
        }
        Ok(())
    }

    fn for_loop(&mut self, l: &ast::Spanned<ast::ForLoop<'_>>) -> Result<u64, String> {
        if l.recursive {
            return Err(unsupported("a recursive loop", l.span()));
        }
        let (iter, iter_work) = self.top(&l.iter)?;
        self.keep(Slot::Statement(l.span().start_offset), iter.bytes);
        let count = self.inputs.count(&iter);
        let item = self.inputs.item(&iter);
        let before = self.scope();
        // The first pass reaches the scope a pass starts with; the second
        // must leave it unchanged, or the loop makes something grow.
        self.pass(l, item, count)?;
        let first = self.scope();
        self.pass(l, item, count)?;
        if self.scope() != first {
            return Err(format!(
                "{}: this loop makes {} grow on every pass; emit the parts instead of accumulating them",
                at(l.span()),
                self.grown(&first)
            ));
        }
        let work = self.loop_work(l, &iter, count)?;
        self.restore(first);
        let else_work = self.block(&l.else_body)?;
        let after = self.scope();
        self.merge(before, after);
        Ok(iter_work.saturating_add(work).saturating_add(else_work))
    }

    /// Work that depends on the item is at most the work on all items at
    /// once; the rest is paid on every pass.
    fn loop_work(
        &mut self,
        l: &ast::Spanned<ast::ForLoop<'_>>,
        iter: &Bound,
        count: u64,
    ) -> Result<u64, String> {
        let checking = std::mem::replace(&mut self.checking, false);
        let all = self.inputs.item(&Bound {
            sum_view: true,
            ..*iter
        });
        let whole = self.pass(l, all, count);
        let none = Bound {
            bytes: SMALL,
            depth: 0,
            shape: None,
            ..all
        };
        let each = whole.and_then(|w| Ok((w, self.pass(l, none, count)?)));
        self.checking = checking;
        let (whole, each) = each?;
        Ok(whole.saturating_add(count.saturating_mul(each)))
    }

    fn grown(&self, first: &Scope) -> String {
        if self.ns != first.ns {
            return "a namespace attribute".into();
        }
        let mut names: Vec<&String> = self
            .vars
            .iter()
            .filter(|(k, v)| first.vars.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .collect();
        names.sort();
        names
            .first()
            .map_or_else(|| "a value".into(), |n| format!("`{n}`"))
    }

    fn pass(
        &mut self,
        l: &ast::Spanned<ast::ForLoop<'_>>,
        item: Bound,
        count: u64,
    ) -> Result<u64, String> {
        self.assign(&l.target, item)?;
        self.loops.push(LoopInfo { count, item });
        self.depth += 1;
        let body = match &l.filter_expr {
            Some(f) => self.top(f).map(|(_, w)| w),
            None => Ok(0),
        }
        .and_then(|w| Ok(w.saturating_add(self.block(&l.body)?)));
        self.depth -= 1;
        self.loops.pop();
        body
    }

    fn begin(&mut self) {
        self.expr_alloc = 0;
        self.expr_work = 0;
    }

    fn end(&mut self, span: Span) -> Result<u64, String> {
        if !self.checking {
            return Ok(self.expr_work.saturating_add(1));
        }
        self.transient = self.transient.max(self.expr_alloc);
        if self.expr_alloc > MAX_MEMORY_BYTES {
            return Err(format!(
                "{}: this expression could hold up to {} bytes of values, more than the limit of {MAX_MEMORY_BYTES}",
                at(span),
                self.expr_alloc
            ));
        }
        Ok(self.expr_work.saturating_add(1))
    }

    /// Analyses a whole expression: its bound and its work.
    fn top(&mut self, e: &Expr<'_>) -> Result<(Bound, u64), String> {
        self.begin();
        let b = self.expr(e)?;
        Ok((b, self.end(e.span())?))
    }

    /// Accounts for a node that builds a new value of `b` after reading `read` bytes.
    fn built(&mut self, b: Bound, read: u64, span: Span) -> Result<Bound, String> {
        self.expr_work = self.expr_work.saturating_add(b.bytes).saturating_add(read);
        if !self.checking {
            return Ok(b);
        }
        if b.bytes > MAX_VALUE_BYTES {
            return Err(format!(
                "{}: this expression could build a value of up to {} bytes, more than the limit of {MAX_VALUE_BYTES}",
                at(span),
                b.bytes
            ));
        }
        if b.depth > MAX_VALUE_DEPTH {
            return Err(format!(
                "{}: this expression could nest values deeper than {MAX_VALUE_DEPTH} levels",
                at(span)
            ));
        }
        self.expr_alloc = self.expr_alloc.saturating_add(b.bytes);
        Ok(b)
    }

    fn step(&mut self, span: Span) -> Result<(), String> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(format!(
                "{}: the template is too complex to check",
                at(span)
            ));
        }
        Ok(())
    }
}

mod exprs;
mod inputs;

pub use inputs::Inputs;
#[cfg(test)]
mod tests;
