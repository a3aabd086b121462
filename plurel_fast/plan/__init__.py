"""Planning: everything decided once per database, as small pure data."""
