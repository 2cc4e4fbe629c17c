//! Segment's subscription FQL: the trigger of a Webhooks (Actions) mapping, such as
//! `type = "track" and event = "Order Completed"`.
//!
//! The reference is Segment's own implementation, the npm package
//! `@segment/destination-subscriptions` (`parseFql`, then `validate`) over the lexer of
//! `@segment/fql-ts`. A trigger must select the same events here as there, so this is a
//! faithful port, quirks included, each marked where it differs from what one would
//! guess: a group takes the last `and`/`or` in it for all its conditions; parentheses do
//! not nest; `!` negates only a function (`!(…)` is the group itself); single-quoted
//! strings keep their quotes; unknown fields are skipped. The tests compare verdicts
//! with the npm package on thousands of random expressions and events.
//!
//! Where the reference parses an expression into something that throws when evaluated
//! (parentheses that hold no condition, an empty property path), the throw is kept too:
//! evaluation stops there as JavaScript's would, and an event it throws on is not
//! matched.

use serde_json::Value;

use super::js::{number_to_string, string_to_number, Js};

/// A parsed trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct Fql {
    root: Group,
}

/// Why an expression is not a trigger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FqlError(String);

impl Fql {
    /// Parses `text` as `parseFql` does; an error where it gives one.
    pub fn parse(text: &str) -> Result<Fql, FqlError> {
        let tokens = Lexer::new(text).lex()?;
        let mut tokens = normalize(tokens);
        tokens.reverse(); // Taken from the end: `pop` is JavaScript's `shift`.
        let root = match parse(&mut tokens)? {
            Node::Group(group) => group,
            leaf => Group {
                or: false,
                children: vec![leaf],
            },
        };
        Ok(Fql { root })
    }

    /// Whether `event` matches, as `validate` decides (an evaluation that throws there
    /// is no match here).
    pub fn matches(&self, event: &Value) -> bool {
        self.evaluate(event).unwrap_or(false)
    }

    /// `validate`'s answer for `event`, or [`Throws`] where it throws.
    pub fn evaluate(&self, event: &Value) -> Result<bool, Throws> {
        self.root.evaluate(event)
    }
}

/// The reference throws evaluating this trigger on this event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throws;

// ---------------------------------------------------------------------------------------
// The lexer (`@segment/fql-ts`), over UTF-16 units as JavaScript strings are.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ident,
    Dot,
    Operator,
    Conditional,
    Str,
    Number,
    Null,
    BrackLeft,
    BrackRight,
    ParenLeft,
    ParenRight,
    Comma,
    Eos,
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    kind: Kind,
    value: String,
}

impl Token {
    fn new(kind: Kind, value: impl Into<String>) -> Token {
        Token {
            kind,
            value: value.into(),
        }
    }
}

const MAXIMUM_LENGTH: usize = 100_000;

/// A character as the lexer sees it: a UTF-16 unit, or the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ch {
    Unit(u16),
    Eos,
}

impl Ch {
    fn is(self, c: char) -> bool {
        self == Ch::Unit(c as u16)
    }

    fn ascii(self) -> Option<u8> {
        match self {
            Ch::Unit(u) if u < 128 => Some(u as u8),
            _ => None,
        }
    }

    fn is_alpha(self) -> bool {
        self.ascii().is_some_and(|b| b.is_ascii_alphabetic())
    }

    fn is_number(self) -> bool {
        self.ascii().is_some_and(|b| b.is_ascii_digit())
    }

    fn is_whitespace(self) -> bool {
        matches!(self.ascii(), Some(b' ' | b'\t' | b'\n'))
    }

    fn is_ident(self) -> bool {
        self.is_alpha() || self.is_number() || self.is('_') || self.is('-') || self.is('\\')
    }

    fn is_terminator(self) -> bool {
        self == Ch::Eos || self.is_whitespace() || self.is(',') || self.is(']') || self.is(')')
    }

    /// As the lexer's messages show it (the end reads `-1`).
    fn shown(self) -> String {
        match self {
            Ch::Unit(u) => String::from_utf16_lossy(&[u]),
            Ch::Eos => "-1".into(),
        }
    }
}

struct Lexer {
    code: Vec<u16>,
    position: usize,
}

impl Lexer {
    fn new(code: &str) -> Lexer {
        Lexer {
            code: code.encode_utf16().collect(),
            position: 0,
        }
    }

    fn next(&mut self) -> Ch {
        match self.code.get(self.position) {
            Some(&u) => {
                self.position += 1;
                Ch::Unit(u)
            }
            None => Ch::Eos,
        }
    }

