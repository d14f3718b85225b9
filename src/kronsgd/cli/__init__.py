"""The ``kronsgd`` command: argument parsing, the train / predict / inspect / bench / demo
commands, input files, progress and plots. Nothing else in kronsgd imports it."""
