//! The UI's state and its one `update` function: every key, snapshot and
//! tick becomes an [`Action`], and [`App::update`] is the only place state
//! changes. Requests for the worker (timeline of another connection, pause)
//! are queued as [`Command`]s for the event loop to forward.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::live::{ProcessNote, ProcessPane};
use super::snapshot::{ConnView, GapView, PlayState, Snapshot};
use crate::engine::ConnId;
use crate::model::{Span, Timestamp};

/// Something that happened: what the event loop feeds the app.
#[derive(Debug)]
pub enum Event {
    /// A key event from the terminal.
    Key(KeyEvent),
    /// A new view of the engine from the worker.
    Snapshot(Box<Snapshot>),
    /// Time passed (redraw).
    Tick,
    /// The terminal was resized.
    Resize,
    /// A message from the worker for the footer (e.g. where it wrote the report).
    Status(String),
    /// Live: process facts for the process pane.
    Process(Box<ProcessNote>),
}

/// A request from the UI to the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Carry the timeline of this connection in the next snapshots.
    Focus(ConnId),
    /// Pause (true) or resume (false) playback.
    Pause(bool),
    /// Write the JSON report of the engine as it stands to this file.
    Export(PathBuf),
    /// Live: write this connection's recent packets to this pcap file.
    WritePackets(ConnId, PathBuf),
    /// Stop.
    Quit,
}

/// Everything the user (or the worker) can make the app do.
#[derive(Debug)]
pub enum Action {
    /// Move the selection up.
    Up,
    /// Move the selection down.
    Down,
    /// Select the first row.
    Top,
    /// Select the last row.
    Bottom,
    /// Move the selection a page up.
    PageUp,
    /// Move the selection a page down.
    PageDown,
    /// Open the selected connection's gaps / centre the timeline on the gap.
    Enter,
    /// Next pane.
    NextFocus,
    /// Previous pane.
    PrevFocus,
    /// Start typing a text filter.
    StartFilter,
    /// A character typed into the filter.
    FilterInput(char),
    /// Delete the filter's last character.
    FilterBackspace,
    /// Stop typing, keep the filter.
    FilterApply,
    /// Stop typing, clear the filter.
    FilterCancel,
    /// Show only flagged connections (or all again).
    ToggleFlagged,
    /// Next sort order.
    CycleSort,
    /// Zoom the timeline in.
    ZoomIn,
    /// Zoom the timeline out.
    ZoomOut,
    /// Pan the timeline to earlier times.
    PanLeft,
    /// Pan the timeline to later times.
    PanRight,
    /// Pause or resume playback.
    TogglePause,
    /// Write the JSON report to a file.
    Export,
    /// Live: write the selected connection's recent packets to a pcap file.
    WritePackets,
    /// Show or hide the help overlay.
    ToggleHelp,
    /// Step back: close the help, else clear the filter, else leave the
    /// gap pane. Never quits.
    Back,
    /// Quit.
    Quit,
    /// A new snapshot arrived.
    Snapshot(Box<Snapshot>),
    /// A message for the footer.
    Status(String),
    /// Live: process facts for the process pane.
    Process(Box<ProcessNote>),
    /// Time passed.
    Tick,
    /// The screen was last drawn at this size (columns, rows): what a page
    /// of the table, the gap list or the help is.
    Screen(u16, u16),
}

/// Rows moved by PgUp / PgDn before the first draw (no screen size yet).
const PAGE: usize = 10;

/// Process facts kept beyond the table's connections before a prune.
const PRUNE_SLACK: usize = 256;

/// Lines of the help overlay's text (`ui::draw_help` draws exactly these).
pub const HELP_ROWS: u16 = 20;

/// Heights of the screen's panes (the layout `ui::draw` uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panes {
    /// The connections table, borders included.
    pub table: u16,
    /// The timeline.
    pub timeline: u16,
    /// The silence chart (0: not shown).
    pub chart: u16,
}

impl Panes {
    /// The panes of a screen `height` rows tall with `focus` on a pane: on
    /// short screens the focused pane gets the rows.
    #[must_use]
    pub fn of(height: u16, focus: Focus) -> Panes {
        let tall = height >= 32;
        Panes {
            table: match (tall, focus) {
                (true, _) => 8,
                (false, Focus::Connections) => 6,
                (false, Focus::Gaps) => 4,
            },
            timeline: if tall { 6 } else { 5 },
            // 9: a plot of 5 rows, so labels 0, l, 2l, 3l, 4l each sit on their own row.
            chart: if tall { 9 } else { 0 },
        }
    }

