"""A module with one trivial command and one trivial query, to time the bus alone."""
