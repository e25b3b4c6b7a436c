//! Printing a database's feeds the way the seed's example output does:
//! every writer's feed, every entry with its key, value, trie, clock,
//! inflate pointer and listed feeds, then the table of keys and values.

use std::io::{self, Write};

use hyperdb::DbReader;

/// ANSI styles, or nothing when the output is not a terminal.
#[derive(Clone, Copy)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Colours when `color`.
    pub fn new(color: bool) -> Self {
        Style { color }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn title(&self, t: &str) -> String {
        self.paint("1;36", t)
    }
    fn key(&self, t: &str) -> String {
        self.paint("33", t)
    }
    fn value(&self, t: &str) -> String {
        self.paint("32", t)
    }
    fn mark(&self, t: &str) -> String {
        self.paint("35", t)
    }
    fn dim(&self, t: &str) -> String {
        self.paint("2", t)
    }
}

/// Prints every feed of `db` under the heading `name`.
pub fn print_feeds(
    out: &mut impl Write,
    db: &DbReader,
    name: &str,
    style: Style,
) -> Result<(), hyperdb::Error> {
    db.heads()?;
    let writers = db.writers();
    writeln!(out, "{}", style.title(&format!("===== {name} ====="))).map_err(io)?;
    writeln!(out, "feeds: {}", writers.len()).map_err(io)?;
    for (index, writer) in writers.iter().enumerate() {
        let mut marks = String::new();
        if writer.source {
            marks.push_str(" (source)");
        }
        if writer.local {
            marks.push_str(" (local)");
        }
        if !writer.authorized {
            marks.push_str(" (not authorized)");
        }
        writeln!(out).map_err(io)?;
        writeln!(
            out,
            "{}",
            style.title(&format!(
                "feed {index} {}{}",
                hex::encode(writer.key),
                style.mark(&marks)
            ))
        )
        .map_err(io)?;
        for seq in 1..writer.length {
            let Some(raw) = db.raw_entry(index, seq)? else {
                writeln!(out, "\n{seq} {}", style.dim("(not downloaded)")).map_err(io)?;
                continue;
            };
            let node = db.node(index, seq)?;
            let inflated = raw.inflate == Some(seq);
            writeln!(out).map_err(io)?;
            if inflated {
                writeln!(out, "{seq} {}", style.mark("'inflate entry'")).map_err(io)?;
            } else {
                writeln!(out, "{seq}").map_err(io)?;
            }
            writeln!(out, "  key: {}", style.key(&raw.key)).map_err(io)?;
            let value = match &raw.value {
                Some(v) => style.value(&String::from_utf8_lossy(v)),
                None => "null".to_string(),
            };
            writeln!(out, "  value: {value}").map_err(io)?;
            writeln!(out, "  deleted: {}", raw.deleted.unwrap_or(false)).map_err(io)?;
            let trie = match &node {
                Some(node) => format_trie(node, &writers),
                None => "(damaged)".into(),
            };
            writeln!(out, "  trie: {trie}").map_err(io)?;
            writeln!(out, "  clock: {}", format_list(&raw.clock)).map_err(io)?;
            writeln!(out, "  inflate: {}", raw.inflate.unwrap_or(0)).map_err(io)?;
            writeln!(out, "  feeds:").map_err(io)?;
            for (i, feed) in raw.feeds.iter().enumerate() {
                writeln!(out, "    - {i}: {}", hex::encode(&feed.key)).map_err(io)?;
            }
        }
    }
    writeln!(out).map_err(io)?;
    Ok(())
}

/// Prints the keys and their current values; conflicts are marked.
pub fn print_table(
    out: &mut impl Write,
    db: &DbReader,
    style: Style,
) -> Result<(), hyperdb::Error> {
    let rows = db.list("")?;
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(3).max(3);
    writeln!(
        out,
        "{}",
        style.title(&format!("{:width$}  value(s)", "key"))
    )
    .map_err(io)?;
    for (key, nodes) in rows {
        let values: Vec<String> = nodes
            .iter()
            .map(|n| n.value_str().unwrap_or_default())
            .collect();
        let conflict = if values.len() > 1 {
            style.mark("  (conflict)")
        } else {
            String::new()
        };
        writeln!(
            out,
            "{}  {}{conflict}",
            style.key(&format!("{key:width$}")),
            style.value(&values.join(", "))
        )
        .map_err(io)?;
    }
    Ok(())
}

fn format_list(values: &[u64]) -> String {
    let items: Vec<String> = values.iter().map(u64::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// The trie as `[position: [digit: [feed@seq, ...]]]`, feeds by key.
fn format_trie(node: &hyperdb::Node, writers: &[hyperdb::WriterInfo]) -> String {
    let mut parts = Vec::new();
    for position in node.trie.positions() {
        let digits: Vec<String> = node
            .trie
            .bucket(position)
            .map(|(digit, ptrs)| {
                let ptrs: Vec<String> = ptrs
                    .iter()
                    .map(|p| {
                        let key = writers
                            .get(p.feed)
                            .map(|w| hex::encode(w.key))
                            .unwrap_or_default();
                        format!("{{ feed: {key}, seq: {} }}", p.seq)
                    })
                    .collect();
                format!("{digit}: [{}]", ptrs.join(", "))
            })
            .collect();
        parts.push(format!("{position}: [{}]", digits.join(", ")));
    }
    format!("[{}]", parts.join(", "))
}

fn io(e: io::Error) -> hyperdb::Error {
    hyperdb::Error::Io {
        path: "stdout".into(),
        source: e,
    }
}
