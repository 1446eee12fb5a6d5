"""For a person's machine and the tests only: the dev servers, the dev stack, the demo,
inventory writes and a CloudEvents sink. Runtime code never imports it (import-linter), and
the CLI loads it only inside the `dev` and `demo` commands."""
