"""`python -m c2f`: the command line (c2f.cli), as the installed `c2f` command runs it."""
from c2f.cli import main

main(prog_name="c2f")
