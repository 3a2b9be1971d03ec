//! Plain-text tables for the CLI's list commands.

/// A header line, then one line per row, each column padded to its widest cell and separated
/// by two spaces; trailing blanks are trimmed so the output diffs cleanly.
pub fn render_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|title| title.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = header.map(str::to_owned);
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> =
            row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render_table;

    #[test]
    fn columns_align_on_the_widest_cell_and_lines_end_without_blanks() {
        let rows = [["a".to_owned(), "longer".to_owned()], ["wide cell".to_owned(), String::new()]];
        let table = render_table(["ID", "NAME"], &rows);
        assert_eq!(table, "ID         NAME\na          longer\nwide cell\n");
    }

    #[test]
    fn an_empty_list_is_just_the_header() {
        assert_eq!(render_table(["ID", "NAME"], &[]), "ID  NAME\n");
    }
}