    fn peek(&mut self) -> Ch {
        let c = self.next();
        if c != Ch::Eos {
            self.backup(1);
        }
        c
    }

    fn backup(&mut self, count: usize) {
        self.position = self.position.saturating_sub(count);
    }

    /// Advances over `s` if it is next and a terminator follows; else goes back — except
    /// that reaching the end on the way gives up without going back (as the reference).
    fn accept(&mut self, s: &str) -> bool {
        let mut read: Vec<Ch> = Vec::new();
        for _ in s.encode_utf16() {
            let c = self.next();
            read.push(c);
            if c == Ch::Eos {
                return false;
            }
            if c.is_terminator() {
                break;
            }
        }
        let wanted: Vec<Ch> = s.encode_utf16().map(Ch::Unit).collect();
        if read == wanted && self.peek().is_terminator() {
            return true;
        }
        self.backup(read.len());
        false
    }

    fn lex(mut self) -> Result<Vec<Token>, FqlError> {
        let mut tokens = Vec::new();
        loop {
            let c = self.next();
            if c == Ch::Eos {
                tokens.push(Token::new(Kind::Eos, "eos"));
                return Ok(tokens);
            }
            if c.is_whitespace() {
                continue;
            }
            if c.is('!') {
                let next = self.peek();
                if next.is_alpha() || next.is('(') {
                    tokens.push(Token::new(Kind::Operator, "!"));
                    continue;
                }
            }
            if c.is_alpha()
                || c.is('!')
                || c.is('=')
                || c.is('>')
                || c.is('<')
                || c.is('\\')
                || c.is('_')
            {
                tokens.push(self.lex_operator_or_conditional(c)?);
                continue;
            }
            if c.is_number() || c.is('-') || c.is('+') {
                tokens.push(self.lex_number(c)?);
                continue;
            }
            if c.is('"') || c.is('\'') {
                tokens.push(self.lex_string(c)?);
                continue;
            }
            let kind = match c.ascii() {
                Some(b'.') => Kind::Dot,
                Some(b'[') => Kind::BrackLeft,
                Some(b']') => Kind::BrackRight,
                Some(b',') => Kind::Comma,
                Some(b'(') => Kind::ParenLeft,
                Some(b')') => Kind::ParenRight,
                _ => return Err(FqlError(format!("invalid character \"{}\"", c.shown()))),
            };
            tokens.push(Token::new(kind, c.shown()));
        }
    }

    fn lex_string(&mut self, quote: Ch) -> Result<Token, FqlError> {
        let mut units: Vec<u16> = Vec::new();
        while self.peek() != quote {
            match self.next() {
                Ch::Unit(u) => units.push(u),
                Ch::Eos => return Err(FqlError("unterminated string".into())),
            }
            if units.len() >= MAXIMUM_LENGTH {
                return Err(FqlError("unreasonable string length".into()));
            }
        }
        // Eats the closing quote only if a terminator follows it (as the reference).
        let q = quote.shown();
        self.accept(&q);
        Ok(Token::new(
            Kind::Str,
            format!("{q}{}{q}", String::from_utf16_lossy(&units)),
        ))
    }

    fn lex_number(&mut self, first: Ch) -> Result<Token, FqlError> {
        let mut units: Vec<u16> = Vec::new();
        let mut coming = self.peek();
        let mut decimal = false;
        while coming.is_number() || coming.is('.') {
            if let Ch::Unit(u) = self.next() {
                units.push(u);
            }
            if coming.is('.') {
                if self.peek().is_terminator() {
                    return Err(FqlError("unexpected terminator after decimal point".into()));
                }
                if decimal {
                    return Err(FqlError("multiple decimal points in one number".into()));
                }
                decimal = true;
            }
            if units.len() >= MAXIMUM_LENGTH {
                return Err(FqlError("unreasonable number length".into()));
            }
            coming = self.peek();
        }
        Ok(Token::new(
            Kind::Number,
            format!("{}{}", first.shown(), String::from_utf16_lossy(&units)),
        ))
    }

