//! Label and field selectors: parsing `?labelSelector=` / `?fieldSelector=` strings, matching objects
//! against them, and turning a `metav1.LabelSelector` object into the same matcher.
//!
//! Owns the selector grammar and its error wording. The caller has already percent- and `+`-decoded the
//! query value; errors are meant to be returned as a 400 `BadRequest` Status.
//!
//! The grammar follows apimachinery's `labels.Parse` / `fields.ParseSelector`: requirements are
//! comma-separated (commas inside `in (...)` belong to the value list), label keys and values are validated
//! like the apiserver does, and `!=` / `notin` match objects that lack the key.

use std::fmt;

use serde_json::{Map, Value};

/// How one label requirement relates its key to its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LabelOp {
    Exists,
    DoesNotExist,
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    GreaterThan,
    LessThan,
}

/// One `key op values` term of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: LabelOp,
    /// Sorted and de-duplicated, so rendering is stable whatever order the client wrote.
    values: Vec<String>,
}

impl Requirement {
    fn new(key: &str, op: LabelOp, mut values: Vec<String>) -> Result<Self, String> {
        let mut errs: Vec<String> = vec![];
        if let Err(e) = validate_label_key(key) {
            errs.push(e);
        }
        match op {
            LabelOp::In | LabelOp::NotIn => {
                if values.is_empty() {
                    errs.push(
                        "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty"
                            .to_string(),
                    );
                }
            }
            LabelOp::Equals | LabelOp::DoubleEquals | LabelOp::NotEquals => {
                if values.len() != 1 {
                    errs.push(format!(
                        "values: Invalid value: {values:?}: exact-match compatibility requires one single value"
                    ));
                }
            }
            LabelOp::Exists | LabelOp::DoesNotExist => {
                if !values.is_empty() {
                    errs.push(format!(
                        "values: Invalid value: {values:?}: values set must be empty for exists and does not exist"
                    ));
                }
            }
            LabelOp::GreaterThan | LabelOp::LessThan => {
                if values.len() != 1 {
                    errs.push(format!(
                        "values: Invalid value: {values:?}: for 'Gt', 'Lt' operators, exactly one value is required"
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(format!(
                            "values[{i}]: Invalid value: {v:?}: for 'Gt', 'Lt' operators, the value must be an integer"
                        ));
                    }
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            if let Err(e) = validate_label_value(v) {
                errs.push(format!("values[{i}][{key}]: Invalid value: {v:?}: {e}"));
            }
        }
        if !errs.is_empty() {
            return Err(errs.join(", "));
        }
        values.sort();
        values.dedup();
        Ok(Requirement {
            key: key.to_string(),
            op,
            values,
        })
    }

    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        // A label value that is not a string cannot come from a valid object; comparing its JSON text
        // keeps matching total instead of panicking or silently treating the key as absent.
        let got: Option<String> = labels.and_then(|m| m.get(&self.key)).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let has = |g: &str| self.values.iter().any(|v| v == g);
        match self.op {
            LabelOp::Exists => got.is_some(),
            LabelOp::DoesNotExist => got.is_none(),
            LabelOp::Equals | LabelOp::DoubleEquals | LabelOp::In => got.is_some_and(|g| has(&g)),
            LabelOp::NotEquals | LabelOp::NotIn => got.is_none_or(|g| !has(&g)),
            LabelOp::GreaterThan | LabelOp::LessThan => {
                let Some(have) = got.and_then(|g| g.parse::<i64>().ok()) else {
                    return false;
                };
                let Some(want) = self.values.first().and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                if self.op == LabelOp::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let single = self.values.first().map(String::as_str).unwrap_or("");
        let list = self.values.join(",");
        match self.op {
            LabelOp::Exists => write!(f, "{}", self.key),
            LabelOp::DoesNotExist => write!(f, "!{}", self.key),
            LabelOp::Equals => write!(f, "{}={single}", self.key),
            LabelOp::DoubleEquals => write!(f, "{}=={single}", self.key),
            LabelOp::NotEquals => write!(f, "{}!={single}", self.key),
            LabelOp::In => write!(f, "{} in ({list})", self.key),
            LabelOp::NotIn => write!(f, "{} notin ({list})", self.key),
            LabelOp::GreaterThan => write!(f, "{}>{single}", self.key),
            LabelOp::LessThan => write!(f, "{}<{single}", self.key),
        }
    }
}

/// A parsed label selector: the AND of its requirements. Empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector {
    reqs: Vec<Requirement>,
    /// Set for a null `metav1.LabelSelector`, which upstream treats as selecting nothing.
    nothing: bool,
}

impl LabelSelector {
    /// Parses the string form (`app=web,tier in (a,b),!canary`). The error text is meant for a 400 Status.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let tokens = lex(s);
        let mut p = Parser { tokens, pos: 0 };
        let mut reqs = vec![];
        loop {
            match p.peek() {
                Tok::End => break,
                Tok::Ident(_) | Tok::Bang => {
                    let r = p
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    match p.next() {
                        Tok::End => break,
                        Tok::Comma => match p.peek() {
                            Tok::Ident(_) | Tok::Bang => {}
                            t => {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.text()
                                ));
                            }
                        },
                        t => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.text()
                            ));
                        }
                    }
                }
                t => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.text()
                    ));
                }
            }
        }
        // Sorting by key makes the rendered form canonical, as upstream does.
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            reqs,
            nothing: false,
        })
    }

    /// Whether an object with these `metadata.labels` (None when it has none) is selected.
    pub(crate) fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        !self.nothing && self.reqs.iter().all(|r| r.matches(labels))
    }

    /// True when the selector has no requirements and therefore selects everything.
    pub(crate) fn is_empty(&self) -> bool {
        !self.nothing && self.reqs.is_empty()
    }
}

