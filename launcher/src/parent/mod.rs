//! parent side (owner: lead).
