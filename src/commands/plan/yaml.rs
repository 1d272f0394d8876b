//! Just enough YAML to print a Kubernetes manifest in the order people read it
//! (apiVersion, kind, metadata, spec), without a YAML library: block maps and lists, and
//! every string double-quoted with YAML's escapes, so a value such as `2`, `true`, `no`,
//! `1e3` or `a: b` can never be read back as anything but the string it is.

use std::fmt::Write as _;

/// A YAML value; maps keep their insertion order.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
    Str(String),
    Int(i64),
    Bool(bool),
}

/// A map from `(key, value)` pairs, in order.
pub fn map<const N: usize>(entries: [(&str, Node); N]) -> Node {
    Node::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// A string scalar.
pub fn s(text: impl Into<String>) -> Node {
    Node::Str(text.into())
}

/// A list of strings.
pub fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Node {
    Node::List(items.into_iter().map(|i| Node::Str(i.into())).collect())
}

/// `text` as a YAML double-quoted scalar: `"` and `\` escaped, and every character outside
/// YAML's printable set (C0 and C1 controls, DEL) as a `\uXXXX` escape.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{feff}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A map key: plain when it is made of letters, digits and `._/-` (as Kubernetes field
/// names and label keys are), quoted otherwise.
fn key(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
        && text.starts_with(|c: char| c.is_ascii_alphabetic());
    if plain {
        text.to_string()
    } else {
        quote(text)
    }
}

fn scalar(node: &Node) -> Option<String> {
    match node {
        Node::Str(t) => Some(quote(t)),
        Node::Int(n) => Some(n.to_string()),
        Node::Bool(b) => Some(b.to_string()),
        Node::Map(m) if m.is_empty() => Some("{}".to_string()),
        Node::List(l) if l.is_empty() => Some("[]".to_string()),
        Node::Map(_) | Node::List(_) => None,
    }
}

fn emit(node: &Node, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match node {
        Node::Map(entries) if !entries.is_empty() => {
            for (k, v) in entries {
                match scalar(v) {
                    Some(text) => {
                        let _ = writeln!(out, "{pad}{}: {text}", key(k));
                    }
                    None => {
                        let _ = writeln!(out, "{pad}{}:", key(k));
                        emit(v, indent + 2, out);
                    }
                }
            }
        }
        Node::List(items) if !items.is_empty() => {
            for item in items {
                match scalar(item) {
                    Some(text) => {
                        let _ = writeln!(out, "{pad}- {text}");
                    }
                    None => {
                        // The item's block, one level in, with its first line's indent
                        // replaced by the dash.
                        let mut block = String::new();
                        emit(item, indent + 2, &mut block);
                        let _ = write!(out, "{pad}- {}", &block[indent + 2..]);
                    }
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", scalar(other).unwrap_or_default());
        }
    }
}

/// The document as YAML text (block style, two-space indents, a newline at the end).
pub fn to_yaml(node: &Node) -> String {
    let mut out = String::new();
    emit(node, 0, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_style_in_order() {
        let doc = map([
            ("apiVersion", s("batch/v1")),
            ("n", Node::Int(3)),
            (
                "items",
                Node::List(vec![
                    map([("name", s("a")), ("args", strings(["-x", "2"]))]),
                    s("plain"),
                ]),
            ),
            ("empty", Node::Map(vec![])),
            ("odd key", Node::Bool(true)),
        ]);
        assert_eq!(
            to_yaml(&doc),
            "apiVersion: \"batch/v1\"\nn: 3\nitems:\n  - name: \"a\"\n    args:\n      - \"-x\"\n      - \"2\"\n  - \"plain\"\nempty: {}\n\"odd key\": true\n"
        );
    }

    #[test]
    fn quoting_escapes_what_yaml_needs() {
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote("x\u{7f}\u{1}\n"), "\"x\\u007f\\u0001\\n\"");
        assert_eq!(quote("é: $(X)"), "\"é: $(X)\"");
    }
}
