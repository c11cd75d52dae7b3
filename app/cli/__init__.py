"""The `rmtqa` command line: `main` parses and dispatches, one module per subcommand in
`commands/`, and what several commands share (`errors`, `progress`, `threads`)."""