impl fmt::Display for LabelSelector {
    /// Renders the canonical string form, e.g. `app=web,tier in (a,b)`. A selector that selects
    /// nothing renders as the empty string, like upstream.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.reqs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Converts a `metav1.LabelSelector` JSON object (`matchLabels`, `matchExpressions`) into a matcher.
///
/// `null` selects nothing (upstream `LabelSelectorAsSelector(nil)`); `{}` selects everything. Render the
/// result with `to_string()` for a scale subresource's `status.selector`.
pub(crate) fn from_label_selector_object(v: &Value) -> Result<LabelSelector, String> {
    let obj = match v {
        Value::Null => {
            return Ok(LabelSelector {
                reqs: vec![],
                nothing: true,
            });
        }
        Value::Object(o) => o,
        _ => return Err("label selector must be an object".to_string()),
    };
    let mut reqs = vec![];
    match obj.get("matchLabels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ml)) => {
            for (k, val) in ml {
                let val = val
                    .as_str()
                    .ok_or_else(|| format!("matchLabels.{k}: value must be a string"))?;
                reqs.push(Requirement::new(k, LabelOp::Equals, vec![val.to_string()])?);
            }
        }
        Some(_) => return Err("matchLabels must be an object".to_string()),
    }
    match obj.get("matchExpressions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(exprs)) => {
            for (i, e) in exprs.iter().enumerate() {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("matchExpressions[{i}].key: Required value"))?;
                let op_s = e.get("operator").and_then(Value::as_str).unwrap_or("");
                let op = match op_s {
                    "In" => LabelOp::In,
                    "NotIn" => LabelOp::NotIn,
                    "Exists" => LabelOp::Exists,
                    "DoesNotExist" => LabelOp::DoesNotExist,
                    other => {
                        return Err(format!("{other:?} is not a valid label selector operator"));
                    }
                };
                let values = match e.get("values") {
                    None | Some(Value::Null) => vec![],
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|x| {
                            x.as_str().map(str::to_string).ok_or_else(|| {
                                format!("matchExpressions[{i}].values: must be strings")
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                    Some(_) => return Err(format!("matchExpressions[{i}].values: must be a list")),
                };
                reqs.push(Requirement::new(key, op, values)?);
            }
        }
        Some(_) => return Err("matchExpressions must be a list".to_string()),
    }
    reqs.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(LabelSelector {
        reqs,
        nothing: false,
    })
}

// ---------------------------------------------------------------------------------------------
// Label selector lexer and parser

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Bang,
    NotEq,
    Eq,
    DoubleEq,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
    End,
}

