"""`python -m bot` is `unmark`."""

from bot.cli import main

main()