    /// Table rows shown at once (borders and header row off).
    #[must_use]
    pub fn table_rows(self) -> u16 {
        self.table.saturating_sub(3).max(1)
    }

    /// Gap rows shown at once on a screen `height` rows tall: the bottom
    /// pane (at least 4 rows) below the header (2), the panes and above
    /// the footer (1), borders off.
    #[must_use]
    pub fn gap_rows(self, height: u16) -> u16 {
        let bottom = height
            .saturating_sub(3 + self.table + self.timeline + self.chart)
            .max(4);
        bottom.saturating_sub(2).max(1)
    }
}

/// Where the help overlay goes on a `width` x `height` screen (x, y,
/// width, height): centred, at most 78 columns, its text's rows plus the
/// border, and a row free above and below it when the screen has them.
#[must_use]
pub fn help_box(width: u16, height: u16) -> (u16, u16, u16, u16) {
    let w = width.min(78);
    let h = (HELP_ROWS + 2)
        .min(height.saturating_sub(2))
        .max(height.min(3));
    ((width - w) / 2, (height - h) / 2, w, h)
}

/// Which pane has the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// The connections table.
    Connections,
    /// The gap list of the selected connection.
    Gaps,
}

/// Order of the connections table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Order of first packet (the report's id).
    Id,
    /// Worst cause, then ratio.
    Severity,
    /// Longest silence / limit.
    Ratio,
    /// Number of gaps.
    Gaps,
}

impl SortKey {
    /// Short name for the table title.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Id => "id",
            SortKey::Severity => "severity",
            SortKey::Ratio => "ratio",
            SortKey::Gaps => "gaps",
        }
    }

    fn next(self) -> SortKey {
        match self {
            SortKey::Id => SortKey::Severity,
            SortKey::Severity => SortKey::Ratio,
            SortKey::Ratio => SortKey::Gaps,
            SortKey::Gaps => SortKey::Id,
        }
    }
}

/// The visible time window of the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// Left edge.
    pub start: Timestamp,
    /// Width (positive).
    pub width: Span,
}

impl View {
    /// Right edge.
    #[must_use]
    pub fn end(&self) -> Timestamp {
        self.start.plus(self.width)
    }
}

/// The TUI's state.
#[derive(Debug)]
pub struct App {
    /// The latest snapshot.
    pub snap: Option<Snapshot>,
    /// Engine slot of the selected connection.
    pub selected_slot: Option<ConnId>,
    /// Index of the selected gap in the selected connection.
    pub gap_sel: usize,
    /// Pane with the keyboard.
    pub focus: Focus,
    /// Table order.
    pub sort: SortKey,
    /// Only connections with gaps.
    pub flagged_only: bool,
    /// Text filter.
    pub filter: String,
    /// The filter is being typed.
    pub filter_editing: bool,
    /// Timeline window set by zoom/pan; `None` = fit the selected gap.
    pub view: Option<View>,
    /// Help overlay shown.
    pub help: bool,
    /// First help line shown (the help scrolls when the screen is short).
    pub help_scroll: u16,
    /// Size of the screen at the last draw (columns, rows); 0 before.
    pub screen: (u16, u16),
    /// Playback paused by the user.
    pub paused: bool,
    /// One-line message for the footer.
    pub status: Option<String>,
    /// The user asked to quit.
    pub quit: bool,
    /// Draw without colours (`NO_COLOR` set): styles keep bold, reverse
    /// and underline only.
    pub no_color: bool,
    /// The zone clock times are shown in (`--local-time`: the local one).
    pub zone: crate::report::Zone,
    /// Live capture: Space freezes the display (the capture goes on).
    pub live: bool,
    /// Live: process facts by connection (client, broker).
    pub processes: HashMap<(String, String), ProcessPane>,
    /// Live: connections of `processes` missing from the table at the last
    /// prune (forgotten if still missing at the next).
    stale_processes: HashSet<(String, String)>,
    /// Where `e` writes the report.
    pub export_dir: PathBuf,
    /// Requests for the worker, drained by the event loop.
    pub outbox: Vec<Command>,
    /// Indices into `snap.conns` of the rows shown, filtered and sorted;
    /// recomputed when the snapshot, filter or order changes, not per frame.
    rows: Vec<usize>,
}

