//! A parser that accepts exactly what Go's `flag` package accepts, so that scripts written
//! for `keep-rsync` and `keep-exercise` keep working: `-f v`, `-f=v`, `--f v`, `--f=v`, and
//! boolean flags as `-f` or `-f=true`. Parsing stops at the first non-flag argument or `--`,
//! and the error texts are Go's, because operators grep logs for them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What kind of value a flag takes; decides how `-f` without `=` is read and how usage prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagKind {
    Bool,
    Int,
    String,
    /// A Go duration such as `336h` or `1h30m`.
    Duration,
}

/// One flag definition: its name (without dashes), kind, default text and usage line.
#[derive(Clone, Debug)]
pub struct FlagSpec {
    pub name: &'static str,
    pub kind: FlagKind,
    pub default: &'static str,
    pub usage: &'static str,
}

/// A flag definition, usable in `const` tables.
pub const fn flag(
    name: &'static str,
    kind: FlagKind,
    default: &'static str,
    usage: &'static str,
) -> FlagSpec {
    FlagSpec {
        name,
        kind,
        default,
        usage,
    }
}

/// Why parsing stopped without a usable result.
#[derive(Debug, PartialEq, Eq)]
pub enum GoFlagError {
    /// `-h`, `-help` or `--help` was given: print usage, exit 0.
    Help,
    /// A malformed command line; the text is Go's own message.
    Invalid(String),
}

/// The parsed values. Every defined flag has a value: the one given, else its default from
/// the table, so read sites never restate a default.
#[derive(Debug, Default)]
pub struct ParsedFlags {
    /// Flags given on the command line.
    pub values: BTreeMap<&'static str, String>,
    defaults: BTreeMap<&'static str, &'static str>,
    /// Arguments after the flags (Go's `f.Args()`).
    pub positional: Vec<String>,
}

impl ParsedFlags {
    /// The value given, else the table's default; `None` for a flag the table lacks.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .or_else(|| self.defaults.get(name).copied())
    }

    /// The value as text (empty for an unknown flag).
    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// The value, or `None` when it is empty (optional path and list flags).
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// Whether the flag was given on the command line.
    pub fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn is_true(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| parse_go_bool(v) == Some(true))
    }

    /// An integer flag within `range`, converted to the type the program uses; an error in
    /// Go's wording otherwise (`value out of range`).
    pub fn int_in<T: TryFrom<i64>>(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<T, String> {
        let text = self.text(name);
        let value = parse_go_int(text).ok_or_else(|| invalid(name, text, "parse error"))?;
        if !range.contains(&value) {
            return Err(invalid(
                name,
                text,
                &format!(
                    "value out of range (must be {}..{})",
                    range.start(),
                    range.end()
                ),
            ));
        }
        T::try_from(value).map_err(|_| invalid(name, text, "value out of range"))
    }

    /// A duration flag; with `positive`, zero is refused (a zero timeout would fail every
    /// request).
    pub fn duration(&self, name: &str, positive: bool) -> Result<std::time::Duration, String> {
        let text = self.text(name);
        let value = super::duration::parse_go_duration(text)
            .map_err(|_| invalid(name, text, "parse error"))?;
        if positive && value.is_zero() {
            return Err(invalid(name, text, "must be greater than zero"));
        }
        Ok(value)
    }
}

