"""`python -m frechet stats|score ...`: see frechet.cli."""
from frechet.cli import main

main()