impl App {
    /// A new app writing exported reports into `export_dir`.
    #[must_use]
    pub fn new(export_dir: PathBuf) -> Self {
        App {
            snap: None,
            selected_slot: None,
            gap_sel: 0,
            focus: Focus::Connections,
            sort: SortKey::Severity,
            flagged_only: false,
            filter: String::new(),
            filter_editing: false,
            view: None,
            help: false,
            help_scroll: 0,
            screen: (0, 0),
            paused: false,
            status: None,
            quit: false,
            no_color: false,
            zone: crate::report::Zone::Utc,
            live: false,
            processes: HashMap::new(),
            stale_processes: HashSet::new(),
            export_dir,
            outbox: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// Maps an event to an action, given the current mode. Only key presses count.
    #[must_use]
    pub fn action_for(&self, ev: Event) -> Option<Action> {
        match ev {
            Event::Snapshot(s) => Some(Action::Snapshot(s)),
            Event::Status(m) => Some(Action::Status(m)),
            Event::Process(n) => Some(Action::Process(n)),
            Event::Tick | Event::Resize => Some(Action::Tick),
            Event::Key(k) => {
                if k.kind != KeyEventKind::Press {
                    return None;
                }
                if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
                    return Some(Action::Quit);
                }
                if self.filter_editing {
                    return match k.code {
                        KeyCode::Enter => Some(Action::FilterApply),
                        KeyCode::Esc => Some(Action::FilterCancel),
                        KeyCode::Backspace => Some(Action::FilterBackspace),
                        KeyCode::Char(c) => Some(Action::FilterInput(c)),
                        _ => None,
                    };
                }
                Some(match k.code {
                    KeyCode::Up | KeyCode::Char('k') => Action::Up,
                    KeyCode::Down | KeyCode::Char('j') => Action::Down,
                    KeyCode::Home | KeyCode::Char('g') => Action::Top,
                    KeyCode::End | KeyCode::Char('G') => Action::Bottom,
                    KeyCode::PageUp => Action::PageUp,
                    KeyCode::PageDown => Action::PageDown,
                    KeyCode::Enter => Action::Enter,
                    KeyCode::Tab => Action::NextFocus,
                    KeyCode::BackTab => Action::PrevFocus,
                    KeyCode::Char('/') => Action::StartFilter,
                    KeyCode::Char('f') => Action::ToggleFlagged,
                    KeyCode::Char('s') => Action::CycleSort,
                    KeyCode::Char('+' | '=') => Action::ZoomIn,
                    KeyCode::Char('-' | '_') => Action::ZoomOut,
                    KeyCode::Left | KeyCode::Char('h') => Action::PanLeft,
                    KeyCode::Right | KeyCode::Char('l') => Action::PanRight,
                    KeyCode::Char(' ') => Action::TogglePause,
                    KeyCode::Char('e') => Action::Export,
                    KeyCode::Char('w') => Action::WritePackets,
                    KeyCode::Char('?') => Action::ToggleHelp,
                    KeyCode::Esc => Action::Back,
                    KeyCode::Char('q') => Action::Quit,
                    _ => return None,
                })
            }
        }
    }

    /// Indices into `snap.conns` of the rows shown, filtered and sorted.
    #[must_use]
    pub fn visible(&self) -> &[usize] {
        &self.rows
    }

    /// Recomputes [`App::visible`] after the snapshot, filter or order changed.
    fn refresh_rows(&mut self) {
        self.rows.clear();
        let Some(snap) = &self.snap else {
            return;
        };
        let needle = self.filter.to_lowercase();
        self.rows.extend(
            snap.conns
                .iter()
                .enumerate()
                .filter(|(_, c)| !self.flagged_only || c.flagged())
                .filter(|(_, c)| needle.is_empty() || matches_filter(c, &needle))
                .map(|(i, _)| i),
        );
        let conns = &snap.conns;
        let ratio = |i: usize| conns[i].ratio.unwrap_or(0.0);
        // Stable sorts: ties keep report order, so rows do not jump around.
        match self.sort {
            SortKey::Id => {}
            SortKey::Severity => self.rows.sort_by(|a, b| {
                let sa = conns[*a].worst.map_or(0, |c| c.severity());
                let sb = conns[*b].worst.map_or(0, |c| c.severity());
                sb.cmp(&sa).then(ratio(*b).total_cmp(&ratio(*a)))
            }),
            SortKey::Ratio => self.rows.sort_by(|a, b| ratio(*b).total_cmp(&ratio(*a))),
            SortKey::Gaps => self
                .rows
                .sort_by(|a, b| conns[*b].gaps.len().cmp(&conns[*a].gaps.len())),
        }
    }

    /// The selected connection, when visible.
    #[must_use]
    pub fn selected(&self) -> Option<&ConnView> {
        let snap = self.snap.as_ref()?;
        let slot = self.selected_slot?;
        snap.conns.iter().find(|c| c.slot == slot)
    }

    /// Position of the selection among the visible rows.
    #[must_use]
    pub fn selected_row(&self) -> Option<usize> {
        let slot = self.selected_slot?;
        let snap = self.snap.as_ref()?;
        self.visible()
            .iter()
            .position(|i| snap.conns.get(*i).is_some_and(|c| c.slot == slot))
    }

    /// The selected gap of the selected connection.
    #[must_use]
    pub fn selected_gap(&self) -> Option<&GapView> {
        let c = self.selected()?;
        c.gaps.get(self.gap_sel.min(c.gaps.len().saturating_sub(1)))
    }

    /// The timeline window: the user's, or one that fits the selected gap
    /// (or the whole connection when it has none).
    #[must_use]
    pub fn view_window(&self) -> Option<View> {
        if let Some(v) = self.view {
            return Some(v);
        }
        let c = self.selected()?;
        let now = self.snap.as_ref().and_then(|s| s.now);
        if let Some(g) = self.selected_gap() {
            let silence = g.end.since(g.start).0.max(1);
            let width = Span(silence.saturating_mul(8) / 5).max(Span(g.limit.0.saturating_mul(2)));
            let mid = g.start.plus(Span(silence / 2));
            return Some(View {
                start: mid.plus(Span(-width.0 / 2)),
                width,
            });
        }
        let end = now.map_or(c.last_seen, |n| n.max(c.last_seen));
        let width = end.since(c.first_seen).max(Span::from_secs(1));
        let pad = Span(width.0 / 50);
        Some(View {
            start: c.first_seen.plus(Span(-pad.0)),
            width: Span(width.0 + 2 * pad.0),
        })
    }

    fn select_slot(&mut self, slot: Option<ConnId>) {
        if slot != self.selected_slot {
            self.selected_slot = slot;
            self.gap_sel = 0;
            self.view = None;
            if let Some(s) = slot {
                self.outbox.push(Command::Focus(s));
            }
        }
    }

    /// Live: forgets the process facts of connections that left the table,
    /// once there are [`PRUNE_SLACK`] more than the table has. In two
    /// rounds: a connection missing from the table is marked first and
    /// forgotten only if still missing at the next prune, because the event
    /// loop may hand over a note before an older snapshot that does not
    /// show its connection yet (every later snapshot does).
    fn prune_processes(&mut self) {
        let Some(snap) = &self.snap else {
            return;
        };
        if self.processes.len() <= snap.conns.len() + PRUNE_SLACK {
            return;
        }
        let shown: HashSet<(&str, &str)> = snap
            .conns
            .iter()
            .map(|c| (c.client.as_str(), c.broker.as_str()))
            .collect();
        let is_shown = |k: &(String, String)| shown.contains(&(k.0.as_str(), k.1.as_str()));
        let stale = std::mem::take(&mut self.stale_processes);
        self.processes
            .retain(|k, _| is_shown(k) || !stale.contains(k));
        self.stale_processes = self
            .processes
            .keys()
            .filter(|k| !is_shown(k))
            .cloned()
            .collect();
    }

    /// Rows a PgUp / PgDn moves in the focused pane: those it shows at once.
    fn page(&self) -> isize {
        let (_, height) = self.screen;
        if height == 0 {
            return isize::try_from(PAGE).unwrap_or(10);
        }
        let panes = Panes::of(height, self.focus);
        let rows = match self.focus {
            Focus::Connections => panes.table_rows(),
            Focus::Gaps => panes.gap_rows(height),
        };
        isize::from(i16::try_from(rows).unwrap_or(i16::MAX))
    }

    /// Help lines hidden below the overlay at the current screen size.
    fn help_hidden(&self) -> u16 {
        let (width, height) = self.screen;
        let (_, _, _, h) = help_box(width, height);
        HELP_ROWS.saturating_sub(h.saturating_sub(2))
    }

    /// Help text rows the overlay shows at once.
    fn help_box_rows(&self) -> i16 {
        let (width, height) = self.screen;
        let (_, _, _, h) = help_box(width, height);
        i16::try_from(h.saturating_sub(2)).unwrap_or(1).max(1)
    }

    /// Scrolls the help by `delta` lines (clamped to what is hidden).
    fn scroll_help(&mut self, delta: isize) {
        let max = isize::from(i16::try_from(self.help_hidden()).unwrap_or(i16::MAX));
        let cur = isize::from(i16::try_from(self.help_scroll).unwrap_or(i16::MAX));
        let next = cur.saturating_add(delta).clamp(0, max);
        self.help_scroll = u16::try_from(next).unwrap_or(0);
    }

    fn move_selection(&mut self, delta: isize) {
        match self.focus {
            Focus::Connections => {
                let rows = self.visible();
                if rows.is_empty() {
                    return;
                }
                let cur = self.selected_row().unwrap_or(0);
                let next = cur.saturating_add_signed(delta).min(rows.len() - 1);
                let slot = self
                    .snap
                    .as_ref()
                    .and_then(|s| s.conns.get(rows[next]))
                    .map(|c| c.slot);
                self.select_slot(slot);
            }
            Focus::Gaps => {
                let n = self.selected().map_or(0, |c| c.gaps.len());
                if n == 0 {
                    return;
                }
                self.gap_sel = self.gap_sel.saturating_add_signed(delta).min(n - 1);
                self.view = None;
            }
        }
    }

    /// Keeps the selection on a visible row after the rows changed.
    fn fix_selection(&mut self) {
        if self.selected_row().is_some() {
            return;
        }
        let rows = self.visible();
        let slot = rows
            .first()
            .and_then(|i| self.snap.as_ref().and_then(|s| s.conns.get(*i)))
            .map(|c| c.slot);
        self.select_slot(slot);
    }

    fn zoom(&mut self, factor_num: i64, factor_den: i64) {
        let Some(v) = self.view_window() else { return };
        let mid = v.start.plus(Span(v.width.0 / 2));
        let width = Span((v.width.0.saturating_mul(factor_num) / factor_den).max(1_000_000));
        self.view = Some(View {
            start: mid.plus(Span(-width.0 / 2)),
            width,
        });
    }

    fn pan(&mut self, quarters: i64) {
        let Some(v) = self.view_window() else { return };
        self.view = Some(View {
            start: v.start.plus(Span(v.width.0 / 4 * quarters)),
            width: v.width,
        });
    }

    fn export(&mut self) {
        let Some(snap) = &self.snap else {
            self.status = Some("nothing to export yet".into());
            return;
        };
        let stem = export_stem(&snap.header.source);
        let path = self.export_dir.join(format!("hbscope-report-{stem}.json"));
        let Some(report) = &snap.report else {
            // Still reading: the worker owns the engine and writes the report
            // as it stands; it answers with a status message.
            self.status = Some(format!("writing the JSON report to {} ...", path.display()));
            self.outbox.push(Command::Export(path));
            return;
        };
        let written = std::fs::File::create(&path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                crate::report::write_json(report, std::io::BufWriter::new(f))
                    .map_err(|e| e.to_string())
            });
        let shown = std::path::absolute(&path).unwrap_or(path);
        self.status = Some(match written {
            Ok(()) => format!("JSON report written to {}", shown.display()),
            Err(e) => format!("could not write {}: {e}", shown.display()),
        });
    }

