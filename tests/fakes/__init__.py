"""Fakes of the outside systems unmark talks to, as Starlette apps (see STYLE.md 7.7)."""
