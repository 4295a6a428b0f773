"""The shipped directories and mailers: memory, SQLite, SQLAlchemy and SMTP, sync and async."""
