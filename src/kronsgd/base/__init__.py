"""The floor every room stands on: errors, argument checks, the memory budget, named random
streams and checked atomic files. Imports nothing else from kronsgd."""
