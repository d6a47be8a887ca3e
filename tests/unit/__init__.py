"""Code checked on its own: no app, no database."""
