//! child side (owner: lead).