impl Tok {
    /// The literal as it appeared, for error messages.
    fn text(&self) -> &str {
        match self {
            Tok::Ident(s) => s,
            Tok::Bang => "!",
            Tok::NotEq => "!=",
            Tok::Eq => "=",
            Tok::DoubleEq => "==",
            Tok::Gt => ">",
            Tok::Lt => "<",
            Tok::Open => "(",
            Tok::Close => ")",
            Tok::Comma => ",",
            Tok::End => "",
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

/// Splits a selector into tokens. Anything that is neither whitespace nor an operator character is part
/// of an identifier, so `in`/`notin` are plain identifiers here and the parser decides by position
/// (which lets a key or value literally be `in`).
fn lex(s: &str) -> Vec<Tok> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = vec![];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '!' if next == Some('=') => {
                out.push(Tok::NotEq);
                i += 2;
            }
            '!' => {
                out.push(Tok::Bang);
                i += 1;
            }
            '=' if next == Some('=') => {
                out.push(Tok::DoubleEq);
                i += 2;
            }
            '=' => {
                out.push(Tok::Eq);
                i += 1;
            }
            '>' => {
                out.push(Tok::Gt);
                i += 1;
            }
            '<' => {
                out.push(Tok::Lt);
                i += 1;
            }
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !is_special(chars[i]) {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
        }
    }
    out
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Tok {
        self.tokens.get(self.pos).cloned().unwrap_or(Tok::End)
    }

    fn next(&mut self) -> Tok {
        let t = self.peek();
        self.pos += 1;
        t
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let negated = if self.peek() == Tok::Bang {
            self.next();
            true
        } else {
            false
        };
        let key = match self.next() {
            Tok::Ident(k) => k,
            t => return Err(format!("found '{}', expected: identifier", t.text())),
        };
        validate_label_key(&key)?;
        if negated {
            return Requirement::new(&key, LabelOp::DoesNotExist, vec![]);
        }
        if matches!(self.peek(), Tok::End | Tok::Comma) {
            return Requirement::new(&key, LabelOp::Exists, vec![]);
        }
        let op = match self.next() {
            Tok::Ident(w) if w == "in" => LabelOp::In,
            Tok::Ident(w) if w == "notin" => LabelOp::NotIn,
            Tok::Eq => LabelOp::Equals,
            Tok::DoubleEq => LabelOp::DoubleEquals,
            Tok::NotEq => LabelOp::NotEquals,
            Tok::Gt => LabelOp::GreaterThan,
            Tok::Lt => LabelOp::LessThan,
            t => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.text()
                ));
            }
        };
        let values = match op {
            LabelOp::In | LabelOp::NotIn => self.value_set()?,
            _ => self.exact_value()?,
        };
        Requirement::new(&key, op, values)
    }

    /// `( v1, v2 )`. Empty slots count as the empty value, so `()` and `(a,)` both include `""`,
    /// mirroring upstream.
    fn value_set(&mut self) -> Result<Vec<String>, String> {
        match self.next() {
            Tok::Open => {}
            t => return Err(format!("found '{}', expected: '('", t.text())),
        }
        let mut values = vec![];
        let mut expect_value = true;
        loop {
            match self.next() {
                Tok::Close => {
                    if expect_value {
                        values.push(String::new());
                    }
                    return Ok(values);
                }
                Tok::Comma => {
                    if expect_value {
                        values.push(String::new());
                    }
                    expect_value = true;
                }
                Tok::Ident(v) if expect_value => {
                    values.push(v);
                    expect_value = false;
                }
                Tok::Ident(v) => return Err(format!("found '{v}', expected: ',' or ')'")),
                t => {
                    return Err(format!(
                        "found '{}', expected: ',', ')' or identifier",
                        t.text()
                    ));
                }
            }
        }
    }

    /// The single value after `=`, `==`, `!=`, `>` or `<`; nothing before a comma or the end is `""`.
    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        if matches!(self.peek(), Tok::End | Tok::Comma) {
            return Ok(vec![String::new()]);
        }
        match self.next() {
            Tok::Ident(v) => Ok(vec![v]),
            t => Err(format!("found '{}', expected: identifier", t.text())),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation of label keys and values (apimachinery's IsQualifiedName / IsValidLabelValue rules)

const NAME_RULE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, without pulling in a regex engine for one pattern.
fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// RFC 1123 subdomain: lowercase labels of `[a-z0-9-]`, dot-separated, each starting and ending alphanumeric.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn validate_label_key(key: &str) -> Result<(), String> {
    let invalid = |why: String| Err(format!("key: Invalid value: {key:?}: {why}"));
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                return invalid("prefix part must be non-empty".to_string());
            }
            if !is_dns_subdomain(prefix) {
                return invalid(
                    "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com'), at most 253 characters"
                .to_string());
            }
            *name
        }
        _ => {
            return invalid(format!(
                "a qualified name {NAME_RULE}, with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ));
        }
    };
    if name.is_empty() {
        return invalid("name part must be non-empty".to_string());
    }
    if name.len() > 63 {
        return invalid("name part must be no more than 63 characters".to_string());
    }
    if !is_name_part(name) {
        return invalid(format!(
            "name part {NAME_RULE} (e.g. 'MyName', 'my.name', '123-abc')"
        ));
    }
    Ok(())
}

