//! `replay -f EXPR`: libpcap's offline filter, as tcpdump applies its
//! expression to a saved file. The expression is compiled once per link
//! type met (parts of one capture may differ) on a "dead" libpcap handle
//! and run on each packet's captured bytes.

use super::{LinkType, PacketRecord};

/// The filter expression does not compile.
#[derive(Debug, thiserror::Error)]
#[error("the filter `{expr}` is not a valid capture filter for link type {link} ({detail}); it is tcpdump's expression syntax, check it with `tcpdump -d '{expr}'`")]
pub struct FilterError {
    /// The expression.
    pub expr: String,
    /// The link type it was compiled for.
    pub link: String,
    /// libpcap's message.
    pub detail: String,
}

/// A compiled filter expression.
pub struct PacketFilter {
    expr: String,
    programs: Vec<(LinkType, pcap::BpfProgram)>,
}

impl std::fmt::Debug for PacketFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketFilter")
            .field("expr", &self.expr)
            .finish_non_exhaustive()
    }
}

impl PacketFilter {
    /// Compiles `expr` for packets of link type `link`.
    ///
    /// # Errors
    /// [`FilterError`] when libpcap refuses the expression.
    pub fn new(expr: &str, link: LinkType) -> Result<Self, FilterError> {
        let mut f = PacketFilter {
            expr: expr.to_owned(),
            programs: Vec::new(),
        };
        f.program(link)?;
        Ok(f)
    }

    fn program(&mut self, link: LinkType) -> Result<usize, FilterError> {
        if let Some(i) = self.programs.iter().position(|(l, _)| *l == link) {
            return Ok(i);
        }
        let err = |detail: String| FilterError {
            expr: self.expr.clone(),
            link: link.to_string(),
            detail,
        };
        let dead = pcap::Capture::dead(pcap::Linktype(link.0)).map_err(|e| err(e.to_string()))?;
        let prog = dead
            .compile(&self.expr, true)
            .map_err(|e| err(e.to_string()))?;
        self.programs.push((link, prog));
        Ok(self.programs.len() - 1)
    }

    /// Whether the packet `rec` of link type `link` passes the filter.
    ///
    /// # Errors
    /// [`FilterError`] when the expression does not compile for a link
    /// type met for the first time.
    pub fn matches(&mut self, link: LinkType, rec: &PacketRecord<'_>) -> Result<bool, FilterError> {
        let i = self.program(link)?;
        Ok(self
            .programs
            .get(i)
            .is_some_and(|(_, p)| p.filter(rec.data)))
    }
}
