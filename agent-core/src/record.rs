//! Where a request's parts are, recorded by the parser in its one pass:
//! the top-level `execute`, `arguments` and `id` members, and each member
//! of `arguments` (key and value) in a table whose size the caller picks
//! (the `ARGS` parameter of [`Agent`](crate::Agent)). Nothing downstream
//! looks for them again: the envelope is checked from the record, and
//! argument getters read the table.
//!
//! A request with more arguments than the table holds is still served:
//! the arguments past the table are found by walking the `arguments`
//! object.

use crate::json::{JsonStr, Value, ValueKind};
use crate::lexer::TokenKind;

/// A stretch of the message: offset and length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    at: u32,
    len: u32,
}

impl Span {
    fn new(at: usize, end: usize) -> Option<Self> {
        Some(Span {
            at: u32::try_from(at).ok()?,
            len: u32::try_from(end.checked_sub(at)?).ok()?,
        })
    }

    /// The bytes of `message` it covers.
    #[cfg_attr(not(feature = "speed"), inline(never))]
    #[cfg_attr(feature = "speed", inline(always))]
    pub(crate) fn of<'m>(&self, message: &'m [u8]) -> &'m [u8] {
        let at = self.at as usize;
        message
            .get(at..at.saturating_add(self.len as usize))
            .unwrap_or_default()
    }

    /// Where it starts.
    pub(crate) fn start(&self) -> usize {
        self.at as usize
    }
}

/// One recorded member: its key (a string token) and its value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Member {
    pub(crate) key: Span,
    pub(crate) value: Span,
    /// The value's kind.
    kind: ValueKind,
    /// The key is ASCII without escapes (its body is its text).
    plain: bool,
}

impl Member {
    const EMPTY: Member = Member {
        key: Span { at: 0, len: 0 },
        value: Span { at: 0, len: 0 },
        // The first variant, so that an unused slot is all zeros and a
        // new table is one memset; nothing reads an unused slot.
        kind: ValueKind::Object,
        plain: false,
    };

    /// The member as views of `message`, which the parser accepted.
    pub(crate) fn view<'m>(&self, message: &'m [u8]) -> Option<(JsonStr<'m>, Value<'m>)> {
        let key = JsonStr::from_token(self.key.of(message));
        Some((key, self.value(message)))
    }

    /// The value, a view of `message`.
    pub(crate) fn value<'m>(&self, message: &'m [u8]) -> Value<'m> {
        Value::from_parts_unchecked(self.kind, self.value.of(message))
    }

    /// Whether the key reads `name`.
    pub(crate) fn is(&self, message: &[u8], name: &str) -> bool {
        let key = self.key.of(message);
        if self.plain {
            key.get(1..key.len().saturating_sub(1)) == Some(name.as_bytes())
        } else {
            JsonStr::from_token(key).eq_str(name)
        }
    }
}

/// The kind of the value whose first token is of `kind` (and starts with
/// `first`).
fn value_kind(kind: TokenKind, first: Option<&u8>) -> ValueKind {
    match kind {
        TokenKind::LeftBrace => ValueKind::Object,
        TokenKind::LeftBracket => ValueKind::Array,
        TokenKind::String => ValueKind::String,
        TokenKind::Float => ValueKind::Float,
        TokenKind::Keyword => match first {
            Some(b't') => ValueKind::True,
            Some(b'f') => ValueKind::False,
            _ => ValueKind::Null,
        },
        _ => ValueKind::Integer,
    }
}

/// What is wrong with a top-level member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// Not `execute`, `arguments` or `id`.
    Unexpected,
    /// `execute` is not a string.
    ExecuteNotString,
    /// `arguments` is not an object.
    ArgumentsNotObject,
}

/// A faulty top-level member: what is wrong, its key, and its place in
/// `QDict` order (the hash bucket of its key, and the order it came in:
/// later members of a bucket come first).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fault {
    pub(crate) kind: FaultKind,
    pub(crate) key: Span,
    bucket: u32,
}

/// Which top-level member is being parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Top {
    Execute,
    Arguments,
    Id,
    Other,
}

/// The record of one message (see the [module documentation](self)).
#[derive(Clone, Debug)]
pub(crate) struct Recorder<const ARGS: usize> {
    /// The message is an object (its first token is `{`).
    object: bool,
    execute: Option<Member>,
    arguments: Option<Member>,
    id: Option<Member>,
    /// The first faulty top-level member in `QDict` order (a member that
    /// is not one of the three, or one of them with a value of the wrong
    /// type): which fault, its key, and its place in that order.
    fault: Option<Fault>,
    /// The top-level member being parsed: which, its key, where its value
    /// starts.
    top: Option<(Top, Span)>,
    top_value: usize,
    top_kind: ValueKind,
    /// The object open at depth 2 is the value of `arguments`.
    in_arguments: bool,
    /// The key of the `arguments` member being parsed (and whether it is
    /// plain), where its value starts, and the value's kind.
    argument: Option<Span>,
    argument_plain: bool,
    argument_value: usize,
    argument_kind: ValueKind,
    members: [Member; ARGS],
    count: usize,
    /// Some arguments did not fit `members`.
    overflow: bool,
}

impl<const ARGS: usize> Recorder<ARGS> {
    /// All zeros, which the compiler writes with a memset.
    const NO_MEMBERS: [Member; ARGS] = [Member::EMPTY; ARGS];