    fn lex_operator_or_conditional(&mut self, first: Ch) -> Result<Token, FqlError> {
        match first.ascii() {
            Some(b'=') => Ok(Token::new(Kind::Operator, "=")),
            Some(b'!') => {
                if self.accept("=") {
                    Ok(Token::new(Kind::Operator, "!="))
                } else {
                    Err(FqlError(format!(
                        "expected '=' after '!', got '{}'",
                        self.peek().shown()
                    )))
                }
            }
            Some(b'a') if self.accept("nd") => Ok(Token::new(Kind::Conditional, "and")),
            Some(b'o') if self.accept("r") => Ok(Token::new(Kind::Conditional, "or")),
            Some(b'n') if self.accept("ull") => Ok(Token::new(Kind::Null, "null")),
            Some(b @ (b'<' | b'>')) => {
                let op = if self.accept("=") {
                    format!("{}=", b as char)
                } else {
                    (b as char).to_string()
                };
                Ok(Token::new(Kind::Operator, op))
            }
            _ => self.lex_ident(first),
        }
    }

    fn lex_ident(&mut self, first: Ch) -> Result<Token, FqlError> {
        let mut units: Vec<u16> = Vec::new();
        let mut c = first;
        loop {
            if c.is('\\') {
                if self.peek() == Ch::Eos {
                    return Err(FqlError(
                        "expected character after escape character, got EOS".into(),
                    ));
                }
                c = self.next();
            }
            if let Ch::Unit(u) = c {
                units.push(u);
            }
            if units.len() >= MAXIMUM_LENGTH {
                return Err(FqlError("unreasonable literal length".into()));
            }
            if !self.peek().is_ident() {
                break;
            }
            c = self.next();
        }
        let coming = self.peek();
        if !(coming.is_terminator()
            || coming.is('.')
            || coming.is('(')
            || coming.is('=')
            || coming.is('!'))
        {
            return Err(FqlError(format!(
                "expected termination character after identifier, got {}",
                coming.shown()
            )));
        }
        Ok(Token::new(Kind::Ident, String::from_utf16_lossy(&units)))
    }
}

/// Joins `ident . ident` into one identifier (`properties.order_id`).
fn normalize(tokens: Vec<Token>) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let current = &tokens[i];
        let next = tokens.get(i + 1);
        let joins = out.last().is_some_and(|t| t.kind == Kind::Ident)
            && current.kind == Kind::Dot
            && next.is_some_and(|t| t.kind == Kind::Ident);
        if joins {
            let previous = out.pop().map(|t| t.value).unwrap_or_default();
            out.push(Token::new(
                Kind::Ident,
                format!(
                    "{previous}{}{}",
                    current.value,
                    next.map_or("", |t| &t.value)
                ),
            ));
            i += 2;
        } else {
            out.push(current.clone());
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The parser (`parse-fql.js`).

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq)]
enum Field {
    Type,
    Event,
    Name,
    UserId,
    Property(Vec<String>),
    Trait(Vec<String>),
    Context(Vec<String>),
}

/// A token's value as `getTokenValue` gives it.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
}

impl Literal {
    fn of(token: &Token) -> Literal {
        match token.kind {
            // Only double quotes come off: a single-quoted string keeps its quotes.
            Kind::Str => {
                let v = token.value.strip_prefix('"').unwrap_or(&token.value);
                Literal::Str(v.strip_suffix('"').unwrap_or(v).to_string())
            }
            Kind::Number => Literal::Num(number_token(&token.value)),
            Kind::Ident if token.value == "true" => Literal::Bool(true),
            Kind::Ident if token.value == "false" => Literal::Bool(false),
            _ => Literal::Str(token.value.clone()),
        }
    }

    /// `String(value)`.
    fn string(&self) -> String {
        match self {
            Literal::Str(s) => s.clone(),
            Literal::Num(n) => number_to_string(*n),
            Literal::Bool(b) => b.to_string(),
        }
    }

    /// `Number(value)`.
    fn number(&self) -> f64 {
        match self {
            Literal::Str(s) => string_to_number(s),
            Literal::Num(n) => *n,
            Literal::Bool(b) => f64::from(u8::from(*b)),
        }
    }
}

/// `Number(token)` for a number token: a sign, digits and at most one point.
fn number_token(text: &str) -> f64 {
    text.parse().unwrap_or(f64::NAN)
}

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    field: Field,
    operator: String,
    value: Option<Literal>,
}

#[derive(Debug, Clone, PartialEq)]
struct Group {
    or: bool,
    children: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Condition(Condition),
    Group(Group),
    /// Parentheses that held no condition: `undefined` in the reference's tree.
    Undefined,
}

