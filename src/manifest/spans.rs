//! Maps key paths (`steps[2].factor`) to where their key and value start in the YAML source.
//!
//! serde_yaml gives values without positions, so this walks the same text a second time as a
//! marked event stream (yaml-rust2's parser) and records, for every node reachable through string
//! keys and sequence indices, the position of its key and of its value. It never fails: on text
//! the event parser rejects it keeps what it saw, and lookups for unknown paths return `None`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::diagnostic::Position;

/// Nesting past which nothing is indexed: serde_yaml refuses documents nested deeper.
const MAX_INDEXED_DEPTH: usize = 128;

/// Positions of keys and values by key path.
#[derive(Debug, Default)]
pub(super) struct Spans {
    keys: HashMap<String, Position>,
    values: HashMap<String, Position>,
    duplicates: Vec<Duplicate>,
}

/// A key given twice in one mapping.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Duplicate {
    /// The mapping's key path.
    pub parent: String,
    pub key: String,
    /// The second occurrence.
    pub position: Position,
    pub first: Position,
}

impl Spans {
    /// Indexes the first document in `text`; the root value has the empty path.
    pub(super) fn index(text: &str) -> Spans {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        // Event by event: `Parser::load` recurses once per level and overflows the stack on
        // deeply nested text. Errors leave a partial index, which is the best we can do for a
        // file serde_yaml accepted; syntax errors are reported from serde_yaml's own location.
        while let Ok((ev, mark)) = parser.next_token() {
            let done = matches!(ev, Event::DocumentEnd | Event::StreamEnd);
            if done || builder.stack.len() > MAX_INDEXED_DEPTH {
                break;
            }
            builder.on_event(ev, mark);
        }
        builder.spans
    }

    /// Where the key of `path` starts (the value's position for sequence items and the root).
    pub(super) fn key(&self, path: &str) -> Option<Position> {
        self.keys
            .get(path)
            .or_else(|| self.values.get(path))
            .copied()
    }

    /// Keys given twice in the same mapping, in source order.
    pub(super) fn duplicates(&self) -> &[Duplicate] {
        &self.duplicates
    }

    /// Where the value of `path` starts (the key's position if the value is missing or empty).
    pub(super) fn value(&self, path: &str) -> Option<Position> {
        self.values
            .get(path)
            .or_else(|| self.keys.get(path))
            .copied()
    }
}

/// One open mapping or sequence. `path` is `None` inside complex (non-scalar) keys.
#[derive(Debug)]
enum Frame {
    /// `pending` is the key whose value comes next, or `None` when a key comes next.
    Map {
        path: Option<String>,
        pending: Option<Option<String>>,
    },
    Seq {
        path: Option<String>,
        next: usize,
    },
}

/// What a node that starts now is: a mapping key (under the map's path) or a value at a path.
enum Role {
    Key(Option<String>),
    Value(Option<String>),
}