    fn write_packets(&mut self) {
        if !self.live {
            self.status = Some("w writes a connection's recent packets in live mode only".into());
            return;
        }
        let Some(c) = self.selected() else {
            self.status = Some("no connection selected".into());
            return;
        };
        let client: String = c
            .client
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
            .collect();
        let path = self
            .export_dir
            .join(format!("hbscope-conn-{}-{client}.pcap", c.id));
        let slot = c.slot;
        self.status = Some(format!("writing packets to {} ...", path.display()));
        self.outbox.push(Command::WritePackets(slot, path));
    }

    /// Applies one action. The only place the app's state changes.
    pub fn update(&mut self, action: Action) {
        if self.help {
            // The help has the moving keys while it is shown (it scrolls
            // when the screen is short).
            let page = isize::from(self.help_box_rows());
            let delta = match action {
                Action::Up => Some(-1),
                Action::Down => Some(1),
                Action::Top => Some(isize::MIN),
                Action::Bottom => Some(isize::MAX),
                Action::PageUp => Some(-page),
                Action::PageDown => Some(page),
                _ => None,
            };
            if let Some(d) = delta {
                self.scroll_help(d);
                return;
            }
        }
        let page = self.page();
        match action {
            Action::Up => self.move_selection(-1),
            Action::Down => self.move_selection(1),
            Action::Top => self.move_selection(isize::MIN),
            Action::Bottom => self.move_selection(isize::MAX),
            Action::PageUp => self.move_selection(-page),
            Action::PageDown => self.move_selection(page),
            Action::Enter => match self.focus {
                Focus::Connections => {
                    if self.selected().is_some_and(ConnView::flagged) {
                        self.focus = Focus::Gaps;
                    }
                }
                Focus::Gaps => self.view = None,
            },
            Action::NextFocus | Action::PrevFocus => {
                self.focus = match self.focus {
                    Focus::Connections => Focus::Gaps,
                    Focus::Gaps => Focus::Connections,
                };
            }
            Action::StartFilter => self.filter_editing = true,
            Action::FilterInput(c) => {
                self.filter.push(c);
                self.refresh_rows();
                self.fix_selection();
            }
            Action::FilterBackspace => {
                self.filter.pop();
                self.refresh_rows();
                self.fix_selection();
            }
            Action::FilterApply => self.filter_editing = false,
            Action::FilterCancel => {
                self.filter_editing = false;
                self.filter.clear();
                self.refresh_rows();
                self.fix_selection();
            }
            Action::ToggleFlagged => {
                self.flagged_only = !self.flagged_only;
                self.refresh_rows();
                self.fix_selection();
            }
            Action::CycleSort => {
                self.sort = self.sort.next();
                self.refresh_rows();
            }
            Action::ZoomIn => self.zoom(1, 2),
            Action::ZoomOut => self.zoom(2, 1),
            Action::PanLeft => self.pan(-1),
            Action::PanRight => self.pan(1),
            Action::TogglePause => {
                let running = self
                    .snap
                    .as_ref()
                    .is_some_and(|s| s.state != PlayState::Done);
                if running {
                    self.paused = !self.paused;
                    self.outbox.push(Command::Pause(self.paused));
                }
            }
            Action::Export => self.export(),
            Action::WritePackets => self.write_packets(),
            Action::ToggleHelp => {
                self.help = !self.help;
                self.help_scroll = 0;
            }
            Action::Back => {
                if self.help {
                    self.help = false;
                    self.help_scroll = 0;
                } else if !self.filter.is_empty() {
                    self.filter.clear();
                    self.refresh_rows();
                    self.fix_selection();
                } else if self.focus == Focus::Gaps {
                    self.focus = Focus::Connections;
                } else if self.view.is_some() {
                    self.view = None;
                }
            }
            Action::Quit => self.quit = true,
            Action::Snapshot(s) => {
                self.snap = Some(*s);
                self.refresh_rows();
                self.fix_selection();
                self.prune_processes();
                if let Some(c) = self.selected() {
                    if c.timeline.is_none() {
                        let slot = c.slot;
                        if !self.outbox.contains(&Command::Focus(slot)) {
                            self.outbox.push(Command::Focus(slot));
                        }
                    }
                }
            }
            Action::Status(m) => self.status = Some(m),
            Action::Process(n) => {
                let (c, b) = n.key();
                let key = (c.to_owned(), b.to_owned());
                self.processes.entry(key).or_default().apply(*n);
            }
            Action::Tick => {}
            Action::Screen(w, h) => {
                self.screen = (w, h);
                self.scroll_help(0);
            }
        }
        if self.quit {
            self.outbox.push(Command::Quit);
        }
    }
}

fn matches_filter(c: &ConnView, needle: &str) -> bool {
    let hay = [
        c.client.as_str(),
        c.broker.as_str(),
        c.name.as_deref().unwrap_or(""),
        c.worst.map_or("", |w| w.as_str()),
        c.state.as_str(),
    ];
    hay.iter().any(|h| h.to_lowercase().contains(needle))
}

/// The capture's name for the export file: its file stem, "stdin" for "-".
#[must_use]
pub fn export_stem(source: &str) -> String {
    if source == "-" {
        return "stdin".into();
    }
    Path::new(source)
        .file_stem()
        .map_or_else(|| "capture".into(), |s| s.to_string_lossy().into_owned())
}
