//! Process facts that travel with a capture: `hbscope live --write
//! FILE.pcapng` stores each connection's owners and each gap's process
//! report (samples, verdict, diagnosis) as JSON text in hbscope custom blocks
//! of the pcapng file (`capture::pcapng::custom_text_block`), and `hbscope
//! replay FILE.pcapng` puts them back on the same connections and gaps, on
//! any machine.
//!
//! One note per block, a JSON object with `"hbscope_note": 1` and a `kind`:
//!
//! - `"owners"`: `client`, `broker` ("ip:port"), `client_process`?,
//!   `broker_process`? (as in the report);
//! - `"gap-process"`: `client`, `broker`, `direction`, `start` (the gap's
//!   start, RFC 3339 with nanoseconds: the same in replay), `process` (a
//!   report `process` object).
//!
//! Notes are input like any capture: one that does not parse, or names no
//! connection or gap of the report, is ignored (a count says how many), and
//! their text is sanitised wherever it is shown.

use serde::{Deserialize, Serialize};

use super::{ProcessOwnerReport, ProcessReport, Report};

/// The format version of a note.
const VERSION: u32 = 1;

/// One note.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Note {
    /// The processes owning a connection's ends.
    Owners {
        /// Client "ip:port".
        client: String,
        /// Broker "ip:port".
        broker: String,
        /// The client socket's owner.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_process: Option<ProcessOwnerReport>,
        /// The broker socket's owner.
        #[serde(skip_serializing_if = "Option::is_none")]
        broker_process: Option<ProcessOwnerReport>,
    },
    /// A gap's process report.
    GapProcess {
        /// Client "ip:port".
        client: String,
        /// Broker "ip:port".
        broker: String,
        /// The gap's direction ("client-to-broker" | "broker-to-client").
        direction: String,
        /// The gap's start (RFC 3339, nanoseconds).
        start: String,
        /// The process report.
        process: Box<ProcessReport>,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    hbscope_note: u32,
    #[serde(flatten)]
    note: Note,
}

impl Note {
    /// The note as the JSON text stored in a custom block.
    #[must_use]
    pub fn to_text(&self) -> String {
        serde_json::to_string(&Envelope {
            hbscope_note: VERSION,
            note: self.clone(),
        })
        .unwrap_or_default()
    }

    /// Reads a stored note; `None` for anything else.
    #[must_use]
    pub fn from_text(text: &str) -> Option<Note> {
        let e: Envelope = serde_json::from_str(text).ok()?;
        (e.hbscope_note == VERSION).then_some(e.note)
    }
}

/// Puts stored notes back on the report's connections and gaps (a
/// `stored-notes-unused` warning counts those that were unreadable or named
/// no connection or gap of this report); returns how many were used and how
/// many were not.
pub fn apply(rep: &mut Report, texts: &[String]) -> (usize, usize) {
    let (mut used, mut unused) = (0, 0);
    for t in texts {
        let ok = match Note::from_text(t) {
            Some(Note::Owners {
                client,
                broker,
                client_process,
                broker_process,
            }) => rep
                .connections
                .iter_mut()
                .find(|c| c.client == client && c.broker == broker)
                .map(|c| {
                    c.client_process = client_process;
                    c.broker_process = broker_process;
                })
                .is_some(),
            Some(Note::GapProcess {
                client,
                broker,
                direction,
                start,
                process,
            }) => rep
                .connections
                .iter_mut()
                .filter(|c| c.client == client && c.broker == broker)
                .flat_map(|c| c.gaps.iter_mut())
                .find(|g| g.start == start && g.direction.as_str() == direction)
                .map(|g| g.process = Some(*process))
                .is_some(),
            None => false,
        };
        if ok {
            used += 1;
        } else {
            unused += 1;
        }
    }
    if unused > 0 {
        rep.capture.warnings.push(super::WarningReport {
            code: String::from("stored-notes-unused"),
            message: format!(
                "{unused} of the process notes stored in the file were unreadable or named no connection or gap \
                 of this report (a filtered or edited file?)"
            ),
            count: unused as u64,
        });
    }
    (used, unused)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::capture::LinkType;
    use crate::engine::{Engine, EngineConfig};

    #[test]
    fn notes_round_trip_and_strangers_are_counted_not_applied() {
        let n = Note::Owners {
            client: "127.0.0.1:1".into(),
            broker: "127.0.0.1:5672".into(),
            client_process: Some(ProcessOwnerReport {
                pid: 7,
                command: "python3".into(),
                cmdline: None,
                uid: 0,
                user: Some("root".into()),
            }),
            broker_process: None,
        };
        let t = n.to_text();
        assert!(t.starts_with(r#"{"hbscope_note":1,"kind":"owners""#), "{t}");
        assert_eq!(Note::from_text(&t), Some(n));
        assert_eq!(
            Note::from_text(r#"{"hbscope_note":2,"kind":"owners","client":"a","broker":"b"}"#),
            None
        );
        assert_eq!(Note::from_text("not json \u{1b}[31m"), None);
        let engine = Engine::new(EngineConfig::default(), LinkType::ETHERNET);
        let mut rep = crate::report::build(&engine, "x.pcapng", true);
        let (used, unused) = apply(&mut rep, &[t, "garbage".into()]);
        assert_eq!((used, unused), (0, 2));
        let w = rep.capture.warnings.last().unwrap();
        assert_eq!((w.code.as_str(), w.count), ("stored-notes-unused", 2));
    }
}
