//! `hyperdb explore`: browse keys and values in the terminal.

use std::io;
use std::sync::Arc;

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use crossterm::ExecutableCommand;
use hyperdb::{DbReader, Node, ReadOnlyDb, WriterInfo};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::{DefaultTerminal, Frame};

/// What the explorer shows and where the cursor is.
pub struct Explorer {
    rows: Vec<(String, Vec<Arc<Node>>)>,
    writers: Vec<WriterInfo>,
    filter: String,
    selected: usize,
    detail: bool,
}

/// What a key press asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep going.
    Continue,
    /// Leave the explorer.
    Quit,
}

impl Explorer {
    /// An explorer over every live key of `db`: the writes that count, or
    /// with `raw` every write, as hyperdb 3.5.0 shows them.
    pub fn new(db: &DbReader, raw: bool) -> Result<Self, hyperdb::Error> {
        let view = db.snapshot()?;
        let view = if raw { view.raw() } else { view };
        Ok(Explorer {
            rows: view.list("")?,
            writers: db.writers(),
            filter: String::new(),
            selected: 0,
            detail: false,
        })
    }

    fn visible(&self) -> Vec<usize> {
        self.rows
            .iter()
            .enumerate()
            .filter(|(_, (key, _))| key.contains(&self.filter))
            .map(|(i, _)| i)
            .collect()
    }

    /// Handles one key press.
    pub fn key(&mut self, key: KeyEvent) -> Step {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Step::Quit;
        }
        let count = self.visible().len();
        if self.detail {
            if matches!(key.code, KeyCode::Enter | KeyCode::Esc | KeyCode::Backspace) {
                self.detail = false;
            }
            return Step::Continue;
        }
        match key.code {
            KeyCode::Up => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down => self.selected = (self.selected + 1).min(count.saturating_sub(1)),
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(10),
            KeyCode::PageDown => self.selected = (self.selected + 10).min(count.saturating_sub(1)),
            KeyCode::Home => self.selected = 0,
            KeyCode::End => self.selected = count.saturating_sub(1),
            KeyCode::Enter if count > 0 => self.detail = true,
            KeyCode::Esc => {
                self.filter.clear();
                self.selected = 0;
            }
            KeyCode::Backspace => {
                self.filter.pop();
                self.selected = 0;
            }
            KeyCode::Char(c) => {
                self.filter.push(c);
                self.selected = 0;
            }
            _ => {}
        }
        Step::Continue
    }

    /// Draws the current screen.
    pub fn draw(&self, frame: &mut Frame) {
        let [main, help] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
        let visible = self.visible();
        if self.detail {
            let (key, nodes) = &self.rows[visible[self.selected]];
            let mut lines = vec![Line::from(vec![
                Span::raw("key: "),
                Span::styled(key.clone(), Style::default().fg(Color::Yellow)),
            ])];
            if nodes.len() > 1 {
                lines.push(Line::styled(
                    format!("conflict: {} concurrent values", nodes.len()),
                    Style::default().fg(Color::Magenta),
                ));
            }
            for node in nodes {
                lines.push(Line::raw(""));
                lines.push(Line::from(vec![
                    Span::raw("value: "),
                    Span::styled(
                        node.value_str().unwrap_or_default(),
                        Style::default().fg(Color::Green),
                    ),
                ]));
                let writer = self.writers.get(node.feed);
                let mut who = writer.map(|w| hex::encode(w.key)).unwrap_or_default();
                if writer.is_some_and(|w| w.source) {
                    who.push_str(" (source)");
                }
                if writer.is_some_and(|w| w.local) {
                    who.push_str(" (local)");
                }
                lines.push(Line::raw(format!("  writer: feed {} {who}", node.feed)));
                lines.push(Line::raw(format!("  seq: {}", node.seq)));
                lines.push(Line::raw(format!("  clock: {:?}", node.clock)));
            }
            let block = Block::default().borders(Borders::ALL).title(" value(s) ");
            frame.render_widget(
                Paragraph::new(lines)
                    .block(block)
                    .wrap(Wrap { trim: false }),
                main,
            );
            frame.render_widget(Paragraph::new("Enter or Esc: back   Ctrl-C: quit"), help);
            return;
        }
        let items: Vec<ListItem> = visible
            .iter()
            .map(|&i| {
                let (key, nodes) = &self.rows[i];
                let mut spans = vec![Span::raw(key.clone())];
                if nodes.len() > 1 {
                    spans.push(Span::styled(
                        format!("  ({} values)", nodes.len()),
                        Style::default().fg(Color::Magenta),
                    ));
                }
                ListItem::new(Line::from(spans))
            })
            .collect();
        let title = if self.filter.is_empty() {
            format!(" {} keys ", self.rows.len())
        } else {
            format!(
                " {} of {} keys matching {:?} ",
                visible.len(),
                self.rows.len(),
                self.filter
            )
        };
        let list = List::new(items)
            .block(Block::default().borders(Borders::ALL).title(title))
            .highlight_style(Style::default().add_modifier(Modifier::REVERSED))
            .highlight_symbol("> ");
        let mut state =
            ListState::default().with_selected((!visible.is_empty()).then_some(self.selected));
        frame.render_stateful_widget(list, main, &mut state);
        frame.render_widget(
            Paragraph::new(
                "Up/Down: move   type: filter   Enter: show   Esc: clear   Ctrl-C: quit",
            ),
            help,
        );
    }
}

/// Runs the explorer on the terminal until the user quits.
pub fn run(db: ReadOnlyDb, raw: bool) -> io::Result<()> {
    let mut explorer = Explorer::new(&db, raw).map_err(io::Error::other)?;
    let mut terminal = setup()?;
    let result = (|| loop {
        terminal.draw(|frame| explorer.draw(frame))?;
        if let Event::Key(key) = event::read()? {
            if key.kind == KeyEventKind::Press && explorer.key(key) == Step::Quit {
                return Ok(());
            }
        }
    })();
    restore();
    result
}

fn setup() -> io::Result<DefaultTerminal> {
    enable_raw_mode()?;
    io::stdout().execute(EnterAlternateScreen)?;
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(io::stdout()))
}

fn restore() {
    let _ = disable_raw_mode();
    let _ = io::stdout().execute(LeaveAlternateScreen);
}