    pub(crate) const fn new() -> Self {
        Recorder {
            object: false,
            execute: None,
            arguments: None,
            id: None,
            fault: None,
            top: None,
            top_value: 0,
            top_kind: ValueKind::Null,
            in_arguments: false,
            argument: None,
            argument_plain: false,
            argument_value: 0,
            argument_kind: ValueKind::Null,
            members: Self::NO_MEMBERS,
            count: 0,
            overflow: false,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.object = false;
        self.execute = None;
        self.arguments = None;
        self.id = None;
        self.fault = None;
        self.top = None;
        self.in_arguments = false;
        self.argument = None;
        self.count = 0;
        self.overflow = false;
    }

    /// A key of the object at `depth` (1 is the top level), the string
    /// token `text` at `at`.
    /// `plain`: the key is ASCII without escapes.
    pub(crate) fn key(&mut self, depth: usize, text: &[u8], at: usize, plain: bool) {
        let span = Span::new(at, at.saturating_add(text.len()));
        if depth == 1 {
            let key = JsonStr::from_token(text);
            let is = |name: &str| match plain {
                true => text.get(1..text.len().saturating_sub(1)) == Some(name.as_bytes()),
                false => key.eq_str(name),
            };
            let which = if is("execute") {
                Top::Execute
            } else if is("arguments") {
                Top::Arguments
            } else if is("id") {
                Top::Id
            } else {
                Top::Other
            };
            self.top = span.map(|s| (which, s));
            if which == Top::Other {
                self.fault_at(FaultKind::Unexpected, &key);
            }
        } else if depth == 2 && self.in_arguments {
            self.argument = span;
            self.argument_plain = plain;
        }
    }

    /// A value begins with a token of `kind` at `at`, at `depth` (0 for
    /// the message itself, else the depth of the object it is a member of).
    /// `message` holds the message up to the token.
    pub(crate) fn value_begins(
        &mut self,
        depth: usize,
        kind: TokenKind,
        at: usize,
        message: &[u8],
    ) {
        let text = message;
        match depth {
            0 => self.object = kind == TokenKind::LeftBrace,
            1 => {
                self.top_value = at;
                self.top_kind = value_kind(kind, text.get(at));
                match self.top {
                    Some((Top::Execute, key)) if kind != TokenKind::String => {
                        self.fault_at(FaultKind::ExecuteNotString, &Self::key_str(key, text));
                    }
                    Some((Top::Arguments, key)) => {
                        self.in_arguments = kind == TokenKind::LeftBrace;
                        if !self.in_arguments {
                            self.fault_at(FaultKind::ArgumentsNotObject, &Self::key_str(key, text));
                        }
                    }
                    _ => {}
                }
            }
            2 if self.in_arguments => {
                self.argument_value = at;
                self.argument_kind = value_kind(kind, text.get(at));
            }
            _ => {}
        }
    }

    /// The value of a member of the object at `depth` (or, at 0, the
    /// message) ended at `end`.
    pub(crate) fn value_ends(&mut self, depth: usize, end: usize) {
        match depth {
            1 => {
                let Some((which, key)) = self.top.take() else {
                    return;
                };
                let Some(value) = Span::new(self.top_value, end) else {
                    return;
                };
                let member = Some(Member {
                    key,
                    value,
                    kind: self.top_kind,
                    plain: false,
                });
                match which {
                    Top::Execute => self.execute = member,
                    Top::Arguments => {
                        self.arguments = member;
                        self.in_arguments = false;
                    }
                    Top::Id => self.id = member,
                    Top::Other => {}
                }
            }
            2 if self.in_arguments => {
                let (Some(key), Some(value)) =
                    (self.argument.take(), Span::new(self.argument_value, end))
                else {
                    self.overflow = true;
                    return;
                };
                match self.members.get_mut(self.count) {
                    Some(slot) => {
                        *slot = Member {
                            key,
                            value,
                            kind: self.argument_kind,
                            plain: self.argument_plain,
                        };
                        self.count = self.count.saturating_add(1);
                    }
                    None => self.overflow = true,
                }
            }
            _ => {}
        }
    }

    /// If the next value is that of a member of `arguments` (at `depth`):
    /// where its key is (offset, length).
    pub(crate) fn pending_argument_key(&self, depth: usize) -> Option<(usize, usize)> {
        if depth != 2 || !self.in_arguments {
            return None;
        }
        self.argument.map(|span| (span.start(), span.len as usize))
    }

    /// Whether the message is an object.
    pub(crate) fn is_object(&self) -> bool {
        self.object
    }

    /// The first faulty top-level member in `QDict` order, if any.
    pub(crate) fn fault(&self) -> Option<Fault> {
        self.fault
    }

    /// The key at `span` of `message`.
    fn key_str(span: Span, message: &[u8]) -> JsonStr<'_> {
        JsonStr::from_token(span.of(message))
    }

    /// The member being parsed (whose key is `key`) is faulty: keep it if
    /// it comes first in `QDict` order.
    fn fault_at(&mut self, kind: FaultKind, key: &JsonStr<'_>) {
        let Some((_, span)) = self.top else {
            return;
        };
        let bucket = crate::qdict::bucket_of(key);
        // By bucket; within one, the later member first (members come in
        // document order, so a later one of the same bucket wins).
        if self.fault.is_none_or(|f| bucket <= f.bucket) {
            self.fault = Some(Fault {
                kind,
                key: span,
                bucket,
            });
        }
    }

    /// The `execute`, `arguments` and `id` members, if present.
    pub(crate) fn envelope(&self) -> (Option<Member>, Option<Member>, Option<Member>) {
        (self.execute, self.arguments, self.id)
    }

    /// The members of `arguments` in the table, in document order, and
    /// whether that is all of them.
    pub(crate) fn arguments(&self) -> (&[Member], bool) {
        (
            self.members.get(..self.count).unwrap_or_default(),
            !self.overflow,
        )
    }
}
