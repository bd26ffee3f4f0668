//! The variables a template is analysed with, and the shapes of the values
//! a render is given: for a list the bound of its largest item, for maps the
//! bound of each key's largest value, so that `m.content` in a loop over
//! messages is bounded by the largest content rather than by all messages.

use std::collections::HashMap;

use serde_json::Value as J;

use super::{Bound, Kind, SMALL, container, map_of};

/// Containers whose shape is kept; beyond, values are bounded as a whole.
const MAX_SHAPES: usize = 20_000;

#[derive(Default)]
pub(super) struct Shape {
    /// Items of a list or keys of a map.
    pub count: u64,
    /// What iterating yields: items of a list, keys of a map.
    pub items: Option<Bound>,
    pub fields: HashMap<String, Bound>,
}

/// Bounds of the variables, by name.
#[derive(Default)]
pub struct Inputs {
    pub(super) vars: HashMap<String, Bound>,
    pub(super) shapes: Vec<Shape>,
}

impl Inputs {
    /// A variable known only by its bound (templates being saved).
    pub fn insert(&mut self, name: &str, b: Bound) {
        self.vars.insert(name.to_string(), b);
    }

    /// A variable with the value a render is given.
    pub fn insert_value(&mut self, name: &str, v: &J) {
        let b = self.shape_of(v);
        self.vars.insert(name.to_string(), b);
    }

    fn shape_of(&mut self, v: &J) -> Bound {
        let (mut b, shape) = match v {
            J::Array(items) => {
                let mut bounds = Vec::with_capacity(items.len());
                let mut item: Option<Bound> = None;
                for x in items {
                    let xb = self.shape_of(x);
                    bounds.push((xb, 0));
                    item = Some(match item {
                        None => xb,
                        Some(acc) => self.merge(acc, xb),
                    });
                }
                let shape = Shape {
                    count: items.len() as u64,
                    items: item,
                    fields: HashMap::new(),
                };
                (container(bounds.into_iter()), shape)
            }
            J::Object(m) => {
                let mut bounds = Vec::with_capacity(m.len());
                let mut fields = HashMap::with_capacity(m.len());
                let mut longest_key = 0u64;
                for (k, x) in m {
                    let xb = self.shape_of(x);
                    longest_key = longest_key.max(k.len() as u64);
                    bounds.push((xb, SMALL + k.len() as u64));
                    fields.insert(k.clone(), xb);
                }
                let shape = Shape {
                    count: m.len() as u64,
                    items: Some(Bound::string(longest_key)),
                    fields,
                };
                (map_of(bounds.into_iter(), Some(Kind::Str)), shape)
            }
            scalar => return Bound::of_json(scalar),
        };
        if self.shapes.len() < MAX_SHAPES {
            b.shape = Some(self.shapes.len() as u32);
            self.shapes.push(shape);
        }
        b
    }

    /// The bound of either value; the shape of `a` absorbs that of `b`
    /// (`a` is an accumulator only its caller holds).
    fn merge(&mut self, a: Bound, b: Bound) -> Bound {
        let mut joined = a.join(b);
        if let (Some(x), Some(y)) = (a.shape, b.shape)
            && x != y
        {
            let other = std::mem::take(&mut self.shapes[y as usize]);
            let items = match (self.shapes[x as usize].items, other.items) {
                (Some(p), Some(q)) => Some(self.merge(p, q)),
                (p, q) => p.or(q),
            };
            for (k, q) in other.fields {
                let merged = match self.shapes[x as usize].fields.get(&k).copied() {
                    Some(p) => self.merge(p, q),
                    None => q,
                };
                self.shapes[x as usize].fields.insert(k, merged);
            }
            let acc = &mut self.shapes[x as usize];
            acc.items = items;
            acc.count = acc.count.max(other.count);
            joined.shape = Some(x);
        }
        joined
    }

    /// What iterating over a value of bound `b` yields.
    pub(super) fn item(&self, b: &Bound) -> Bound {
        match self.node(b).and_then(|s| s.items) {
            Some(child) => view(b, child),
            None => b.item(),
        }
    }

    /// An attribute or key of a value of bound `b`.
    pub(super) fn field(&self, b: &Bound, name: &str) -> Bound {
        match self.node(b).and_then(|s| s.fields.get(name).copied()) {
            Some(child) => view(b, child),
            None => b.item(),
        }
    }

    /// How many items iterating over a value of bound `b` yields.
    pub(super) fn count(&self, b: &Bound) -> u64 {
        match self.node(b) {
            Some(s) if !b.sum_view => s.count,
            _ => b.items(),
        }
    }

    fn node(&self, b: &Bound) -> Option<&Shape> {
        b.shape.and_then(|id| self.shapes.get(id as usize))
    }
}

/// A part of `parent`: through a view of all items, the bytes of all.
fn view(parent: &Bound, child: Bound) -> Bound {
    if parent.sum_view {
        Bound {
            bytes: parent.bytes.max(child.bytes),
            sum_view: true,
            ..child
        }
    } else {
        child
    }
}