/// Members of `Object.prototype`: as field names they look up to a function in the
/// reference's table, which takes two tokens and adds no condition.
const INHERITED_NAMES: &[&str] = &[
    "constructor",
    "__proto__",
    "__defineGetter__",
    "__defineSetter__",
    "__lookupGetter__",
    "__lookupSetter__",
    "hasOwnProperty",
    "isPrototypeOf",
    "propertyIsEnumerable",
    "toLocaleString",
    "toString",
    "valueOf",
];

/// `get`'s path: runs of characters other than `[`, `.` and `]` (none: the reference
/// throws when it evaluates the condition).
fn path(name: &str) -> Result<Vec<String>, FqlError> {
    Ok(name
        .split(['[', '.', ']'])
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect())
}

/// The field a `properties…`, `traits…` or `context…` name points at (as the
/// reference's `/^(properties)\./` replacement leaves it).
fn nested(name: &str, prefix: &str, make: fn(Vec<String>) -> Field) -> Result<Field, FqlError> {
    let rest = name
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('.'))
        .unwrap_or(name);
    Ok(make(path(rest)?))
}

fn pop(tokens: &mut Vec<Token>) -> Option<Token> {
    tokens.pop()
}

fn parse(tokens: &mut Vec<Token>) -> Result<Node, FqlError> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut or = false;
    while let Some(token) = pop(tokens) {
        if token.kind == Kind::Eos {
            break;
        }
        if token.kind == Kind::Ident {
            let start = token.value.split('.').next().unwrap_or("");
            let known = matches!(
                start,
                "type" | "event" | "name" | "userId" | "context" | "properties" | "traits"
            );
            if known || INHERITED_NAMES.contains(&start) {
                let operator =
                    pop(tokens).ok_or_else(|| FqlError("Operator token is missing".into()))?;
                let value = pop(tokens).ok_or_else(|| FqlError("Value token is missing".into()))?;
                if known {
                    nodes.push(Node::Condition(condition(
                        start,
                        &token.value,
                        &operator,
                        &value,
                    )?));
                }
            }
            if token.value == "contains" || token.value == "match" {
                parse_function(&token.value, &mut nodes, tokens, false)?;
            }
        }
        if token.kind == Kind::Operator && token.value == "!" {
            let function = tokens
                .last()
                .filter(|t| t.kind == Kind::Ident && (t.value == "contains" || t.value == "match"))
                .map(|t| t.value.clone());
            if let Some(name) = function {
                pop(tokens);
                parse_function(&name, &mut nodes, tokens, true)?;
            }
        }
        if token.kind == Kind::ParenLeft {
            // Up to the first `)`: parentheses do not nest.
            let mut group = Vec::new();
            loop {
                let t = pop(tokens).ok_or_else(|| FqlError("missing \")\"".into()))?;
                if t.kind == Kind::ParenRight {
                    break;
                }
                group.push(t);
            }
            group.push(Token::new(Kind::Eos, "eos"));
            group.reverse();
            nodes.push(parse_group(&mut group)?);
        }
        if token.kind == Kind::Conditional {
            or = token.value == "or";
        }
    }
    match nodes.len() {
        0 => Err(FqlError("no condition".into())),
        1 if nodes[0] == Node::Undefined => Err(FqlError("no condition".into())),
        1 => Ok(nodes.pop().expect("one node")),
        _ => Ok(Node::Group(Group {
            or,
            children: nodes,
        })),
    }
}

/// A parenthesized group: as [`parse`], except that one holding no condition is
/// `undefined` (kept, to throw when evaluated), not an error.
fn parse_group(tokens: &mut Vec<Token>) -> Result<Node, FqlError> {
    match parse(tokens) {
        Err(FqlError(why)) if why == "no condition" => Ok(Node::Undefined),
        other => other,
    }
}

