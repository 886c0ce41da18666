"""Operations the CLI and the web console both call: typed, auditing their own actions."""
