//! The `fields` query parameter (RFC 8040 §4.8.3): `a;b/c(d;e)` selects `a`, and `d` and `e`
//! below `b/c`. Identifiers take a module prefix when they change module (required directly
//! below the datastore, where a bare name is accepted only if it is unique).

use crate::error::DataError;
use crate::schema::{NodeKind, Schema, SchemaId};
use crate::tree::render::FieldSelection;

/// Parses a `fields` expression relative to schema node `context` (the request target).
pub(crate) fn parse_fields(
    schema: &Schema,
    context: SchemaId,
    expr: &str,
) -> Result<FieldSelection, DataError> {
    let mut parser = Parser { schema, text: expr, pos: 0 };
    let selection = parser.expr(context)?;
    if parser.pos != expr.len() {
        return Err(parser.error("unexpected character"));
    }
    Ok(selection)
}

struct Parser<'a> {
    schema: &'a Schema,
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> DataError {
        DataError::protocol_value(format!(
            "fields: {what} at position {} of \"{}\"",
            self.pos + 1,
            self.text
        ))
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn expr(&mut self, context: SchemaId) -> Result<FieldSelection, DataError> {
        let mut selection = FieldSelection::default();
        loop {
            let mut path = Vec::new();
            let mut node = context;
            loop {
                let ident = self.identifier()?;
                node = self.resolve(node, &ident)?;
                path.push(node);
                if self.peek() == Some('/') {
                    self.pos += 1;
                } else {
                    break;
                }
            }
            let tail = if self.peek() == Some('(') {
                self.pos += 1;
                let sub = self.expr(node)?;
                if self.peek() != Some(')') {
                    return Err(self.error("missing ')'"));
                }
                self.pos += 1;
                Some(sub)
            } else {
                None
            };
            selection.add_path(&path, tail);
            match self.peek() {
                Some(';') => self.pos += 1,
                _ => return Ok(selection),
            }
        }
    }

    fn identifier(&mut self) -> Result<String, DataError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':') {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
        if self.pos == start {
            return Err(self.error("expected a node name"));
        }
        Ok(self.text[start..self.pos].to_owned())
    }

    fn resolve(&self, parent: SchemaId, ident: &str) -> Result<SchemaId, DataError> {
        let def = self.schema.node(parent);
        if !def.is_inner() || def.kind == NodeKind::Rpc {
            return Err(self.error(&format!("{} has no children", def.name)));
        }
        if let Some(id) = self.schema.child(parent, ident) {
            return Ok(id);
        }
        if parent == SchemaId::ROOT
            && let [only] = self.schema.top_level_by_bare_name(ident)
        {
            return Ok(*only);
        }
        Err(self.error(&format!(
            "\"{ident}\" is not a child of {}",
            if parent == SchemaId::ROOT { "the datastore".to_owned() } else { def.name.clone() }
        )))
    }
}