/// Go's wording for a value its flag refuses.
pub fn invalid(name: &str, text: &str, why: &str) -> String {
    format!("invalid value {text:?} for flag -{name}: {why}")
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)` as used by `flag.Int`: decimal, `0x`, `0o`, `0b`, or a
/// leading `0` for octal, with an optional sign and `_` separators after a prefix.
pub fn parse_go_int(text: &str) -> Option<i64> {
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if body.is_empty() {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest.replace('_', ""))
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest.replace('_', ""))
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest.replace('_', ""))
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].replace('_', ""))
    } else {
        if lower.contains('_') {
            return None;
        }
        (10, lower)
    };
    if digits.is_empty() || digits.starts_with('+') || digits.starts_with('-') {
        return None;
    }
    let magnitude = i128::from_str_radix(&digits, radix).ok()?;
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).ok()
}

/// Parses `args` (without the program name) against `specs`, validating values by kind.
pub fn parse(specs: &[FlagSpec], args: &[String]) -> Result<ParsedFlags, GoFlagError> {
    let mut parsed = ParsedFlags {
        defaults: specs.iter().map(|s| (s.name, s.default)).collect(),
        ..ParsedFlags::default()
    };
    let mut index = 0;
    while index < args.len() {
        let arg = &args[index];
        if arg.len() < 2 || !arg.starts_with('-') {
            break;
        }
        let mut name = &arg[1..];
        if let Some(rest) = name.strip_prefix('-') {
            if rest.is_empty() {
                index += 1; // "--" terminates the flags
                break;
            }
            name = rest;
        }
        if name.is_empty() || name.starts_with('-') || name.starts_with('=') {
            return Err(GoFlagError::Invalid(format!("bad flag syntax: {arg}")));
        }
        index += 1;
        let (name, inline_value) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (name, None),
        };
        let Some(spec) = specs.iter().find(|s| s.name == name) else {
            if name == "help" || name == "h" {
                return Err(GoFlagError::Help);
            }
            return Err(GoFlagError::Invalid(format!(
                "flag provided but not defined: -{name}"
            )));
        };
        let value = if spec.kind == FlagKind::Bool {
            let text = inline_value.unwrap_or_else(|| "true".to_string());
            if parse_go_bool(&text).is_none() {
                return Err(GoFlagError::Invalid(format!(
                    "invalid boolean value {text:?} for -{name}: parse error"
                )));
            }
            text
        } else {
            let text = match inline_value {
                Some(v) => v,
                None => match args.get(index) {
                    Some(v) => {
                        index += 1;
                        v.clone()
                    }
                    None => {
                        return Err(GoFlagError::Invalid(format!(
                            "flag needs an argument: -{name}"
                        )))
                    }
                },
            };
            let valid = match spec.kind {
                FlagKind::Int => parse_go_int(&text).is_some(),
                FlagKind::Duration => super::duration::parse_go_duration(&text).is_ok(),
                FlagKind::String | FlagKind::Bool => true,
            };
            if !valid {
                return Err(GoFlagError::Invalid(format!(
                    "invalid value {text:?} for flag -{name}: parse error"
                )));
            }
            text
        };
        parsed.values.insert(spec.name, value);
    }
    parsed.positional = args[index..].to_vec();
    Ok(parsed)
}

/// Formats the flag list the way Go's `flag.PrintDefaults` does.
pub fn print_defaults(specs: &[FlagSpec]) -> String {
    let mut sorted: Vec<&FlagSpec> = specs.iter().collect();
    sorted.sort_by_key(|s| s.name);
    let mut out = String::new();
    for spec in sorted {
        let _ = write!(out, "  -{}", spec.name);
        let type_name = match spec.kind {
            FlagKind::Bool => "",
            FlagKind::Int => "int",
            FlagKind::String => "string",
            FlagKind::Duration => "duration",
        };
        if !type_name.is_empty() {
            let _ = write!(out, " {type_name}");
        }
        if spec.name.len() == 1 && type_name.is_empty() {
            out.push('\t');
        } else {
            out.push_str("\n    \t");
        }
        out.push_str(&spec.usage.replace('\n', "\n    \t"));
        let is_zero = matches!(spec.default, "" | "0" | "false" | "0s");
        if !is_zero {
            if spec.kind == FlagKind::String {
                let _ = write!(out, " (default {:?})", spec.default);
            } else {
                let _ = write!(out, " (default {})", spec.default);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[FlagSpec] = &[
        FlagSpec {
            name: "src",
            kind: FlagKind::String,
            default: "",
            usage: "source",
        },
        FlagSpec {
            name: "replications",
            kind: FlagKind::Int,
            default: "0",
            usage: "n",
        },
        FlagSpec {
            name: "version",
            kind: FlagKind::Bool,
            default: "false",
            usage: "v",
        },
        FlagSpec {
            name: "ttl",
            kind: FlagKind::Duration,
            default: "0s",
            usage: "t",
        },
    ];

    fn run(args: &[&str]) -> Result<ParsedFlags, GoFlagError> {
        let owned: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(SPECS, &owned)
    }

    #[test]
    fn accepts_every_go_spelling() {
        for args in [
            &["-src", "a"][..],
            &["-src=a"],
            &["--src", "a"],
            &["--src=a"],
        ] {
            assert_eq!(run(args).unwrap().get("src"), Some("a"), "{args:?}");
        }
    }

    #[test]
    fn bools_take_no_separate_value() {
        let parsed = run(&["-version", "false"]).unwrap();
        assert!(parsed.is_true("version"));
        assert_eq!(parsed.positional, vec!["false"]);
        assert!(!run(&["-version=false"]).unwrap().is_true("version"));
        assert_eq!(
            run(&["-version=maybe"]).unwrap_err(),
            GoFlagError::Invalid(
                "invalid boolean value \"maybe\" for -version: parse error".into()
            )
        );
    }

    #[test]
    fn go_error_texts() {
        assert_eq!(
            run(&["-nope"]).unwrap_err(),
            GoFlagError::Invalid("flag provided but not defined: -nope".into())
        );
        assert_eq!(
            run(&["-src"]).unwrap_err(),
            GoFlagError::Invalid("flag needs an argument: -src".into())
        );
        assert_eq!(
            run(&["-replications", "x"]).unwrap_err(),
            GoFlagError::Invalid("invalid value \"x\" for flag -replications: parse error".into())
        );
        assert_eq!(
            run(&["---src"]).unwrap_err(),
            GoFlagError::Invalid("bad flag syntax: ---src".into())
        );
        assert_eq!(run(&["-help"]).unwrap_err(), GoFlagError::Help);
        assert_eq!(run(&["-h"]).unwrap_err(), GoFlagError::Help);
    }

    #[test]
    fn stops_at_first_positional_and_double_dash() {
        let parsed = run(&["-src", "a", "extra", "-dst", "b"]).unwrap();
        assert_eq!(parsed.positional, vec!["extra", "-dst", "b"]);
        let parsed = run(&["--", "-src"]).unwrap();
        assert_eq!(parsed.positional, vec!["-src"]);
        let parsed = run(&["-", "x"]).unwrap();
        assert_eq!(parsed.positional, vec!["-", "x"]);
    }

    #[test]
    fn defaults_come_from_the_table_and_values_are_range_checked() {
        let parsed = run(&["-replications", "4294967297"]).unwrap();
        assert_eq!(parsed.get("src"), Some(""));
        assert_eq!(parsed.get("ttl"), Some("0s"));
        assert!(!parsed.is_set("src") && parsed.is_set("replications"));
        assert_eq!(
            parsed.int_in::<u32>("replications", 0..=1000).unwrap_err(),
            "invalid value \"4294967297\" for flag -replications: value out of range (must be 0..1000)"
        );
        let parsed = run(&["-ttl", "0s"]).unwrap();
        assert_eq!(
            parsed.duration("ttl", true).unwrap_err(),
            "invalid value \"0s\" for flag -ttl: must be greater than zero"
        );
        assert_eq!(parsed.duration("ttl", false), Ok(std::time::Duration::ZERO));
    }

    #[test]
    fn go_int_forms() {
        assert_eq!(parse_go_int("10"), Some(10));
        assert_eq!(parse_go_int("-3"), Some(-3));
        assert_eq!(parse_go_int("0x10"), Some(16));
        assert_eq!(parse_go_int("010"), Some(8));
        assert_eq!(parse_go_int("0b11"), Some(3));
        assert_eq!(parse_go_int("1_0"), None);
        assert_eq!(parse_go_int(""), None);
        assert_eq!(parse_go_int("99999999999999999999"), None);
    }

    #[test]
    fn print_defaults_matches_go_layout() {
        let text = print_defaults(SPECS);
        assert!(text.starts_with("  -replications int\n    \tn\n"), "{text}");
        assert!(text.contains("  -version\n    \tv\n"));
    }
}
