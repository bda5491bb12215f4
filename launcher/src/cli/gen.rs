//! Man pages and shell completions generated from the flag table.
