//! The pure core: text in, analysis and edits out, no I/O. Every front end
//! (CLI, hook, proxy, audit) asks it the same questions and gets the same
//! answers.
//!
//! - [`parse`]: untrusted XML into a tree with byte positions, every limit enforced;
//! - `scan`: the fast path: one pass that checks a document and keeps only
//!   the elements the analysis reads (the tree path takes whatever it does not vouch for);
//! - [`detect`]: is the guest Windows, and on what evidence;
//! - [`rules`]: vhost-user NICs, their models, guest memory, libvirt releases;
//! - [`rewrite`]: byte-range edits spliced into the original text;
//! - [`analysis`]: the above for one document ([`analysis::analyze`]);
//! - [`findings`]: one verdict (what is wrong, how bad) for every front end;
//! - [`report`]: `check`'s text and JSON renderings;
//! - [`escape`]: outside values quoted and escaped for messages.
//!
//! This module imports nothing of the crate but itself (tests/architecture.rs
//! keeps it so).

pub(crate) mod analysis;
mod bytes;
pub(crate) mod detect;
pub(crate) mod escape;
pub(crate) mod findings;
pub(crate) mod parse;
pub mod report;
pub(crate) mod rewrite;
pub(crate) mod rules;
mod scan;
mod xml;
