//! Aligned text tables, like `ip -br` and `lsns` print.

use std::io::Write;

/// ANSI styles applied to whole cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    Bold,
    Red,
    Yellow,
    Dim,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Self::Plain => "",
            Self::Bold => "\x1b[1m",
            Self::Red => "\x1b[31m",
            Self::Yellow => "\x1b[33m",
            Self::Dim => "\x1b[2m",
        }
    }
}

/// A table whose columns are padded to their widest cell.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<(String, Style)>>,
}

impl Table {
    pub fn new(header: Vec<&'static str>) -> Self {
        Self {
            header,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<(String, Style)>) {
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes the table; `color` enables the cells' styles. The last column
    /// is not padded, so lines carry no trailing spaces.
    pub fn write(&self, out: &mut dyn Write, color: bool) -> std::io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|cell| cell.chars().count()).collect();
        for row in &self.rows {
            for (index, (cell, _)) in row.iter().enumerate() {
                let width = cell.chars().count();
                if index < widths.len() {
                    widths[index] = widths[index].max(width);
                } else {
                    widths.push(width);
                }
            }
        }
        let header: Vec<(String, Style)> = self.header.iter().map(|cell| (cell.to_string(), Style::Bold)).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (index, (cell, style)) in row.iter().enumerate() {
                let last = index + 1 == row.len();
                let styled = color && *style != Style::Plain;
                if styled {
                    line.push_str(style.code());
                }
                line.push_str(cell);
                if styled {
                    line.push_str("\x1b[0m");
                }
                if !last {
                    let padding = widths[index] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', padding));
                }
            }
            writeln!(out, "{line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut table = Table::new(vec!["A", "BB"]);
        table.push(vec![("long".into(), Style::Plain), ("x".into(), Style::Red)]);
        let mut out = Vec::new();
        table.write(&mut out, false).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A     BB\nlong  x\n");
    }
}
