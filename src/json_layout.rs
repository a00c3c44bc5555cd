//! The layout of the JSON documents this tool writes for people and tools
//! alike (the manifest): the outer levels indented, as `to_writer_pretty`
//! would, and every value nested deeper on one line of its own.
//!
//! A manifest lists a file per record: indented in full, a record of a
//! small file took more bytes of spaces and newlines than of data (24 MB
//! against 15 MB at 50,000 files), and each of those bytes was written,
//! hashed, read and parsed again by every later command. One record per
//! line keeps the file readable, `grep`-able and diffable line by line.

use std::io::Write;

use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter};

/// Writes `value` as JSON to `out`: containers opened at a nesting depth
/// below `flat_from` are indented two spaces a level, and anything opened
/// at `flat_from` or deeper is written compactly, on the line of its key or
/// list item.
pub fn write_outlined<W: Write, T: serde::Serialize + ?Sized>(
    out: W,
    value: &T,
    flat_from: usize,
) -> serde_json::Result<()> {
    let formatter = Outlined {
        pretty: PrettyFormatter::new(),
        compact: CompactFormatter,
        depth: 0,
        flat_from,
    };
    let mut ser = serde_json::Serializer::with_formatter(out, formatter);
    value.serialize(&mut ser)
}

/// A formatter that is [`PrettyFormatter`] above a depth and
/// [`CompactFormatter`] from it on (see [`write_outlined`]).
struct Outlined {
    pretty: PrettyFormatter<'static>,
    compact: CompactFormatter,
    /// How many containers are open.
    depth: usize,
    /// The depth from which containers are written compactly.
    flat_from: usize,
}

impl Outlined {
    /// Whether a container opened (or closed) now, `depth` containers deep,
    /// is written flat.
    fn container_flat(&self) -> bool {
        self.depth >= self.flat_from
    }

    /// Whether the keys and items of the innermost open container are
    /// written flat (they are when it is).
    fn inside_flat(&self) -> bool {
        self.depth > self.flat_from
    }
}

/// Routes a formatter call to the flat or the indenting formatter, as
/// `$flat` says.
macro_rules! route {
    ($self:ident, $flat:ident, $method:ident, $writer:ident $(, $arg:expr)*) => {
        if $self.$flat() {
            $self.compact.$method($writer $(, $arg)*)
        } else {
            $self.pretty.$method($writer $(, $arg)*)
        }
    };
}

impl Formatter for Outlined {
    fn begin_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        let r = route!(self, container_flat, begin_array, writer);
        self.depth += 1;
        r
    }

    fn end_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.depth -= 1;
        route!(self, container_flat, end_array, writer)
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        route!(self, inside_flat, begin_array_value, writer, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        route!(self, inside_flat, end_array_value, writer)
    }

    fn begin_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        let r = route!(self, container_flat, begin_object, writer);
        self.depth += 1;
        r
    }

    fn end_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.depth -= 1;
        route!(self, container_flat, end_object, writer)
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        route!(self, inside_flat, begin_object_key, writer, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        route!(self, inside_flat, begin_object_value, writer)
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        route!(self, inside_flat, end_object_value, writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outlined(value: &serde_json::Value, flat_from: usize) -> String {
        let mut out = Vec::new();
        write_outlined(&mut out, value, flat_from).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn outer_levels_are_indented_and_records_take_one_line_each() {
        let doc = serde_json::json!({
            "id": "x",
            "stores": [{"name": "s", "files": [
                {"path": "s/a", "stat": {"ino": 1}, "tags": []},
                {"path": "s/b", "stat": {"ino": 2}, "tags": [1, 2]}
            ], "empty": []}],
            "none": {}
        });
        // (A `Value`'s keys come out sorted.)
        let text = outlined(&doc, 4);
        assert_eq!(
            text,
            r#"{
  "id": "x",
  "none": {},
  "stores": [
    {
      "empty": [],
      "files": [
        {"path":"s/a","stat":{"ino":1},"tags":[]},
        {"path":"s/b","stat":{"ino":2},"tags":[1,2]}
      ],
      "name": "s"
    }
  ]
}"#
        );
        let again: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(again, doc);
    }

    #[test]
    fn depth_zero_is_compact_and_a_deep_limit_is_pretty() {
        let doc = serde_json::json!({"a": [1, {"b": null}], "c": "d\n"});
        assert_eq!(outlined(&doc, 0), serde_json::to_string(&doc).unwrap());
        assert_eq!(
            outlined(&doc, 99),
            serde_json::to_string_pretty(&doc).unwrap()
        );
    }
}
