//! Human tables: left-aligned columns separated by two spaces, a header in capitals, and
//! cells cut to a width so one long value cannot push the others off the screen.

use std::fmt;

/// A table under construction.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Cells longer than this are cut with `…`; `None` for the last column of
    /// [`Table::new`], which may be as long as it needs.
    max_widths: Vec<Option<usize>>,
}

/// Widest a cell may be, unless [`Table::unlimited`] says otherwise.
const DEFAULT_MAX_WIDTH: usize = 60;

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_uppercase()).collect(),
            rows: Vec::new(),
            max_widths: vec![Some(DEFAULT_MAX_WIDTH); headers.len()],
        }
    }

    /// Lets column `index` be as wide as its widest cell (e.g. a task token to copy).
    pub fn unlimited(mut self, index: usize) -> Table {
        if let Some(w) = self.max_widths.get_mut(index) {
            *w = None;
        }
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let columns = self.headers.len();
        let cell = |row: &[String], i: usize| -> String {
            let text = row.get(i).map(String::as_str).unwrap_or("");
            // One line per row: newlines inside a value would break the columns.
            let text = text.replace(['\n', '\r', '\t'], " ");
            match self.max_widths.get(i).copied().flatten() {
                Some(max) => cut(&text, max),
                None => text,
            }
        };
        let cells: Vec<Vec<String>> = std::iter::once(&self.headers)
            .chain(&self.rows)
            .map(|row| (0..columns).map(|i| cell(row, i)).collect())
            .collect();
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                cells
                    .iter()
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &cells {
            let mut line = String::new();
            for (i, text) in row.iter().enumerate() {
                if i + 1 == columns {
                    line.push_str(text);
                } else {
                    let pad = widths[i] - text.chars().count();
                    line.push_str(text);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// `text` cut to `max` characters, ending in `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_long_cells_are_cut() {
        let mut table = Table::new(&["name", "depth"]);
        table.row(vec!["fleet-dev-simulation-dlq".into(), "3".into()]);
        table.row(vec!["x".repeat(70), "12".into()]);
        let text = table.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("NAME{}DEPTH", " ".repeat(58)));
        assert!(lines[1].starts_with("fleet-dev-simulation-dlq  "), "{text}");
        assert!(
            lines[2].starts_with(&format!("{}…  12", "x".repeat(59))),
            "{text}"
        );
    }

    #[test]
    fn an_unlimited_column_keeps_its_whole_value() {
        let mut table = Table::new(&["token", "state"]).unlimited(0);
        table.row(vec!["t".repeat(100), "Run".into()]);
        assert!(table.to_string().contains(&"t".repeat(100)));
    }
}