fn condition(
    start: &str,
    name: &str,
    operator: &Token,
    value: &Token,
) -> Result<Condition, FqlError> {
    let op = operator.value.as_str();
    let is = |o: &str, v: &str| op == o && value.value == v;
    let special = if is("!=", "null") {
        Some("exists")
    } else if is("=", "null") {
        Some("not_exists")
    } else if is("=", "true") {
        Some("is_true")
    } else if is("=", "false") {
        Some("is_false")
    } else if op == "=" && value.kind == Kind::Number {
        Some("number_equals")
    } else if op == "!=" && value.kind == Kind::Number {
        Some("number_not_equals")
    } else {
        None
    };
    let plain = |field: Field| Condition {
        field,
        operator: op.to_string(),
        value: Some(Literal::Str(Literal::of(value).string())),
    };
    let with = |field: Field, which: &[&str]| match special.filter(|s| which.contains(s)) {
        Some(s) if s.starts_with("number") => Condition {
            field,
            operator: s.to_string(),
            value: Some(Literal::of(value)),
        },
        Some(s) => Condition {
            field,
            operator: s.to_string(),
            value: None,
        },
        None => Condition {
            field,
            operator: op.to_string(),
            value: Some(Literal::of(value)),
        },
    };
    let all = [
        "exists",
        "not_exists",
        "is_true",
        "is_false",
        "number_equals",
        "number_not_equals",
    ];
    Ok(match start {
        "event" => plain(Field::Event),
        "type" => plain(Field::Type),
        "name" => match special.filter(|s| ["exists", "not_exists"].contains(s)) {
            Some(s) => with(Field::Name, &[s]),
            None => plain(Field::Name),
        },
        "userId" => {
            match special.filter(|s| ["exists", "not_exists", "is_true", "is_false"].contains(s)) {
                Some(s) => with(Field::UserId, &[s]),
                None => plain(Field::UserId),
            }
        }
        "properties" => with(nested(name, "properties", Field::Property)?, &all),
        "traits" => with(nested(name, "traits", Field::Trait)?, &all),
        "context" => with(nested(name, "context", Field::Context)?, &all),
        _ => unreachable!("known fields only"),
    })
}

/// `contains(field, "s")` and `match(field, "pre*")` / `match(field, "*suf")`.
fn parse_function(
    name: &str,
    nodes: &mut Vec<Node>,
    tokens: &mut Vec<Token>,
    negate: bool,
) -> Result<(), FqlError> {
    pop(tokens); // `(`
    let field =
        pop(tokens).ok_or_else(|| FqlError(format!("{name}() is missing a 1st argument")))?;
    pop(tokens); // `,`
    let value =
        pop(tokens).ok_or_else(|| FqlError(format!("{name}() is missing a 2nd argument")))?;
    pop(tokens); // `)`
    let text = Literal::of(&value).string();
    let (operator, argument) = if name == "contains" {
        ("contains", text)
    } else if value.value.ends_with("*\"") {
        ("starts_with", utf16_slice(&text, 0, 1))
    } else {
        ("ends_with", utf16_slice(&text, 1, 0))
    };
    let operator = if negate {
        format!("not_{operator}")
    } else {
        operator.to_string()
    };
    let f = field.value.as_str();
    let target = if ["event", "name", "userId"].contains(&f) {
        Some(match f {
            "event" => Field::Event,
            "name" => Field::Name,
            _ => Field::UserId,
        })
    } else if f.starts_with("properties") {
        Some(nested(f, "properties", Field::Property)?)
    } else if f.starts_with("traits") {
        Some(nested(f, "traits", Field::Trait)?)
    } else if f.starts_with("context") {
        Some(nested(f, "context", Field::Context)?)
    } else {
        None
    };
    if let Some(field) = target {
        nodes.push(Node::Condition(Condition {
            field,
            operator,
            value: Some(Literal::Str(argument)),
        }));
    }
    Ok(())
}

/// `text` without its first `head` and last `tail` UTF-16 units (JavaScript's `slice`).
fn utf16_slice(text: &str, head: usize, tail: usize) -> String {
    let units: Vec<u16> = text.encode_utf16().collect();
    let end = units.len().saturating_sub(tail).max(head.min(units.len()));
    String::from_utf16_lossy(&units[head.min(units.len())..end])
}

// ---------------------------------------------------------------------------------------
// The evaluator (`validate.js`).

impl Group {
    /// `every` for `and`, `some` for `or`: in order, stopping as JavaScript does.
    fn evaluate(&self, event: &Value) -> Result<bool, Throws> {
        for child in &self.children {
            let verdict = child.evaluate(event)?;
            if verdict == self.or {
                return Ok(verdict);
            }
        }
        Ok(!self.or)
    }
}

impl Node {
    fn evaluate(&self, event: &Value) -> Result<bool, Throws> {
        match self {
            Node::Group(g) => g.evaluate(event),
            Node::Condition(c) => c.evaluate(event),
            Node::Undefined => Err(Throws),
        }
    }
}

impl Condition {
    fn evaluate(&self, event: &Value) -> Result<bool, Throws> {
        let empty_path = match &self.field {
            Field::Property(p) | Field::Trait(p) | Field::Context(p) => p.is_empty(),
            _ => false,
        };
        if empty_path {
            return Err(Throws); // `null.reduce(...)` in the reference.
        }
        Ok(self.matches(event))
    }