#[derive(Debug, Default)]
struct Builder {
    stack: Vec<Frame>,
    spans: Spans,
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = position(mark);
        match ev {
            Event::Scalar(text, ..) => self.node(Some(text), None, pos),
            Event::Alias(_) => self.node(None, None, pos),
            Event::MappingStart(..) => self.node(None, Some(true), pos),
            Event::SequenceStart(..) => self.node(None, Some(false), pos),
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl Builder {
    /// A node starts: a scalar (`text`), an alias, or a container (`is_map`).
    fn node(&mut self, text: Option<String>, is_map: Option<bool>, pos: Position) {
        let path = match self.role() {
            Role::Key(map_path) => {
                let key = text.filter(|_| map_path.is_some());
                let full = map_path
                    .as_ref()
                    .zip(key.as_ref())
                    .map(|(p, k)| join_key(p, k));
                if let (Some(full), Some(parent), Some(key)) = (&full, &map_path, &key) {
                    self.record_key(full, parent, key, pos);
                }
                self.pull_map_start(pos);
                self.set_pending(key);
                // A complex key's insides have no path.
                None
            }
            Role::Value(path) => {
                if let Some(path) = &path {
                    self.spans.values.entry(path.clone()).or_insert(pos);
                }
                path
            }
        };
        match is_map {
            Some(true) => self.stack.push(Frame::Map {
                path,
                pending: None,
            }),
            Some(false) => self.stack.push(Frame::Seq { path, next: 0 }),
            None => {}
        }
    }

    fn role(&mut self) -> Role {
        match self.stack.last_mut() {
            None => Role::Value(Some(String::new())),
            Some(Frame::Map {
                path,
                pending: None,
            }) => Role::Key(path.clone()),
            Some(Frame::Map { path, pending }) => {
                let key = pending.take().flatten();
                Role::Value(path.clone().zip(key).map(|(p, k)| join_key(&p, &k)))
            }
            Some(Frame::Seq { path, next }) => {
                let index = *next;
                *next += 1;
                Role::Value(path.as_ref().map(|p| format!("{p}[{index}]")))
            }
        }
    }

    fn record_key(&mut self, path: &str, parent: &str, key: &str, pos: Position) {
        match self.spans.keys.get(path) {
            Some(&first) => self.spans.duplicates.push(Duplicate {
                parent: parent.to_owned(),
                key: key.to_owned(),
                position: pos,
                first,
            }),
            None => {
                self.spans.keys.insert(path.to_owned(), pos);
            }
        }
    }

    /// yaml-rust2 marks a block mapping after its first key has been scanned; the mapping starts
    /// no later than its first key.
    fn pull_map_start(&mut self, key_pos: Position) {
        if let Some(Frame::Map {
            path: Some(path), ..
        }) = self.stack.last()
            && let Some(start) = self.spans.values.get_mut(path)
        {
            *start = (*start).min(key_pos);
        }
    }

    fn set_pending(&mut self, key: Option<String>) {
        if let Some(Frame::Map { pending, .. }) = self.stack.last_mut() {
            *pending = Some(key);
        }
    }
}

/// `parent.key`, or just `key` at the root.
pub(super) fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn position(mark: Marker) -> Position {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Position {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Option<Position> {
        Some(Position { line, column })
    }

    const TEXT: &str = "\
version: 1
output:
  dir: out
steps:
  - op: remove-bg
    models: [local, nova-canvas]
  - op: upscale
    factor: 2
flow: {a: 1, b: [x, y]}
";

    #[test]
    fn finds_keys_and_values_by_path() {
        let spans = Spans::index(TEXT);
        assert_eq!(spans.key("version"), at(1, 1));
        assert_eq!(spans.value("version"), at(1, 10));
        assert_eq!(spans.key("output.dir"), at(3, 3));
        assert_eq!(spans.value("output.dir"), at(3, 8));
        assert_eq!(spans.value("steps[0].op"), at(5, 9));
        assert_eq!(spans.value("steps[0].models[1]"), at(6, 21));
        assert_eq!(spans.key("steps[1].factor"), at(8, 5));
        assert_eq!(spans.value("steps[1].factor"), at(8, 13));
        assert_eq!(spans.value("flow.b[1]"), at(9, 21));
        assert_eq!(spans.key("flow.b"), at(9, 14));
        assert_eq!(spans.value("steps[1]"), at(7, 5));
        assert_eq!(spans.value("nope"), None);
    }

    #[test]
    fn broken_text_keeps_what_came_before() {
        let spans = Spans::index("name: x\nsteps: [\n");
        assert_eq!(spans.value("name"), at(1, 7));
    }

    #[test]
    fn deep_nesting_neither_recurses_nor_indexes_past_the_limit() {
        let spans = Spans::index(&format!("{}x\n", "- ".repeat(100_000)));
        assert!(spans.value(&"[0]".repeat(MAX_INDEXED_DEPTH)).is_some());
        assert_eq!(spans.value(&"[0]".repeat(MAX_INDEXED_DEPTH + 1)), None);
    }
}
