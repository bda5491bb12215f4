//! Raw syscalls not covered by nix. Every `unsafe` block carries a `// SAFETY:` comment.