    fn matches(&self, event: &Value) -> bool {
        let root = Js::Json(event);
        let get = |top: &str, path: &[String]| {
            // `get`: `prev && prev[key]`, so a falsy value on the way is the answer.
            path.iter().fold(root.member(top), |prev, key| {
                if prev.truthy() {
                    prev.member(key)
                } else {
                    prev
                }
            })
        };
        let actual = match &self.field {
            Field::Type => root.member("type"),
            Field::Event => root.member("event"),
            Field::Name => root.member("name"),
            Field::UserId => root.member("userId"),
            Field::Property(p) => get("properties", p),
            Field::Trait(p) => get("traits", p),
            Field::Context(p) => get("context", p),
        };
        let expected = self.value.as_ref();
        let number = |f: fn(f64, f64) -> bool| {
            actual
                .as_number()
                .zip(expected.map(Literal::number))
                .is_some_and(|(a, e)| f(a, e))
        };
        let text = || {
            expected
                .map(Literal::string)
                .unwrap_or_else(|| "undefined".into())
        };
        let string = |f: fn(&str, &str) -> bool| actual.as_str().is_some_and(|a| f(a, &text()));
        match self.operator.as_str() {
            "=" => actual.as_str() == Some(text().as_str()),
            "!=" => actual.as_str() != Some(text().as_str()),
            "number_equals" => number(|a, e| a == e),
            "number_not_equals" => number(|a, e| a != e),
            "<" => number(|a, e| a < e),
            "<=" => number(|a, e| a <= e),
            ">" => number(|a, e| a > e),
            ">=" => number(|a, e| a >= e),
            "contains" => string(|a, e| a.contains(e)),
            "not_contains" => string(|a, e| !a.contains(e)),
            "starts_with" => string(|a, e| a.starts_with(e)),
            "not_starts_with" => string(|a, e| !a.starts_with(e)),
            "ends_with" => string(|a, e| a.ends_with(e)),
            "not_ends_with" => string(|a, e| !a.ends_with(e)),
            "exists" => actual.exists(),
            "not_exists" => !actual.exists(),
            "is_true" => matches!(actual, Js::Json(Value::Bool(true))),
            "is_false" => matches!(actual, Js::Json(Value::Bool(false))),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(fql: &str, event: Value) -> bool {
        Fql::parse(fql)
            .unwrap_or_else(|e| panic!("{fql}: {e}"))
            .matches(&event)
    }

    #[test]
    fn the_documented_forms_select_as_segment_does() {
        let order = json!({"type": "track", "event": "Order Completed", "userId": "u1",
            "properties": {"total": 30, "coupon": "SPRING", "tags": ["a"]},
            "context": {"app": {"version": "2.1"}}});
        let cases = [
            (r#"type = "track""#, true),
            (r#"type = "track" and event = "Order Completed""#, true),
            (r#"type = "identify" or event = "Order Completed""#, true),
            (r#"properties.total > 20"#, true),
            (r#"properties.total >= 31"#, false),
            (r#"properties.total = 30"#, true),
            (r#"properties.missing = null"#, true),
            (r#"properties.coupon != null"#, true),
            (r#"contains(event, "Completed")"#, true),
            (r#"!contains(event, "Completed")"#, false),
            (r#"match(properties.coupon, "SPR*")"#, true),
            (r#"match(event, "*Completed")"#, true),
            (r#"context.app.version = "2.1""#, true),
            (r#"properties.tags.length = 1"#, true),
            (
                r#"(type = "identify" or type = "track") and userId = "u1""#,
                true,
            ),
            (r#"userId != null"#, true),
            // Quirks of the reference, kept: the last conditional rules its group…
            (
                r#"type = "page" and type = "track" or event = "Order Completed""#,
                true,
            ),
            // …a single-quoted string keeps its quotes…
            (r#"type = 'track'"#, false),
            // …and `!` before a group is no negation.
            (r#"!(type = "track")"#, true),
        ];
        for (fql, expected) in cases {
            assert_eq!(check(fql, order.clone()), expected, "{fql}");
        }
    }

    #[test]
    fn what_the_reference_refuses_is_refused() {
        for fql in [
            "",
            "type",
            r#"type = "track"#,
            r#"event<5"#,
            r#"foo = "x""#,
            r#"(type = "track""#,
            "type = 1..2",
        ] {
            assert!(Fql::parse(fql).is_err(), "{fql:?} should be refused");
        }
    }
}