fn validate_label_value(v: &str) -> Result<(), String> {
    if v.len() > 63 {
        return Err("must be no more than 63 characters".to_string());
    }
    if !v.is_empty() && !is_name_part(v) {
        return Err(format!(
            "a valid label must be an empty string or {}",
            NAME_RULE.trim_start_matches("must ")
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Field selectors

/// One `field op value` term of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldTerm {
    /// Dotted path into the object, e.g. `metadata.name` or `spec.nodeName`.
    field: String,
    equal: bool,
    value: String,
}

/// A parsed field selector: the AND of `field=value`, `field==value` and `field!=value` terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parses `metadata.name=foo,status.phase!=Running`. Values may escape `\,`, `\=` and `\\`.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let mut terms = vec![];
        for part in split_unescaped_commas(s) {
            if part.is_empty() {
                continue;
            }
            let (field, equal, raw) = split_term(&part)
                .ok_or_else(|| format!("invalid selector: '{s}'; can't understand '{part}'"))?;
            // Upstream does not trim, but a stray space around the field name can only be a typo, and
            // rejecting it helps nobody in a simulator.
            let field = field.trim();
            if field.is_empty() {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            }
            terms.push(FieldTerm {
                field: field.to_string(),
                equal,
                value: unescape_field_value(raw)?,
            });
        }
        terms.sort_by(|a, b| a.field.cmp(&b.field));
        Ok(FieldSelector { terms })
    }

    /// Whether `obj` (the whole object) satisfies every term.
    ///
    /// Any dotted path is accepted, not just the per-kind set the real apiserver allows. A missing field
    /// compares as `""`, so `spec.nodeName=` selects unscheduled pods as upstream does; numbers and
    /// booleans compare by their JSON text.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            let got = field_value(obj, &t.field);
            (got == t.value) == t.equal
        })
    }

    /// True when the selector has no terms and therefore selects everything.
    pub(crate) fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value `field` must equal, when one `field=value` term requires it.
    pub(crate) fn exact(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.equal && t.field == field)
            .map(|t| t.value.as_str())
    }
}

fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Splits on commas not preceded by a backslash, keeping escapes for [`unescape_field_value`].
fn split_unescaped_commas(s: &str) -> Vec<String> {
    let mut parts = vec![];
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            cur.push(c);
            escaped = true;
        } else if c == ',' {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

/// Finds the first operator in a term: at each position `!=` and `==` win over `=`.
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        if let Some(v) = rest.strip_prefix("!=") {
            return Some((&term[..i], false, v));
        }
        if let Some(v) = rest.strip_prefix("==") {
            return Some((&term[..i], true, v));
        }
        if let Some(v) = rest.strip_prefix('=') {
            return Some((&term[..i], true, v));
        }
    }
    None
}

fn unescape_field_value(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{c}"
                    ));
                }
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: '{c}'"
                ));
            }
            _ => out.push(c),
        }
    }
    if escaped {
        return Err("invalid field selector: invalid escape sequence: \\".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn equality_forms_match() {
        let l = labels(json!({"app": "web", "tier": "db"}));
        assert!(sel("app=web").matches(Some(&l)));
        assert!(sel("app==web").matches(Some(&l)));
        assert!(!sel("app=api").matches(Some(&l)));
        assert!(sel("app=web,tier=db").matches(Some(&l)));
        assert!(!sel("app=web,tier=cache").matches(Some(&l)));
        assert!(!sel("app=web").matches(None));
    }

    #[test]
    fn not_equals_and_notin_match_missing_keys() {
        let l = labels(json!({"app": "web"}));
        assert!(sel("env!=prod").matches(Some(&l)));
        assert!(sel("env notin (prod,staging)").matches(Some(&l)));
        assert!(sel("env!=prod").matches(None));
        assert!(!sel("app!=web").matches(Some(&l)));
        assert!(!sel("app notin (web)").matches(Some(&l)));
    }

    #[test]
    fn set_based_and_existence() {
        let l = labels(json!({"env": "dev", "example.com/role": "x"}));
        assert!(sel("env in (development,dev)").matches(Some(&l)));
        assert!(!sel("env in (prod)").matches(Some(&l)));
        assert!(sel("env").matches(Some(&l)));
        assert!(!sel("!env").matches(Some(&l)));
        assert!(sel("!missing").matches(Some(&l)));
        assert!(sel("example.com/role").matches(Some(&l)));
        assert!(sel("example.com/role=x").matches(Some(&l)));
    }

    #[test]
    fn commas_inside_parentheses_belong_to_the_set() {
        let s = sel("env in (a,b,c),tier notin (x, y)");
        assert_eq!(s.to_string(), "env in (a,b,c),tier notin (x,y)");
        let l = labels(json!({"env": "c", "tier": "z"}));
        assert!(s.matches(Some(&l)));
    }

    #[test]
    fn whitespace_is_tolerated() {
        let s = sel("  app = web ,  env   in   ( a , b ) , ! canary ");
        assert_eq!(s.to_string(), "app=web,!canary,env in (a,b)");
    }

    #[test]
    fn empty_values() {
        let s = sel("k=");
        let empty = labels(json!({"k": ""}));
        let full = labels(json!({"k": "v"}));
        assert!(s.matches(Some(&empty)));
        assert!(!s.matches(Some(&full)));
        assert!(!s.matches(None));
        assert_eq!(sel("k=,j=x").to_string(), "j=x,k=");
        // Upstream treats an empty slot in a value list as the empty value.
        assert!(sel("k in ()").matches(Some(&empty)));
        assert!(sel("k in (v,)").matches(Some(&empty)));
    }

    #[test]
    fn empty_selector_selects_everything() {
        let s = sel("");
        assert!(s.is_empty());
        assert!(s.matches(None));
        assert!(sel("   ").is_empty());
        assert!(!sel("a").is_empty());
    }

    #[test]
    fn greater_and_less_than() {
        let l = labels(json!({"n": "5", "s": "x"}));
        assert!(sel("n>3").matches(Some(&l)));
        assert!(!sel("n>5").matches(Some(&l)));
        assert!(sel("n<6").matches(Some(&l)));
        assert!(!sel("s>1").matches(Some(&l)));
        assert!(!sel("missing<9").matches(Some(&l)));
        assert!(LabelSelector::parse("n>abc").is_err());
    }

    #[test]
    fn rendering_is_canonical_and_reparses() {
        let s = sel("z=1,a notin (c,b,b),m,!q,k!=v,d==e");
        let text = s.to_string();
        assert_eq!(text, "a notin (b,c),d==e,k!=v,m,!q,z=1");
        assert_eq!(sel(&text), s);
    }

    #[test]
    fn in_and_notin_can_be_keys_and_values() {
        let l = labels(json!({"in": "notin"}));
        assert!(sel("in=notin").matches(Some(&l)));
        assert!(sel("in in (notin)").matches(Some(&l)));
    }

    #[test]
    fn syntax_errors_are_reported() {
        let cases = [
            ("app=web,", "expected: identifier after ','"),
            ("app=web tier=db", "expected: ',' or 'end of string'"),
            (
                "env in a,b",
                "unable to parse requirement: found 'a', expected: '('",
            ),
            ("env in (a b)", "found 'b', expected: ',' or ')'"),
            ("env in (a", "expected: ',', ')' or identifier"),
            ("env foo bar", "expected: in, notin, =, ==, !=, gt, lt"),
            (",a", "expected: !, identifier, or 'end of string'"),
            ("!", "expected: identifier"),
            ("a==(", "found '(', expected: identifier"),
            ("!a=b", "expected: ',' or 'end of string'"),
        ];
        for (input, want) in cases {
            let err = LabelSelector::parse(input).unwrap_err();
            assert!(
                err.contains(want),
                "{input:?} gave {err:?}, wanted {want:?}"
            );
        }
    }

    #[test]
    fn keys_and_values_are_validated() {
        let err = LabelSelector::parse("bad key!x=1").unwrap_err();
        assert!(err.starts_with("unable to parse requirement"), "{err}");
        let err = LabelSelector::parse("-app=web").unwrap_err();
        assert!(err.contains("key: Invalid value: \"-app\""), "{err}");
        let long = "a".repeat(64);
        let err = LabelSelector::parse(&format!("{long}=x")).unwrap_err();
        assert!(err.contains("no more than 63 characters"), "{err}");
        let err = LabelSelector::parse(&format!("k={long}")).unwrap_err();
        assert!(err.contains("no more than 63 characters"), "{err}");
        let err = LabelSelector::parse("k=-v").unwrap_err();
        assert!(
            err.contains("a valid label must be an empty string"),
            "{err}"
        );
        let err = LabelSelector::parse("Example.com/app=x").unwrap_err();
        assert!(err.contains("prefix part"), "{err}");
        let err = LabelSelector::parse("/app=x").unwrap_err();
        assert!(err.contains("prefix part must be non-empty"), "{err}");
        let err = LabelSelector::parse("a/b/c=x").unwrap_err();
        assert!(err.contains("qualified name"), "{err}");
        let err = LabelSelector::parse("example.com/=x").unwrap_err();
        assert!(err.contains("name part must be non-empty"), "{err}");
        assert!(LabelSelector::parse("app.kubernetes.io/name=My_App-1.0").is_ok());
    }

    #[test]
    fn selector_object_converts_and_renders() {
        let s = from_label_selector_object(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "NotIn", "values": ["x"]},
                {"key": "env", "operator": "Exists"}
            ]
        }))
        .unwrap();
        assert_eq!(
            s.to_string(),
            "app=web,!canary,env,tier in (a,b),zone notin (x)"
        );
        let ok = labels(json!({"app": "web", "tier": "a", "env": "p"}));
        let canary = labels(json!({"app": "web", "tier": "a", "env": "p", "canary": "1"}));
        assert!(s.matches(Some(&ok)));
        assert!(!s.matches(Some(&canary)));
        assert_eq!(LabelSelector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn selector_object_edge_cases() {
        let everything = from_label_selector_object(&json!({})).unwrap();
        assert!(everything.is_empty());
        assert!(everything.matches(None));
        let nothing = from_label_selector_object(&Value::Null).unwrap();
        assert!(!nothing.is_empty());
        assert!(!nothing.matches(Some(&labels(json!({"a": "b"})))));
        let err = from_label_selector_object(&json!({"matchExpressions": [
            {"key": "a", "operator": "Gt", "values": ["1"]}
        ]}))
        .unwrap_err();
        assert!(
            err.contains("\"Gt\" is not a valid label selector operator"),
            "{err}"
        );
        let err = from_label_selector_object(&json!({"matchExpressions": [
            {"key": "a", "operator": "In", "values": []}
        ]}))
        .unwrap_err();
        assert!(err.contains("values set can't be empty"), "{err}");
        let err = from_label_selector_object(&json!({"matchExpressions": [
            {"key": "a", "operator": "Exists", "values": ["x"]}
        ]}))
        .unwrap_err();
        assert!(err.contains("values set must be empty"), "{err}");
        assert!(from_label_selector_object(&json!({"matchLabels": {"a": 1}})).is_err());
        assert!(from_label_selector_object(&json!("app=web")).is_err());
    }

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web-0", "namespace": "default"},
            "spec": {"nodeName": "node-1", "hostNetwork": false},
            "status": {"phase": "Running"}
        })
    }

    fn fsel(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn field_selector_name_and_namespace() {
        let p = pod();
        assert!(fsel("metadata.name=web-0").matches(&p));
        assert!(fsel("metadata.name==web-0").matches(&p));
        assert!(!fsel("metadata.name!=web-0").matches(&p));
        assert!(fsel("metadata.name=web-0,metadata.namespace=default").matches(&p));
        assert!(!fsel("metadata.name=web-0,metadata.namespace=other").matches(&p));
        assert!(fsel("metadata.namespace!=kube-system").matches(&p));
    }

    #[test]
    fn field_selector_arbitrary_paths() {
        let p = pod();
        assert!(fsel("spec.nodeName=node-1").matches(&p));
        assert!(fsel("status.phase!=Pending").matches(&p));
        assert!(fsel("spec.hostNetwork=false").matches(&p));
        assert!(!fsel("spec.schedulerName=x").matches(&p));
        // A missing field is the empty string, so `spec.nodeName=` finds unscheduled pods.
        let unscheduled = json!({"metadata": {"name": "p"}, "spec": {}});
        assert!(fsel("spec.nodeName=").matches(&unscheduled));
        assert!(!fsel("spec.nodeName=").matches(&p));
        let ev = json!({"involvedObject": {"name": "web-0", "kind": "Pod"}});
        assert!(fsel("involvedObject.name=web-0,involvedObject.kind=Pod").matches(&ev));
    }

    #[test]
    fn field_selector_parsing() {
        assert!(fsel("").is_empty());
        assert!(fsel("").matches(&pod()));
        assert!(!fsel("metadata.name=x").is_empty());
        assert!(fsel("metadata.name=web-0,").matches(&pod()));
        let err = FieldSelector::parse("metadata.name").unwrap_err();
        assert!(err.contains("can't understand 'metadata.name'"), "{err}");
        let err = FieldSelector::parse("a=b=c").unwrap_err();
        assert!(err.contains("unescaped character"), "{err}");
        let err = FieldSelector::parse("a=b\\x").unwrap_err();
        assert!(err.contains("invalid escape sequence"), "{err}");
        let err = FieldSelector::parse("a=b\\").unwrap_err();
        assert!(err.contains("invalid escape sequence"), "{err}");
        assert!(FieldSelector::parse("=x").is_err());
    }

    #[test]
    fn field_selector_escapes() {
        let obj = json!({"metadata": {"name": "a,b=c\\d"}});
        assert!(fsel("metadata.name=a\\,b\\=c\\\\d").matches(&obj));
        let obj2 = json!({"metadata": {"name": "x"}});
        assert!(fsel("metadata.name!=a\\,b").matches(&obj2));
    }
}
