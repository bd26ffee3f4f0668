//! Bounds of expressions, filters and calls.

use minijinja::machinery::Span;
use minijinja::machinery::ast::{self, BinOpKind, CallArg, CallType, Expr, UnaryOpKind};

use super::{Analyser, Bound, Kind, MAX_COUNT, SMALL, at, container, map_of};

/// An analysed argument of a filter or call.
struct Arg<'a> {
    name: Option<&'a str>,
    b: Bound,
    text: Option<String>,
}

fn positional<'x>(args: &'x [Arg<'_>], i: usize) -> Option<&'x Arg<'x>> {
    args.iter().filter(|a| a.name.is_none()).nth(i)
}

fn named<'x>(args: &'x [Arg<'_>], name: &str) -> Option<&'x Arg<'x>> {
    args.iter().find(|a| a.name == Some(name))
}

/// The bound of an argument given by position or name, if given.
fn param(args: &[Arg<'_>], i: usize, name: &str) -> Option<Bound> {
    positional(args, i)
        .or_else(|| named(args, name))
        .map(|a| a.b)
}

fn known_count(
    what: &str,
    b: Option<Bound>,
    default: Option<u64>,
    span: Span,
) -> Result<u64, String> {
    let n = match b {
        None => default,
        Some(b) if b.kind == Kind::Number => b.num,
        Some(_) => None,
    };
    match n {
        Some(n) if n <= MAX_COUNT => Ok(n),
        Some(_) => Err(format!("{}: {what} must be at most {MAX_COUNT}", at(span))),
        None => Err(format!(
            "{}: {what} must be a number literal or a variable declared as integer",
            at(span)
        )),
    }
}

impl Analyser<'_> {
    /// Dispatches only, so that its frame stays small: the analysis recurses
    /// through it once per level of the expression.
    pub(super) fn expr(&mut self, e: &Expr<'_>) -> Result<Bound, String> {
        self.step(e.span())?;
        match e {
            Expr::Var(v) => Ok(self.lookup(v.id)),
            Expr::Const(c) => Ok(Bound::of_const(&c.value)),
            Expr::Slice(s) => self.slice(s),
            Expr::UnaryOp(u) => self.unary(u),
            Expr::BinOp(op) => self.bin_op(op),
            Expr::Compare(c) => self.compare(c),
            Expr::IfExpr(i) => self.if_expr(i),
            Expr::Filter(f) => self.filter(f),
            Expr::Test(t) => self.test(t),
            Expr::GetAttr(g) => self.get_attr(g),
            Expr::GetItem(g) => self.get_item(g),
            Expr::Call(c) => self.call(c),
            Expr::List(l) => self.list(l),
            Expr::Map(m) => self.map(m),
        }
    }

    fn slice(&mut self, s: &ast::Spanned<ast::Slice<'_>>) -> Result<Bound, String> {
        check_step(s)?;
        let b = self.expr(&s.expr)?;
        for part in [&s.start, &s.stop, &s.step].into_iter().flatten() {
            self.expr(part)?;
        }
        self.built(Bound { num: None, ..b }, b.bytes, s.span())
    }

    fn unary(&mut self, u: &ast::Spanned<ast::UnaryOp<'_>>) -> Result<Bound, String> {
        let b = self.expr(&u.expr)?;
        Ok(match u.op {
            UnaryOpKind::Not => Bound::number(Some(1)),
            UnaryOpKind::Neg => Bound::number(b.num),
        })
    }

    fn compare(&mut self, c: &ast::Spanned<ast::Compare<'_>>) -> Result<Bound, String> {
        let mut read = self.expr(&c.expr)?.bytes;
        for op in &c.ops {
            read = read.saturating_add(self.expr(&op.expr)?.bytes);
        }
        self.built(Bound::number(Some(1)), read, c.span())
    }

    fn if_expr(&mut self, i: &ast::Spanned<ast::IfExpr<'_>>) -> Result<Bound, String> {
        self.expr(&i.test_expr)?;
        let t = self.expr(&i.true_expr)?;
        let f = match &i.false_expr {
            Some(f) => self.expr(f)?,
            None => Bound::UNDEFINED,
        };
        Ok(t.join(f))
    }

    fn test(&mut self, t: &ast::Spanned<ast::Test<'_>>) -> Result<Bound, String> {
        let b = self.expr(&t.expr)?;
        self.args(&t.args)?;
        self.built(Bound::number(Some(1)), b.bytes, t.span())
    }

    fn get_item(&mut self, g: &ast::Spanned<ast::GetItem<'_>>) -> Result<Bound, String> {
        let b = self.expr(&g.expr)?;
        let key = self.expr(&g.subscript_expr)?;
        Ok(match &g.subscript_expr {
            Expr::Const(c) if c.value.as_str().is_some() => {
                self.attribute(&b, c.value.as_str().unwrap_or_default())
            }
            _ if key.kind == Kind::Number && b.holds_ns => self.inputs.item(&b).join(self.ns),
            _ if key.kind == Kind::Number => self.inputs.item(&b),
            _ if b.holds_ns => b.item().join(self.ns),
            _ => b.item(),
        })
    }

    fn list(&mut self, l: &ast::Spanned<ast::List<'_>>) -> Result<Bound, String> {
        let mut items = Vec::with_capacity(l.items.len());
        for item in &l.items {
            items.push((self.expr(item)?, 0));
        }
        self.built(container(items.into_iter()), 0, l.span())
    }

    fn map(&mut self, m: &ast::Spanned<ast::Map<'_>>) -> Result<Bound, String> {
        let mut items = Vec::with_capacity(m.keys.len());
        let mut keys: Option<Bound> = None;
        for (k, v) in m.keys.iter().zip(&m.values) {
            let key = self.expr(k)?;
            keys = Some(keys.map_or(key, |acc| acc.join(key)));
            items.push((self.expr(v)?, key.bytes));
        }
        let b = map_of(items.into_iter(), keys.map(|k| k.kind));
        self.built(b, 0, m.span())
    }

    fn get_attr(&mut self, g: &ast::Spanned<ast::GetAttr<'_>>) -> Result<Bound, String> {
        if let (Expr::Var(v), Some(l)) = (&g.expr, self.loops.last())
            && v.id == "loop"
            && !self.vars.contains_key("loop")
        {
            return Ok(match g.name {
                "previtem" | "nextitem" => l.item,
                _ => Bound::number(Some(l.count)),
            });
        }
        let b = self.expr(&g.expr)?;
        Ok(self.attribute(&b, g.name))
    }

    /// An attribute: of a given value by its shape, of a namespace from
    /// what was stored in namespaces.
    fn attribute(&self, b: &Bound, name: &str) -> Bound {
        let a = self.inputs.field(b, name);
        if b.holds_ns { a.join(self.ns) } else { a }
    }

    fn bin_op(&mut self, op: &ast::Spanned<ast::BinOp<'_>>) -> Result<Bound, String> {
        let span = op.span();
        let l = self.expr(&op.left)?;
        let r = self.expr(&op.right)?;
        let read = l.bytes.saturating_add(r.bytes);
        let numbers = l.kind == Kind::Number && r.kind == Kind::Number;
        let num = |f: fn(u64, u64) -> u64| Some(f(l.num?, r.num?));
        match op.op {
            BinOpKind::Eq
            | BinOpKind::Ne
            | BinOpKind::Lt
            | BinOpKind::Lte
            | BinOpKind::Gt
            | BinOpKind::Gte
            | BinOpKind::In => self.built(Bound::number(Some(1)), read, span),
            BinOpKind::ScAnd | BinOpKind::ScOr => Ok(l.join(r)),
            BinOpKind::Add if numbers => Ok(Bound::number(num(u64::saturating_add))),
            BinOpKind::Sub => Ok(Bound::number(num(u64::saturating_add))),
            BinOpKind::Rem => Ok(Bound::number(r.num)),
            BinOpKind::Div | BinOpKind::FloorDiv => Ok(Bound::number(None)),
            BinOpKind::Pow => Ok(Bound::number(num(|a, b| {
                a.saturating_pow(u32::try_from(b).unwrap_or(u32::MAX))
            }))),
            BinOpKind::Add => {
                let kind = match (l.kind, r.kind) {
                    (Kind::Other, Kind::Other) => Kind::Other,
                    (Kind::Str, _) | (_, Kind::Str) => Kind::Str,
                    _ => Kind::Any,
                };
                let sum = Bound {
                    bytes: read,
                    kind,
                    num: None,
                    ..l.join(r)
                };
                self.built(sum, read, span)
            }
            BinOpKind::Concat => {
                let text = Bound::string(l.text().saturating_add(r.text()));
                self.built(text, read, span)
            }
            BinOpKind::Mul if numbers => Ok(Bound::number(num(u64::saturating_mul))),
            BinOpKind::Mul => self.repeat(l, r, span),
        }
    }

    /// `*` on a string or list repeats it by a count the template must bound.
    fn repeat(&mut self, l: Bound, r: Bound, span: Span) -> Result<Bound, String> {
        let (value, n) = match (l.kind, l.num, r.kind, r.num) {
            (Kind::Number, Some(n), _, _) => (r, n),
            (_, _, Kind::Number, Some(n)) => (l, n),
            _ => {
                return Err(format!(
                    "{}: `*` may repeat a string or list here by a count the template does not bound; \
                     use a number literal or a variable declared as integer",
                    at(span)
                ));
            }
        };
        let b = Bound {
            bytes: value.bytes.saturating_mul(n),
            num: None,
            ..value
        };
        self.built(b, value.bytes, span)
    }

    fn args<'a>(&mut self, args: &[CallArg<'a>]) -> Result<Vec<Arg<'a>>, String> {
        let mut out = Vec::with_capacity(args.len());
        for a in args {
            let (name, e) = match a {
                CallArg::Pos(e) => (None, e),
                CallArg::Kwarg(name, e) => (Some(*name), e),
                CallArg::PosSplat(e) | CallArg::KwargSplat(e) => {
                    return Err(format!(
                        "{}: argument splats (*args, **kwargs) are not available in prompt templates",
                        at(e.span())
                    ));
                }
            };
            let text = match e {
                Expr::Const(c) => c.value.as_str().map(str::to_string),
                _ => None,
            };
            out.push(Arg {
                name,
                b: self.expr(e)?,
                text,
            });
        }
        Ok(out)
    }

    fn filter(&mut self, f: &ast::Spanned<ast::Filter<'_>>) -> Result<Bound, String> {
        let span = f.span();
        let input = match &f.expr {
            Some(e) => self.expr(e)?,
            None => Bound::UNDEFINED,
        };
        let args = self.args(&f.args)?;
        let b = if f.name == "format" {
            let fmt = match &f.expr {
                Some(Expr::Const(c)) => c.value.as_str(),
                _ => None,
            };
            format_bound(fmt, &args, span)?
        } else {
            self.filter_bound(f.name, input, &args, span)?
        };
        self.built(b, input.bytes, span)
    }

    /// The bound of `name` applied to a value of bound `s`.
    fn filter_bound(
        &self,
        name: &str,
        s: Bound,
        args: &[Arg<'_>],
        span: Span,
    ) -> Result<Bound, String> {
        if let Some(b) = self.text_filter(name, s, args, span)? {
            return Ok(b);
        }
        let arg = |i: usize| positional(args, i).map_or(Bound::NOTHING, |a| a.b);
        Ok(match name {
            "length" | "count" => Bound::number(Some(s.items())),
            "abs" | "round" | "int" | "float" => {
                Bound::number(if s.kind == Kind::Number { s.num } else { None })
            }
            "sum" => Bound::number(None),
            "bool" => Bound::number(Some(1)),
            "first" | "last" | "min" | "max" => self.inputs.item(&s),
            "attr" => match positional(args, 0).and_then(|a| a.text.as_deref()) {
                Some(name) => self.attribute(&s, name),
                None => s.item().join(self.ns),
            },
            "default" | "d" => s.join(arg(0)),
            "reverse" | "sort" | "list" | "select" | "reject" | "selectattr" | "rejectattr" => {
                s.copy_items()
            }
            // It also keeps a lower-cased copy of every item it has seen.
            "unique" => {
                let b = s.copy_items();
                Bound {
                    bytes: b.bytes.saturating_add(s.bytes.saturating_mul(3)),
                    ..b
                }
            }
            "dictsort" | "items" | "groupby" => Bound {
                depth: s.depth.saturating_add(2),
                ..Bound::other(s.bytes.saturating_mul(3).saturating_add(64), 0)
            },
            "split" | "lines" => Bound {
                item_kind: Some(Kind::Str),
                ..Bound::other(s.text().saturating_mul(SMALL + 1).saturating_add(SMALL), 1)
            },
            "batch" | "slice" => {
                let count = known_count(
                    &format!("the count of {name}"),
                    param(args, 0, "count"),
                    None,
                    span,
                )?;
                let items = s.items().saturating_add(count.saturating_mul(2));
                Bound {
                    depth: s.depth.saturating_add(1),
                    holds_ns: s.holds_ns,
                    ..Bound::other(s.bytes.saturating_add(items.saturating_mul(SMALL)), 0)
                }
            }
            "chain" | "zip" => {
                let mut all =
                    container(std::iter::once((s, 0)).chain(args.iter().map(|a| (a.b, 0))));
                all.bytes = all.bytes.saturating_mul(2);
                all.items_num = None;
                all
            }
            "map" => self.map_bound(s, args, span)?,
            other => return Err(format!("{}: unknown filter `{other}`", at(span))),
        })
    }

    /// Filters that make text.
    fn text_filter(
        &self,
        name: &str,
        s: Bound,
        args: &[Arg<'_>],
        span: Span,
    ) -> Result<Option<Bound>, String> {
        let arg = |i: usize| positional(args, i).map_or(Bound::NOTHING, |a| a.b);
        Ok(Some(match name {
            "safe" => s,
            "escape" | "e" => Bound::string(s.text().saturating_mul(6)),
            "lower" | "upper" | "title" | "capitalize" => Bound::string(s.text().saturating_mul(3)),
            "trim" | "string" => Bound::string(s.text()),
            "replace" => {
                let to = arg(1).len();
                Bound::string(
                    s.text()
                        .saturating_add(s.text().saturating_add(1).saturating_mul(to)),
                )
            }
            "join" => {
                let sep = param(args, 0, "d").map_or(0, |b| b.len());
                let items = Bound {
                    item_kind: self.inputs.item(&s).kind.into(),
                    ..s
                };
                Bound::string(
                    items
                        .items_text()
                        .saturating_add(s.items().saturating_mul(sep)),
                )
            }
            "indent" => {
                let width = known_count(
                    "the width of indent",
                    param(args, 0, "width"),
                    Some(4),
                    span,
                )?;
                Bound::string(
                    s.text()
                        .saturating_add(s.text().saturating_add(1).saturating_mul(width)),
                )
            }
            "pprint" => {
                let lines = s.bytes / SMALL + 1;
                let per_line = 4 * u64::from(s.depth) + 6;
                Bound::string(s.text().saturating_add(lines.saturating_mul(per_line)))
            }
            _ => return Ok(None),
        }))
    }

    /// `map(attribute=…)` picks items' attributes; `map("filter", …)` applies a
    /// filter to every item, which costs at most the filter on all items at
    /// once plus its fixed part once per item.
    fn map_bound(&self, s: Bound, args: &[Arg<'_>], span: Span) -> Result<Bound, String> {
        if let Some(attr) = named(args, "attribute") {
            return Ok(self.map_attribute(s, attr, named(args, "default")));
        }
        let Some(name) = positional(args, 0).and_then(|a| a.text.as_deref()) else {
            return Err(format!(
                "{}: map needs attribute=… or the name of a filter as a string literal",
                at(span)
            ));
        };
        if name == "format" {
            return Err(format!("{}: map cannot apply format", at(span)));
        }
        let rest: Vec<Arg<'_>> = args
            .iter()
            .skip(1)
            .map(|a| Arg {
                name: a.name,
                b: a.b,
                text: a.text.clone(),
            })
            .collect();
        let item = self.inputs.item(&s);
        let whole = Bound {
            shape: None,
            kind: item.kind,
            ..s.item()
        };
        let all = self.filter_bound(name, whole, &rest, span)?;
        self.filter_bound(name, item, &rest, span)?;
        let empty = Bound {
            bytes: SMALL,
            depth: 0,
            shape: None,
            ..item
        };
        let fixed = self.filter_bound(name, empty, &rest, span)?;
        let bytes = all
            .bytes
            .saturating_add(s.items().saturating_mul(fixed.bytes));
        Ok(Bound {
            holds_ns: s.holds_ns || all.holds_ns,
            depth: all.depth.saturating_add(1),
            ..Bound::other(bytes.saturating_add(SMALL), 0)
        })
    }

    fn map_attribute(&self, s: Bound, attr: &Arg<'_>, default: Option<&Arg<'_>>) -> Bound {
        let default = default.map_or(Bound::NOTHING, |a| a.b);
        let item = self.inputs.item(&s);
        let picked = match attr.text.as_deref() {
            Some(name) if !name.contains('.') => self.attribute(&item, name).kind,
            _ => Kind::Any,
        };
        let kind = if default.bytes == 0 || default.kind == picked {
            picked
        } else {
            Kind::Any
        };
        Bound {
            bytes: s
                .bytes
                .saturating_add(s.items().saturating_mul(default.bytes.max(SMALL))),
            kind: Kind::Other,
            num: None,
            items_num: None,
            item_kind: Some(kind),
            shape: None,
            ..s
        }
    }

    pub(super) fn call(&mut self, c: &ast::Spanned<ast::Call<'_>>) -> Result<Bound, String> {
        let span = c.span();
        let args = self.args(&c.args)?;
        match c.identify_call() {
            CallType::Function("range") => Ok(range_bound(&args)),
            CallType::Function(f @ ("dict" | "namespace")) => {
                let mut b = container(args.iter().map(|a| (a.b, SMALL)));
                if f == "namespace" {
                    if b.holds_ns {
                        return Err(format!(
                            "{}: a namespace attribute cannot hold a namespace",
                            at(span)
                        ));
                    }
                    for a in &args {
                        self.ns = self.ns.join(a.b);
                    }
                    b.holds_ns = true;
                }
                b.items_num = None;
                self.built(b, 0, span)
            }
            CallType::Method(Expr::Var(v), "cycle") if v.id == "loop" && args.is_empty() => {
                Err(format!("{}: loop.cycle needs at least one value", at(span)))
            }
            CallType::Method(Expr::Var(v), "cycle") if v.id == "loop" && !self.loops.is_empty() => {
                Ok(args.iter().fold(Bound::NOTHING, |acc, a| acc.join(a.b)))
            }
            CallType::Method(Expr::Var(v), "changed")
                if v.id == "loop" && !self.loops.is_empty() =>
            {
                Ok(Bound::number(Some(1)))
            }
            CallType::Function(name) => Err(format!(
                "{}: calls to `{name}` are not available in prompt templates",
                at(span)
            )),
            _ => Err(format!(
                "{}: only range, dict, namespace, loop.cycle and loop.changed can be called in prompt templates",
                at(span)
            )),
        }
    }
}

/// A slice step is an integer literal of at most 2^31; a negative one
/// counts back from the start, so the slice names no stop (minijinja
/// overflows on steps near the ends of the range and on a stop past the
/// start).
fn check_step(s: &ast::Spanned<ast::Slice<'_>>) -> Result<(), String> {
    let Some(step) = &s.step else {
        return Ok(());
    };
    let value = match step {
        Expr::Const(c) => c.value.as_i64(),
        Expr::UnaryOp(u) if matches!(u.op, UnaryOpKind::Neg) => match &u.expr {
            Expr::Const(c) => c.value.as_i64().map(|v| -v),
            _ => None,
        },
        _ => None,
    };
    match value {
        Some(v) if v.unsigned_abs() <= 1 << 31 && (v > 0 || s.stop.is_none()) => Ok(()),
        Some(_) => Err(format!(
            "{}: a slice step is at most 2147483648, and a negative one takes no stop",
            at(s.span())
        )),
        None => Err(format!(
            "{}: a slice step must be an integer literal",
            at(s.span())
        )),
    }
}

/// `range` yields at most minijinja's cap of items, each below its bounds.
fn range_bound(args: &[Arg<'_>]) -> Bound {
    let nums: Vec<Option<u64>> = args.iter().map(|a| a.b.num).collect();
    let largest = nums.iter().try_fold(0u64, |acc, n| n.map(|n| acc.max(n)));
    let count = match nums.as_slice() {
        [Some(n)] => *n,
        [Some(a), Some(b)] | [Some(a), Some(b), _] => a.saturating_add(*b),
        _ => MAX_COUNT,
    }
    .min(MAX_COUNT);
    Bound {
        items_num: Some(largest.unwrap_or(u64::MAX)),
        ..Bound::other(count.saturating_add(1).saturating_mul(SMALL), 1)
    }
}

/// `"…"|format(…)`: the format string must be a literal so that its widths
/// and precisions are known.
fn format_bound(fmt: Option<&str>, args: &[Arg<'_>], span: Span) -> Result<Bound, String> {
    let Some(fmt) = fmt else {
        return Err(format!(
            "{}: format applies only to a string literal (its widths bound the result)",
            at(span)
        ));
    };
    let mut widths = 0u64;
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        let mut number = 0u64;
        while let Some(&d) = chars.peek() {
            if d.is_ascii_alphabetic() || d == '%' {
                chars.next();
                break;
            }
            if d == '*' {
                return Err(format!(
                    "{}: format widths must be written out, not `*`",
                    at(span)
                ));
            }
            chars.next();
            match d.to_digit(10) {
                Some(v) => number = number.saturating_mul(10).saturating_add(u64::from(v)),
                None => {
                    widths = widths.saturating_add(number);
                    number = 0;
                }
            }
        }
        // Grouping separators can add a third; the sign and prefix a few bytes.
        widths = widths.saturating_add(number).saturating_add(8);
    }
    let texts = args
        .iter()
        .fold(0u64, |acc, a| acc.saturating_add(a.b.text()));
    Ok(Bound::string(
        (fmt.len() as u64)
            .saturating_add(widths.saturating_mul(2))
            .saturating_add(texts),
    ))
}
